"""The ONNX model that ONNX Runtime runs as an anchor: the torch module exported by torch's exporter, or,
without PyTorch, a graph built here from the PyTorch-layout weights with ``onnx.helper``.

The builder is deliberately independent of ``fusedrnn.interop.onnx_io`` (``to_onnx``): the benchmark
checks fusedrnn's answers against ONNX Runtime's, and a graph made by fusedrnn's own exporter would carry
any mistake of that exporter into the check. Written from the ONNX operator spec alone, it is a second
opinion on the layout. Only the table of gate orders is shared (``fusedrnn.interop.gate_orders``): the
orders are a fact about the formats, not a conversion of fusedrnn's; and the cell's description says
which operator it is and whether it has a cell state (``fusedrnn._cells``).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from .._cells import CellKind
from ..interop.gate_orders import reorder_gates
from .workloads import Workload


def onnx_from_torch(torch: Any, module: Any, x: np.ndarray, kind: CellKind) -> bytes:
    """The torch module (of cell ``kind``) exported by the TorchScript-based exporter (static shapes)."""
    buf = io.BytesIO()
    names = ["Y", "Y_h", "Y_c"] if kind.has_cell_state else ["Y", "Y_h"]
    module = module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns that it is deprecated, and about tracing
        torch.onnx.export(
            module, (torch.from_numpy(x),), buf, dynamo=False, input_names=["X"], output_names=names
        )
    return buf.getvalue()


def onnx_from_weights(w: Workload, params: dict[str, np.ndarray]) -> bytes:
    """ONNX RNN/LSTM/GRU nodes built from PyTorch-layout weights (formats.md), one per layer: gate blocks
    reordered, W = weight_ih, R = weight_hh, B = [bias_ih, bias_hh] (forward then reverse direction),
    GRU with linear_before_reset=1, RNN with its activation; a ragged batch's lengths as sequence_lens.
    Between layers, Y (T, D, N, H) becomes (T, N, D*H); the outputs are Y (T, N, D*H) and Y_h (, Y_c)
    (L*D, N, H) as PyTorch returns them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits = [numpy_helper.from_array(np.array([w.T, w.N, w.directions * w.H], dtype=np.int64), "seq_shape")]
    if w.lengths is not None:
        inits.append(numpy_helper.from_array(np.array(w.lengths, dtype=np.int32), "sequence_lens"))
    layer_input = "X"
    state_outputs: dict[str, list[str]] = {"Y_h": [], "Y_c": []}
    for layer in range(w.layers):
        last = layer == w.layers - 1
        layer_input, states = _layer_nodes(w, params, layer, layer_input, last, nodes, inits)
        for key, name in states.items():
            state_outputs[key].append(name)
    outputs = ["Y", "Y_h", "Y_c"] if w.kind.has_cell_state else ["Y", "Y_h"]
    for name in outputs[1:]:
        nodes.append(helper.make_node("Concat", state_outputs[name], [name], axis=0))
    state_shape = [w.layers * w.directions, w.N, w.H]
    out_shapes = {"Y": [w.T, w.N, w.directions * w.H], "Y_h": state_shape, "Y_c": state_shape}
    graph = helper.make_graph(
        nodes,
        f"fusedrnn_bench_{w.cell}",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [w.T, w.N, w.I])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, out_shapes[n]) for n in outputs],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _stacked(w: Workload, params: dict[str, np.ndarray], role: str, layer: int) -> np.ndarray:
    """[D, G*H, ...]: one layer's ``role`` parameter of each direction, gate blocks in ONNX's order."""
    suffixes = ["", "_reverse"][: w.directions]
    return np.stack(
        [reorder_gates(params[f"{role}_l{layer}{s}"], w.kind.family, "torch", "onnx") for s in suffixes]
    )


def _layer_nodes(
    w: Workload,
    params: dict[str, np.ndarray],
    layer: int,
    layer_input: str,
    last: bool,
    nodes: list[Any],
    inits: list[Any],
) -> tuple[str, dict[str, str]]:
    """Appends one layer's node, its initializers and the reshape of its Y to (T, N, D*H); returns the
    name of that output (``"Y"`` for the last layer) and the names of the layer's final states."""
    from onnx import helper, numpy_helper

    names = {k: f"{k}_{layer}" for k in ("W", "R", "B", "Y", "Y_h", "Y_c", "Yt", "Ys")}
    bias = np.concatenate(
        [_stacked(w, params, "bias_ih", layer), _stacked(w, params, "bias_hh", layer)], axis=1
    )
    weights = (
        (_stacked(w, params, "weight_ih", layer), "W"),
        (_stacked(w, params, "weight_hh", layer), "R"),
        (bias, "B"),
    )
    for arr, key in weights:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), names[key]))
    outs = [names["Y"], names["Y_h"]] + ([names["Y_c"]] if w.kind.has_cell_state else [])
    attrs: dict[str, Any] = {
        "hidden_size": w.H,
        "direction": "bidirectional" if w.directions == 2 else "forward",
    }
    if "linear_before_reset" in w.kind.options:  # PyTorch's form
        attrs["linear_before_reset"] = 1
    if w.kind.nonlinearity is not None:  # the vanilla RNN: one activation per direction
        attrs["activations"] = [w.kind.nonlinearity.capitalize()] * w.directions
    inputs = [layer_input, names["W"], names["R"], names["B"]]
    if w.lengths is not None:
        inputs.append("sequence_lens")
    nodes.append(helper.make_node(w.kind.onnx_op, inputs, outs, **attrs))
    out = "Y" if last else names["Ys"]
    nodes.append(helper.make_node("Transpose", [names["Y"]], [names["Yt"]], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Reshape", [names["Yt"], "seq_shape"], [out]))
    return out, {"Y_h": names["Y_h"], "Y_c": names["Y_c"]}
