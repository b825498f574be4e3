"""One-step recurrent cells with PyTorch's interface: RNNCell, LSTMCell, GRUCell.

A cell advances the state by one time step; the equations are those of the layers (see
``fusedrnn.layers``) with a single layer and direction. Parameters (PyTorch's names and shapes):
``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh`` (G*H), G = 1, 3 or 4.

Shapes: x_t (N, I) and h, c (N, H); or unbatched x_t (I,) with h, c (H,).

``cell.record(x_t, state)`` returns a ``Tape`` whose ``output`` is the new h and whose ``state`` is what
the call returns ((h, c) for LSTMCell, h otherwise); ``tape.backward(grad_output, grad_state=None)``
gives the gradients with respect to x_t (``.input``), the previous state (``.state``) and the parameters
(``.params``), for a loss whose gradient is grad_output on h plus grad_state on the new state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _validation as v
from ._cells import CellKind, cell_kind_from_torch_class
from ._config import StackConfig
from ._model import _Recurrent
from ._state import StepLayout
from ._tape import Tape

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]


class _CellBase(_Recurrent):
    """What the three cells share: a one-step, one-layer compiled stack."""

    _pair_kind = "an LSTMCell"
    _state_labels = ("h", "c")
    _gradient_labels = ("grad_h", "grad_c")
    _fixed_attributes = _Recurrent._fixed_attributes | {
        "input_size",
        "hidden_size",
        "bias",
        "nonlinearity",
        "linear_before_reset",
    }

    def __init__(
        self,
        kind: CellKind,
        input_size: int,
        hidden_size: int,
        bias: bool,
        *,
        linear_before_reset: bool = True,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        self.input_size = v.check_int("input_size", input_size, 1)
        self.hidden_size = v.check_int("hidden_size", hidden_size, 1)
        self.bias = v.check_bool("bias", bias)
        lbr = v.check_bool("linear_before_reset", linear_before_reset)
        config = StackConfig(kind.name, self.input_size, self.hidden_size, 1, self.bias, False, 0, lbr)
        self._init_parameters(config, dtype, seed)

    def _param_names(self, stack_names: list[str]) -> list[str]:
        # One layer, one direction: PyTorch's cell names are the layer's without the suffix "_l0".
        return [name[: -len("_l0")] for name in stack_names]

    def _size_text(self) -> str:
        return f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size})"

    def _extra_repr(self) -> list[str]:
        return []

    def __repr__(self) -> str:
        args = [str(self.input_size), str(self.hidden_size)]
        if not self.bias:
            args.append("bias=False")
        args += self._extra_repr()
        if self._dtype != np.float32:
            args.append(f"dtype={self._dtype}")
        return f"{type(self).__name__}({', '.join(args)})"

    # -- argument handling -------------------------------------------------------------------------

    def _prepare(self, x: Any, state: Any, state_name: str) -> tuple[Any, ...]:
        arr = v.as_real_array("x", x)
        if arr.ndim not in (1, 2):
            raise ValueError(
                "x must be a 2-D array (N, input_size) or a 1-D array (input_size,) for one unbatched "
                f"sample, got a {arr.ndim}-D array of shape {tuple(arr.shape)}"
            )
        if arr.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have input_size={self.input_size} features in its last dimension, "
                f"got shape {tuple(arr.shape)}"
            )
        unbatched = arr.ndim == 1
        batch = 1 if unbatched else arr.shape[0]
        if batch < 1:
            raise ValueError(f"x must hold at least one sample, got shape {tuple(arr.shape)}")
        c = self._config
        v.check_allocation(
            batch * (c.input_size + c.gates * c.hidden_size) * self._dtype.itemsize,
            lambda: f"a call on x of shape {tuple(arr.shape)}",
        )
        layout = StepLayout(unbatched, batch, tuple(arr.shape))
        x_core = v.convert(arr.reshape(1, batch, self.input_size), self._dtype)
        h0, c0 = self._state_arrays(state_name, state, layout)
        return x_core, h0, c0, layout

    def _state_shapes(self, layout: StepLayout) -> tuple[tuple[int, ...], tuple[int, ...]]:
        shape = (self.hidden_size,) if layout.unbatched else (layout.batch, self.hidden_size)
        return shape, shape

    def _state_meaning(self, layout: StepLayout, gradient: bool) -> str:
        if gradient:
            return "(the shape of the state)"
        return "(hidden_size,)" if layout.unbatched else "(N, hidden_size)"

    # -- running -----------------------------------------------------------------------------------

    def _fast_arrays(self, x: Any, state: Any) -> tuple[Any, ...] | None:
        """The kernels' arrays without conversion when the call is already in their terms (batched x
        and state arrays of this cell's dtype and shapes, C-contiguous); None sends it to ``_prepare``."""
        dt = self._dtype
        if type(x) is not np.ndarray or x.dtype != dt or x.ndim != 2 or not x.flags.c_contiguous:
            return None
        batch, width = x.shape
        if width != self.input_size or batch < 1:
            return None
        shape = (batch, self.hidden_size)
        if state is None:
            parts: tuple[Any, ...] = ()
        elif self._has_cell_state:
            if type(state) is not tuple or len(state) != 2:
                return None
            parts = state
        else:
            parts = (state,)
        for a in parts:
            if type(a) is not np.ndarray or a.dtype != dt or a.shape != shape or not a.flags.c_contiguous:
                return None
        core = (1, batch, self.hidden_size)
        h0 = parts[0].reshape(core) if parts else None
        c0 = parts[1].reshape(core) if len(parts) == 2 else None
        return x.reshape(1, batch, width), h0, c0, StepLayout(False, batch, x.shape)

    def _step(self, x: Any, state: Any, state_name: str) -> Any:
        fast = self._fast_arrays(x, state)
        x_core, h0, c0, layout = fast if fast is not None else self._prepare(x, state, state_name)
        runtime = self._runtime
        runtime.begin_call()
        try:
            _, h, c = runtime.stack.forward(x_core, h0, c0, None)
        finally:
            runtime.end_call()
        return self._public_state(h, c, layout)

    def record(self, x: Any, state: Any = None) -> Tape:
        """One step that keeps what ``Tape.backward`` needs: ``tape.output`` is the new h,
        ``tape.state`` what the call returns."""
        x_core, h0, c0, layout = self._prepare(x, state, "state")
        runtime = self._runtime
        version = runtime.begin_call()
        try:
            _, h, c, saved = runtime.stack.forward_train(x_core, h0, c0, None, None)
        finally:
            runtime.end_call()
        new_state = self._public_state(h, c, layout)
        output = new_state[0] if self._has_cell_state else new_state
        return Tape(self, saved, version, output, new_state, None, layout)


