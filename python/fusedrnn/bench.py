"""Benchmark fusedrnn against its NumPy reference, PyTorch and ONNX Runtime, in one process.

``python -m fusedrnn bench`` runs :func:`run`.

1. For every workload (cell, inference or training, shape, layers, directions): one set of float32 weights
   (from a ``torch.nn`` module when PyTorch is installed, loaded into fusedrnn with ``load_state_dict``;
   otherwise fusedrnn's own initialization), one input ``x`` and, for training, one output cotangent ``g``
   (loss ``sum(y * g)``).

Then, for every workload at every requested thread count:

2. runs every implementation once and checks its answer against fusedrnn's (outputs, final states, and for
   training the input and weight gradients): a difference beyond float32 tolerance raises
   :class:`AnswerMismatch` -- nothing is timed whose answer is wrong;
3. warms every implementation up, then times them interleaved: in each round every implementation runs
   once, in a rotating order, so drift of the machine hits all of them alike;
4. reports the median time of each and ``ratio = anchor time / fusedrnn time`` (above 1: fusedrnn is
   faster; below 1 the table says "fusedrnn slower"), beside the target ratio that the project sets for that
   workload, anchor and thread count, and whether the measured ratio meets it.

Around the timing, in the same process: the float32 matmul rate (NumPy, a square sgemm at each thread
count), against which the large-batch rows report their GFLOP/s; the rate at which NumPy reads an array of
the size of one step's recurrent weights, against which the batch-1 rows report their time per step;
fusedrnn's own 1-thread / 2-thread speedup; and its first call on a new layer against its steady state.
``memory=True`` adds peak memory, each implementation in a fresh process (:func:`measure_memory`).

Anchors: ``numpy`` (``fusedrnn.reference``, explicit per-step NumPy loops; slow, so it is timed in fewer
rounds), ``torch`` (``torch.nn.LSTM``/``GRU`` with ``torch.set_num_threads`` equal to the thread count,
inference under ``torch.inference_mode``), ``onnxruntime`` (inference only: the torch module exported to
ONNX, or, without PyTorch, the same graph built from the weights with ``onnx.helper``; one session per thread
count with ``intra_op_num_threads`` equal to it). Anchors that are not installed are skipped with a note.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

import numpy as np

from . import bench_stream

__all__ = [
    "AnswerMismatch",
    "BenchError",
    "DEFAULT_WORKLOADS",
    "QUICK_WORKLOADS",
    "Workload",
    "default_thread_counts",
    "format_table",
    "measure_memory",
    "plot",
    "run",
]

# Gate-block permutations from PyTorch's order to ONNX's (formats.md):
# LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h.
_ONNX_GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}
_GATES = {"lstm": 4, "gru": 3}

# A float32 answer passes when max|anchor - fusedrnn| <= TOLERANCE * max(1, max|fusedrnn|). Correct float32
# implementations agree to about 1e-6 here; a wrong gate order or bias mapping differs by 0.1 or more.
TOLERANCE = {"inference": 1e-4, "training": 1e-3}

# The NumPy reference gets about this many seconds of timing per workload and thread count (at least one
# run, at most one per round).
NUMPY_BUDGET_S = 3.0
# Without an explicit --repeat, fewer rounds (never fewer than MIN_ROUNDS) when one workload would otherwise
# take more than about ROUND_BUDGET_S seconds of warm-up and timing, the NumPy reference apart.
ROUND_BUDGET_S = 8.0
MIN_ROUNDS = 7
# Before each timed call the process must be quiet: threads that the previous implementation left spinning
# (ONNX Runtime's and OpenMP's workers spin for milliseconds after a call, OpenBLAS's longer) would otherwise
# take a core from the next one. Quiet: over two pauses of _SETTLE_STEP_S in a row, all threads together
# used at most _SETTLE_BUSY of one core; waiting stops after _SETTLE_MAX_S in any case. The pauses are
# longer than a scheduler tick: the CPU time of a thread that runs on is only brought up to date at ticks.
_SETTLE_STEP_S = 0.01
_SETTLE_BUSY = 0.1
_SETTLE_MAX_S = 0.5
# Then the implementation runs untimed for at least _LEAD_IN_S (at least one call) before its timed call:
# on a virtual machine a core left idle for a while runs slowly for the next tens of milliseconds (the
# host gives it back gradually), which would hit whatever uses two cores in lockstep.
_LEAD_IN_S = 0.05

# Performance targets beyond the ratios (which each workload carries): fusedrnn's first call on a new layer
# takes at most FIRST_CALL_TARGET times its steady-state median.
FIRST_CALL_TARGET = 2.0
# Workloads with at least this batch are reported against the matmul roof (GFLOP/s).
LARGE_BATCH = 32
# Side of the square float32 matmul whose rate is the roof (QUICK_MATMUL_SIZE with quick=True).
MATMUL_SIZE = 1024
QUICK_MATMUL_SIZE = 256


class BenchError(RuntimeError):
    """The benchmark could not produce an honest result."""


class AnswerMismatch(BenchError):
    """An anchor's answer differs from fusedrnn's beyond float32 tolerance."""


# A target: (anchor, ratio at 1 thread, ratio at 2 threads); ratio = anchor time / fusedrnn time.
TargetSpec = tuple[str, float, float]


@dataclass(frozen=True)
class Workload:
    """One benchmarked problem: ``cell`` in {"lstm", "gru"}, ``mode`` in {"inference", "training"},
    x of shape (T, N, I), hidden size H, ``layers`` layers, one or two directions, float32, zero initial
    state.

    The performance targets do not take part in equality: ``targets`` holds (anchor, ratio at 1 thread,
    ratio at 2 threads); ``matmul_fraction_target`` is the least fraction of the run's matmul rate that
    fusedrnn's GFLOP/s should reach; ``scaling_target`` the least 1-thread / 2-thread speedup."""

    cell: str
    mode: str
    T: int
    N: int
    I: int  # noqa: E741 -- the shape letter of the design documents
    H: int
    layers: int = 1
    bidirectional: bool = False
    targets: tuple[TargetSpec, ...] = field(default=(), compare=False)
    matmul_fraction_target: float | None = field(default=None, compare=False)
    scaling_target: float | None = field(default=None, compare=False)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def gates(self) -> int:
        return _GATES[self.cell]

    @property
    def name(self) -> str:
        kind = self.cell.upper()
        if self.bidirectional:
            kind += " bidirectional"
        if self.layers > 1:
            kind += f" {self.layers}-layer"
        return f"{kind} {self.mode} T={self.T} N={self.N} I={self.I} H={self.H}"

    @property
    def short_name(self) -> str:
        kind = ("bi" if self.bidirectional else "") + self.cell.upper()
        if self.layers > 1:
            kind += f" x{self.layers}"
        return f"{kind} {'inf' if self.mode == 'inference' else 'train'} N={self.N}"

    @property
    def flops(self) -> float:
        """Matrix-product FLOPs of one call: forward 2*T*N*G*H*(I_l + H) per layer and direction (I_l the
        layer's input size), training 3x that (the input gradient, the state gradient and the weight
        gradients cost one forward product each). Elementwise work is not counted."""
        total = 0.0
        for layer in range(self.layers):
            i_l = self.I if layer == 0 else self.directions * self.H
            total += self.directions * 2.0 * self.T * self.N * self.gates * self.H * (i_l + self.H)
        return total * (3 if self.mode == "training" else 1)

    @property
    def recurrent_weight_bytes(self) -> int:
        """Bytes of every recurrent weight matrix W_hh (all layers and directions), float32: what one time
        step must read at batch 1."""
        return self.layers * self.directions * self.gates * self.H * self.H * 4

    def target(self, anchor: str, threads: int) -> float | None:
        """The least ratio targeted against ``anchor`` at ``threads`` threads, or None when it sets none."""
        for name, at1, at2 in self.targets:
            if name == anchor:
                return {1: at1, 2: at2}.get(threads)
        return None

    def shape_dict(self) -> dict[str, Any]:
        return {"cell": self.cell, "mode": self.mode, "T": self.T, "N": self.N, "I": self.I, "H": self.H,
                "layers": self.layers, "bidirectional": self.bidirectional}


