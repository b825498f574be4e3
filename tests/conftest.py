"""Shared fixtures: the kernels-against-reference comparison (``tolerances.KERNEL_VS_REFERENCE``), which
reports where arrays differ, and a deterministic random generator per test."""

from __future__ import annotations

import zlib
from typing import Any, Callable

import numpy as np
import pytest

from closeness import assert_scaled_close
from tolerances import KERNEL_VS_REFERENCE


def _assert_close(actual: Any, expected: Any, dtype: Any, what: str = "") -> None:
    assert_scaled_close(actual, expected, *KERNEL_VS_REFERENCE[dtype], what)


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
