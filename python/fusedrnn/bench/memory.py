"""Peak memory of one call of fusedrnn and of PyTorch, each implementation in a fresh process."""

from __future__ import annotations

import dataclasses
import gc
import json
import resource
import subprocess
import sys
from typing import Any, Callable

import numpy as np

from .problems import fusedrnn_layer, lengths_array, torch_forward, torch_module
from .workloads import Workload

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
    "passed between layers); training, (G+2)*H float32 saved per step and sequence per layer and direction"
)
MEMORY_METHOD_FALLBACK = (
    " [this kernel does not allow resetting the peak: the figures are the growth of "
    "getrusage(RUSAGE_SELF).ru_maxrss across the call, which reads low when the process had already "
    "peaked higher]"
)

_MEMORY_CHILD = "import sys; from fusedrnn.bench.memory import memory_child; memory_child(sys.argv[1])"


def proc_status_bytes(key: str) -> int | None:
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


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return proc_status_bytes("VmHWM") is not None and proc_status_bytes("VmRSS") is not None


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


def _fusedrnn_build(w: Workload, x: np.ndarray, gy: np.ndarray) -> Any:
    import fusedrnn as fr

    layer = fusedrnn_layer(fr, w, seed=0)
    lengths = lengths_array(w)
    if w.mode == "inference":
        return (lambda: layer(x, lengths=lengths)), (lambda: None)

    def train() -> Any:
        tape = layer.record(x, lengths=lengths)
        g = tape.backward(gy)
        return tape.output, tape.state, g.input, g.state, g.params

    return train, (lambda: None)


def _torch_build(w: Workload, x: np.ndarray, gy: np.ndarray) -> Any:
    import torch

    module = torch_module(torch, w)
    if w.mode == "inference":
        module.eval()
        xt = torch.from_numpy(x)

        def infer() -> Any:
            with torch.inference_mode():
                return torch_forward(torch, module, xt, w)

        return infer, (lambda: None)

    module.train()
    xt = torch.from_numpy(x).requires_grad_(True)
    gt = torch.from_numpy(gy)
    params = list(module.parameters())

    def train_torch() -> Any:
        y, state = torch_forward(torch, module, xt, w)
        y.backward(gt)
        return y, state, xt.grad, [p.grad for p in params]

    def reset() -> None:
        module.zero_grad(set_to_none=True)
        xt.grad = None

    return train_torch, reset


def _memory_build(w: Workload, impl: str, x: np.ndarray, gy: np.ndarray) -> Any:
    """(call, reset): ``call()`` runs one inference or training call and returns what it outputs;
    ``reset()`` drops what the model keeps of a call (the torch module's gradients)."""
    return _fusedrnn_build(w, x, gy) if impl == "fusedrnn" else _torch_build(w, x, gy)


def _peak_of_calls(call: Any, reset: Any, result: dict[str, Any]) -> None:
    """Into ``result``: the peak growth of a first and a second call, beyond their outputs."""
    for label in ("first", "second"):
        exact = reset_peak()
        before = proc_status_bytes("VmRSS") if exact else _maxrss_bytes()
        res = call()
        peak = proc_status_bytes("VmHWM") if exact else _maxrss_bytes()
        outputs = _nbytes(res)
        # Below zero when the outputs went into pages that were already resident: no growth beyond them.
        result[label] = max(0, peak - before - outputs)
        result[label + "_outputs"] = outputs
        del res
        reset()
        gc.collect()


def memory_child(spec_json: str) -> None:
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
        return (
            rng.standard_normal((wl.T, wl.N, wl.I)).astype(wl.dtype),
            rng.standard_normal((wl.T, wl.N, wl.directions * wl.output_size)).astype(wl.dtype),
        )

    # A tiny model of the same kind first: thread pools and the libraries' one-time state.
    tiny = dataclasses.replace(w, T=2, N=1, I=4, H=4, proj_size=min(w.proj_size, 3), lengths=None)
    call, reset = _memory_build(tiny, impl, *inputs(tiny))
    call()
    reset()
    del call, reset
    x, gy = inputs(w)
    gc.collect()

    exact = reset_peak()
    rss0 = proc_status_bytes("VmRSS") if exact else None
    call, reset = _memory_build(w, impl, x, gy)
    gc.collect()
    result: dict[str, Any] = {
        "exact": exact,
        "model": None if rss0 is None else proc_status_bytes("VmRSS") - rss0,
    }
    _peak_of_calls(call, reset, result)
    print(json.dumps(result))


def memory_allowance(w: Workload) -> int:
    if w.mode == "inference":
        return w.T * w.N * w.gates * w.H * w.directions * w.itemsize
    return (w.gates + 2) * w.H * w.T * w.N * w.layers * w.directions * w.itemsize


def _measure_one(w: Workload, impl: str, threads: int, notes: list[str]) -> dict[str, Any] | None:
    spec = json.dumps({"workload": w.shape_dict(), "impl": impl, "threads": threads})
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, spec],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        notes.append(f"memory: {impl} on {w.name} timed out")
        return None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        notes.append(f"memory: {impl} on {w.name} failed: {proc.stderr.strip()[-300:]}")
        return None
    data = json.loads(lines[-1])
    return {
        "workload": w.name,
        "impl": impl,
        "threads": threads,
        "exact": data["exact"],
        "model_bytes": data["model"],
        "first_call_bytes": data["first"],
        "second_call_bytes": data["second"],
        "outputs_bytes": data["first_outputs"],
        "allowance_bytes": memory_allowance(w) if impl == "fusedrnn" else None,
    }


def measure_memory(
    workloads: tuple[Workload, ...] | list[Workload],
    threads: int,
    impls: list[str],
    on_done: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Peak memory of one call of each implementation (``"fusedrnn"``, ``"torch"``) on each workload,
    each in a fresh process (see ``MEMORY_METHOD``); ``on_done()`` after each. Returns (entries, notes)."""
    entries: list[dict[str, Any]] = []
    notes: list[str] = []
    for w in workloads:
        for impl in impls:
            entry = _measure_one(w, impl, threads, notes)
            if entry is not None:
                entries.append(entry)
            if on_done is not None:
                on_done()
    return entries, notes