# The performance targets: least ratio anchor time / fusedrnn time.
_LSTM_N1 = (("onnxruntime", 1.0, 1.5), ("torch", 1.2, 2.0))
_LSTM_N64 = (("onnxruntime", 1.0, 1.0), ("torch", 1.1, 1.1))
_GRU_N1 = (("onnxruntime", 1.25, 1.5),)
_GRU_N64 = (("onnxruntime", 1.05, 1.05),)
_BILSTM_N1 = (("onnxruntime", 1.0, 1.5),)
_BILSTM_N8 = (("onnxruntime", 1.0, 1.1),)
_LSTM_TRAIN = (("torch", 1.3, 1.3),)
_GRU_TRAIN = (("torch", 3.0, 3.0),)
_FRACTION = 0.85  # of the run's matmul rate, at N=64
_SCALING = 1.6  # 1-thread time / 2-thread time, at N=1 H=256

DEFAULT_WORKLOADS: tuple[Workload, ...] = (
    Workload("lstm", "inference", 100, 1, 128, 256, targets=_LSTM_N1, scaling_target=_SCALING),
    Workload("lstm", "inference", 100, 64, 256, 256, targets=_LSTM_N64, matmul_fraction_target=_FRACTION),
    Workload("gru", "inference", 100, 1, 128, 256, targets=_GRU_N1, scaling_target=_SCALING),
    Workload("gru", "inference", 100, 64, 256, 256, targets=_GRU_N64, matmul_fraction_target=_FRACTION),
    Workload("lstm", "inference", 100, 1, 128, 256, layers=2, bidirectional=True, targets=_BILSTM_N1,
             scaling_target=_SCALING),
    Workload("lstm", "inference", 100, 8, 128, 256, layers=2, bidirectional=True, targets=_BILSTM_N8),
    Workload("lstm", "training", 50, 32, 128, 256, targets=_LSTM_TRAIN),
    Workload("gru", "training", 100, 1, 128, 256, targets=_GRU_TRAIN, scaling_target=_SCALING),
)

# --quick: a smoke run (seconds, mostly imports); the numbers mean nothing, the checks still run. Each tiny
# workload stands for a default one and carries its targets, so that every column and section shows.
QUICK_WORKLOADS: tuple[Workload, ...] = (
    Workload("lstm", "inference", 6, 1, 8, 16, targets=_LSTM_N1, scaling_target=_SCALING),
    Workload("gru", "inference", 6, LARGE_BATCH, 8, 16, targets=_GRU_N64, matmul_fraction_target=_FRACTION),
    Workload("lstm", "inference", 6, 1, 8, 16, layers=2, bidirectional=True, targets=_BILSTM_N1),
    Workload("lstm", "training", 5, 2, 8, 16, targets=_LSTM_TRAIN),
    Workload("gru", "training", 5, 1, 8, 16, targets=_GRU_TRAIN, scaling_target=_SCALING),
)

ALL_ANCHORS = ("numpy", "torch", "onnxruntime")


def default_thread_counts() -> list[int]:
    """1 and the number of cores this process may run on (just [1] on a single core)."""
    try:
        cores = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return sorted({1, max(1, cores)})


# ----------------------------------------------------------------------------------------------------------
# Problems and runners


class AnchorUnavailable(Exception):
    """An anchor cannot run here (not installed, or not applicable); the message says why."""


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


@dataclass
class Runner:
    """One implementation of one problem at one thread count.

    ``call()`` is what is timed; ``answer(result)`` turns its result into arrays to compare (outside the
    timed region). ``max_runs`` limits how many rounds include it (None: every round)."""

    name: str
    call: Callable[[], Any]
    answer: Callable[[Any], dict[str, np.ndarray]]
    max_runs: int | None = None


def _try_import(name: str) -> Any:
    try:
        return __import__(name)
    except Exception:  # an anchor that fails to import for any reason is an absent anchor
        return None


def _fusedrnn_layer(fr: Any, w: Workload, seed: Any = None) -> Any:
    cls = {"lstm": fr.LSTM, "gru": fr.GRU}[w.cell]
    return cls(w.I, w.H, num_layers=w.layers, bidirectional=w.bidirectional, seed=seed)


def _torch_module(torch: Any, w: Workload) -> Any:
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[w.cell]
    return cls(w.I, w.H, num_layers=w.layers, bidirectional=w.bidirectional)


def _make_problem(w: Workload, seed: int, torch: Any, want_onnx: bool) -> Problem:
    import fusedrnn as fr

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((w.T, w.N, w.I)).astype(np.float32)
    gy = rng.standard_normal((w.T, w.N, w.directions * w.H)).astype(np.float32)
    torch_module = None
    if torch is not None:
        torch.manual_seed(seed)
        torch_module = _torch_module(torch, w)
        params = {k: v.detach().numpy().copy() for k, v in torch_module.state_dict().items()}
        weights_from = "torch"
    else:
        layer = _fusedrnn_layer(fr, w, seed=seed)
        params = {k: np.array(v, dtype=np.float32) for k, v in layer.state_dict().items()}
        weights_from = "fusedrnn"
    problem = Problem(w, params, x, gy, weights_from, torch_module=torch_module)
    if want_onnx and w.mode == "inference":
        _attach_onnx(problem, torch)
    return problem


# ---- ONNX ------------------------------------------------------------------------------------------------


def _onnx_from_torch(problem: Problem, torch: Any) -> bytes:
    """The torch module exported by the TorchScript-based exporter (static shapes)."""
    w = problem.workload
    buf = io.BytesIO()
    names = ["Y", "Y_h", "Y_c"] if w.cell == "lstm" else ["Y", "Y_h"]
    module = problem.torch_module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns that it is deprecated, and about tracing
        torch.onnx.export(module, (torch.from_numpy(problem.x),), buf, dynamo=False,
                          input_names=["X"], output_names=names)
    return buf.getvalue()


