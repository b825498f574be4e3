"""Benchmark fusedrnn against its NumPy reference, PyTorch and ONNX Runtime, in one process.

``python -m fusedrnn bench`` runs :func:`run`.

1. For every workload (cell, inference or training, shape): one set of float32 weights (from a ``torch.nn``
   module when PyTorch is installed, loaded into fusedrnn with ``load_state_dict``; otherwise fusedrnn's own
   initialization), one input ``x`` and, for training, one output cotangent ``g`` (loss ``sum(y * g)``).

Then, for every workload at every requested thread count:

2. runs every implementation once and checks its answer against fusedrnn's (outputs, final states, and for
   training the input and weight gradients): a difference beyond float32 tolerance raises
   :class:`AnswerMismatch` -- nothing is timed whose answer is wrong;
3. warms every implementation up, then times them interleaved: in each round every implementation runs
   once, in a rotating order, so drift of the machine hits all of them alike;
4. reports the median time of each and ``ratio = anchor time / fusedrnn time`` (above 1: fusedrnn is
   faster; below 1 the table says "fusedrnn slower").

Anchors: ``numpy`` (``fusedrnn.reference``, explicit per-step NumPy loops; slow, so it is timed in fewer
rounds), ``torch`` (``torch.nn.LSTM``/``GRU`` with ``torch.set_num_threads`` equal to the thread count,
inference under ``torch.inference_mode``), ``onnxruntime`` (inference only: the torch module exported to
ONNX, or, without PyTorch, the same graph built from the weights with ``onnx.helper``; one session per thread
count with ``intra_op_num_threads`` equal to it). Anchors that are not installed are skipped with a note.
"""

from __future__ import annotations

import gc
import io
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

import numpy as np

