"""The compiled kernels, in the variant that suits this CPU.

The extension is built once per instruction set; ``_variants.VARIANTS``, written by the build, lists the
variants it compiled, best first, with the CPU features each needs (``_core_baseline`` runs on any CPU).
The best variant the CPU supports is imported here; set the environment variable ``FUSEDRNN_ISA`` (to
``baseline``, say) before importing fusedrnn to force another.
"""

from __future__ import annotations

import importlib
import os

from . import _cpu
from ._variants import VARIANTS

_NAMES = tuple(name for name, _ in VARIANTS)


def _supported(variant: str, features: dict[str, bool]) -> bool:
    needed = dict(VARIANTS)[variant]
    return all(features.get(feature) for feature in needed)


def _load():
    requested = os.environ.get("FUSEDRNN_ISA", "").strip().lower()
    if requested and requested not in _NAMES:
        raise ImportError(f"FUSEDRNN_ISA: expected one of {', '.join(_NAMES)}, got {requested!r}")
    features = _cpu.features()
    if requested and not _supported(requested, features):
        raise ImportError(f"FUSEDRNN_ISA: {requested!r} is not supported by this CPU")
    candidates = [requested] if requested else [v for v in _NAMES if _supported(v, features)]
    for variant in candidates:
        try:
            return importlib.import_module(f"{__package__}._core_{variant}")
        except ImportError:
            if variant == candidates[-1]:
                raise
    raise ImportError("no kernel variant of fusedrnn could be loaded")


_module = _load()

StackConfig = _module.StackConfig
StackBase = _module.StackBase
stacks: dict = _module.stacks  # the stack class by the name of the dtype it computes in
Saved = _module.Saved
Workspace = _module.Workspace
StreamBase = _module.StreamBase
set_num_threads = _module.set_num_threads
get_num_threads = _module.get_num_threads
isa: str = _module.isa
# The schedule switches, for fusedrnn._testing (not exported).
_Tuning = _module._Tuning
_tuning = _module._tuning
_set_tuning = _module._set_tuning

__all__ = [
    "StackConfig",
    "StackBase",
    "stacks",
    "Saved",
    "Workspace",
    "StreamBase",
    "set_num_threads",
    "get_num_threads",
    "isa",
]
