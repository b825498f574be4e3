"""The ratios of a run drawn per workload, anchor and thread count, with the targets (matplotlib). A run
judged to have been made on a busy machine (``meta["busy"]``, see ``machine.busy_reasons``) is marked on
the figure: a watermark across the axes and the reasons under them."""

from __future__ import annotations

from typing import Any

from .errors import BenchError

NO_MATPLOTLIB = (
    "--plot needs matplotlib, which is not installed: pip install matplotlib "
    "(or pip install 'fusedrnn[bench]')"
)


def _short_label(row: dict[str, Any]) -> str:
    nonlinearity = row.get("nonlinearity")
    kind = "RNN-" + nonlinearity if nonlinearity else row["cell"].upper()
    kind = ("bi" if row.get("bidirectional") else "") + kind
    if row.get("layers", 1) > 1:
        kind += f" x{row['layers']}"
    extras = [f"P={row['proj_size']}"] if row.get("proj_size") else []
    if row.get("dtype", "float32") != "float32":
        extras.append(row["dtype"])
    if row.get("lengths"):
        extras.append("ragged")
    mode = "inf" if row["mode"] == "inference" else "train"
    return f"{kind} {mode}\nN={row['N']} vs {row['impl']}" + ("\n" + " ".join(extras) if extras else "")


BUSY_MARK = "BUSY MACHINE"


def plot(result: dict[str, Any], path: str) -> None:
    """Draw the ratios of ``result`` (what :func:`run` returns) per workload, anchor and thread count, with
    the performance targets, into ``path`` (PNG). The NumPy reference is left out (no performance anchor).
    Raises BenchError when matplotlib is not installed."""
    fig = figure(result)
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure(result: dict[str, Any]) -> Any:
    """The matplotlib figure :func:`plot` saves (the caller closes it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BenchError(NO_MATPLOTLIB) from exc

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
            ax.bar(
                x,
                r["ratio"],
                bar_w * 0.9,
                color=colors(j),
                edgecolor="black",
                linewidth=0.5,
                hatch="//" if r["target_met"] is False else None,
            )
            if r["target"] is not None:
                ax.hlines(r["target"], x - bar_w * 0.5, x + bar_w * 0.5, color="black", linewidth=2)
    labels = [
        _short_label(by_key[next((g[0], g[1], n) for n in threads if (g[0], g[1], n) in by_key)])
        for g in groups
    ]
    meta = result.get("meta", {})
    _decorate(ax, plt, labels, threads, colors, meta)
    busy = meta.get("busy") or []
    if busy:
        _mark_busy(fig, ax, busy)
    else:
        fig.tight_layout()
    return fig


def _mark_busy(fig: Any, ax: Any, reasons: list[str]) -> None:
    """A watermark across the axes and, under them, why the machine was judged busy."""
    ax.text(
        0.5,
        0.5,
        BUSY_MARK,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=40,
        color="firebrick",
        alpha=0.25,
        rotation=20,
        zorder=10,  # over the bars: a mark that must not be missed
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.text(
        0.5,
        0.015,
        f"{BUSY_MARK}: {'; '.join(reasons)}: the ratios are unreliable",
        ha="center",
        va="bottom",
        fontsize=9,
        color="firebrick",
        wrap=True,
        bbox={"facecolor": "mistyrose", "edgecolor": "firebrick", "boxstyle": "round"},
    )


def _decorate(
    ax: Any, plt: Any, labels: list[str], threads: list[int], colors: Any, meta: dict[str, Any]
) -> None:
    """Axes, labels, title and legend of :func:`plot`."""
    import matplotlib.ticker
    from matplotlib.patches import Patch

    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("anchor time / fusedrnn time (above 1: fusedrnn faster)")
    ax.set_title(
        f"fusedrnn {meta.get('versions', {}).get('fusedrnn', '')} on {meta.get('cpu', '')}: "
        f"ratio per workload and thread count ({', '.join(meta.get('dtypes', ['float32']))})",
        fontsize=10,
    )
    handles = [
        Patch(facecolor=colors(j), edgecolor="black", label=f"{n} thread{'s' if n > 1 else ''}")
        for j, n in enumerate(threads)
    ]
    handles.append(plt.Line2D([], [], color="black", linewidth=2, label="target"))
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="target missed"))
    ax.legend(handles=handles, fontsize=8, loc="upper left")
