"""Streams (``layer.stream``): step after step, the numbers of one call over the whole sequence; state,
reset, initial states, layouts, weight updates between steps, and errors."""

from __future__ import annotations

import numpy as np
import pytest

import fusedrnn as fr
from tolerances import STEP_VS_CALL

MAKERS = {
    "rnn-tanh": lambda **kw: fr.RNN(5, 9, **kw),
    "rnn-relu": lambda **kw: fr.RNN(5, 9, nonlinearity="relu", **kw),
    "lstm": lambda **kw: fr.LSTM(5, 9, **kw),
    "lstm-proj": lambda **kw: fr.LSTM(5, 9, proj_size=4, **kw),
    "lstm-peephole-clip": lambda **kw: fr.LSTM(5, 9, peephole=True, clip=0.7, **kw),
    "gru": lambda **kw: fr.GRU(5, 9, **kw),
    "gru-reset-before": lambda **kw: fr.GRU(5, 9, linear_before_reset=False, **kw),
    "rnn-tanh-clip": lambda **kw: fr.RNN(5, 9, clip=0.3, **kw),
    "rnn-relu-clip": lambda **kw: fr.RNN(5, 9, nonlinearity="relu", clip=0.3, **kw),
    "gru-clip": lambda **kw: fr.GRU(5, 9, clip=0.3, **kw),
    "gru-reset-before-clip": lambda **kw: fr.GRU(5, 9, linear_before_reset=False, clip=0.3, **kw),
}


def state_arrays(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "layers, residual", [(1, False), (3, False), (3, True)], ids=["L1", "L3", "L3-residual"]
)
@pytest.mark.parametrize("batch", [1, 3], ids=["N1", "N3"])
@pytest.mark.parametrize("kind", list(MAKERS))
def test_steps_give_the_call(kind, batch, layers, residual, dtype, rng):
    layer = MAKERS[kind](num_layers=layers, residual=residual, dtype=dtype, seed=3)
    x = rng.standard_normal((12, batch, 5)).astype(dtype)
    y, final = layer(x)
    s = layer.stream(batch)
    ys = np.stack([s.step(x[t]) for t in range(12)])
    assert ys.shape == y.shape and ys.dtype == y.dtype
    np.testing.assert_allclose(ys, y, **STEP_VS_CALL[dtype].kw())
    for got, want in zip(state_arrays(s.state), state_arrays(final)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, **STEP_VS_CALL[dtype].kw())
    assert s.steps == 12


@pytest.mark.parametrize("batch", [1, 3, 20])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_steps_match_the_call(kind, batch, rng):
    """With the panel kernels (AVX2, AVX-512) every float32 product sums each element in the same order
    whatever the number of rows, so a step gives the call's bits; the baseline's general products may round
    the input projection differently."""
    layer = (fr.LSTM if kind == "lstm" else fr.GRU)(20, 33, num_layers=2, seed=0)
    x = rng.standard_normal((30, batch, 20)).astype(np.float32)
    s = layer.stream(batch)
    steps = np.stack([s.step(x[t]) for t in range(30)])
    if fr._core.isa != "baseline":  # the panel kernels (AVX2, AVX-512)
        np.testing.assert_array_equal(steps, layer(x)[0])
    else:
        np.testing.assert_allclose(steps, layer(x)[0], **STEP_VS_CALL[np.float32].kw())


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_steps_match_the_call_whichever_way_the_weights_are_swept(kind, rng):
    """Steps alternate the order in which they read the weights (a stream's calls too); the order never
    changes a sum. One step before the reset puts the stream's steps on the other order than the call's."""
    layer = (fr.LSTM if kind == "lstm" else fr.GRU)(20, 70, num_layers=2, seed=2)
    x = rng.standard_normal((11, 2, 20)).astype(np.float32)
    s = layer.stream(2)
    s.step(x[0])
    s.reset()
    steps = np.stack([s.step(x[t]) for t in range(11)])
    if fr._core.isa != "baseline":  # the panel kernels (AVX2, AVX-512)
        np.testing.assert_array_equal(steps, layer(x)[0])
    else:
        np.testing.assert_allclose(steps, layer(x)[0], **STEP_VS_CALL[np.float32].kw())


def test_a_stream_keeps_its_workspace_to_its_own_stack():
    layer, other = fr.LSTM(4, 6), fr.LSTM(4, 6)
    h = np.zeros((1, 1, 6), np.float32)
    with pytest.raises(ValueError, match="workspace: expected one made by this stack"):
        layer._stack.step(np.zeros((1, 4), np.float32), h, h.copy(), other._stack.new_workspace())


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unbatched_stream_and_initial_state(kind, rng):
    layer = MAKERS[kind](num_layers=2, seed=1)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    h0 = rng.standard_normal((2, 9)).astype(np.float32)
    state = (h0, rng.standard_normal((2, 9)).astype(np.float32)) if kind == "lstm" else h0
    y, final = layer(x, state)
    s = layer.stream(state=state)
    assert s.batch_size is None
    ys = np.stack([s.step(x[t]) for t in range(7)])
    assert ys.shape == (7, 9)
    np.testing.assert_allclose(ys, y, **STEP_VS_CALL[np.float32].kw())
    for got, want in zip(state_arrays(s.state), state_arrays(final)):
        np.testing.assert_allclose(got, want, **STEP_VS_CALL[np.float32].kw())


