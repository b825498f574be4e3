"""The benchmark's errors."""

from __future__ import annotations


class BenchError(RuntimeError):
    """The benchmark could not produce an honest result."""


class AnswerMismatch(BenchError):
    """An anchor's answer differs from fusedrnn's beyond float32 tolerance."""
