"""What the rows are compared with, measured in the same run: the float32 matmul rate (the roof of the
large-batch rows) and the rate at which one step's recurrent weights can be read (the limit of the
batch-1 rows)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import BenchError
from .timing import Row
from .workloads import Workload

# Side of the square float32 matmul whose rate is the roof (QUICK_MATMUL_SIZE with quick=True).
MATMUL_SIZE = 1024
QUICK_MATMUL_SIZE = 256


def sgemm_samples(size: int, reps: int) -> list[float]:
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


_SGEMM_CHILD = (
    "import json, sys; from fusedrnn.bench.limits import sgemm_samples; "
    "print(json.dumps(sgemm_samples(int(sys.argv[1]), int(sys.argv[2]))))"
)


def matmul_samples(threads: int, tpc: Any, size: int, reps: int) -> list[float]:
    """NumPy's sgemm rate at ``threads`` BLAS threads: in this process with threadpoolctl (the caller holds
    the limit), else in a child process whose BLAS thread count is set through the environment."""
    if tpc is not None:
        with tpc.threadpool_limits(limits=threads, user_api="blas"):
            return sgemm_samples(size, reps)
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run(
        [sys.executable, "-c", _SGEMM_CHILD, str(size), str(reps)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"the matmul-rate child process failed: {proc.stderr.strip()[-500:]}")
    return [float(v) for v in json.loads(proc.stdout.strip().splitlines()[-1])]


def matmul_method(tpc: Any, size: int) -> str:
    where = (
        "in this process, NumPy's BLAS held to that many threads with threadpoolctl"
        if tpc is not None
        else "in a child process started with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS "
        "and BLIS_NUM_THREADS set to the thread count (threadpoolctl is not installed)"
    )
    return (
        f"numpy.matmul of two float32 {size}x{size} matrices at each thread count, {where}; "
        "median of the samples taken just before and just after that thread count's workloads"
    )


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


def read_rate(rows: int, cols: int, tpc: Any, budget_s: float) -> float:
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


def read_method(tpc: Any) -> str:
    how = (
        "the faster of A @ v (sgemv, NumPy's BLAS on one thread) and A.max()"
        if tpc is not None
        else "A.max() (without threadpoolctl the BLAS sgemv could not be held to one thread)"
    )
    return (
        f"NumPy reading a float32 array A shaped like the step's stacked W_hh matrices, hot in cache, "
        f"one thread: {how}, median of repeated reads. At n threads each core is assumed to read its "
        "1/n share at the rate measured on an array of that share's size. NumPy's reads are not the "
        "fastest possible, so the true limit can be lower than this one"
    )


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
        return {
            "workload": self.workload.name,
            "threads": self.threads,
            "step_us": self.step_s * 1e6,
            "w_hh_bytes_per_thread": self.share_bytes,
            "passes": self.passes,
            "read_gb_per_s": self.read_bytes_per_s / 1e9,
            "limit_us": self.limit_s * 1e6,
            "step_over_limit": self.step_s / self.limit_s,
        }


def batch1(rows: list[Row], threads: int, tpc: Any, budget_s: float) -> list[Batch1]:
    """fusedrnn's batch-1 rows at ``threads`` threads against the weight-read limit."""
    out = []
    for row in rows:
        w = row.workload
        if row.impl != "fusedrnn" or w.N != 1 or row.threads != threads:
            continue
        # The recurrent weights as rows of H_out values (W_hr, P x H, counts as H such rows), read as
        # float32 columns of the same bytes; each thread reads its share of the rows.
        cols = w.output_size * w.itemsize // 4
        weight_rows = w.recurrent_weight_bytes // (cols * 4)
        share_rows = -(-weight_rows // threads)
        rate = read_rate(share_rows, cols, tpc, budget_s)
        out.append(
            Batch1(
                w, threads, row.median_s / w.T, share_rows * cols * 4, 2 if w.mode == "training" else 1, rate
            )
        )
    return out
