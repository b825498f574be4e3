"""Drop-in replacements for ``torch.nn``'s recurrent modules that run fusedrnn's kernels::

    import fusedrnn.torch as frt
    lstm = frt.LSTM(16, 32, num_layers=2, batch_first=True)    # torch.nn.LSTM's constructor
    output, (h_n, c_n) = lstm(x)                                # and its forward, PackedSequence included
    loss.backward()                                             # autograd through the fused backward pass

``LSTM``, ``GRU``, ``RNN``, ``LSTMCell``, ``GRUCell`` and ``RNNCell`` subclass their ``torch.nn``
namesakes: the constructor, the parameters (``nn.Parameter``, PyTorch's names and shapes, PyTorch's
initialization), ``state_dict``, ``.to()/.double()/.float()``, ``train()/eval()`` and the forward
signature and results are torch.nn's, and ``isinstance(m, torch.nn.LSTM)`` holds. Only ``forward`` differs:
it runs fusedrnn's compiled stack through a ``torch.autograd.Function`` (CPU tensors, float32 or float64).

Arrays cross to the kernels without copies where they can: a C-contiguous CPU tensor of the model's
dtype is handed over as a NumPy view of its memory, and the results come back as tensors over the
kernels' arrays. Batch-first input is transposed (one copy), a PackedSequence is scattered to a padded
batch and its output gathered back (the kernels take per-sequence lengths with PyTorch's semantics).

Dropout between layers (``dropout > 0``, ``num_layers > 1``, training mode) draws its masks from
torch's generator exactly as torch.nn does on the CPU, so with the same seed a fusedrnn.torch module and
a torch.nn module with the same weights give the same numbers in training mode too.

Weights: the compiled stack keeps a packed copy of the parameters, refreshed before a call when any
parameter changed. A change is seen from each tensor's storage and version counter, which every torch
operation that writes a tensor advances: optimizer steps, ``load_state_dict``, ``torch.nn.init``,
``with torch.no_grad(): p.copy_(...)``, ``.to()``/``.double()``. Writes that bypass autograd's
bookkeeping -- through ``p.data`` (``p.data.copy_(...)``, ``p.data[...] = ...``) or through a NumPy
view of a parameter -- are invisible: call ``module.mark_weights_changed()`` after them (torch.nn's own
autograd ignores such writes too). Parameters that are inference tensors (made under
``torch.inference_mode()``, as when the module is constructed there) carry no version counter, so the
packed copy is refreshed from them at every call, a pass over the weights each time; a module built
outside ``inference_mode`` and called inside it keeps its packed copy between calls.

Shipping: while ``torch.jit.trace``, ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``,
and the default one, which needs ``onnxscript``) or ``torch.export`` record a forward, the module runs
torch.nn's own forward instead of fusedrnn's kernels, with the same parameters: the recorded graph is the
one torch.nn's module gives (in ONNX, standard LSTM, GRU and RNN nodes, but for the dynamo exporter's
unrolled torch.nn.RNN; a trace that runs torch's kernels), and its numbers agree with fusedrnn's to float
rounding. Eager calls before and after run fusedrnn's kernels. Under ``torch.compile`` the kernels run
too, outside the compiled graph (a graph break, as torch.nn's recurrent modules cause by default).
``torch.jit.script`` is refused with a TypeError: it compiles ``forward``'s Python source, and this one
calls fusedrnn's compiled kernels; trace the module instead. ``fusedrnn.to_onnx``, ``save`` and
``from_torch`` take these modules as they are (as the fusedrnn layer with their configuration and weights).

Importing this module imports torch; ``import fusedrnn`` alone does not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fusedrnn.torch needs PyTorch (pip install torch); fusedrnn itself does not") from exc
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence

from ._cells import CellKind, cell_kind_from_torch_class, cell_kind_from_torch_mode
from ._config import StackConfig
from ._runtime import Runtime

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)


def _capturing_graph() -> bool:
    """Whether torch is recording this forward into a graph to ship (TorchScript tracing, either ONNX
    exporter, torch.export) rather than running it: the recorder sees only torch operations, so the
    modules then run torch.nn's forward. torch.compile is not shipping: under it the kernels run, outside
    its graph (``_LayerMixin._fr_forward``)."""
    # Asked first: under dynamo both are constants, and the other two are not for it to trace into.
    if torch.compiler.is_compiling():
        return torch.compiler.is_exporting()
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    """A NumPy view of a CPU tensor's memory (a contiguous copy first only when it is not contiguous)."""
    if t is None:
        return None
    return t.detach().contiguous().numpy()


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(a)


def _weights(params: tuple[torch.Tensor, ...]) -> Callable[[], list[np.ndarray]]:
    """Reads the parameters for an upload: NumPy views of their memory. The runtime keeps the views while
    the stack holds these weights, and with them the storage whose addresses the key names."""
    return lambda: [p.detach().numpy() for p in params]


class _StackFunction(torch.autograd.Function):
    """Autograd through the compiled stack. Inputs: (runtime, key, x (T, N, I), h0 (D*L, N, H_out) or
    None, c0 (D*L, N, H) or None, lengths (N,) int64 ndarray or None, dropout masks or None, *params);
    outputs: y (T, N, D*H_out), h_n, and c_n for an LSTM."""

    @staticmethod
    def forward(
        ctx: Any, runtime: Runtime, key: Any, x: Any, h0: Any, c0: Any, lengths: Any, masks: Any, *params: Any
    ) -> Any:
        runtime.begin_call(_weights(params), key)
        try:
            y, h, c, saved = runtime.stack.forward_train(_numpy(x), _numpy(h0), _numpy(c0), lengths, masks)
        finally:
            runtime.end_call()
        ctx.fusedrnn = (runtime, key, saved, h0 is not None, c0 is not None)
        # Saved so that autograd refuses a backward after an in-place change of any of them, as it does
        # for torch.nn's modules; the backward re-uploads these weights if the stack holds others by then.
        ctx.save_for_backward(x, h0, c0, *params)
        if c is None:
            return torch.from_numpy(y), torch.from_numpy(h)
        return torch.from_numpy(y), torch.from_numpy(h), torch.from_numpy(c)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Any, grad_h: Any, grad_c: Any = None) -> Any:
        runtime, key, saved, has_h0, has_c0 = ctx.fusedrnn
        params = ctx.saved_tensors[3:]
        runtime.begin_call(_weights(params), key)
        try:
            grads_out = (_numpy(grad_y), _numpy(grad_h), _numpy(grad_c))
            gx, gh0, gc0, grads = runtime.stack.backward(saved, *grads_out)
        finally:
            runtime.end_call()
        return (
            None,
            None,
            torch.from_numpy(gx),
            _tensor(gh0) if has_h0 else None,
            _tensor(gc0) if has_c0 else None,
            None,
            None,
            *(torch.from_numpy(g) for g in grads),
        )


