"""Long runs: memory stays flat over thousands of calls, denormal numbers cost nothing extra, and a
100,000-step sequence stays within float32 rounding of the float64 reference.

1. Soak. Runs ``bench/soak.py`` (the full 20,000-iteration soak, by hand) with fewer iterations, each
   operation in a fresh interpreter, about 30 s in all on 2 busy cores. After a warm-up of a tenth of
   the iterations (allocator pools and caches settle there), the steady growth of RSS (/proc/self/statm),
   twice the smaller of the two halves' growth, may be at most GROWTH_BOUND_KIB: a leak grows in both
   halves, so a leak of a few hundred bytes per iteration fails (1 MiB / 4,000 iterations = 256 bytes,
   / 2,000 = 512 bytes), and one leaked array, tape, stream, layer or file buffer per call is far more;
   a heap that settles once grows in one half only (seen: save+load +1.5 MiB in every run of one CI
   machine, growth that did not scale with the iterations). The whole growth may be at most
   SETTLING_BOUND_KIB. Measured: growth 0 to +64 KiB over 20,000 iterations of every operation; in the
   test session's own interpreter, after the other tests and PyTorch, save+load grew up to +1,816 KiB as
   the heap settled, hence the fresh interpreters. Open file descriptors must not change at all.
2. Denormals. The kernels flush denormals to zero (FTZ and DAZ) on every thread of a call, the caller's
   included, and restore the caller's floating-point mode afterwards. Unflushed, float32 arithmetic on
   denormals is 5x (matmul) to 58x (elementwise multiply) slower on the CI machine, so a call whose weights
   and inputs are denormal must cost at most DENORMAL_BOUND times a normal one (measured 0.95 to 1.08).
3. Long sequences: see ``test_long_sequence_stays_within_float32_rounding``.

About 60 s on 2 busy cores: soak 25 s, long sequences 15 s (the reference's Python loop), denormals 20 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import reference
from tolerances import LONG_SEQUENCE_F32

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")

# -- 1. soak ---------------------------------------------------------------------------------------------

GROWTH_BOUND_KIB = 1024
SETTLING_BOUND_KIB = 8 * 1024

# Iterations per operation: about 30 s in all, each still enough to expose a small leak.
ITERATIONS = {
    "forward": 4000,
    "record+backward": 4000,
    "stream.step": 20_000,  # about 5 microseconds a step
    "from_onnx": 4000,
    "save+load": 2000,  # about 6 ms each: builds a layer and packs its weights
}


# Each operation soaks in an interpreter of its own: in the test session's, the heap already holds
# what earlier tests (and PyTorch) left, and its settling shows up as growth.
_SOAK_CHILD = """
import dataclasses, importlib.util, json, sys
path, operation, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = importlib.util.spec_from_file_location("fusedrnn_bench_soak", path)
module = importlib.util.module_from_spec(spec)
sys.modules["fusedrnn_bench_soak"] = module  # its dataclass looks itself up there
spec.loader.exec_module(module)
(result,) = module.run(iterations, only=[operation])
print(json.dumps(dataclasses.asdict(result)))
print(module.table([result]), file=sys.stderr)
"""


def _soak_in_fresh_interpreter(operation: str) -> tuple[dict, str]:
    script = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
    proc = subprocess.run(
        [sys.executable, "-c", _SOAK_CHILD, str(script), operation, str(ITERATIONS[operation])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.slow
@linux_only
@pytest.mark.parametrize("operation", list(ITERATIONS))
def test_repeated_operation_keeps_memory_flat(operation):
    """A leak grows in every run and in both halves of a run; a heap that settles once (seen in CI:
    save+load +2.9 MiB in one run of 2,000 iterations, +0.3 in the others) does not. So a run over the
    bound is repeated once, and the operation fails if both runs are over it."""
    if operation == "from_onnx":
        pytest.importorskip("onnx")
    reports = []
    for _ in range(2):
        result, report = _soak_in_fresh_interpreter(operation)
        assert result["iterations"] == ITERATIONS[operation]
        assert result["fds_end"] == result["fds_warm"], f"open file descriptors changed:\n{report}"
        reports.append(report)
        halves = (result["rss_mid"] - result["rss_warm"], result["rss_end"] - result["rss_mid"])
        if 2 * min(halves) <= GROWTH_BOUND_KIB and sum(halves) <= SETTLING_BOUND_KIB:
            return
    runs = "\n".join(reports)
    pytest.fail(
        f"RSS grew steadily by more than {GROWTH_BOUND_KIB} KiB (or by more than {SETTLING_BOUND_KIB} KiB in "
        f"all) after the warm-up in two runs:\n{runs}"
    )


# -- 2. denormals ----------------------------------------------------------------------------------------

DENORMAL_BOUND = 1.2
TINY32 = np.finfo(np.float32).tiny  # the smallest normal float32, 1.18e-38


@pytest.fixture
def threads():
    before = fr.get_num_threads()
    yield fr.set_num_threads
    fr.set_num_threads(before)


def _denormalize(a: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """A copy of float32 ``a`` with a random ``fraction`` of its entries scaled by 1e-39 into denormals
    (as weights that training has driven towards zero)."""
    out = a.copy()
    pick = rng.random(a.shape) < fraction
    out[pick] *= np.float32(1e-39)
    return out


def _flushed(a: np.ndarray) -> np.ndarray:
    """``a`` with its denormals set to zero, as FTZ/DAZ arithmetic reads them."""
    return np.where(np.abs(a) < TINY32, np.float32(0), a)


def _is_denormal(a: np.ndarray) -> np.ndarray:
    return (a != 0) & (np.abs(a) < TINY32)


# Large enough for the worker pool at 2 threads (8 * 128 * 4 * 128 multiply-adds a step).
DENORMAL_LAYERS = {
    "lstm": lambda: fr.LSTM(64, 128, seed=0),
    "gru": lambda: fr.GRU(64, 128, seed=1),
}


def _pair(make, fraction: float, rng: np.random.Generator):
    """(normal layer, denormal layer, x, denormal x): the same weights and inputs, with ``fraction`` of
    the second pair's entries (weights, biases and inputs) made denormal."""
    normal, tiny = make(), make()
    tiny.load_state_dict({k: _denormalize(v, rng, fraction) for k, v in normal.state_dict().items()})
    x = rng.standard_normal((40, 8, normal.input_size)).astype(np.float32)
    return normal, tiny, x, _denormalize(x, rng, fraction)


