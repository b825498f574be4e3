"""Regression tests for faults of the public API: copies that shared weights with their original but not
its compiled copy of them, absurd sizes that were slow to refuse, and the faults the property tests
(test_properties.py) found in the Python layer."""

from __future__ import annotations

import contextlib
import copy
import pickle
import signal
import time
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn._config import StackConfig
from tolerances import STEP_VS_CALL

MODELS: dict[str, Callable[..., Any]] = {
    "lstm": lambda seed: fr.LSTM(3, 4, num_layers=2, seed=seed),
    "lstm-proj-bi": lambda seed: fr.LSTM(3, 4, proj_size=2, bidirectional=True, seed=seed),
    "gru": lambda seed: fr.GRU(3, 4, seed=seed),
    "rnn-relu": lambda seed: fr.RNN(3, 4, nonlinearity="relu", seed=seed),
    "lstmcell": lambda seed: fr.LSTMCell(3, 4, seed=seed),
    "grucell": lambda seed: fr.GRUCell(3, 4, seed=seed),
    "rnncell": lambda seed: fr.RNNCell(3, 4, seed=seed),
}
COPIERS: dict[str, Callable[[Any], Any]] = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
}


def x_for(model: Any) -> np.ndarray:
    """An input for one call: (T, N, I) for a layer, (N, I) for a cell."""
    shape = (5, 2, 3) if isinstance(model, fr.RNNBase) else (2, 3)
    return np.random.default_rng(7).standard_normal(shape).astype(np.float32)


def output(model: Any, x: np.ndarray) -> np.ndarray:
    out = model(x)
    if isinstance(model, fr.RNNBase):
        return out[0]
    return out[0] if isinstance(out, tuple) else out


def computed_from_state_dict(model: Any, x: np.ndarray) -> np.ndarray:
    """What ``model`` computes according to its state_dict: a fresh model of the same kind loaded with it."""
    fresh = copy.deepcopy(model)
    fresh.load_state_dict(model.state_dict())
    return output(fresh, x)


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# -- copies --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("copier", list(COPIERS))
@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("load_into", ["original", "copy"])
def test_a_copy_is_an_independent_consistent_model(kind: str, copier: str, load_into: str) -> None:
    """Loading weights into one of a model and its copy changes neither the other's state_dict nor its
    calls, and every model computes with the weights its state_dict shows. (copy.copy used to share the
    parameter arrays but not the compiled stack: the copy showed the new weights and computed with the
    old ones.)"""
    original = MODELS[kind](0)
    x = x_for(original)
    y_before = output(original, x)  # the compiled stack now holds the weights
    clone = COPIERS[copier](original)
    np.testing.assert_array_equal(output(clone, x), y_before)
    weights_before = original.state_dict()

    new_weights = MODELS[kind](1).state_dict()
    loaded, other = (original, clone) if load_into == "original" else (clone, original)
    loaded.load_state_dict(new_weights)

    assert_same_weights(loaded.state_dict(), new_weights)
    assert_same_weights(other.state_dict(), weights_before)
    np.testing.assert_array_equal(output(other, x), y_before)
    for model in (loaded, other):
        np.testing.assert_array_equal(output(model, x), computed_from_state_dict(model, x))
    assert not np.array_equal(output(loaded, x), y_before)


@pytest.mark.parametrize("copier", ["copy", "deepcopy"])
def test_an_in_place_update_of_a_copy_leaves_the_original_alone(copier: str) -> None:
    """An optimizer updates the parameter arrays in place: the copy's must be its own."""
    original = fr.GRU(3, 4, seed=0)
    x = x_for(original)
    y_before = output(original, x)
    clone = COPIERS[copier](original)
    opt = fr.optim.SGD(clone, lr=0.5)
    tape = clone.record(x)
    opt.step(tape.backward(np.ones_like(tape.output)).params)
    assert not np.array_equal(output(clone, x), y_before)
    np.testing.assert_array_equal(output(original, x), y_before)
    np.testing.assert_array_equal(output(original, x), computed_from_state_dict(original, x))


