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
    params: dict[str, np.ndarray]  # PyTorch names -> float32 arrays
    x: np.ndarray  # (T, N, I)
    gy: np.ndarray  # (T, N, D*H) cotangent of y (training)
    weights_from: str  # "torch" or "fusedrnn"
    torch_module: Any = None
    onnx_model: bytes | None = None
    onnx_source: str = ""
    notes: list[str] = field(default_factory=list)


def fusedrnn_layer(fr: Any, w: Workload, seed: Any = None) -> Any:
    cls = getattr(fr, w.kind.torch_layer)  # fusedrnn's layers have torch.nn's names
    return cls(w.I, w.H, num_layers=w.layers, bidirectional=w.bidirectional, seed=seed)


def torch_module(torch: Any, w: Workload) -> Any:
    cls = getattr(torch.nn, w.kind.torch_layer)
    return cls(w.I, w.H, num_layers=w.layers, bidirectional=w.bidirectional)


def make_problem(w: Workload, seed: int, torch: Any, want_onnx: bool) -> Problem:
    """Weights from a torch module seeded with ``seed`` (``torch`` None: fusedrnn's own initialization),
    x and the cotangent from a NumPy generator seeded likewise; the ONNX model when ``want_onnx``."""
    import fusedrnn as fr

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((w.T, w.N, w.I)).astype(np.float32)
    gy = rng.standard_normal((w.T, w.N, w.directions * w.H)).astype(np.float32)
    module = None
    if torch is not None:
        torch.manual_seed(seed)
        module = torch_module(torch, w)
        params = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
        weights_from = "torch"
    else:
        layer = fusedrnn_layer(fr, w, seed=seed)
        params = {k: np.array(v, dtype=np.float32) for k, v in layer.state_dict().items()}
        weights_from = "fusedrnn"
    problem = Problem(w, params, x, gy, weights_from, torch_module=module)
    if want_onnx and w.mode == "inference":
        attach_onnx(problem, torch)
    return problem


def attach_onnx(problem: Problem, torch: Any) -> None:
    """The model ONNX Runtime runs: the torch module exported, else the graph built from the weights;
    none without onnxruntime or onnx."""
    if optional.try_import("onnxruntime") is None:
        return
    if torch is not None and optional.try_import("onnx") is not None:
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
