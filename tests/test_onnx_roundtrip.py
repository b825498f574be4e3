"""ONNX round trips: ``from_onnx(to_onnx(layer))`` is the same layer (stacked, bidirectional, batch_first,
with options and wrappers), float64 layers export as runnable float32 models, and lengths of any integer
dtype reach ONNX Runtime as the int32 it takes.

Other graphs (separate nodes, a to_onnx model edited since) still import node by node: see also
test_onnx_interop.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from closeness import assert_scaled_close
from tolerances import VS_ONNX_RUNTIME

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import fusedrnn as fr  # noqa: E402
from fusedrnn.interop import Reverse, SumDirections, WithDefaults, call_as_onnx, unwrap  # noqa: E402
from fusedrnn.interop.onnx_io import onnx_feeds  # noqa: E402

T, N, IN, H = 5, 3, 4, 6
LENGTHS = [5, 2, 4]

KINDS = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "gru-reset-before": ("GRU", {"linear_before_reset": False}),
    "rnn-tanh": ("RNN", {}),
    "rnn-relu": ("RNN", {"nonlinearity": "relu"}),
}


def session(model: Any) -> Any:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def close(actual: Any, expected: Any, what: str) -> None:
    assert_scaled_close(actual, expected, *VS_ONNX_RUNTIME[np.float32], what)


def outputs(layer: Any, x: np.ndarray, state: Any = None, lengths: Any = None) -> list[np.ndarray]:
    y, s = layer(x, state, lengths)
    return [y, *(s if isinstance(s, tuple) else (s,))]


def inputs(layer: Any, seed: int) -> tuple[np.ndarray, Any]:
    """x in the layer's layout and a random initial state, float32."""
    inner = unwrap(layer)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, IN) if inner.batch_first else (T, N, IN)).astype(np.float32)
    lead = inner.num_layers * inner.num_directions
    h0 = rng.standard_normal((lead, N, H)).astype(np.float32)
    state = (h0, rng.standard_normal((lead, N, H)).astype(np.float32)) if inner.mode == "LSTM" else h0
    return x, state


def assert_same_layer(back: Any, layer: Any) -> None:
    """The same wrappers, class, configuration (repr) and parameters."""
    assert repr(back) == repr(layer)
    a, b = unwrap(back), unwrap(layer)
    assert type(a) is type(b)
    assert (a.num_layers, a.bidirectional, a.batch_first) == (b.num_layers, b.bidirectional, b.batch_first)
    expected = b.state_dict()
    got = a.state_dict()
    assert sorted(got) == sorted(expected)
    for k, arr in expected.items():
        np.testing.assert_array_equal(got[k], arr, err_msg=k)


def check_roundtrip(layer: Any, with_state: bool, with_lengths: bool, seed: int) -> None:
    """from_onnx(to_onnx(layer)) is one layer, the same as ``layer``, with the same outputs on the same
    call, and those match ONNX Runtime's run of the model."""
    model = fr.to_onnx(layer, state=with_state, lengths=with_lengths)
    layers = fr.from_onnx(model.SerializeToString())
    assert len(layers) == 1
    (back,) = layers.values()
    assert_same_layer(back, layer)
    x, state = inputs(layer, seed)
    state = state if with_state else None
    lengths = LENGTHS if with_lengths else None
    expected = outputs(layer, x, state, lengths)
    got = outputs(back, x, state, lengths)
    assert len(got) == len(expected)
    for a, e, what in zip(got, expected, ["y", "h_n", "c_n"]):
        np.testing.assert_array_equal(a, e, err_msg=what)  # the same layer computes the same numbers
    ran = session(model).run(None, onnx_feeds(x, state, lengths))
    for a, e, what in zip(ran, got, ["output", "h_n", "c_n"]):
        close(a, e, f"ONNX Runtime's {what}")


# -- stacks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_stack_reads_back_as_the_same_stack(
    kind: str, num_layers: int, bidirectional: bool, batch_first: bool, with_lengths: bool
) -> None:
    name, kw = KINDS[kind]
    layer = getattr(fr, name)(
        IN, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, seed=40, **kw
    )
    check_roundtrip(layer, with_state=False, with_lengths=with_lengths, seed=41)


