"""Parameter counts (the formula, LSTM = 4x and GRU = 3x a vanilla RNN), ``summary()``, and the LSTM's
``forget_bias=`` initialization."""

from __future__ import annotations

import numpy as np
import pytest

import fusedrnn as fr
from tolerances import FORGET_BIAS_SHIFT_F32


def expected_count(
    gates, input_size, hidden, layers=1, bidirectional=False, bias=True, proj=0, peephole=False
):
    """Per layer and direction: G*H*(I_k + H_out) + 2*G*H [+ P*H] [+ 3*H], I_k = I or D*H_out."""
    d = 2 if bidirectional else 1
    h_out = proj or hidden
    total = 0
    for k in range(layers):
        i_k = input_size if k == 0 else d * h_out
        per = gates * hidden * (i_k + h_out) + (2 * gates * hidden if bias else 0)
        per += proj * hidden + (3 * hidden if peephole else 0)
        total += d * per
    return total


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_counts_follow_the_formula(layers, bidirectional, bias):
    kw = dict(num_layers=layers, bidirectional=bidirectional, bias=bias)
    rnn, lstm, gru = fr.RNN(7, 9, **kw), fr.LSTM(7, 9, **kw), fr.GRU(7, 9, **kw)
    assert rnn.num_parameters() == expected_count(1, 7, 9, layers, bidirectional, bias)
    assert lstm.num_parameters() == expected_count(4, 7, 9, layers, bidirectional, bias)
    assert gru.num_parameters() == expected_count(3, 7, 9, layers, bidirectional, bias)
    assert lstm.num_parameters() == 4 * rnn.num_parameters()
    assert gru.num_parameters() == 3 * rnn.num_parameters()


def test_counts_with_lstm_options():
    lstm = fr.LSTM(7, 9, num_layers=2, proj_size=4, peephole=True)
    assert lstm.num_parameters() == expected_count(4, 7, 9, 2, proj=4, peephole=True)
    assert fr.LSTMCell(7, 9).num_parameters() == 4 * fr.RNNCell(7, 9).num_parameters() == 4 * (9 * 16 + 18)
    assert fr.GRUCell(7, 9).num_parameters() == 3 * fr.RNNCell(7, 9).num_parameters()


def test_summary_lists_every_parameter():
    lstm = fr.LSTM(32, 64, num_layers=2, bidirectional=True)
    lines = lstm.summary().splitlines()
    assert lines[0] == repr(lstm)
    assert lines[1].split() == ["parameter", "shape", "count"]
    body = lines[2:-1]
    state = lstm.state_dict()
    assert [line.split()[0] for line in body] == list(state)
    for line, arr in zip(body, state.values()):
        shape_text = line[line.index("(") : line.index(")") + 1]
        assert shape_text == str(arr.shape)
        assert line.split()[-1] == f"{arr.size:,}"
    assert lines[-1].split() == ["total", f"{lstm.num_parameters():,}"]
    # aligned columns: every count ends in the same column
    assert len({len(line) for line in lines[1:]}) == 1


def test_summary_of_a_cell():
    text = fr.GRUCell(3, 4).summary()
    assert "weight_ih  (12, 3)" in text and text.splitlines()[-1].split() == ["total", str(3 * (4 * 7 + 8))]


# -- forget_bias ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_forget_bias_shifts_the_forget_block_of_bias_ih(bidirectional):
    plain = fr.LSTM(5, 6, num_layers=2, bidirectional=bidirectional, seed=4)
    shifted = fr.LSTM(5, 6, num_layers=2, bidirectional=bidirectional, forget_bias=2.0, seed=4)
    a, b = plain.state_dict(), shifted.state_dict()
    for name in a:
        if name.startswith("bias_ih"):
            np.testing.assert_allclose(b[name][6:12], a[name][6:12] + 2.0, rtol=FORGET_BIAS_SHIFT_F32)
            np.testing.assert_array_equal(np.delete(b[name], np.s_[6:12]), np.delete(a[name], np.s_[6:12]))
        else:
            np.testing.assert_array_equal(b[name], a[name])
    assert "forget_bias=2.0" in repr(shifted)


def test_forget_bias_is_used_by_the_kernels(rng):
    lstm = fr.LSTM(3, 4, forget_bias=1.0, seed=0)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    copy = fr.LSTM(3, 4, seed=1)
    copy.load_state_dict(lstm.state_dict())
    np.testing.assert_array_equal(lstm(x)[0], copy(x)[0])
    assert not np.allclose(fr.LSTM(3, 4, seed=0)(x)[0], lstm(x)[0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(forget_bias="1"), TypeError, "forget_bias must be a number"),
        (dict(forget_bias=True), TypeError, "forget_bias must be a number"),
        (dict(forget_bias=float("nan")), ValueError, "finite"),
        (dict(forget_bias=1.0, bias=False), ValueError, "needs bias=True"),
        (dict(forget_bias=1.0, input_forget=True), ValueError, "input_forget"),
    ],
    ids=["string", "bool", "nan", "no-bias", "coupled"],
)
def test_forget_bias_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fr.LSTM(3, 4, **kwargs)