def _ratio_of_medians(run_a, run_b, rounds: int = 21, reps: int = 8) -> float:
    """median time of run_b / median time of run_a, interleaved round by round (which goes first
    alternates), so that load from other processes falls on both alike."""

    def timed(f):
        start = time.perf_counter()
        for _ in range(reps):
            f()
        return time.perf_counter() - start

    run_a(), run_b()
    ta, tb = [], []
    for r in range(rounds):
        if r % 2:
            ta.append(timed(run_a))
            tb.append(timed(run_b))
        else:
            tb.append(timed(run_b))
            ta.append(timed(run_a))
    return float(np.median(tb) / np.median(ta))


@pytest.mark.parametrize("n_threads", [1, 2], ids=["1thread", "2threads"])
@pytest.mark.parametrize("op", ["forward", "record+backward"])
@pytest.mark.parametrize("kind", list(DENORMAL_LAYERS))
def test_denormal_weights_and_inputs_cost_no_more_than_normal_ones(kind, op, n_threads, threads):
    """Every weight, bias and input denormal, so that without flushing every multiply-add of every step
    would take the slow path. A real slowdown is systematic, so the best of 3 measurements is taken:
    that filters bursts of load from other processes without hiding it."""
    threads(n_threads)
    rng = np.random.default_rng(7)
    normal, tiny, x, x_tiny = _pair(DENORMAL_LAYERS[kind], 1.0, rng)
    # (an entry below 1.4e-6 underflows to zero instead: one in tens of thousands)
    for a in [x_tiny, *tiny.state_dict().values()]:
        assert _is_denormal(a).mean() > 0.999
    gy = np.ones_like(normal(x)[0])
    if op == "forward":
        run_a, run_b = (lambda: normal(x)), (lambda: tiny(x_tiny))
    else:
        run_a, run_b = (lambda: normal.record(x).backward(gy)), (lambda: tiny.record(x_tiny).backward(gy))
    ratios = []
    for _ in range(3):
        ratios.append(_ratio_of_medians(run_a, run_b))
        if ratios[-1] <= DENORMAL_BOUND:
            break
    assert min(ratios) <= DENORMAL_BOUND, (
        f"denormal / normal time {', '.join(f'{r:.2f}' for r in ratios)} at {n_threads} threads"
    )


