"""How many threads the kernels use: the default a process starts with, a limit for a block of code,
and a threadpoolctl controller, so that fusedrnn obeys the limits a service or a cluster sets the way it
sets them for BLAS and OpenMP.

The default: ``FUSEDRNN_NUM_THREADS``, else ``OMP_NUM_THREADS`` (its first entry: it may list one count per
nesting level), else the CPUs this process may run on (its affinity mask, which taskset, cgroup cpusets and
job schedulers restrict), not every CPU of the machine. It is read at import, and again at the first call
after either variable changed: Ray sets ``OMP_NUM_THREADS`` to the running task's ``num_cpus`` for that task
only, in worker processes that run many tasks. A count set by ``set_num_threads`` holds until the variables
change next.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator

from . import _core
from . import _validation as v
from ._version import __version__

ENVIRONMENT_VARIABLES = ("FUSEDRNN_NUM_THREADS", "OMP_NUM_THREADS")


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


# os.environ.get of an unset name costs about a microsecond (it raises and catches KeyError), most of a
# stream's step: the values are read from os.environ's own dict (CPython's and PyPy's os module keep them
# there), and through os.environ where it has none.
_ENVIRONMENT_DATA = getattr(os.environ, "_data", None)
_ENCODE_KEY = getattr(os.environ, "encodekey", None)
if isinstance(_ENVIRONMENT_DATA, dict) and callable(_ENCODE_KEY):
    _FUSEDRNN_KEY, _OMP_KEY = (_ENCODE_KEY(name) for name in ENVIRONMENT_VARIABLES)

    def _environment() -> tuple[object, object]:
        """The variables' values as they are now, in a form that only tells them apart."""
        return _ENVIRONMENT_DATA.get(_FUSEDRNN_KEY), _ENVIRONMENT_DATA.get(_OMP_KEY)
else:  # pragma: no cover - another implementation of os.environ

    def _environment() -> tuple[object, object]:
        """The variables' values as they are now, in a form that only tells them apart."""
        return os.environ.get(ENVIRONMENT_VARIABLES[0]), os.environ.get(ENVIRONMENT_VARIABLES[1])


# The variables' values when the thread count was last set, from them or by set_num_threads; None before
# import sets it. Written under _setting, so that the count and the values it came from stay a pair.
_environment_applied: tuple[object, object] | None = None
_setting = threading.Lock()


def _from_environment() -> int | None:
    for name in ENVIRONMENT_VARIABLES:
        text = os.environ.get(name, "").strip()
        if not text:
            continue
        first = text.split(",")[0].strip()
        if first.isdigit() and int(first) >= 1:
            return int(first)
        warnings.warn(
            f"fusedrnn: {name}={text!r} is not a thread count (an integer >= 1, or a comma-separated list "
            "of them); ignored",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


def default_num_threads() -> int:
    """The thread count a process starts with (see the module's docstring)."""
    from_environment = _from_environment()
    return from_environment if from_environment is not None else usable_cpus()


def follow_environment() -> None:
    """Set the thread count from the environment (``default_num_threads``) if ``FUSEDRNN_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` changed since the count was last set. Every call of the kernels runs it first."""
    global _environment_applied
    if _environment() == _environment_applied:
        return
    with _setting:
        now = _environment()
        if now != _environment_applied:
            _core.set_num_threads(default_num_threads())
            _environment_applied = now


def set_num_threads(n: int) -> None:
    """Set how many threads the kernels use, ``n`` (an int >= 1); applies to every model in the process
    until it is set again or ``FUSEDRNN_NUM_THREADS`` or ``OMP_NUM_THREADS`` change (they set the count a
    process starts with)."""
    global _environment_applied
    n = v.check_int("n", n, 1)
    with _setting:
        _core.set_num_threads(n)
        _environment_applied = _environment()


def get_num_threads() -> int:
    """How many threads the kernels use (at the next call)."""
    follow_environment()
    return int(_core.get_num_threads())


@contextlib.contextmanager
def thread_limit(n: int) -> Iterator[None]:
    """``with fusedrnn.thread_limit(1): ...`` runs the block with at most ``n`` kernel threads, then
    restores the count it found. Like ``set_num_threads``, the limit is process-wide: it also holds for
    calls other threads make during the block."""
    n = v.check_int("n", n, 1)
    before = get_num_threads()
    set_num_threads(min(n, before))
    try:
        yield
    finally:
        set_num_threads(before)


def register_threadpoolctl_controller() -> None:
    """Let threadpoolctl see and limit fusedrnn (``threadpool_info()``, ``threadpool_limits()``), when it
    is installed (3.0 or newer)."""
    try:
        import threadpoolctl
    except ImportError:
        return
    if not hasattr(threadpoolctl, "register"):  # before 3.0
        return

    class FusedrnnController(threadpoolctl.LibController):
        user_api = "fusedrnn"
        internal_api = "fusedrnn"
        # threadpoolctl finds controllers' libraries among the loaded shared objects by file name: the
        # kernels' extension module of this process
        filename_prefixes = (f"_core_{_core.isa}",)

        def get_num_threads(self) -> int:
            return get_num_threads()

        def set_num_threads(self, num_threads: int) -> None:
            set_num_threads(num_threads)

        def get_version(self) -> str:
            return __version__

    threadpoolctl.register(FusedrnnController)