def _onnx_from_weights(problem: Problem) -> bytes:
    """ONNX LSTM/GRU nodes built from PyTorch-layout weights (formats.md), one per layer: gate blocks
    reordered, W = weight_ih, R = weight_hh, B = [bias_ih, bias_hh] (forward then reverse direction),
    GRU with linear_before_reset=1. Between layers, Y (T, D, N, H) becomes (T, N, D*H); the outputs are
    Y (T, N, D*H) and Y_h (, Y_c) (L*D, N, H) as PyTorch returns them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = problem.workload
    order = _ONNX_GATE_ORDER[w.cell]
    p = problem.params
    D, H = w.directions, w.H

    def reorder(a: np.ndarray) -> np.ndarray:
        blocks = np.split(a, w.gates, axis=0)
        return np.concatenate([blocks[k] for k in order], axis=0)

    def stacked(role: str, layer: int) -> np.ndarray:
        suffixes = ["", "_reverse"][:D]
        return np.stack([reorder(p[f"{role}_l{layer}{s}"]) for s in suffixes])

    nodes, inits = [], []
    inits.append(numpy_helper.from_array(np.array([w.T, w.N, D * H], dtype=np.int64), "seq_shape"))
    layer_input = "X"
    state_outputs: dict[str, list[str]] = {"Y_h": [], "Y_c": []}
    for layer in range(w.layers):
        names = {k: f"{k}_{layer}" for k in ("W", "R", "B", "Y", "Y_h", "Y_c", "Yt", "Ys")}
        bias = np.concatenate([stacked("bias_ih", layer), stacked("bias_hh", layer)], axis=1)
        for arr, key in ((stacked("weight_ih", layer), "W"), (stacked("weight_hh", layer), "R"), (bias, "B")):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), names[key]))
        outs = [names["Y"], names["Y_h"]] + ([names["Y_c"]] if w.cell == "lstm" else [])
        attrs: dict[str, Any] = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if w.cell == "gru":
            attrs["linear_before_reset"] = 1
        nodes.append(helper.make_node(w.cell.upper(), [layer_input, names["W"], names["R"], names["B"]],
                                      outs, **attrs))
        last = layer == w.layers - 1
        nodes.append(helper.make_node("Transpose", [names["Y"]], [names["Yt"]], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [names["Yt"], "seq_shape"], ["Y" if last else names["Ys"]]))
        layer_input = names["Ys"]
        state_outputs["Y_h"].append(names["Y_h"])
        state_outputs["Y_c"].append(names["Y_c"])
    outputs = ["Y", "Y_h", "Y_c"] if w.cell == "lstm" else ["Y", "Y_h"]
    for name in outputs[1:]:
        nodes.append(helper.make_node("Concat", state_outputs[name], [name], axis=0))
    state_shape = [w.layers * D, w.N, H]
    out_shapes = {"Y": [w.T, w.N, D * H], "Y_h": state_shape, "Y_c": state_shape}
    graph = helper.make_graph(
        nodes, f"fusedrnn_bench_{w.cell}",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [w.T, w.N, w.I])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, out_shapes[n]) for n in outputs],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _attach_onnx(problem: Problem, torch: Any) -> None:
    if _try_import("onnxruntime") is None:
        return
    if torch is not None and _try_import("onnx") is not None:
        try:
            problem.onnx_model = _onnx_from_torch(problem, torch)
            problem.onnx_source = "torch.onnx.export(dynamo=False)"
            return
        except Exception as exc:  # fall back to building the graph ourselves
            problem.notes.append(f"onnx: torch.onnx.export failed ({type(exc).__name__}: {exc}); "
                                 "built the graph with onnx.helper instead")
    if _try_import("onnx") is None:
        return
    problem.onnx_model = _onnx_from_weights(problem)
    problem.onnx_source = "onnx.helper"


# ---- runners ---------------------------------------------------------------------------------------------


def _state_answer(cell: str, state: Any, to_numpy: Callable[[Any], np.ndarray]) -> dict[str, np.ndarray]:
    if cell == "lstm":
        return {"h_n": to_numpy(state[0]), "c_n": to_numpy(state[1])}
    return {"h_n": to_numpy(state)}


def _fusedrnn_runner(problem: Problem) -> Runner:
    import fusedrnn as fr

    w = problem.workload
    layer = _fusedrnn_layer(fr, w)
    if problem.torch_module is not None:
        layer.load_state_dict(problem.torch_module.state_dict())
    else:
        layer.load_state_dict(problem.params)
    x, gy = problem.x, problem.gy

    if w.mode == "inference":
        def call() -> Any:
            return layer(x)

        def answer(res: Any) -> dict[str, np.ndarray]:
            y, state = res
            return {"output": y, **_state_answer(w.cell, state, np.asarray)}
    else:
        def call() -> Any:
            tape = layer.record(x)
            return tape, tape.backward(gy)

        def answer(res: Any) -> dict[str, np.ndarray]:
            tape, g = res
            out = {"output": tape.output, "grad_input": g.input}
            out.update({"grad_" + k: v for k, v in g.params.items()})
            return out

    return Runner("fusedrnn", call, answer)


def _numpy_runner(problem: Problem, threads: int) -> Runner:
    from fusedrnn import reference
    from fusedrnn._config import StackConfig

    w = problem.workload
    config = StackConfig(cell=w.cell, input_size=w.I, hidden_size=w.H, num_layers=w.layers,
                         bidirectional=w.bidirectional)
    params = problem.params
    x, gy = problem.x, problem.gy

    if w.mode == "inference":
        def call() -> Any:
            return reference.forward(config, params, x)

        def answer(res: Any) -> dict[str, np.ndarray]:
            y, h_n, c_n, _ = res
            out = {"output": y, "h_n": h_n}
            if c_n is not None:
                out["c_n"] = c_n
            return out
    else:
        def call() -> Any:
            y, _, _, cache = reference.forward(config, params, x)
            return y, reference.backward(cache, gy)

        def answer(res: Any) -> dict[str, np.ndarray]:
            y, (grad_x, _, _, grad_params) = res
            out = {"output": y, "grad_input": grad_x}
            out.update({"grad_" + k: v for k, v in grad_params.items()})
            return out

    return Runner("numpy", call, answer)


def _torch_runner(problem: Problem, threads: int) -> Runner:
    torch = _try_import("torch")
    if torch is None:
        raise AnchorUnavailable("PyTorch is not installed")
    torch.set_num_threads(threads)
    w = problem.workload
    module = problem.torch_module
    if w.mode == "inference":
        module.eval()
        xt = torch.from_numpy(problem.x)

        def call() -> Any:
            with torch.inference_mode():
                return module(xt)

        def answer(res: Any) -> dict[str, np.ndarray]:
            y, state = res
            return {"output": y.numpy(), **_state_answer(w.cell, state, lambda t: t.numpy())}
    else:
        module.train()
        xt = torch.from_numpy(problem.x.copy()).requires_grad_(True)
        gt = torch.from_numpy(problem.gy)
        params = dict(module.named_parameters())

        def call() -> Any:
            module.zero_grad(set_to_none=True)
            xt.grad = None
            y, _ = module(xt)
            y.backward(gt)  # the gradients of loss = sum(y * g), without forming y * g
            return y

        def answer(res: Any) -> dict[str, np.ndarray]:
            out = {"output": res.detach().numpy(), "grad_input": xt.grad.numpy()}
            out.update({"grad_" + k: p.grad.numpy() for k, p in params.items()})
            return out

    return Runner("torch", call, answer)


def _onnxruntime_runner(problem: Problem, threads: int) -> Runner:
    if problem.workload.mode != "inference":
        raise AnchorUnavailable("ONNX Runtime runs inference only")
    ort = _try_import("onnxruntime")
    if ort is None:
        raise AnchorUnavailable("onnxruntime is not installed")
    if problem.onnx_model is None:
        raise AnchorUnavailable("no ONNX model: the onnx package is not installed")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    session = ort.InferenceSession(problem.onnx_model, sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: problem.x}
    w = problem.workload

    def call() -> Any:
        return session.run(None, feed)

    def answer(res: Any) -> dict[str, np.ndarray]:
        out = {"output": res[0], "h_n": res[1]}
        if w.cell == "lstm":
            out["c_n"] = res[2]
        return out

    return Runner("onnxruntime", call, answer)


# name -> factory(problem, threads) -> Runner, or raises AnchorUnavailable
ANCHOR_FACTORIES: dict[str, Callable[[Problem, int], Runner]] = {
    "numpy": _numpy_runner,
    "torch": _torch_runner,
    "onnxruntime": _onnxruntime_runner,
}


# ----------------------------------------------------------------------------------------------------------
# Checking and timing


def check_answer(workload: Workload, name: str, got: dict[str, np.ndarray],
                 want: dict[str, np.ndarray]) -> tuple[float, float]:
    """Compare ``got`` (an anchor) to ``want`` (fusedrnn) on every key ``want`` has.

    Returns (max abs diff, tolerance of the worst entry relative to its scale); raises AnswerMismatch
    when an entry is missing, misshapen, not finite or beyond tolerance."""
    tol = TOLERANCE[workload.mode]
    worst = 0.0
    worst_rel = 0.0
    for key, ref in want.items():
        if key not in got:
            raise AnswerMismatch(f"{workload.name}: {name} gave no {key!r}")
        a = np.asarray(got[key], dtype=np.float64)
        b = np.asarray(ref, dtype=np.float64)
        if a.shape != b.shape:
            raise AnswerMismatch(f"{workload.name}: {name} {key} has shape {a.shape}, fusedrnn {b.shape}")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise AnswerMismatch(f"{workload.name}: {name} or fusedrnn {key} is not finite")
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = max(1.0, float(np.max(np.abs(b))) if b.size else 0.0)
        if diff > tol * scale:
            raise AnswerMismatch(
                f"{workload.name}: {name} differs from fusedrnn in {key}: max abs diff {diff:.3g} "
                f"> tolerance {tol:g} * {scale:.3g}")
        worst = max(worst, diff)
        worst_rel = max(worst_rel, diff / scale)
    return worst, worst_rel


def _settle() -> bool:
    """Waits until no thread of this process is busy (see _SETTLE_BUSY); False if it waited in vain."""
    deadline = time.perf_counter() + _SETTLE_MAX_S
    quiet = 0
    while True:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(_SETTLE_STEP_S)
        busy = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
        quiet = quiet + 1 if busy <= _SETTLE_BUSY else 0
        if quiet == 2:
            return True
        if time.perf_counter() > deadline:
            return False


def _timed_rounds(runners: list[Runner], rounds: int) -> dict[str, list[float]]:
    """Interleaved timing: each round runs every runner once (fewer for those with max_runs), starting
    at a different runner each round. Each timed call follows, back to back, untimed calls of the same
    runner for at least _LEAD_IN_S (its threads are up and its cores busy, as in a stream of calls), and
    that lead-in starts once the threads the previous runner left spinning have gone quiet (_settle)."""
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    include: dict[str, set[int]] = {}
    for r in runners:
        k = rounds if r.max_runs is None else max(1, min(rounds, r.max_runs))
        include[r.name] = {(i * rounds) // k for i in range(k)}  # evenly spread over the rounds
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rnd in range(rounds):
            shift = rnd % len(runners)
            for r in runners[shift:] + runners[:shift]:
                if rnd not in include[r.name]:
                    continue
                _settle()
                if r.name != "numpy":  # the reference has no threads of its own to wake
                    lead_in_end = time.perf_counter() + _LEAD_IN_S
                    r.call()
                    while time.perf_counter() < lead_in_end:
                        r.call()
                t0 = time.perf_counter()
                r.call()
                times[r.name].append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


@dataclass
class Row:
    workload: Workload
    threads: int
    impl: str
    median_s: float
    min_s: float
    runs: int
    ratio: float | None  # anchor median / fusedrnn median; None for fusedrnn itself
    max_abs_diff: float | None
    target: float | None = None  # the least ratio targeted for this anchor and thread count
    first_s: float | None = None  # fusedrnn: its first call on a new layer (the answer check)

    @property
    def target_met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio >= self.target

    @property
    def gflops(self) -> float:
        return self.workload.flops / self.median_s / 1e9

    def to_json(self) -> dict[str, Any]:
        w = self.workload
        return {"workload": w.name, "cell": w.cell, "mode": w.mode, "T": w.T, "N": w.N, "I": w.I, "H": w.H,
                "layers": w.layers, "bidirectional": w.bidirectional,
                "dtype": "float32", "threads": self.threads, "impl": self.impl,
                "median_ms": self.median_s * 1e3, "min_ms": self.min_s * 1e3, "runs": self.runs,
                "ratio": self.ratio,
                "verdict": None if self.ratio is None else _verdict(self.ratio),
                "target": self.target, "target_met": self.target_met,
                "gflops": self.gflops,
                "first_call_ms": None if self.first_s is None else self.first_s * 1e3,
                "max_abs_diff": self.max_abs_diff}


def _verdict(ratio: float) -> str:
    return "fusedrnn faster" if ratio >= 1.0 else "fusedrnn slower"


def _bench_one(problem: Problem, threads: int, anchors: list[str], rounds: int, warmup: int,
               adaptive: bool, notes: list[str]) -> list[Row]:
    """Check, warm up and time every implementation of one problem at one thread count. ``adaptive``:
    ``rounds`` and ``warmup`` are upper limits, lowered so that one workload takes about ROUND_BUDGET_S."""
    w = problem.workload
    runners = [_fusedrnn_runner(problem)]
    for name in anchors:
        try:
            runners.append(ANCHOR_FACTORIES[name](problem, threads))
        except AnchorUnavailable as exc:
            note = f"{name}: skipped for {w.mode} ({exc})"
            if note not in notes:
                notes.append(note)

    # The answer check doubles as the first warm-up call, measures fusedrnn's first call on a new layer,
    # and measures the slow NumPy reference once.
    gc.collect()
    t0 = time.perf_counter()
    res = runners[0].call()
    first = {"fusedrnn": time.perf_counter() - t0}
    want = runners[0].answer(res)
    diffs: dict[str, float] = {}
    for r in runners[1:]:
        t0 = time.perf_counter()
        res = r.call()
        first[r.name] = time.perf_counter() - t0
        diffs[r.name], _ = check_answer(w, r.name, r.answer(res), want)
    del res

    where = f"{w.name}, threads={threads}"
    # a lead-in of at least _LEAD_IN_S and a timed call
    round_cost = sum(max(2 * t, _LEAD_IN_S + t) for name, t in first.items() if name != "numpy")
    if adaptive and round_cost * (rounds + warmup) > ROUND_BUDGET_S:
        fit = int(ROUND_BUDGET_S / max(round_cost, 1e-9))
        warmup = min(warmup, max(1, fit // 8))
        rounds = min(rounds, max(MIN_ROUNDS, fit - warmup))
        notes.append(f"{where}: {rounds} rounds after {warmup} warm-up calls (one round takes "
                     f"{round_cost:.2f} s)")
    for r in runners:
        if r.name == "numpy":
            r.max_runs = max(1, int(NUMPY_BUDGET_S / max(first[r.name], 1e-9)))
            if r.max_runs < rounds:
                notes.append(f"{where}: numpy timed in {r.max_runs} of {rounds} rounds (one call takes "
                             f"{first[r.name]:.2f} s)")
            continue
        for _ in range(warmup):
            r.call()

    times = _timed_rounds(runners, rounds)
    base = statistics.median(times["fusedrnn"])
    rows = []
    for r in runners:
        med = statistics.median(times[r.name])
        own = r.name == "fusedrnn"
        rows.append(Row(w, threads, r.name, med, min(times[r.name]), len(times[r.name]),
                        None if own else med / base, diffs.get(r.name),
                        target=None if own else w.target(r.name, threads),
                        first_s=first[r.name] if own else None))
    return rows


# ----------------------------------------------------------------------------------------------------------
# What the rows are compared with: the matmul roof and the read rate, measured in the same run


def _sgemm_samples(size: int, reps: int) -> list[float]:
    """GFLOP/s of ``reps`` float32 (size x size) @ (size x size) products with NumPy, after two untimed."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty_like(a)
    for _ in range(2):
        np.matmul(a, b, out=c)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        out.append(2.0 * size**3 / (time.perf_counter() - t0) / 1e9)
    return out


