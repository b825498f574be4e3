"""fusedrnn in Ray tasks runs as many kernel threads as the task's ``num_cpus``.

Ray sets ``OMP_NUM_THREADS`` to the running task's ``num_cpus`` (rounded down, at least 1) for that task
only, in worker processes that run many tasks one after another: the count fusedrnn took from it when the
first task imported fusedrnn would be wrong for a later task that asked for another number of CPUs.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import fusedrnn as fr

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow  # starting a local Ray takes about 5 s


RunTask = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def run_task() -> Iterator[RunTask]:
    """``run_task(num_cpus, model_file=None, x=None)`` runs a task of ``num_cpus`` CPUs on a Ray of 2 CPUs on
    this machine and returns what the task saw (``task_report``). Ray stops, with its processes and files,
    after the module's tests, and this process's environment is restored."""
    environment_before = dict(os.environ)
    # Ray's own socket paths must stay short: not under pytest's deeper temporary directories.
    temp_dir = tempfile.mkdtemp(prefix="ray-")

    # Defined here, not at module level, so that Ray sends the function itself: the workers cannot
    # import the test module.
    def task_report(model_file: bytes | None = None, x: np.ndarray | None = None) -> dict[str, Any]:
        """What a task sees: its process, OMP_NUM_THREADS, fusedrnn's thread count, and the output of
        the model in ``model_file`` (fr.save's bytes) for ``x``."""
        import io
        import os

        import fusedrnn

        output = None if model_file is None else fusedrnn.load(io.BytesIO(model_file))(x)[0]
        return {
            "pid": os.getpid(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "threads": fusedrnn.get_num_threads(),
            "fusedrnn": fusedrnn.__file__,
            "output": output,
        }

    remote_report = ray.remote(task_report)

    def run(num_cpus: int, *args: Any) -> dict[str, Any]:
        return ray.get(remote_report.options(num_cpus=num_cpus).remote(*args), timeout=120)

    try:
        with pytest.MonkeyPatch.context() as patch:
            # A count set in the driver's environment reaches every task unchanged: Ray sets its own only
            # where none is set.
            patch.delenv("FUSEDRNN_NUM_THREADS", raising=False)
            patch.delenv("OMP_NUM_THREADS", raising=False)
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                # Ray replaces 127.0.0.1 by the machine's network address; another loopback address keeps the
                # cluster's traffic inside this machine.
                _node_ip_address="127.0.0.2",
                _temp_dir=temp_dir,
            )
        yield run
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        # ray.init leaves variables of its own here (RAY_*, PYTHONBREAKPOINT), which later tests' child
        # processes would inherit.
        for name in set(os.environ) - set(environment_before):
            del os.environ[name]
        os.environ.update(environment_before)


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


needs_two_cpus = pytest.mark.skipif(_usable_cpus() < 2, reason="a task of 2 CPUs needs 2 usable CPUs")


def test_a_task_of_one_cpu_runs_one_thread(run_task: RunTask) -> None:
    report = run_task(1)
    assert report["fusedrnn"] == fr.__file__  # the workers import the fusedrnn under test
    assert report["OMP_NUM_THREADS"] == "1"
    assert report["threads"] == 1


@needs_two_cpus
def test_a_task_of_two_cpus_runs_two_threads(run_task: RunTask) -> None:
    report = run_task(2)
    assert report["OMP_NUM_THREADS"] == "2"
    assert report["threads"] == 2


@needs_two_cpus
def test_each_task_in_a_reused_worker_gets_its_own_count(run_task: RunTask) -> None:
    """One worker process runs tasks of 1 and 2 CPUs in turn; fusedrnn was imported by the first."""
    num_cpus = [1, 2, 1, 2, 1]
    reports = [run_task(n) for n in num_cpus]
    pids = [r["pid"] for r in reports]
    assert len(set(pids)) < len(pids), f"Ray started a worker per task ({pids}): no worker was reused"
    assert [r["OMP_NUM_THREADS"] for r in reports] == [str(n) for n in num_cpus]
    assert [r["threads"] for r in reports] == num_cpus


@pytest.mark.parametrize("num_cpus", [1, pytest.param(2, marks=needs_two_cpus)])
def test_a_layer_in_a_task_computes_what_it_computes_in_the_driver(run_task: RunTask, num_cpus: int) -> None:
    lstm = fr.LSTM(8, 32, num_layers=2, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((12, 4, 8)).astype(np.float32)
    model_file = io.BytesIO()
    fr.save(lstm, model_file)
    report = run_task(num_cpus, model_file.getvalue(), x)
    assert report["threads"] == num_cpus
    # The kernels give the same bits at any thread count.
    np.testing.assert_array_equal(report["output"], lstm(x)[0])
