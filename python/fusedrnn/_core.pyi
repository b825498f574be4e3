"""The compiled kernels (C++ / Eigen, bound with pybind11), in the variant that suits this CPU.
Internal: use fusedrnn's public classes.

Shapes (time-major always): x (T, N, I); h0/h_n (D*L, N, H_out); c0/c_n (D*L, N, H) for "lstm" only;
lengths (N,) int64 with 1 <= lengths[n] <= T; y (T, N, D*H_out); dropout_masks: L-1 arrays (T, N, D*H_out).
Arrays should already be C-contiguous and of the stack's dtype (``stacks[name]`` computes in that dtype),
so that nothing is copied; shapes are re-checked and violations raise ValueError. The GIL is released
during compute.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_Array = npt.NDArray[np.floating[Any]]
_IntArray = npt.NDArray[np.int64]

isa: str
"""The instruction-set variant in use ("baseline", "avx2", ...)."""

class Saved:
    """What a training forward keeps for backward (opaque)."""

    @property
    def steps(self) -> int: ...
    @property
    def batch(self) -> int: ...

class Workspace:
    """Workspaces a stream keeps from step to step (opaque)."""

class StreamBase:
    """The compiled part of ``fusedrnn.Stream``, which subclasses it."""

    _h: _Array
    _c: _Array | None
    steps: int
    def __init__(self, stack: StackBase, refresh: Callable[[], None], x_shape: Sequence[int]) -> None: ...
    def step(self, x_t: object) -> _Array:
        """Advance by one step: x_t (N, I) or (I,) -> y_t (N, H_out) / (H_out,)."""

class StackConfig:
    """What a compiled stack is (see fusedrnn._config.StackConfig for the meaning of the fields)."""

    def __init__(
        self,
        *,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        bidirectional: bool = False,
        proj_size: int = 0,
        linear_before_reset: bool = True,
        residual: bool = False,
        peephole: bool = False,
        clip: float = 0.0,
        input_forget: bool = False,
        hard_gates: bool = False,
        layer_norm: bool = False,
        zoneout: float = 0.0,
    ) -> None: ...
    cell: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    bidirectional: bool
    proj_size: int
    linear_before_reset: bool
    residual: bool
    peephole: bool
    clip: float
    input_forget: bool
    hard_gates: bool
    layer_norm: bool
    zoneout: float

class StackBase:
    """What the stacks of every dtype have in common."""

class Stack(StackBase):
    """A stack of recurrent layers computing in one dtype (``stacks["float32"]``, ``stacks["float64"]``)."""

    def __init__(self, config: StackConfig) -> None: ...
    @property
    def config(self) -> StackConfig: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    def param_shapes(self) -> list[list[int]]: ...
    def _slices(self) -> int: ...
    def set_weights(self, params: Sequence[_Array]) -> None:
        """Copy (and pack) the weights, given in StackConfig.param_names() order."""
    def forward(
        self,
        x: _Array,
        h0: _Array | None = None,
        c0: _Array | None = None,
        lengths: _IntArray | None = None,
    ) -> tuple[_Array, _Array, _Array | None]:
        """Inference: (y, h_n, c_n); c_n is None unless the cell is "lstm"."""
    def new_workspace(self) -> Workspace:
        """Workspaces for ``step`` to keep from step to step (one call at a time uses them)."""
    def step(
        self, x: _Array, h: _Array, c: _Array | None = None, workspace: Workspace | None = None
    ) -> _Array:
        """One time step, x (N, I) or unbatched (I,): updates h (L*D, N, H_out) and c (L*D, N, H), which
        must be C-contiguous writable arrays of the model's dtype, in place; returns y (N, D*H_out), or
        (D*H_out,) for an unbatched x."""
    def forward_train(
        self,
        x: _Array,
        h0: _Array | None = None,
        c0: _Array | None = None,
        lengths: _IntArray | None = None,
        dropout_masks: Sequence[_Array] | None = None,
    ) -> tuple[_Array, _Array, _Array | None, Saved]:
        """Training forward: (y, h_n, c_n, saved), ``saved`` for ``backward``."""
    def backward(
        self,
        saved: Saved,
        grad_y: _Array,
        grad_h_n: _Array | None = None,
        grad_c_n: _Array | None = None,
    ) -> tuple[_Array, _Array, _Array | None, list[_Array]]:
        """(grad_x, grad_h0, grad_c0, grads) with grads in param_names() order."""

def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels may use."""

def get_num_threads() -> int:
    """The number of threads the kernels may use."""

stacks: dict[str, type[Stack]]
"""The stack class by the name of the dtype it computes in."""

class _Tuning:
    projection_per_step: bool
    claim_steps: bool
    claim_others_first: bool
    rows_per_member: int
    directions_at_once: bool
    slices: int

def _tuning() -> _Tuning:
    """The schedule switches (see fusedrnn._testing)."""

def _set_tuning(tuning: _Tuning) -> None:
    """Set every schedule switch (see fusedrnn._testing)."""
