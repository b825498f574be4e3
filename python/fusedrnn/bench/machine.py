"""The machine a run happens on: library versions, the CPU, the load, and how much of the CPU other
processes used while the rows were timed."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

from . import optional

# Other processes keeping more than this many cores busy on average during a block make its times suspect.
BUSY_OTHERS_CORES = 0.05
# A 1-minute load average above this when the run starts: the machine was busy.
BUSY_LOAD = 0.5


def versions(torch: Any) -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("fusedrnn", "numpy", "torch", "onnx", "onnxruntime"):
        if dist == "torch" and torch is None:
            continue
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            mod = sys.modules.get(dist)
            if mod is not None and hasattr(mod, "__version__"):
                out[dist] = str(mod.__version__)
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


class CpuMeter:
    """CPU time the rest of the machine used while this process ran a block: the machine's busy time
    (/proc/stat: user, nice, system, irq, softirq) minus this process's own (all its threads, and its
    children), and the time the hypervisor gave to other guests (steal). Other processes may be invisible
    from here (another PID namespace on the same kernel); /proc/stat still counts them. None where
    /proc/stat is missing."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / tick
        steal = fields[7] / tick if len(fields) > 7 else 0.0
        own = os.times()
        mine = own.user + own.system + own.children_user + own.children_system  # waited-for children too
        return busy, steal, mine, time.monotonic()

    def others(self) -> dict[str, float] | None:
        """{"wall_s", "other_cpu_s", "other_cores", "steal_cores"} since construction; other_cores is the
        average number of cores the other processes kept busy."""
        end = self._read()
        if self._start is None or end is None:
            return None
        busy, steal, own, wall = (b - a for a, b in zip(self._start, end))
        wall = max(wall, 1e-9)
        other = max(0.0, busy - own)
        return {
            "wall_s": wall,
            "other_cpu_s": other,
            "other_cores": other / wall,
            "steal_cores": max(0.0, steal) / wall,
        }


def others_report(threads: int, others: dict[str, float], cores: int) -> tuple[str, str]:
    """The line printed under a thread count's rows, and a note when other processes disturbed them."""
    busy, steal = others["other_cores"], others["steal_cores"]
    line = (
        f"(while threads = {threads} ran: other processes kept {busy:.2f} cores busy on average over "
        f"{others['wall_s']:.0f} s; steal {steal:.2f} cores)"
    )
    note = ""
    if busy > BUSY_OTHERS_CORES or steal > BUSY_OTHERS_CORES:
        note = (
            f"threads={threads}: other processes kept {busy:.2f} cores busy on average (steal "
            f"{steal:.2f}) while these rows were timed, on a machine with {cores} usable cores: the rows "
            "are disturbed, those with more than one thread most"
        )
    return line, note


def busy_reasons(load: float | None, others: dict[int, dict[str, float]]) -> list[str]:
    """Why this run counts as made on a busy machine, shortly (empty: it does not): the load average at
    the start above BUSY_LOAD, and each thread count during which other processes (or the hypervisor's
    other guests, as steal) kept more than BUSY_OTHERS_CORES cores busy. ``others``: thread count ->
    :meth:`CpuMeter.others`."""
    reasons = []
    if load is not None and load > BUSY_LOAD:
        reasons.append(f"load average {load:.2f} at the start")
    during = []
    for threads, o in others.items():
        if o["other_cores"] > BUSY_OTHERS_CORES or o["steal_cores"] > BUSY_OTHERS_CORES:
            steal = f" (steal {o['steal_cores']:.2f})" if o["steal_cores"] > BUSY_OTHERS_CORES else ""
            during.append(f"{o['other_cores']:.2f}{steal} at threads={threads}")
    if during:
        reasons.append("other processes kept cores busy while timing: " + ", ".join(during))
    return reasons


def numpy_threads_note() -> tuple[Any, str]:
    """threadpoolctl (to give NumPy's BLAS the measured thread count) when installed, else a note."""
    tpc = optional.try_import("threadpoolctl")
    if tpc is None:
        return None, (
            "numpy: its BLAS uses its own thread count in this process (install threadpoolctl to "
            "control it): the numpy anchor may use more threads than the row says"
        )
    return tpc, ""
