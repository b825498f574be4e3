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

With ``clip`` > 0 (ONNX's, every cell) the input of each gate's activation above (sig, tanh, act; not the
LSTM's tanh(c_t)) is clipped to [-clip, clip] first.

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


def _check_layer_norm_companions(mode: str, options: frozenset[str], given: dict[str, Any]) -> None:
    """ValueError when layer_norm=True comes with an option the layer-normalized cells lack (``given``:
    each option's value, true when set; linear_before_reset as "the reset-before form is asked for")."""
    if "layer_norm" not in options:
        raise ValueError(f"layer_norm=True: an LSTM and GRU option, got it for {mode}")
    refused = [name for name, value in given.items() if value]
    if refused:
        shown = ["linear_before_reset=False" if name == "linear_before_reset" else name for name in refused]
        raise ValueError(
            f"layer_norm=True does not combine with {', '.join(shown)} (the layer-normalized {mode} takes "
            "gate_activation, and the GRU only its linear-before-reset form)"
        )


class RNNBase(_Recurrent):
    """The machinery shared by :class:`RNN`, :class:`LSTM` and :class:`GRU`: build those rather than this.

    The subclasses' pages give the equations, parameters and shapes; the methods documented here
    (``record``, ``stream``, ``state_dict``, ``load_state_dict``, ``parameters``, ...) are theirs.

    ``RNNBase(mode, input_size, hidden_size, ...)`` takes the cell as ``mode``, by PyTorch's names
    (``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"``), then the arguments of :class:`LSTM`
    (``input_size``, ``hidden_size``, ``num_layers``, ``bias``, ``batch_first``, ``dropout``,
    ``bidirectional``, ``proj_size``) and the options of the three (``linear_before_reset``, ``residual``,
    ``peephole``, ``clip``, ``input_forget``, ``gate_activation``, ``layer_norm``, ``zoneout``,
    ``recurrent_dropout``, ``dtype``, ``seed``), each refused by a cell that does not take it.

    The constructor's arguments are the layer's attributes (``lstm.hidden_size``, ...), read-only:
    assigning one raises AttributeError (build a new layer and ``load_state_dict`` the weights that
    still fit).
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
        "recurrent_dropout",
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
        layer_norm: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
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
        self.recurrent_dropout = v.check_probability("recurrent_dropout", recurrent_dropout)
        zoneout = v.check_probability("zoneout", zoneout)
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
        if zoneout and self.proj_size:
            raise ValueError(
                f"zoneout={zoneout} does not combine with proj_size={self.proj_size} (the projected h has "
                "no previous value per unit)"
            )
        if self.recurrent_dropout and "linear_before_reset" in kind.options and not lbr:
            raise ValueError(
                f"recurrent_dropout={self.recurrent_dropout} is not supported by the reset-before GRU "
                "(linear_before_reset=False)"
            )
        self.residual = v.check_bool("residual", residual)
        peephole = v.check_bool("peephole", peephole)
        input_forget = v.check_bool("input_forget", input_forget)
        clip = v.check_clip(clip)
        given = {"peephole": peephole, "input_forget": input_forget, "clip": clip}
        refused = [f"{name}={value}" for name, value in given.items() if value and name not in kind.options]
        if refused:
            raise ValueError(f"{', '.join(refused)}: options of the LSTM only, given for {mode}")
        v.check_choice("gate_activation", gate_activation, list(GATE_ACTIVATIONS))
        hard_gates = gate_activation == "hard_sigmoid"
        if hard_gates and "hard_gates" not in kind.options:
            raise ValueError(f"gate_activation='hard_sigmoid': an LSTM and GRU option, got it for {mode}")
        layer_norm = v.check_bool("layer_norm", layer_norm)
        if layer_norm:
            _check_layer_norm_companions(
                mode,
                kind.options,
                {
                    "proj_size": self.proj_size,
                    "peephole": peephole,
                    "clip": clip,
                    "input_forget": input_forget,
                    "linear_before_reset": not lbr,
                },
            )
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
            layer_norm,
            zoneout,
        )
        self._init_parameters(config, dtype, seed)

    @property
    def num_directions(self) -> int:
        """2 for a bidirectional layer, else 1 (D in the shapes)."""
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
        if self._config.layer_norm:
            args.append("layer_norm=True")
        if self._config.zoneout:
            args.append(f"zoneout={self._config.zoneout}")
        if self.recurrent_dropout:
            args.append(f"recurrent_dropout={self.recurrent_dropout}")
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
            # the tape: every layer's input, and per layer and direction the gates (GRU
            # linear_before_reset: U_n h + b_hn too; with clipping: the activations' inputs too), h and
            # c entering every step; the dropout masks. The layer-normalized cells also keep both raw
            # products (cpp/fusedrnn/cells/layer_norm_*.hpp).
            saved_gates = c.gates * (3 if c.layer_norm else 1)
            if c.uses("linear_before_reset"):
                saved_gates += 1
            if c.uses("clip"):
                saved_gates += c.gates
            per_row += c.input_size + (c.num_layers - 1) * D * H_out
            per_row += c.num_layers * D * (saved_gates * H + H_out + (H if self._has_cell_state else 0))
            if self.dropout:
                per_row += (c.num_layers - 1) * D * H_out
            if c.zoneout:  # zoneout's factors for h (and c), drawn here and copied into the tape
                per_row += 2 * c.num_layers * D * (2 if self._has_cell_state else 1) * H
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

    def _draw_recurrent_masks(self, batch: int) -> list[np.ndarray] | None:
        """Recurrent dropout: one mask per layer-direction and sequence, for every step."""
        c, p = self._config, self.recurrent_dropout
        if p == 0.0:
            return None
        scale = self._dtype.type(1.0 / (1.0 - p))
        masks = []
        for _ in range(c.num_layers * c.num_directions):
            mask = (self._rng.random((batch, c.output_size), dtype=self._dtype) >= p).astype(self._dtype)
            mask *= scale
            masks.append(mask)
        return masks

    def _draw_zoneout_masks(self, steps: int, batch: int) -> list[np.ndarray] | None:
        """Zoneout: per layer-direction, step, sequence and unit (h's, then c's), 1 where the unit takes
        its new value (probability 1 - p) and 0 where it keeps its previous one."""
        c = self._config
        if c.zoneout == 0.0:
            return None
        width = (2 if c.has_cell_state else 1) * c.hidden_size
        return [
            (self._rng.random((steps, batch, width), dtype=self._dtype) >= c.zoneout).astype(self._dtype)
            for _ in range(c.num_layers * c.num_directions)
        ]

    def record(self, x: Any, state: Any = None, lengths: Any = None) -> Tape:
        """The forward pass of a call that keeps what :meth:`Tape.backward <fusedrnn.Tape.backward>` needs.

        Dropout (p = ``dropout``, between layers) applies here, and only here, with masks drawn from the
        layer's random generator (``tape.dropout_masks``); so do recurrent dropout
        (``tape.recurrent_masks``) and zoneout's random choices (``tape.zoneout_masks``).

        Parameters
        ----------
        x : array_like
            The input sequence, as for a call.
        state : optional
            The initial state, as for a call: ``h_0``, or ``(h_0, c_0)`` for an LSTM; None for zeros.
        lengths : array_like, optional
            (N,) the sequences' lengths, as for a call; None: all T.

        Returns
        -------
        Tape
            ``tape.output`` and ``tape.state`` are what the call returns (``y`` and ``h_n``, or
            ``(h_n, c_n)``); ``tape.backward(grad_output, grad_state=None)`` returns the gradients.
        """
        x_tm, h0, c0, lens, layout = self._prepare(x, state, lengths, "state", training=True)
        runtime = self._runtime
        with runtime.lock:
            masks = self._draw_dropout_masks(layout.steps, layout.batch)
            recurrent_masks = self._draw_recurrent_masks(layout.batch)
            zoneout_masks = self._draw_zoneout_masks(layout.steps, layout.batch)
        version = runtime.begin_call()
        try:
            y, h, c, saved = runtime.stack.forward_train(
                x_tm, h0, c0, lens, masks, recurrent_masks, zoneout_masks
            )
        finally:
            runtime.end_call()
        tape = Tape(self, saved, version, layout.seq_out(y), self._public_state(h, c, layout), masks, layout)
        tape.recurrent_masks = recurrent_masks
        tape.zoneout_masks = zoneout_masks
        return tape

    def stream(self, batch_size: int | None = None, state: Any = None) -> Stream:
        """A stateful stream that runs this layer one time step at a time.

        ``y_t = s.step(x_t)`` with x_t (batch_size, I), or (I,) when batch_size is None, gives y_t
        (batch_size, H_out) / (H_out,): step t of what one call over the whole sequence gives, the state
        carried from step to step (``s.state``, in the layout of the call's, zeros or ``state`` at first
        and after ``s.reset()``). Inference only (no dropout). A bidirectional layer cannot stream: its
        reverse direction starts at the end of the sequence.

        Parameters
        ----------
        batch_size : int or None
            N, the number of sequences stepped together; None for one unbatched sequence.
        state : optional
            The initial state, as a call of the layer accepts it for this batch size (zeros if None).

        Returns
        -------
        fusedrnn.stream.Stream
        """
        return Stream(self, batch_size, state)


class RNN(RNNBase):
    r"""A multi-layer Elman RNN with a tanh or ReLU nonlinearity: PyTorch's ``torch.nn.RNN`` on NumPy
    arrays.

    ``y, h_n = rnn(x, h_0=None, lengths=None)``. For each step t of the input sequence, each layer
    computes

    .. math::

        h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    or, with ``nonlinearity="relu"``, :math:`h_t = \max(0,\ W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`,
    where :math:`x_t` is the layer's input at step t, :math:`h_{t-1}` its state before the step (the
    initial state ``h_0`` at t = 0), :math:`W_{ih}` = ``weight_ih_l{k}``, :math:`W_{hh}` =
    ``weight_hh_l{k}``, :math:`b_{ih}` = ``bias_ih_l{k}``, :math:`b_{hh}` = ``bias_hh_l{k}`` (zero with
    ``bias=False``).

    ``clip`` = :math:`\kappa` > 0 (ONNX's ``clip``, as ONNX Runtime computes it) bounds the activation's
    input :math:`a_t = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}` first, with either nonlinearity:

    .. math::

        h_t = \tanh(\operatorname{clip}(a_t, -\kappa, \kappa)) \quad \text{or} \quad
        h_t = \max(0,\ \operatorname{clip}(a_t, -\kappa, \kappa)), \qquad
        \operatorname{clip}(a, l, u) = \min(\max(a, l), u)

    Its gradient is zero where the clip bounds :math:`a_t` (:math:`|a_t| \ge \kappa`).

    ``zoneout`` = p (Krueger et al.) lets each unit keep its previous state with probability p. In
    :meth:`record` a factor :math:`k_t \in \{0, 1\}` is drawn per step, sequence and unit (1, "take the
    new value", with probability 1 - p; ``tape.zoneout_masks``); a call uses its expectation
    :math:`k = 1 - p`. With :math:`\tilde h_t` the new state the equations above give,

    .. math::

        h_t = h_{t-1} + k_t \odot (\tilde h_t - h_{t-1})

    and the layer's output is this :math:`h_t`.

    ``recurrent_dropout`` = p (Gal and Ghahramani; Keras' option) applies in :meth:`record` only: the
    state enters the recurrent product through a mask :math:`m` drawn once per sequence and
    layer-direction and used at every step (Bernoulli(1 - p) / (1 - p); ``tape.recurrent_masks``),
    :math:`W_{hh} (m \odot h_{t-1})` in place of :math:`W_{hh} h_{t-1}`. A call never drops.

    Layer k >= 1 reads layer k-1's output: :math:`x^{(k)}_t = \delta^{(k-1)}_t \odot y^{(k-1)}_t`,
    where :math:`\odot` is the elementwise product and :math:`\delta` is 1 in a call, and in
    :meth:`record` a dropout mask (Bernoulli(1 - p) / (1 - p), p = ``dropout``). A layer's output
    :math:`y^{(k)}_t` is its :math:`h_t`, or with ``bidirectional=True`` the concatenation
    :math:`[h^{\rightarrow}_t, h^{\leftarrow}_t]` of the forward direction and of the reverse direction,
    which has weights of its own (suffix ``_reverse``) and runs from the last step to the first.
    ``residual=True`` adds each layer's input to its output after the first layer:

    .. math::

        y^{(k)}_t = h^{(k)}_t + x^{(k)}_t \qquad (k \ge 1)

    Parameters
    ----------
    input_size : int
        I, the number of features of each step of the input.
    hidden_size : int
        H, the number of features of the hidden state.
    num_layers : int, default 1
        L, the number of stacked layers.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The activation.
    bias : bool, default True
        False: no ``bias_ih_l{k}``, ``bias_hh_l{k}`` (the b terms are zero).
    batch_first : bool, default False
        True: ``x`` and ``y`` are (N, T, features) instead of (T, N, features); the states are not
        affected.
    dropout : float, default 0.0
        p, the probability of zeroing an element of each layer's output but the last, in :meth:`record`
        (training); a call never drops.
    bidirectional : bool, default False
        True: a second direction per layer, reading the sequence backwards.
    residual : bool, default False
        True: the residual connections above (the layers' input and output widths are equal after the
        first layer, D*H).
    clip : float, default 0.0
        :math:`\kappa`, the bound of the activation's input; 0 for none.
    zoneout : float, default 0.0
        p, the probability that a unit keeps its previous state (above); 0 for none.
    recurrent_dropout : float, default 0.0
        p, the probability of dropping a unit of the state from the recurrent product in :meth:`record`.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype and that of every computation: inputs are converted to it.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Seeds the initialization (every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch) and
        the dropout masks; None draws fresh entropy.

    Shapes
    ------
    T steps, N sequences, I = ``input_size``, H = ``hidden_size``, D = 2 if ``bidirectional`` else 1,
    L = ``num_layers``.

    - ``x``: (T, N, I); (N, T, I) with ``batch_first=True``; (T, I) for one unbatched sequence.
    - ``h_0``, ``h_n``: (D*L, N, H), entry ``k*D + d`` for layer k and direction d (1: the reverse
      direction); (D*L, H) unbatched. ``h_n`` is each direction's state after its last step.
    - ``lengths``: (N,) ints in [1, T], or None (every sequence has T steps): PyTorch's
      packed-sequence semantics without packing (outputs past a sequence's end are zeros, its reverse
      direction starts at its own last step, ``h_n`` holds the state at its last valid step).
    - ``y``: (T, N, D*H), the last layer's output at every step, the forward direction's features
      first; (N, T, D*H) with ``batch_first=True``; (T, D*H) unbatched.

    Attributes
    ----------
    weight_ih_l{k}[_reverse] : ndarray (H, I) for k = 0, else (H, D*H)
        :math:`W_{ih}` of layer k (and direction).
    weight_hh_l{k}[_reverse] : ndarray (H, H)
        :math:`W_{hh}`.
    bias_ih_l{k}[_reverse] : ndarray (H,)
        :math:`b_{ih}` (with ``bias=True``).
    bias_hh_l{k}[_reverse] : ndarray (H,)
        :math:`b_{hh}` (with ``bias=True``).

    Examples
    --------
    >>> import numpy as np, fusedrnn as fr
    >>> rnn = fr.RNN(10, 20, num_layers=2, seed=0)
    >>> y, h_n = rnn(np.ones((5, 3, 10), np.float32))
    >>> y.shape, h_n.shape
    ((5, 3, 20), (2, 3, 20))
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
        clip: float = 0.0,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
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
            clip=clip,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
            dtype=dtype,
            seed=seed,
        )

    def __call__(self, x: Any, h0: Any = None, lengths: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Run the layers over a sequence: ``y, h_n = rnn(x, h0=None, lengths=None)``.

        Parameters
        ----------
        x : array_like
            The input, (T, N, I), (N, T, I) with ``batch_first=True``, or (T, I) unbatched.
        h0 : array_like, optional
            The initial state (D*L, N, H), or (D*L, H) unbatched; None: zeros.
        lengths : array_like, optional
            (N,) the number of valid steps of each sequence; None: all T.

        Returns
        -------
        y : ndarray
            (T, N, D*H) (batch_first: (N, T, D*H); unbatched: (T, D*H)).
        h_n : ndarray
            (D*L, N, H), the state after each sequence's last valid step.
        """
        return self._forward(x, h0, lengths, "h0")


class LSTM(RNNBase):
    r"""A multi-layer long short-term memory (LSTM) network: PyTorch's ``torch.nn.LSTM`` on NumPy arrays,
    with ONNX's and Keras' LSTM options besides.

    ``y, (h_n, c_n) = lstm(x, state=None, lengths=None)``. For each step t of the input sequence, each
    layer computes, with the gates in PyTorch's order i, f, g, o:

    .. math::

        \begin{array}{ll}
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    where :math:`x_t` is the layer's input at step t, :math:`h_t` the hidden state and :math:`c_t` the
    cell state after step t (``h_0``, ``c_0`` before the first step), :math:`\sigma` the logistic
    function and :math:`\odot` the elementwise product. :math:`W_{ii}, W_{if}, W_{ig}, W_{io}` are the
    four row blocks of ``weight_ih_l{k}``, :math:`W_{h*}` those of ``weight_hh_l{k}``, :math:`b_{i*}`
    and :math:`b_{h*}` those of ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (zero with ``bias=False``).

    Layer k >= 1 reads layer k-1's output: :math:`x^{(k)}_t = \delta^{(k-1)}_t \odot y^{(k-1)}_t`, where
    :math:`\delta` is 1 in a call, and in :meth:`record` a dropout mask (Bernoulli(1 - p) / (1 - p),
    p = ``dropout``). A layer's output :math:`y^{(k)}_t` is its :math:`h_t`, or with
    ``bidirectional=True`` the concatenation :math:`[h^{\rightarrow}_t, h^{\leftarrow}_t]` of the
    forward direction and of the reverse direction, which has weights of its own (suffix ``_reverse``)
    and runs from the last step to the first.

    The options change the equations as follows; they combine.

    - ``proj_size`` = P > 0 (PyTorch's projection): the hidden state is projected by
      :math:`W_{hr}` = ``weight_hr_l{k}`` (P, H), so that :math:`h_t`, ``h_0``, ``h_n`` and each
      direction's output have P features while :math:`c_t` keeps H:

      .. math::

          h_t = W_{hr} (o_t \odot \tanh(c_t))

    - ``peephole=True`` (ONNX's peepholes): the gates also read the cell state, through
      ``weight_ph_l{k}`` = :math:`[p_i; p_f; p_o]` (3H); the output gate reads the new one:

      .. math::

          \begin{array}{ll}
          i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi} + p_i \odot c_{t-1}) \\
          f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf} + p_f \odot c_{t-1}) \\
          o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho} + p_o \odot c_t)
          \end{array}

    - ``clip`` = :math:`\kappa` > 0 (ONNX's ``clip``): the input :math:`a_*` of every gate's activation
      (the argument of :math:`\sigma` or tanh above, peephole terms included) is clipped first:

      .. math::

          \begin{array}{ll}
          i_t = \sigma(\operatorname{clip}(a_i, -\kappa, \kappa)), \quad \ldots, \quad
          g_t = \tanh(\operatorname{clip}(a_g, -\kappa, \kappa)), \quad \ldots \\
          \operatorname{clip}(a, l, u) = \min(\max(a, l), u)
          \end{array}

    - ``input_forget=True`` (ONNX's coupled gates): the forget gate is the input gate's complement; the
      f blocks of the weights are unused (their gradients are zero):

      .. math::

          f_t = 1 - i_t

    - ``gate_activation="hard_sigmoid"`` (Keras' ``recurrent_activation``): i, f and o use Keras 3's
      hard sigmoid :math:`\hat\sigma` in place of :math:`\sigma`; g and :math:`\tanh(c_t)` keep tanh:

      .. math::

          \hat\sigma(a) = \operatorname{clip}(a / 6 + 1/2,\ 0,\ 1)

    - ``layer_norm=True`` (haste's layer-normalized LSTM): each product is normalized over its 4H values
      before the gates, and the new cell state over its H values before its tanh, with
      :math:`\operatorname{LN}(v) = (v - \mu(v)) / \sqrt{\sigma^2(v) + 10^{-5}}` (mean and variance over
      the row), the gains ``ln_weight_ih_l{k}`` = :math:`\gamma_x`, ``ln_weight_hh_l{k}`` =
      :math:`\gamma_h` (4H each), ``ln_weight_c_l{k}`` = :math:`\gamma_c` (H), all starting at 1, and the
      shift ``ln_bias_c_l{k}`` = :math:`\beta_c` (H), starting at 0; :math:`a_{t,*}` is the gate block of

      .. math::

          \begin{array}{ll}
          a_t = \gamma_x \odot \operatorname{LN}(W_{ih} x_t)
          + \gamma_h \odot \operatorname{LN}(W_{hh} h_{t-1}) + b_{ih} + b_{hh} \\
          i_t = \sigma(a_{t,i}), \quad f_t = \sigma(a_{t,f}), \quad g_t = \tanh(a_{t,g}), \quad
          o_t = \sigma(a_{t,o}) \\
          c_t = f_t \odot c_{t-1} + i_t \odot g_t, \quad
          h_t = o_t \odot \tanh(\gamma_c \odot \operatorname{LN}(c_t) + \beta_c)
          \end{array}

      It combines with ``gate_activation``, not with ``proj_size``, ``peephole``, ``clip`` or
      ``input_forget``.

    - ``zoneout`` = p (Krueger et al.): each unit keeps its previous h and c with probability p. In
      :meth:`record` factors :math:`k^h_t, k^c_t \in \{0, 1\}` are drawn per step, sequence and unit (1,
      "take the new value", with probability 1 - p; ``tape.zoneout_masks``); a call uses their
      expectation 1 - p. With :math:`\tilde h_t, \tilde c_t` the new state the equations above give,

      .. math::

          h_t = h_{t-1} + k^h_t \odot (\tilde h_t - h_{t-1}), \quad
          c_t = c_{t-1} + k^c_t \odot (\tilde c_t - c_{t-1})

      and the layer's output is this :math:`h_t`. Not with ``proj_size``.

    - ``recurrent_dropout`` = p (Gal and Ghahramani; Keras' option), in :meth:`record` only: the state
      enters the recurrent product through a mask :math:`m` drawn once per sequence and layer-direction
      and used at every step (Bernoulli(1 - p) / (1 - p); ``tape.recurrent_masks``),
      :math:`W_{h*} (m \odot h_{t-1})` in place of :math:`W_{h*} h_{t-1}`. A call never drops.

    - ``residual=True``: each layer after the first adds its input to its output, which is what the
      next layer reads and what ``y`` holds for the last layer (the states are unchanged):

      .. math::

          y^{(k)}_t = [h^{\rightarrow}_t, h^{\leftarrow}_t]^{(k)} + x^{(k)}_t \qquad (k \ge 1)

    - ``forget_bias`` = b (initialization only, Keras' ``unit_forget_bias``): b is added to the forget
      gate's block of every ``bias_ih_l{k}[_reverse]`` (rows H:2H) after the default initialization, so
      that :math:`b_{if} + b_{hf}` starts near b and :math:`f_t = \sigma(b + \ldots)` near 1 for b = 1 or
      2: the cell state, and the gradient through it, then decays slowly over time. ``bias_hh`` is left
      alone (only the sum of the two biases matters).

    Parameters
    ----------
    input_size : int
        I, the number of features of each step of the input.
    hidden_size : int
        H, the number of features of the cell state (and of the hidden state without projection).
    num_layers : int, default 1
        L, the number of stacked layers.
    bias : bool, default True
        False: no ``bias_ih_l{k}``, ``bias_hh_l{k}`` (the b terms are zero).
    batch_first : bool, default False
        True: ``x`` and ``y`` are (N, T, features) instead of (T, N, features); the states are not
        affected.
    dropout : float, default 0.0
        p, the probability of zeroing an element of each layer's output but the last, in :meth:`record`
        (training); a call never drops.
    bidirectional : bool, default False
        True: a second direction per layer, reading the sequence backwards.
    proj_size : int, default 0
        P: the projection above when > 0 (it must be smaller than ``hidden_size``).
    residual : bool, default False
        The residual connections above.
    peephole : bool, default False
        The peephole connections above (parameters ``weight_ph_l{k}[_reverse]``).
    clip : float, default 0.0
        :math:`\kappa`, the bound of the activations' inputs; 0 for none.
    layer_norm : bool, default False
        The layer normalization above (parameters ``ln_*``).
    zoneout : float, default 0.0
        p, the probability that a unit keeps its previous state (above); 0 for none.
    recurrent_dropout : float, default 0.0
        p, the probability of dropping a unit of the state from the recurrent product in :meth:`record`.
    input_forget : bool, default False
        Couple the forget gate to the input gate, :math:`f_t = 1 - i_t`.
    gate_activation : {"sigmoid", "hard_sigmoid"}, default "sigmoid"
        The activation of the gates i, f and o.
    forget_bias : float, default 0.0
        Added to the forget gate's input bias at initialization (needs ``bias=True`` and not
        ``input_forget``).
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype and that of every computation: inputs are converted to it.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Seeds the initialization (every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch) and
        the dropout masks; None draws fresh entropy.

    Shapes
    ------
    T steps, N sequences, I = ``input_size``, H = ``hidden_size``, H_out = P if ``proj_size`` > 0 else H,
    D = 2 if ``bidirectional`` else 1, L = ``num_layers``.

    - ``x``: (T, N, I); (N, T, I) with ``batch_first=True``; (T, I) for one unbatched sequence.
    - ``state = (h_0, c_0)`` and the returned ``(h_n, c_n)``: ``h`` (D*L, N, H_out) and ``c`` (D*L, N, H),
      entry ``k*D + d`` for layer k and direction d (1: the reverse direction); without the N axis
      unbatched. ``state=None``, or either part None, means zeros.
    - ``lengths``: (N,) ints in [1, T], or None (every sequence has T steps): PyTorch's
      packed-sequence semantics without packing (outputs past a sequence's end are zeros, its reverse
      direction starts at its own last step, ``h_n`` and ``c_n`` hold the state at its last valid step).
    - ``y``: (T, N, D*H_out), the last layer's output at every step, the forward direction's features
      first; (N, T, D*H_out) with ``batch_first=True``; (T, D*H_out) unbatched.

    Attributes
    ----------
    weight_ih_l{k}[_reverse] : ndarray (4H, I) for k = 0, else (4H, D*H_out)
        :math:`[W_{ii}; W_{if}; W_{ig}; W_{io}]` of layer k (and direction).
    weight_hh_l{k}[_reverse] : ndarray (4H, H_out)
        :math:`[W_{hi}; W_{hf}; W_{hg}; W_{ho}]`.
    bias_ih_l{k}[_reverse] : ndarray (4H,)
        :math:`[b_{ii}; b_{if}; b_{ig}; b_{io}]` (with ``bias=True``).
    bias_hh_l{k}[_reverse] : ndarray (4H,)
        :math:`[b_{hi}; b_{hf}; b_{hg}; b_{ho}]` (with ``bias=True``).
    weight_hr_l{k}[_reverse] : ndarray (P, H)
        :math:`W_{hr}` (with ``proj_size`` > 0).
    weight_ph_l{k}[_reverse] : ndarray (3H,)
        :math:`[p_i; p_f; p_o]` (with ``peephole=True``).
    ln_weight_ih_l{k}[_reverse], ln_weight_hh_l{k}[_reverse] : ndarray (4H,)
        :math:`\gamma_x`, :math:`\gamma_h` (with ``layer_norm=True``).
    ln_weight_c_l{k}[_reverse], ln_bias_c_l{k}[_reverse] : ndarray (H,)
        :math:`\gamma_c`, :math:`\beta_c` (with ``layer_norm=True``).

    Examples
    --------
    >>> import numpy as np, fusedrnn as fr
    >>> lstm = fr.LSTM(10, 20, num_layers=2, bidirectional=True, proj_size=8, seed=0)
    >>> y, (h_n, c_n) = lstm(np.ones((5, 3, 10), np.float32))
    >>> y.shape, h_n.shape, c_n.shape
    ((5, 3, 16), (4, 3, 8), (4, 3, 20))
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
        layer_norm: bool = False,
        forget_bias: float = 0.0,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
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
            layer_norm=layer_norm,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
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
        """Run the layers over a sequence: ``y, (h_n, c_n) = lstm(x, state=None, lengths=None)``.

        Parameters
        ----------
        x : array_like
            The input, (T, N, I), (N, T, I) with ``batch_first=True``, or (T, I) unbatched.
        state : tuple (h_0, c_0), optional
            The initial state, h_0 (D*L, N, H_out) and c_0 (D*L, N, H) (without N unbatched); None, or
            either part None: zeros.
        lengths : array_like, optional
            (N,) the number of valid steps of each sequence; None: all T.

        Returns
        -------
        y : ndarray
            (T, N, D*H_out) (batch_first: (N, T, D*H_out); unbatched: (T, D*H_out)).
        (h_n, c_n) : tuple of ndarray
            (D*L, N, H_out) and (D*L, N, H), the state after each sequence's last valid step.
        """
        return self._forward(x, state, lengths, "state")


class GRU(RNNBase):
    r"""A multi-layer gated recurrent unit (GRU) network: PyTorch's ``torch.nn.GRU`` on NumPy arrays,
    with the reset-before form of ONNX and Keras besides.

    ``y, h_n = gru(x, h_0=None, lengths=None)``. For each step t of the input sequence, each layer
    computes, with the gates in PyTorch's order r, z, n:

    .. math::

        \begin{array}{ll}
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    where :math:`x_t` is the layer's input at step t, :math:`h_t` the hidden state after step t (``h_0``
    before the first step), :math:`\sigma` the logistic function and :math:`\odot` the elementwise
    product. :math:`W_{ir}, W_{iz}, W_{in}` are the three row blocks of ``weight_ih_l{k}``,
    :math:`W_{h*}` those of ``weight_hh_l{k}``, :math:`b_{i*}` and :math:`b_{h*}` those of
    ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (zero with ``bias=False``). This is the linear-before-reset
    form (``linear_before_reset=True``: PyTorch's, cuDNN's, Keras' ``reset_after=True``, ONNX's
    ``linear_before_reset=1``): the reset gate multiplies the recurrent product and its bias.

    ``linear_before_reset=False`` is the reset-before form (ONNX's default, Keras' ``reset_after=False``):
    the reset gate multiplies the state before the product,

    .. math::

        n_t = \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn})

    The two forms give different numbers for the same weights, and no weights of one reproduce the other.

    ``gate_activation="hard_sigmoid"`` (Keras' ``recurrent_activation``): r and z use Keras 3's hard
    sigmoid in place of :math:`\sigma`; n keeps tanh:

    .. math::

        \hat\sigma(a) = \operatorname{clip}(a / 6 + 1/2,\ 0,\ 1) = \min(\max(a / 6 + 1/2,\ 0),\ 1)

    ``clip`` = :math:`\kappa` > 0 (ONNX's ``clip``, as ONNX Runtime computes it) bounds the input
    :math:`a_*` of each of the three activations (the whole argument of :math:`\sigma` or tanh above, in
    either form: for n, :math:`a_n = W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})` or its
    reset-before counterpart) first; its gradient is zero where the clip bounds :math:`a_*`
    (:math:`|a_*| \ge \kappa`):

    .. math::

        r_t = \sigma(\operatorname{clip}(a_r, -\kappa, \kappa)), \quad
        z_t = \sigma(\operatorname{clip}(a_z, -\kappa, \kappa)), \quad
        n_t = \tanh(\operatorname{clip}(a_n, -\kappa, \kappa))

    ``layer_norm=True`` (linear-before-reset only) normalizes each product over its 3H values before the
    gates, with :math:`\operatorname{LN}(v) = (v - \mu(v)) / \sqrt{\sigma^2(v) + 10^{-5}}` (mean and
    variance over the row) and the gains ``ln_weight_ih_l{k}`` = :math:`\gamma_x` and
    ``ln_weight_hh_l{k}`` = :math:`\gamma_h` (3H each, starting at 1); :math:`a_{x,*}`, :math:`a_{h,*}` are
    the gate blocks of

    .. math::

        \begin{array}{ll}
        a_x = \gamma_x \odot \operatorname{LN}(W_{ih} x_t) + b_{ih}, \quad
        a_h = \gamma_h \odot \operatorname{LN}(W_{hh} h_{t-1}) + b_{hh} \\
        r_t = \sigma(a_{x,r} + a_{h,r}), \quad z_t = \sigma(a_{x,z} + a_{h,z}), \quad
        n_t = \tanh(a_{x,n} + r_t \odot a_{h,n})
        \end{array}

    and :math:`h_t` as above. It combines with ``gate_activation``, not with ``clip``.

    ``zoneout`` = p (Krueger et al.) lets each unit keep its previous state with probability p. In
    :meth:`record` a factor :math:`k_t \in \{0, 1\}` is drawn per step, sequence and unit (1, "take the
    new value", with probability 1 - p; ``tape.zoneout_masks``); a call uses its expectation
    :math:`k = 1 - p`. With :math:`\tilde h_t` the new state the equations above give,

    .. math::

        h_t = h_{t-1} + k_t \odot (\tilde h_t - h_{t-1})

    and the layer's output is this :math:`h_t`.

    ``recurrent_dropout`` = p (Gal and Ghahramani; Keras' option; linear-before-reset only) applies in
    :meth:`record` only: the state enters the recurrent product through a mask :math:`m` drawn once per
    sequence and layer-direction and used at every step (Bernoulli(1 - p) / (1 - p);
    ``tape.recurrent_masks``), :math:`W_{h*} (m \odot h_{t-1})` in place of :math:`W_{h*} h_{t-1}`;
    :math:`z_t \odot h_{t-1}` keeps the unmasked state. A call never drops.

    Layer k >= 1 reads layer k-1's output: :math:`x^{(k)}_t = \delta^{(k-1)}_t \odot y^{(k-1)}_t`, where
    :math:`\delta` is 1 in a call, and in :meth:`record` a dropout mask (Bernoulli(1 - p) / (1 - p),
    p = ``dropout``). A layer's output :math:`y^{(k)}_t` is its :math:`h_t`, or with
    ``bidirectional=True`` the concatenation :math:`[h^{\rightarrow}_t, h^{\leftarrow}_t]` of the
    forward direction and of the reverse direction, which has weights of its own (suffix ``_reverse``)
    and runs from the last step to the first. ``residual=True`` adds each layer's input to its output
    after the first layer:

    .. math::

        y^{(k)}_t = [h^{\rightarrow}_t, h^{\leftarrow}_t]^{(k)} + x^{(k)}_t \qquad (k \ge 1)

    Parameters
    ----------
    input_size : int
        I, the number of features of each step of the input.
    hidden_size : int
        H, the number of features of the hidden state.
    num_layers : int, default 1
        L, the number of stacked layers.
    bias : bool, default True
        False: no ``bias_ih_l{k}``, ``bias_hh_l{k}`` (the b terms are zero).
    batch_first : bool, default False
        True: ``x`` and ``y`` are (N, T, features) instead of (T, N, features); the states are not
        affected.
    dropout : float, default 0.0
        p, the probability of zeroing an element of each layer's output but the last, in :meth:`record`
        (training); a call never drops.
    bidirectional : bool, default False
        True: a second direction per layer, reading the sequence backwards.
    linear_before_reset : bool, default True
        The form of the n gate: True linear-before-reset (PyTorch's), False reset-before.
    residual : bool, default False
        The residual connections above.
    gate_activation : {"sigmoid", "hard_sigmoid"}, default "sigmoid"
        The activation of the gates r and z.
    clip : float, default 0.0
        :math:`\kappa`, the bound of the activations' inputs; 0 for none.
    layer_norm : bool, default False
        The layer normalization above (parameters ``ln_*``).
    zoneout : float, default 0.0
        p, the probability that a unit keeps its previous state (above); 0 for none.
    recurrent_dropout : float, default 0.0
        p, the probability of dropping a unit of the state from the recurrent product in :meth:`record`.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype and that of every computation: inputs are converted to it.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Seeds the initialization (every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch) and
        the dropout masks; None draws fresh entropy.

    Shapes
    ------
    T steps, N sequences, I = ``input_size``, H = ``hidden_size``, D = 2 if ``bidirectional`` else 1,
    L = ``num_layers``.

    - ``x``: (T, N, I); (N, T, I) with ``batch_first=True``; (T, I) for one unbatched sequence.
    - ``h_0``, ``h_n``: (D*L, N, H), entry ``k*D + d`` for layer k and direction d (1: the reverse
      direction); (D*L, H) unbatched. ``h_n`` is each direction's state after its last step.
    - ``lengths``: (N,) ints in [1, T], or None (every sequence has T steps): PyTorch's
      packed-sequence semantics without packing (outputs past a sequence's end are zeros, its reverse
      direction starts at its own last step, ``h_n`` holds the state at its last valid step).
    - ``y``: (T, N, D*H), the last layer's output at every step, the forward direction's features
      first; (N, T, D*H) with ``batch_first=True``; (T, D*H) unbatched.

    Attributes
    ----------
    weight_ih_l{k}[_reverse] : ndarray (3H, I) for k = 0, else (3H, D*H)
        :math:`[W_{ir}; W_{iz}; W_{in}]` of layer k (and direction).
    weight_hh_l{k}[_reverse] : ndarray (3H, H)
        :math:`[W_{hr}; W_{hz}; W_{hn}]`.
    bias_ih_l{k}[_reverse] : ndarray (3H,)
        :math:`[b_{ir}; b_{iz}; b_{in}]` (with ``bias=True``).
    bias_hh_l{k}[_reverse] : ndarray (3H,)
        :math:`[b_{hr}; b_{hz}; b_{hn}]` (with ``bias=True``).
    ln_weight_ih_l{k}[_reverse], ln_weight_hh_l{k}[_reverse] : ndarray (3H,)
        :math:`\gamma_x`, :math:`\gamma_h` (with ``layer_norm=True``).

    Examples
    --------
    >>> import numpy as np, fusedrnn as fr
    >>> gru = fr.GRU(10, 20, batch_first=True, linear_before_reset=False, seed=0)
    >>> y, h_n = gru(np.ones((3, 5, 10), np.float32), lengths=[5, 2, 4])
    >>> y.shape, h_n.shape, float(abs(y[1, 2:]).max())
    ((3, 5, 20), (1, 3, 20), 0.0)
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
        clip: float = 0.0,
        layer_norm: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
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
            clip=clip,
            gate_activation=gate_activation,
            layer_norm=layer_norm,
            zoneout=zoneout,
            recurrent_dropout=recurrent_dropout,
            dtype=dtype,
            seed=seed,
        )

    @property
    def linear_before_reset(self) -> bool:
        """The form of the n gate, True for linear-before-reset (PyTorch's), False for reset-before."""
        return self._config.linear_before_reset

    def __call__(self, x: Any, h0: Any = None, lengths: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Run the layers over a sequence: ``y, h_n = gru(x, h0=None, lengths=None)``.

        Parameters
        ----------
        x : array_like
            The input, (T, N, I), (N, T, I) with ``batch_first=True``, or (T, I) unbatched.
        h0 : array_like, optional
            The initial state (D*L, N, H), or (D*L, H) unbatched; None: zeros.
        lengths : array_like, optional
            (N,) the number of valid steps of each sequence; None: all T.

        Returns
        -------
        y : ndarray
            (T, N, D*H) (batch_first: (N, T, D*H); unbatched: (T, D*H)).
        h_n : ndarray
            (D*L, N, H), the state after each sequence's last valid step.
        """
        return self._forward(x, h0, lengths, "h0")
