"""Keras 3 import (torch backend): from_keras + call_as_keras against the Keras layers' own outputs, with
random weights (biases included) for LSTM, GRU (reset_after True and False), SimpleRNN (tanh, relu),
go_backwards, Bidirectional (concat, sum), initial states, return_sequences/return_state, float64; and
the clear errors for what the kernels do not compute."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from closeness import assert_scaled_close
from tolerances import VS_KERAS

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend was chosen first
    pytest.skip("these tests run Keras with the torch backend", allow_module_level=True)

import fusedrnn as fr  # noqa: E402
from fusedrnn.interop import Reverse, SumDirections, call_as_keras  # noqa: E402

# Keras' own Variable.numpy() under NumPy 2 (get_weights, used here to randomize the weights).
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

N, T, IN, U = 3, 6, 4, 5


def close(actual: Any, expected: Any, dtype: Any, what: str) -> None:
    assert_scaled_close(actual, expected, *VS_KERAS[dtype], what)


def to_np(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [to_np(v) for v in value]
    return np.asarray(keras.ops.convert_to_numpy(value))


def randomize(layer: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype) for w in layer.get_weights()])


def build(layer: Any, dtype: Any, seed: int) -> Any:
    layer(np.zeros((N, T, IN), dtype))
    randomize(layer, seed)
    return layer


def compare(layer: Any, dtype: Any = np.float32, initial: bool = False, seed: int = 0) -> None:
    rng = np.random.default_rng(seed + 100)
    x = rng.standard_normal((N, T, IN)).astype(dtype)
    initial_state = None
    if initial:
        inner = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
        count = (2 if isinstance(inner, keras.layers.LSTM) else 1) * (
            2 if isinstance(layer, keras.layers.Bidirectional) else 1
        )
        initial_state = [rng.standard_normal((N, U)).astype(dtype) for _ in range(count)]
    expected = to_np(layer(x, initial_state=initial_state) if initial else layer(x))
    converted = fr.from_keras(layer)
    got = call_as_keras(
        converted, x, initial_state, return_sequences=layer.return_sequences, return_state=layer.return_state
    )
    if not layer.return_state:
        expected, got = [expected], [got]
    assert len(got) == len(expected)
    for k, (a, e) in enumerate(zip(got, expected)):
        close(a, e, dtype, f"{layer.name} result {k}")


FLAGS = [
    pytest.param(dict(return_sequences=True, return_state=True), id="seq-state"),
    pytest.param(dict(return_sequences=False, return_state=False), id="last"),
    pytest.param(dict(return_sequences=True, return_state=False, go_backwards=True), id="seq-backwards"),
    pytest.param(
        dict(return_sequences=False, return_state=True, go_backwards=True), id="last-state-backwards"
    ),
]
KINDS = [
    pytest.param("LSTM", {}, id="lstm"),
    pytest.param("LSTM", {"use_bias": False}, id="lstm-nobias"),
    pytest.param("GRU", {"reset_after": True}, id="gru-reset-after"),
    pytest.param("GRU", {"reset_after": False}, id="gru-reset-before"),
    pytest.param("LSTM", {"recurrent_activation": "hard_sigmoid"}, id="lstm-hard-sigmoid"),
    pytest.param("GRU", {"reset_after": True, "recurrent_activation": "hard_sigmoid"}, id="gru-hard-sigmoid"),
    pytest.param(
        "GRU",
        {"reset_after": False, "recurrent_activation": "hard_sigmoid"},
        id="gru-reset-before-hard-sigmoid",
    ),
    pytest.param("SimpleRNN", {}, id="simplernn-tanh"),
    pytest.param("SimpleRNN", {"activation": "relu"}, id="simplernn-relu"),
]


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("kind, options", KINDS)
def test_layer_matches_keras(kind: str, options: dict, flags: dict) -> None:
    layer = build(getattr(keras.layers, kind)(U, **options, **flags), np.float32, seed=1)
    compare(layer, seed=2)


@pytest.mark.parametrize("kind, options", KINDS)
def test_initial_state_matches_keras(kind: str, options: dict) -> None:
    layer = build(
        getattr(keras.layers, kind)(U, return_sequences=True, return_state=True, **options),
        np.float32,
        seed=3,
    )
    compare(layer, initial=True, seed=4)


def test_go_backwards_is_a_reverse_in_processing_order() -> None:
    layer = build(keras.layers.GRU(U, go_backwards=True, return_sequences=True), np.float32, seed=5)
    converted = fr.from_keras(layer)
    assert isinstance(converted, Reverse) and converted.order == "processing"
    assert converted.batch_first


@pytest.mark.parametrize("merge", ["concat", "sum"])
@pytest.mark.parametrize("flags", FLAGS[:2])
@pytest.mark.parametrize("kind, options", [KINDS[0], KINDS[2], KINDS[3], KINDS[5]])
def test_bidirectional_matches_keras(kind: str, options: dict, flags: dict, merge: str) -> None:
    inner = getattr(keras.layers, kind)(U, **options, **flags)
    layer = build(keras.layers.Bidirectional(inner, merge_mode=merge), np.float32, seed=6)
    converted = fr.from_keras(layer)
    assert isinstance(converted, SumDirections) == (merge == "sum")
    compare(layer, seed=7)
    if flags["return_state"]:
        compare(layer, initial=True, seed=8)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_float64(kind: str) -> None:
    layer = build(
        getattr(keras.layers, kind)(U, return_sequences=True, return_state=True, dtype="float64"),
        np.float64,
        seed=9,
    )
    assert fr.from_keras(layer).dtype == np.float64
    compare(layer, np.float64, seed=10)


def test_float64_simplernn() -> None:
    """Keras' float64 SimpleRNN (torch backend) is off an exact float64 evaluation by ~1e-7 from the first
    step on, so it is held to float32's tolerance, and the converted layer to float64's against a NumPy
    float64 recurrence on the Keras layer's weights."""
    layer = build(keras.layers.SimpleRNN(U, return_sequences=True, dtype="float64"), np.float64, seed=15)
    x = np.random.default_rng(16).standard_normal((N, T, IN))
    converted = fr.from_keras(layer)
    assert converted.dtype == np.float64
    y, _ = converted(x)
    close(y, to_np(layer(x)), np.float32, "against Keras")
    kernel, recurrent, bias = (np.asarray(keras.ops.convert_to_numpy(w.value)) for w in layer.weights)
    h = np.zeros((N, U))
    for t in range(T):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent + bias)
        close(y[:, t], h, np.float64, f"step {t}")