_SGEMM_CHILD = ("import json, sys; from fusedrnn.bench import _sgemm_samples; "
                "print(json.dumps(_sgemm_samples(int(sys.argv[1]), int(sys.argv[2]))))")


def _matmul_samples(threads: int, tpc: Any, size: int, reps: int) -> list[float]:
    """NumPy's sgemm rate at ``threads`` BLAS threads: in this process with threadpoolctl (the caller holds
    the limit), else in a child process whose BLAS thread count is set through the environment."""
    if tpc is not None:
        with tpc.threadpool_limits(limits=threads, user_api="blas"):
            return _sgemm_samples(size, reps)
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run([sys.executable, "-c", _SGEMM_CHILD, str(size), str(reps)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise BenchError(f"the matmul-rate child process failed: {proc.stderr.strip()[-500:]}")
    return [float(v) for v in json.loads(proc.stdout.strip().splitlines()[-1])]


def _matmul_method(tpc: Any, size: int) -> str:
    where = ("in this process, NumPy's BLAS held to that many threads with threadpoolctl" if tpc is not None
             else "in a child process started with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS "
                  "and BLIS_NUM_THREADS set to the thread count (threadpoolctl is not installed)")
    return (f"numpy.matmul of two float32 {size}x{size} matrices at each thread count, {where}; "
            "median of the samples taken just before and just after that thread count's workloads")


def _median_time(fn: Callable[[], Any], budget_s: float, min_reps: int) -> float:
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 100 * min_reps:
            break
    return statistics.median(times)


def _read_rate(rows: int, cols: int, tpc: Any, budget_s: float) -> float:
    """Bytes per second at which NumPy reads a float32 (rows, cols) array that is hot in cache, on one
    thread: the faster of ``A @ v`` (sgemv, with the BLAS held to one thread; only with threadpoolctl) and
    ``A.max()`` (NumPy's own single-threaded loop), each the median of repeated reads."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((rows, cols), dtype=np.float32)
    v = rng.standard_normal(cols, dtype=np.float32)
    out = np.empty(rows, dtype=np.float32)
    best = _median_time(a.max, budget_s / 2, 20)
    if tpc is not None:
        with tpc.threadpool_limits(limits=1, user_api="blas"):
            best = min(best, _median_time(lambda: np.matmul(a, v, out=out), budget_s / 2, 20))
    return a.nbytes / best


def _read_method(tpc: Any) -> str:
    how = ("the faster of A @ v (sgemv, NumPy's BLAS on one thread) and A.max()" if tpc is not None
           else "A.max() (without threadpoolctl the BLAS sgemv could not be held to one thread)")
    return (f"NumPy reading a float32 array A shaped like the step's stacked W_hh matrices, hot in cache, "
            f"one thread: {how}, median of repeated reads. At n threads each core is assumed to read its "
            "1/n share at the rate measured on an array of that share's size. NumPy's reads are not the "
            "fastest possible, so the true limit can be lower than this one")


@dataclass
class Batch1:
    """At batch 1: fusedrnn's time per step against the time to read that step's recurrent weights."""

    workload: Workload
    threads: int
    step_s: float
    share_bytes: int  # bytes of W_hh one thread reads per pass
    passes: int  # reads of W_hh per step: 1 for inference, 2 for training (forward and backward)
    read_bytes_per_s: float

    @property
    def limit_s(self) -> float:
        return self.passes * self.share_bytes / self.read_bytes_per_s

    def to_json(self) -> dict[str, Any]:
        return {"workload": self.workload.name, "threads": self.threads, "step_us": self.step_s * 1e6,
                "w_hh_bytes_per_thread": self.share_bytes, "passes": self.passes,
                "read_gb_per_s": self.read_bytes_per_s / 1e9, "limit_us": self.limit_s * 1e6,
                "step_over_limit": self.step_s / self.limit_s}


def _batch1(rows: list[Row], threads: int, tpc: Any, budget_s: float) -> list[Batch1]:
    out = []
    for row in rows:
        w = row.workload
        if row.impl != "fusedrnn" or w.N != 1 or row.threads != threads:
            continue
        weight_rows = w.layers * w.directions * w.gates * w.H
        share_rows = -(-weight_rows // threads)
        rate = _read_rate(share_rows, w.H, tpc, budget_s)
        out.append(Batch1(w, threads, row.median_s / w.T, share_rows * w.H * 4,
                          2 if w.mode == "training" else 1, rate))
    return out


# ----------------------------------------------------------------------------------------------------------
# Targets


@dataclass
class TargetCheck:
    """One performance target against what this run measured."""

    kind: str  # "ratio", "matmul_fraction", "scaling", "first_call", "stream_overhead", "stream_vs_torch"
    workload: str
    threads: int | None
    what: str
    value: float
    target: float
    at_most: bool = False  # the target is an upper bound (first call) rather than a lower one

    @property
    def met(self) -> bool:
        return self.value <= self.target if self.at_most else self.value >= self.target

    @property
    def bound(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self.target:g}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "workload": self.workload, "threads": self.threads, "what": self.what,
                "value": self.value, "target": self.target, "at_most": self.at_most, "met": self.met}


def _met_word(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


# ----------------------------------------------------------------------------------------------------------
# Output


def _name_width(workloads: Any) -> int:
    return max([40] + [len(w.name) for w in workloads])


def _header(width: int) -> str:
    return (f"{'workload':<{width}} {'impl':<12} {'median ms':>10} {'runs':>5} {'ratio':>7}  "
            f"{'':<16} {'target':>7} {'':<6} {'max|diff|':>9}")


def _format_row(row: Row, first: bool, width: int = 40) -> str:
    name = row.workload.name if first else ""
    ratio = "" if row.ratio is None else f"{row.ratio:6.2f}x"
    verdict = "" if row.ratio is None else _verdict(row.ratio)
    target = "" if row.target is None else f">={row.target:.2f}"
    diff = "" if row.max_abs_diff is None else f"{row.max_abs_diff:.1e}"
    return (f"{name:<{width}} {row.impl:<12} {row.median_s * 1e3:>10.3f} {row.runs:>5} {ratio:>7}  "
            f"{verdict:<16} {target:>7} {_met_word(row.target_met):<6} {diff:>9}").rstrip()


def _threads_title(threads: int) -> str:
    return (f"threads = {threads}  (float32; median of interleaved runs; ratio = anchor time / fusedrnn "
            "time, above 1 means fusedrnn is faster; target: the least ratio aimed at)")


def format_table(rows: list[Row]) -> str:
    """The whole table (one block per thread count), as printed by :func:`run`."""
    width = _name_width(r.workload for r in rows)
    lines: list[str] = []
    last_threads = None
    last_workload = None
    for row in rows:
        if row.threads != last_threads:
            if lines:
                lines.append("")
            lines += [_threads_title(row.threads), _header(width)]
            last_threads, last_workload = row.threads, None
        lines.append(_format_row(row, row.workload != last_workload, width))
        last_workload = row.workload
    return "\n".join(lines)


def _summary(rows: list[Row]) -> list[str]:
    slower = [r for r in rows if r.ratio is not None and r.ratio < 1.0]
    if not slower:
        return ["fusedrnn was faster than every anchor in every row above."]
    out = ["fusedrnn is SLOWER in these rows:"]
    out += [f"  {r.workload.name}, threads={r.threads}: {r.impl} takes {r.ratio:.2f}x fusedrnn's time"
            for r in slower]
    return out


def _fusedrnn_rows(rows: list[Row]) -> dict[tuple[Workload, int], Row]:
    return {(r.workload, r.threads): r for r in rows if r.impl == "fusedrnn"}


def _ratio_checks(rows: list[Row]) -> list[TargetCheck]:
    return [TargetCheck("ratio", r.workload.name, r.threads, f"{r.impl} time / fusedrnn time",
                        r.ratio, r.target)
            for r in rows if r.target is not None and r.ratio is not None]


def _compute_section(rows: list[Row], matmul: dict[int, float], method: str,
                     width: int) -> tuple[list[str], list[TargetCheck], list[dict[str, Any]]]:
    """GFLOP/s of every implementation of the large-batch workloads, and its fraction of the matmul rate."""
    big = [r for r in rows if r.workload.N >= LARGE_BATCH]
    if not big:
        return [], [], []
    lines = [f"large batch (N >= {LARGE_BATCH}): GFLOP/s (matrix products only: forward "
             "2*T*N*G*H*(I_l+H) per layer and direction, training 3x that) and its fraction of the float32 "
             "matmul rate of this run",
             "  matmul rate: " + ", ".join(f"threads={n}: {rate:.1f} GFLOP/s" for n, rate in matmul.items()),
             f"  ({method})",
             f"{'workload':<{width}} {'threads':>7} {'impl':<12} {'GFLOP/s':>8} {'of matmul':>9} "
             f"{'target':>7}"]
    checks, data = [], []
    last = None
    for r in big:
        name = "" if (r.workload, r.threads) == last else r.workload.name
        last = (r.workload, r.threads)
        roof = matmul.get(r.threads)
        frac = None if roof is None else r.gflops / roof
        target = r.workload.matmul_fraction_target if r.impl == "fusedrnn" else None
        met = None
        if target is not None and frac is not None:
            check = TargetCheck("matmul_fraction", r.workload.name, r.threads,
                                "fusedrnn GFLOP/s / matmul GFLOP/s", frac, target)
            checks.append(check)
            met = check.met
        frac_s = "" if frac is None else f"{frac * 100:8.1f}%"
        target_s = "" if target is None else f">={target * 100:.0f}%"
        threads_s = "" if not name else str(r.threads)
        lines.append(f"{name:<{width}} {threads_s:>7} {r.impl:<12} {r.gflops:>8.1f} {frac_s:>9} "
                     f"{target_s:>7} {_met_word(met)}".rstrip())
        data.append({"workload": r.workload.name, "threads": r.threads, "impl": r.impl, "gflops": r.gflops,
                     "matmul_gflops": roof, "fraction": frac, "target": target, "met": met})
    return lines, checks, data


def _batch1_section(items: list[Batch1], method: str, width: int) -> list[str]:
    if not items:
        return []
    lines = ["batch 1: fusedrnn's time per time step beside the time to read that step's recurrent weights "
             "(W_hh of every layer and direction; training reads them twice, forward and backward) at the "
             "read rate measured in this run: the limit",
             f"  ({method})",
             f"{'workload':<{width}} {'threads':>7} {'us/step':>8} {'W_hh KiB/thread':>15} {'read GB/s':>9} "
             f"{'passes':>6} {'limit us':>8} {'step/limit':>10}"]
    for b in items:
        lines.append(f"{b.workload.name:<{width}} {b.threads:>7} {b.step_s * 1e6:>8.2f} "
                     f"{b.share_bytes / 1024:>15.0f} {b.read_bytes_per_s / 1e9:>9.1f} {b.passes:>6} "
                     f"{b.limit_s * 1e6:>8.2f} {b.step_s / b.limit_s:>9.2f}x")
    return lines


def _scaling_section(rows: list[Row],
                     width: int) -> tuple[list[str], list[TargetCheck], list[dict[str, Any]]]:
    own = _fusedrnn_rows(rows)
    pairs = [(w, own[(w, 1)], own[(w, 2)]) for (w, n) in own if n == 1 and (w, 2) in own]
    if not pairs:
        return [], [], []
    lines = ["scaling: fusedrnn's own 1-thread time / its 2-thread time (same run)",
             f"{'workload':<{width}} {'1 thread ms':>11} {'2 threads ms':>12} {'speedup':>8} {'target':>7}"]
    checks, data = [], []
    for w, one, two in pairs:
        speedup = one.median_s / two.median_s
        met = None
        if w.scaling_target is not None:
            check = TargetCheck("scaling", w.name, None, "fusedrnn 1-thread time / 2-thread time",
                                speedup, w.scaling_target)
            checks.append(check)
            met = check.met
        target_s = "" if w.scaling_target is None else f">={w.scaling_target:.2f}"
        lines.append(f"{w.name:<{width}} {one.median_s * 1e3:>11.3f} {two.median_s * 1e3:>12.3f} "
                     f"{speedup:>7.2f}x {target_s:>7} {_met_word(met)}".rstrip())
        data.append({"workload": w.name, "ms_1_thread": one.median_s * 1e3,
                     "ms_2_threads": two.median_s * 1e3, "speedup": speedup,
                     "target": w.scaling_target, "met": met})
    return lines, checks, data


def _first_call_section(rows: list[Row], width: int) -> tuple[list[str], list[TargetCheck]]:
    own = [r for r in rows if r.impl == "fusedrnn" and r.first_s is not None]
    if not own:
        return [], []
    lines = [f"first call: fusedrnn's first call on a new layer (it packs the weights) / its steady-state "
             f"median (target <= {FIRST_CALL_TARGET:g})",
             f"{'workload':<{width}} {'threads':>7} {'first ms':>9} {'median ms':>10} {'ratio':>7}"]
    checks = []
    for r in own:
        check = TargetCheck("first_call", r.workload.name, r.threads, "fusedrnn first call / median",
                            r.first_s / r.median_s, FIRST_CALL_TARGET, at_most=True)
        checks.append(check)
        lines.append(f"{r.workload.name:<{width}} {r.threads:>7} {r.first_s * 1e3:>9.3f} "
                     f"{r.median_s * 1e3:>10.3f} {check.value:>6.2f}x {_met_word(check.met)}")
    return lines, checks


def _targets_summary(checks: list[TargetCheck]) -> list[str]:
    if not checks:
        return ["targets: none apply to these workloads and thread counts"]
    missed = [c for c in checks if not c.met]
    out = [f"performance targets: {len(checks) - len(missed)} of {len(checks)} met"]
    if missed:
        out.append("missed:")
        for c in missed:
            where = c.workload + ("" if c.threads is None else f", threads={c.threads}")
            out.append(f"  {where}: {c.what} = {c.value:.3g}, target {c.bound}")
    return out


# ----------------------------------------------------------------------------------------------------------
# Peak memory, each implementation in a fresh process


def _proc_status_bytes(key: str) -> int | None:
    """A ``VmRSS``/``VmHWM``-style line of /proc/self/status, in bytes (None where there is none)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _maxrss_bytes() -> int:
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value) if sys.platform == "darwin" else int(value) * 1024  # bytes on macOS, KiB elsewhere


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return _proc_status_bytes("VmHWM") is not None and _proc_status_bytes("VmRSS") is not None


def _nbytes(*arrays: Any) -> int:
    total = 0
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, (tuple, list)):
            total += _nbytes(*a)
        elif isinstance(a, dict):
            total += _nbytes(*a.values())
        elif isinstance(a, np.ndarray):
            total += a.nbytes
        else:  # a torch tensor
            total += a.element_size() * a.nelement()
    return total