__all__ = [
    "AnswerMismatch",
    "BenchError",
    "DEFAULT_WORKLOADS",
    "QUICK_WORKLOADS",
    "Workload",
    "default_thread_counts",
    "format_table",
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
# Pause between two timed calls, so that threads one implementation leaves spinning do not eat into the
# next implementation's time.
_PAUSE_S = 0.001


class BenchError(RuntimeError):
    """The benchmark could not produce an honest result."""


class AnswerMismatch(BenchError):
    """An anchor's answer differs from fusedrnn's beyond float32 tolerance."""


@dataclass(frozen=True)
class Workload:
    """One benchmarked problem: ``cell`` in {"lstm", "gru"}, ``mode`` in {"inference", "training"},
    x of shape (T, N, I), hidden size H, one layer, one direction, float32, zero initial state."""

    cell: str
    mode: str
    T: int
    N: int
    I: int  # noqa: E741 -- the shape letter of the design documents
    H: int

    @property
    def name(self) -> str:
        return f"{self.cell.upper()} {self.mode} T={self.T} N={self.N} I={self.I} H={self.H}"


DEFAULT_WORKLOADS: tuple[Workload, ...] = (
    Workload("lstm", "inference", 100, 1, 128, 256),
    Workload("lstm", "inference", 100, 64, 256, 256),
    Workload("gru", "inference", 100, 1, 128, 256),
    Workload("gru", "inference", 100, 64, 256, 256),
    Workload("lstm", "training", 50, 32, 128, 256),
    Workload("gru", "training", 100, 1, 128, 256),
)

# --quick: a smoke run (seconds, mostly imports); the numbers mean nothing, the checks still run.
QUICK_WORKLOADS: tuple[Workload, ...] = (
    Workload("lstm", "inference", 6, 1, 8, 16),
    Workload("gru", "inference", 6, 3, 8, 16),
    Workload("lstm", "training", 5, 2, 8, 16),
    Workload("gru", "training", 5, 1, 8, 16),
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
    gy: np.ndarray  # (T, N, H) cotangent of y (training)
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


def _fusedrnn_layer_class(fr: Any, cell: str) -> Any:
    return {"lstm": fr.LSTM, "gru": fr.GRU}[cell]


def _make_problem(w: Workload, seed: int, torch: Any, want_onnx: bool) -> Problem:
    import fusedrnn as fr

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((w.T, w.N, w.I)).astype(np.float32)
    gy = rng.standard_normal((w.T, w.N, w.H)).astype(np.float32)
    torch_module = None
    if torch is not None:
        torch.manual_seed(seed)
        torch_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[w.cell]
        torch_module = torch_cls(w.I, w.H)
        params = {k: v.detach().numpy().copy() for k, v in torch_module.state_dict().items()}
        weights_from = "torch"
    else:
        layer = _fusedrnn_layer_class(fr, w.cell)(w.I, w.H, seed=seed)
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
    """One ONNX LSTM/GRU node built from PyTorch-layout weights (formats.md): gate blocks reordered,
    W = weight_ih, R = weight_hh, B = [bias_ih, bias_hh], GRU with linear_before_reset=1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = problem.workload
    order = _ONNX_GATE_ORDER[w.cell]

    def reorder(a: np.ndarray) -> np.ndarray:
        blocks = np.split(a, _GATES[w.cell], axis=0)
        return np.concatenate([blocks[k] for k in order], axis=0)

    p = problem.params
    W = reorder(p["weight_ih_l0"])[None]
    R = reorder(p["weight_hh_l0"])[None]
    B = np.concatenate([reorder(p["bias_ih_l0"]), reorder(p["bias_hh_l0"])])[None]
    inits = [numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name)
             for a, name in ((W, "W"), (R, "R"), (B, "B"))]
    outputs = ["Y", "Y_h", "Y_c"] if w.cell == "lstm" else ["Y", "Y_h"]
    attrs: dict[str, Any] = {"hidden_size": w.H}
    if w.cell == "gru":
        attrs["linear_before_reset"] = 1
    node = helper.make_node(w.cell.upper(), ["X", "W", "R", "B"], outputs, **attrs)
    out_shapes = {"Y": [w.T, 1, w.N, w.H], "Y_h": [1, w.N, w.H], "Y_c": [1, w.N, w.H]}
    graph = helper.make_graph(
        [node], f"fusedrnn_bench_{w.cell}",
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


def _fusedrnn_runner(problem: Problem) -> Runner:
    import fusedrnn as fr

    w = problem.workload
    layer = _fusedrnn_layer_class(fr, w.cell)(w.I, w.H)
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
            out = {"output": y}
            if w.cell == "lstm":
                out["h_n"], out["c_n"] = state
            else:
                out["h_n"] = state
            return out
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
    config = StackConfig(cell=w.cell, input_size=w.I, hidden_size=w.H)
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
            out = {"output": y.numpy()}
            if w.cell == "lstm":
                out["h_n"], out["c_n"] = state[0].numpy(), state[1].numpy()
            else:
                out["h_n"] = state.numpy()
            return out
    else:
        module.train()
        xt = torch.from_numpy(problem.x.copy()).requires_grad_(True)
        gt = torch.from_numpy(problem.gy)
        params = dict(module.named_parameters())

        def call() -> Any:
            module.zero_grad(set_to_none=True)
            xt.grad = None
            y, _ = module(xt)
            (y * gt).sum().backward()
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
        y = res[0]
        if y.ndim == 4:  # a bare ONNX node's Y is (T, D, N, H)
            y = y[:, 0]
        out = {"output": y, "h_n": res[1]}
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


def _timed_rounds(runners: list[Runner], rounds: int) -> dict[str, list[float]]:
    """Interleaved timing: each round runs every runner once (fewer for those with max_runs), starting
    at a different runner each round."""
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
                time.sleep(_PAUSE_S)
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

    def to_json(self) -> dict[str, Any]:
        w = self.workload
        return {"workload": w.name, "cell": w.cell, "mode": w.mode, "T": w.T, "N": w.N, "I": w.I, "H": w.H,
                "dtype": "float32", "threads": self.threads, "impl": self.impl,
                "median_ms": self.median_s * 1e3, "min_ms": self.min_s * 1e3, "runs": self.runs,
                "ratio": self.ratio,
                "verdict": None if self.ratio is None else _verdict(self.ratio),
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

    # The answer check doubles as the first warm-up call, and measures the slow NumPy reference once.
    t0 = time.perf_counter()
    want = runners[0].answer(runners[0].call())
    first = {"fusedrnn": time.perf_counter() - t0}
    diffs: dict[str, float] = {}
    for r in runners[1:]:
        t0 = time.perf_counter()
        got = r.answer(r.call())
        first[r.name] = time.perf_counter() - t0
        diffs[r.name], _ = check_answer(w, r.name, got, want)

    where = f"{w.name}, threads={threads}"
    round_cost = sum(t for name, t in first.items() if name != "numpy")
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
        rows.append(Row(w, threads, r.name, med, min(times[r.name]), len(times[r.name]),
                        None if r.name == "fusedrnn" else med / base, diffs.get(r.name)))
    return rows


# ----------------------------------------------------------------------------------------------------------
# Output


_HEADER = (f"{'workload':<40} {'impl':<12} {'median ms':>10} {'runs':>5} {'ratio':>7}  "
           f"{'':<16} {'max|diff|':>9}")


def _format_row(row: Row, first: bool) -> str:
    name = row.workload.name if first else ""
    ratio = "" if row.ratio is None else f"{row.ratio:6.2f}x"
    verdict = "" if row.ratio is None else _verdict(row.ratio)
    diff = "" if row.max_abs_diff is None else f"{row.max_abs_diff:.1e}"
    return (f"{name:<40} {row.impl:<12} {row.median_s * 1e3:>10.3f} {row.runs:>5} {ratio:>7}  "
            f"{verdict:<16} {diff:>9}")


def _threads_title(threads: int) -> str:
    return (f"threads = {threads}  (float32; median of interleaved runs; ratio = anchor time / fusedrnn "
            "time, above 1 means fusedrnn is faster)")


def format_table(rows: list[Row]) -> str:
    """The whole table (one block per thread count), as printed by :func:`run`."""
    lines: list[str] = []
    last_threads = None
    last_workload = None
    for row in rows:
        if row.threads != last_threads:
            if lines:
                lines.append("")
            lines += [_threads_title(row.threads), _HEADER]
            last_threads, last_workload = row.threads, None
        lines.append(_format_row(row, row.workload != last_workload))
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


def _numpy_threads_note() -> tuple[Any, str]:
    """threadpoolctl (to give NumPy's BLAS the measured thread count) when installed, else a note."""
    tpc = _try_import("threadpoolctl")
    if tpc is None:
        return None, "numpy: its BLAS uses its own thread count (install threadpoolctl to control it)"
    return tpc, ""


# ----------------------------------------------------------------------------------------------------------
# Entry point


def run(threads: list[int] | None = None, *, quick: bool = False, repeat: int | None = None,
        warmup: int | None = None, json_path: str | None = None, anchors: list[str] | None = None,
        workloads: tuple[Workload, ...] | None = None, seed: int = 0,
        out: TextIO | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table to ``out`` (default stdout), and return the results as a dict
    ``{"meta": ..., "rows": [...], "notes": [...]}`` (also written to ``json_path`` when given).

    threads: thread counts to measure at (default: 1 and the number of usable cores);
    quick: tiny shapes and few rounds (a smoke test, the numbers mean nothing);
    repeat: timed rounds per workload (default: up to 20, fewer on slow workloads so that each takes about
    ROUND_BUDGET_S seconds, at least MIN_ROUNDS; quick: 3); warmup: untimed calls before them;
    anchors: names from ``ALL_ANCHORS`` (default all; absent ones are skipped with a note).
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

    notes: list[str] = []
    load = _load_average()
    if load is not None and load > 0.5:
        notes.append(f"the machine was busy when the run started (1-minute load average {load:.2f}): other "
                     "processes compete for the cores, and times with more than one thread suffer most")
    torch = _try_import("torch") if "torch" in anchors or "onnxruntime" in anchors else None
    if "torch" in anchors and torch is None:
        notes.append("torch: skipped (PyTorch is not installed); weights come from fusedrnn's own init")
    if "onnxruntime" in anchors and _try_import("onnxruntime") is None:
        notes.append("onnxruntime: skipped (onnxruntime is not installed)")
    tpc, note = _numpy_threads_note() if "numpy" in anchors else (None, "")
    if note:
        notes.append(note)

    versions = _versions(torch)
    meta = {"versions": versions, "cpu": _cpu_name(), "usable_cores": default_thread_counts()[-1],
            "threads": threads, "rounds": rounds, "rounds_adaptive": adaptive, "warmup": warmup,
            "quick": quick, "seed": seed, "dtype": "float32", "tolerance": TOLERANCE, "load_average": load}
    print("fusedrnn bench  " + "  ".join(f"{k} {v}" for k, v in versions.items() if k != "platform"),
          file=out)
    print(f"cpu: {meta['cpu']} ({meta['usable_cores']} usable cores); threads {threads}; "
          f"{'up to ' if adaptive else ''}{rounds} rounds after {warmup} warm-up calls", file=out)

    problems = [_make_problem(w, seed, torch, "onnxruntime" in anchors) for w in workloads]
    for p in problems:
        notes.extend(n for n in p.notes if n not in notes)
    onnx_sources = sorted({p.onnx_source for p in problems if p.onnx_source})
    if onnx_sources:
        meta["onnx_source"] = onnx_sources
    meta["weights_from"] = problems[0].weights_from if problems else None

    saved_fr = fr.get_num_threads()
    saved_torch = torch.get_num_threads() if torch is not None else None
    rows: list[Row] = []
    try:
        for n in threads:
            fr.set_num_threads(n)
            print("\n" + _threads_title(n), file=out)
            print(_HEADER, file=out, flush=True)
            for p in problems:
                if tpc is not None:
                    with tpc.threadpool_limits(limits=n):
                        block = _bench_one(p, n, anchors, rounds, warmup, adaptive, notes)
                else:
                    block = _bench_one(p, n, anchors, rounds, warmup, adaptive, notes)
                for i, row in enumerate(block):
                    print(_format_row(row, i == 0), file=out, flush=True)
                rows += block
    finally:
        fr.set_num_threads(saved_fr)
        if torch is not None and saved_torch is not None:
            torch.set_num_threads(saved_torch)

    meta["load_average_end"] = _load_average()  # includes this run's own threads
    print("", file=out)
    for line in _summary(rows):
        print(line, file=out)
    extra = [f"weights: from {meta['weights_from']}"]
    if onnx_sources:
        extra.append("onnx graph: " + ", ".join(onnx_sources))
    for line in extra + notes:
        print("note: " + line, file=out)

    result = {"meta": meta, "rows": [r.to_json() for r in rows], "notes": notes}
    if json_path is not None:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {json_path}", file=out)
    return result