def test_copies_draw_their_own_dropout_masks() -> None:
    """A shallow copy used to share the random generator: one model's draws moved the other's."""
    original = fr.LSTM(3, 4, num_layers=2, dropout=0.5, seed=0)
    x = x_for(original)
    clone = copy.copy(original)
    first = original.record(x).dropout_masks
    again = clone.record(x).dropout_masks  # the same draws: the generator was copied in its state
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_deepcopy_keeps_an_optimizer_bound_to_its_layer() -> None:
    """Copied together, a layer and its optimizer stay bound: steps of the copied optimizer reach the
    copied layer's kernels, and leave the original alone."""
    layer = fr.RNN(3, 4, seed=0)
    opt = fr.optim.SGD(layer, lr=0.5)
    x = x_for(layer)
    y_before = output(layer, x)
    layer2, opt2 = copy.deepcopy((layer, opt))
    tape = layer2.record(x)
    opt2.step(tape.backward(np.ones_like(tape.output)).params)
    assert not np.array_equal(output(layer2, x), y_before)
    np.testing.assert_array_equal(output(layer2, x), computed_from_state_dict(layer2, x))
    np.testing.assert_array_equal(output(layer, x), y_before)


@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
def test_a_copied_stream_continues_on_its_own(unbatched: bool) -> None:
    """copy.copy(stream): a second stream of the same layer, from the same state and step count;
    stepping either leaves the other's state alone. (Streams could not be copied at all.)"""
    layer = fr.LSTM(3, 4, num_layers=2, seed=0)
    xs = np.random.default_rng(1).standard_normal((6, 3) if unbatched else (6, 2, 3)).astype(np.float32)
    y_all = layer(xs)[0]
    s = layer.stream(None if unbatched else 2)
    for t in range(3):
        s.step(xs[t])
    c = copy.copy(s)
    assert c.layer is s.layer and c.steps == 3 and c.batch_size == s.batch_size
    state = s.state
    for t in range(3, 6):
        np.testing.assert_allclose(c.step(xs[t]), y_all[t], **STEP_VS_CALL[np.float32].kw())
    for got, want in zip(s.state, state):  # the original did not move
        np.testing.assert_array_equal(got, want)
    for t in range(3, 6):
        np.testing.assert_allclose(s.step(xs[t]), y_all[t], **STEP_VS_CALL[np.float32].kw())
    assert s.steps == c.steps == 6


@pytest.mark.parametrize("copier", ["deepcopy", "pickle"])
def test_a_deep_copied_stream_runs_a_copy_of_the_layer(copier: str) -> None:
    layer = fr.GRU(3, 4, seed=0)
    xs = np.random.default_rng(1).standard_normal((4, 1, 3)).astype(np.float32)
    y_all = layer(xs)[0]
    s = layer.stream(1)
    s.step(xs[0])
    c = COPIERS[copier](s)
    assert c.layer is not layer and c.steps == 1
    np.testing.assert_array_equal(c.state, s.state)
    layer.load_state_dict(fr.GRU(3, 4, seed=1).state_dict())  # reaches s, not c
    np.testing.assert_allclose(c.step(xs[1]), y_all[1], **STEP_VS_CALL[np.float32].kw())
    assert not np.allclose(s.step(xs[1]), y_all[1], **STEP_VS_CALL[np.float32].kw())


