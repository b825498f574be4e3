""":func:`run`: the whole benchmark, as ``python -m fusedrnn bench`` runs it."""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import optional
from .anchors import ALL_ANCHORS, ANCHOR_FACTORIES
from .answers import TOLERANCE, TOLERANCE_FLOAT64
from .errors import BenchError
from .limits import MATMUL_SIZE, QUICK_MATMUL_SIZE, Batch1, batch1, matmul_method, matmul_samples, read_method
from .machine import (
    BUSY_LOAD,
    CpuMeter,
    busy_reasons,
    cpu_name,
    load_average,
    numpy_threads_note,
    others_report,
    versions,
)
from .memory import MEMORY_METHOD, measure_memory
from .notes import Notes
from .plotting import NO_MATPLOTLIB, plot
from .problems import Problem, make_problem
from .progress import Progress
from .report import (
    TargetCheck,
    answers_line,
    batch1_section,
    brief_legend,
    brief_summary,
    brief_table,
    compute_section,
    first_call_section,
    format_table,
    memory_brief,
    memory_section,
    name_width,
    ratio_checks,
    scaling_section,
    summary,
    targets_summary,
    wrap,
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
    standard: bool  # the default workloads (not the caller's)
    stream_steps: bool
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
    others_lines: dict[int, str] = field(default_factory=dict)


def _plan(
    threads: list[int] | None,
    quick: bool,
    repeat: int | None,
    warmup: int | None,
    anchors: list[str] | None,
    workloads: tuple[Workload, ...] | None,
    stream_steps: bool | None,
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
        standard=workloads is None,
        stream_steps=workloads is None if stream_steps is None else stream_steps,
        anchors=anchors,
        seed=seed,
        matmul_size=matmul_size,
        matmul_reps=matmul_reps,
        read_budget_s=0.02 if quick else 0.2,
    )


def _environment(anchors: list[str], memory: bool, notes: Notes) -> tuple[Any, Any, float | None]:
    """(torch or None, threadpoolctl or None, the load average), with a note for each anchor that is
    missing and for a busy machine."""
    load = load_average()
    if load is not None and load > BUSY_LOAD:
        notes.add(
            f"the machine was busy when the run started (1-minute load average {load:.2f}): other "
            "processes compete for the cores, and times with more than one thread suffer most"
        )
    want_torch = "torch" in anchors or "onnxruntime" in anchors or memory
    torch = optional.try_import("torch") if want_torch else None
    if "torch" in anchors and torch is None:
        notes.add("torch: skipped (PyTorch is not installed)", brief=True)
    if "onnxruntime" in anchors and optional.try_import("onnxruntime") is None:
        notes.add("onnxruntime: skipped (onnxruntime is not installed)", brief=True)
    tpc, note = numpy_threads_note()
    if note and "numpy" in anchors:
        notes.add(note)
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
        "dtypes": sorted({w.dtype for w in plan.workloads}),
        "tolerance": TOLERANCE,
        "tolerance_float64": TOLERANCE_FLOAT64,
        "load_average": load,
        "threadpoolctl": tpc is not None,
    }


def _header(meta: dict[str, Any], plan: _Plan) -> list[str]:
    load = meta["load_average"]
    libraries = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if k != "platform")
    rounds = f"{'up to ' if plan.adaptive else ''}{plan.rounds} rounds after {plan.warmup} warm-up calls"
    return wrap(f"fusedrnn bench: {libraries}") + wrap(
        f"cpu: {meta['cpu']} ({meta['usable_cores']} usable cores); threads {plan.threads}; {rounds}"
        + ("" if load is None else f"; 1-minute load average {load:.2f} at the start")
    )