def _memory_build(w: Workload, impl: str, x: np.ndarray, gy: np.ndarray, threads: int) -> Any:
    """(call, reset): ``call()`` runs one inference or training call and returns what it outputs;
    ``reset()`` drops what the model keeps of a call (the torch module's gradients)."""
    if impl == "fusedrnn":
        import fusedrnn as fr

        layer = _fusedrnn_layer(fr, w, seed=0)
        if w.mode == "inference":
            return (lambda: layer(x)), (lambda: None)

        def train() -> Any:
            tape = layer.record(x)
            g = tape.backward(gy)
            return tape.output, tape.state, g.input, g.state, g.params

        return train, (lambda: None)

    import torch

    module = _torch_module(torch, w)
    if w.mode == "inference":
        module.eval()
        xt = torch.from_numpy(x)

        def infer() -> Any:
            with torch.inference_mode():
                return module(xt)

        return infer, (lambda: None)

    module.train()
    xt = torch.from_numpy(x).requires_grad_(True)
    gt = torch.from_numpy(gy)
    params = list(module.parameters())

    def train_torch() -> Any:
        y, state = module(xt)
        y.backward(gt)
        return y, state, xt.grad, [p.grad for p in params]

    def reset() -> None:
        module.zero_grad(set_to_none=True)
        xt.grad = None

    return train_torch, reset