class _FusedModule:
    """What the six modules share: the runtime of the compiled stack, remade when the configuration or
    the dtype changes, the weights' key, and the call into the kernels with or without autograd."""

    _fr_state_keys = ("_fr_runtime", "_fr_lock", "_fr_generation")

    def _fr_init(self) -> None:
        self._fr_runtime: Runtime | None = None
        self._fr_lock = threading.Lock()
        self._fr_generation = 0

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state = dict(state)
        for k in self._fr_state_keys:
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        self._fr_init()

    def __prepare_scriptable__(self) -> Any:
        # Called by torch.jit.script before it compiles forward's source, which calls into fusedrnn's
        # kernels and cannot be compiled: say so, rather than fail deep inside the compiler.
        name = type(self).__name__
        raise TypeError(
            f"fusedrnn.torch.{name} cannot be compiled by torch.jit.script: its forward runs fusedrnn's "
            f"kernels from Python. Use torch.jit.trace (the trace runs torch.nn.{name}'s forward with the "
            "same parameters) or torch.onnx.export"
        )

    def mark_weights_changed(self) -> None:
        """Declare the parameters changed by a write autograd does not see (through ``p.data`` or a
        NumPy view): the kernels' packed copy is refreshed before the next call. Writes through torch
        operations (optimizers, ``load_state_dict``, ``torch.nn.init``, ``.to()``) need no call."""
        with self._fr_lock:
            self._fr_generation += 1

    def _fr_config(self) -> StackConfig:
        raise NotImplementedError

    def _fr_params(self, config: StackConfig) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _fr_prepare(self) -> tuple[Runtime, Any, tuple[torch.Tensor, ...]]:
        """The runtime for the current configuration and dtype, the key of the current weights, and the
        parameter tensors in the kernels' order."""
        config = self._fr_config()
        params = self._fr_params(config)
        dtype = params[0].dtype
        for name, p in zip(config.param_names(), params):
            if p.device.type != "cpu":
                raise RuntimeError(
                    f"{type(self).__name__} runs on the CPU: parameter {name} is on {p.device} "
                    "(use torch.nn's module on other devices, or move the module with .cpu())"
                )
            if p.dtype != dtype:
                raise TypeError(
                    f"{type(self).__name__}'s parameters must share one dtype: {name} is {p.dtype}, "
                    f"the first parameter {dtype}"
                )
        if dtype not in _SUPPORTED_DTYPES:
            raise TypeError(
                f"{type(self).__name__} computes in torch.float32 or torch.float64, its parameters are "
                f"{dtype}: convert the module with .float() or .double()"
            )
        double = dtype == torch.float64
        with self._fr_lock:
            runtime = self._fr_runtime
            if runtime is None or runtime.config != config or runtime.double != double:
                runtime = Runtime(config, double)
                self._fr_runtime = runtime
            generation = self._fr_generation
        # Every torch operation that writes a tensor advances its version counter. Inference tensors
        # have none: a new object in the key, equal to no other, makes every call upload them.
        versions = tuple(object() if p.is_inference() else p._version for p in params)
        key = (generation, tuple(p.data_ptr() for p in params), versions)
        return runtime, key, params

    def _fr_check_tensor(self, name: str, t: torch.Tensor, dtype: torch.dtype) -> None:
        if t.device.type != "cpu":
            raise RuntimeError(f"{type(self).__name__} runs on the CPU: {name} is on {t.device}")
        if t.dtype != dtype:
            raise ValueError(
                f"{type(self).__name__}: {name} has dtype {t.dtype} but the module's weights are {dtype}: "
                f"convert it with .to({dtype}), or convert the module with .to({t.dtype})"
            )

    def _fr_run(
        self,
        x: torch.Tensor,
        h0: torch.Tensor | None,
        c0: torch.Tensor | None,
        lengths: np.ndarray | None,
        masks: list[np.ndarray] | None,
        runtime: Runtime,
        key: Any,
        params: tuple[torch.Tensor, ...],
    ) -> tuple[torch.Tensor, ...]:
        """x (T, N, I), h0, c0 in the kernels' layout -> (y, h_n[, c_n]) with autograd when needed."""
        inputs = [t for t in (x, h0, c0) if t is not None]
        if torch.is_grad_enabled() and any(t.requires_grad for t in (*inputs, *params)):
            return _StackFunction.apply(runtime, key, x, h0, c0, lengths, masks, *params)
        runtime.begin_call(_weights(params), key)
        try:
            if masks is None:
                y, h, c = runtime.stack.forward(_numpy(x), _numpy(h0), _numpy(c0), lengths)
            else:
                y, h, c, _ = runtime.stack.forward_train(_numpy(x), _numpy(h0), _numpy(c0), lengths, masks)
        finally:
            runtime.end_call()
        out = (torch.from_numpy(y), torch.from_numpy(h))
        return out if c is None else (*out, torch.from_numpy(c))


# -- layers ---------------------------------------------------------------------------------------------


def _packed_index(batch_sizes: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, int, int]:
    """For a PackedSequence's batch_sizes (T,): the rows of the padded (T*N) batch that the packed rows
    fill, in packed order; the lengths (N,) in the packed (sorted) batch order; T; N."""
    sizes = batch_sizes.detach().cpu().numpy().astype(np.int64)
    steps, batch = int(sizes.shape[0]), int(sizes[0])
    valid = np.arange(batch)[None, :] < sizes[:, None]  # (T, N)
    index = torch.from_numpy(np.flatnonzero(valid.ravel()))
    lengths = valid.sum(axis=0).astype(np.int64)
    return index, lengths, steps, batch


