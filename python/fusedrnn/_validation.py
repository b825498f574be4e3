"""Argument checking and conversion for the public API.

Every check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, wrong value) with a
message that names the argument, says what was expected and shows what was given. Conversions return
C-contiguous arrays of the model's dtype, which is what the compiled kernels accept without copying.

Torch tensors are recognised by duck typing (``detach``/``cpu``/``numpy``) so that importing this module
never imports torch.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Array kinds accepted as numeric input: floating point, signed and unsigned integers.
_REAL_KINDS = "fiu"
_KIND_NAMES = {
    "b": "bool",
    "c": "complex",
    "O": "object",
    "U": "string",
    "S": "bytes",
    "V": "structured/void",
    "M": "datetime",
    "m": "timedelta",
}


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages (arrays by shape and dtype, not contents)."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    if _is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _is_tensor(value: Any) -> bool:
    return (
        not isinstance(value, np.ndarray)
        and hasattr(value, "detach")
        and hasattr(value, "cpu")
        and hasattr(value, "numpy")
    )


def to_numpy(value: Any) -> Any:
    """Torch tensors (also ones that require grad, live on another device, or are views) -> NumPy arrays;
    everything else is returned unchanged."""
    if not _is_tensor(value):
        return value
    tensor = value.detach().cpu()
    for name in ("resolve_conj", "resolve_neg"):
        method = getattr(tensor, name, None)
        if method is not None:
            tensor = method()
    try:
        return tensor.numpy()
    except TypeError:
        # dtypes NumPy has no equivalent for (bfloat16): go through float32.
        return tensor.float().numpy()


def as_real_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a NumPy array of a real numeric dtype (any float or integer), not yet converted."""
    if type(value) is np.ndarray:
        arr = value
    else:
        value = to_numpy(value)
        if value is None:
            raise TypeError(f"{name} must be an array of real numbers, got None")
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be an array of real numbers, got {describe(value)}: {exc}"
            ) from None
    if arr.dtype.kind not in _REAL_KINDS:
        kind = _KIND_NAMES.get(arr.dtype.kind, str(arr.dtype))
        raise TypeError(
            f"{name} must be an array of real numbers (floating point or integer), "
            f"got a {kind} array of dtype {arr.dtype}"
        )
    return arr


