"""The thread pool survives fork(): a child made after the parent's kernels ran on several threads
computes the same answer with threads of its own, whatever the start method. Each child has a timeout,
so a hang fails the test instead of stalling the run."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import sys
import time

import numpy as np
import pytest

import fusedrnn as fr

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only"),
    # Python 3.12+ warns about fork() in any process with threads (the pool's workers are threads).
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

TIMEOUT = 60.0  # seconds; a healthy child answers in well under one


def _model_and_input() -> tuple[fr.LSTM, np.ndarray]:
    # Batch 1, H=256: enough work per step that the kernels use the pool.
    lstm = fr.LSTM(128, 256, seed=3)
    x = np.random.default_rng(4).standard_normal((20, 1, 128), dtype=np.float32)
    return lstm, x


def _child_output(_: int = 0) -> np.ndarray:
    # The child repeats the parent's computation (the model is rebuilt from its seed under spawn).
    fr.set_num_threads(2)
    lstm, x = _model_and_input()
    return lstm(x)[0]


@pytest.fixture
def parent_output() -> np.ndarray:
    fr.set_num_threads(2)
    lstm, x = _model_and_input()
    y = lstm(x)[0]
    # A bidirectional call as well, so that teams of both sizes have run before the fork.
    fr.LSTM(128, 256, bidirectional=True, seed=5)(x)
    return y


def _wait_or_kill(pid: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the child made by os.fork() did not finish within {TIMEOUT} s (hung)")


def test_os_fork_child_computes(parent_output: np.ndarray) -> None:
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 when its answer is the parent's, bit for bit
        try:
            same = np.array_equal(_child_output(), parent_output)
            os._exit(0 if same else 3)
        except BaseException:
            os._exit(4)
    status = _wait_or_kill(pid)
    signal_number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else "?"
    assert os.WIFEXITED(status), f"child ended by signal {signal_number}"
    exit_status = os.WEXITSTATUS(status)
    assert exit_status == 0, f"child exit status {exit_status} (3: wrong answer, 4: error)"


def test_parent_still_computes_after_fork(parent_output: np.ndarray) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _wait_or_kill(pid)
    np.testing.assert_array_equal(_child_output(), parent_output)


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_pool(method: str, parent_output: np.ndarray) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"start method {method!r} not available on {sys.platform}")
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        outputs = pool.map_async(_child_output, range(4)).get(timeout=TIMEOUT)
    for y in outputs:
        np.testing.assert_array_equal(y, parent_output)


def test_process_pool_executor_fork(parent_output: np.ndarray) -> None:
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as executor:
        outputs = [f.result(timeout=TIMEOUT) for f in [executor.submit(_child_output) for _ in range(4)]]
    for y in outputs:
        np.testing.assert_array_equal(y, parent_output)
