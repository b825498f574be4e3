"""Interpreter shutdown while other threads are inside the kernels.

Each case runs a fresh interpreter (``sys.executable -c SCRIPT``) in which daemon threads call layers in
an endless loop (the kernels release the GIL, so at exit they are usually mid-call) while the main thread
ends: by returning, by ``sys.exit(3)``, or by ``sys.exit(4)`` from a signal handler that fires while the
main thread is itself inside a long call. The process must end with the exit status the main thread
asked for, with no 'Fatal Python error', abort or segfault, within a timeout. Each case is repeated with
the main thread leaving after different delays (right after the threads' first calls, then later).
No ``os._exit``: the point is the ordinary exit path (finalization, atexit, C++ static destructors).

About 20 s: 28 interpreters of about 0.7 s each.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGALRM")

SCRIPT = r"""
import signal, sys, threading, time
import numpy as np
import fusedrnn as fr

workload, mode, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
fr.set_num_threads(2)
rng = np.random.default_rng(0)
small = fr.LSTM(8, 16, seed=0)                               # the calling thread alone
pooled = fr.GRU(32, 128, num_layers=2, seed=1)               # with the worker pool (4*128*3*128 a step)
bidir = fr.LSTM(32, 128, bidirectional=True, seed=2)         # two teams, one per direction

def forward(layer, steps):
    x = rng.standard_normal((steps, 4, layer.input_size)).astype(np.float32)
    layer(x)
    yield
    while True:
        layer(x)

def train(layer, steps):
    x = rng.standard_normal((steps, 4, layer.input_size)).astype(np.float32)
    while True:
        tape = layer.record(x)
        tape.backward(np.ones_like(tape.output))
        yield

def stream(layer):
    x = rng.standard_normal((4, layer.input_size)).astype(np.float32)
    s = layer.stream(4)
    while True:
        s.step(x)
        yield

JOBS = {
    "forward": [(forward, small, 20)],
    "forward-pool": [(forward, pooled, 30), (forward, bidir, 30)],
    "record+backward": [(train, small, 20), (train, pooled, 30)],
    "stream": [(stream, small), (stream, pooled)],
}
JOBS["mixed"] = [job for jobs in JOBS.values() for job in jobs]
jobs = JOBS[workload]
started = threading.Barrier(len(jobs) + 1)

def run(make, *args):
    calls = make(*args)
    next(calls)            # one call done
    started.wait()
    for _ in calls:        # then calls until the process ends
        pass

for job in jobs:
    threading.Thread(target=run, args=job, daemon=True).start()
started.wait()
time.sleep(delay)
if mode == "exit":
    sys.exit(3)
if mode == "exit-mid-call":
    def leave(signum, frame):
        sys.exit(4)
    signal.signal(signal.SIGALRM, leave)
    signal.setitimer(signal.ITIMER_REAL, 0.002)  # fires during the call below
    x = rng.standard_normal((3000, 4, 32)).astype(np.float32)
    while True:
        bidir(x)
"""

EXPECTED_STATUS = {"return": 0, "exit": 3, "exit-mid-call": 4}
DELAYS = (0.0, 0.005, 0.05, 0.3)  # seconds between the threads' first calls and the main thread leaving
TIMEOUT = 60.0
CRASH_MARKERS = ("Fatal Python error", "Segmentation fault", "terminate called", "Aborted", "core dumped")


def _run(workload: str, mode: str, delay: float) -> str | None:
    """None if the interpreter ended as asked, else what went wrong."""
    argv = [sys.executable, "-X", "faulthandler", "-c", SCRIPT, workload, mode, str(delay)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"delay {delay}: still running after {TIMEOUT} s (hang at exit)"
    status = proc.returncode
    markers = [m for m in CRASH_MARKERS if m in proc.stderr]
    if status == EXPECTED_STATUS[mode] and not markers:
        return None
    how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
    return f"delay {delay}: {how} (expected {EXPECTED_STATUS[mode]}), stderr: {proc.stderr.strip()[:700]!r}"


def _assert_clean_exits(workload: str, mode: str) -> None:
    problems = [p for p in (_run(workload, mode, delay) for delay in DELAYS) if p]
    assert not problems, f"{len(problems)} of {len(DELAYS)} runs:\n" + "\n".join(problems)


@pytest.mark.parametrize("workload", ["forward", "forward-pool", "record+backward", "stream", "mixed"])
def test_main_thread_returns_while_daemon_threads_call(workload):
    _assert_clean_exits(workload, "return")


@pytest.mark.parametrize("mode", ["exit", "exit-mid-call"])
def test_sys_exit_while_daemon_threads_call(mode):
    _assert_clean_exits("mixed", mode)
