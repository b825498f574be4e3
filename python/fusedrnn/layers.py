"""Recurrent layers with PyTorch's interface on NumPy arrays: RNN, LSTM and GRU.

Shape letters: T steps, N batch, I input features, H hidden units, P projection size (LSTM), H_out = P or
H, D directions (1 or 2), L layers.

Equations (PyTorch's, gate order as PyTorch: LSTM i, f, g, o; GRU r, z, n), for each layer and direction,
with x_t the layer's input at step t and h the previous state::

    RNN   h_t = act(W_ih x_t + b_ih + W_hh h + b_hh)                  act = tanh or relu
    LSTM  i, f, g, o = sig, sig, tanh, sig (W_ih x_t + b_ih + W_hh h + b_hh)
          c_t = f * c + i * g ;  h_t = o * tanh(c_t)   (with proj_size: h_t = W_hr (o * tanh(c_t)))
    GRU   r, z = sig(W_i{r,z} x_t + b_i{r,z} + W_h{r,z} h + b_h{r,z})
          n = tanh(W_in x_t + b_in + r * (W_hn h + b_hn))       linear_before_reset=True (PyTorch)
          n = tanh(W_in x_t + b_in + W_hn (r * h) + b_hn)       linear_before_reset=False (ONNX default)
          h_t = (1 - z) * n + z * h

Arrays: x is (T, N, I), (N, T, I) with ``batch_first`` or (T, I) unbatched; y is (T, N, D*H_out) (forward
direction's features first); h0/h_n are (D*L, N, H_out) and c0/c_n (D*L, N, H), index layer*D + direction;
unbatched, the N axis is absent. ``lengths`` gives PyTorch's packed-sequence semantics without packing.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import _validation as v
from ._config import StackConfig
from ._runtime import Runtime

if TYPE_CHECKING:
    from .stream import Stream

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "Tape", "Gradients"]

# The gates' activation of LSTM and GRU: the logistic function, or Keras 3's hard sigmoid
# relu6(a + 3) / 6 = clip(a / 6 + 1/2, 0, 1) (derivative 1/6 where it is not saturated).
GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")

# A lower bound of the memory each parameter array costs besides its values (the NumPy object, its name
# and dict entry, the kernels' per-layer structures): about 900 bytes measured. It dominates the cost of
# a very deep stack of tiny layers.
_BYTES_PER_ARRAY = 512
# The kernels' buffer for the input projection, at most (cpp/fusedrnn/layer.hpp, kProjectionBytes).
_PROJECTION_BYTES = 8 << 20


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` did not match: parameters the mapping lacks (with strict=False they keep
    their values) and keys that name no parameter (ignored with strict=False). Empty when all matched."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Gradients:
    """What ``Tape.backward`` returns.

    input: gradient with respect to the input, the shape of ``x`` (batch_first / unbatched as given).
    state: with respect to the initial state -- ``(dh0, dc0)`` for an LSTM, ``dh0`` otherwise, in the
        layout of the state the call accepted (zeros when no state was given).
    params: with respect to every parameter, a dict keyed and ordered like ``state_dict()``.
    """

    __slots__ = ("input", "state", "params")

    def __init__(self, input: np.ndarray, state: Any, params: dict[str, np.ndarray]) -> None:
        self.input = input
        self.state = state
        self.params = params

    def __repr__(self) -> str:
        return f"Gradients(input={self.input.shape}, params=[{', '.join(self.params)}])"


class Tape:
    """A forward pass that keeps what its backward pass needs (made by ``record``).

    output, state: what the call would have returned (for a cell: output is the new h, state what the
        call returns -- (h, c) for LSTMCell, h otherwise).
    dropout_masks: the dropout masks this forward used -- None, or a list of L-1 arrays (T, N, D*H_out),
        time-major whatever ``batch_first`` is, already scaled by 1/(1-p): the input of layer k+1 was
        layer k's output times ``dropout_masks[k]``.
    backward(grad_output, grad_state=None) -> Gradients: the gradient of ``sum(output * grad_output) +
        sum(state * grad_state)``; ``grad_state`` may be None (zero), and for an LSTM ``(gh, gc)`` with
        either part None. It may be called more than once.
    """

    def __init__(
        self,
        owner: _Recurrent,
        saved: Any,
        version: int,
        output: Any,
        state: Any,
        dropout_masks: list[np.ndarray] | None,
        layout: Any,
    ) -> None:
        self._owner = owner
        self._saved = saved
        self._version = version
        self._layout = layout
        self.output = output
        self.state = state
        self.dropout_masks = dropout_masks

    def backward(self, grad_output: Any, grad_state: Any = None) -> Gradients:
        return self._owner._tape_backward(self, grad_output, grad_state)

    def __repr__(self) -> str:
        return f"Tape({type(self._owner).__name__}, output shape {np.shape(self.output)})"


class _Recurrent:
    """What layers and cells share: parameters owned as NumPy arrays, their upload to the compiled
    stack, state_dict / load_state_dict, and safe concurrent use.

    Weight ownership: the layer keeps one C-contiguous array per parameter (``_parameter_arrays()``,
    PyTorch names). The compiled stack keeps its own packed copy, refreshed before the next call after
    any change. Code that updates the arrays in place (an optimizer) must call ``_mark_weights_changed()``
    afterwards; ``load_state_dict`` does so itself.

    Concurrency: any number of calls may run at once (the kernels release the GIL). A re-upload waits
    until no call is using the stack, and calls wait while it runs.

    Copies (``copy.copy``, ``copy.deepcopy``, pickle) are independent models: their own parameter arrays,
    random generator (in the same state) and compiled stack.
    """

    _config: StackConfig
    _dtype: np.dtype
    _names: list[str]

    # -- construction ------------------------------------------------------------------------------

    def _init_parameters(self, config: StackConfig, dtype: Any, seed: Any) -> None:
        self._config = config
        self._dtype = v.check_dtype(dtype)
        self._rng = v.make_rng(seed)
        count = config.num_parameters()
        # The layer's arrays plus the compiled stack's packed copy, and each array's bookkeeping; checked
        # from closed forms, before anything is built per layer.
        v.check_allocation(
            2 * count * self._dtype.itemsize + config.num_arrays() * _BYTES_PER_ARRAY,
            lambda: f"{self._size_text()} with {count:,} parameters",
        )
        named_shapes = config.param_shapes()
        self._names = self._param_names([name for name, _ in named_shapes])
        bound = 1.0 / math.sqrt(config.hidden_size)
        params: dict[str, np.ndarray] = {}
        for name, (_, shape) in zip(self._names, named_shapes):
            # U(-1/sqrt(H), 1/sqrt(H)), PyTorch's default for every parameter.
            arr = self._rng.random(shape, dtype=self._dtype)
            arr *= 2 * bound
            arr -= bound
            params[name] = arr
        self._params = params
        self._setup_runtime()
        self._runtime.upload_if_idle()

    def _param_names(self, stack_names: list[str]) -> list[str]:
        """The parameters' names, given the stack's (``StackConfig.param_names()``, PyTorch's layer names)."""
        return stack_names

    def _size_text(self) -> str:
        """The constructor's size arguments, for the message that refuses them as too large."""
        c = self._config
        args = [f"input_size={c.input_size}", f"hidden_size={c.hidden_size}", f"num_layers={c.num_layers}"]
        if c.bidirectional:
            args.append("bidirectional=True")
        if c.proj_size:
            args.append(f"proj_size={c.proj_size}")
        if c.peephole:
            args.append("peephole=True")
        return f"{type(self).__name__}({', '.join(args)})"

    def _setup_runtime(self) -> None:
        weights = [self._params[name] for name in self._names]
        self._runtime = Runtime(self._config, self._dtype == np.float64, weights)

    @property
    def _stack(self) -> Any:
        """The compiled stack (``_core.Stack``)."""
        return self._runtime.stack

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_runtime", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup_runtime()

    # A copy is an independent model: its own parameter arrays, generator and compiled stack. A plain
    # shallow copy would share the arrays but not the compiled stack, so loading weights into one model
    # would change the other's state_dict and not its calls.

    def __copy__(self) -> _Recurrent:
        state = self.__getstate__()
        with self._runtime.lock:  # not torn by a concurrent load_state_dict
            state["_params"] = {name: arr.copy() for name, arr in self._params.items()}
        state["_rng"] = copy.deepcopy(self._rng)
        clone = type(self).__new__(type(self))
        clone.__setstate__(state)
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> _Recurrent:
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        # Through memo, arrays copied along with the model (an optimizer's references to its parameters)
        # stay the copy's parameters.
        with self._runtime.lock:
            state = copy.deepcopy(self.__getstate__(), memo)
        clone.__setstate__(state)
        return clone

    # -- weights -----------------------------------------------------------------------------------

    @property
    def dtype(self) -> np.dtype:
        """The dtype every computation of this model runs in (float32 or float64)."""
        return self._dtype

    @property
    def config(self) -> StackConfig:
        return self._config

    def _parameter_arrays(self) -> dict[str, np.ndarray]:
        """The live parameter arrays (not copies), for in-place updates; call ``_mark_weights_changed``
        after changing them."""
        return self._params

    def _mark_weights_changed(self) -> None:
        """Declare the parameter arrays changed: the compiled stack's copy is refreshed before the next
        call, and tapes recorded before now refuse to run backward."""
        self._runtime.mark_changed()

    def num_parameters(self) -> int:
        """The number of scalar parameters."""
        return sum(int(a.size) for a in self._params.values())

    def summary(self) -> str:
        """A table of every parameter's name, shape and number of values, then the total, e.g.::

            LSTM(32, 64)
            parameter       shape       count
            weight_ih_l0    (256, 32)   8,192
            ...
            total                       25,088

        Per layer and direction a cell with G gates (RNN 1, GRU 3, LSTM 4) has
        ``G*H*(I_k + H_out) + 2*G*H`` values (``I_k`` the layer's input size; biases only with bias=True),
        plus ``P*H`` with an LSTM projection and ``3*H`` with peepholes: an LSTM holds 4 times as many as
        a vanilla RNN of the same sizes and a GRU 3 times.
        """
        rows = [(name, str(tuple(arr.shape)), f"{arr.size:,}") for name, arr in self._params.items()]
        rows.append(("total", "", f"{self.num_parameters():,}"))
        header = ("parameter", "shape", "count")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
        lines = [repr(self)]
        for r in [header, *rows]:
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}".rstrip())
        return "\n".join(lines)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, with PyTorch's names, shapes and order."""
        with self._runtime.lock:
            return {name: arr.copy() for name, arr in self._params.items()}

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, *, prefix: str = ""
    ) -> IncompatibleKeys:
        """Set the parameters from a mapping of name -> array (NumPy arrays or torch tensors, any real
        dtype, any memory layout; converted to this model's dtype).

        strict=True: every parameter must be present and no other key. strict=False: missing names keep
        their value, unknown ones are ignored. prefix: only the keys that start with it are read, without
        it (``prefix="rnn."`` loads this layer out of a whole model's state_dict). A misshapen or
        non-numeric value always raises. Atomic: everything is checked before anything changes, so on
        error the model is unchanged. Returns ``(missing_keys, unexpected_keys)``, as torch does.
        """
        strict = v.check_bool("strict", strict)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {v.describe(prefix)}")
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict must be a mapping of parameter name -> array, got {v.describe(state_dict)}"
            )
        if prefix:
            inside = [k for k in state_dict if isinstance(k, str) and k.startswith(prefix)]
            state_dict = {k[len(prefix) :]: state_dict[k] for k in inside}
        expected = {name: arr.shape for name, arr in self._params.items()}
        keys = list(state_dict.keys())
        missing = [name for name in expected if name not in state_dict]
        unexpected = [k for k in keys if k not in expected]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing {', '.join(repr(prefix + name) for name in missing)}")
            if unexpected:
                names = [repr(prefix + k) if prefix else repr(k) for k in unexpected]
                parts.append(f"unexpected {', '.join(names)}")
            under = f" (keys under prefix {prefix!r})" if prefix else ""
            raise ValueError(
                f"state_dict{under} does not match {type(self).__name__}'s parameters: {'; '.join(parts)} "
                f"(expected exactly {', '.join(expected)})"
            )
        staged: dict[str, np.ndarray] = {}
        for name in expected:
            if name not in state_dict:
                continue
            arr = v.as_real_array(f"state_dict[{name!r}]", state_dict[name])
            v.check_shape(f"state_dict[{name!r}]", arr, expected[name])
            staged[name] = v.convert(arr, self._dtype)
        with self._runtime.changing():
            for name, arr in staged.items():
                np.copyto(self._params[name], arr)
        self._runtime.upload_if_idle()
        return IncompatibleKeys(missing, unexpected)

    # -- calling the compiled stack ----------------------------------------------------------------

    def _check_tape(self, tape: Tape) -> None:
        if tape._owner is not self:
            raise ValueError("this tape was recorded by another model")
        if tape._version != self._runtime.version:
            raise RuntimeError(
                f"{type(self).__name__}'s weights changed after this tape was recorded "
                "(load_state_dict or an in-place update): record again"
            )

    def _tape_backward(self, tape: Tape, grad_output: Any, grad_state: Any) -> Gradients:
        raise NotImplementedError