@pytest.mark.parametrize("kind", list(KINDS))
def test_stack_with_state_inputs_reads_back(kind: str) -> None:
    name, kw = KINDS[kind]
    layer = getattr(fr, name)(IN, H, num_layers=2, bidirectional=True, batch_first=True, seed=42, **kw)
    check_roundtrip(layer, with_state=True, with_lengths=True, seed=43)


OPTION_CASES = {
    "lstm-residual-3l": ("LSTM", dict(num_layers=3, residual=True)),
    "lstm-residual-2l-bf": ("LSTM", dict(num_layers=2, residual=True, batch_first=True)),
    "gru-residual-2l-bi": ("GRU", dict(num_layers=2, residual=True, bidirectional=True)),
    "lstm-peephole-clip-coupled-bi": (
        "LSTM",
        dict(num_layers=2, bidirectional=True, peephole=True, clip=0.9, input_forget=True),
    ),
    "lstm-nobias-3l": ("LSTM", dict(num_layers=3, bias=False)),
    "rnn-relu-nobias-bi": ("RNN", dict(num_layers=2, bias=False, nonlinearity="relu", bidirectional=True)),
    "lstm-hard-sigmoid-2l-bi": (
        "LSTM",
        dict(num_layers=2, bidirectional=True, gate_activation="hard_sigmoid"),
    ),
    "gru-hard-sigmoid-reset-before": (
        "GRU",
        dict(num_layers=2, linear_before_reset=False, gate_activation="hard_sigmoid"),
    ),
    "gru-clip-2l-bi": ("GRU", dict(num_layers=2, bidirectional=True, clip=0.3)),
    "gru-reset-before-clip-residual": (
        "GRU",
        dict(num_layers=2, linear_before_reset=False, residual=True, clip=0.3),
    ),
    "rnn-tanh-clip-bi": ("RNN", dict(bidirectional=True, clip=0.3)),
    "rnn-relu-clip-2l-bf": ("RNN", dict(num_layers=2, nonlinearity="relu", batch_first=True, clip=0.3)),
}


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_stack_options_read_back(case: str, with_lengths: bool) -> None:
    name, kw = OPTION_CASES[case]
    check_roundtrip(getattr(fr, name)(IN, H, seed=44, **kw), False, with_lengths, seed=45)


def wrapped_layers() -> dict[str, Any]:
    rng = np.random.default_rng(46)
    return {
        "reverse": Reverse(fr.GRU(IN, H, num_layers=2, seed=47)),
        "reverse-processing": Reverse(fr.LSTM(IN, H, num_layers=3, seed=48), order="processing"),
        "sum-directions": SumDirections(fr.RNN(IN, H, num_layers=2, bidirectional=True, seed=49)),
        "defaults": WithDefaults(
            fr.LSTM(IN, H, num_layers=2, bidirectional=True, seed=50),
            state=(
                rng.standard_normal((4, N, H)).astype(np.float32),
                rng.standard_normal((4, N, H)).astype(np.float32),
            ),
            lengths=np.array(LENGTHS, np.int64),
        ),
        "defaults-reverse": WithDefaults(
            Reverse(fr.GRU(IN, H, num_layers=2, batch_first=True, seed=51)), lengths=LENGTHS
        ),
    }


@pytest.mark.parametrize("case", list(wrapped_layers()))
def test_wrapped_stack_reads_back_in_its_wrappers(case: str) -> None:
    check_roundtrip(wrapped_layers()[case], with_state=False, with_lengths=False, seed=52)


def test_stack_key_is_its_first_node() -> None:
    model = fr.to_onnx(fr.GRU(IN, H, num_layers=2, seed=53))
    first = next(n for n in model.graph.node if n.op_type == "GRU")
    assert list(fr.from_onnx(model)) == [first.name]


# -- other graphs still import node by node -------------------------------------------------------------


def test_a_stack_not_written_by_fusedrnn_imports_node_by_node() -> None:
    """The same graph under another producer: one time-major layer per node, as for any graph."""
    layer = fr.LSTM(IN, H, num_layers=3, bidirectional=True, batch_first=True, seed=54)
    model = fr.to_onnx(layer)
    model.producer_name = "someone else"
    layers = fr.from_onnx(model)
    assert len(layers) == 3
    for k, single in enumerate(layers.values()):
        assert isinstance(single, fr.LSTM)
        assert (single.num_layers, single.bidirectional, single.batch_first) == (1, True, False)
        assert single.input_size == (IN if k == 0 else 2 * H)
        for suffix in ("", "_reverse"):
            np.testing.assert_array_equal(
                single.state_dict()["weight_hh_l0" + suffix], layer.state_dict()[f"weight_hh_l{k}{suffix}"]
            )


