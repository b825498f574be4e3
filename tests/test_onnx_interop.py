"""ONNX import and export against ONNX Runtime.

Import: single-node models built with onnx.helper for every attribute from_onnx supports (LSTM, GRU, RNN;
forward, reverse, bidirectional; layout 0 and 1; linear_before_reset 0/1; clip on every operator;
input_forget and peepholes on the LSTM; Relu RNNs; with and without bias; sequence_lens incl. zero lengths;
initial states as graph inputs and as constants) run in ONNX Runtime on random inputs and through
``call_as_onnx``.
ONNX Runtime refuses layout=1, so those nodes are compared with their layout=0 twin.
Export: ``to_onnx`` of stacked, bidirectional, batch-first, residual layers, cells and wrapped layers,
run in ONNX Runtime against the layer's own call.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from closeness import assert_scaled_close
from tolerances import VS_ONNX_RUNTIME

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fusedrnn as fr  # noqa: E402
from fusedrnn.interop import Reverse, SumDirections, WithDefaults, call_as_onnx  # noqa: E402

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
T, N, IN, H = 5, 3, 4, 6


def close(actual: Any, expected: Any, dtype: Any, what: str) -> None:
    assert_scaled_close(actual, expected, *VS_ONNX_RUNTIME[dtype], what)


def session(model: Any) -> Any:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def elem(dtype: Any) -> int:
    return TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT


def node_model(
    op: str,
    dtype: Any = np.float32,
    direction: str = "forward",
    bias: bool = True,
    peephole: bool = False,
    lens: str = "none",  # none | input | const
    states: str = "none",  # none | input | const
    layout: int = 0,
    seed: int = 0,
    lens_value: Any = None,
    **attrs: Any,
) -> tuple[Any, dict[str, np.ndarray]]:
    """A model with one recurrent node; returns it and the initializer arrays by name."""
    rng = np.random.default_rng(seed)
    d = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    inits = {
        "W": (rng.standard_normal((d, g * H, IN)) * 0.5).astype(dtype),
        "R": (rng.standard_normal((d, g * H, H)) * 0.5).astype(dtype),
    }
    if bias:
        inits["B"] = (rng.standard_normal((d, 2 * g * H)) * 0.5).astype(dtype)
    inputs = ["X", "W", "R", "B" if bias else ""]
    graph_inputs = [helper.make_tensor_value_info("X", elem(dtype), [N, T, IN] if layout else [T, N, IN])]
    state_shape = [N, d, H] if layout else [d, N, H]
    if lens == "input":
        graph_inputs.append(helper.make_tensor_value_info("L", TensorProto.INT32, [N]))
        inputs.append("L")
    elif lens == "const":
        inits["L"] = np.asarray(lens_value, np.int32)
        inputs.append("L")
    else:
        inputs.append("")
    state_names = ["H0", "C0"] if op == "LSTM" else ["H0"]
    for name in state_names:
        if states == "input":
            graph_inputs.append(helper.make_tensor_value_info(name, elem(dtype), state_shape))
        elif states == "const":
            inits[name] = rng.standard_normal(state_shape).astype(dtype)
        inputs.append(name if states != "none" else "")
    if op != "LSTM":
        inputs = inputs[:6]
    if peephole:
        inits["P"] = (rng.standard_normal((d, 3 * H)) * 0.5).astype(dtype)
        inputs += [""] * (7 - len(inputs)) + ["P"]
    while inputs[-1] == "":
        inputs.pop()
    outputs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    all_attrs = {"hidden_size": H, "direction": direction, **attrs}
    if layout:
        all_attrs["layout"] = layout
    node = helper.make_node(op, inputs, outputs, name=f"the_{op.lower()}", **all_attrs)
    graph = helper.make_graph(
        [node],
        "g",
        graph_inputs,
        [helper.make_tensor_value_info(o, elem(dtype), None) for o in outputs],
        initializer=[numpy_helper.from_array(a, k) for k, a in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model, inits


def feeds(
    op: str, dtype: Any, direction: str, lens: str, states: str, seed: int = 1, lengths: Any = (5, 2, 4)
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = 2 if direction == "bidirectional" else 1
    out = {"X": rng.standard_normal((T, N, IN)).astype(dtype) * 1.5}
    if lens == "input":
        out["L"] = np.asarray(lengths, np.int32)
    if states == "input":
        out["H0"] = rng.standard_normal((d, N, H)).astype(dtype)
        if op == "LSTM":
            out["C0"] = rng.standard_normal((d, N, H)).astype(dtype)
    return out


def run_ours(layer: Any, f: dict[str, np.ndarray], layout: int = 0) -> tuple[np.ndarray, ...]:
    if layout:  # the layout=1 layer takes batch-major arrays
        x = f["X"].transpose(1, 0, 2)
        h0 = f["H0"].transpose(1, 0, 2) if "H0" in f else None
        c0 = f["C0"].transpose(1, 0, 2) if "C0" in f else None
    else:
        x, h0, c0 = f["X"], f.get("H0"), f.get("C0")
    return call_as_onnx(layer, x, f.get("L"), h0, c0)


def check_against_ort(
    model: Any, f: dict[str, np.ndarray], dtype: Any, layout: int = 0, twin: Any = None
) -> None:
    """from_onnx(model) through call_as_onnx against ONNX Runtime on ``twin`` (default: the model)."""
    layers = fr.from_onnx(model)
    assert list(layers) == [model.graph.node[0].name]
    layer = layers[model.graph.node[0].name]
    expected = session(twin or model).run(None, f)
    actual = run_ours(layer, f, layout)
    if layout:  # our layout=1 outputs -> the twin's layout=0 ones
        actual = (actual[0].transpose(1, 2, 0, 3), *(s.transpose(1, 0, 2) for s in actual[1:]))
    assert len(actual) == len(expected)
    for a, e, what in zip(actual, expected, ["Y", "Y_h", "Y_c"]):
        close(a, e, dtype, what)


DIRECTIONS = ["forward", "reverse", "bidirectional"]


@pytest.mark.parametrize("states", ["none", "input"])
@pytest.mark.parametrize("lens", ["none", "input"])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(
    "op, attrs",
    [
        ("LSTM", {}),
        ("GRU", {"linear_before_reset": 0}),
        ("GRU", {"linear_before_reset": 1}),
        ("RNN", {}),
        ("RNN", {"activations": ["Relu", "Relu"]}),
    ],
    ids=["lstm", "gru-lbr0", "gru-lbr1", "rnn-tanh", "rnn-relu"],
)
def test_import_matches_onnxruntime(op: str, attrs: dict, direction: str, lens: str, states: str) -> None:
    attrs = dict(attrs)
    if "activations" in attrs and direction != "bidirectional":
        attrs["activations"] = attrs["activations"][:1]
    model, _ = node_model(op, direction=direction, lens=lens, states=states, **attrs)
    check_against_ort(model, feeds(op, np.float32, direction, lens, states), np.float32)


@pytest.mark.parametrize("input_forget", [0, 1])
@pytest.mark.parametrize("clip", [None, 0.8])
@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_import_lstm_options_match_onnxruntime(
    direction: str, peephole: bool, clip: Any, input_forget: int
) -> None:
    attrs: dict[str, Any] = {"input_forget": input_forget}
    if clip is not None:
        attrs["clip"] = clip
    model, _ = node_model(
        "LSTM", direction=direction, peephole=peephole, lens="input", states="input", seed=3, **attrs
    )
    check_against_ort(model, feeds("LSTM", np.float32, direction, "input", "input", seed=4), np.float32)


GRU_RNN_FORMS = {
    "gru-lbr0": ("GRU", {"linear_before_reset": 0}),
    "gru-lbr1": ("GRU", {"linear_before_reset": 1}),
    "rnn-tanh": ("RNN", {}),
    "rnn-relu": ("RNN", {"activations": ["Relu"]}),
}


@pytest.mark.parametrize("clip", [0.5, 2.0])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("form", list(GRU_RNN_FORMS))
def test_import_gru_rnn_clip_matches_onnxruntime(form: str, direction: str, clip: float) -> None:
    """ONNX's clip on the GRU (both forms) and the RNN (Tanh and Relu), with lengths and initial states:
    the imported layer has the clip, and its outputs are ONNX Runtime's, which the clip changes."""
    op, attrs = GRU_RNN_FORMS[form]
    attrs = dict(attrs)
    if "activations" in attrs and direction == "bidirectional":
        attrs["activations"] = attrs["activations"] * 2
    model, _ = node_model(op, direction=direction, lens="input", states="input", seed=33, clip=clip, **attrs)
    layer = fr.interop.unwrap(fr.from_onnx(model)[f"the_{op.lower()}"])
    assert layer.config.clip == clip
    f = feeds(op, np.float32, direction, "input", "input", seed=34)
    check_against_ort(model, f, np.float32)
    unclipped, _ = node_model(op, direction=direction, lens="input", states="input", seed=33, **attrs)
    with_clip, without = session(model).run(None, f)[0], session(unclipped).run(None, f)[0]
    assert np.abs(with_clip - without).max() > 1e-2


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_import_layout_1_matches_its_layout_0_twin(op: str, direction: str) -> None:
    extra = {"peephole": True, "clip": 1.5} if op == "LSTM" else {}
    model1, _ = node_model(op, direction=direction, lens="input", states="input", layout=1, seed=5, **extra)
    model0, _ = node_model(op, direction=direction, lens="input", states="input", layout=0, seed=5, **extra)
    layer = fr.from_onnx(model1)[f"the_{op.lower()}"]
    assert fr.interop.unwrap(layer).batch_first
    check_against_ort(
        model1, feeds(op, np.float32, direction, "input", "input", seed=6), np.float32, layout=1, twin=model0
    )


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_import_float64(op: str) -> None:
    """ONNX Runtime has no double LSTM/GRU/RNN kernels: ONNX's reference evaluator is the oracle here
    (it handles the weights, directions and initial states, not sequence_lens)."""
    from onnx.reference import ReferenceEvaluator

    model, _ = node_model(op, dtype=np.float64, direction="bidirectional", states="input", seed=7)
    layer = fr.from_onnx(model)[f"the_{op.lower()}"]
    assert layer.dtype == np.float64
    f = feeds(op, np.float64, "bidirectional", "none", "input", seed=8)
    expected = ReferenceEvaluator(model).run(None, f)
    for a, e in zip(run_ours(layer, f), expected):
        close(a, e, np.float64, op)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_import_without_bias(op: str) -> None:
    model, _ = node_model(op, bias=False, direction="bidirectional", lens="input", seed=9)
    assert not fr.interop.unwrap(fr.from_onnx(model)[f"the_{op.lower()}"]).bias
    check_against_ort(model, feeds(op, np.float32, "bidirectional", "input", "none", seed=10), np.float32)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_import_zero_lengths_give_zeros_like_onnxruntime(op: str, direction: str) -> None:
    model, _ = node_model(op, direction=direction, lens="input", states="input", seed=11)
    f = feeds(op, np.float32, direction, "input", "input", seed=12, lengths=(0, 5, 1))
    check_against_ort(model, f, np.float32)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_import_constant_states_and_lengths(op: str, direction: str) -> None:
    model, _ = node_model(
        op, direction=direction, lens="const", states="const", seed=13, lens_value=[3, 5, 1]
    )
    layer = fr.from_onnx(model)[f"the_{op.lower()}"]
    assert isinstance(layer, WithDefaults)
    f = feeds(op, np.float32, direction, "none", "none", seed=14)
    expected = session(model).run(None, f)
    for a, e in zip(call_as_onnx(layer, f["X"]), expected):
        close(a, e, np.float32, "with constant state and lengths")


