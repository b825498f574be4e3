""":func:`run`: the whole benchmark, as ``python -m fusedrnn bench`` runs it."""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import optional
from .anchors import ALL_ANCHORS, ANCHOR_FACTORIES
from .answers import TOLERANCE
from .errors import BenchError
from .limits import MATMUL_SIZE, QUICK_MATMUL_SIZE, Batch1, batch1, matmul_method, matmul_samples, read_method
from .machine import CpuMeter, cpu_name, load_average, numpy_threads_note, others_report, versions
from .memory import MEMORY_METHOD, measure_memory
from .plotting import NO_MATPLOTLIB, plot
from .problems import Problem, make_problem
from .report import (
    TargetCheck,
    batch1_section,
    compute_section,
    first_call_section,
    format_row,
    header,
    memory_section,
    name_width,
    ratio_checks,
    scaling_section,
    summary,
    targets_summary,
    threads_title,
)
from .timing import Row, bench_one
from .workloads import Workload, default_thread_counts, default_workloads

_STREAM_NAME = "LSTM stream.step N=1 I=128 H=128"


@dataclass
class _Plan:
    """The arguments of :func:`run`, checked, with their defaults filled in."""

    threads: list[int]
    quick: bool
    adaptive: bool  # rounds and warmup are upper limits, lowered on slow workloads
    rounds: int
    warmup: int
    workloads: tuple[Workload, ...]
    anchors: list[str]
    seed: int
    matmul_size: int
    matmul_reps: int
    read_budget_s: float


@dataclass
class _Timings:
    """What the timing loop measured, over every thread count."""

    rows: list[Row] = field(default_factory=list)
    matmul_samples: dict[int, list[float]] = field(default_factory=dict)
    batch1: list[Batch1] = field(default_factory=list)
    busy_others: dict[int, dict[str, float]] = field(default_factory=dict)


def _plan(
    threads: list[int] | None,
    quick: bool,
    repeat: int | None,
    warmup: int | None,
    anchors: list[str] | None,
    workloads: tuple[Workload, ...] | None,
    seed: int,
    plot_path: str | None,
) -> _Plan:
    threads = default_thread_counts() if threads is None else list(threads)
    if not threads or any(int(t) < 1 for t in threads):
        raise ValueError(f"threads: expected positive thread counts, got {threads!r}")
    rounds = repeat if repeat is not None else (3 if quick else 20)
    if rounds < 1:
        raise ValueError(f"repeat: expected at least 1, got {rounds}")
    anchors = list(ALL_ANCHORS if anchors is None else anchors)
    unknown = [a for a in anchors if a not in ANCHOR_FACTORIES]
    if unknown:
        raise ValueError(f"anchors: unknown {unknown}; expected names from {sorted(ANCHOR_FACTORIES)}")
    if plot_path is not None and optional.try_import("matplotlib") is None:
        raise BenchError(NO_MATPLOTLIB)
    matmul_size, matmul_reps = (QUICK_MATMUL_SIZE, 3) if quick else (MATMUL_SIZE, 8)
    return _Plan(
        threads=threads,
        quick=quick,
        adaptive=repeat is None,
        rounds=rounds,
        warmup=warmup if warmup is not None else (1 if quick else 3),
        workloads=workloads if workloads is not None else default_workloads(quick),
        anchors=anchors,
        seed=seed,
        matmul_size=matmul_size,
        matmul_reps=matmul_reps,
        read_budget_s=0.02 if quick else 0.2,
    )


def _environment(anchors: list[str], memory: bool, notes: list[str]) -> tuple[Any, Any, float | None]:
    """(torch or None, threadpoolctl or None, the load average), with a note for each anchor that is
    missing and for a busy machine."""
    load = load_average()
    if load is not None and load > 0.5:
        notes.append(
            f"the machine was busy when the run started (1-minute load average {load:.2f}): other "
            "processes compete for the cores, and times with more than one thread suffer most"
        )
    want_torch = "torch" in anchors or "onnxruntime" in anchors or memory
    torch = optional.try_import("torch") if want_torch else None
    if "torch" in anchors and torch is None:
        notes.append("torch: skipped (PyTorch is not installed); weights come from fusedrnn's own init")
    if "onnxruntime" in anchors and optional.try_import("onnxruntime") is None:
        notes.append("onnxruntime: skipped (onnxruntime is not installed)")
    tpc, note = numpy_threads_note()
    if note and "numpy" in anchors:
        notes.append(note)
    return torch, tpc, load


def _meta(plan: _Plan, torch: Any, tpc: Any, load: float | None) -> dict[str, Any]:
    return {
        "versions": versions(torch),
        "cpu": cpu_name(),
        "usable_cores": default_thread_counts()[-1],
        "threads": plan.threads,
        "rounds": plan.rounds,
        "rounds_adaptive": plan.adaptive,
        "warmup": plan.warmup,
        "quick": plan.quick,
        "seed": plan.seed,
        "dtype": "float32",
        "tolerance": TOLERANCE,
        "load_average": load,
        "threadpoolctl": tpc is not None,
    }


