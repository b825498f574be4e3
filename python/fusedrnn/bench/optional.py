"""The optional libraries (PyTorch, ONNX, ONNX Runtime, threadpoolctl, matplotlib), all imported through
:func:`try_import`, so that a test can make any of them look absent in one place."""

from __future__ import annotations

from typing import Any


def try_import(name: str) -> Any:
    """The module ``name``, or None when it cannot be imported."""
    try:
        return __import__(name)
    except Exception:  # an anchor that fails to import for any reason is an absent anchor
        return None
