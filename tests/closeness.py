"""One comparison for every test file: arrays (or CPU torch tensors) equal within rtol and a tolerance
atol scaled by max(1, max|expected|), so that gradients, which sum many terms and can be large, are held to
the same relative standard as outputs."""

from __future__ import annotations

from typing import Any

import numpy as np


def _float64(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def assert_scaled_close(actual: Any, expected: Any, rtol: float, atol: float, what: str = "") -> None:
    actual, expected = _float64(actual), _float64(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    finite = expected[np.isfinite(expected)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)