def _print_header(meta: dict[str, Any], plan: _Plan, out: TextIO) -> None:
    load = meta["load_average"]
    print(
        "fusedrnn bench  " + "  ".join(f"{k} {v}" for k, v in meta["versions"].items() if k != "platform"),
        file=out,
    )
    print(
        f"cpu: {meta['cpu']} ({meta['usable_cores']} usable cores); threads {plan.threads}; "
        f"{'up to ' if plan.adaptive else ''}{plan.rounds} rounds after {plan.warmup} warm-up calls"
        + ("" if load is None else f"; 1-minute load average {load:.2f} at the start"),
        file=out,
    )


def _time_threads(
    n: int,
    plan: _Plan,
    problems: list[Problem],
    tpc: Any,
    cores: int,
    width: int,
    notes: list[str],
    out: TextIO,
    timings: _Timings,
) -> None:
    """Every problem at ``n`` threads, between two samples of the matmul rate; the rows printed as they
    come, then how busy the rest of the machine was."""
    import fusedrnn as fr

    fr.set_num_threads(n)
    print("\n" + threads_title(n), file=out)
    print(header(width), file=out, flush=True)
    meter = CpuMeter()
    samples = matmul_samples(n, tpc, plan.matmul_size, plan.matmul_reps)
    block_rows: list[Row] = []
    for p in problems:
        with tpc.threadpool_limits(limits=n) if tpc is not None else contextlib.nullcontext():
            block = bench_one(p, n, plan.anchors, plan.rounds, plan.warmup, plan.adaptive, notes)
        for i, row in enumerate(block):
            print(format_row(row, i == 0, width), file=out, flush=True)
        block_rows += block
    samples += matmul_samples(n, tpc, plan.matmul_size, plan.matmul_reps)
    timings.matmul_samples[n] = samples
    others = meter.others()
    if others is not None:
        timings.busy_others[n] = others
        line, note = others_report(n, others, cores)
        print(line, file=out, flush=True)
        if note:
            notes.append(note)
    timings.batch1 += batch1(block_rows, n, tpc, plan.read_budget_s)
    timings.rows += block_rows


def _time_all(
    plan: _Plan,
    problems: list[Problem],
    torch: Any,
    tpc: Any,
    cores: int,
    width: int,
    notes: list[str],
    out: TextIO,
) -> _Timings:
    """Every thread count in turn; fusedrnn's and torch's thread counts restored afterwards."""
    import fusedrnn as fr

    saved_fr = fr.get_num_threads()
    saved_torch = torch.get_num_threads() if torch is not None else None
    timings = _Timings()
    try:
        for n in plan.threads:
            _time_threads(n, plan, problems, tpc, cores, width, notes, out, timings)
    finally:
        fr.set_num_threads(saved_fr)
        if torch is not None and saved_torch is not None:
            torch.set_num_threads(saved_torch)
    return timings


def _sections(
    timings: _Timings, plan: _Plan, tpc: Any, width: int
) -> tuple[list[list[str]], list[TargetCheck], dict[str, Any]]:
    """The sections after the table, every target they check, and their part of the result."""
    rows = timings.rows
    matmul = {n: statistics.median(s) for n, s in timings.matmul_samples.items()}
    matmul_how = matmul_method(tpc, plan.matmul_size)
    read_how = read_method(tpc)
    checks = ratio_checks(rows)
    compute_lines, compute_checks, compute_data = compute_section(rows, matmul, matmul_how, width)
    scaling_lines, scaling_checks, scaling_data = scaling_section(rows, width)
    first_lines, first_checks = first_call_section(rows, width)
    sections = [compute_lines, batch1_section(timings.batch1, read_how, width), scaling_lines, first_lines]
    checks += compute_checks + scaling_checks + first_checks
    data = {
        "matmul": {
            "method": matmul_how,
            "by_threads": [
                {"threads": n, "gflops": matmul[n], "samples": timings.matmul_samples[n]} for n in matmul
            ],
        },
        "compute": compute_data,
        "batch1": {"method": read_how, "rows": [b.to_json() for b in timings.batch1]},
        "scaling": scaling_data,
    }
    return sections, checks, data