# -- absurd sizes ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail (by interrupting it) a block that runs longer than ``seconds``; the interrupt reaches Python
    code, which is where the slow refusals spent their time."""

    def interrupt(signum: int, frame: Any) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    timed_out = False
    try:
        yield
    except TimeoutError:
        timed_out = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # Failed outside the handler: the interrupted frames' traceback is of no use (and pytest cannot
    # always render it).
    if timed_out:
        pytest.fail(f"took longer than {seconds} s", pytrace=False)


ABSURD = [
    ("lstm-layers", lambda: fr.LSTM(3, 4, num_layers=10**8), "num_layers=100000000"),
    ("lstm-layers-2**31", lambda: fr.LSTM(3, 4, num_layers=2**31), f"num_layers={2**31}"),
    ("gru-layers-bi", lambda: fr.GRU(3, 4, num_layers=2**31, bidirectional=True), f"num_layers={2**31}"),
    ("rnn-layers", lambda: fr.RNN(1, 1, num_layers=2**40), f"num_layers={2**40}"),
    ("lstm-hidden", lambda: fr.LSTM(3, 2**31), f"hidden_size={2**31}"),
    ("gru-input", lambda: fr.GRU(2**40, 4), f"input_size={2**40}"),
    ("rnn-hidden-deep", lambda: fr.RNN(3, 2**20, num_layers=10**4), "hidden_size=1048576"),
    ("lstm-proj", lambda: fr.LSTM(3, 2**40, proj_size=2**39), f"proj_size={2**39}"),
    ("lstm-peephole-layers", lambda: fr.LSTM(3, 4, num_layers=2**31, peephole=True), f"num_layers={2**31}"),
    ("lstmcell-hidden", lambda: fr.LSTMCell(3, 2**31), f"hidden_size={2**31}"),
    ("grucell-input", lambda: fr.GRUCell(2**40, 4), f"input_size={2**40}"),
    ("rnncell-both", lambda: fr.RNNCell(2**31, 2**31, nonlinearity="relu"), f"input_size={2**31}"),
    # Bytes of data alone would fit in 1 TiB; the bookkeeping of 4 * 10**9 arrays would not.
    ("rnn-tiny-layers", lambda: fr.RNN(1, 1, num_layers=10**9), "num_layers=1000000000"),
]


@pytest.mark.parametrize("build,argument", [a[1:] for a in ABSURD], ids=[a[0] for a in ABSURD])
def test_absurd_sizes_are_refused_at_once(build: Callable[[], Any], argument: str) -> None:
    """Refused with MemoryError, naming the argument and its value, within a second: the size is checked
    from a closed form before anything per layer is built (which took minutes and gigabytes)."""
    start = time.perf_counter()
    with within(1.0), pytest.raises(MemoryError) as info:
        build()
    assert time.perf_counter() - start < 1.0
    message = str(info.value)
    assert argument in message, message
    assert "parameters" in message and "bytes" in message, message


@pytest.mark.parametrize(
    "config",
    [
        StackConfig("lstm", 3, 4),
        StackConfig("lstm", 5, 9, num_layers=3, bidirectional=True, proj_size=4, peephole=True),
        StackConfig("lstm", 1, 2, num_layers=2, bias=False, proj_size=1),
        StackConfig("gru", 7, 8, num_layers=2, bias=False),
        StackConfig("gru", 17, 1, num_layers=3, bidirectional=True),
        StackConfig("rnn_tanh", 9, 16, num_layers=4, bidirectional=True, residual=True),
        StackConfig("rnn_relu", 1, 1),
    ],
    ids=repr,
)
def test_closed_form_parameter_count(config: StackConfig) -> None:
    shapes = config.param_shapes()
    assert config.num_parameters() == sum(int(np.prod(shape)) for _, shape in shapes)
    assert config.num_arrays() == len(shapes)


# -- found while writing the property tests ----------------------------------------------------------------


@pytest.mark.parametrize("build", [fr.LSTM, fr.GRU, fr.RNN, fr.LSTMCell, fr.GRUCell, fr.RNNCell])
def test_dtype_none_is_refused(build: Callable[..., Any]) -> None:
    """dtype=None used to give a float64 model (NumPy's reading of None), where PyTorch's None means the
    default, float32: refused rather than guessed."""
    with pytest.raises(TypeError, match=r"dtype must be numpy.float32 or numpy.float64, got None"):
        build(3, 4, dtype=None)


@pytest.mark.parametrize("strict", [None, "no", 2])
def test_load_state_dict_strict_must_be_a_bool(strict: Any) -> None:
    """strict=None or "no" used to pass as truthy or falsy; now the argument is checked like the others,
    before anything changes."""
    layer = fr.GRU(3, 4, seed=0)
    before = layer.state_dict()
    with pytest.raises(TypeError, match=f"strict must be a bool, got {strict!r}"):
        layer.load_state_dict(fr.GRU(3, 4, seed=1).state_dict(), strict=strict)
    assert_same_weights(layer.state_dict(), before)


def test_clip_type_error_shows_the_value() -> None:
    with pytest.raises(TypeError, match=r"clip: expected a number >= 0 \(0 for none\), got '0.5' \(str\)"):
        fr.LSTM(3, 4, clip="0.5")
