"""Checking, warming up and timing the implementations of one problem at one thread count.

Every implementation runs once and its answer is checked against fusedrnn's; then each is warmed up,
and they are timed interleaved: in each round every implementation runs once, in a rotating order, so
that drift of the machine hits all of them alike. A :class:`Row` holds the median (p50) and the 90th
percentile (p90) of each.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .anchors import ANCHOR_FACTORIES, AnchorUnavailable, Runner, fusedrnn_runner
from .answers import check_answer
from .notes import Notes
from .problems import Problem
from .workloads import Workload

# Called after each timed round with (rounds done, rounds in all).
OnRound = Callable[[int, int], None]

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


def _timed_call(r: Runner) -> float:
    """One timed call of ``r`` after the process has settled and ``r`` has run for its lead-in."""
    _settle()
    if r.name != "numpy":  # the reference has no threads of its own to wake
        lead_in_end = time.perf_counter() + _LEAD_IN_S
        r.call()
        while time.perf_counter() < lead_in_end:
            r.call()
    t0 = time.perf_counter()
    r.call()
    return time.perf_counter() - t0


def _timed_rounds(
    runners: list[Runner], rounds: int, on_round: OnRound | None = None
) -> dict[str, list[float]]:
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
                if rnd in include[r.name]:
                    times[r.name].append(_timed_call(r))
            if on_round is not None:
                on_round(rnd + 1, rounds)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``, interpolated linearly between the two nearest ranks
    (NumPy's default): of 1..10, the 90th is 9.1."""
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


@dataclass
class Row:
    workload: Workload
    threads: int
    impl: str
    median_s: float  # p50
    min_s: float
    runs: int
    ratio: float | None  # anchor median / fusedrnn median; None for fusedrnn itself
    max_abs_diff: float | None
    target: float | None = None  # the least ratio targeted for this anchor and thread count
    first_s: float | None = None  # fusedrnn: its first call on a new layer (the answer check)
    p90_s: float | None = None  # the 90th percentile of the timed calls
    samples_s: list[float] | None = None  # every timed call, in the order they ran

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
        return {
            "workload": w.name,
            "cell": w.cell,
            "mode": w.mode,
            "T": w.T,
            "N": w.N,
            "I": w.I,
            "H": w.H,
            "layers": w.layers,
            "bidirectional": w.bidirectional,
            "dtype": w.dtype,
            "nonlinearity": w.kind.nonlinearity,
            "proj_size": w.proj_size,
            "lengths": None if w.lengths is None else list(w.lengths),
            "threads": self.threads,
            "impl": self.impl,
            "median_ms": self.median_s * 1e3,
            "p90_ms": None if self.p90_s is None else self.p90_s * 1e3,
            "min_ms": self.min_s * 1e3,
            "samples_ms": None if self.samples_s is None else [t * 1e3 for t in self.samples_s],
            "runs": self.runs,
            "ratio": self.ratio,
            "verdict": None if self.ratio is None else verdict(self.ratio),
            "target": self.target,
            "target_met": self.target_met,
            "gflops": self.gflops,
            "first_call_ms": None if self.first_s is None else self.first_s * 1e3,
            "max_abs_diff": self.max_abs_diff,
        }


def verdict(ratio: float) -> str:
    return "fusedrnn faster" if ratio >= 1.0 else "fusedrnn slower"


def _runners(problem: Problem, threads: int, anchors: list[str], notes: Notes) -> list[Runner]:
    """fusedrnn's runner first, then each anchor that can run here (a note for each that cannot)."""
    runners = [fusedrnn_runner(problem)]
    for name in anchors:
        try:
            runners.append(ANCHOR_FACTORIES[name](problem, threads))
        except AnchorUnavailable as exc:
            notes.add(f"{name}: skipped ({exc})", brief=True)
    return runners


def _first_calls(w: Workload, runners: list[Runner]) -> tuple[dict[str, float], dict[str, float]]:
    """Runs each runner once and checks its answer against fusedrnn's (the first runner's). Returns the
    time of each first call and each anchor's max abs diff. The check doubles as the first warm-up call,
    measures fusedrnn's first call on a new layer, and measures the slow NumPy reference once."""
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
    return first, diffs


def _fit_rounds(
    first: dict[str, float], rounds: int, warmup: int, where: str, notes: list[str]
) -> tuple[int, int]:
    """``rounds`` and ``warmup`` lowered so that one workload takes about ROUND_BUDGET_S."""
    # a lead-in of at least _LEAD_IN_S and a timed call
    round_cost = sum(max(2 * t, _LEAD_IN_S + t) for name, t in first.items() if name != "numpy")
    if round_cost * (rounds + warmup) > ROUND_BUDGET_S:
        fit = int(ROUND_BUDGET_S / max(round_cost, 1e-9))
        warmup = min(warmup, max(1, fit // 8))
        rounds = min(rounds, max(MIN_ROUNDS, fit - warmup))
        notes.append(
            f"{where}: {rounds} rounds after {warmup} warm-up calls (one round takes {round_cost:.2f} s)"
        )
    return rounds, warmup


def _warm_up(
    runners: list[Runner], first: dict[str, float], rounds: int, warmup: int, where: str, notes: list[str]
) -> None:
    """Warm-up calls for every runner but the NumPy reference, which is limited to NUMPY_BUDGET_S."""
    for r in runners:
        if r.name == "numpy":
            r.max_runs = max(1, int(NUMPY_BUDGET_S / max(first[r.name], 1e-9)))
            if r.max_runs < rounds:
                notes.append(
                    f"{where}: numpy timed in {r.max_runs} of {rounds} rounds (one call takes "
                    f"{first[r.name]:.2f} s)"
                )
            continue
        for _ in range(warmup):
            r.call()


def bench_one(
    problem: Problem,
    threads: int,
    anchors: list[str],
    rounds: int,
    warmup: int,
    adaptive: bool,
    notes: Notes,
    on_round: OnRound | None = None,
) -> list[Row]:
    """Check, warm up and time every implementation of one problem at one thread count. ``adaptive``:
    ``rounds`` and ``warmup`` are upper limits, lowered so that one workload takes about ROUND_BUDGET_S.
    ``on_round(done, rounds)`` is called after each timed round (progress)."""
    w = problem.workload
    runners = _runners(problem, threads, anchors, notes)
    first, diffs = _first_calls(w, runners)
    where = f"{w.name}, threads={threads}"
    if adaptive:
        rounds, warmup = _fit_rounds(first, rounds, warmup, where, notes)
    _warm_up(runners, first, rounds, warmup, where, notes)

    times = _timed_rounds(runners, rounds, on_round)
    base = statistics.median(times["fusedrnn"])
    rows = []
    for r in runners:
        med = statistics.median(times[r.name])
        own = r.name == "fusedrnn"
        rows.append(
            Row(
                w,
                threads,
                r.name,
                med,
                min(times[r.name]),
                len(times[r.name]),
                None if own else med / base,
                diffs.get(r.name),
                target=None if own else w.target(r.name, threads),
                first_s=first[r.name] if own else None,
                p90_s=percentile(times[r.name], 90),
                samples_s=times[r.name],
            )
        )
    return rows
