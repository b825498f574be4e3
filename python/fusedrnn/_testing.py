"""The kernels' schedule switches, for measuring and testing; not part of the public API.

    from fusedrnn._testing import tuning
    with tuning(claim_steps=False, slices=4):
        lstm = fr.LSTM(16, 256)   # slices: read when a model is built
        lstm(x)                   # the others: read once when a call starts

Each call takes a copy of the switches when it starts (cpp/fusedrnn/tuning.hpp), so that one flipped by
another thread mid-call changes nothing in that call. The switches are process-wide.

- projection_per_step: project the input one step at a time, as a stream's one-step call does.
- claim_steps: a team's threads claim the hidden-unit slices of each step (False: they meet at a barrier
  every step, each with its own slices).
- claim_others_first: the threads claim the other threads' slices first (slices change hands each step).
- rows_per_member: from how many sequences per thread a team splits the batch (0: never).
- directions_at_once: a bidirectional layer runs its two directions at once, a team each.
- slices: hidden-unit slices of the models built from now on (0: automatic, one per 64 units, at most
  one per hardware thread).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from . import _core

_SWITCHES = tuple(name for name in dir(_core._Tuning()) if not name.startswith("_"))


def get_tuning() -> dict[str, Any]:
    """The current switches, by name."""
    current = _core._tuning()
    return {name: getattr(current, name) for name in _SWITCHES}


def _apply(switches: dict[str, Any]) -> None:
    tuning = _core._Tuning()
    for name, value in switches.items():
        setattr(tuning, name, value)
    _core._set_tuning(tuning)


def set_tuning(**changes: Any) -> None:
    """Change some switches; the others keep their values."""
    current = get_tuning()
    unknown = sorted(set(changes) - set(current))
    if unknown:
        raise TypeError(f"unknown tuning switches {unknown}; the switches are {sorted(current)}")
    current.update(changes)
    _apply(current)


@contextlib.contextmanager
def tuning(**changes: Any) -> Iterator[dict[str, Any]]:
    """Set switches for a block of code, and restore them all afterwards."""
    before = get_tuning()
    set_tuning(**changes)
    try:
        yield get_tuning()
    finally:
        _apply(before)