def test_an_edited_fusedrnn_stack_imports_node_by_node() -> None:
    """A to_onnx model with a node added is no longer what to_onnx writes: its nodes import one by one."""
    model = fr.to_onnx(fr.GRU(IN, H, num_layers=2, seed=55))
    out = model.graph.output[0]
    model.graph.node.append(helper.make_node("Relu", [out.name], ["relu_output"]))
    model.graph.output.append(helper.make_tensor_value_info("relu_output", TensorProto.FLOAT, None))
    layers = fr.from_onnx(model)
    assert len(layers) == 2
    assert all(isinstance(single, fr.GRU) and single.num_layers == 1 for single in layers.values())


def test_a_cell_model_still_imports_as_a_one_layer_layer() -> None:
    cell = fr.LSTMCell(IN, H, seed=56)
    (layer,) = fr.from_onnx(fr.to_onnx(cell)).values()
    assert isinstance(layer, fr.LSTM) and layer.num_layers == 1
    x = np.random.default_rng(57).standard_normal((N, IN)).astype(np.float32)
    h, c = cell(x)
    y, (h_n, c_n) = layer(x[None])
    np.testing.assert_array_equal(h_n[0], h)
    np.testing.assert_array_equal(c_n[0], c)


# -- float64 layers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_float64_layer_exports_a_runnable_float32_model(kind: str) -> None:
    name, kw = KINDS[kind]
    layer = getattr(fr, name)(IN, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=58, **kw)
    with pytest.warns(UserWarning, match="float64 weights were cast to float32"):
        model = fr.to_onnx(layer, state=True, lengths=True)
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {TensorProto.FLOAT, TensorProto.INT32}
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {TensorProto.FLOAT}
    rng = np.random.default_rng(59)
    x = rng.standard_normal((T, N, IN))
    h0 = rng.standard_normal((4, N, H))
    state = (h0, rng.standard_normal((4, N, H))) if name == "LSTM" else h0
    ran = session(model).run(None, onnx_feeds(x, state, np.array(LENGTHS, np.int64)))
    for a, e, what in zip(ran, outputs(layer, x, state, LENGTHS), ["output", "h_n", "c_n"]):
        assert a.dtype == np.float32
        close(a, e, what)
    # It reads back as the same stack, in float32.
    (back,) = fr.from_onnx(model).values()
    assert back.dtype == np.float32
    assert repr(back) == repr(layer).replace(", dtype=float64", "")


def test_float64_cell_and_wrapped_layer_export_float32() -> None:
    x = np.random.default_rng(60).standard_normal((N, IN))
    cell = fr.GRUCell(IN, H, dtype=np.float64, seed=61)
    with pytest.warns(UserWarning, match="float32"):
        model = fr.to_onnx(cell)
    (h1,) = session(model).run(None, onnx_feeds(x))
    close(h1, cell(x), "cell h1")
    rng = np.random.default_rng(62)
    layer = WithDefaults(fr.RNN(IN, H, dtype=np.float64, seed=63), state=rng.standard_normal((1, N, H)))
    with pytest.warns(UserWarning, match="float32"):
        model = fr.to_onnx(layer)
    assert all(init.data_type != TensorProto.DOUBLE for init in model.graph.initializer)
    xs = rng.standard_normal((T, N, IN))
    for a, e in zip(session(model).run(None, onnx_feeds(xs)), outputs(layer, xs)):
        close(a, e, "wrapped")


def test_float32_export_does_not_warn() -> None:
    fr.to_onnx(fr.LSTM(IN, H, num_layers=2, seed=64))  # filterwarnings = error: a warning would fail