@pytest.mark.parametrize("n_threads", [1, 2], ids=["1thread", "2threads"])
@pytest.mark.parametrize("kind", list(DENORMAL_LAYERS))
def test_denormals_give_the_reference_answers(kind, n_threads, threads, assert_close):
    """Half the weights and inputs denormal: the answers (forward and backward) are those of the float64
    reference whether it reads the denormals as their values or as zeros; they differ by far less than
    float32 rounding, and flushing must change nothing else."""
    threads(n_threads)
    rng = np.random.default_rng(8)
    _, layer, _, x = _pair(DENORMAL_LAYERS[kind], 0.5, rng)
    tape = layer.record(x)
    gy = rng.standard_normal(tape.output.shape).astype(np.float32)
    g = tape.backward(gy)
    y_call, _ = layer(x)
    np.testing.assert_array_equal(y_call, tape.output)
    for name, flush in (("as values", lambda a: a), ("as zeros", _flushed)):
        params = {k: flush(v).astype(np.float64) for k, v in layer.state_dict().items()}
        y_ref, _, _, cache = reference.forward(layer.config, params, flush(x).astype(np.float64))
        gx_ref, _, _, gp_ref = reference.backward(cache, gy.astype(np.float64))
        assert_close(tape.output, y_ref, np.float32, f"y, denormals {name}")
        assert_close(g.input, gx_ref, np.float32, f"grad x, denormals {name}")
        for k in gp_ref:
            assert_close(g.params[k], gp_ref[k], np.float32, f"grad {k}, denormals {name}")


@pytest.mark.parametrize("n_threads", [1, 2], ids=["1thread", "2threads"])
def test_calls_leave_the_callers_floating_point_mode_alone(n_threads, threads):
    """The kernels' flushing is scoped to the call: afterwards NumPy on the calling thread still produces
    and reads denormals (leaking FTZ/DAZ would silently change the caller's own arithmetic)."""
    threads(n_threads)
    small, large = fr.LSTM(4, 8, seed=0), DENORMAL_LAYERS["lstm"]()
    for layer in (small, large):  # the caller alone, and the caller with the worker pool
        x = np.full((5, 8, layer.input_size), 1e-39, np.float32)
        layer(x)
        tape = layer.record(x)
        tape.backward(np.ones_like(tape.output))
        layer.stream(8).step(x[0])
        product = np.float32(1e-30) * np.float32(1e-10)  # 1e-40: denormal unless FTZ is on
        assert product != 0 and _is_denormal(np.array([product]))[0]
        read = np.array([1e-39], np.float32) * np.float32(2)  # 0 if DAZ reads the operand as zero
        assert read[0] != 0


# -- 3. long sequences -----------------------------------------------------------------------------------

LONG_T = 100_000

LONG_CASES = {
    "lstm-H16-N2": (lambda: fr.LSTM(4, 16, seed=0), 2),
    "gru-H8-N1": (lambda: fr.GRU(4, 8, seed=1), 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("make, batch", LONG_CASES.values(), ids=LONG_CASES.keys())
def test_long_sequence_stays_within_float32_rounding(make, batch):
    """T = 100,000 in float32 against the reference in float64 on the same weights (cast up), every step
    of y and the final state (about 10 s: the reference is a Python loop over the steps)."""
    layer = make()
    x = np.random.default_rng(0).standard_normal((LONG_T, batch, layer.input_size)).astype(np.float32)
    y, state = layer(x)
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    y_ref, h_ref, c_ref, _ = reference.forward(layer.config, params, x.astype(np.float64))
    errors = {"y": np.abs(y - y_ref).max(axis=(1, 2))}  # per step
    got_states = state if isinstance(state, tuple) else (state,)
    for name, got, want in zip(("h_n", "c_n"), got_states, (h_ref, c_ref)):
        errors[name] = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    eps = np.finfo(np.float32).eps
    worst = {name: float(np.max(e)) / eps for name, e in errors.items()}
    assert all(w <= LONG_SEQUENCE_F32 / eps for w in worst.values()), (
        f"max error in float32 eps {worst}; y in the first 1,000 steps "
        f"{errors['y'][:1000].max() / eps:.1f}, in the last 1,000 {errors['y'][-1000:].max() / eps:.1f}"
    )