def _stream_steps(quick: bool) -> tuple[list[str], list[dict[str, Any]], list[TargetCheck]]:
    """One step at a time (streams and cells) against torch's cells, at one thread: per-call overhead."""
    # Imported here, not with the package: `python -m fusedrnn.bench.stream_steps` runs it as __main__.
    from . import stream_steps

    text = io.StringIO()
    rows = stream_steps.run(
        threads=1,
        rounds=3 if quick else 80,
        calls=200 if quick else 400,
        steps=20 if quick else 200,
        out=text,
    )
    checks = []
    for r in rows:
        if r["kind"] != stream_steps.TARGET_KIND or r["impl"] != "stream.step":
            continue
        checks.append(
            TargetCheck(
                "stream_overhead",
                _STREAM_NAME,
                1,
                "stream.step - arithmetic (us)",
                r["overhead_us"],
                stream_steps.OVERHEAD_TARGET_US,
                at_most=True,
            )
        )
        if "torch_ratio" in r:
            checks.append(
                TargetCheck(
                    "stream_vs_torch",
                    _STREAM_NAME,
                    1,
                    "torch cell / stream.step",
                    r["torch_ratio"],
                    stream_steps.TORCH_RATIO_TARGET,
                )
            )
    return text.getvalue().rstrip("\n").split("\n"), rows, checks


def _memory(plan: _Plan, torch: Any, notes: list[str], width: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Peak memory of fusedrnn (and PyTorch) at the largest thread count: (entries, section lines)."""
    impls = ["fusedrnn"] + (["torch"] if torch is not None else [])
    if torch is None:
        notes.append("memory: PyTorch is not installed, so fusedrnn's memory stands alone")
    mem_threads = max(plan.threads)
    entries, mem_notes = measure_memory(plan.workloads, mem_threads, impls)
    notes += mem_notes
    return entries, memory_section(entries, mem_threads, width)


def _print_report(
    rows: list[Row],
    sections: list[list[str]],
    checks: list[TargetCheck],
    quick: bool,
    notes: list[str],
    out: TextIO,
) -> None:
    print("", file=out)
    for line in summary(rows):
        print(line, file=out)
    for lines in sections:
        if lines:
            print("", file=out)
            for line in lines:
                print(line, file=out)
    print("", file=out)
    for line in targets_summary(checks):
        print(line, file=out)
    if quick:
        print(
            "(quick: tiny shapes that stand for the default workloads; these verdicts mean nothing)", file=out
        )
    for line in notes:
        print("note: " + line, file=out)


def _write_outputs(result: dict[str, Any], json_path: str | None, plot_path: str | None, out: TextIO) -> None:
    if json_path is not None:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {json_path}", file=out)
    if plot_path is not None:
        plot(result, plot_path)
        print(f"wrote {plot_path}", file=out)


def run(
    threads: list[int] | None = None,
    *,
    quick: bool = False,
    repeat: int | None = None,
    warmup: int | None = None,
    json_path: str | None = None,
    anchors: list[str] | None = None,
    workloads: tuple[Workload, ...] | None = None,
    seed: int = 0,
    plot_path: str | None = None,
    memory: bool = False,
    out: TextIO | None = None,
) -> dict[str, Any]:
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
    out = sys.stdout if out is None else out
    plan = _plan(threads, quick, repeat, warmup, anchors, workloads, seed, plot_path)
    notes: list[str] = []
    torch, tpc, load = _environment(plan.anchors, memory, notes)
    meta = _meta(plan, torch, tpc, load)
    _print_header(meta, plan, out)

    problems = [make_problem(w, seed, torch, "onnxruntime" in plan.anchors) for w in plan.workloads]
    for p in problems:
        notes.extend(n for n in p.notes if n not in notes)
    onnx_sources = sorted({p.onnx_source for p in problems if p.onnx_source})
    if onnx_sources:
        meta["onnx_source"] = onnx_sources
    meta["weights_from"] = problems[0].weights_from if problems else None
    width = name_width(plan.workloads)

    timings = _time_all(plan, problems, torch, tpc, meta["usable_cores"], width, notes, out)
    meta["load_average_end"] = load_average()  # includes this run's own threads
    meta["other_processes"] = [{"threads": n, **v} for n, v in timings.busy_others.items()]

    sections, checks, data = _sections(timings, plan, tpc, width)
    stream_lines, stream_rows, stream_checks = _stream_steps(plan.quick)
    sections.append(stream_lines)
    checks += stream_checks
    memory_entries: list[dict[str, Any]] = []
    if memory:
        memory_entries, memory_lines = _memory(plan, torch, notes, width)
        sections.append(memory_lines)

    extra = [f"weights: from {meta['weights_from']}"]
    if onnx_sources:
        extra.append("onnx graph: " + ", ".join(onnx_sources))
    _print_report(timings.rows, sections, checks, plan.quick, extra + notes, out)

    meta["targets_met"] = sum(c.met for c in checks)
    meta["targets_total"] = len(checks)
    result: dict[str, Any] = {
        "meta": meta,
        "rows": [r.to_json() for r in timings.rows],
        **data,
        "stream": stream_rows,
        "targets": [c.to_json() for c in checks],
        "notes": notes,
    }
    if memory:
        result["memory"] = {"method": MEMORY_METHOD, "rows": memory_entries}
    _write_outputs(result, json_path, plot_path, out)
    return result
