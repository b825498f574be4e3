"""The thread count a process starts with, limits for a block of code, and threadpoolctl.

A service or a cluster limits its workers' threads through the environment (OMP_NUM_THREADS), the CPU
affinity mask (taskset, cpusets) or threadpoolctl; before, fusedrnn ignored all three and took every core
of the machine in every worker. Ray changes OMP_NUM_THREADS from task to task in one worker process:
fusedrnn follows it at the next call (Ray itself runs in test_ray.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import _core

_REPORT = "import fusedrnn as fr; print(fr.get_num_threads())"


def _threads_in_child(env: dict[str, str], cpus: set[int] | None = None) -> tuple[int, str]:
    """(fusedrnn's thread count, stderr) of a fresh interpreter with these variables (and CPUs)."""
    ours = ("FUSEDRNN_NUM_THREADS", "OMP_NUM_THREADS")
    environment = {k: val for k, val in os.environ.items() if k not in ours}
    environment.update(env)
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus is not None else None
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT],
        env=environment,
        preexec_fn=preexec,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(proc.stdout.strip()), proc.stderr


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"FUSEDRNN_NUM_THREADS": "3"}, 3),
        ({"OMP_NUM_THREADS": "5"}, 5),
        ({"OMP_NUM_THREADS": "2,1"}, 2),  # one count per OpenMP nesting level: the first
        ({"FUSEDRNN_NUM_THREADS": "1", "OMP_NUM_THREADS": "4"}, 1),  # fusedrnn's own first
        ({"FUSEDRNN_NUM_THREADS": " 7 "}, 7),
    ],
    ids=["fusedrnn", "omp", "omp-nested", "fusedrnn-over-omp", "spaces"],
)
def test_the_environment_sets_the_default(env: dict[str, str], expected: int) -> None:
    threads, stderr = _threads_in_child(env)
    assert threads == expected
    assert "Warning" not in stderr, stderr


@pytest.mark.parametrize("value", ["many", "0", "-2", "1.5"])
def test_a_bad_value_is_named_and_ignored(value: str) -> None:
    threads, stderr = _threads_in_child({"FUSEDRNN_NUM_THREADS": value, "OMP_NUM_THREADS": "2"})
    assert threads == 2
    assert f"FUSEDRNN_NUM_THREADS={value!r} is not a thread count" in stderr, stderr


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_without_a_variable_the_default_is_the_cpus_the_process_may_use() -> None:
    assert _threads_in_child({})[0] == _usable_cpus()
    one_cpu = {min(os.sched_getaffinity(0))}
    assert _threads_in_child({}, cpus=one_cpu)[0] == 1


@pytest.fixture
def environment_and_count(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """monkeypatch, with neither variable set; the variables and the thread count restored afterwards."""
    before = fr.get_num_threads()
    monkeypatch.delenv("FUSEDRNN_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield monkeypatch
    monkeypatch.undo()
    fr.set_num_threads(before)


def test_a_changed_variable_sets_the_count_at_the_next_call(
    environment_and_count: pytest.MonkeyPatch,
) -> None:
    """As Ray does in a worker process that runs many tasks: OMP_NUM_THREADS set to each task's num_cpus
    while it runs, unset between tasks."""
    env = environment_and_count
    gru = fr.GRU(4, 16, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    stream = gru.stream(batch_size=2)
    for omp, expected in [("3", 3), (None, _usable_cpus()), ("1", 1), ("2,1", 2)]:
        if omp is None:
            env.delenv("OMP_NUM_THREADS")
        else:
            env.setenv("OMP_NUM_THREADS", omp)
        gru(x)
        assert _core.get_num_threads() == expected, f"a layer's call after OMP_NUM_THREADS={omp}"
    env.setenv("OMP_NUM_THREADS", "3")
    stream.step(x[0])
    assert _core.get_num_threads() == 3, "a stream's step"
    env.setenv("FUSEDRNN_NUM_THREADS", "1")
    assert fr.get_num_threads() == 1  # fusedrnn's own first, as at import


def test_a_count_set_holds_until_a_variable_changes(environment_and_count: pytest.MonkeyPatch) -> None:
    env = environment_and_count
    env.setenv("OMP_NUM_THREADS", "2")
    fr.set_num_threads(3)
    lstm = fr.LSTM(4, 16, seed=0)
    lstm(np.zeros((2, 1, 4), np.float32))
    assert fr.get_num_threads() == 3
    env.setenv("OMP_NUM_THREADS", "1")
    assert fr.get_num_threads() == 1


def test_a_changed_bad_value_is_named_at_the_next_call(environment_and_count: pytest.MonkeyPatch) -> None:
    env = environment_and_count
    fr.set_num_threads(2)
    env.setenv("OMP_NUM_THREADS", "all")
    with pytest.warns(RuntimeWarning, match="OMP_NUM_THREADS='all' is not a thread count"):
        assert fr.get_num_threads() == _usable_cpus()


def test_thread_limit_holds_for_the_block_and_is_undone() -> None:
    before = fr.get_num_threads()
    try:
        fr.set_num_threads(3)
        lstm = fr.LSTM(8, 128, seed=0)
        x = np.random.default_rng(0).standard_normal((5, 4, 8)).astype(np.float32)
        y = lstm(x)[0]
        with fr.thread_limit(1):
            assert fr.get_num_threads() == 1
            np.testing.assert_array_equal(lstm(x)[0], y)  # the same bits at any thread count
            with fr.thread_limit(2):  # a limit never raises the count
                assert fr.get_num_threads() == 1
        assert fr.get_num_threads() == 3
        with pytest.raises(RuntimeError), fr.thread_limit(2):
            raise RuntimeError("inside")
        assert fr.get_num_threads() == 3
    finally:
        fr.set_num_threads(before)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_thread_limit_refuses_what_is_not_a_count(bad, error) -> None:
    with pytest.raises(error, match="n"):
        with fr.thread_limit(bad):
            pass


def test_threadpoolctl_sees_and_limits_fusedrnn() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl", minversion="3.0")
    before = fr.get_num_threads()
    try:
        fr.set_num_threads(2)
        entries = [e for e in threadpoolctl.threadpool_info() if e["user_api"] == "fusedrnn"]
        assert len(entries) == 1, threadpoolctl.threadpool_info()
        assert entries[0]["num_threads"] == 2
        assert entries[0]["version"] == fr.__version__
        with threadpoolctl.threadpool_limits(1):
            assert fr.get_num_threads() == 1
        assert fr.get_num_threads() == 2
        with threadpoolctl.threadpool_limits(limits=1, user_api="fusedrnn"):
            assert fr.get_num_threads() == 1
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):  # another library's limit only
            assert fr.get_num_threads() == 2
        assert fr.get_num_threads() == 2
    finally:
        fr.set_num_threads(before)


def _worker_report() -> tuple[int, int]:
    import os

    import fusedrnn

    return os.getpid(), fusedrnn.get_num_threads()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # dask's and tornado's own
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dask_worker_processes_use_one_thread_each() -> None:
    """A LocalCluster of processes starts each worker with OMP_NUM_THREADS=1 (Dask's pre-spawn
    environment): fusedrnn there runs one thread per worker, as BLAS does, instead of every core."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        reports = client.run(_worker_report)
    assert len(reports) == 2
    assert len({pid for pid, _ in reports.values()}) == 2
    assert all(threads == 1 for _, threads in reports.values()), reports
