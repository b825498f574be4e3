"""A call's arrays in the caller's layout and in the kernels', and the one reader of state arguments.

The kernels take time-major batched arrays: a sequence (T, N, F), a state (S, N, F) with S =
num_layers * num_directions for a layer and 1 for a cell. A layout converts between those and what the
caller gave (batch-first, unbatched, a cell's one step); ``parse_state`` reads an initial state or the
gradient of a final one, ``h`` or ``(h, c)``, checks it and converts it to the kernels' arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _validation as v

__all__ = ["SequenceLayout", "StepLayout", "parse_state"]


class SequenceLayout:
    """How a layer's call maps onto the kernels' arrays: x (T, N, I) or (N, T, I) batch-first or (T, I)
    unbatched; states (S, N, F) or (S, F) unbatched."""

    __slots__ = ("batch_first", "unbatched", "steps", "batch")

    def __init__(self, batch_first: bool, unbatched: bool, steps: int, batch: int) -> None:
        self.batch_first = batch_first
        self.unbatched = unbatched
        self.steps = steps
        self.batch = batch

    def seq_out(self, y: np.ndarray) -> np.ndarray:
        """(T, N, F) kernel layout -> the caller's layout."""
        if self.unbatched:
            return y[:, 0, :]
        if self.batch_first:
            return np.ascontiguousarray(y.transpose(1, 0, 2))
        return y

    def seq_in(self, y: np.ndarray) -> np.ndarray:
        """The caller's layout (already shape-checked) -> (T, N, F) contiguous."""
        if self.unbatched:
            return y[:, None, :]
        if self.batch_first:
            return np.ascontiguousarray(y.transpose(1, 0, 2))
        return y

    def state_out(self, s: np.ndarray | None) -> np.ndarray | None:
        if s is None or not self.unbatched:
            return s
        return s[:, 0, :]

    def state_in(self, s: np.ndarray) -> np.ndarray:
        return s[:, None, :] if self.unbatched else s

    # What a tape reads and returns: the gradient of the output comes in as y did, that of the input
    # goes out as x came.
    output_in = seq_in
    input_out = seq_out


class StepLayout:
    """How a cell's call maps onto the kernels' arrays, a sequence of one step: x (N, I) or (I,)
    unbatched; states (N, H) or (H,)."""

    __slots__ = ("unbatched", "batch", "x_shape")

    def __init__(self, unbatched: bool, batch: int, x_shape: tuple[int, ...]) -> None:
        self.unbatched = unbatched
        self.batch = batch
        self.x_shape = x_shape

    def out(self, a: np.ndarray) -> np.ndarray:
        """(1, N, F) kernel array -> (N, F), or (F,) unbatched."""
        return a[0, 0] if self.unbatched else a[0]

    def state_in(self, s: np.ndarray) -> np.ndarray:
        """(N, F) or (F,) (already shape-checked) -> (1, N, F)."""
        return s.reshape(1, self.batch, s.shape[-1])

    def state_out(self, s: np.ndarray | None) -> np.ndarray | None:
        return None if s is None else self.out(s)

    output_in = state_in

    def input_out(self, gx: np.ndarray) -> np.ndarray:
        return gx.reshape(self.x_shape)


def parse_state(
    name: str,
    value: Any,
    *,
    pair: str | None,
    model: str,
    labels: tuple[str, str],
    gradient: bool,
    shapes: Sequence[tuple[int, ...]],
    meaning: str,
    layout: SequenceLayout | StepLayout,
    dtype: np.dtype,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``value`` (None, ``h``, or ``(h, c)`` whose parts may be None) as the kernels' arrays ``(h, c)``.

    name: the argument, as messages name it ("state", "h0", "grad_state").
    pair: the kind of model whose state is ``(h, c)``, as messages name it ("an LSTM"), or None when the
        state is one array; model: the model's class name.
    labels: h and c as messages name them ("h0", "c0"; "grad_h_n", "grad_c_n").
    gradient: the gradient of a final state: messages say either part may be None, and name the parts by
        index only.
    shapes: of h and of c, in the caller's layout; meaning: what those shapes are, for the messages.
    """
    h_label, c_label = labels
    if value is None:
        return None, None
    if pair is not None:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            optional = "(either may be None)" if gradient else "(or None)"
            raise TypeError(
                f"{name} must be a tuple ({h_label}, {c_label}) for {pair} {optional}, "
                f"got {v.describe(value)}"
            )
        h_name = f"{name}[0]" if gradient else f"{name}[0] ({h_label})"
        c_name = f"{name}[1]" if gradient else f"{name}[1] ({c_label})"
        h = _state_part(h_name, value[0], shapes[0], meaning, layout, dtype)
        c = _state_part(c_name, value[1], shapes[1], meaning, layout, dtype)
        return h, c
    if isinstance(value, tuple):
        what = "one array" if gradient else f"one array {h_label}"
        raise TypeError(f"{name} must be {what} for {model} (not a tuple), got {v.describe(value)}")
    return _state_part(name, value, shapes[0], meaning, layout, dtype), None


def _state_part(
    name: str,
    value: Any,
    shape: tuple[int, ...],
    meaning: str,
    layout: SequenceLayout | StepLayout,
    dtype: np.dtype,
) -> np.ndarray | None:
    if value is None:
        return None
    arr = v.as_real_array(name, value)
    v.check_shape(name, arr, shape, meaning)
    return v.convert(layout.state_in(arr), dtype)
