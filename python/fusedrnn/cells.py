"""One-step recurrent cells with PyTorch's interface: RNNCell, LSTMCell, GRUCell.

A cell advances the state by one time step; the equations are those of the layers (see
``fusedrnn.layers``) with a single layer and direction. Parameters (PyTorch's names and shapes):
``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh`` (G*H), G = 1, 3 or 4.

Shapes: x_t (N, I) and h, c (N, H); or unbatched x_t (I,) with h, c (H,).

``clip`` > 0 (ONNX's, every cell, as the layers') clips the input of each gate's activation to
[-clip, clip] first (the LSTM's tanh(c') is not clipped); its gradient is zero where the clip bounds it.

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
        clip: float = 0.0,
        layer_norm: bool = False,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        self.input_size = v.check_int("input_size", input_size, 1)
        self.hidden_size = v.check_int("hidden_size", hidden_size, 1)
        self.bias = v.check_bool("bias", bias)
        lbr = v.check_bool("linear_before_reset", linear_before_reset)
        clip = v.check_clip(clip)
        layer_norm = v.check_bool("layer_norm", layer_norm)
        if layer_norm and (clip or not lbr):
            given = "clip" if clip else "linear_before_reset=False"
            raise ValueError(
                f"layer_norm=True does not combine with {given} (the layer-normalized GRU has the "
                "linear-before-reset form only)"
            )
        config = StackConfig(
            kind.name,
            self.input_size,
            self.hidden_size,
            1,
            self.bias,
            False,
            0,
            lbr,
            clip=clip,
            layer_norm=layer_norm,
        )
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
        if self._config.clip:
            args.append(f"clip={self._config.clip}")
        if self._config.layer_norm:
            args.append("layer_norm=True")
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
        """One step that keeps what :meth:`Tape.backward <fusedrnn.Tape.backward>` needs.

        Parameters
        ----------
        x : array_like
            The input, (N, I) or (I,), as for a call.
        state : optional
            The state, as for a call: ``h``, or ``(h, c)`` for an LSTMCell; None for zeros.

        Returns
        -------
        Tape
            ``tape.output`` is the new h, ``tape.state`` what the call returns; ``tape.backward(grad_output,
            grad_state=None)`` gives the gradients with respect to x (``.input``), the state (``.state``)
            and the parameters (``.params``).
        """
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
    r"""An Elman RNN cell with a tanh or ReLU nonlinearity: PyTorch's ``torch.nn.RNNCell`` on NumPy
    arrays. One step: ``h' = cell(x, h=None)``.

    .. math::

        h' = \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})

    or, with ``nonlinearity="relu"``, :math:`h' = \max(0,\ W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`, where
    :math:`W_{ih}` = ``weight_ih``, :math:`W_{hh}` = ``weight_hh``, :math:`b_{ih}` = ``bias_ih``,
    :math:`b_{hh}` = ``bias_hh``. ``clip`` = :math:`\kappa` > 0 (ONNX's) bounds the activation's input
    :math:`a = W_{ih} x + b_{ih} + W_{hh} h + b_{hh}` first, with either nonlinearity:

    .. math::

        h' = \tanh(\operatorname{clip}(a, -\kappa, \kappa)) \quad \text{or} \quad
        h' = \max(0,\ \operatorname{clip}(a, -\kappa, \kappa))

    Parameters
    ----------
    input_size : int
        I, the number of features of the input.
    hidden_size : int
        H, the number of features of the state.
    bias : bool, default True
        False: no ``bias_ih``, ``bias_hh`` (the b terms are zero).
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The activation.
    clip : float, default 0.0
        :math:`\kappa`, the bound of the activation's input; 0 for none.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype and that of every computation: inputs are converted to it.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Seeds the initialization (every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch); None
        draws fresh entropy.

    Shapes
    ------
    N samples, I = ``input_size``, H = ``hidden_size``.

    - ``x``: (N, I), or (I,) for one unbatched sample.
    - ``h`` and the returned ``h'``: (N, H), or (H,) unbatched; ``h=None`` means zeros.

    Attributes
    ----------
    weight_ih : ndarray (H, I)
        :math:`W_{ih}`.
    weight_hh : ndarray (H, H)
        :math:`W_{hh}`.
    bias_ih : ndarray (H,)
        :math:`b_{ih}` (with ``bias=True``).
    bias_hh : ndarray (H,)
        :math:`b_{hh}` (with ``bias=True``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        clip: float = 0.0,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        v.check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        self.nonlinearity = nonlinearity
        kind = cell_kind_from_torch_class("RNNCell", nonlinearity)
        super().__init__(kind, input_size, hidden_size, bias, clip=clip, dtype=dtype, seed=seed)

    def _extra_repr(self) -> list[str]:
        return [] if self.nonlinearity == "tanh" else [f"nonlinearity={self.nonlinearity!r}"]

    def __call__(self, x: Any, h: Any = None) -> np.ndarray:
        """One step: the new state ``h'`` (N, H), or (H,) for an unbatched ``x``.

        Parameters
        ----------
        x : array_like
            (N, I), or (I,) unbatched.
        h : array_like, optional
            (N, H), or (H,) unbatched; None: zeros.
        """
        return self._step(x, h, "h")


class LSTMCell(_CellBase):
    r"""A long short-term memory (LSTM) cell: PyTorch's ``torch.nn.LSTMCell`` on NumPy arrays. One step:
    ``h', c' = cell(x, (h, c)=None)``, with the gates in PyTorch's order i, f, g, o:

    .. math::

        \begin{array}{ll}
        i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \\
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' = f \odot c + i \odot g \\
        h' = o \odot \tanh(c')
        \end{array}

    where :math:`\sigma` is the logistic function, :math:`\odot` the elementwise product,
    :math:`W_{i*}` the four row blocks of ``weight_ih``, :math:`W_{h*}` those of ``weight_hh``, and
    :math:`b_{i*}`, :math:`b_{h*}` those of ``bias_ih``, ``bias_hh``. ``clip`` = :math:`\kappa` > 0
    (ONNX's) bounds the input :math:`a_*` of each gate's activation (the argument of :math:`\sigma` or
    tanh above; not :math:`\tanh(c')`'s) first:

    .. math::

        i = \sigma(\operatorname{clip}(a_i, -\kappa, \kappa)), \quad \ldots, \quad
        g = \tanh(\operatorname{clip}(a_g, -\kappa, \kappa)), \quad \ldots

    The layer :class:`fusedrnn.LSTM` has the other options (projection, peepholes, ...).

    Parameters
    ----------
    input_size : int
        I, the number of features of the input.
    hidden_size : int
        H, the number of features of the state.
    bias : bool, default True
        False: no ``bias_ih``, ``bias_hh`` (the b terms are zero).
    clip : float, default 0.0
        :math:`\kappa`, the bound of the activations' inputs; 0 for none.
    layer_norm : bool, default False
        The layer-normalized cell of the layer's ``layer_norm=True`` (its equations there), with the
        parameters ``ln_weight_ih``, ``ln_weight_hh`` (and the LSTM's ``ln_weight_c``, ``ln_bias_c``).
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype and that of every computation: inputs are converted to it.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Seeds the initialization (every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch); None
        draws fresh entropy.

    Shapes
    ------
    N samples, I = ``input_size``, H = ``hidden_size``.

    - ``x``: (N, I), or (I,) for one unbatched sample.
    - ``h``, ``c`` and the returned ``h'``, ``c'``: (N, H) each, or (H,) unbatched; ``state=None`` (or
      either part None) means zeros.

    Attributes
    ----------
    weight_ih : ndarray (4H, I)
        :math:`[W_{ii}; W_{if}; W_{ig}; W_{io}]`.
    weight_hh : ndarray (4H, H)
        :math:`[W_{hi}; W_{hf}; W_{hg}; W_{ho}]`.
    bias_ih : ndarray (4H,)
        :math:`[b_{ii}; b_{if}; b_{ig}; b_{io}]` (with ``bias=True``).
    bias_hh : ndarray (4H,)
        :math:`[b_{hi}; b_{hf}; b_{hg}; b_{ho}]` (with ``bias=True``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        clip: float = 0.0,
        layer_norm: bool = False,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        super().__init__(
            cell_kind_from_torch_class("LSTMCell"),
            input_size,
            hidden_size,
            bias,
            clip=clip,
            layer_norm=layer_norm,
            dtype=dtype,
            seed=seed,
        )

    def __call__(self, x: Any, state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """One step: the new state ``(h', c')``, each (N, H), or (H,) for an unbatched ``x``.

        Parameters
        ----------
        x : array_like
            (N, I), or (I,) unbatched.
        state : tuple (h, c), optional
            Each (N, H), or (H,) unbatched; None, or either part None: zeros.
        """
        return self._step(x, state, "state")


class GRUCell(_CellBase):
    r"""A gated recurrent unit (GRU) cell: PyTorch's ``torch.nn.GRUCell`` on NumPy arrays. One step:
    ``h' = cell(x, h=None)``, with the gates in PyTorch's order r, z, n:

    .. math::

        \begin{array}{ll}
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
        h' = (1 - z) \odot n + z \odot h
        \end{array}

    where :math:`\sigma` is the logistic function, :math:`\odot` the elementwise product,
    :math:`W_{i*}` the three row blocks of ``weight_ih``, :math:`W_{h*}` those of ``weight_hh``, and
    :math:`b_{i*}`, :math:`b_{h*}` those of ``bias_ih``, ``bias_hh``. That is the linear-before-reset form
    (PyTorch's); ``linear_before_reset=False`` gives the reset-before form (ONNX's default, Keras'
    ``reset_after=False``):

    .. math::

        n = \tanh(W_{in} x + b_{in} + W_{hn} (r \odot h) + b_{hn})

    ``clip`` = :math:`\kappa` > 0 (ONNX's, as ONNX Runtime computes it) bounds the input :math:`a_*` of each
    of the three activations (the whole argument of :math:`\sigma` or tanh above, in either form) first:

    .. math::

        r = \sigma(\operatorname{clip}(a_r, -\kappa, \kappa)), \quad
        z = \sigma(\operatorname{clip}(a_z, -\kappa, \kappa)), \quad
        n = \tanh(\operatorname{clip}(a_n, -\kappa, \kappa))

    Parameters
    ----------
    input_size : int
        I, the number of features of the input.
    hidden_size : int
        H, the number of features of the state.
    bias : bool, default True
        False: no ``bias_ih``, ``bias_hh`` (the b terms are zero).
    linear_before_reset : bool, default True
        The form of the n gate: True linear-before-reset (PyTorch's), False reset-before.
    clip : float, default 0.0
        :math:`\kappa`, the bound of the activations' inputs; 0 for none.
    layer_norm : bool, default False
        The layer-normalized cell of the layer's ``layer_norm=True`` (its equations there), with the
        parameters ``ln_weight_ih``, ``ln_weight_hh`` (and the LSTM's ``ln_weight_c``, ``ln_bias_c``).
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype and that of every computation: inputs are converted to it.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Seeds the initialization (every parameter drawn from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch); None
        draws fresh entropy.

    Shapes
    ------
    N samples, I = ``input_size``, H = ``hidden_size``.

    - ``x``: (N, I), or (I,) for one unbatched sample.
    - ``h`` and the returned ``h'``: (N, H), or (H,) unbatched; ``h=None`` means zeros.

    Attributes
    ----------
    weight_ih : ndarray (3H, I)
        :math:`[W_{ir}; W_{iz}; W_{in}]`.
    weight_hh : ndarray (3H, H)
        :math:`[W_{hr}; W_{hz}; W_{hn}]`.
    bias_ih : ndarray (3H,)
        :math:`[b_{ir}; b_{iz}; b_{in}]` (with ``bias=True``).
    bias_hh : ndarray (3H,)
        :math:`[b_{hr}; b_{hz}; b_{hn}]` (with ``bias=True``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        linear_before_reset: bool = True,
        clip: float = 0.0,
        layer_norm: bool = False,
        dtype: Any = np.float32,
        seed: Any = None,
    ) -> None:
        super().__init__(
            cell_kind_from_torch_class("GRUCell"),
            input_size,
            hidden_size,
            bias,
            linear_before_reset=linear_before_reset,
            clip=clip,
            layer_norm=layer_norm,
            dtype=dtype,
            seed=seed,
        )

    @property
    def linear_before_reset(self) -> bool:
        """The form of the n gate, True for linear-before-reset (PyTorch's), False for reset-before."""
        return self._config.linear_before_reset

    def _extra_repr(self) -> list[str]:
        return [] if self.linear_before_reset else ["linear_before_reset=False"]

    def __call__(self, x: Any, h: Any = None) -> np.ndarray:
        """One step: the new state ``h'`` (N, H), or (H,) for an unbatched ``x``.

        Parameters
        ----------
        x : array_like
            (N, I), or (I,) unbatched.
        h : array_like, optional
            (N, H), or (H,) unbatched; None: zeros.
        """
        return self._step(x, h, "h")