# -- lengths of any integer dtype -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.uint8, np.uint64])
def test_lengths_of_any_integer_dtype_run_in_onnxruntime(dtype: Any) -> None:
    layer = fr.GRU(IN, H, num_layers=2, bidirectional=True, seed=65)
    model = fr.to_onnx(layer, lengths=True)
    x, _ = inputs(layer, 66)
    lengths = np.array(LENGTHS, dtype)
    f = onnx_feeds(x, lengths=lengths)
    assert f["lengths"].dtype == np.int32
    expected = outputs(layer, x, None, lengths)  # the layer's own call takes them as they are
    for a, e in zip(outputs(layer, x, None, np.array(LENGTHS, np.int32)), expected):
        np.testing.assert_array_equal(a, e)
    for a, e, what in zip(session(model).run(None, f), expected, ["output", "h_n"]):
        close(a, e, what)


def test_onnxruntime_itself_refuses_int64_lengths() -> None:
    """Why onnx_feeds converts: the model's lengths input is int32, as ONNX's sequence_lens are."""
    layer = fr.RNN(IN, H, seed=67)
    x, _ = inputs(layer, 68)
    with pytest.raises(Exception, match="(?i)int32|type"):
        session(fr.to_onnx(layer, lengths=True)).run(None, {"input": x, "lengths": np.array(LENGTHS)})


@pytest.mark.parametrize(
    "lengths, error, match",
    [
        (
            np.array([5, 2, 2**31], np.int64),
            ValueError,
            r"lengths must each be between 0 and 2147483647.*2147483648 at index 2",
        ),
        (
            np.array([5, -1, 2], np.int64),
            ValueError,
            r"lengths must each be between 0 and .*got -1 at index 1",
        ),
        (
            np.array([2**63], np.uint64),
            ValueError,
            r"lengths must each be between 0 and .*got 9223372036854775808",
        ),
        (np.array([5.0, 2.0, 4.0]), TypeError, r"lengths must hold integers"),
        (np.array([[5, 2, 4]]), ValueError, r"lengths must be 1-D.*got shape \(1, 3\)"),
    ],
)
def test_lengths_that_do_not_fit_int32_are_refused(lengths: Any, error: type, match: str) -> None:
    x = np.zeros((T, N, IN), np.float32)
    with pytest.raises(error, match=match):
        onnx_feeds(x, lengths=lengths)


def test_default_lengths_int64_export_as_int32_and_are_range_checked() -> None:
    layer = fr.LSTM(IN, H, num_layers=2, seed=69)
    model = fr.to_onnx(WithDefaults(layer, lengths=np.array(LENGTHS, np.int64)))
    (lens,) = [
        i
        for i in model.graph.initializer
        if i.data_type in (TensorProto.INT32, TensorProto.INT64) and i.name.startswith("lengths")
    ]
    assert lens.data_type == TensorProto.INT32
    x, _ = inputs(layer, 70)
    for a, e in zip(session(model).run(None, {"input": x}), outputs(layer, x, None, LENGTHS)):
        close(a, e, "default lengths")
    with pytest.raises(ValueError, match=r"lengths must each be between 0 and 2147483647"):
        fr.to_onnx(WithDefaults(layer, lengths=np.array([2**31, 1, 1], np.int64)))


def test_layer_and_call_as_onnx_take_int64_lengths() -> None:
    layer = fr.LSTM(IN, H, bidirectional=True, seed=71)
    x, _ = inputs(layer, 72)
    as_int32 = outputs(layer, x, None, np.array(LENGTHS, np.int32))
    for given in (np.array(LENGTHS, np.int64), LENGTHS, np.array(LENGTHS, np.uint16)):
        for a, e in zip(outputs(layer, x, None, given), as_int32):
            np.testing.assert_array_equal(a, e)
    ys32 = call_as_onnx(layer, x, np.array(LENGTHS, np.int32))
    ys64 = call_as_onnx(layer, x, np.array(LENGTHS, np.int64))
    for a, e in zip(ys64, ys32):
        np.testing.assert_array_equal(a, e)


def test_onnx_feeds_casts_to_the_models_dtype() -> None:
    f = onnx_feeds(np.zeros((T, N, IN)), (np.zeros((1, N, H)), np.zeros((1, N, H), np.float16)))
    assert sorted(f) == ["c0", "h0", "input"]
    assert {a.dtype for a in f.values()} == {np.dtype(np.float32)}
    assert onnx_feeds(np.zeros((T, N, IN), np.float32), dtype=np.float64)["input"].dtype == np.float64