def test_import_all_zero_constant_state_is_a_plain_layer() -> None:
    model, inits = node_model("GRU", states="const", seed=15)
    for init in model.graph.initializer:
        if init.name == "H0":
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(inits["H0"]), "H0"))
    assert isinstance(fr.from_onnx(model)["the_gru"], fr.GRU)


def test_import_reverse_is_a_reverse_wrapper_with_the_layer_call() -> None:
    """The wrapper keeps the layer's call: y (T, N, H) in the input's time order, lengths per sequence."""
    model, _ = node_model("LSTM", direction="reverse", lens="input", seed=16)
    layer = fr.from_onnx(model)["the_lstm"]
    assert isinstance(layer, Reverse) and layer.order == "original"
    f = feeds("LSTM", np.float32, "reverse", "input", "none", seed=17)
    Y, Y_h, Y_c = session(model).run(None, f)
    y, (h_n, c_n) = layer(f["X"], lengths=f["L"])
    close(y, Y[:, 0], np.float32, "y")
    close(h_n, Y_h, np.float32, "h_n")
    close(c_n, Y_c, np.float32, "c_n")
    assert not y[2:, 1].any()  # past the second sequence's length
    assert y[1, 1].any()


def test_import_from_path_bytes_and_constant_nodes(tmp_path: Any) -> None:
    model, inits = node_model("GRU", direction="bidirectional", seed=18)
    # W as a Constant node's output instead of an initializer.
    w = [i for i in model.graph.initializer if i.name == "W"][0]
    model.graph.initializer.remove(w)
    model.graph.node.insert(
        0, helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(inits["W"], "W"))
    )
    path = tmp_path / "gru.onnx"
    onnx.save(model, str(path))
    f = feeds("GRU", np.float32, "bidirectional", "none", "none", seed=19)
    expected = session(model).run(None, f)
    for source in (path, str(path), path.read_bytes(), model):
        layer = fr.from_onnx(source)["the_gru"]
        for a, e in zip(call_as_onnx(layer, f["X"]), expected):
            close(a, e, np.float32, f"from {type(source).__name__}")


