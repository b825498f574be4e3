"""Zoneout (``zoneout=p``) and recurrent dropout (``recurrent_dropout=p``) in the kernels, against the NumPy
reference given the masks the tape recorded: forward and backward, every cell, float32 and float64,
stacked, bidirectional, with lengths and dropout between layers, at two threads under every schedule
and slice count; zoneout's expectation in a call and a stream; the masks' draws; the API's checks, model
files and exporters (``from_keras`` carrying recurrent dropout: ``test_keras_interop.py``).

The reference itself is checked against central differences and torch in
``test_reference_regularizers.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import reference
from fusedrnn._testing import tuning
from tolerances import STEP_VS_CALL

# (constructor, the options it takes): the reset-before GRU has no recurrent dropout, the projected
# LSTM no zoneout.
CELLS = {
    "rnn-tanh": (lambda **kw: fr.RNN(**kw), {"zoneout", "recurrent_dropout"}),
    "rnn-relu": (lambda **kw: fr.RNN(nonlinearity="relu", **kw), {"zoneout", "recurrent_dropout"}),
    "lstm": (lambda **kw: fr.LSTM(**kw), {"zoneout", "recurrent_dropout"}),
    "lstm-proj": (lambda **kw: fr.LSTM(proj_size=3, **kw), {"recurrent_dropout"}),
    "lstm-peephole": (lambda **kw: fr.LSTM(peephole=True, **kw), {"zoneout", "recurrent_dropout"}),
    "gru": (lambda **kw: fr.GRU(**kw), {"zoneout", "recurrent_dropout"}),
    "gru-reset-before": (lambda **kw: fr.GRU(linear_before_reset=False, **kw), {"zoneout"}),
    "lstm-layer-norm": (lambda **kw: fr.LSTM(layer_norm=True, **kw), {"zoneout", "recurrent_dropout"}),
    "gru-layer-norm": (lambda **kw: fr.GRU(layer_norm=True, **kw), {"zoneout", "recurrent_dropout"}),
}
OPTIONS = {"zoneout": 0.3, "recurrent_dropout": 0.25}


def build(cell: str, hidden: int = 6, **kw) -> fr.RNNBase:
    make, takes = CELLS[cell]
    return make(input_size=5, hidden_size=hidden, **{k: v for k, v in OPTIONS.items() if k in takes}, **kw)


def split_state(layer, state):
    return state if layer.config.has_cell_state else (state, None)


def check_tape_against_reference(layer, x, lengths, rng, assert_close, dtype, what=""):
    """Record, then run the reference with the tape's masks: outputs, final state and every gradient."""
    tape = layer.record(x, lengths=lengths)
    assert (tape.zoneout_masks is not None) == (layer.config.zoneout > 0)
    assert (tape.recurrent_masks is not None) == (layer.recurrent_dropout > 0)
    y_ref, h_ref, c_ref, cache = reference.forward(
        layer.config,
        layer.state_dict(),
        x.astype(np.float64),
        lengths=lengths,
        dropout_masks=tape.dropout_masks,
        recurrent_masks=tape.recurrent_masks,
        zoneout_masks=tape.zoneout_masks,
    )
    assert_close(tape.output, y_ref, dtype, f"{what}y")
    h_n, c_n = split_state(layer, tape.state)
    assert_close(h_n, h_ref, dtype, f"{what}h_n")
    if c_n is not None:
        assert_close(c_n, c_ref, dtype, f"{what}c_n")
    grad_y = rng.standard_normal(y_ref.shape).astype(dtype)
    grad_h = rng.standard_normal(h_ref.shape).astype(dtype)
    grad_state = (grad_h, rng.standard_normal(c_ref.shape).astype(dtype)) if c_n is not None else grad_h
    gh_ref, gc_ref = split_state(layer, grad_state)
    gx_ref, gh0_ref, gc0_ref, gp_ref = reference.backward(cache, grad_y, gh_ref, gc_ref)
    grads = tape.backward(grad_y, grad_state)
    assert_close(grads.input, gx_ref, dtype, f"{what}grad x")
    gh0, gc0 = split_state(layer, grads.state)
    assert_close(gh0, gh0_ref, dtype, f"{what}grad h0")
    if gc0 is not None:
        assert_close(gc0, gc0_ref, dtype, f"{what}grad c0")
    for name, g in grads.params.items():
        assert_close(g, gp_ref[name], dtype, f"{what}grad {name}")
    return tape


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_record_and_backward_match_the_reference_with_the_tapes_masks(cell, dtype, rng, assert_close) -> None:
    layer = build(cell, num_layers=2, bidirectional=True, dropout=0.2, dtype=dtype, seed=3)
    x = rng.standard_normal((7, 4, 5)).astype(dtype)
    lengths = np.array([7, 3, 5, 1])
    check_tape_against_reference(layer, x, lengths, rng, assert_close, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_a_call_is_zoneouts_expectation_and_never_drops(cell, dtype, rng, assert_close) -> None:
    layer = build(cell, num_layers=2, bidirectional=True, dtype=dtype, seed=4)
    x = rng.standard_normal((6, 3, 5)).astype(dtype)
    lengths = np.array([6, 2, 4])
    y_ref, h_ref, c_ref, _ = reference.forward(
        layer.config, layer.state_dict(), x.astype(np.float64), lengths=lengths
    )
    y, state = layer(x, lengths=lengths)
    assert_close(y, y_ref, dtype, "y")
    h_n, c_n = split_state(layer, state)
    assert_close(h_n, h_ref, dtype, "h_n")
    if c_n is not None:
        assert_close(c_n, c_ref, dtype, "c_n")
    if layer.config.zoneout:  # the expectation is not the plain cell's answer
        plain = build(cell, num_layers=2, bidirectional=True, dtype=dtype, seed=4)
        plain_config = plain.config.__class__(**{**plain.config.__dict__, "zoneout": 0.0})
        y_plain, _, _, _ = reference.forward(
            plain_config, layer.state_dict(), x.astype(np.float64), lengths=lengths
        )
        assert np.abs(y_plain - y).max() > 1e-3


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize(
    "cell", ["lstm", "gru", "gru-reset-before", "rnn-tanh", "lstm-proj", "lstm-layer-norm"]
)
def test_every_schedule_and_slice_count_at_two_threads(cell, rng, assert_close) -> None:
    """H = 136 cuts the layer into slices (boundaries off the 16-unit grid for 3), each member masks and
    zones out the units it runs."""
    x = rng.standard_normal((5, 4, 5)).astype(np.float32)
    lengths = np.array([5, 2, 4, 3])
    schedules = {
        "claimed": {},
        "barrier": {"claim_steps": False},
        "rows": {"rows_per_member": 1},
        "directions-in-turn": {"directions_at_once": False},
    }
    for slices in (1, 3):
        with tuning(slices=slices):
            layer = build(cell, hidden=136, num_layers=2, bidirectional=True, seed=5)
        for name, switches in schedules.items():
            with tuning(**switches):
                check_tape_against_reference(
                    layer, x, lengths, rng, assert_close, np.float32, f"{slices} slices, {name}: "
                )
                y, _ = layer(x, lengths=lengths)
            y_ref, _, _, _ = reference.forward(
                layer.config, layer.state_dict(), x.astype(np.float64), lengths=lengths
            )
            assert_close(y, y_ref, np.float32, f"{slices} slices, {name}: call y")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh", "gru-layer-norm"])
def test_stream_steps_give_the_call_with_zoneout(cell, rng) -> None:
    layer = build(cell, hidden=8, num_layers=2, seed=6)
    assert layer.config.zoneout > 0
    x = rng.standard_normal((9, 2, 5)).astype(np.float32)
    y, _ = layer(x)
    stream = layer.stream(2)
    stepped = np.stack([stream.step(x[t]) for t in range(9)])
    np.testing.assert_allclose(stepped, y, **STEP_VS_CALL[np.float32].kw())


def test_masks_are_drawn_as_documented() -> None:
    layer = fr.LSTM(5, 64, num_layers=2, bidirectional=True, zoneout=0.3, recurrent_dropout=0.25, seed=7)
    x = np.zeros((50, 40, 5), np.float32)
    tape = layer.record(x)
    assert len(tape.zoneout_masks) == len(tape.recurrent_masks) == 4
    for factors in tape.zoneout_masks:
        assert factors.shape == (50, 40, 128)  # h's 64 factors, then c's
        assert set(np.unique(factors)) == {0.0, 1.0}
        assert abs(factors.mean() - 0.7) < 0.01  # 256,000 draws: the standard error is about 0.001
        # h's and c's factors are drawn apart
        assert not np.array_equal(factors[..., :64], factors[..., 64:])
    for mask in tape.recurrent_masks:
        assert mask.shape == (40, 64)  # one per sequence, for every step
        assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
        assert abs((mask == 0).mean() - 0.25) < 0.03
    again = fr.LSTM(5, 64, num_layers=2, bidirectional=True, zoneout=0.3, recurrent_dropout=0.25, seed=7)
    np.testing.assert_array_equal(again.record(x).zoneout_masks[3], tape.zoneout_masks[3])
    assert not np.array_equal(layer.record(x).recurrent_masks[0], tape.recurrent_masks[0])  # fresh draws


@pytest.mark.parametrize(
    ("make", "error", "named"),
    [
        (lambda: fr.LSTM(3, 4, zoneout=1.0), ValueError, "zoneout"),
        (lambda: fr.GRU(3, 4, zoneout=-0.1), ValueError, "zoneout"),
        (lambda: fr.RNN(3, 4, zoneout="0.1"), TypeError, "zoneout"),
        (lambda: fr.LSTM(3, 4, recurrent_dropout=1.5), ValueError, "recurrent_dropout"),
        (lambda: fr.LSTM(3, 4, recurrent_dropout=True), TypeError, "recurrent_dropout"),
        (lambda: fr.LSTM(3, 4, proj_size=2, zoneout=0.1), ValueError, "proj_size"),
        (lambda: fr.GRU(3, 4, linear_before_reset=False, recurrent_dropout=0.1), ValueError, "reset-before"),
    ],
)
def test_bad_values_are_refused_by_name(make, error, named) -> None:
    with pytest.raises(error, match=named):
        make()


def test_the_compiled_stack_checks_the_masks_it_is_given() -> None:
    layer = fr.LSTM(3, 4, zoneout=0.2, recurrent_dropout=0.1, num_layers=2)
    stack = layer._stack
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(ValueError, match="zoneout_masks"):
        stack.forward_train(x, None, None, None, None, None, None)  # zoneout needs its factors
    with pytest.raises(ValueError, match=r"recurrent_masks\[1\]"):
        masks = [np.ones((1, 4), np.float32), np.ones((2, 4), np.float32)]
        stack.forward_train(x, None, None, None, None, masks, [np.ones((2, 1, 8), np.float32)] * 2)
    with pytest.raises(ValueError, match="zoneout_masks: expected 2 arrays"):
        stack.forward_train(x, None, None, None, None, None, [np.ones((2, 1, 8), np.float32)])


@pytest.mark.parametrize("cell", ["lstm", "gru-layer-norm", "rnn-relu"])
def test_model_files_keep_both(cell, tmp_path, rng) -> None:
    layer = build(cell, num_layers=2, seed=8)
    fr.save(layer, tmp_path / "m.frnn")
    loaded = fr.load(tmp_path / "m.frnn")
    assert loaded.config.zoneout == layer.config.zoneout == 0.3
    assert loaded.recurrent_dropout == layer.recurrent_dropout == 0.25
    x = rng.standard_normal((4, 2, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x)[0], layer(x)[0])


def test_exporters_refuse_what_they_cannot_express_by_name() -> None:
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="zoneout"):
        fr.to_onnx(fr.GRU(3, 4, zoneout=0.1))
    fr.to_onnx(fr.LSTM(3, 4, recurrent_dropout=0.2))  # training only, like dropout: nothing to export
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="zoneout"):
        fr.to_torch(fr.LSTM(3, 4, zoneout=0.1))
    with pytest.raises(ValueError, match="recurrent_dropout"):
        fr.to_torch(fr.LSTM(3, 4, recurrent_dropout=0.2))
