"""What crosses a process boundary, as Dask, multiprocessing and joblib send it (pickle): a layer or a cell
pickles to an equivalent model, a stream to a stream of that model from the same state, and a tape
refuses with a TypeError that says what to send instead. The Dask example itself runs in
test_examples.py."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import fusedrnn as fr

LAYERS = {
    "rnn-relu-bidirectional": lambda: fr.RNN(
        3, 5, num_layers=2, nonlinearity="relu", bidirectional=True, seed=0
    ),
    "lstm-proj-dropout": lambda: fr.LSTM(3, 6, num_layers=2, proj_size=4, dropout=0.3, seed=0),
    "lstm-peephole-batch-first": lambda: fr.LSTM(
        3, 5, peephole=True, forget_bias=1.0, batch_first=True, seed=0
    ),
    "gru-float64": lambda: fr.GRU(3, 5, num_layers=2, linear_before_reset=False, dtype=np.float64, seed=0),
    "gru-hard-sigmoid-residual": lambda: fr.GRU(
        5, 5, num_layers=2, gate_activation="hard_sigmoid", residual=True, seed=0
    ),
}
CELLS = {
    "rnn-cell": lambda: fr.RNNCell(3, 5, nonlinearity="relu", seed=0),
    "lstm-cell": lambda: fr.LSTMCell(3, 5, seed=0),
    "gru-cell": lambda: fr.GRUCell(3, 5, dtype=np.float64, seed=0),
}


def inputs(model: Any, rng: np.random.Generator) -> np.ndarray:
    if isinstance(model, fr.RNNBase):  # a layer: (T, N, I), or (N, T, I) batch_first
        return rng.standard_normal((4, 3, model.config.input_size)).astype(model.dtype)
    return rng.standard_normal((3, model.input_size)).astype(model.dtype)  # a cell: (N, I)


def flat(value: Any) -> list[np.ndarray]:
    """A call's result (y, state), with any (h, c) pair, or a dict of arrays, as a list of arrays."""
    if isinstance(value, dict):
        return [a for key in value for a in flat(value[key])]
    if isinstance(value, (tuple, list)):
        return [a for part in value for a in flat(part)]
    return [np.asarray(value)]


def assert_same(a: Any, b: Any) -> None:
    left, right = flat(a), flat(b)
    assert len(left) == len(right)
    for x, y in zip(left, right):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# -- layers and cells ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LAYERS) + list(CELLS))
def test_a_model_pickles_to_an_equivalent_independent_model(name: str) -> None:
    model = {**LAYERS, **CELLS}[name]()
    x = inputs(model, np.random.default_rng(1))
    clone = pickle.loads(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(clone) is type(model) and repr(clone) == repr(model) and clone.dtype == model.dtype
    assert list(clone.state_dict()) == list(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(clone.state_dict()[key], value)
    assert_same(clone(x), model(x))
    # the same generator state: the next recorded forward draws the same dropout masks
    tape, clone_tape = model.record(x), clone.record(x)
    assert_same(clone_tape.output, tape.output)
    grad = np.ones_like(tape.output)
    assert_same(clone_tape.backward(grad).params, tape.backward(grad).params)
    # its own weights: loading into the copy leaves the original alone
    y = model(x)
    clone.load_state_dict({k: np.zeros_like(v) for k, v in clone.state_dict().items()})
    assert_same(model(x), y)


def test_a_trained_layer_pickles_its_current_weights() -> None:
    layer = fr.GRU(3, 5, seed=0)
    x = inputs(layer, np.random.default_rng(1))
    opt = fr.optim.Adam(layer, lr=0.1)
    for _ in range(3):
        tape = layer.record(x)
        opt.step(tape.backward(np.ones_like(tape.output)).params)
    assert_same(pickle.loads(pickle.dumps(layer))(x), layer(x))


def test_a_pickled_layer_runs_in_a_new_process() -> None:
    """What a Dask or multiprocessing worker does: unpickle in another interpreter (which picks its own
    kernel variant and thread count) and call."""
    layer = fr.LSTM(3, 5, num_layers=2, seed=0)
    x = inputs(layer, np.random.default_rng(1))
    script = (
        "import pickle, sys\n"
        "import numpy as np\n"
        "layer, x = pickle.load(sys.stdin.buffer)\n"
        "y, (h, c) = layer(x)\n"
        "pickle.dump((y, h, c), sys.stdout.buffer)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps((layer, x)),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    y, h, c = pickle.loads(out.stdout)
    assert_same((y, (h, c)), layer(x))


# -- streams ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
def test_a_pickled_stream_continues_from_its_state(unbatched: bool) -> None:
    layer = fr.LSTM(3, 5, num_layers=2, proj_size=4, seed=0)
    xs = np.random.default_rng(1).standard_normal((6, 3) if unbatched else (6, 2, 3)).astype(np.float32)
    s = layer.stream(None if unbatched else 2)
    for t in range(3):
        s.step(xs[t])
    clone = pickle.loads(pickle.dumps(s))
    assert clone.steps == 3 and clone.batch_size == s.batch_size and clone.layer is not layer
    assert_same(clone.state, s.state)
    for t in range(3, 6):
        assert_same(clone.step(xs[t]), s.step(xs[t]))
    assert_same(clone.state, s.state)
    assert clone.steps == s.steps == 6


def test_a_stream_pickled_with_its_layer_runs_that_layer() -> None:
    """Pickled together, the stream's layer is the unpickled layer: weights loaded into it reach the
    stream, as they do in the original."""
    layer = fr.GRU(3, 4, seed=0)
    s = layer.stream(1)
    layer2, s2 = pickle.loads(pickle.dumps((layer, s)))
    assert s2.layer is layer2
    x = np.ones((1, 3), np.float32)
    other = fr.GRU(3, 4, seed=1).state_dict()
    layer.load_state_dict(other)
    layer2.load_state_dict(other)
    assert_same(s2.step(x), s.step(x))


# -- tapes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["layer", "cell"])
def test_a_tape_refuses_pickle_and_deepcopy_and_says_what_to_send(kind: str) -> None:
    model = fr.LSTM(3, 4, seed=0) if kind == "layer" else fr.LSTMCell(3, 4, seed=0)
    x = inputs(model, np.random.default_rng(1))
    tape = model.record(x)
    for send in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match=r"Tape \(LSTM(Cell)?\) cannot be pickled") as info:
            send(tape)
        assert "tape.output, tape.state, or the Gradients" in str(info.value)
        assert "pickle the model and its input and call record again" in str(info.value)
    # what the message offers to send instead does pickle
    grads = tape.backward(np.ones_like(tape.output))
    sent = pickle.loads(pickle.dumps((tape.output, tape.state, grads)))
    assert_same(sent[:2], (tape.output, tape.state))
    assert_same([sent[2].input, sent[2].state, sent[2].params], [grads.input, grads.state, grads.params])


def test_a_shallow_copied_tape_is_the_same_record() -> None:
    layer = fr.GRU(3, 4, seed=0)
    tape = layer.record(inputs(layer, np.random.default_rng(1)))
    twin = copy.copy(tape)
    assert twin is not tape and twin.output is tape.output
    grad = np.ones_like(tape.output)
    assert_same(twin.backward(grad).params, tape.backward(grad).params)
