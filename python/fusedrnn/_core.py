"""The compiled kernels, in the variant that suits this CPU.

The extension is built once per instruction set (``_core_baseline`` for any x86-64 or other CPU,
``_core_avx2`` for AVX2+FMA). The best variant the CPU supports is imported here; set the
environment variable ``FUSEDRNN_ISA=baseline`` before importing fusedrnn to force the baseline.
"""

from __future__ import annotations

import importlib
import os

from . import _cpu

_VARIANTS = ("avx2", "baseline")  # best first


def _supported(variant: str, features: dict[str, bool]) -> bool:
    if variant == "avx2":
        return bool(features.get("avx2") and features.get("fma") and features.get("f16c"))
    return variant == "baseline"


def _load():
    requested = os.environ.get("FUSEDRNN_ISA", "").strip().lower()
    if requested and requested not in _VARIANTS:
        raise ImportError(f"FUSEDRNN_ISA: expected one of {', '.join(_VARIANTS)}, got {requested!r}")
    features = _cpu.features()
    if requested and not _supported(requested, features):
        raise ImportError(f"FUSEDRNN_ISA: {requested!r} is not supported by this CPU")
    candidates = [requested] if requested else [v for v in _VARIANTS if _supported(v, features)]
    for variant in candidates:
        try:
            return importlib.import_module(f"{__package__}._core_{variant}")
        except ImportError:
            if variant == candidates[-1]:
                raise
    raise ImportError("no kernel variant of fusedrnn could be loaded")


_module = _load()

Stack = _module.Stack
Saved = _module.Saved
Workspace = _module.Workspace
StreamBase = _module.StreamBase
set_num_threads = _module.set_num_threads
get_num_threads = _module.get_num_threads
isa: str = _module.isa
# The schedule switches, for fusedrnn._testing (not exported).
_tuning = _module._tuning
_set_tuning = _module._set_tuning

__all__ = [
    "Stack",
    "Saved",
    "Workspace",
    "StreamBase",
    "set_num_threads",
    "get_num_threads",
    "isa",
]
