"""fusedrnn.analysis.gradient_flow against central differences of the NumPy reference, its layouts, the
vanishing-gradient facts it exists to show (measured here, with bounds that state the phenomenon), and
``python -m fusedrnn gradflow``."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import analysis, reference
from fusedrnn.__main__ import main
from tolerances import FINITE_DIFFERENCE_STEP, FLOW_REARRANGED, FLOW_VS_FINITE_DIFFERENCES

EPS = FINITE_DIFFERENCE_STEP


def ref_forward(layer, x, h0, c0):
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    y, h_n, c_n, _ = reference.forward(layer.config, params, x, h0, c0)
    return y, h_n, c_n


def numeric_grad(f, value):
    out = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        plus, minus = value.copy(), value.copy()
        plus[index] += EPS
        minus[index] -= EPS
        out[index] = (f(plus) - f(minus)) / (2 * EPS)
    return out


def norms(g, batch_axis):
    """Per-step L2 norm over features, averaged over the batch; g (T, ..., N, F) -> (T,)."""
    g = np.moveaxis(g, batch_axis, -2)
    return np.sqrt(np.square(g).sum(-1)).mean(-1)


CASES = {
    "lstm-L2": lambda: fr.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=0),
    "lstm-proj": lambda: fr.LSTM(3, 4, proj_size=2, dtype=np.float64, seed=1),
    "gru-L2-residual": lambda: fr.GRU(3, 4, num_layers=2, residual=True, dtype=np.float64, seed=2),
    "rnn": lambda: fr.RNN(3, 4, dtype=np.float64, seed=3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_central_differences_of_the_reference(case, rng):
    layer = CASES[case]()
    config = layer.config
    steps, batch, lead = 5, 2, config.num_layers
    x = rng.standard_normal((steps, batch, 3))
    h0 = rng.standard_normal((lead, batch, config.output_size)) * 0.5
    c0 = rng.standard_normal((lead, batch, config.hidden_size)) * 0.5 if config.has_cell_state else None
    flow = analysis.gradient_flow(layer, x, (h0, c0) if c0 is not None else h0)

    # dL/dx_t for L = sum(y_{T-1})
    gx = numeric_grad(lambda a: ref_forward(layer, a, h0, c0)[0][-1].sum(), x)
    np.testing.assert_allclose(flow.input, norms(gx, 1), rtol=FLOW_VS_FINITE_DIFFERENCES)

    # dL/dh_t (and dL/dc_t): L as a function of the state after step t, the rest of x unchanged
    for t in range(steps - 1):
        _, h_t, c_t = ref_forward(layer, x[: t + 1], h0, c0)
        rest = x[t + 1 :]

        def loss_h(h, c_t=c_t, rest=rest):
            return ref_forward(layer, rest, h, c_t)[0][-1].sum()

        gh = numeric_grad(loss_h, h_t)  # (L, N, H_out)
        per_seq = gh.transpose(1, 0, 2).reshape(batch, -1)
        expected = np.linalg.norm(per_seq, axis=1).mean()
        assert flow.hidden[t] == pytest.approx(expected, rel=FLOW_VS_FINITE_DIFFERENCES)
        if c_t is not None:

            def loss_c(c, h_t=h_t, rest=rest):
                return ref_forward(layer, rest, h_t, c)[0][-1].sum()

            gc = numeric_grad(loss_c, c_t)
            per_seq = gc.transpose(1, 0, 2).reshape(batch, -1)
            expected = np.linalg.norm(per_seq, axis=1).mean()
            assert flow.cell[t] == pytest.approx(expected, rel=FLOW_VS_FINITE_DIFFERENCES)
    # after the last step: y_{T-1} is the top layer's h, plus the lower layers' through residual skips
    touched = lead if config.residual else 1
    assert flow.hidden[-1] == pytest.approx(np.sqrt(touched * config.output_size))
    assert (flow.cell is None) == (not config.has_cell_state)


def test_layouts_give_the_same_flow(rng):
    x = rng.standard_normal((6, 2, 3))
    tm = analysis.gradient_flow(fr.GRU(3, 5, num_layers=2, dtype=np.float64, seed=0), x)
    bf = analysis.gradient_flow(
        fr.GRU(3, 5, num_layers=2, batch_first=True, dtype=np.float64, seed=0), x.transpose(1, 0, 2)
    )
    one = analysis.gradient_flow(fr.GRU(3, 5, num_layers=2, dtype=np.float64, seed=0), x[:, 0])
    one_batched = analysis.gradient_flow(fr.GRU(3, 5, num_layers=2, dtype=np.float64, seed=0), x[:, :1])
    np.testing.assert_allclose(bf.input, tm.input, rtol=FLOW_REARRANGED)
    np.testing.assert_allclose(bf.hidden, tm.hidden, rtol=FLOW_REARRANGED)
    np.testing.assert_allclose(one.input, one_batched.input, rtol=FLOW_REARRANGED)
    np.testing.assert_allclose(one.hidden, one_batched.hidden, rtol=FLOW_REARRANGED)


def test_bidirectional_layer_has_input_flow_only(rng):
    layer = fr.LSTM(3, 4, bidirectional=True, dtype=np.float64, seed=0)
    x = rng.standard_normal((5, 1, 3))
    flow = analysis.gradient_flow(layer, x)
    assert flow.hidden is None and flow.cell is None
    gx = numeric_grad(lambda a: ref_forward(layer, a, None, None)[0][-1].sum(), x)
    np.testing.assert_allclose(flow.input, norms(gx, 1), rtol=FLOW_VS_FINITE_DIFFERENCES)


def test_errors():
    with pytest.raises(TypeError, match="layer must be a fusedrnn RNN"):
        analysis.gradient_flow(fr.LSTMCell(3, 4), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="deterministic"):
        analysis.gradient_flow(fr.LSTM(3, 4, num_layers=2, dropout=0.5), np.zeros((2, 1, 3)))
    with pytest.raises(ValueError, match="input_size=3"):
        analysis.gradient_flow(fr.LSTM(3, 4), np.zeros((2, 1, 5)))


# -- the facts -------------------------------------------------------------------------------------------
# Measured with PyTorch's default initialization, H=64, I=32, T=100, float32, seed 0 (the same numbers
# as torch.nn.RNN/LSTM/GRU given the same weights): at step 50 the vanilla RNN's ||dL/dx_t|| is ~3e-15
# and the LSTM's ~5e-11; at step 0 the RNN's is ~6e-31, the LSTM's ~2e-21, with forget bias +1 ~2e-8 and
# with +2 ~4e-2. The bounds below leave an order of magnitude or more around those.


@pytest.fixture(scope="module")
def comparison():
    return analysis.compare(steps=100, input_size=32, hidden_size=64, seed=0)


def test_vanilla_rnn_gradient_vanishes_far_faster_than_the_lstm(comparison):
    rnn, lstm = comparison["RNN (tanh)"], comparison["LSTM"]
    for series in (rnn.input, lstm.input):
        assert series[-1] > 0.1  # comparable at the loss
    assert rnn.input[50] < 1e-3 * lstm.input[50]
    assert rnn.input[50] < 1e-12
    assert rnn.input[0] < 1e-25 and lstm.input[0] < 1e-15
    assert rnn.hidden[0] < 1e-25


def test_forget_bias_keeps_the_lstm_gradient_alive(comparison):
    at0 = {name: comparison[name].input[0] for name in ("LSTM", "LSTM forget+1", "LSTM forget+2")}
    assert at0["LSTM"] < 1e-15
    assert 1e-12 < at0["LSTM forget+1"] < 1e-4
    assert 1e-4 < at0["LSTM forget+2"] < 1.0
    assert comparison["LSTM forget+2"].cell[0] > 1e-3  # through the cell state


def test_gru_vanishes_like_the_default_lstm(comparison):
    gru, lstm = comparison["GRU"], comparison["LSTM"]
    assert 1e-3 < gru.input[0] / lstm.input[0] < 1e3
    assert gru.input[0] > 1e3 * comparison["RNN (tanh)"].input[0]


@pytest.mark.slow
def test_float32_gradient_underflows_to_zero_over_200_steps():
    """Over T=200 the vanilla RNN's and the default LSTM's gradients at step 0 are exactly zero in float32
    (below the smallest subnormal, ~1.4e-45), while a forget bias of +2 still carries one."""
    result = analysis.compare(steps=200, input_size=32, hidden_size=64, seed=0)
    assert result["RNN (tanh)"].input[0] == 0.0
    assert result["LSTM"].input[0] == 0.0
    assert result["LSTM forget+2"].input[0] > 1e-6
    double = analysis.compare(steps=200, input_size=32, hidden_size=64, seed=0, dtype=np.float64)
    assert 0.0 < double["RNN (tanh)"].input[0] < 1e-45


# -- the command --------------------------------------------------------------------------------------------


def test_gradflow_command_prints_both_tables(capsys):
    assert main(["gradflow", "--steps", "30", "--hidden", "16", "--input", "8"]) == 0
    out = capsys.readouterr().out
    assert "||dL/dx_t|| for L = sum(y_29)" in out and "||dL/dh_t||" in out
    header = [line for line in out.splitlines() if line.split()[:1] == ["t"]]
    assert len(header) == 2
    for name in analysis.COMPARISON:
        assert name in header[0]
    rows = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert rows[: len(rows) // 2] == ["0", "3", "6", "9", "12", "15", "18", "21", "24", "27", "29"]


def test_format_table_prints_zero_for_underflow():
    flow = analysis.GradientFlow(np.array([0.0, 1.5e-3, 2.0]), None, None)
    table = analysis.format_table({"m": flow}, rows=[0, 1, 2])
    lines = table.splitlines()[2:]
    assert [line.split() for line in lines] == [["0", "0"], ["1", "1.50e-03"], ["2", "2.00e+00"]]
    with pytest.raises(ValueError, match="what must be"):
        analysis.format_table({"m": flow}, what="cell")


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_gradflow_plot(tmp_path, capsys):
    path = tmp_path / "flow.png"
    assert main(["gradflow", "--steps", "20", "--hidden", "8", "--input", "4", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {path}" in capsys.readouterr().out