def _dropout_masks(
    p: float,
    count: int,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    index: torch.Tensor | None,
    padded_shape: tuple[int, ...],
) -> list[np.ndarray]:
    """``count`` dropout masks (already scaled by 1/(1-p)) drawn from torch's generator in the order and
    shapes torch.nn draws them on the CPU (the layer's output: (T, N, F) padded, or (rows, F) packed),
    returned in the kernels' padded layout (T, N, F)."""
    masks = []
    for _ in range(count):
        if p == 1.0:
            noise = torch.zeros(shape, dtype=dtype)
        else:
            noise = torch.empty(shape, dtype=dtype).bernoulli_(1.0 - p).div_(1.0 - p)
        if index is not None:
            full = torch.zeros((padded_shape[0] * padded_shape[1], padded_shape[2]), dtype=dtype)
            full.index_copy_(0, index, noise)
            noise = full.view(padded_shape)
        masks.append(noise.numpy())
    return masks


class _LayerMixin(_FusedModule):
    """forward() for LSTM, GRU and RNN, with torch.nn's signature, checks and results."""

    def _fr_config(self) -> StackConfig:
        return StackConfig(
            cell_kind_from_torch_mode(self.mode).name,
            self.input_size,
            self.hidden_size,
            self.num_layers,
            bool(self.bias),
            bool(self.bidirectional),
            int(getattr(self, "proj_size", 0)),
        )

    def _fr_params(self, config: StackConfig) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, name) for name in config.param_names())

    def flatten_parameters(self) -> None:
        """torch.nn's (a no-op on the CPU), and the kernels' packed weights are refreshed before the
        next call, as after ``mark_weights_changed()``."""
        super().flatten_parameters()  # type: ignore[misc]
        if hasattr(self, "_fr_lock"):
            self.mark_weights_changed()

    def _fr_call(self, input: Any, hx: Any) -> Any:
        """What each class's forward does: torch.nn's forward while a graph is recorded, else the kernels."""
        if _capturing_graph():
            return super().forward(input, hx)  # type: ignore[misc]
        return self._fr_forward(input, hx)

    # torch.compile leaves this call out of its graphs (a graph break) and runs it as it is, kernels and
    # all: without this it would trace into the call, and break the graph many times (~1 us per call).
    @torch.compiler.disable
    def _fr_forward(self, input: Any, hx: Any) -> Any:  # noqa: C901 - mirrors torch.nn's checks
        lstm = cell_kind_from_torch_mode(self.mode).has_cell_state  # the state is (h, c)
        name = type(self).__name__
        num_directions = 2 if self.bidirectional else 1
        runtime, key, params = self._fr_prepare()
        dtype = params[0].dtype
        orig_input = input
        index = None
        lengths = None
        if isinstance(orig_input, PackedSequence):
            data, batch_sizes, sorted_indices, unsorted_indices = orig_input
            if hx is not None:
                hx = self.permute_hidden(hx, sorted_indices)
                self.check_forward_args(data, hx, batch_sizes)
            else:
                self.check_input(data, batch_sizes)
            index, lengths, steps, batch = _packed_index(batch_sizes)
            self._fr_check_tensor("input", data, dtype)
            x = data.new_zeros((steps * batch, data.shape[1])).index_copy(0, index, data)
            x = x.view(steps, batch, data.shape[1])
            if (lengths == steps).all():
                lengths = None
            is_batched = True
            batch_dim = 1
        else:
            batch_sizes = None
            if input.dim() not in (2, 3):
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D instead")
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            if hx is not None:
                states = hx if lstm else (hx,)
                if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                    raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
                want = 3 if is_batched else 2
                if any(s.dim() != want for s in states):
                    dims = ", ".join(f"{s.dim()}-D" for s in states)
                    what = "hx and cx" if lstm else "hx"
                    kind = "batched 3-D" if is_batched else "unbatched 2-D"
                    raise RuntimeError(
                        f"For {kind} input, {what} should also be {want}-D but got ({dims}) tensors"
                    )
                if not is_batched:
                    states = tuple(s.unsqueeze(1) for s in states)
                    hx = states if lstm else states[0]
                self.check_forward_args(input, hx, None)
            else:
                self.check_input(input, None)
            self._fr_check_tensor("input", input, dtype)
            x = input.transpose(0, 1) if self.batch_first else input
            steps, batch = x.shape[0], x.shape[1]
            sorted_indices = unsorted_indices = None
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(
                f"{name}: input must hold at least one time step and one sequence, got {steps} steps "
                f"of {batch} sequences"
            )
        h0 = c0 = None
        if hx is not None:
            if lstm:
                h0, c0 = hx
                self._fr_check_tensor("hx[1]", c0, dtype)
            else:
                h0 = hx
            self._fr_check_tensor("hx[0]" if lstm else "hx", h0, dtype)
        masks = None
        p = float(self.dropout)
        if self.training and p > 0 and self.num_layers > 1:
            features = num_directions * runtime.config.output_size
            shape = (int(index.shape[0]), features) if index is not None else (steps, batch, features)
            masks = _dropout_masks(p, self.num_layers - 1, shape, dtype, index, (steps, batch, features))
        result = self._fr_run(x, h0, c0, lengths, masks, runtime, key, params)
        y = result[0]
        hidden = result[1:] if lstm else result[1]
        if index is not None:
            y = y.reshape(steps * batch, y.shape[2]).index_select(0, index)
            output = PackedSequence(y, batch_sizes, sorted_indices, unsorted_indices)
            return output, self.permute_hidden(hidden, unsorted_indices)
        if self.batch_first:
            y = y.transpose(0, 1)
        if not is_batched:
            y = y.squeeze(batch_dim)
            hidden = (hidden[0].squeeze(1), hidden[1].squeeze(1)) if lstm else hidden.squeeze(1)
        return y, hidden