class _Units:
    """The progress of the run in units of work (see :mod:`.progress`)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.done = 0.0

    def within(self, label: str) -> Any:
        """A callback ``(done, of)`` that moves the progress through the current unit."""
        return lambda done, of: self.progress.update(self.done + done / max(of, 1), label)

    def start(self, label: str) -> None:
        self.progress.update(self.done, label)

    def finish(self) -> None:
        self.done += 1


def _time_threads(
    n: int,
    plan: _Plan,
    problems: list[Problem],
    tpc: Any,
    cores: int,
    notes: Notes,
    timings: _Timings,
    units: _Units,
) -> None:
    """Every problem at ``n`` threads, between two samples of the matmul rate; then how busy the rest of
    the machine was."""
    import fusedrnn as fr

    fr.set_num_threads(n)
    meter = CpuMeter()
    samples = matmul_samples(n, tpc, plan.matmul_size, plan.matmul_reps)
    block_rows: list[Row] = []
    for p in problems:
        label = f"threads={n}: {p.workload.short_name}"
        units.start(label)
        with tpc.threadpool_limits(limits=n) if tpc is not None else contextlib.nullcontext():
            block_rows += bench_one(
                p, n, plan.anchors, plan.rounds, plan.warmup, plan.adaptive, notes, units.within(label)
            )
        units.finish()
    samples += matmul_samples(n, tpc, plan.matmul_size, plan.matmul_reps)
    timings.matmul_samples[n] = samples
    others = meter.others()
    if others is not None:
        timings.busy_others[n] = others
        line, note = others_report(n, others, cores)
        timings.others_lines[n] = line
        if note:
            notes.add(note)
    timings.batch1 += batch1(block_rows, n, tpc, plan.read_budget_s)
    timings.rows += block_rows


def _time_all(
    plan: _Plan, problems: list[Problem], torch: Any, tpc: Any, cores: int, notes: Notes, units: _Units
) -> _Timings:
    """Every thread count in turn; fusedrnn's and torch's thread counts restored afterwards."""
    import fusedrnn as fr

    saved_fr = fr.get_num_threads()
    saved_torch = torch.get_num_threads() if torch is not None else None
    timings = _Timings()
    try:
        for n in plan.threads:
            _time_threads(n, plan, problems, tpc, cores, notes, timings, units)
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


def _memory(plan: _Plan, torch: Any, notes: Notes, units: _Units) -> tuple[list[dict[str, Any]], int]:
    """Peak memory of fusedrnn (and PyTorch) at the largest thread count: (entries, the thread count)."""
    impls = ["fusedrnn"] + (["torch"] if torch is not None else [])
    if torch is None:
        notes.add("memory: PyTorch is not installed, so fusedrnn's memory stands alone", brief=True)
    mem_threads = max(plan.threads)
    units.start("memory, each call in a fresh process")

    def one_done() -> None:
        units.finish()
        units.start("memory, each call in a fresh process")

    entries, mem_notes = measure_memory(plan.workloads, mem_threads, impls, on_done=one_done)
    for note in mem_notes:
        notes.add(note, brief=True)
    return entries, mem_threads


def _quick_line(plan: _Plan) -> list[str]:
    if not plan.quick:
        return []
    if plan.standard:
        return ["(quick: tiny shapes that stand for the default workloads; these verdicts mean nothing)"]
    return ["(quick: few rounds; these times and verdicts mean little)"]


def _verbose_report(
    timings: _Timings,
    sections: list[list[str]],
    checks: list[TargetCheck],
    plan: _Plan,
    notes: list[str],
) -> list[str]:
    """Everything: the table per thread count with its busy line, the sections, the targets, the notes."""
    lines: list[str] = []
    width = name_width(plan.workloads)
    for n in plan.threads:
        block = [r for r in timings.rows if r.threads == n]
        lines += [""] + format_table(block, width).split("\n")
        if n in timings.others_lines:
            lines.append(timings.others_lines[n])
    lines += [""] + summary(timings.rows)
    for section in sections:
        if section:
            lines += [""] + section
    lines += [""] + targets_summary(checks) + _quick_line(plan)
    return lines + ["note: " + line for line in notes]


def _brief_report(
    timings: _Timings,
    checks: list[TargetCheck],
    plan: _Plan,
    notes: Notes,
    busy: list[str],
    memory_lines: list[str],
) -> list[str]:
    """The default report: one table in REPORT_WIDTH columns, the answers, the machine, the targets."""
    rows = timings.rows
    lines = [""] + brief_legend() + brief_table(rows) + [""]
    lines += wrap(brief_summary(rows)) + wrap(answers_line(rows))
    if busy:
        lines += wrap(
            "busy machine (" + "; ".join(busy) + "): the ratios are unreliable, those with more than "
            "one thread most"
        )
    if memory_lines:
        lines += [""] + memory_lines
    short_names = {w.name: w.short_name for w in plan.workloads}
    lines += [""] + targets_summary(checks, short_names) + _quick_line(plan)
    for note in notes.brief:
        lines += wrap("note: " + note)
    more = ["GFLOP/s against the matmul rate", "time per step at batch 1 against the weight read"]
    if len(plan.threads) > 1:
        more.append("scaling")
    more.append("first calls")
    if plan.stream_steps:
        more.append("one step at a time")
    hidden = len(notes) - len(notes.brief)
    more.append(f"{hidden} more note{'s' if hidden != 1 else ''}" if hidden else "the methods")
    return lines + wrap("--verbose adds " + ", ".join(more[:-1]) + " and " + more[-1])


def _write_outputs(
    result: dict[str, Any], json_path: str | None, plot_path: str | None, out: TextIO, text: TextIO
) -> None:
    """The JSON (to ``out`` itself for ``json_path`` "-") and the plot; "wrote ..." lines to ``text``."""
    if json_path == "-":
        json.dump(result, out, indent=2)
        out.write("\n")
    elif json_path is not None:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {json_path}", file=text)
    if plot_path is not None:
        plot(result, plot_path)
        print(f"wrote {plot_path}", file=text)


@dataclass
class _Measured:
    timings: _Timings
    sections: list[list[str]]
    checks: list[TargetCheck]
    data: dict[str, Any]
    stream_rows: list[dict[str, Any]] = field(default_factory=list)
    memory_entries: list[dict[str, Any]] = field(default_factory=list)
    memory_lines: list[str] = field(default_factory=list)


def _measure(
    plan: _Plan,
    problems: list[Problem],
    torch: Any,
    tpc: Any,
    meta: dict[str, Any],
    notes: Notes,
    units: _Units,
    memory: bool,
) -> _Measured:
    """Everything timed and measured: the rows, then the sections, one step at a time and the memory;
    the machine's load into ``meta``."""
    timings = _time_all(plan, problems, torch, tpc, meta["usable_cores"], notes, units)
    meta["load_average_end"] = load_average()  # includes this run's own threads
    meta["other_processes"] = [{"threads": n, **v} for n, v in timings.busy_others.items()]
    meta["busy"] = busy_reasons(meta["load_average"], timings.busy_others)
    meta["judged_busy"] = bool(meta["busy"])

    sections, checks, data = _sections(timings, plan, tpc, name_width(plan.workloads))
    m = _Measured(timings, sections, checks, data)
    if plan.stream_steps:
        units.start("one step at a time, against torch's cells")
        stream_lines, m.stream_rows, stream_checks = _stream_steps(plan.quick)
        units.finish()
        sections.append(stream_lines)
        checks += stream_checks
    if memory:
        m.memory_entries, mem_threads = _memory(plan, torch, notes, units)
        sections.append(memory_section(m.memory_entries, mem_threads, name_width(plan.workloads)))
        m.memory_lines = memory_brief(m.memory_entries, mem_threads, plan.workloads)
    return m


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
    verbose: bool = False,
    stream_steps: bool | None = None,
    out: TextIO | None = None,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print the report to ``out`` (default stdout), and return the results as a dict
    ``{"meta": ..., "rows": [...], "targets": [...], "notes": [...], ...}`` (also written to ``json_path``
    when given; ``json_path="-"`` writes the JSON to ``out`` instead of the report).

    threads: thread counts to measure at (default: 1 and the number of usable cores);
    quick: few rounds, and tiny shapes in place of the default workloads (a smoke test, the numbers mean
    nothing); repeat: timed rounds per workload (default: up to 20, fewer on slow workloads so that each
    takes about ROUND_BUDGET_S seconds, at least MIN_ROUNDS; quick: 3); warmup: untimed calls before them;
    anchors: names from ``ALL_ANCHORS`` (default all; absent ones are skipped with a note);
    workloads: what to time (default: ``DEFAULT_WORKLOADS``, or ``QUICK_WORKLOADS`` with quick);
    plot_path: also draw the ratios into this PNG (needs matplotlib; checked before anything runs);
    memory: also measure peak memory of fusedrnn and PyTorch, each call in a fresh process;
    verbose: the detailed report (every section and note) in place of the one table and the targets;
    stream_steps: also time one step at a time against torch's cells (default: with the default workloads);
    progress: where to show the progress and the time left (None: nowhere; see ``progress.Progress``).
    Raises AnswerMismatch when an anchor's answer differs from fusedrnn's."""
    out = sys.stdout if out is None else out
    plan = _plan(threads, quick, repeat, warmup, anchors, workloads, stream_steps, seed, plot_path)
    # With the JSON on `out`, the text report goes nowhere.
    text = io.StringIO() if json_path == "-" else out
    notes = Notes()
    torch, tpc, load = _environment(plan.anchors, memory, notes)
    meta = _meta(plan, torch, tpc, load)
    for line in _header(meta, plan):
        print(line, file=text)
    text.flush()

    problems = [make_problem(w, seed, torch, "onnxruntime" in plan.anchors) for w in plan.workloads]
    for p in problems:
        for note in p.notes:
            notes.add(note)
    onnx_sources = sorted({p.onnx_source for p in problems if p.onnx_source})
    if onnx_sources:
        meta["onnx_source"] = onnx_sources
    meta["weights_from"] = problems[0].weights_from if problems else None

    memory_units = len(plan.workloads) * (2 if torch is not None else 1) if memory else 0
    total_units = len(plan.threads) * len(problems) + plan.stream_steps + memory_units
    bar = Progress(progress, total_units)
    units = _Units(bar)
    with warnings.catch_warnings(), contextlib.closing(bar):
        # torch says once that its LSTM with projections does not use oneDNN: nothing to act on.
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        m = _measure(plan, problems, torch, tpc, meta, notes, units, memory)
    timings, sections, checks = m.timings, m.sections, m.checks

    extra = [f"weights: from {meta['weights_from']}"]
    if onnx_sources:
        extra.append("onnx graph: " + ", ".join(onnx_sources))
    if verbose:
        lines = _verbose_report(timings, sections, checks, plan, extra + list(notes))
    else:
        lines = _brief_report(timings, checks, plan, notes, meta["busy"], m.memory_lines)
    for line in lines:
        print(line, file=text)

    meta["targets_met"] = sum(c.met for c in checks)
    meta["targets_total"] = len(checks)
    result: dict[str, Any] = {
        "meta": meta,
        "rows": [r.to_json() for r in timings.rows],
        **m.data,
        "stream": m.stream_rows,
        "targets": [c.to_json() for c in checks],
        "notes": list(notes),
    }
    if memory:
        result["memory"] = {"method": MEMORY_METHOD, "rows": m.memory_entries}
    _write_outputs(result, json_path, plot_path, out, text)
    return result