def _memory_child(spec_json: str) -> None:
    """Run in a fresh process by :func:`measure_memory`; prints one JSON line."""
    spec = json.loads(spec_json)
    w = Workload(**spec["workload"])
    impl, threads = spec["impl"], int(spec["threads"])
    import fusedrnn as fr

    fr.set_num_threads(threads)
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)

    def inputs(wl: Workload) -> tuple[np.ndarray, np.ndarray]:
        return (rng.standard_normal((wl.T, wl.N, wl.I)).astype(np.float32),
                rng.standard_normal((wl.T, wl.N, wl.directions * wl.H)).astype(np.float32))

    # A tiny model of the same kind first: thread pools and the libraries' one-time state.
    tiny = dataclasses.replace(w, T=2, N=1, I=4, H=4)
    call, reset = _memory_build(tiny, impl, *inputs(tiny), threads)
    call()
    reset()
    del call, reset
    x, gy = inputs(w)
    gc.collect()

    exact = _reset_peak()
    rss0 = _proc_status_bytes("VmRSS") if exact else None
    call, reset = _memory_build(w, impl, x, gy, threads)
    gc.collect()
    result: dict[str, Any] = {"exact": exact,
                              "model": None if rss0 is None else _proc_status_bytes("VmRSS") - rss0}
    for label in ("first", "second"):
        exact = _reset_peak()
        before = _proc_status_bytes("VmRSS") if exact else _maxrss_bytes()
        res = call()
        peak = _proc_status_bytes("VmHWM") if exact else _maxrss_bytes()
        outputs = _nbytes(res)
        # Below zero when the outputs went into pages that were already resident: no growth beyond them.
        result[label] = max(0, peak - before - outputs)
        result[label + "_outputs"] = outputs
        del res
        reset()
        gc.collect()
    print(json.dumps(result))


_MEMORY_CHILD = "import sys; from fusedrnn.bench import _memory_child; _memory_child(sys.argv[1])"

MEMORY_METHOD = (
    "each implementation alone in a fresh Python process: it imports its library and runs a tiny model of "
    "the same kind once (thread pools, one-time library state); then 'model' is the RSS growth while the "
    "model is built (its float32 weights), and each call's figure is the growth of the peak RSS (VmHWM, "
    "reset through /proc/self/clear_refs just before the call) over the RSS just before it, minus the bytes "
    "the call returns (y and the final state; for training also the gradients of the input, the state and "
    "every weight), or 0 when the outputs went into pages already resident. The first call includes "
    "one-time work (fusedrnn packs its weights then); the second is the steady state. Page granularity: "
    "4 KiB. 'allowance' is the bound aimed at for fusedrnn: inference, "
    "the input-projection buffer T*N*G*H*D float32 (plus O(N*G*H) per layer, and for a stack the sequence "
    "passed between layers); training, (G+2)*H float32 saved per step and sequence per layer and direction")
_MEMORY_METHOD_FALLBACK = (
    " [this kernel does not allow resetting the peak: the figures are the growth of "
    "getrusage(RUSAGE_SELF).ru_maxrss across the call, which reads low when the process had already "
    "peaked higher]")


def _memory_allowance(w: Workload) -> int:
    if w.mode == "inference":
        return w.T * w.N * w.gates * w.H * w.directions * 4
    return (w.gates + 2) * w.H * w.T * w.N * w.layers * w.directions * 4


