"""One workload made concrete: its weights, input and output cotangent, the torch module and the ONNX
model the anchors run, shared by every thread count."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import onnx_graph, optional
from .workloads import Workload


@dataclass
class Problem:
    """Everything about one workload that does not depend on the thread count."""

    workload: Workload
    params: dict[str, np.ndarray]  # PyTorch names -> arrays of the workload's dtype
    x: np.ndarray  # (T, N, I)
    gy: np.ndarray  # (T, N, D*H_out) cotangent of y (training)
    weights_from: str  # "torch" or "fusedrnn"
    torch_module: Any = None
    onnx_model: bytes | None = None
    onnx_source: str = ""
    notes: list[str] = field(default_factory=list)


def _layer_options(w: Workload) -> dict[str, Any]:
    """The keywords beyond the sizes that both torch.nn's and fusedrnn's layer classes take."""
    options: dict[str, Any] = {"num_layers": w.layers, "bidirectional": w.bidirectional}
    if w.kind.nonlinearity is not None:
        options["nonlinearity"] = w.kind.nonlinearity
    if w.proj_size:
        options["proj_size"] = w.proj_size
    return options


def fusedrnn_layer(fr: Any, w: Workload, seed: Any = None) -> Any:
    cls = getattr(fr, w.kind.torch_layer)  # fusedrnn's layers have torch.nn's names
    return cls(w.I, w.H, **_layer_options(w), dtype=np.dtype(w.dtype), seed=seed)


def torch_module(torch: Any, w: Workload) -> Any:
    cls = getattr(torch.nn, w.kind.torch_layer)
    module = cls(w.I, w.H, **_layer_options(w))
    return module.double() if w.dtype == "float64" else module


def lengths_array(w: Workload) -> np.ndarray | None:
    """The ragged batch's lengths as fusedrnn and the NumPy reference take them (None: every sequence
    has all T steps)."""
    return None if w.lengths is None else np.array(w.lengths, dtype=np.int64)


def torch_forward(torch: Any, module: Any, xt: Any, w: Workload) -> tuple[Any, Any]:
    """``module(xt)``; with lengths, through a packed sequence (what a torch user writes), the output
    padded back to T steps with zeros."""
    if w.lengths is None:
        return module(xt)
    rnn_utils = torch.nn.utils.rnn
    packed = rnn_utils.pack_padded_sequence(xt, torch.tensor(w.lengths), enforce_sorted=False)
    y, state = module(packed)
    y, _ = rnn_utils.pad_packed_sequence(y, total_length=w.T)
    return y, state


def make_problem(w: Workload, seed: int, torch: Any, want_onnx: bool) -> Problem:
    """Weights from a torch module seeded with ``seed`` (``torch`` None: fusedrnn's own initialization),
    x and the cotangent from a NumPy generator seeded likewise; the ONNX model when ``want_onnx``."""
    import fusedrnn as fr

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((w.T, w.N, w.I)).astype(w.dtype)
    gy = rng.standard_normal((w.T, w.N, w.directions * w.output_size)).astype(w.dtype)
    module = None
    if torch is not None:
        torch.manual_seed(seed)
        module = torch_module(torch, w)
        params = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
        weights_from = "torch"
    else:
        layer = fusedrnn_layer(fr, w, seed=seed)
        params = {k: np.array(v, dtype=w.dtype) for k, v in layer.state_dict().items()}
        weights_from = "fusedrnn"
    problem = Problem(w, params, x, gy, weights_from, torch_module=module)
    if want_onnx and onnx_expresses(w) is None:
        attach_onnx(problem, torch)
    return problem


def onnx_expresses(w: Workload) -> str | None:
    """None when ONNX Runtime can run ``w``, else why not."""
    if w.mode != "inference":
        return "ONNX Runtime runs inference only"
    if w.proj_size:
        return "ONNX's LSTM operator has no projection (proj_size)"
    if w.dtype != "float32":
        return f"ONNX Runtime's {w.kind.onnx_op} operator runs float32 only, not {w.dtype}"
    return None


def attach_onnx(problem: Problem, torch: Any) -> None:
    """The model ONNX Runtime runs: the torch module exported, else the graph built from the weights;
    none without onnxruntime or onnx."""
    if optional.try_import("onnxruntime") is None:
        return
    # torch's exporter does not take packed sequences: a ragged batch gets the graph built here.
    if torch is not None and problem.workload.lengths is None and optional.try_import("onnx") is not None:
        try:
            problem.onnx_model = onnx_graph.onnx_from_torch(
                torch, problem.torch_module, problem.x, problem.workload.kind
            )
            problem.onnx_source = "torch.onnx.export(dynamo=False)"
            return
        except Exception as exc:  # fall back to building the graph ourselves
            problem.notes.append(
                f"onnx: torch.onnx.export failed ({type(exc).__name__}: {exc}); "
                "built the graph with onnx.helper instead"
            )
    if optional.try_import("onnx") is None:
        return
    problem.onnx_model = onnx_graph.onnx_from_weights(problem.workload, problem.params)
    problem.onnx_source = "onnx.helper"
