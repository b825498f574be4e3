"""Drop-in replacements for ``torch.nn``'s recurrent modules that run fusedrnn's kernels.

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

    def forward(self, input: Any, hx: Any = None) -> Any:
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
    """``torch.nn.LSTM`` (same constructor, parameters and forward) running fusedrnn's kernels.

    ``output, (h_n, c_n) = lstm(input, (h_0, c_0)=None)``; input (L, N, H_in), (N, L, H_in) with
    batch_first, (L, H_in) unbatched, or a PackedSequence. See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()


class GRU(_LayerMixin, nn.GRU):
    """``torch.nn.GRU`` (same constructor, parameters and forward) running fusedrnn's kernels.
    ``output, h_n = gru(input, h_0=None)``. See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()


class RNN(_LayerMixin, nn.RNN):
    """``torch.nn.RNN`` (same constructor incl. ``nonlinearity``, parameters and forward) running
    fusedrnn's kernels. ``output, h_n = rnn(input, h_0=None)``. See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()


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
    """``torch.nn.LSTMCell`` running fusedrnn's kernels: ``h_1, c_1 = cell(input, (h_0, c_0)=None)``."""

    _fr_class = "LSTMCell"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()

    def forward(self, input: torch.Tensor, hx: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._fr_step(input, hx)


class GRUCell(_CellMixin, nn.GRUCell):
    """``torch.nn.GRUCell`` running fusedrnn's kernels: ``h_1 = cell(input, h_0=None)``."""

    _fr_class = "GRUCell"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        return self._fr_step(input, hx)


class RNNCell(_CellMixin, nn.RNNCell):
    """``torch.nn.RNNCell`` (``nonlinearity`` "tanh" or "relu") running fusedrnn's kernels:
    ``h_1 = cell(input, h_0=None)``."""

    _fr_class = "RNNCell"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fr_init()

    def _fr_kind(self) -> CellKind:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return cell_kind_from_torch_class(self._fr_class, self.nonlinearity)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        return self._fr_step(input, hx)