def test_mask_final_state_equals_lengths_final_state() -> None:
    """Keras masks and fusedrnn lengths agree on the final state of right-padded sequences (the
    per-step outputs past the end differ by design: Keras carries the last one, fusedrnn writes zeros)."""
    layer = build(keras.layers.LSTM(U, return_sequences=True, return_state=True), np.float32, seed=11)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((N, T, IN)).astype(np.float32)
    lengths = np.array([6, 2, 4])
    mask = np.arange(T)[None, :] < lengths[:, None]
    _, h, c = to_np(layer(x, mask=mask))
    y, (h_n, c_n) = fr.from_keras(layer)(x, lengths=lengths)
    close(h_n[0], h, np.float32, "h")
    close(c_n[0], c, np.float32, "c")
    assert not y[1, 2:].any()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: keras.layers.LSTM(U, recurrent_activation="tanh"), "recurrent_activation='tanh'"),
        (lambda: keras.layers.GRU(U, recurrent_activation="hard_silu"), "recurrent_activation"),
        (lambda: keras.layers.LSTM(U, activation="relu"), "activation='relu'"),
        (lambda: keras.layers.SimpleRNN(U, activation="sigmoid"), "activation='sigmoid'"),
        (
            lambda: keras.layers.Bidirectional(keras.layers.LSTM(U, recurrent_activation="relu")),
            "recurrent_activation='relu'",
        ),
    ],
)
def test_unsupported_activations_name_the_option(make: Any, match: str) -> None:
    layer = build(make(), np.float32, seed=13)
    with pytest.raises(NotImplementedError, match=match):
        fr.from_keras(layer)


@pytest.mark.parametrize("merge", ["ave", "mul", None])
def test_unsupported_merge_modes(merge: Any) -> None:
    layer = build(keras.layers.Bidirectional(keras.layers.GRU(U), merge_mode=merge), np.float32, seed=14)
    with pytest.raises(ValueError, match="merge_mode"):
        fr.from_keras(layer)


def test_other_layers_are_refused() -> None:
    with pytest.raises(TypeError, match="LSTM, GRU, SimpleRNN"):
        fr.from_keras(keras.layers.Dense(3))


def test_hard_sigmoid_gates_saturate_and_match_keras() -> None:
    """With large weights many gates sit on the hard sigmoid's flat parts (exactly 0 or 1, derivative 0),
    and the layer still matches Keras."""
    from fusedrnn import reference

    lstm = keras.layers.LSTM(U, recurrent_activation="hard_sigmoid", return_sequences=True)
    layer = build(lstm, np.float32, 21)
    layer.set_weights([w * 4 for w in layer.get_weights()])
    converted = fr.from_keras(layer)
    assert converted.config.hard_gates and "gate_activation='hard_sigmoid'" in repr(converted)
    compare(layer, seed=22)
    x = np.random.default_rng(22 + 100).standard_normal((N, T, IN))
    params = {k: v.astype(np.float64) for k, v in converted.state_dict().items()}
    _, _, _, cache = reference.forward(converted.config, params, x.transpose(1, 0, 2))
    gates = np.concatenate([np.concatenate([r.cache.i, r.cache.f, r.cache.o]) for r in cache.steps[0][0]])
    saturated = np.isin(gates, (0.0, 1.0)).mean()
    assert 0.2 < saturated < 0.9, saturated  # both the flat parts and the slope are exercised


def test_recurrent_dropout_is_carried_over_where_fusedrnn_has_it() -> None:
    lstm = keras.layers.LSTM(U, recurrent_dropout=0.3, return_sequences=True)
    converted = fr.from_keras(build(lstm, np.float32, 0))
    assert converted.recurrent_dropout == pytest.approx(0.3)
    converted.record(np.zeros((N, T, IN), np.float32))  # it trains with it
    gru = keras.layers.GRU(U, recurrent_dropout=0.3, reset_after=False)
    assert fr.from_keras(build(gru, np.float32, 0)).recurrent_dropout == 0.0  # the reset-before GRU has none
