"""Shared fixtures: per-dtype tolerances, a comparison that reports where arrays differ, and a
deterministic random generator per test."""

from __future__ import annotations

import zlib
from typing import Any, Callable

import numpy as np
import pytest

from closeness import assert_scaled_close

# (rtol, atol) per compute dtype; atol is multiplied by max(1, max|expected|) so that gradients, which
# sum many terms and can be large, are held to the same relative standard as the outputs.
TOLERANCES = {
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float64): (1e-10, 1e-10),
}


def _assert_close(actual: Any, expected: Any, dtype: Any, what: str = "") -> None:
    assert_scaled_close(actual, expected, *TOLERANCES[np.dtype(dtype)], what)


@pytest.fixture
def assert_close() -> Callable[..., None]:
    """assert_close(actual, expected, dtype, what=""): within the tolerance of ``dtype``."""
    return _assert_close


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's id: reproducible, and different for every test case."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def two_threads():
    """The kernels at 2 threads for this test (teams of two, whatever the machine); restored afterwards."""
    import fusedrnn as fr

    before = fr.get_num_threads()
    fr.set_num_threads(2)
    yield
    fr.set_num_threads(before)
