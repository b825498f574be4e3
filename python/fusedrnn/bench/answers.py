"""Every anchor's answer is checked against fusedrnn's before anything is timed."""

from __future__ import annotations

import numpy as np

from .errors import AnswerMismatch
from .workloads import Workload

# A float32 answer passes when max|anchor - fusedrnn| <= TOLERANCE * max(1, max|fusedrnn|). Correct float32
# implementations agree to about 1e-6 here; a wrong gate order or bias mapping differs by 0.1 or more.
TOLERANCE = {"inference": 1e-4, "training": 1e-3}
# float64 answers agree to about 1e-14; these leave room for long sequences and deep stacks.
TOLERANCE_FLOAT64 = {"inference": 1e-9, "training": 1e-8}


def tolerance(workload: Workload) -> float:
    """The relative tolerance of ``workload``'s answers (its dtype and mode)."""
    return (TOLERANCE_FLOAT64 if workload.dtype == "float64" else TOLERANCE)[workload.mode]


def check_answer(
    workload: Workload, name: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]
) -> tuple[float, float]:
    """Compare ``got`` (an anchor) to ``want`` (fusedrnn) on every key ``want`` has.

    Returns (max abs diff, tolerance of the worst entry relative to its scale); raises AnswerMismatch
    when an entry is missing, misshapen, not finite or beyond tolerance."""
    tol = tolerance(workload)
    worst = 0.0
    worst_rel = 0.0
    for key, ref in want.items():
        if key not in got:
            raise AnswerMismatch(f"{workload.name}: {name} gave no {key!r}")
        a = np.asarray(got[key], dtype=np.float64)
        b = np.asarray(ref, dtype=np.float64)
        if a.shape != b.shape:
            raise AnswerMismatch(f"{workload.name}: {name} {key} has shape {a.shape}, fusedrnn {b.shape}")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise AnswerMismatch(f"{workload.name}: {name} or fusedrnn {key} is not finite")
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = max(1.0, float(np.max(np.abs(b))) if b.size else 0.0)
        if diff > tol * scale:
            raise AnswerMismatch(
                f"{workload.name}: {name} differs from fusedrnn in {key}: max abs diff {diff:.3g} "
                f"> tolerance {tol:g} * {scale:.3g}"
            )
        worst = max(worst, diff)
        worst_rel = max(worst_rel, diff / scale)
    return worst, worst_rel