def convert(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous copy of ``arr`` in ``dtype`` (no copy when it already is); values too large for
    float32 become inf, as a float32 computation would make them, without a warning."""
    if arr.dtype == dtype:
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > dtype.itemsize:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.ascontiguousarray(arr, dtype=dtype)
    return np.ascontiguousarray(arr, dtype=dtype)


def as_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """``value`` (array-like or torch tensor) as a C-contiguous array of ``dtype``."""
    return convert(as_real_array(name, value), dtype)


def check_shape(name: str, arr: np.ndarray, expected: tuple[int, ...], meaning: str = "") -> None:
    if tuple(arr.shape) != tuple(expected):
        what = f" {meaning}" if meaning else ""
        raise ValueError(f"{name} must have shape {tuple(expected)}{what}, got shape {tuple(arr.shape)}")


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """An integer (Python or NumPy, not bool) >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    result = operator.index(value)
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {result}")
    return result


def check_bool(name: str, value: Any) -> bool:
    """A bool (Python or NumPy), or the ints 0 and 1."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {describe(value)}")


def check_dropout(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"dropout must be a number in [0, 1), got {describe(value)}")
    p = float(value)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {value!r}")
    return p


def check_probability(name: str, value: Any) -> float:
    """A probability in [0, 1) (zoneout, recurrent_dropout)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number in [0, 1), got {describe(value)}")
    p = float(value)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return p


def check_clip(value: Any) -> float:
    """ONNX's clip of the activations' inputs: a finite number >= 0, 0 for none."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"clip: expected a number >= 0 (0 for none), got {describe(value)}")
    clip = float(value)
    if not clip >= 0 or math.isinf(clip):
        raise ValueError(f"clip: expected a finite number >= 0 (0 for none), got {clip}")
    return clip


def check_dtype(value: Any) -> np.dtype:
    """float32 or float64, given as a NumPy dtype, a type, a string or a torch dtype."""
    original = value
    if value is None:  # NumPy reads None as float64; PyTorch as the default dtype: neither is guessed
        raise TypeError("dtype must be numpy.float32 or numpy.float64, got None")
    text = str(value)
    if text in ("torch.float32", "torch.float64"):
        value = text[len("torch.") :]
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {describe(original)}") from None
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be numpy.float32 or numpy.float64, got {dtype}")
    return dtype


def make_rng(seed: Any) -> np.random.Generator:
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(
            f"seed must be None, a non-negative int, a numpy SeedSequence or Generator, got {describe(seed)}"
        ) from None


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, choices))}, got {describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def as_lengths(value: Any, batch: int, steps: int, unbatched: bool = False) -> np.ndarray | None:
    """Validated sequence lengths as an int64 array of shape (N,), or None when every sequence is full.

    ``value``: a sequence of ints, an integer (or whole-valued float) array, or a torch tensor; for an
    unbatched input also a single int. Each length must be in [1, T].
    """
    if value is None:
        return None
    value = to_numpy(value)
    if isinstance(value, (str, bytes)):
        raise TypeError(f"lengths must be a sequence of ints, got {describe(value)}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"lengths must be a sequence of ints, got {describe(value)}") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"lengths must be a sequence of ints, got an array of dtype {arr.dtype}")
    if arr.ndim == 0 and unbatched:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.shape[0] != batch:
        raise ValueError(
            f"lengths must hold one length per sequence ({batch} "
            f"{'value' if batch == 1 else 'values'}, shape ({batch},)), got shape {tuple(arr.shape)}"
        )
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"lengths must be whole numbers, got {arr[i].item()!r} at index {i}")
    out_of_range = (arr < 1) | (arr > steps)
    if out_of_range.any():
        i = int(np.flatnonzero(out_of_range)[0])
        raise ValueError(
            f"lengths must each be between 1 and the number of time steps T={steps}, "
            f"got {arr[i].item()!r} at index {i}"
        )
    lengths = arr.astype(np.int64)
    if (lengths == steps).all():
        return None
    return np.ascontiguousarray(lengths)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    """Linux's MemAvailable plus free swap, or None without /proc/meminfo."""
    try:
        with open("/proc/meminfo") as f:
            info = {}
            for line in f:
                key, _, rest = line.partition(":")
                fields = rest.split()
                if fields and fields[0].isdigit():
                    info[key] = int(fields[0]) * 1024
    except OSError:
        return None
    if "MemAvailable" not in info:
        return None
    return info["MemAvailable"] + info.get("SwapFree", 0)


# (limit, usage) files of the memory cgroup: v2, then v1. v1 writes a huge number for "no limit".
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)
_NO_CGROUP_LIMIT = 1 << 60


def available_memory() -> int | None:
    """Bytes this process can still allocate, as far as the OS says (None when it does not say):
    Linux's MemAvailable plus free swap, capped by a cgroup (v2 or v1) memory limit; elsewhere the
    physical memory."""
    limit = _meminfo_available()
    if limit is not None:
        for limit_file, usage_file in _CGROUP_FILES:
            cap = _read_int(limit_file)
            if cap is not None and cap < _NO_CGROUP_LIMIT:
                limit = min(limit, max(0, cap - (_read_int(usage_file) or 0)))
        return limit
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


# Requests below this size are never refused (the OS is not even asked); without an answer from the
# OS, requests above the fallback are refused.
_ALWAYS_TRY = 1 << 28  # 256 MiB
_FALLBACK_LIMIT = 1 << 40  # 1 TiB


def check_allocation(nbytes: int, what: str | Callable[[], str]) -> None:
    """Raise MemoryError, before trying, when ``nbytes`` clearly cannot be allocated (more than this
    process can still get), instead of letting the OS kill the process halfway through. ``what``
    (or what it returns) names the allocation in the message."""
    if nbytes <= _ALWAYS_TRY:
        return
    if callable(what):
        what = what()
    limit = available_memory()
    if limit is None:
        limit = _FALLBACK_LIMIT
    if nbytes > limit:
        raise MemoryError(
            f"{what} needs at least {nbytes:,} bytes ({nbytes / 2**30:,.1f} GiB), more than the "
            f"{limit / 2**30:,.1f} GiB of memory available"
        )
