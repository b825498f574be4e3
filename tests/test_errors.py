"""Bad input of every kind: a ValueError or TypeError whose message names the argument, the expected and
the actual value; sizes too large to allocate raise MemoryError; odd-but-valid input (non-contiguous,
another dtype, NaN in one sequence) gives the right answer; failed loads leave the model unchanged."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import pytest

import fusedrnn as fr
from tolerances import REGROUPED_F32


@contextlib.contextmanager
def raises(exc: type[BaseException], *fragments: str) -> Iterator[None]:
    """pytest.raises, plus: every fragment appears in the message."""
    with pytest.raises(exc) as info:
        yield
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message {message!r}"


# -- construction ------------------------------------------------------------------------------------------

CONSTRUCTION_ERRORS: list[tuple[str, Callable[[], Any], type[BaseException], tuple[str, ...]]] = [
    ("input_size-zero", lambda: fr.LSTM(0, 5), ValueError, ("input_size", ">= 1", "got 0")),
    ("input_size-negative", lambda: fr.GRU(-2, 5), ValueError, ("input_size", ">= 1", "got -2")),
    ("hidden_size-zero", lambda: fr.RNN(3, 0), ValueError, ("hidden_size", ">= 1", "got 0")),
    ("num_layers-zero", lambda: fr.LSTM(3, 4, num_layers=0), ValueError, ("num_layers", ">= 1", "got 0")),
    ("input_size-float", lambda: fr.LSTM(3.0, 4), TypeError, ("input_size", "int", "3.0")),
    ("hidden_size-str", lambda: fr.GRU(3, "4"), TypeError, ("hidden_size", "int", "'4'")),
    ("hidden_size-none", lambda: fr.RNN(3, None), TypeError, ("hidden_size", "int", "None")),
    ("num_layers-float", lambda: fr.LSTM(3, 4, 2.5), TypeError, ("num_layers", "int", "2.5")),
    ("input_size-bool", lambda: fr.LSTM(True, 4), TypeError, ("input_size", "int", "True")),
    ("dropout-negative", lambda: fr.LSTM(3, 4, 2, dropout=-0.1), ValueError, ("dropout", "[0, 1)", "-0.1")),
    ("dropout-one", lambda: fr.GRU(3, 4, 2, dropout=1.0), ValueError, ("dropout", "[0, 1)", "1.0")),
    ("dropout-big", lambda: fr.RNN(3, 4, 2, dropout=1.5), ValueError, ("dropout", "[0, 1)", "1.5")),
    ("dropout-nan", lambda: fr.RNN(3, 4, 2, dropout=float("nan")), ValueError, ("dropout", "[0, 1)", "nan")),
    ("dropout-str", lambda: fr.LSTM(3, 4, 2, dropout="0.5"), TypeError, ("dropout", "number", "'0.5'")),
    ("dropout-none", lambda: fr.LSTM(3, 4, 2, dropout=None), TypeError, ("dropout", "number", "None")),
    ("proj-equal", lambda: fr.LSTM(3, 4, proj_size=4), ValueError, ("proj_size", "hidden_size=4", "got 4")),
    ("proj-larger", lambda: fr.LSTM(3, 4, proj_size=9), ValueError, ("proj_size", "hidden_size=4", "got 9")),
    ("proj-negative", lambda: fr.LSTM(3, 4, proj_size=-1), ValueError, ("proj_size", ">= 0", "got -1")),
    ("proj-float", lambda: fr.LSTM(3, 4, proj_size=1.5), TypeError, ("proj_size", "int", "1.5")),
    (
        "nonlinearity-unknown",
        lambda: fr.RNN(3, 4, nonlinearity="sigmoid"),
        ValueError,
        ("nonlinearity", "'tanh', 'relu'", "'sigmoid'"),
    ),
    (
        "nonlinearity-none",
        lambda: fr.RNN(3, 4, nonlinearity=None),
        TypeError,
        ("nonlinearity", "'tanh'", "None"),
    ),
    (
        "cell-nonlinearity",
        lambda: fr.RNNCell(3, 4, nonlinearity="gelu"),
        ValueError,
        ("nonlinearity", "'relu'", "'gelu'"),
    ),
    ("dtype-int", lambda: fr.LSTM(3, 4, dtype=np.int32), ValueError, ("dtype", "float32", "int32")),
    ("dtype-half", lambda: fr.GRU(3, 4, dtype=np.float16), ValueError, ("dtype", "float64", "float16")),
    (
        "dtype-complex",
        lambda: fr.GRU(3, 4, dtype=np.complex64),
        ValueError,
        ("dtype", "float32", "complex64"),
    ),
    ("dtype-garbage", lambda: fr.RNN(3, 4, dtype="floaty"), TypeError, ("dtype", "float32", "floaty")),
    ("seed-negative", lambda: fr.LSTM(3, 4, seed=-1), ValueError, ("seed", "non-negative", "-1")),
    ("seed-str", lambda: fr.LSTM(3, 4, seed="abc"), TypeError, ("seed", "int", "abc")),
    ("bias-str", lambda: fr.LSTM(3, 4, bias="yes"), TypeError, ("bias", "bool", "yes")),
    ("bidirectional-int", lambda: fr.GRU(3, 4, bidirectional=2), TypeError, ("bidirectional", "bool", "2")),
    ("batch_first-none", lambda: fr.GRU(3, 4, batch_first=None), TypeError, ("batch_first", "bool", "None")),
    ("cell-input_size", lambda: fr.LSTMCell(0, 3), ValueError, ("input_size", ">= 1", "got 0")),
    ("cell-hidden_size", lambda: fr.GRUCell(3, 2.0), TypeError, ("hidden_size", "int", "2.0")),
    ("cell-dtype", lambda: fr.RNNCell(3, 2, dtype=np.int64), ValueError, ("dtype", "float32", "int64")),
]


@pytest.mark.parametrize(
    "build,exc,fragments", [c[1:] for c in CONSTRUCTION_ERRORS], ids=[c[0] for c in CONSTRUCTION_ERRORS]
)
def test_construction_errors(
    build: Callable[[], Any], exc: type[BaseException], fragments: tuple[str, ...]
) -> None:
    with raises(exc, *fragments):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: fr.LSTM(10**6, 10**6),
        lambda: fr.GRU(10, 10**6, num_layers=1000),
        lambda: fr.RNN(10**12, 10**12, bidirectional=True),
        lambda: fr.LSTMCell(10**6, 10**6),
        lambda: fr.LSTM(10**6, 10**6, proj_size=10, dtype=np.float64),
    ],
    ids=["lstm", "gru-deep", "rnn-huge", "lstmcell", "lstm-proj-f64"],
)
def test_too_large_to_allocate_raises_memory_error(build: Callable[[], Any]) -> None:
    with raises(MemoryError, "bytes", "GiB"):
        build()


def test_call_too_large_to_allocate_raises_memory_error() -> None:
    # Zero-stride views: huge shapes that cost no memory until converted.
    x = np.broadcast_to(np.float32(0), (10**6, 10**6, 3))
    with raises(MemoryError, "x of shape (1000000, 1000000, 3)", "bytes"):
        fr.LSTM(3, 8)(x)
    with raises(MemoryError, "bytes"):
        fr.GRU(3, 8, batch_first=True).record(x)
    with raises(MemoryError, "bytes"):
        fr.LSTMCell(3, 8)(np.broadcast_to(np.float32(0), (10**13, 3)))


# -- calls -------------------------------------------------------------------------------------------------


@pytest.fixture
def lstm() -> fr.LSTM:
    return fr.LSTM(4, 6, num_layers=2, seed=0)


@pytest.fixture
def gru() -> fr.GRU:
    return fr.GRU(4, 6, seed=0)


X = np.zeros((5, 2, 4), np.float32)


def test_x_wrong_ndim(lstm: fr.LSTM, gru: fr.GRU) -> None:
    with raises(ValueError, "x", "3-D", "(T, N, input_size)", "1-D", "(4,)"):
        lstm(np.zeros(4))
    with raises(ValueError, "x", "3-D", "4-D", "(1, 5, 2, 4)"):
        gru(np.zeros((1, 5, 2, 4)))
    with raises(ValueError, "x", "(N, T, input_size)", "0-D"):
        fr.GRU(4, 6, batch_first=True)(np.float32(1))
    with raises(ValueError, "x", "3-D", "1-D"):
        gru.record(np.zeros(4))


def test_x_wrong_features(lstm: fr.LSTM) -> None:
    with raises(ValueError, "x", "input_size=4", "(5, 2, 3)"):
        lstm(np.zeros((5, 2, 3)))
    with raises(ValueError, "x", "input_size=4", "(5, 7)"):
        lstm(np.zeros((5, 7)))
    with raises(ValueError, "x", "input_size=4", "(5, 2, 3)"):
        lstm.record(np.zeros((5, 2, 3)))


def test_x_empty(gru: fr.GRU) -> None:
    with raises(ValueError, "x", "at least one", "(0, 2, 4)"):
        gru(np.zeros((0, 2, 4)))
    with raises(ValueError, "x", "at least one", "(5, 0, 4)"):
        gru(np.zeros((5, 0, 4)))


@pytest.mark.parametrize(
    "value,fragments",
    [
        (np.zeros((5, 2, 4), np.complex64), ("complex", "complex64")),
        (np.zeros((5, 2, 4), object), ("object",)),
        (np.full((5, 2, 4), "a"), ("string", "<U1")),
        (np.zeros((5, 2, 4), bool), ("bool",)),
        (None, ("None",)),
        ([[1.0, 2.0], [3.0]], ("list",)),
        ("abc", ("string",)),
    ],
    ids=["complex", "object", "string", "bool", "none", "ragged", "str"],
)
def test_x_wrong_kind(lstm: fr.LSTM, value: Any, fragments: tuple[str, ...]) -> None:
    with raises(TypeError, "x", "real numbers", *fragments):
        lstm(value)
    with raises(TypeError, "x", *fragments):
        lstm.record(value)


def test_state_wrong_shape(lstm: fr.LSTM, gru: fr.GRU) -> None:
    with raises(ValueError, "h0", "(1, 2, 6)", "(1, 3, 6)"):
        gru(X, np.zeros((1, 3, 6)))
    with raises(ValueError, "h0", "(1, 2, 6)", "(2, 6)"):
        gru(X, np.zeros((2, 6)))
    with raises(ValueError, "h0", "(1, 6)", "(1, 1, 6)"):  # unbatched input wants an unbatched state
        gru(X[:, 0], np.zeros((1, 1, 6)))
    with raises(ValueError, "state[0] (h0)", "(2, 2, 6)", "(1, 2, 6)"):
        lstm(X, (np.zeros((1, 2, 6)), np.zeros((2, 2, 6))))
    with raises(ValueError, "state[1] (c0)", "(2, 2, 6)", "(2, 2, 5)"):
        lstm(X, (np.zeros((2, 2, 6)), np.zeros((2, 2, 5))))
    proj = fr.LSTM(4, 6, proj_size=2)
    with raises(ValueError, "state[1] (c0)", "(1, 2, 6)", "(1, 2, 2)"):
        proj(X, (np.zeros((1, 2, 2)), np.zeros((1, 2, 2))))
    with raises(ValueError, "state", "(1, 2, 6)", "(1, 2, 5)"):
        gru.record(X, np.zeros((1, 2, 5)))


def test_state_wrong_kind(lstm: fr.LSTM, gru: fr.GRU) -> None:
    with raises(TypeError, "state", "tuple (h0, c0)", "array of shape (2, 2, 6)"):
        lstm(X, np.zeros((2, 2, 6)))
    with raises(TypeError, "state", "tuple (h0, c0)", "tuple of length 3"):
        lstm(X, (np.zeros((2, 2, 6)),) * 3)
    with raises(TypeError, "state", "tuple (h0, c0)", "array of shape"):
        lstm.record(X, np.zeros((2, 2, 6)))
    with raises(TypeError, "h0", "not a tuple", "tuple of length 2"):
        gru(X, (np.zeros((1, 2, 6)), np.zeros((1, 2, 6))))
    with raises(TypeError, "h0", "complex"):
        gru(X, np.zeros((1, 2, 6), np.complex128))
    with raises(TypeError, "state[1] (c0)", "string"):
        lstm(X, (np.zeros((2, 2, 6)), np.full((2, 2, 6), "x")))


@pytest.mark.parametrize(
    "lengths,exc,fragments",
    [
        ([5, 5, 5], ValueError, ("lengths", "2 values", "(2,)", "(3,)")),
        ([5], ValueError, ("lengths", "2 values", "(1,)")),
        (5, ValueError, ("lengths", "(2,)", "()")),
        ([[5, 5]], ValueError, ("lengths", "(2,)", "(1, 2)")),
        ([5, 0], ValueError, ("lengths", "between 1 and", "T=5", "0 at index 1")),
        ([-1, 5], ValueError, ("lengths", "between 1 and", "-1 at index 0")),
        ([5, 6], ValueError, ("lengths", "T=5", "6 at index 1")),
        ([5, 2.5], ValueError, ("lengths", "whole numbers", "2.5 at index 1")),
        ([5, float("nan")], ValueError, ("lengths", "whole numbers", "nan")),
        (["a", "b"], TypeError, ("lengths", "ints", "<U1")),
        (np.array([True, True]), TypeError, ("lengths", "ints", "bool")),
        ([3 + 1j, 2], TypeError, ("lengths", "ints", "complex")),
    ],
    ids=[
        "too-many",
        "too-few",
        "scalar",
        "2d",
        "zero",
        "negative",
        "beyond-T",
        "fractional",
        "nan",
        "strings",
        "bool",
        "complex",
    ],
)
def test_lengths_errors(
    gru: fr.GRU, lengths: Any, exc: type[BaseException], fragments: tuple[str, ...]
) -> None:
    with raises(exc, *fragments):
        gru(X, None, lengths)
    with raises(exc, *fragments):
        gru.record(X, None, lengths)


def test_lengths_unbatched(gru: fr.GRU) -> None:
    with raises(ValueError, "lengths", "1 value", "(2,)"):
        gru(X[:, 0], None, [3, 3])
    with raises(ValueError, "lengths", "T=5", "9"):
        gru(X[:, 0], None, 9)


def test_grad_output_and_grad_state_errors(lstm: fr.LSTM, gru: fr.GRU) -> None:
    tape = gru.record(X)
    with raises(ValueError, "grad_output", "(5, 2, 6)", "(5, 2, 5)"):
        tape.backward(np.zeros((5, 2, 5)))
    with raises(ValueError, "grad_output", "(5, 2, 6)", "(2, 5, 6)"):
        tape.backward(np.zeros((2, 5, 6)))
    with raises(TypeError, "grad_output", "complex"):
        tape.backward(np.zeros((5, 2, 6), complex))
    with raises(ValueError, "grad_state", "(1, 2, 6)", "(1, 6)"):
        tape.backward(np.zeros((5, 2, 6)), np.zeros((1, 6)))
    with raises(TypeError, "grad_state", "not a tuple"):
        tape.backward(np.zeros((5, 2, 6)), (np.zeros((1, 2, 6)), None))
    tape = lstm.record(X)
    with raises(TypeError, "grad_state", "tuple", "array of shape (2, 2, 6)"):
        tape.backward(np.zeros((5, 2, 6)), np.zeros((2, 2, 6)))
    with raises(ValueError, "grad_state[0]", "(2, 2, 6)", "(1, 2, 6)"):
        tape.backward(np.zeros((5, 2, 6)), (np.zeros((1, 2, 6)), None))
    with raises(ValueError, "grad_state[1]", "(2, 2, 6)", "(2, 2)"):
        tape.backward(np.zeros((5, 2, 6)), (None, np.zeros((2, 2))))
    tape = lstm.record(X[:, 0])  # unbatched
    with raises(ValueError, "grad_output", "(5, 6)", "(5, 1, 6)"):
        tape.backward(np.zeros((5, 1, 6)))


def test_cell_errors() -> None:
    cell = fr.LSTMCell(4, 6)
    gcell = fr.GRUCell(4, 6)
    with raises(ValueError, "x", "2-D", "(N, input_size)", "3-D", "(1, 2, 4)"):
        cell(np.zeros((1, 2, 4)))
    with raises(ValueError, "x", "input_size=4", "(2, 5)"):
        gcell(np.zeros((2, 5)))
    with raises(ValueError, "h", "(2, 6)", "(3, 6)"):
        gcell(np.zeros((2, 4)), np.zeros((3, 6)))
    with raises(ValueError, "h", "(6,)", "(1, 6)"):
        gcell(np.zeros(4), np.zeros((1, 6)))
    with raises(TypeError, "state", "tuple (h, c)", "array of shape (2, 6)"):
        cell(np.zeros((2, 4)), np.zeros((2, 6)))
    with raises(ValueError, "state[1] (c)", "(2, 6)", "(2, 7)"):
        cell(np.zeros((2, 4)), (np.zeros((2, 6)), np.zeros((2, 7))))
    with raises(TypeError, "x", "complex"):
        cell(np.zeros((2, 4), complex))
    tape = cell.record(np.zeros((2, 4)))
    with raises(ValueError, "grad_output", "(2, 6)", "(6,)"):
        tape.backward(np.zeros(6))
    with raises(ValueError, "grad_state[1]", "(2, 6)", "(2, 5)"):
        tape.backward(np.zeros((2, 6)), (None, np.zeros((2, 5))))


def test_set_num_threads_errors() -> None:
    before = fr.get_num_threads()
    with raises(ValueError, "n", ">= 1", "got 0"):
        fr.set_num_threads(0)
    with raises(ValueError, "n", ">= 1", "got -2"):
        fr.set_num_threads(-2)
    with raises(TypeError, "n", "int", "1.5"):
        fr.set_num_threads(1.5)
    with raises(TypeError, "n", "int", "'2'"):
        fr.set_num_threads("2")
    with raises(TypeError, "n", "int", "True"):
        fr.set_num_threads(True)
    assert fr.get_num_threads() == before


# -- load_state_dict is strict and atomic ------------------------------------------------------------------


def _bad_state_dicts(
    good: dict[str, np.ndarray],
) -> list[tuple[str, Any, type[BaseException], tuple[str, ...]]]:
    """Each changes every entry (so a partial load would show) and breaks one."""
    changed = {k: v + 1.0 for k, v in good.items()}
    last = list(good)[-1]
    missing = dict(changed)
    del missing["weight_hh_l0"]
    unexpected = dict(changed, extra_weight=np.zeros(3))
    misshapen = dict(changed)
    misshapen[last] = np.zeros(good[last].size + 1)
    transposed = dict(changed, weight_ih_l1=changed["weight_ih_l1"].T)
    complex_value = dict(changed)
    complex_value[last] = changed[last].astype(complex)
    string_value = dict(changed)
    string_value[last] = np.full(good[last].shape, "w")
    none_value = dict(changed)
    none_value[last] = None
    return [
        ("missing", missing, ValueError, ("missing", "'weight_hh_l0'")),
        ("unexpected", unexpected, ValueError, ("unexpected", "'extra_weight'")),
        ("misshapen", misshapen, ValueError, (f"state_dict[{last!r}]", str(good[last].shape), "got shape")),
        ("transposed", transposed, ValueError, ("state_dict['weight_ih_l1']", "(24, 6)", "(6, 24)")),
        ("complex", complex_value, TypeError, (f"state_dict[{last!r}]", "complex")),
        ("string", string_value, TypeError, (f"state_dict[{last!r}]", "string")),
        ("none", none_value, TypeError, (f"state_dict[{last!r}]", "None")),
        ("not-a-mapping", list(changed.values()), TypeError, ("state_dict", "mapping", "list")),
    ]


@pytest.mark.parametrize(
    "which", range(8), ids=[c[0] for c in _bad_state_dicts(fr.LSTM(4, 6, 2).state_dict())]
)
def test_failed_load_leaves_model_unchanged(which: int) -> None:
    model = fr.LSTM(4, 6, num_layers=2, seed=0)
    x = np.linspace(-1, 1, 5 * 2 * 4).reshape(5, 2, 4)
    y_before = model(x)[0]
    before = model.state_dict()
    _, bad, exc, fragments = _bad_state_dicts(before)[which]
    with raises(exc, *fragments):
        model.load_state_dict(bad)
    after = model.state_dict()
    assert list(after) == list(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    np.testing.assert_array_equal(model(x)[0], y_before)


# -- odd but valid input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_non_contiguous_input(kind: str, rng: np.random.Generator) -> None:
    cls = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[kind]
    m = cls(4, 6, num_layers=2, bidirectional=True, seed=0)
    big = rng.standard_normal((10, 3, 8)).astype(np.float32)
    x = big[::2, :, ::2]  # strided view
    assert not x.flags.c_contiguous
    expected_y, expected_s = m(np.ascontiguousarray(x))
    for variant in (
        x,
        np.asfortranarray(x),
        x[::-1][::-1],
        np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2),
    ):
        y, s = m(variant)
        np.testing.assert_array_equal(y, expected_y)
    h0 = rng.standard_normal((4, 6, 3)).astype(np.float32).transpose(0, 2, 1)  # (4, 3, 6), not contiguous
    state = (h0, h0) if kind == "lstm" else h0
    contiguous_state = (np.ascontiguousarray(h0),) * 2 if kind == "lstm" else np.ascontiguousarray(h0)
    np.testing.assert_array_equal(m(x, state)[0], m(np.ascontiguousarray(x), contiguous_state)[0])
    tape = m.record(x)
    gy = rng.standard_normal((tape.output.shape[2], 3, 5)).astype(np.float32).transpose(2, 1, 0)
    np.testing.assert_array_equal(tape.backward(gy).input, tape.backward(np.ascontiguousarray(gy)).input)


def test_float64_and_int_input_to_float32_model(rng: np.random.Generator) -> None:
    m = fr.LSTM(4, 6, bidirectional=True, seed=0)
    x64 = rng.standard_normal((5, 2, 4))
    y, (h, c) = m(x64)
    y32, (h32, c32) = m(x64.astype(np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, y32)
    np.testing.assert_array_equal(h, h32)
    xi = rng.integers(-3, 4, (5, 2, 4))
    np.testing.assert_array_equal(m(xi)[0], m(xi.astype(np.float32))[0])
    np.testing.assert_array_equal(m(xi.tolist())[0], m(xi.astype(np.float32))[0])
    # Values beyond float32's range become inf, as they would in float32, without a warning.
    y_big, _ = m(np.full((5, 2, 4), 1e300))
    assert y_big.dtype == np.float32


@pytest.mark.parametrize("kind", ["lstm", "lstm-proj", "gru", "gru-lbr0", "rnn_tanh", "rnn_relu"])
def test_nan_stays_in_its_sequence(kind: str, rng: np.random.Generator) -> None:
    kw = dict(num_layers=2, bidirectional=True, seed=0)
    m = {
        "lstm": lambda: fr.LSTM(4, 6, **kw),
        "lstm-proj": lambda: fr.LSTM(4, 6, proj_size=2, **kw),
        "gru": lambda: fr.GRU(4, 6, **kw),
        "gru-lbr0": lambda: fr.GRU(4, 6, linear_before_reset=False, **kw),
        "rnn_tanh": lambda: fr.RNN(4, 6, **kw),
        "rnn_relu": lambda: fr.RNN(4, 6, nonlinearity="relu", **kw),
    }[kind]()
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    x[2, 1, 0] = np.nan
    lengths = [5, 4, 3]
    y, state = m(x, None, lengths)
    h_n = state[0] if isinstance(state, tuple) else state
    assert np.isnan(y[:, 1]).any()
    for n in (0, 2):
        assert np.isfinite(y[:, n]).all() and np.isfinite(h_n[:, n]).all()
        y_alone, s_alone = m(x[: lengths[n], n : n + 1])
        h_alone = s_alone[0] if isinstance(s_alone, tuple) else s_alone
        np.testing.assert_allclose(y[: lengths[n], n], y_alone[:, 0], **REGROUPED_F32.kw())
        np.testing.assert_allclose(h_n[:, n], h_alone[:, 0], **REGROUPED_F32.kw())
    # The input gradient of the other sequences stays finite too.
    tape = m.record(x, None, lengths)
    g = tape.backward(np.ones_like(tape.output))
    assert np.isfinite(g.input[:, [0, 2]]).all()


def test_nan_in_one_initial_state(rng: np.random.Generator) -> None:
    m = fr.GRU(4, 6, num_layers=2, seed=0)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    h0 = np.zeros((2, 3, 6), np.float32)
    h0[1, 2, 3] = np.nan
    y, h_n = m(x, h0)
    y_ref, h_ref = m(x)
    np.testing.assert_allclose(y[:, :2], y_ref[:, :2], **REGROUPED_F32.kw())
    assert np.isnan(y[:, 2]).any()