class _Layout:
    """How a call's arrays map onto the kernels' time-major batched ones."""

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

    def state_in(self, s: np.ndarray | None) -> np.ndarray | None:
        if s is None or not self.unbatched:
            return s
        return s[:, None, :]


class RNNBase(_Recurrent):
    """The machinery shared by RNN, LSTM and GRU; use those.

    mode: PyTorch's names, "RNN_TANH", "RNN_RELU", "LSTM" or "GRU".
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        linear_before_reset: bool = True,
        residual: bool = False,
        peephole: bool = False,
        clip: float = 0.0,
        input_forget: bool = False,
        gate_activation: str = "sigmoid",
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        cells = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "LSTM": "lstm", "GRU": "gru"}
        v.check_choice("mode", mode, list(cells))
        self.mode = mode
        self.input_size = v.check_int("input_size", input_size, 1)
        self.hidden_size = v.check_int("hidden_size", hidden_size, 1)
        self.num_layers = v.check_int("num_layers", num_layers, 1)
        self.bias = v.check_bool("bias", bias)
        self.batch_first = v.check_bool("batch_first", batch_first)
        self.dropout = v.check_dropout(dropout)
        self.bidirectional = v.check_bool("bidirectional", bidirectional)
        self.proj_size = v.check_int("proj_size", proj_size, 0)
        if self.proj_size and mode != "LSTM":
            raise ValueError(
                f"proj_size is only supported by LSTM, got proj_size={self.proj_size} for {mode}"
            )
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size={self.hidden_size} (0 for no projection), "
                f"got {self.proj_size}"
            )
        lbr = v.check_bool("linear_before_reset", linear_before_reset)
        self.residual = v.check_bool("residual", residual)
        peephole = v.check_bool("peephole", peephole)
        input_forget = v.check_bool("input_forget", input_forget)
        if isinstance(clip, bool) or not isinstance(clip, (int, float, np.integer, np.floating)):
            raise TypeError(f"clip: expected a number >= 0 (0 for none), got {v.describe(clip)}")
        clip = float(clip)
        if not clip >= 0 or math.isinf(clip):
            raise ValueError(f"clip: expected a finite number >= 0 (0 for none), got {clip}")
        if mode != "LSTM" and (peephole or input_forget or clip):
            raise ValueError(f"peephole, clip, input_forget: LSTM options, got them for {mode}")
        v.check_choice("gate_activation", gate_activation, list(GATE_ACTIVATIONS))
        hard_gates = gate_activation == "hard_sigmoid"
        if hard_gates and mode not in ("LSTM", "GRU"):
            raise ValueError(f"gate_activation='hard_sigmoid': an LSTM and GRU option, got it for {mode}")
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout applies between recurrent layers, never after the last one, so dropout="
                f"{self.dropout} with num_layers=1 has no effect",
                UserWarning,
                stacklevel=3,
            )
        config = StackConfig(
            cells[mode],
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bias,
            self.bidirectional,
            self.proj_size,
            lbr,
            self.residual,
            peephole,
            clip,
            input_forget,
            hard_gates,
        )
        self._init_parameters(config, dtype, seed)

    @property
    def num_directions(self) -> int:
        return self._config.num_directions

    @property
    def _has_cell_state(self) -> bool:
        return self._config.has_cell_state

    def __repr__(self) -> str:
        args = [str(self.input_size), str(self.hidden_size)]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        if self.mode == "RNN_RELU":
            args.append("nonlinearity='relu'")
        if not self.bias:
            args.append("bias=False")
        if self.batch_first:
            args.append("batch_first=True")
        if self.dropout:
            args.append(f"dropout={self.dropout}")
        if self.bidirectional:
            args.append("bidirectional=True")
        if self.proj_size:
            args.append(f"proj_size={self.proj_size}")
        if self.mode == "GRU" and not self._config.linear_before_reset:
            args.append("linear_before_reset=False")
        for option in ("residual", "peephole", "input_forget"):
            if getattr(self._config, option):
                args.append(f"{option}=True")
        if self._config.clip:
            args.append(f"clip={self._config.clip}")
        if self._config.hard_gates:
            args.append("gate_activation='hard_sigmoid'")
        if getattr(self, "forget_bias", 0.0):
            args.append(f"forget_bias={self.forget_bias}")
        if self._dtype != np.float32:
            args.append(f"dtype={self._dtype}")
        return f"{type(self).__name__}({', '.join(args)})"

    # -- argument handling -------------------------------------------------------------------------

    def _prepare(
        self, x: Any, state: Any, lengths: Any, state_name: str, training: bool = False
    ) -> tuple[Any, ...]:
        """Validate and convert a call's arguments to the kernels' arrays:
        (x (T, N, I), h0 (D*L, N, H_out) or None, c0 (D*L, N, H) or None, lengths (N,) int64 or None,
        layout)."""
        dtype = self._dtype
        arr = v.as_real_array("x", x)
        order = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
        if arr.ndim not in (2, 3):
            raise ValueError(
                f"x must be a 3-D array {order} or a 2-D array (T, input_size) for one unbatched sequence, "
                f"got a {arr.ndim}-D array of shape {tuple(arr.shape)}"
            )
        if arr.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have input_size={self.input_size} features in its last dimension, "
                f"got shape {tuple(arr.shape)}"
            )
        unbatched = arr.ndim == 2
        if unbatched:
            steps, batch = arr.shape[0], 1
        elif self.batch_first:
            batch, steps = arr.shape[0], arr.shape[1]
        else:
            steps, batch = arr.shape[0], arr.shape[1]
        if steps < 1 or batch < 1:
            raise ValueError(
                f"x must hold at least one time step and one sequence, got shape {tuple(arr.shape)}"
            )
        v.check_allocation(
            self._call_bytes(steps, batch, training, dtype),
            lambda: f"{'record' if training else 'a call'} on x of shape {tuple(arr.shape)}",
        )
        layout = _Layout(self.batch_first, unbatched, steps, batch)
        x_tm = v.convert(layout.seq_in(arr), dtype)

        h0_arr = c0_arr = None
        if self._has_cell_state:
            if state is not None:
                if not isinstance(state, (tuple, list)) or len(state) != 2:
                    raise TypeError(
                        f"{state_name} must be a tuple (h0, c0) for an LSTM (or None), "
                        f"got {v.describe(state)}"
                    )
                h0_arr = self._state_array(f"{state_name}[0] (h0)", state[0], layout, self._h_shape(layout))
                c0_arr = self._state_array(f"{state_name}[1] (c0)", state[1], layout, self._c_shape(layout))
        elif state is not None:
            if isinstance(state, tuple):
                raise TypeError(
                    f"{state_name} must be one array h0 for {type(self).__name__} (not a tuple), "
                    f"got {v.describe(state)}"
                )
            h0_arr = self._state_array(state_name, state, layout, self._h_shape(layout))
        lens = v.as_lengths(lengths, batch, steps, unbatched)
        return x_tm, h0_arr, c0_arr, lens, layout

    def _call_bytes(self, steps: int, batch: int, training: bool, dtype: np.dtype) -> int:
        """What a forward call allocates, its big arrays counted (every one proportional to T*N)."""
        c = self._config
        D, H, H_out, GH = c.num_directions, c.hidden_size, c.output_size, c.gates * c.hidden_size
        # x in the kernels' layout, y, and the outputs of the inner layers (two, used in turn)
        per_row = c.input_size + D * H_out + (min(2, c.num_layers - 1) * D * H_out if not training else 0)
        if training:
            # the tape: every layer's input, and per layer and direction the gates (LSTM with clipping:
            # their inputs too; GRU linear_before_reset: U_n h + b_hn too), h and c entering every step;
            # the dropout masks
            saved_gates = c.gates
            if c.cell == "lstm" and c.clip > 0:
                saved_gates *= 2
            elif c.cell == "gru" and c.linear_before_reset:
                saved_gates += 1
            per_row += c.input_size + (c.num_layers - 1) * D * H_out
            per_row += c.num_layers * D * (saved_gates * H + H_out + (H if self._has_cell_state else 0))
            if self.dropout:
                per_row += (c.num_layers - 1) * D * H_out
        # each direction's input projection: of every step when that is small, else of blocks of steps
        # (layer.hpp, kProjectionBytes)
        projection_row = batch * GH * dtype.itemsize
        if steps * projection_row <= _PROJECTION_BYTES:
            projected_steps = steps
        else:
            projected_steps = max(1, _PROJECTION_BYTES // projection_row)
        return steps * batch * per_row * dtype.itemsize + D * projected_steps * projection_row

    def _backward_bytes(self, steps: int, batch: int) -> int:
        """What backward allocates: dx, and per direction the gradients wrt the gates (twice for the
        cells with a separate recurrent gradient) and the outputs between layers."""
        c = self._config
        D, GH, H_out = c.num_directions, c.gates * c.hidden_size, c.output_size
        per_row = c.input_size + D * 2 * GH + (2 * D * H_out if c.num_layers > 1 else 0)
        if D == 2:
            per_row += max(c.input_size, D * H_out)  # the reverse direction's share of dx
        return steps * batch * per_row * self._dtype.itemsize

    def _h_shape(self, layout: _Layout) -> tuple[int, ...]:
        c = self._config
        lead = c.num_layers * c.num_directions
        return (lead, c.output_size) if layout.unbatched else (lead, layout.batch, c.output_size)

    def _c_shape(self, layout: _Layout) -> tuple[int, ...]:
        c = self._config
        lead = c.num_layers * c.num_directions
        return (lead, c.hidden_size) if layout.unbatched else (lead, layout.batch, c.hidden_size)

    def _state_array(
        self, name: str, value: Any, layout: _Layout, shape: tuple[int, ...]
    ) -> np.ndarray | None:
        if value is None:
            return None
        arr = v.as_real_array(name, value)
        meaning = "(num_layers*num_directions, " + ("" if layout.unbatched else "N, ") + "features)"
        v.check_shape(name, arr, shape, meaning)
        return v.convert(layout.state_in(arr), self._dtype)

    def _public_state(self, h: np.ndarray, c: np.ndarray | None, layout: _Layout) -> Any:
        h_out = layout.state_out(h)
        if self._has_cell_state:
            return h_out, layout.state_out(c)
        return h_out

    # -- running -----------------------------------------------------------------------------------

    def _forward(self, x: Any, state: Any, lengths: Any, state_name: str) -> tuple[np.ndarray, Any]:
        x_tm, h0, c0, lens, layout = self._prepare(x, state, lengths, state_name)
        runtime = self._runtime
        runtime.begin_call()
        try:
            y, h, c = runtime.stack.forward(x_tm, h0, c0, lens)
        finally:
            runtime.end_call()
        return layout.seq_out(y), self._public_state(h, c, layout)

    def _draw_dropout_masks(self, steps: int, batch: int) -> list[np.ndarray] | None:
        c = self._config
        if self.dropout == 0.0 or c.num_layers == 1:
            return None
        shape = (steps, batch, c.num_directions * c.output_size)
        scale = self._dtype.type(1.0 / (1.0 - self.dropout))
        masks = []
        for _ in range(c.num_layers - 1):
            keep = self._rng.random(shape, dtype=self._dtype) >= self.dropout
            mask = keep.astype(self._dtype)
            mask *= scale
            masks.append(mask)
        return masks

    def record(self, x: Any, state: Any = None, lengths: Any = None) -> Tape:
        """The forward pass of a call, keeping what ``Tape.backward`` needs. Dropout (p = ``dropout``,
        between layers) applies here, with masks drawn from the model's generator (``Tape.dropout_masks``).
        Arguments as for a call; ``tape.output`` and ``tape.state`` are what the call returns."""
        x_tm, h0, c0, lens, layout = self._prepare(x, state, lengths, "state", training=True)
        runtime = self._runtime
        with runtime.lock:
            masks = self._draw_dropout_masks(layout.steps, layout.batch)
        version = runtime.begin_call()
        try:
            y, h, c, saved = runtime.stack.forward_train(x_tm, h0, c0, lens, masks)
        finally:
            runtime.end_call()
        return Tape(self, saved, version, layout.seq_out(y), self._public_state(h, c, layout), masks, layout)

    def stream(self, batch_size: int | None = None, state: Any = None) -> Stream:
        """A stateful stream that runs this layer one time step at a time (``fusedrnn.stream.Stream``).

        ``y_t = s.step(x_t)`` with x_t (batch_size, I), or (I,) when batch_size is None, gives y_t
        (batch_size, H_out) / (H_out,): step t of what one call over the whole sequence gives, the state
        carried from step to step (``s.state``, in the layout of the call's, zeros or ``state`` at first
        and after ``s.reset()``). Inference only (no dropout). A bidirectional layer cannot stream: its
        reverse direction starts at the end of the sequence.
        """
        from .stream import Stream

        return Stream(self, batch_size, state)

    def _tape_backward(self, tape: Tape, grad_output: Any, grad_state: Any) -> Gradients:
        self._check_tape(tape)
        layout: _Layout = tape._layout
        dtype = self._dtype
        gy = v.as_real_array("grad_output", grad_output)
        v.check_shape("grad_output", gy, np.shape(tape.output), "(the shape of tape.output)")
        gy_tm = v.convert(layout.seq_in(gy), dtype)
        gh = gc = None
        if self._has_cell_state:
            h_n, c_n = tape.state
            if grad_state is not None:
                if not isinstance(grad_state, (tuple, list)) or len(grad_state) != 2:
                    raise TypeError(
                        "grad_state must be a tuple (grad_h_n, grad_c_n) for an LSTM (either may be None), "
                        f"got {v.describe(grad_state)}"
                    )
                gh = self._grad_state_array("grad_state[0]", grad_state[0], h_n.shape, layout)
                gc = self._grad_state_array("grad_state[1]", grad_state[1], c_n.shape, layout)
        elif grad_state is not None:
            if isinstance(grad_state, tuple):
                raise TypeError(
                    f"grad_state must be one array for {type(self).__name__} (not a tuple), "
                    f"got {v.describe(grad_state)}"
                )
            gh = self._grad_state_array("grad_state", grad_state, tape.state.shape, layout)
        steps, batch = gy_tm.shape[0], gy_tm.shape[1]
        v.check_allocation(
            self._backward_bytes(steps, batch),
            lambda: f"backward of a tape of {steps} steps and {batch} sequences",
        )
        runtime = self._runtime
        runtime.begin_call()
        try:
            self._check_tape(tape)
            gx, gh0, gc0, grads = runtime.stack.backward(tape._saved, gy_tm, gh, gc)
        finally:
            runtime.end_call()
        params = dict(zip(self._names, grads))
        return Gradients(layout.seq_out(gx), self._public_state(gh0, gc0, layout), params)

    def _grad_state_array(
        self, name: str, value: Any, shape: tuple[int, ...], layout: _Layout
    ) -> np.ndarray | None:
        if value is None:
            return None
        arr = v.as_real_array(name, value)
        v.check_shape(name, arr, shape, "(the shape of the state the tape returned)")
        return v.convert(layout.state_in(arr), self._dtype)


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, act = tanh or relu.

    ``rnn(x, h0=None, lengths=None) -> (y, h_n)``; see the module docstring for shapes.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        residual: bool = False,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        v.check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        self.nonlinearity = nonlinearity
        super().__init__(
            "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            residual=residual,
            dtype=dtype,
            seed=seed,
        )

    def __call__(self, x: Any, h0: Any = None, lengths: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """y, h_n = rnn(x, h0=None, lengths=None): x (T, N, I) / (N, T, I) batch_first / (T, I);
        h0 (D*L, N, H) or None (zeros); y (T, N, D*H); h_n (D*L, N, H)."""
        return self._forward(x, h0, lengths, "h0")


class LSTM(RNNBase):
    """Long short-term memory, optionally with a projection (``proj_size``, PyTorch's form).

    ``lstm(x, state=None, lengths=None) -> (y, (h_n, c_n))``; state is ``(h0, c0)`` or None.
    Beyond PyTorch (ONNX's LSTM): ``peephole=True`` adds ``weight_ph_l{k}`` (3H: p_i, p_f, p_o) with
    ``i = σ(... + p_i c_prev)``, ``f = σ(... + p_f c_prev)``, ``o = σ(... + p_o c_t)``; ``clip`` > 0 bounds
    every gate's activation input to [-clip, clip]; ``input_forget=True`` couples ``f = 1 - i``.
    ``residual=True``: each layer after the first adds its input to its output.
    ``gate_activation="hard_sigmoid"``: i, f and o use Keras 3's hard sigmoid ``clip(a / 6 + 1/2, 0, 1)``
    instead of the logistic function (Keras' ``recurrent_activation``).

    ``forget_bias=b`` (initialization only, as Keras' ``unit_forget_bias``): b is added to the forget
    gate's block of every ``bias_ih_l{k}[_reverse]`` (rows H:2H) after the default initialization, so the
    forget gate's total bias ``b_if + b_hf`` starts near b and f = σ(b + ...) near 1 for b = 1 or 2: the
    cell state, and the gradient through it, then decays slowly over time. ``bias_hh`` is left alone
    (a PyTorch model has two biases; only their sum matters). Needs bias=True and not input_forget.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        residual: bool = False,
        peephole: bool = False,
        clip: float = 0.0,
        input_forget: bool = False,
        gate_activation: str = "sigmoid",
        forget_bias: float = 0.0,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        number = (int, float, np.integer, np.floating)
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, number):
            raise TypeError(f"forget_bias must be a number, got {v.describe(forget_bias)}")
        forget_bias = float(forget_bias)
        if not math.isfinite(forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {forget_bias}")
        self.forget_bias = forget_bias
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            residual=residual,
            peephole=peephole,
            clip=clip,
            input_forget=input_forget,
            gate_activation=gate_activation,
            dtype=dtype,
            seed=seed,
        )
        if forget_bias and not self.bias:
            raise ValueError(
                f"forget_bias={forget_bias} needs bias=True (it initializes the forget gate's bias)"
            )
        if forget_bias and self._config.input_forget:
            raise ValueError(
                f"forget_bias={forget_bias} has no effect with input_forget=True (the forget gate is 1 - i)"
            )
        if forget_bias:
            c, h = self._config, self.hidden_size
            for layer in range(c.num_layers):
                for direction in range(c.num_directions):
                    name = c.layer_param_names(layer, direction)["bias_ih"]
                    self._params[name][h : 2 * h] += self._dtype.type(forget_bias)
            self._mark_weights_changed()
            self._runtime.upload_if_idle()

    def __call__(
        self, x: Any, state: Any = None, lengths: Any = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """y, (h_n, c_n) = lstm(x, (h0, c0)=None, lengths=None): x (T, N, I) / (N, T, I) / (T, I);
        h0 (D*L, N, H_out), c0 (D*L, N, H) (None or either one None: zeros); y (T, N, D*H_out)."""
        return self._forward(x, state, lengths, "state")


class GRU(RNNBase):
    """Gated recurrent unit. ``linear_before_reset=True`` is PyTorch's (and cuDNN's, Keras
    reset_after=True) form; False is the reset-before form (ONNX's default, Keras reset_after=False).

    ``gru(x, h0=None, lengths=None) -> (y, h_n)``. ``gate_activation="hard_sigmoid"``: r and z use Keras
    3's hard sigmoid ``clip(a / 6 + 1/2, 0, 1)`` instead of the logistic function (Keras'
    ``recurrent_activation``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        linear_before_reset: bool = True,
        residual: bool = False,
        gate_activation: str = "sigmoid",
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        super().__init__(
            "GRU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            linear_before_reset=linear_before_reset,
            residual=residual,
            gate_activation=gate_activation,
            dtype=dtype,
            seed=seed,
        )

    @property
    def linear_before_reset(self) -> bool:
        return self._config.linear_before_reset

    def __call__(self, x: Any, h0: Any = None, lengths: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """y, h_n = gru(x, h0=None, lengths=None): shapes as RNN's."""
        return self._forward(x, h0, lengths, "h0")
