"""The printed report.

By default: one table (every workload, thread count and implementation: p50, p90, ratio, target) whose
lines fit in REPORT_WIDTH columns, a few lines on the answers and the machine, then the performance
targets. With ``--verbose``: the detailed table per thread count, the sections beside it (large batch
against the matmul rate, batch 1 against the weight read, scaling, first call, memory), the targets and
every note. Each section is lines of text and, where it checks targets, :class:`TargetCheck` values."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from .limits import Batch1
from .memory import MEMORY_METHOD, MEMORY_METHOD_FALLBACK
from .timing import Row, verdict
from .workloads import FIRST_CALL_TARGET, LARGE_BATCH, Workload


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
    short_what: str = ""  # ``what`` in the default report, where it must be short (default: ``what``)

    @property
    def met(self) -> bool:
        return self.value <= self.target if self.at_most else self.value >= self.target

    @property
    def bound(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self.target:g}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "workload": self.workload,
            "threads": self.threads,
            "what": self.what,
            "value": self.value,
            "target": self.target,
            "at_most": self.at_most,
            "met": self.met,
        }


def _met_word(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


# Every line of the default report fits in this many columns.
REPORT_WIDTH = 100


def wrap(text: str, width: int = REPORT_WIDTH, indent: str = "  ") -> list[str]:
    """``text`` as lines of at most ``width`` columns, the continuation lines indented."""
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False) or [""]


# ---- the table ---------------------------------------------------------------------------------------


def name_width(workloads: Any) -> int:
    return max([40] + [len(w.name) for w in workloads])


def header(width: int) -> str:
    return (
        f"{'workload':<{width}} {'impl':<12} {'median ms':>10} {'p90 ms':>10} {'runs':>5} {'ratio':>7}  "
        f"{'':<16} {'target':>7} {'':<6} {'max|diff|':>9}"
    )


def format_row(row: Row, first: bool, width: int = 40) -> str:
    name = row.workload.name if first else ""
    ratio = "" if row.ratio is None else f"{row.ratio:6.2f}x"
    verdict_s = "" if row.ratio is None else verdict(row.ratio)
    target = "" if row.target is None else f">={row.target:.2f}"
    diff = "" if row.max_abs_diff is None else f"{row.max_abs_diff:.1e}"
    p90 = "" if row.p90_s is None else f"{row.p90_s * 1e3:.3f}"
    return (
        f"{name:<{width}} {row.impl:<12} {row.median_s * 1e3:>10.3f} {p90:>10} {row.runs:>5} {ratio:>7}  "
        f"{verdict_s:<16} {target:>7} {_met_word(row.target_met):<6} {diff:>9}"
    ).rstrip()


def threads_title(threads: int) -> str:
    return (
        f"threads = {threads}  (median (p50) and 90th percentile (p90) of interleaved runs; ratio = anchor "
        "median / fusedrnn median, above 1 means fusedrnn is faster; target: the least ratio aimed at)"
    )


def format_table(rows: list[Row], width: int | None = None) -> str:
    """The detailed table (one block per thread count), as ``run(verbose=True)`` prints it."""
    width = name_width(r.workload for r in rows) if width is None else width
    lines: list[str] = []
    last_threads = None
    last_workload = None
    for row in rows:
        if row.threads != last_threads:
            if lines:
                lines.append("")
            lines += [threads_title(row.threads), header(width)]
            last_threads, last_workload = row.threads, None
        lines.append(format_row(row, row.workload != last_workload, width))
        last_workload = row.workload
    return "\n".join(lines)


# ---- the default report's table ----------------------------------------------------------------------

# Columns after the workload's name: threads, impl, p50, p90, ratio, target (with met/MISSED).
_BRIEF_REST = 1 + 7 + 1 + 11 + 1 + 9 + 1 + 9 + 1 + 7 + 2 + len(">=1.25 MISSED")


def _fit(value: float, width: int, decimals: int = 3) -> str:
    """``value`` with as many of ``decimals`` as fit in ``width`` columns."""
    for d in range(decimals, -1, -1):
        text = f"{value:.{d}f}"
        if len(text) <= width:
            return text
    return text


def brief_legend() -> list[str]:
    return wrap(
        "p50, p90: median and 90th percentile of the timed calls, ms; ratio = anchor p50 / fusedrnn p50: "
        "above 1, fusedrnn is faster; target: the least ratio the project aims at"
    )


def brief_table(rows: list[Row], width: int = REPORT_WIDTH) -> list[str]:
    """One table of every row, workload by workload, thread count by thread count, in at most ``width``
    columns; a workload name too long for its column gets a line of its own above its rows."""
    order = list(dict.fromkeys(r.workload for r in rows))
    impls = list(dict.fromkeys(r.impl for r in rows))
    rows = sorted(rows, key=lambda r: (order.index(r.workload), r.threads, impls.index(r.impl)))
    name_w = min(max([len("workload")] + [len(w.short_name) for w in order]), width - _BRIEF_REST)
    lines = [
        f"{'workload':<{name_w}} {'threads':>7} {'impl':<11} {'p50 ms':>9} {'p90 ms':>9} {'ratio':>7}  target"
    ]
    last: tuple[Workload, int] | None = None
    for r in rows:
        name, threads = "", ""
        if last is None or r.workload != last[0]:
            name = r.workload.short_name
            if len(name) > name_w:
                lines += wrap(name, width)
                name = ""
        if last is None or (r.workload, r.threads) != last:
            threads = str(r.threads)
        last = (r.workload, r.threads)
        ratio = "" if r.ratio is None else (f"{r.ratio:.2f}x" if r.ratio < 100 else f"{r.ratio:.0f}x")
        target = "" if r.target is None else f">={r.target:.2f} {_met_word(r.target_met)}"
        p90 = "" if r.p90_s is None else _fit(r.p90_s * 1e3, 9)
        lines.append(
            f"{name:<{name_w}} {threads:>7} {r.impl:<11} {_fit(r.median_s * 1e3, 9):>9} {p90:>9} "
            f"{ratio:>7}  {target}".rstrip()
        )
    return lines


def brief_summary(rows: list[Row]) -> str:
    compared = [r for r in rows if r.ratio is not None]
    slower = [r for r in compared if r.ratio < 1.0]
    if not compared:
        return "no anchor ran: the table has fusedrnn's times alone"
    if not slower:
        return "fusedrnn was faster than the anchor in every row."
    return f"fusedrnn was slower than the anchor in {len(slower)} of {len(compared)} rows (ratio below 1)."


def answers_line(rows: list[Row]) -> str:
    """What the answer check found (a wrong answer stops the run before this is printed)."""
    diffs = [r.max_abs_diff for r in rows if r.max_abs_diff is not None]
    if not diffs:
        return "answers: no anchor to check fusedrnn's answers against"
    return (
        f"answers: every anchor matched fusedrnn's before it was timed (largest difference {max(diffs):.1e})"
    )


def summary(rows: list[Row]) -> list[str]:
    slower = [r for r in rows if r.ratio is not None and r.ratio < 1.0]
    if not slower:
        return ["fusedrnn was faster than every anchor in every row above."]
    out = ["fusedrnn is SLOWER in these rows:"]
    out += [
        f"  {r.workload.name}, threads={r.threads}: {r.impl} takes {r.ratio:.2f}x fusedrnn's time"
        for r in slower
    ]
    return out


def ratio_checks(rows: list[Row]) -> list[TargetCheck]:
    return [
        TargetCheck(
            "ratio",
            r.workload.name,
            r.threads,
            f"{r.impl} time / fusedrnn time",
            r.ratio,
            r.target,
            short_what=f"{r.impl}/fusedrnn",
        )
        for r in rows
        if r.target is not None and r.ratio is not None
    ]


# ---- the sections ------------------------------------------------------------------------------------


def _fusedrnn_rows(rows: list[Row]) -> dict[tuple[Workload, int], Row]:
    return {(r.workload, r.threads): r for r in rows if r.impl == "fusedrnn"}


def compute_section(
    rows: list[Row], matmul: dict[int, float], method: str, width: int
) -> tuple[list[str], list[TargetCheck], list[dict[str, Any]]]:
    """GFLOP/s of every implementation of the large-batch workloads, and its fraction of the matmul rate."""
    big = [r for r in rows if r.workload.N >= LARGE_BATCH]
    if not big:
        return [], [], []
    lines = [
        f"large batch (N >= {LARGE_BATCH}): GFLOP/s (matrix products only: forward "
        "2*T*N*G*H*(I_l+H) per layer and direction, training 3x that) and its fraction of the float32 "
        "matmul rate of this run",
        "  matmul rate: " + ", ".join(f"threads={n}: {rate:.1f} GFLOP/s" for n, rate in matmul.items()),
        f"  ({method})",
        f"{'workload':<{width}} {'threads':>7} {'impl':<12} {'GFLOP/s':>8} {'of matmul':>9} {'target':>7}",
    ]
    checks, data = [], []
    last = None
    for r in big:
        name = "" if (r.workload, r.threads) == last else r.workload.name
        last = (r.workload, r.threads)
        # The roof is a float32 product: another dtype's rows get no fraction of it.
        roof = matmul.get(r.threads) if r.workload.dtype == "float32" else None
        frac = None if roof is None else r.gflops / roof
        target = r.workload.matmul_fraction_target if r.impl == "fusedrnn" else None
        met = None
        if target is not None and frac is not None:
            check = TargetCheck(
                "matmul_fraction",
                r.workload.name,
                r.threads,
                "fusedrnn GFLOP/s / matmul GFLOP/s",
                frac,
                target,
                short_what="GFLOP/s / matmul rate",
            )
            checks.append(check)
            met = check.met
        frac_s = "" if frac is None else f"{frac * 100:8.1f}%"
        target_s = "" if target is None else f">={target * 100:.0f}%"
        threads_s = "" if not name else str(r.threads)
        lines.append(
            f"{name:<{width}} {threads_s:>7} {r.impl:<12} {r.gflops:>8.1f} {frac_s:>9} "
            f"{target_s:>7} {_met_word(met)}".rstrip()
        )
        data.append(
            {
                "workload": r.workload.name,
                "threads": r.threads,
                "impl": r.impl,
                "gflops": r.gflops,
                "matmul_gflops": roof,
                "fraction": frac,
                "target": target,
                "met": met,
            }
        )
    return lines, checks, data


def batch1_section(items: list[Batch1], method: str, width: int) -> list[str]:
    if not items:
        return []
    lines = [
        "batch 1: fusedrnn's time per time step beside the time to read that step's recurrent weights "
        "(W_hh of every layer and direction; training reads them twice, forward and backward) at the "
        "read rate measured in this run: the limit",
        f"  ({method})",
        f"{'workload':<{width}} {'threads':>7} {'us/step':>8} {'W_hh KiB/thread':>15} {'read GB/s':>9} "
        f"{'passes':>6} {'limit us':>8} {'step/limit':>10}",
    ]
    for b in items:
        lines.append(
            f"{b.workload.name:<{width}} {b.threads:>7} {b.step_s * 1e6:>8.2f} "
            f"{b.share_bytes / 1024:>15.0f} {b.read_bytes_per_s / 1e9:>9.1f} {b.passes:>6} "
            f"{b.limit_s * 1e6:>8.2f} {b.step_s / b.limit_s:>9.2f}x"
        )
    return lines


def scaling_section(rows: list[Row], width: int) -> tuple[list[str], list[TargetCheck], list[dict[str, Any]]]:
    own = _fusedrnn_rows(rows)
    pairs = [(w, own[(w, 1)], own[(w, 2)]) for (w, n) in own if n == 1 and (w, 2) in own]
    if not pairs:
        return [], [], []
    lines = [
        "scaling: fusedrnn's own 1-thread time / its 2-thread time (same run)",
        f"{'workload':<{width}} {'1 thread ms':>11} {'2 threads ms':>12} {'speedup':>8} {'target':>7}",
    ]
    checks, data = [], []
    for w, one, two in pairs:
        speedup = one.median_s / two.median_s
        met = None
        if w.scaling_target is not None:
            check = TargetCheck(
                "scaling",
                w.name,
                None,
                "fusedrnn 1-thread time / 2-thread time",
                speedup,
                w.scaling_target,
                short_what="1-thread / 2-thread time",
            )
            checks.append(check)
            met = check.met
        target_s = "" if w.scaling_target is None else f">={w.scaling_target:.2f}"
        lines.append(
            f"{w.name:<{width}} {one.median_s * 1e3:>11.3f} {two.median_s * 1e3:>12.3f} "
            f"{speedup:>7.2f}x {target_s:>7} {_met_word(met)}".rstrip()
        )
        data.append(
            {
                "workload": w.name,
                "ms_1_thread": one.median_s * 1e3,
                "ms_2_threads": two.median_s * 1e3,
                "speedup": speedup,
                "target": w.scaling_target,
                "met": met,
            }
        )
    return lines, checks, data


def first_call_section(rows: list[Row], width: int) -> tuple[list[str], list[TargetCheck]]:
    own = [r for r in rows if r.impl == "fusedrnn" and r.first_s is not None]
    if not own:
        return [], []
    lines = [
        f"first call: fusedrnn's first call on a new layer (it packs the weights) / its steady-state "
        f"median (target <= {FIRST_CALL_TARGET:g})",
        f"{'workload':<{width}} {'threads':>7} {'first ms':>9} {'median ms':>10} {'ratio':>7}",
    ]
    checks = []
    for r in own:
        check = TargetCheck(
            "first_call",
            r.workload.name,
            r.threads,
            "fusedrnn first call / median",
            r.first_s / r.median_s,
            FIRST_CALL_TARGET,
            at_most=True,
            short_what="first call / median",
        )
        checks.append(check)
        lines.append(
            f"{r.workload.name:<{width}} {r.threads:>7} {r.first_s * 1e3:>9.3f} "
            f"{r.median_s * 1e3:>10.3f} {check.value:>6.2f}x {_met_word(check.met)}"
        )
    return lines, checks


def memory_section(entries: list[dict[str, Any]], threads: int, width: int) -> list[str]:
    if not entries:
        return []
    method = MEMORY_METHOD + ("" if all(e["exact"] for e in entries) else MEMORY_METHOD_FALLBACK)
    lines = [
        f"memory: peak resident memory of one call beyond its outputs, threads={threads}",
        f"  ({method})",
        f"{'workload':<{width}} {'impl':<12} {'model MiB':>9} {'1st call MiB':>12} {'2nd call MiB':>12} "
        f"{'outputs MiB':>11} {'allowance MiB':>13}",
    ]

    def mib(v: int | None) -> str:
        return "" if v is None else f"{v / 2**20:.2f}"

    last = None
    for e in entries:
        name = e["workload"] if e["workload"] != last else ""
        last = e["workload"]
        lines.append(
            f"{name:<{width}} {e['impl']:<12} {mib(e['model_bytes']):>9} "
            f"{mib(e['first_call_bytes']):>12} {mib(e['second_call_bytes']):>12} "
            f"{mib(e['outputs_bytes']):>11} {mib(e['allowance_bytes']):>13}".rstrip()
        )
    return lines


def memory_brief(entries: list[dict[str, Any]], threads: int, workloads: Any) -> list[str]:
    """The memory section of the default report: short names, short headers, REPORT_WIDTH columns."""
    if not entries:
        return []
    short = {w.name: w.short_name for w in workloads}
    name_w = min(max([len("workload")] + [len(short.get(e["workload"], "")) for e in entries]), 37)
    lines = wrap(
        f"memory, threads={threads}: peak resident memory of a call beyond its outputs, MiB (each in a "
        "fresh process; --verbose says how)"
    )
    lines.append(
        f"{'workload':<{name_w}} {'impl':<11} {'model':>9} {'1st call':>9} {'2nd call':>9} "
        f"{'outputs':>9} {'allowance':>9}"
    )

    def mib(v: int | None) -> str:
        return "" if v is None else _fit(v / 2**20, 9, 2)

    last = None
    for e in entries:
        name = short.get(e["workload"], e["workload"]) if e["workload"] != last else ""
        last = e["workload"]
        if len(name) > name_w:
            lines += wrap(name)
            name = ""
        lines.append(
            f"{name:<{name_w}} {e['impl']:<11} {mib(e['model_bytes']):>9} {mib(e['first_call_bytes']):>9} "
            f"{mib(e['second_call_bytes']):>9} {mib(e['outputs_bytes']):>9} "
            f"{mib(e['allowance_bytes']):>9}".rstrip()
        )
    return lines


def targets_summary(
    checks: list[TargetCheck], short_names: dict[str, str] | None = None, width: int | None = None
) -> list[str]:
    """The line "performance targets: K of M met" and every missed one. With ``short_names`` (workload name ->
    its short name) the missed ones are written shortly and wrapped at ``width`` columns (the default
    report)."""
    if not checks:
        return ["targets: none apply to these workloads and thread counts"]
    missed = [c for c in checks if not c.met]
    out = [f"performance targets: {len(checks) - len(missed)} of {len(checks)} met"]
    if missed:
        out.append("missed:")
        for c in missed:
            if short_names is None:
                where = c.workload + ("" if c.threads is None else f", threads={c.threads}")
                out.append(f"  {where}: {c.what} = {c.value:.3g}, target {c.bound}")
                continue
            where = short_names.get(c.workload, c.workload)
            where += "" if c.threads is None else f", threads={c.threads}"
            line = f"  {where}: {c.short_what or c.what} = {c.value:.3g}, target {c.bound}"
            out += wrap(line, width or REPORT_WIDTH, indent="      ")
    return out
