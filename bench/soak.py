"""Soak: many repetitions of each public operation keep the process's resident memory flat.

    python bench/soak.py                     # 20,000 iterations of each operation (about a minute)
    python bench/soak.py --iterations 2000   # shorter

Operations (each iteration is one of these; layers cycle through LSTM, GRU and RNN configurations, the
first large enough to use the kernels' worker pool, and some calls pass ``lengths``):

- forward: a layer call;
- record+backward: ``layer.record(x)`` then ``tape.backward(gy)``;
- stream.step: ``stream.step(x_t)``, with a new stream every 100 steps (creating and dropping streams
  is part of what is soaked);
- from_onnx: ``fusedrnn.from_onnx(path)`` of a small exported file (skipped when onnx is missing);
- save+load: ``fusedrnn.save(layer, path)`` then ``fusedrnn.load(path)`` (files under /dev/shm when it
  exists: the growth measured is memory, and fsync on a shared disk only adds noise to the times).

For each: resident set size (``/proc/self/statm``, Linux only) before the operation's first call, after a
warm-up of ``max(100, iterations // 10)`` calls (allocator pools, caches and lazily imported modules
settle there), half-way and after all iterations; growth = end - after warm-up, in KiB. A leak grows in
both halves; a heap that settles once (an arena kept, a pool grown) grows in one, so ``steady_growth``,
twice the smaller half's growth, tells them apart with the same sensitivity to a steady leak. The open
file descriptors are counted the same way (a leaked file handle shows there, not in RSS).
``tests/test_soak.py`` runs this module with fewer iterations and bounds the growth.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import fusedrnn as fr

STREAM_RESTART = 100  # steps per stream before a new one is made


def rss_kib() -> int:
    """Resident set size of this process in KiB, from /proc/self/statm (Linux only)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Result:
    operation: str
    iterations: int
    seconds: float
    rss_before: int  # KiB
    rss_warm: int
    rss_mid: int  # after half the iterations
    rss_end: int
    fds_warm: int
    fds_end: int

    @property
    def growth(self) -> int:
        """KiB gained after the warm-up."""
        return self.rss_end - self.rss_warm

    @property
    def steady_growth(self) -> int:
        """KiB a steady leak would have gained over all iterations: twice the smaller half's growth."""
        return 2 * min(self.rss_mid - self.rss_warm, self.rss_end - self.rss_mid)


def _layers() -> list:
    """The layers the operations cycle through: one large enough for the worker pool (a 2-layer
    bidirectional LSTM, 4*64*4*64 multiply-adds per step), a GRU and a plain RNN."""
    return [
        fr.LSTM(16, 64, num_layers=2, bidirectional=True, seed=1),
        fr.GRU(16, 32, seed=2),
        fr.RNN(16, 24, nonlinearity="relu", seed=3),
    ]


def _inputs(layers: list, steps: int = 12, batch: int = 4) -> list:
    """Per layer: (x, lengths or None, gy), fixed across iterations."""
    rng = np.random.default_rng(0)
    out = []
    for k, layer in enumerate(layers):
        x = rng.standard_normal((steps, batch, layer.input_size)).astype(np.float32)
        lengths = np.array([steps, steps - 3, 1, steps - 1]) if k == 1 else None
        gy = rng.standard_normal(layer(x)[0].shape).astype(np.float32)
        out.append((x, lengths, gy))
    return out


def operations(workdir: str) -> dict[str, Callable[[int], object]]:
    """name -> op(k), the k-th iteration of that operation. Setup (layers, files) happens here, before
    any memory is measured."""
    layers = _layers()
    data = _inputs(layers)

    def forward(k: int) -> object:
        i = k % len(layers)
        x, lengths, _ = data[i]
        return layers[i](x, lengths=lengths)

    def record_backward(k: int) -> object:
        i = k % len(layers)
        x, lengths, gy = data[i]
        return layers[i].record(x, lengths=lengths).backward(gy)

    streamable = [fr.LSTM(16, 48, num_layers=2, seed=4), fr.GRU(16, 32, seed=5)]
    step_x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    streams: list = [None]

    def stream_step(k: int) -> object:
        if k % STREAM_RESTART == 0:
            streams[0] = streamable[(k // STREAM_RESTART) % len(streamable)].stream(3)
        return streams[0].step(step_x)

    saved_path = os.path.join(workdir, "soak.fusedrnn")
    save_layers = [layers[0], layers[1]]

    def save_load(k: int) -> object:
        fr.save(save_layers[k % 2], saved_path)
        return fr.load(saved_path)

    ops: dict[str, Callable[[int], object]] = {
        "forward": forward,
        "record+backward": record_backward,
        "stream.step": stream_step,
    }
    try:
        import onnx  # noqa: F401
    except ImportError:
        pass
    else:
        onnx_path = os.path.join(workdir, "soak.onnx")
        fr.to_onnx(fr.LSTM(8, 16, num_layers=2, seed=6), onnx_path)
        ops["from_onnx"] = lambda k: fr.from_onnx(onnx_path)
    ops["save+load"] = save_load
    return ops


def soak(op: Callable[[int], object], name: str, iterations: int) -> Result:
    """Runs op(k) for a warm-up then ``iterations`` times, reading RSS around both."""
    gc.collect()
    before = rss_kib()
    warmup = max(100, iterations // 10)
    for k in range(warmup):
        op(k)
    gc.collect()
    warm, fds_warm = rss_kib(), open_fds()
    start = time.perf_counter()
    half = iterations // 2
    for k in range(half):
        op(k)
    gc.collect()
    mid = rss_kib()
    for k in range(half, iterations):
        op(k)
    seconds = time.perf_counter() - start
    gc.collect()
    return Result(name, iterations, seconds, before, warm, mid, rss_kib(), fds_warm, open_fds())


def run(iterations: int, only: list[str] | None = None) -> list[Result]:
    workdir = tempfile.mkdtemp(prefix="fusedrnn-soak-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        ops = operations(workdir)
        return [soak(op, name, iterations) for name, op in ops.items() if only is None or name in only]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def table(results: list[Result]) -> str:
    header = (
        "operation",
        "iterations",
        "seconds",
        "RSS before",
        "after warm-up",
        "half-way",
        "at end",
        "growth KiB",
        "steady KiB",
        "fds",
    )
    rows = [header]
    for r in results:
        rows.append(
            (
                r.operation,
                f"{r.iterations:,}",
                f"{r.seconds:.1f}",
                f"{r.rss_before:,}",
                f"{r.rss_warm:,}",
                f"{r.rss_mid:,}",
                f"{r.rss_end:,}",
                f"{r.growth:+,}",
                f"{r.steady_growth:+,}",
                f"{r.fds_warm}->{r.fds_end}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20_000, help="per operation (default 20,000)")
    parser.add_argument("--only", nargs="+", help="operations to run (default: all)")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("soak: reads RSS from /proc/self/statm, Linux only", file=sys.stderr)
        return 2
    print(
        f"fusedrnn {fr.__version__} ({fr._core.isa}), {fr.get_num_threads()} threads, "
        f"RSS in KiB from /proc/self/statm"
    )
    results = run(args.iterations, args.only)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