class RNNCell(_CellBase):
    """``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, act = tanh or relu. ``h = cell(x, h=None)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        v.check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        self.nonlinearity = nonlinearity
        kind = cell_kind_from_torch_class("RNNCell", nonlinearity)
        super().__init__(kind, input_size, hidden_size, bias, dtype=dtype, seed=seed)

    def _extra_repr(self) -> list[str]:
        return [] if self.nonlinearity == "tanh" else [f"nonlinearity={self.nonlinearity!r}"]

    def __call__(self, x: Any, h: Any = None) -> np.ndarray:
        """x (N, I) or (I,); h (N, H) / (H,) or None (zeros) -> the new h."""
        return self._step(x, h, "h")


class LSTMCell(_CellBase):
    """``i, f, g, o = sig, sig, tanh, sig(W_ih x + b_ih + W_hh h + b_hh)``; ``c' = f*c + i*g``;
    ``h' = o * tanh(c')``. ``h, c = cell(x, (h, c)=None)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        super().__init__(
            cell_kind_from_torch_class("LSTMCell"), input_size, hidden_size, bias, dtype=dtype, seed=seed
        )

    def __call__(self, x: Any, state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """x (N, I) or (I,); state (h, c), each (N, H) / (H,), or None (zeros) -> (h', c')."""
        return self._step(x, state, "state")


class GRUCell(_CellBase):
    """``r, z = sig(...)``; ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` (linear_before_reset=True,
    PyTorch's) or ``tanh(W_in x + b_in + W_hn (r * h) + b_hn)`` (False); ``h' = (1-z)*n + z*h``.
    ``h = cell(x, h=None)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        linear_before_reset: bool = True,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        super().__init__(
            cell_kind_from_torch_class("GRUCell"),
            input_size,
            hidden_size,
            bias,
            linear_before_reset=linear_before_reset,
            dtype=dtype,
            seed=seed,
        )

    @property
    def linear_before_reset(self) -> bool:
        return self._config.linear_before_reset

    def _extra_repr(self) -> list[str]:
        return [] if self.linear_before_reset else ["linear_before_reset=False"]

    def __call__(self, x: Any, h: Any = None) -> np.ndarray:
        """x (N, I) or (I,); h (N, H) / (H,) or None (zeros) -> the new h."""
        return self._step(x, h, "h")