def measure_memory(workloads: tuple[Workload, ...] | list[Workload], threads: int,
                   impls: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Peak memory of one call of each implementation (``"fusedrnn"``, ``"torch"``) on each workload,
    each in a fresh process (see ``MEMORY_METHOD``). Returns (entries, notes)."""
    entries: list[dict[str, Any]] = []
    notes: list[str] = []
    for w in workloads:
        for impl in impls:
            spec = json.dumps({"workload": w.shape_dict(), "impl": impl, "threads": threads})
            try:
                proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, spec], capture_output=True,
                                      text=True, timeout=600, check=False)
            except subprocess.TimeoutExpired:
                notes.append(f"memory: {impl} on {w.name} timed out")
                continue
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                notes.append(f"memory: {impl} on {w.name} failed: {proc.stderr.strip()[-300:]}")
                continue
            data = json.loads(lines[-1])
            entries.append({"workload": w.name, "impl": impl, "threads": threads, "exact": data["exact"],
                            "model_bytes": data["model"],
                            "first_call_bytes": data["first"], "second_call_bytes": data["second"],
                            "outputs_bytes": data["first_outputs"],
                            "allowance_bytes": _memory_allowance(w) if impl == "fusedrnn" else None})
    return entries, notes


def _memory_section(entries: list[dict[str, Any]], threads: int, width: int) -> list[str]:
    if not entries:
        return []
    method = MEMORY_METHOD + ("" if all(e["exact"] for e in entries) else _MEMORY_METHOD_FALLBACK)
    lines = [f"memory: peak resident memory of one call beyond its outputs, threads={threads}",
             f"  ({method})",
             f"{'workload':<{width}} {'impl':<12} {'model MiB':>9} {'1st call MiB':>12} {'2nd call MiB':>12} "
             f"{'outputs MiB':>11} {'allowance MiB':>13}"]

    def mib(v: int | None) -> str:
        return "" if v is None else f"{v / 2**20:.2f}"

    last = None
    for e in entries:
        name = e["workload"] if e["workload"] != last else ""
        last = e["workload"]
        lines.append(f"{name:<{width}} {e['impl']:<12} {mib(e['model_bytes']):>9} "
                     f"{mib(e['first_call_bytes']):>12} {mib(e['second_call_bytes']):>12} "
                     f"{mib(e['outputs_bytes']):>11} {mib(e['allowance_bytes']):>13}".rstrip())
    return lines


# ----------------------------------------------------------------------------------------------------------
# Plot

_NO_MATPLOTLIB = ("--plot needs matplotlib, which is not installed: pip install matplotlib "
                  "(or pip install 'fusedrnn[bench]')")


def _short_label(row: dict[str, Any]) -> str:
    kind = ("bi" if row.get("bidirectional") else "") + row["cell"].upper()
    if row.get("layers", 1) > 1:
        kind += f" x{row['layers']}"
    return f"{kind} {'inf' if row['mode'] == 'inference' else 'train'}\nN={row['N']} vs {row['impl']}"


def plot(result: dict[str, Any], path: str) -> None:
    """Draw the ratios of ``result`` (what :func:`run` returns) per workload, anchor and thread count, with
    the performance targets, into ``path`` (PNG). The NumPy reference is left out (no performance anchor).
    Raises BenchError when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise BenchError(_NO_MATPLOTLIB) from exc

    rows = [r for r in result["rows"] if r["ratio"] is not None and r["impl"] != "numpy"]
    groups = list(dict.fromkeys((r["workload"], r["impl"]) for r in rows))
    threads = sorted({r["threads"] for r in rows})
    by_key = {(r["workload"], r["impl"], r["threads"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(max(8.0, 1.15 * len(groups) + 2), 5.5))
    colors = plt.get_cmap("tab10")
    bar_w = 0.8 / max(1, len(threads))
    for j, n in enumerate(threads):
        for i, (name, impl) in enumerate(groups):
            r = by_key.get((name, impl, n))
            if r is None:
                continue
            x = i + (j - (len(threads) - 1) / 2) * bar_w
            ax.bar(x, r["ratio"], bar_w * 0.9, color=colors(j), edgecolor="black", linewidth=0.5,
                   hatch="//" if r["target_met"] is False else None)
            if r["target"] is not None:
                ax.hlines(r["target"], x - bar_w * 0.5, x + bar_w * 0.5, color="black", linewidth=2)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([_short_label(by_key[next((g[0], g[1], n) for n in threads
                                                 if (g[0], g[1], n) in by_key)]) for g in groups],
                       fontsize=8)
    ax.set_ylabel("anchor time / fusedrnn time (above 1: fusedrnn faster)")
    meta = result.get("meta", {})
    ax.set_title(f"fusedrnn {meta.get('versions', {}).get('fusedrnn', '')} on {meta.get('cpu', '')}: "
                 "ratio per workload and thread count (float32)", fontsize=10)
    handles = [Patch(facecolor=colors(j), edgecolor="black", label=f"{n} thread{'s' if n > 1 else ''}")
               for j, n in enumerate(threads)]
    handles.append(plt.Line2D([], [], color="black", linewidth=2, label="target"))
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="target missed"))
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# Versions and the machine


def _versions(torch: Any) -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("fusedrnn", "numpy", "torch", "onnx", "onnxruntime"):
        if dist == "torch" and torch is None:
            continue
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            mod = sys.modules.get(dist)
            if mod is not None and hasattr(mod, "__version__"):
                out[dist] = str(mod.__version__)
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


class CpuMeter:
    """CPU time the rest of the machine used while this process ran a block: the machine's busy time
    (/proc/stat: user, nice, system, irq, softirq) minus this process's own (all its threads, and its
    children), and the time the hypervisor gave to other guests (steal). Other processes may be invisible
    from here (another PID namespace on the same kernel); /proc/stat still counts them. None where
    /proc/stat is missing."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / tick
        steal = fields[7] / tick if len(fields) > 7 else 0.0
        own = os.times()
        mine = own.user + own.system + own.children_user + own.children_system  # waited-for children too
        return busy, steal, mine, time.monotonic()

    def others(self) -> dict[str, float] | None:
        """{"wall_s", "other_cpu_s", "other_cores", "steal_cores"} since construction; other_cores is the
        average number of cores the other processes kept busy."""
        end = self._read()
        if self._start is None or end is None:
            return None
        busy, steal, own, wall = (b - a for a, b in zip(self._start, end))
        wall = max(wall, 1e-9)
        other = max(0.0, busy - own)
        return {"wall_s": wall, "other_cpu_s": other, "other_cores": other / wall,
                "steal_cores": max(0.0, steal) / wall}


# Other processes keeping more than this many cores busy on average during a block make its times suspect.
BUSY_OTHERS_CORES = 0.05


def _others_report(threads: int, others: dict[str, float], cores: int) -> tuple[str, str]:
    """The line printed under a thread count's rows, and a note when other processes disturbed them."""
    busy, steal = others["other_cores"], others["steal_cores"]
    line = (f"(while threads = {threads} ran: other processes kept {busy:.2f} cores busy on average over "
            f"{others['wall_s']:.0f} s; steal {steal:.2f} cores)")
    note = ""
    if busy > BUSY_OTHERS_CORES or steal > BUSY_OTHERS_CORES:
        note = (f"threads={threads}: other processes kept {busy:.2f} cores busy on average (steal "
                f"{steal:.2f}) while these rows were timed, on a machine with {cores} usable cores: the rows "
                "are disturbed, those with more than one thread most")
    return line, note


def _numpy_threads_note() -> tuple[Any, str]:
    """threadpoolctl (to give NumPy's BLAS the measured thread count) when installed, else a note."""
    tpc = _try_import("threadpoolctl")
    if tpc is None:
        return None, ("numpy: its BLAS uses its own thread count in this process (install threadpoolctl to "
                      "control it): the numpy anchor may use more threads than the row says")
    return tpc, ""


# ----------------------------------------------------------------------------------------------------------
# Entry point


def run(threads: list[int] | None = None, *, quick: bool = False, repeat: int | None = None,
        warmup: int | None = None, json_path: str | None = None, anchors: list[str] | None = None,
        workloads: tuple[Workload, ...] | None = None, seed: int = 0, plot_path: str | None = None,
        memory: bool = False, out: TextIO | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table to ``out`` (default stdout), and return the results as a dict
    ``{"meta": ..., "rows": [...], "targets": [...], "notes": [...], ...}`` (also written to ``json_path``
    when given).

    threads: thread counts to measure at (default: 1 and the number of usable cores);
    quick: tiny shapes and few rounds (a smoke test, the numbers mean nothing);
    repeat: timed rounds per workload (default: up to 20, fewer on slow workloads so that each takes about
    ROUND_BUDGET_S seconds, at least MIN_ROUNDS; quick: 3); warmup: untimed calls before them;
    anchors: names from ``ALL_ANCHORS`` (default all; absent ones are skipped with a note);
    plot_path: also draw the ratios into this PNG (needs matplotlib; checked before anything runs);
    memory: also measure peak memory of fusedrnn and PyTorch, each call in a fresh process.
    Raises AnswerMismatch when an anchor's answer differs from fusedrnn's."""
    import fusedrnn as fr

    out = sys.stdout if out is None else out
    threads = default_thread_counts() if threads is None else list(threads)
    if not threads or any(int(t) < 1 for t in threads):
        raise ValueError(f"threads: expected positive thread counts, got {threads!r}")
    adaptive = repeat is None
    rounds = repeat if repeat is not None else (3 if quick else 20)
    if rounds < 1:
        raise ValueError(f"repeat: expected at least 1, got {rounds}")
    warmup = warmup if warmup is not None else (1 if quick else 3)
    workloads = workloads if workloads is not None else (QUICK_WORKLOADS if quick else DEFAULT_WORKLOADS)
    anchors = list(ALL_ANCHORS if anchors is None else anchors)
    unknown = [a for a in anchors if a not in ANCHOR_FACTORIES]
    if unknown:
        raise ValueError(f"anchors: unknown {unknown}; expected names from {sorted(ANCHOR_FACTORIES)}")
    if plot_path is not None and _try_import("matplotlib") is None:
        raise BenchError(_NO_MATPLOTLIB)
    matmul_size, matmul_reps = (QUICK_MATMUL_SIZE, 3) if quick else (MATMUL_SIZE, 8)
    read_budget_s = 0.02 if quick else 0.2

    notes: list[str] = []
    load = _load_average()
    if load is not None and load > 0.5:
        notes.append(f"the machine was busy when the run started (1-minute load average {load:.2f}): other "
                     "processes compete for the cores, and times with more than one thread suffer most")
    want_torch = "torch" in anchors or "onnxruntime" in anchors or memory
    torch = _try_import("torch") if want_torch else None
    if "torch" in anchors and torch is None:
        notes.append("torch: skipped (PyTorch is not installed); weights come from fusedrnn's own init")
    if "onnxruntime" in anchors and _try_import("onnxruntime") is None:
        notes.append("onnxruntime: skipped (onnxruntime is not installed)")
    tpc, note = _numpy_threads_note()
    if note and "numpy" in anchors:
        notes.append(note)

    versions = _versions(torch)
    meta = {"versions": versions, "cpu": _cpu_name(), "usable_cores": default_thread_counts()[-1],
            "threads": threads, "rounds": rounds, "rounds_adaptive": adaptive, "warmup": warmup,
            "quick": quick, "seed": seed, "dtype": "float32", "tolerance": TOLERANCE, "load_average": load,
            "threadpoolctl": tpc is not None}
    print("fusedrnn bench  " + "  ".join(f"{k} {v}" for k, v in versions.items() if k != "platform"),
          file=out)
    print(f"cpu: {meta['cpu']} ({meta['usable_cores']} usable cores); threads {threads}; "
          f"{'up to ' if adaptive else ''}{rounds} rounds after {warmup} warm-up calls"
          + ("" if load is None else f"; 1-minute load average {load:.2f} at the start"), file=out)

    problems = [_make_problem(w, seed, torch, "onnxruntime" in anchors) for w in workloads]
    for p in problems:
        notes.extend(n for n in p.notes if n not in notes)
    onnx_sources = sorted({p.onnx_source for p in problems if p.onnx_source})
    if onnx_sources:
        meta["onnx_source"] = onnx_sources
    meta["weights_from"] = problems[0].weights_from if problems else None
    width = _name_width(workloads)

    saved_fr = fr.get_num_threads()
    saved_torch = torch.get_num_threads() if torch is not None else None
    rows: list[Row] = []
    matmul_samples: dict[int, list[float]] = {}
    batch1: list[Batch1] = []
    busy_others: dict[int, dict[str, float]] = {}
    try:
        for n in threads:
            fr.set_num_threads(n)
            print("\n" + _threads_title(n), file=out)
            print(_header(width), file=out, flush=True)
            meter = CpuMeter()
            samples = _matmul_samples(n, tpc, matmul_size, matmul_reps)
            block_rows: list[Row] = []
            for p in problems:
                if tpc is not None:
                    with tpc.threadpool_limits(limits=n):
                        block = _bench_one(p, n, anchors, rounds, warmup, adaptive, notes)
                else:
                    block = _bench_one(p, n, anchors, rounds, warmup, adaptive, notes)
                for i, row in enumerate(block):
                    print(_format_row(row, i == 0, width), file=out, flush=True)
                block_rows += block
            samples += _matmul_samples(n, tpc, matmul_size, matmul_reps)
            matmul_samples[n] = samples
            others = meter.others()
            if others is not None:
                busy_others[n] = others
                line, note = _others_report(n, others, meta["usable_cores"])
                print(line, file=out, flush=True)
                if note:
                    notes.append(note)
            batch1 += _batch1(block_rows, n, tpc, read_budget_s)
            rows += block_rows
    finally:
        fr.set_num_threads(saved_fr)
        if torch is not None and saved_torch is not None:
            torch.set_num_threads(saved_torch)
    meta["load_average_end"] = _load_average()  # includes this run's own threads
    meta["other_processes"] = [{"threads": n, **v} for n, v in busy_others.items()]

    matmul = {n: statistics.median(s) for n, s in matmul_samples.items()}
    matmul_method = _matmul_method(tpc, matmul_size)
    read_method = _read_method(tpc)
    checks = _ratio_checks(rows)
    sections: list[list[str]] = []
    compute_lines, compute_checks, compute_data = _compute_section(rows, matmul, matmul_method, width)
    sections.append(compute_lines)
    sections.append(_batch1_section(batch1, read_method, width))
    scaling_lines, scaling_checks, scaling_data = _scaling_section(rows, width)
    sections.append(scaling_lines)
    first_lines, first_checks = _first_call_section(rows, width)
    sections.append(first_lines)
    checks += compute_checks + scaling_checks + first_checks

    # One step at a time (streams and cells) against torch's cells, at one thread: per-call overhead.
    stream_lines = io.StringIO()
    stream_rows = bench_stream.run(threads=1, rounds=3 if quick else 80, calls=200 if quick else 400,
                                   steps=20 if quick else 200, out=stream_lines)
    sections.append(stream_lines.getvalue().rstrip("\n").split("\n"))
    stream_name = "LSTM stream.step N=1 I=128 H=128"
    for r in stream_rows:
        if r["kind"] != "lstm" or r["impl"] != "stream.step":
            continue
        checks.append(TargetCheck("stream_overhead", stream_name, 1, "stream.step - arithmetic (us)",
                                  r["overhead_us"], bench_stream.OVERHEAD_TARGET_US, at_most=True))
        if "torch_ratio" in r:
            checks.append(TargetCheck("stream_vs_torch", stream_name, 1, "torch cell / stream.step",
                                      r["torch_ratio"], bench_stream.TORCH_RATIO_TARGET))

    memory_entries: list[dict[str, Any]] = []
    if memory:
        impls = ["fusedrnn"] + (["torch"] if torch is not None else [])
        if torch is None:
            notes.append("memory: PyTorch is not installed, so fusedrnn's memory stands alone")
        mem_threads = max(threads)
        memory_entries, mem_notes = measure_memory(workloads, mem_threads, impls)
        notes += mem_notes
        sections.append(_memory_section(memory_entries, mem_threads, width))

    print("", file=out)
    for line in _summary(rows):
        print(line, file=out)
    for lines in sections:
        if lines:
            print("", file=out)
            for line in lines:
                print(line, file=out)
    print("", file=out)
    for line in _targets_summary(checks):
        print(line, file=out)
    if quick:
        print("(quick: tiny shapes that stand for the default workloads; these verdicts mean nothing)",
              file=out)
    extra = [f"weights: from {meta['weights_from']}"]
    if onnx_sources:
        extra.append("onnx graph: " + ", ".join(onnx_sources))
    for line in extra + notes:
        print("note: " + line, file=out)

    meta["targets_met"] = sum(c.met for c in checks)
    meta["targets_total"] = len(checks)
    result: dict[str, Any] = {
        "meta": meta,
        "rows": [r.to_json() for r in rows],
        "matmul": {"method": matmul_method,
                   "by_threads": [{"threads": n, "gflops": matmul[n], "samples": matmul_samples[n]}
                                  for n in matmul]},
        "compute": compute_data,
        "batch1": {"method": read_method, "rows": [b.to_json() for b in batch1]},
        "scaling": scaling_data,
        "stream": stream_rows,
        "targets": [c.to_json() for c in checks],
        "notes": notes,
    }
    if memory:
        result["memory"] = {"method": MEMORY_METHOD, "rows": memory_entries}
    if json_path is not None:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {json_path}", file=out)
    if plot_path is not None:
        plot(result, plot_path)
        print(f"wrote {plot_path}", file=out)
    return result