def test_import_key_is_first_output_without_a_name() -> None:
    model, _ = node_model("RNN", seed=20)
    model.graph.node[0].name = ""
    assert list(fr.from_onnx(model)) == ["Y"]


@pytest.mark.parametrize(
    "op, attrs, match",
    [
        ("LSTM", {"activations": ["HardSigmoid", "Tanh", "Tanh"]}, "activation_alpha"),  # ONNX's 0.2
        ("GRU", {"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.2] * 2}, "activation_alpha"),
        ("LSTM", {"activations": ["Sigmoid", "Tanh", "Relu"]}, "activations"),
        ("GRU", {"activations": ["Sigmoid", "Relu"]}, "activations"),
        ("RNN", {"activations": ["Sigmoid"]}, "activations"),
    ],
)
def test_import_unsupported_options_name_the_attribute(op: str, attrs: dict, match: str) -> None:
    model, _ = node_model(op, **attrs)
    with pytest.raises(NotImplementedError, match=match):
        fr.from_onnx(model)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(
    "op, lbr", [("LSTM", None), ("GRU", 0), ("GRU", 1)], ids=["lstm", "gru-lbr0", "gru-lbr1"]
)
def test_import_hard_sigmoid_gates_match_onnxruntime(op: str, lbr: Any, direction: str) -> None:
    """HardSigmoid gates with Keras 3's alpha 1/6 and beta 1/2 become gate_activation="hard_sigmoid"."""
    d = 2 if direction == "bidirectional" else 1
    acts = ["HardSigmoid"] + ["Tanh"] * (2 if op == "LSTM" else 1)
    attrs: dict[str, Any] = {
        "activations": acts * d,
        "activation_alpha": [1 / 6] * len(acts) * d,
        "activation_beta": [0.5] * len(acts) * d,
    }
    if lbr is not None:
        attrs["linear_before_reset"] = lbr
    model, _ = node_model(op, direction=direction, lens="input", states="input", seed=31, **attrs)
    layer = fr.interop.unwrap(fr.from_onnx(model)[model.graph.node[0].name])
    assert layer.config.hard_gates
    check_against_ort(model, feeds(op, np.float32, direction, "input", "input", seed=32), np.float32)


def test_import_default_activations_spelled_out_are_accepted() -> None:
    model, _ = node_model("LSTM", direction="bidirectional", activations=["Sigmoid", "Tanh", "Tanh"] * 2)
    check_against_ort(model, feeds("LSTM", np.float32, "bidirectional", "none", "none"), np.float32)


def test_import_skips_nodes_with_runtime_weights() -> None:
    model, _ = node_model("LSTM", seed=21)
    w = [i for i in model.graph.initializer if i.name == "W"][0]
    model.graph.initializer.remove(w)
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [1, 4 * H, IN]))
    with pytest.raises(ValueError, match="no importable"):
        fr.from_onnx(model)
    # With another importable node, the skipped one is reported by a warning.
    other, _ = node_model("GRU", seed=22)
    for init in other.graph.initializer:
        init.name = "g_" + init.name
    n = other.graph.node[0]
    n.input[:] = ["X"] + ["g_" + s if s else s for s in n.input[1:]]
    n.output[:] = ["g_" + s for s in n.output]
    model.graph.node.append(n)
    model.graph.initializer.extend(other.graph.initializer)
    with pytest.warns(UserWarning, match="skipped"):
        layers = fr.from_onnx(model)
    assert list(layers) == ["the_gru"]