class LSTM(_LayerMixin, nn.LSTM):
    r"""``torch.nn.LSTM`` running fusedrnn's kernels: a multi-layer long short-term memory (LSTM) network
    on CPU tensors.

    A subclass of ``torch.nn.LSTM`` with its constructor, its parameters (``nn.Parameter``, PyTorch's
    names, shapes and initialization), ``state_dict``, ``.to()``, ``train()``/``eval()`` and its
    ``forward`` signature and results: ``isinstance(lstm, torch.nn.LSTM)`` holds, and a ``state_dict``
    loads from one module into the other.
    Only ``forward`` differs: it runs fusedrnn's compiled stack on the CPU, with autograd through its fused
    backward pass, and gives torch.nn's results to float rounding. It falls back to ``torch.nn.LSTM``'s
    own forward (torch's kernels, the same parameters) only while ``torch.jit.trace``,
    ``torch.onnx.export`` or ``torch.export`` records it, so that the recorded graph is torch.nn's; under
    ``torch.compile`` the kernels run, outside the compiled graph. Parameters on another device than the
    CPU, or of another dtype than float32 and float64, raise an error when the module is called rather
    than fall back: use ``torch.nn.LSTM`` there. The module docstring says how the kernels see weight
    changes, and what shipping a model records.

    ``output, (h_n, c_n) = lstm(input, (h_0, c_0)=None)``. For each step t of the input sequence, each
    layer computes PyTorch's equations, with the gates in its order i, f, g, o:

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

    With ``proj_size`` = P > 0 the hidden state is projected by :math:`W_{hr}` = ``weight_hr_l{k}``
    (P, H), so that :math:`h_t`, ``h_0``, ``h_n`` and each direction's output have P features while
    :math:`c_t` keeps H:

    .. math::

        h_t = W_{hr} (o_t \odot \tanh(c_t))

    Layer k >= 1 reads layer k-1's output: :math:`x^{(k)}_t = \delta^{(k-1)}_t \odot y^{(k-1)}_t`, where
    :math:`\delta` is 1 in eval mode, and in training mode a dropout mask (Bernoulli(1 - p) / (1 - p),
    p = ``dropout``) drawn from torch's generator as torch.nn draws it. A layer's output
    :math:`y^{(k)}_t` is its :math:`h_t`, or with ``bidirectional=True`` the concatenation
    :math:`[h^{\rightarrow}_t, h^{\leftarrow}_t]` of the forward direction and of the reverse direction,
    which has parameters of its own (suffix ``_reverse``) and runs from the last step to the first.
    :class:`fusedrnn.LSTM` is the same network on NumPy arrays, with the options of ONNX and Keras
    besides (peepholes, clip, coupled gates, hard-sigmoid gates, residual connections).

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
        True: ``input`` and ``output`` are (N, T, features) instead of (T, N, features); the states are
        not affected.
    dropout : float, default 0.0
        p, the probability of zeroing an element of each layer's output but the last, in training mode;
        eval mode never drops.
    bidirectional : bool, default False
        True: a second direction per layer, reading the sequence backwards.
    proj_size : int, default 0
        P: the projection above when > 0 (it must be smaller than ``hidden_size``).
    device : torch.device, optional
        Where the parameters are made; a call needs them on the CPU.
    dtype : torch.dtype, optional
        The parameters' dtype (None: torch's default dtype); a call needs torch.float32 or torch.float64,
        and an input and states of that dtype.

    Shapes
    ------
    T steps, N sequences, I = ``input_size``, H = ``hidden_size``, H_out = P if ``proj_size`` > 0 else H,
    D = 2 if ``bidirectional`` else 1, L = ``num_layers``.

    - ``input``: (T, N, I); (N, T, I) with ``batch_first=True``; (T, I) for one unbatched sequence; or a
      ``PackedSequence`` of sequences of different lengths.
    - ``hx = (h_0, c_0)`` and the returned ``(h_n, c_n)``: ``h`` (D*L, N, H_out) and ``c`` (D*L, N, H),
      entry ``k*D + d`` for layer k and direction d (1: the reverse direction); without the N axis
      unbatched. ``hx=None`` means zeros. ``h_n`` and ``c_n`` hold the state after each sequence's last
      step (of a ``PackedSequence``, its own last step; the reverse direction starts there).
    - ``output``: (T, N, D*H_out), the last layer's output at every step, the forward direction's
      features first; (N, T, D*H_out) with ``batch_first=True``; (T, D*H_out) unbatched; a
      ``PackedSequence`` with the input's batch sizes when the input is one.

    Attributes
    ----------
    weight_ih_l{k}[_reverse] : torch.nn.Parameter (4H, I) for k = 0, else (4H, D*H_out)
        :math:`[W_{ii}; W_{if}; W_{ig}; W_{io}]` of layer k (and direction).
    weight_hh_l{k}[_reverse] : torch.nn.Parameter (4H, H_out)
        :math:`[W_{hi}; W_{hf}; W_{hg}; W_{ho}]`.
    bias_ih_l{k}[_reverse] : torch.nn.Parameter (4H,)
        :math:`[b_{ii}; b_{if}; b_{ig}; b_{io}]` (with ``bias=True``).
    bias_hh_l{k}[_reverse] : torch.nn.Parameter (4H,)
        :math:`[b_{hi}; b_{hf}; b_{hg}; b_{ho}]` (with ``bias=True``).
    weight_hr_l{k}[_reverse] : torch.nn.Parameter (P, H)
        :math:`W_{hr}` (with ``proj_size`` > 0).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()

    def forward(self, input: Any, hx: Any = None) -> Any:
        """Run the layers over a sequence: ``output, (h_n, c_n) = lstm(input, hx=None)``, as
        ``torch.nn.LSTM.forward`` does (on fusedrnn's kernels; see the class).

        Parameters
        ----------
        input : Tensor or PackedSequence
            (T, N, I), (N, T, I) with ``batch_first=True``, (T, I) unbatched, or a ``PackedSequence``.
        hx : tuple (h_0, c_0) of Tensor, optional
            h_0 (D*L, N, H_out) and c_0 (D*L, N, H) (without N unbatched), of the parameters' dtype;
            None: zeros.

        Returns
        -------
        output : Tensor or PackedSequence
            (T, N, D*H_out) (batch_first: (N, T, D*H_out); unbatched: (T, D*H_out)); a
            ``PackedSequence`` when ``input`` is one.
        (h_n, c_n) : tuple of Tensor
            (D*L, N, H_out) and (D*L, N, H), the state after each sequence's last step.
        """
        return self._fr_call(input, hx)


class GRU(_LayerMixin, nn.GRU):
    r"""``torch.nn.GRU`` running fusedrnn's kernels: a multi-layer gated recurrent unit (GRU) network on
    CPU tensors.

    A subclass of ``torch.nn.GRU`` with its constructor, its parameters (``nn.Parameter``, PyTorch's
    names, shapes and initialization), ``state_dict``, ``.to()``, ``train()``/``eval()`` and its
    ``forward`` signature and results: ``isinstance(gru, torch.nn.GRU)`` holds, and a ``state_dict``
    loads from one module into the other.
    Only ``forward`` differs: it runs fusedrnn's compiled stack on the CPU, with autograd through its fused
    backward pass, and gives torch.nn's results to float rounding. It falls back to ``torch.nn.GRU``'s
    own forward (torch's kernels, the same parameters) only while ``torch.jit.trace``,
    ``torch.onnx.export`` or ``torch.export`` records it, so that the recorded graph is torch.nn's; under
    ``torch.compile`` the kernels run, outside the compiled graph. Parameters on another device than the
    CPU, or of another dtype than float32 and float64, raise an error when the module is called rather
    than fall back: use ``torch.nn.GRU`` there. The module docstring says how the kernels see weight
    changes, and what shipping a model records.

    ``output, h_n = gru(input, h_0=None)``. For each step t of the input sequence, each layer computes
    PyTorch's equations, with the gates in its order r, z, n:

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
    ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (zero with ``bias=False``). The reset gate multiplies the
    recurrent product and its bias (the linear-before-reset form); :class:`fusedrnn.GRU` on NumPy arrays
    also has the reset-before form of ONNX and Keras.

    Layer k >= 1 reads layer k-1's output: :math:`x^{(k)}_t = \delta^{(k-1)}_t \odot y^{(k-1)}_t`, where
    :math:`\delta` is 1 in eval mode, and in training mode a dropout mask (Bernoulli(1 - p) / (1 - p),
    p = ``dropout``) drawn from torch's generator as torch.nn draws it. A layer's output
    :math:`y^{(k)}_t` is its :math:`h_t`, or with ``bidirectional=True`` the concatenation
    :math:`[h^{\rightarrow}_t, h^{\leftarrow}_t]` of the forward direction and of the reverse direction,
    which has parameters of its own (suffix ``_reverse``) and runs from the last step to the first.

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
        True: ``input`` and ``output`` are (N, T, features) instead of (T, N, features); the state is
        not affected.
    dropout : float, default 0.0
        p, the probability of zeroing an element of each layer's output but the last, in training mode;
        eval mode never drops.
    bidirectional : bool, default False
        True: a second direction per layer, reading the sequence backwards.
    device : torch.device, optional
        Where the parameters are made; a call needs them on the CPU.
    dtype : torch.dtype, optional
        The parameters' dtype (None: torch's default dtype); a call needs torch.float32 or torch.float64,
        and an input and state of that dtype.

    Shapes
    ------
    T steps, N sequences, I = ``input_size``, H = ``hidden_size``, D = 2 if ``bidirectional`` else 1,
    L = ``num_layers``.

    - ``input``: (T, N, I); (N, T, I) with ``batch_first=True``; (T, I) for one unbatched sequence; or a
      ``PackedSequence`` of sequences of different lengths.
    - ``h_0``, ``h_n``: (D*L, N, H), entry ``k*D + d`` for layer k and direction d (1: the reverse
      direction); (D*L, H) unbatched. ``h_0=None`` means zeros. ``h_n`` holds the state after each
      sequence's last step (of a ``PackedSequence``, its own last step; the reverse direction starts
      there).
    - ``output``: (T, N, D*H), the last layer's output at every step, the forward direction's features
      first; (N, T, D*H) with ``batch_first=True``; (T, D*H) unbatched; a ``PackedSequence`` with the
      input's batch sizes when the input is one.

    Attributes
    ----------
    weight_ih_l{k}[_reverse] : torch.nn.Parameter (3H, I) for k = 0, else (3H, D*H)
        :math:`[W_{ir}; W_{iz}; W_{in}]` of layer k (and direction).
    weight_hh_l{k}[_reverse] : torch.nn.Parameter (3H, H)
        :math:`[W_{hr}; W_{hz}; W_{hn}]`.
    bias_ih_l{k}[_reverse] : torch.nn.Parameter (3H,)
        :math:`[b_{ir}; b_{iz}; b_{in}]` (with ``bias=True``).
    bias_hh_l{k}[_reverse] : torch.nn.Parameter (3H,)
        :math:`[b_{hr}; b_{hz}; b_{hn}]` (with ``bias=True``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()

    def forward(self, input: Any, hx: Any = None) -> Any:
        """Run the layers over a sequence: ``output, h_n = gru(input, hx=None)``, as
        ``torch.nn.GRU.forward`` does (on fusedrnn's kernels; see the class).

        Parameters
        ----------
        input : Tensor or PackedSequence
            (T, N, I), (N, T, I) with ``batch_first=True``, (T, I) unbatched, or a ``PackedSequence``.
        hx : Tensor, optional
            h_0, (D*L, N, H), or (D*L, H) unbatched, of the parameters' dtype; None: zeros.

        Returns
        -------
        output : Tensor or PackedSequence
            (T, N, D*H) (batch_first: (N, T, D*H); unbatched: (T, D*H)); a ``PackedSequence`` when
            ``input`` is one.
        h_n : Tensor
            (D*L, N, H), the state after each sequence's last step.
        """
        return self._fr_call(input, hx)


class RNN(_LayerMixin, nn.RNN):
    r"""``torch.nn.RNN`` running fusedrnn's kernels: a multi-layer Elman RNN with a tanh or ReLU
    nonlinearity on CPU tensors.

    A subclass of ``torch.nn.RNN`` with its constructor (``nonlinearity`` included), its parameters
    (``nn.Parameter``, PyTorch's names, shapes and initialization), ``state_dict``, ``.to()``,
    ``train()``/``eval()`` and its ``forward`` signature and results: ``isinstance(rnn, torch.nn.RNN)``
    holds, and a ``state_dict`` loads from one module into the other.
    Only ``forward`` differs: it runs fusedrnn's compiled stack on the CPU, with autograd through its fused
    backward pass, and gives torch.nn's results to float rounding. It falls back to ``torch.nn.RNN``'s
    own forward (torch's kernels, the same parameters) only while ``torch.jit.trace``,
    ``torch.onnx.export`` or ``torch.export`` records it, so that the recorded graph is torch.nn's; under
    ``torch.compile`` the kernels run, outside the compiled graph. Parameters on another device than the
    CPU, or of another dtype than float32 and float64, raise an error when the module is called rather
    than fall back: use ``torch.nn.RNN`` there. The module docstring says how the kernels see weight
    changes, and what shipping a model records.

    ``output, h_n = rnn(input, h_0=None)``. For each step t of the input sequence, each layer computes

    .. math::

        h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    or, with ``nonlinearity="relu"``, :math:`h_t = \max(0,\ W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`,
    where :math:`x_t` is the layer's input at step t, :math:`h_{t-1}` its state before the step (the
    initial state ``h_0`` at t = 0), :math:`W_{ih}` = ``weight_ih_l{k}``, :math:`W_{hh}` =
    ``weight_hh_l{k}``, :math:`b_{ih}` = ``bias_ih_l{k}``, :math:`b_{hh}` = ``bias_hh_l{k}`` (zero with
    ``bias=False``).

    Layer k >= 1 reads layer k-1's output: :math:`x^{(k)}_t = \delta^{(k-1)}_t \odot y^{(k-1)}_t`, where
    :math:`\odot` is the elementwise product and :math:`\delta` is 1 in eval mode, and in training mode a
    dropout mask (Bernoulli(1 - p) / (1 - p), p = ``dropout``) drawn from torch's generator as torch.nn
    draws it. A layer's output :math:`y^{(k)}_t` is its :math:`h_t`, or with ``bidirectional=True`` the
    concatenation :math:`[h^{\rightarrow}_t, h^{\leftarrow}_t]` of the forward direction and of the
    reverse direction, which has parameters of its own (suffix ``_reverse``) and runs from the last step
    to the first.

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
        True: ``input`` and ``output`` are (N, T, features) instead of (T, N, features); the state is
        not affected.
    dropout : float, default 0.0
        p, the probability of zeroing an element of each layer's output but the last, in training mode;
        eval mode never drops.
    bidirectional : bool, default False
        True: a second direction per layer, reading the sequence backwards.
    device : torch.device, optional
        Where the parameters are made; a call needs them on the CPU.
    dtype : torch.dtype, optional
        The parameters' dtype (None: torch's default dtype); a call needs torch.float32 or torch.float64,
        and an input and state of that dtype.

    Shapes
    ------
    T steps, N sequences, I = ``input_size``, H = ``hidden_size``, D = 2 if ``bidirectional`` else 1,
    L = ``num_layers``.

    - ``input``: (T, N, I); (N, T, I) with ``batch_first=True``; (T, I) for one unbatched sequence; or a
      ``PackedSequence`` of sequences of different lengths.
    - ``h_0``, ``h_n``: (D*L, N, H), entry ``k*D + d`` for layer k and direction d (1: the reverse
      direction); (D*L, H) unbatched. ``h_0=None`` means zeros. ``h_n`` holds the state after each
      sequence's last step (of a ``PackedSequence``, its own last step; the reverse direction starts
      there).
    - ``output``: (T, N, D*H), the last layer's output at every step, the forward direction's features
      first; (N, T, D*H) with ``batch_first=True``; (T, D*H) unbatched; a ``PackedSequence`` with the
      input's batch sizes when the input is one.

    Attributes
    ----------
    weight_ih_l{k}[_reverse] : torch.nn.Parameter (H, I) for k = 0, else (H, D*H)
        :math:`W_{ih}` of layer k (and direction).
    weight_hh_l{k}[_reverse] : torch.nn.Parameter (H, H)
        :math:`W_{hh}`.
    bias_ih_l{k}[_reverse] : torch.nn.Parameter (H,)
        :math:`b_{ih}` (with ``bias=True``).
    bias_hh_l{k}[_reverse] : torch.nn.Parameter (H,)
        :math:`b_{hh}` (with ``bias=True``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()

    def forward(self, input: Any, hx: Any = None) -> Any:
        """Run the layers over a sequence: ``output, h_n = rnn(input, hx=None)``, as
        ``torch.nn.RNN.forward`` does (on fusedrnn's kernels; see the class).

        Parameters
        ----------
        input : Tensor or PackedSequence
            (T, N, I), (N, T, I) with ``batch_first=True``, (T, I) unbatched, or a ``PackedSequence``.
        hx : Tensor, optional
            h_0, (D*L, N, H), or (D*L, H) unbatched, of the parameters' dtype; None: zeros.

        Returns
        -------
        output : Tensor or PackedSequence
            (T, N, D*H) (batch_first: (N, T, D*H); unbatched: (T, D*H)); a ``PackedSequence`` when
            ``input`` is one.
        h_n : Tensor
            (D*L, N, H), the state after each sequence's last step.
        """
        return self._fr_call(input, hx)


# -- cells ----------------------------------------------------------------------------------------------


class _CellMixin(_FusedModule):
    """forward() for the cells: one step of a one-layer stack, with torch.nn's signature and checks."""

    _fr_class = ""  # the torch.nn cell class this one subclasses, which names its kind

    def _fr_config(self) -> StackConfig:
        return StackConfig(self._fr_kind().name, self.input_size, self.hidden_size, 1, bool(self.bias))

    def _fr_kind(self) -> CellKind:
        return cell_kind_from_torch_class(self._fr_class)

    def _fr_params(self, config: StackConfig) -> tuple[torch.Tensor, ...]:
        # One layer and direction: a cell's parameters are named by their roles alone.
        return tuple(getattr(self, role) for role in config.layer_param_names(0, 0))

    def _fr_step(self, input: torch.Tensor, hx: Any) -> Any:
        if _capturing_graph():
            return super().forward(input, hx)  # type: ignore[misc]
        return self._fr_fused_step(input, hx)

    @torch.compiler.disable  # as _LayerMixin._fr_forward
    def _fr_fused_step(self, input: torch.Tensor, hx: Any) -> Any:
        lstm = cell_kind_from_torch_class(self._fr_class).has_cell_state  # the state is (h, c)
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        states = None
        if hx is not None:
            states = tuple(hx) if lstm else (hx,)
            if lstm and len(states) != 2:
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            for k, s in enumerate(states):
                if s.dim() not in (1, 2):
                    what = f"hx[{k}]" if lstm else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {s.dim()}D instead")
        runtime, key, params = self._fr_prepare()
        dtype = params[0].dtype
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        self._fr_check_tensor("input", input, dtype)
        batch = input.shape[0]
        if input.shape[1] != self.input_size:
            raise RuntimeError(
                f"{name}: input has inconsistent input_size: got {input.shape[1]} expected {self.input_size}"
            )
        if batch == 0:
            raise ValueError(f"{name}: input must hold at least one sample, got shape {tuple(input.shape)}")
        h0 = c0 = None
        if states is not None:
            if not is_batched:
                states = tuple(s.unsqueeze(0) for s in states)
            for k, s in enumerate(states):
                what = f"hx[{k}]" if lstm else "hx"
                self._fr_check_tensor(what, s, dtype)
                if tuple(s.shape) != (batch, self.hidden_size):
                    raise RuntimeError(
                        f"{name}: {what} must have shape {(batch, self.hidden_size)} for input of shape "
                        f"{tuple(input.shape)}, got {tuple(s.shape)}"
                    )
            h0 = states[0].unsqueeze(0)
            c0 = states[1].unsqueeze(0) if lstm else None
        result = self._fr_run(input.unsqueeze(0), h0, c0, None, None, runtime, key, params)
        h = result[1][0]
        if lstm:
            c = result[2][0]
            return (h, c) if is_batched else (h.squeeze(0), c.squeeze(0))
        return h if is_batched else h.squeeze(0)


class LSTMCell(_CellMixin, nn.LSTMCell):
    r"""``torch.nn.LSTMCell`` running fusedrnn's kernels: one step of a long short-term memory (LSTM) cell
    on CPU tensors.

    A subclass of ``torch.nn.LSTMCell`` with its constructor, its parameters (``nn.Parameter``, PyTorch's
    names, shapes and initialization), ``state_dict``, ``.to()`` and its ``forward`` signature and results:
    ``isinstance(cell, torch.nn.LSTMCell)`` holds, and a ``state_dict`` loads from one module into the other.
    Only ``forward`` differs: it runs fusedrnn's compiled stack on the CPU, with autograd through its fused
    backward pass, and gives torch.nn's results to float rounding. It falls back to ``torch.nn.LSTMCell``'s
    own forward (torch's kernels, the same parameters) only while ``torch.jit.trace``,
    ``torch.onnx.export`` or ``torch.export`` records it, so that the recorded graph is torch.nn's; under
    ``torch.compile`` the kernels run, outside the compiled graph. Parameters on another device than the
    CPU, or of another dtype than float32 and float64, raise an error when the module is called rather
    than fall back: use ``torch.nn.LSTMCell`` there. The module docstring says how the kernels see weight
    changes, and what shipping a model records.

    ``h', c' = cell(input, (h, c)=None)``, with the gates in PyTorch's order i, f, g, o:

    .. math::

        \begin{array}{ll}
        i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \\
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' = f \odot c + i \odot g \\
        h' = o \odot \tanh(c')
        \end{array}

    where :math:`x` is the input, :math:`\sigma` the logistic function, :math:`\odot` the elementwise
    product, :math:`W_{i*}` the four row blocks of ``weight_ih``, :math:`W_{h*}` those of ``weight_hh``,
    and :math:`b_{i*}`, :math:`b_{h*}` those of ``bias_ih``, ``bias_hh`` (zero with ``bias=False``).

    Parameters
    ----------
    input_size : int
        I, the number of features of the input.
    hidden_size : int
        H, the number of features of the state.
    bias : bool, default True
        False: no ``bias_ih``, ``bias_hh`` (the b terms are zero).
    device : torch.device, optional
        Where the parameters are made; a call needs them on the CPU.
    dtype : torch.dtype, optional
        The parameters' dtype (None: torch's default dtype); a call needs torch.float32 or torch.float64,
        and an input and state of that dtype.

    Shapes
    ------
    N samples, I = ``input_size``, H = ``hidden_size``.

    - ``input``: (N, I), or (I,) for one unbatched sample.
    - ``h``, ``c`` and the returned ``h'``, ``c'``: (N, H) each, or (H,) unbatched; ``hx=None`` means
      zeros.

    Attributes
    ----------
    weight_ih : torch.nn.Parameter (4H, I)
        :math:`[W_{ii}; W_{if}; W_{ig}; W_{io}]`.
    weight_hh : torch.nn.Parameter (4H, H)
        :math:`[W_{hi}; W_{hf}; W_{hg}; W_{ho}]`.
    bias_ih : torch.nn.Parameter (4H,)
        :math:`[b_{ii}; b_{if}; b_{ig}; b_{io}]` (with ``bias=True``).
    bias_hh : torch.nn.Parameter (4H,)
        :math:`[b_{hi}; b_{hf}; b_{hg}; b_{ho}]` (with ``bias=True``).
    """

    _fr_class = "LSTMCell"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()

    def forward(self, input: torch.Tensor, hx: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``h', c' = cell(input, hx=None)``, as ``torch.nn.LSTMCell.forward`` does (on
        fusedrnn's kernels; see the class).

        Parameters
        ----------
        input : Tensor
            (N, I), or (I,) unbatched.
        hx : tuple (h, c) of Tensor, optional
            Each (N, H), or (H,) unbatched, of the parameters' dtype; None: zeros.

        Returns
        -------
        (h', c') : tuple of Tensor
            The new state, each (N, H), or (H,) unbatched.
        """
        return self._fr_step(input, hx)


class GRUCell(_CellMixin, nn.GRUCell):
    r"""``torch.nn.GRUCell`` running fusedrnn's kernels: one step of a gated recurrent unit (GRU) cell on
    CPU tensors.

    A subclass of ``torch.nn.GRUCell`` with its constructor, its parameters (``nn.Parameter``, PyTorch's
    names, shapes and initialization), ``state_dict``, ``.to()`` and its ``forward`` signature and results:
    ``isinstance(cell, torch.nn.GRUCell)`` holds, and a ``state_dict`` loads from one module into the other.
    Only ``forward`` differs: it runs fusedrnn's compiled stack on the CPU, with autograd through its fused
    backward pass, and gives torch.nn's results to float rounding. It falls back to ``torch.nn.GRUCell``'s
    own forward (torch's kernels, the same parameters) only while ``torch.jit.trace``,
    ``torch.onnx.export`` or ``torch.export`` records it, so that the recorded graph is torch.nn's; under
    ``torch.compile`` the kernels run, outside the compiled graph. Parameters on another device than the
    CPU, or of another dtype than float32 and float64, raise an error when the module is called rather
    than fall back: use ``torch.nn.GRUCell`` there. The module docstring says how the kernels see weight
    changes, and what shipping a model records.

    ``h' = cell(input, h=None)``, with the gates in PyTorch's order r, z, n:

    .. math::

        \begin{array}{ll}
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
        h' = (1 - z) \odot n + z \odot h
        \end{array}

    where :math:`x` is the input, :math:`\sigma` the logistic function, :math:`\odot` the elementwise
    product, :math:`W_{i*}` the three row blocks of ``weight_ih``, :math:`W_{h*}` those of ``weight_hh``,
    and :math:`b_{i*}`, :math:`b_{h*}` those of ``bias_ih``, ``bias_hh`` (zero with ``bias=False``). That
    is PyTorch's linear-before-reset form; :class:`fusedrnn.GRUCell` on NumPy arrays also has the
    reset-before form.

    Parameters
    ----------
    input_size : int
        I, the number of features of the input.
    hidden_size : int
        H, the number of features of the state.
    bias : bool, default True
        False: no ``bias_ih``, ``bias_hh`` (the b terms are zero).
    device : torch.device, optional
        Where the parameters are made; a call needs them on the CPU.
    dtype : torch.dtype, optional
        The parameters' dtype (None: torch's default dtype); a call needs torch.float32 or torch.float64,
        and an input and state of that dtype.

    Shapes
    ------
    N samples, I = ``input_size``, H = ``hidden_size``.

    - ``input``: (N, I), or (I,) for one unbatched sample.
    - ``h`` and the returned ``h'``: (N, H), or (H,) unbatched; ``hx=None`` means zeros.

    Attributes
    ----------
    weight_ih : torch.nn.Parameter (3H, I)
        :math:`[W_{ir}; W_{iz}; W_{in}]`.
    weight_hh : torch.nn.Parameter (3H, H)
        :math:`[W_{hr}; W_{hz}; W_{hn}]`.
    bias_ih : torch.nn.Parameter (3H,)
        :math:`[b_{ir}; b_{iz}; b_{in}]` (with ``bias=True``).
    bias_hh : torch.nn.Parameter (3H,)
        :math:`[b_{hr}; b_{hz}; b_{hn}]` (with ``bias=True``).
    """

    _fr_class = "GRUCell"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``h' = cell(input, hx=None)``, as ``torch.nn.GRUCell.forward`` does (on fusedrnn's
        kernels; see the class).

        Parameters
        ----------
        input : Tensor
            (N, I), or (I,) unbatched.
        hx : Tensor, optional
            h, (N, H), or (H,) unbatched, of the parameters' dtype; None: zeros.

        Returns
        -------
        h' : Tensor
            The new state, (N, H), or (H,) unbatched.
        """
        return self._fr_step(input, hx)


class RNNCell(_CellMixin, nn.RNNCell):
    r"""``torch.nn.RNNCell`` running fusedrnn's kernels: one step of an Elman RNN cell with a tanh or ReLU
    nonlinearity on CPU tensors.

    A subclass of ``torch.nn.RNNCell`` with its constructor, its parameters (``nn.Parameter``, PyTorch's
    names, shapes and initialization), ``state_dict``, ``.to()`` and its ``forward`` signature and results:
    ``isinstance(cell, torch.nn.RNNCell)`` holds, and a ``state_dict`` loads from one module into the other.
    Only ``forward`` differs: it runs fusedrnn's compiled stack on the CPU, with autograd through its fused
    backward pass, and gives torch.nn's results to float rounding. It falls back to ``torch.nn.RNNCell``'s
    own forward (torch's kernels, the same parameters) only while ``torch.jit.trace``,
    ``torch.onnx.export`` or ``torch.export`` records it, so that the recorded graph is torch.nn's; under
    ``torch.compile`` the kernels run, outside the compiled graph. Parameters on another device than the
    CPU, or of another dtype than float32 and float64, raise an error when the module is called rather
    than fall back: use ``torch.nn.RNNCell`` there. The module docstring says how the kernels see weight
    changes, and what shipping a model records.

    ``h' = cell(input, h=None)``:

    .. math::

        h' = \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})

    or, with ``nonlinearity="relu"``, :math:`h' = \max(0,\ W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`, where
    :math:`x` is the input, :math:`W_{ih}` = ``weight_ih``, :math:`W_{hh}` = ``weight_hh``,
    :math:`b_{ih}` = ``bias_ih``, :math:`b_{hh}` = ``bias_hh`` (zero with ``bias=False``).

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
    device : torch.device, optional
        Where the parameters are made; a call needs them on the CPU.
    dtype : torch.dtype, optional
        The parameters' dtype (None: torch's default dtype); a call needs torch.float32 or torch.float64,
        and an input and state of that dtype.

    Shapes
    ------
    N samples, I = ``input_size``, H = ``hidden_size``.

    - ``input``: (N, I), or (I,) for one unbatched sample.
    - ``h`` and the returned ``h'``: (N, H), or (H,) unbatched; ``hx=None`` means zeros.

    Attributes
    ----------
    weight_ih : torch.nn.Parameter (H, I)
        :math:`W_{ih}`.
    weight_hh : torch.nn.Parameter (H, H)
        :math:`W_{hh}`.
    bias_ih : torch.nn.Parameter (H,)
        :math:`b_{ih}` (with ``bias=True``).
    bias_hh : torch.nn.Parameter (H,)
        :math:`b_{hh}` (with ``bias=True``).
    """

    _fr_class = "RNNCell"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()

    def _fr_kind(self) -> CellKind:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return cell_kind_from_torch_class(self._fr_class, self.nonlinearity)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``h' = cell(input, hx=None)``, as ``torch.nn.RNNCell.forward`` does (on fusedrnn's
        kernels; see the class).

        Parameters
        ----------
        input : Tensor
            (N, I), or (I,) unbatched.
        hx : Tensor, optional
            h, (N, H), or (H,) unbatched, of the parameters' dtype; None: zeros.

        Returns
        -------
        h' : Tensor
            The new state, (N, H), or (H,) unbatched.
        """
        return self._fr_step(input, hx)