def test_lstm_state_with_only_h0(rng):
    layer = fr.LSTM(5, 9, seed=0)
    x = rng.standard_normal((4, 2, 5)).astype(np.float32)
    h0 = rng.standard_normal((1, 2, 9)).astype(np.float32)
    y, _ = layer(x, (h0, None))
    s = layer.stream(2, state=(h0, None))
    np.testing.assert_allclose(np.stack([s.step(x[t]) for t in range(4)]), y, **STEP_VS_CALL[np.float32].kw())


def test_reset_and_chunks_continue_the_sequence(rng):
    layer = fr.GRU(5, 9, num_layers=2, seed=0)
    x = rng.standard_normal((10, 2, 5)).astype(np.float32)
    s = layer.stream(2)
    first = [s.step(x[t]) for t in range(4)]
    # the state after 4 steps, fed to a call over the rest, continues the sequence
    y_rest, _ = layer(x[4:], s.state)
    np.testing.assert_allclose(layer(x)[0][4:], y_rest, **STEP_VS_CALL[np.float32].kw())
    s.reset()
    assert s.steps == 0
    np.testing.assert_allclose(s.state, 0.0)
    again = [s.step(x[t]) for t in range(4)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


def test_state_is_a_copy(rng):
    layer = fr.LSTM(5, 9, seed=0)
    s = layer.stream(1)
    s.step(rng.standard_normal((1, 5)))
    h, c = s.state
    h[...] = 100.0
    assert not np.array_equal(s.state[0], h)


def test_batch_first_layer_streams_the_same(rng):
    layer = fr.LSTM(5, 9, batch_first=True, seed=0)
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)  # (N, T, I)
    y, _ = layer(x)
    s = layer.stream(3)
    ys = np.stack([s.step(x[:, t]) for t in range(6)], axis=1)  # non-contiguous x_t
    np.testing.assert_allclose(ys, y, **STEP_VS_CALL[np.float32].kw())


def test_other_input_types_are_converted(rng):
    layer = fr.RNN(5, 9, seed=0)
    x = rng.standard_normal((3, 2, 5))  # float64 input to a float32 layer
    y, _ = layer(x)
    s = layer.stream(2)
    ys = np.stack([s.step(x[0]), s.step(x[1].tolist()), s.step(x[2])])
    np.testing.assert_allclose(ys, y, **STEP_VS_CALL[np.float32].kw())


def test_weight_changes_between_steps_are_picked_up(rng):
    layer = fr.LSTM(5, 9, seed=0)
    x = rng.standard_normal((2, 1, 5)).astype(np.float32)
    s = layer.stream(1)
    s.step(x[0])
    state = s.state
    params = layer._parameter_arrays()
    params["weight_hh_l0"] *= 0.5
    layer._mark_weights_changed()
    y1 = s.step(x[1])
    expected, _ = layer(x[1:], state)
    np.testing.assert_allclose(y1, expected[0], **STEP_VS_CALL[np.float32].kw())
    fresh = fr.LSTM(5, 9, seed=1)
    fresh.load_state_dict(layer.state_dict())
    np.testing.assert_allclose(fresh(x[1:], state)[0][0], y1, **STEP_VS_CALL[np.float32].kw())


def test_bidirectional_cannot_stream():
    with pytest.raises(ValueError, match=r"bidirectional=True\) cannot stream"):
        fr.GRU(3, 4, bidirectional=True).stream(1)


@pytest.mark.parametrize(
    "batch_size, x_t, error, match",
    [
        (2, np.zeros((3, 5)), ValueError, r"x_t must have shape \(2, 5\)"),
        (2, np.zeros(5), ValueError, r"x_t must have shape \(2, 5\)"),
        (None, np.zeros((1, 5)), ValueError, r"x_t must have shape \(5,\).*unbatched"),
        (1, np.array([["a"] * 5]), TypeError, "x_t must be an array of real numbers"),
        (1, None, TypeError, "x_t"),
    ],
    ids=["wrong-batch", "missing-batch-axis", "batch-axis-when-unbatched", "strings", "none"],
)
def test_step_errors(batch_size, x_t, error, match):
    s = fr.LSTM(5, 9).stream(batch_size)
    with pytest.raises(error, match=match):
        s.step(x_t)
    assert s.steps == 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(batch_size=0), ValueError, "batch_size must be an int >= 1"),
        (dict(batch_size=2.0), TypeError, "batch_size must be an int"),
        (dict(batch_size=2, state=np.zeros((1, 2, 9))), TypeError, r"tuple \(h0, c0\)"),
        (
            dict(batch_size=2, state=(np.zeros((1, 3, 9)), None)),
            ValueError,
            r"state\[0\] \(h0\) must have shape",
        ),
    ],
    ids=["zero-batch", "float-batch", "lstm-state-not-a-tuple", "state-wrong-batch"],
)
def test_stream_construction_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fr.LSTM(5, 9).stream(**kwargs)


def test_repr():
    s = fr.GRU(5, 9).stream(4)
    assert repr(s) == "Stream(GRU(5, 9), batch_size=4, steps=0)"