def test_import_errors() -> None:
    with pytest.raises(TypeError, match="path"):
        fr.from_onnx(42)
    with pytest.raises(FileNotFoundError):
        fr.from_onnx("/nonexistent/model.onnx")
    with pytest.raises(ValueError, match="not an ONNX model"):
        fr.from_onnx(b"certainly not protobuf \xff\xfe")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["X"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(ValueError, match="no LSTM, GRU or RNN node"):
        fr.from_onnx(helper.make_model(graph))
    model, _ = node_model("LSTM")
    model.graph.node[0].attribute.append(helper.make_attribute("hidden_size", H + 1))
    del model.graph.node[0].attribute[0]  # keep one hidden_size, now wrong
    with pytest.raises(ValueError, match="hidden_size"):
        fr.from_onnx(model)


# -- export -----------------------------------------------------------------------------------------


def export_and_compare(layer: Any, x: np.ndarray, state: Any = None, lengths: Any = None) -> None:
    inner = fr.interop.unwrap(layer)
    model = fr.to_onnx(layer, state=state is not None, lengths=lengths is not None)
    onnx.checker.check_model(model)
    f = {"input": x}
    if state is not None:
        if isinstance(state, tuple):
            f["h0"], f["c0"] = state
        else:
            f["h0"] = state
    if lengths is not None:
        f["lengths"] = np.asarray(lengths, np.int32)
    got = session(model).run(None, f)
    y, s = layer(x, state, lengths)
    expected = [y, *(s if isinstance(s, tuple) else (s,))]
    assert [o.name for o in model.graph.output] == ["output", "h_n", "c_n"][: len(expected)]
    for a, e, what in zip(got, expected, ["output", "h_n", "c_n"]):
        close(a, e, np.dtype(inner.dtype).type, f"exported {what}")


EXPORT_CASES = {
    "lstm-2l-bi": ("LSTM", dict(num_layers=2, bidirectional=True)),
    "lstm-3l-bf-residual": ("LSTM", dict(num_layers=3, batch_first=True, residual=True)),
    "lstm-peephole-clip-coupled-bi": (
        "LSTM",
        dict(bidirectional=True, peephole=True, clip=0.9, input_forget=True),
    ),
    "lstm-nobias": ("LSTM", dict(bias=False)),
    "gru-2l-bi": ("GRU", dict(num_layers=2, bidirectional=True)),
    "gru-reset-before-bf": ("GRU", dict(linear_before_reset=False, batch_first=True, num_layers=2)),
    "rnn-relu-2l-bi": ("RNN", dict(nonlinearity="relu", num_layers=2, bidirectional=True)),
    "rnn-tanh-nobias": ("RNN", dict(bias=False)),
    "lstm-hard-sigmoid-bi": ("LSTM", dict(bidirectional=True, gate_activation="hard_sigmoid")),
    "gru-hard-sigmoid-2l": ("GRU", dict(num_layers=2, gate_activation="hard_sigmoid")),
    "gru-reset-before-hard-sigmoid-bi": (
        "GRU",
        dict(linear_before_reset=False, bidirectional=True, gate_activation="hard_sigmoid"),
    ),
    # clip at a bound the default weights' inputs reach in part
    "gru-clip-2l-bi": ("GRU", dict(num_layers=2, bidirectional=True, clip=0.3)),
    "gru-reset-before-clip-bf": ("GRU", dict(linear_before_reset=False, batch_first=True, clip=0.3)),
    "rnn-tanh-clip-2l": ("RNN", dict(num_layers=2, clip=0.3)),
    "rnn-relu-clip-bi": ("RNN", dict(nonlinearity="relu", bidirectional=True, clip=0.3)),
}


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no-state", "state"])
@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_matches_onnxruntime(case: str, with_state: bool, with_lengths: bool) -> None:
    name, kw = EXPORT_CASES[case]
    layer = getattr(fr, name)(IN, H, seed=23, **kw)
    rng = np.random.default_rng(24)
    x = rng.standard_normal((N, T, IN) if layer.batch_first else (T, N, IN)).astype(np.float32)
    state = None
    if with_state:
        lead = layer.num_layers * layer.num_directions
        h0 = rng.standard_normal((lead, N, H)).astype(np.float32)
        state = (h0, rng.standard_normal((lead, N, H)).astype(np.float32)) if name == "LSTM" else h0
    export_and_compare(layer, x, state, [5, 1, 3] if with_lengths else None)


def test_export_float64_and_to_file(tmp_path: Any) -> None:
    """A float64 layer exports as a float32 model (ONNX Runtime has no double LSTM/GRU/RNN kernels),
    with a warning saying so; the file runs in ONNX Runtime and matches the layer within float32's
    rounding."""
    layer = fr.LSTM(IN, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=25)
    x = np.random.default_rng(26).standard_normal((T, N, IN))
    path = tmp_path / "lstm64.onnx"
    with pytest.warns(UserWarning, match="float64 weights were cast to float32"):
        fr.to_onnx(layer, path)
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert all(init.data_type != TensorProto.DOUBLE for init in model.graph.initializer)
    got = session(model).run(None, {"input": x.astype(np.float32)})
    y, (h, c) = layer(x)
    assert layer.dtype == np.float64  # the layer itself is not changed
    for a, e, what in zip(got, [y, h, c], ["output", "h_n", "c_n"]):
        assert a.dtype == np.float32
        close(a, e, np.float32, what)


@pytest.mark.parametrize("clip", [0.0, 0.3], ids=["plain", "clip"])
@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_export_cells(name: str, clip: float) -> None:
    cell = getattr(fr, name)(IN, H, clip=clip, seed=27)
    written = [a.f for n in fr.to_onnx(cell).graph.node for a in n.attribute if a.name == "clip"]
    assert written == ([np.float32(clip)] if clip else [])
    rng = np.random.default_rng(28)
    x = rng.standard_normal((N, IN)).astype(np.float32)
    h = rng.standard_normal((N, H)).astype(np.float32)
    c = rng.standard_normal((N, H)).astype(np.float32)
    lstm = name == "LSTMCell"
    model = fr.to_onnx(cell, state=True)
    got = session(model).run(None, {"input": x, "h0": h, **({"c0": c} if lstm else {})})
    expected = cell(x, (h, c)) if lstm else (cell(x, h),)
    for a, e in zip(got, expected):
        close(a, e, np.float32, name)
    got = session(fr.to_onnx(cell)).run(None, {"input": x})
    expected = cell(x) if lstm else (cell(x),)
    for a, e in zip(got, expected):
        close(a, e, np.float32, name + " without state")


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_export_wrappers(with_lengths: bool) -> None:
    rng = np.random.default_rng(29)
    x = rng.standard_normal((T, N, IN)).astype(np.float32)
    lengths = [5, 2, 4] if with_lengths else None
    for layer in (
        Reverse(fr.GRU(IN, H, num_layers=2, seed=30)),
        Reverse(fr.LSTM(IN, H, seed=31), order="processing"),
        SumDirections(fr.RNN(IN, H, bidirectional=True, seed=32)),
        WithDefaults(fr.GRU(IN, H, seed=33), state=rng.standard_normal((1, N, H)).astype(np.float32)),
    ):
        export_and_compare(layer, x, None, lengths)


def test_export_refuses_projection_and_other_objects() -> None:
    with pytest.raises(ValueError, match="proj_size"):
        fr.to_onnx(fr.LSTM(IN, H, proj_size=2))
    with pytest.raises(TypeError, match="layer or cell"):
        fr.to_onnx(object())


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_roundtrip_through_onnx_keeps_the_weights(op: str) -> None:
    kw = {"peephole": True} if op == "LSTM" else ({"linear_before_reset": False} if op == "GRU" else {})
    layer = getattr(fr, op)(IN, H, bidirectional=True, seed=34, **kw)
    back = fr.from_onnx(fr.to_onnx(layer))
    (imported,) = back.values()
    assert repr(imported) == repr(layer)
    for k, a in layer.state_dict().items():
        np.testing.assert_array_equal(imported.state_dict()[k], a, err_msg=k)


def test_import_torch_onnx_export() -> None:
    """A model exported by torch.onnx (whatever nodes it emits around the LSTM) imports to the same
    numbers as the torch module."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(35)
    module = torch.nn.LSTM(IN, H, bidirectional=True)
    x = torch.randn(T, N, IN)
    import io

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (x,), buffer, dynamo=False, input_names=["x"])
        except Exception as exc:  # the exporter's own dependencies
            pytest.skip(f"torch.onnx.export unavailable: {str(exc)[:100]}")
    layers = fr.from_onnx(buffer.getvalue())
    assert len(layers) == 1
    (layer,) = layers.values()
    y, (h, c) = module(x)
    ya, (ha, ca) = layer(x.numpy())
    close(ya, y.detach().numpy(), np.float32, "y")
    close(ha, h.detach().numpy(), np.float32, "h")
