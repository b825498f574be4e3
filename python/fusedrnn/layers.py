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

import math
import warnings
from typing import Any

import numpy as np

from . import _validation as v
from ._cells import CELL_KINDS, cell_kind_from_torch_class, cell_kind_from_torch_mode
from ._config import StackConfig
from ._model import IncompatibleKeys, _Recurrent
from ._state import SequenceLayout
from ._tape import Gradients, Tape
from .stream import Stream

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "Tape", "Gradients", "IncompatibleKeys"]

# The gates' activation of LSTM and GRU: the logistic function, or Keras 3's hard sigmoid
# relu6(a + 3) / 6 = clip(a / 6 + 1/2, 0, 1) (derivative 1/6 where it is not saturated).
GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")

# The kernels' buffer for the input projection, at most (cpp/fusedrnn/layer.hpp, kProjectionBytes).
_PROJECTION_BYTES = 8 << 20


class RNNBase(_Recurrent):
    """The machinery shared by RNN, LSTM and GRU; use those.

    mode: PyTorch's names, "RNN_TANH", "RNN_RELU", "LSTM" or "GRU".
    """

    _pair_kind = "an LSTM"
    _state_labels = ("h0", "c0")
    _gradient_labels = ("grad_h_n", "grad_c_n")
    _fixed_attributes = _Recurrent._fixed_attributes | {
        "mode",
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "proj_size",
        "residual",
        "nonlinearity",
        "forget_bias",
        "linear_before_reset",
        "num_directions",
    }

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
        v.check_choice("mode", mode, [kind.torch_mode for kind in CELL_KINDS.values()])
        kind = cell_kind_from_torch_mode(mode)
        self.mode = mode
        self.input_size = v.check_int("input_size", input_size, 1)
        self.hidden_size = v.check_int("hidden_size", hidden_size, 1)
        self.num_layers = v.check_int("num_layers", num_layers, 1)
        self.bias = v.check_bool("bias", bias)
        self.batch_first = v.check_bool("batch_first", batch_first)
        self.dropout = v.check_dropout(dropout)
        self.bidirectional = v.check_bool("bidirectional", bidirectional)
        self.proj_size = v.check_int("proj_size", proj_size, 0)
        if self.proj_size and "proj_size" not in kind.options:
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
        given = {"peephole": peephole, "input_forget": input_forget, "clip": clip}
        if any(value and option not in kind.options for option, value in given.items()):
            raise ValueError(f"peephole, clip, input_forget: LSTM options, got them for {mode}")
        v.check_choice("gate_activation", gate_activation, list(GATE_ACTIVATIONS))
        hard_gates = gate_activation == "hard_sigmoid"
        if hard_gates and "hard_gates" not in kind.options:
            raise ValueError(f"gate_activation='hard_sigmoid': an LSTM and GRU option, got it for {mode}")
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout applies between recurrent layers, never after the last one, so dropout="
                f"{self.dropout} with num_layers=1 has no effect",
                UserWarning,
                stacklevel=3,
            )
        config = StackConfig(
            kind.name,
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

    def __repr__(self) -> str:
        args = [str(self.input_size), str(self.hidden_size)]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        if self._config.kind.nonlinearity == "relu":
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
        if "linear_before_reset" in self._config.kind.options and not self._config.linear_before_reset:
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
        layout = SequenceLayout(self.batch_first, unbatched, steps, batch)
        x_tm = v.convert(layout.seq_in(arr), dtype)

        h0_arr, c0_arr = self._state_arrays(state_name, state, layout)
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
            if c.uses("clip"):
                saved_gates *= 2
            elif c.uses("linear_before_reset"):
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

    def _check_backward_memory(self, steps: int, batch: int) -> None:
        v.check_allocation(
            self._backward_bytes(steps, batch),
            lambda: f"backward of a tape of {steps} steps and {batch} sequences",
        )

    def _state_shapes(self, layout: SequenceLayout) -> tuple[tuple[int, ...], tuple[int, ...]]:
        c = self._config
        lead = c.num_layers * c.num_directions
        if layout.unbatched:
            return (lead, c.output_size), (lead, c.hidden_size)
        return (lead, layout.batch, c.output_size), (lead, layout.batch, c.hidden_size)

    def _state_meaning(self, layout: SequenceLayout, gradient: bool) -> str:
        if gradient:
            return "(the shape of the state the tape returned)"
        return "(num_layers*num_directions, " + ("" if layout.unbatched else "N, ") + "features)"

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
        return Stream(self, batch_size, state)


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
            cell_kind_from_torch_class("RNN", nonlinearity).torch_mode,
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
