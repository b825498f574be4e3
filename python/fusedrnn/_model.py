"""What fusedrnn's layers and cells share: parameters owned as NumPy arrays, their runtime (the compiled
stack and its safe concurrent use), state_dict / load_state_dict, copies, and the reading of state
arguments."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from . import _validation as v
from ._cells import LAYER_NORM_ROLES
from ._config import StackConfig
from ._runtime import Runtime
from ._state import parse_state

__all__ = ["IncompatibleKeys"]

# A lower bound of the memory each parameter array costs besides its values (the NumPy object, its name
# and dict entry, the kernels' per-layer structures): about 900 bytes measured. It dominates the cost of
# a very deep stack of tiny layers.
_BYTES_PER_ARRAY = 512


def _constant_initial_values(config: StackConfig) -> dict[str, float]:
    """The parameters (stack names) that start at a constant rather than at random: the layer
    normalization's gains (1) and shift (0)."""
    values = {}
    for layer in range(config.num_layers):
        for direction in range(config.num_directions):
            for role, name in config.layer_param_names(layer, direction).items():
                if role in LAYER_NORM_ROLES:
                    values[name] = LAYER_NORM_ROLES[role]
    return values


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` did not match, as torch's namesake: parameters the mapping lacks (with
    strict=False they keep their values) and keys that name no parameter (ignored with strict=False).
    Both lists are empty when everything matched.

    Parameters
    ----------
    missing_keys : list of str
        The parameters' names that the mapping lacks.
    unexpected_keys : list of str
        The mapping's keys that name no parameter.
    """

    missing_keys: list[str]
    unexpected_keys: list[str]


IncompatibleKeys.missing_keys.__doc__ = "The parameters' names that the mapping lacks."
IncompatibleKeys.unexpected_keys.__doc__ = "The mapping's keys that name no parameter."


class _Recurrent:
    """What layers and cells share: parameters owned as NumPy arrays, their upload to the compiled
    stack, state_dict / load_state_dict, and safe concurrent use.

    Weight ownership: the layer keeps one C-contiguous array per parameter (``_parameter_arrays()``,
    PyTorch names). The compiled stack keeps its own packed copy, refreshed before the next call after
    any change. Code that updates the arrays in place (an optimizer) must call ``_mark_weights_changed()``
    afterwards; ``load_state_dict`` and assigning a parameter attribute do so themselves.

    Parameters as attributes (``lstm.weight_ih_l0``, ``cell.bias_hh``), ``parameters()`` and
    ``named_parameters()`` give the live arrays, as torch gives its Parameters. NumPy cannot say whether
    an array was written, so handing one out counts as a change: the next call uploads the weights again
    (and tapes recorded before refuse backward, as after any in-place update). An array kept and written
    after that call needs ``mark_weights_changed()`` (or reading the attribute again) before the next.

    Configuration (``input_size``, ``hidden_size``, ...) is fixed at construction: the compiled stack
    and the parameters' shapes follow from it, so assigning it raises AttributeError.

    Concurrency: any number of calls may run at once (the kernels release the GIL). A re-upload waits
    until no call is using the stack, and calls wait while it runs.

    Copies (``copy.copy``, ``copy.deepcopy``, pickle) are independent models: their own parameter arrays,
    random generator (in the same state) and compiled stack.
    """

    _config: StackConfig
    _dtype: np.dtype
    _names: list[str]
    _params: dict[str, np.ndarray]

    # The configuration's public names (subclasses add theirs): read-only once the model is built.
    _fixed_attributes: frozenset[str] = frozenset({"dtype", "config"})

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
        constants = _constant_initial_values(config)
        params: dict[str, np.ndarray] = {}
        for name, (stack_name, shape) in zip(self._names, named_shapes):
            if stack_name in constants:  # layer normalization: gains 1, shift 0
                params[name] = np.full(shape, constants[stack_name], dtype=self._dtype)
                continue
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
        """The compiled stack (one of ``_core.stacks``)."""
        return self._runtime.stack

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_runtime", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup_runtime()

    # -- parameters as attributes -----------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails. Private names never name a parameter; answering them
        # here would also recurse before _params exists (unpickling, copying).
        params = self.__dict__.get("_params")
        if name.startswith("_") or params is None or name not in params:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        # The caller may write the live array in place: the next call uploads the weights again.
        self._mark_weights_changed()
        return params[name]

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            self._assign_parameter(name, value)
            return
        # Construction sets the configuration; once the compiled stack exists it is fixed.
        if name in self._fixed_attributes and "_runtime" in self.__dict__:
            raise AttributeError(self._fixed_message(name, "set"))
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            raise AttributeError(
                f"cannot delete parameter {name!r} of {type(self).__name__}: its parameters are fixed at "
                "construction (build a layer with bias=False to have no biases)"
            )
        if name in self._fixed_attributes:
            raise AttributeError(self._fixed_message(name, "delete"))
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__dict__.get("_params", ())))

    def _fixed_message(self, name: str, action: str) -> str:
        return (
            f"cannot {action} {name!r} of {self!r}: the configuration is fixed at construction "
            f"(the compiled stack and the parameters' shapes follow from it); build a new "
            f"{type(self).__name__} instead, and load_state_dict() the weights that still fit"
        )

    def _assign_parameter(self, name: str, value: Any) -> None:
        """``model.<name> = value``: checked like torch (same shape; same dtype, as assigning a tensor
        of another dtype to a Parameter's data is refused), then copied into the owned array."""
        target = self._params[name]
        arr = v.as_real_array(name, value)
        if arr.dtype != self._dtype:
            raise TypeError(
                f"{name} must have {type(self).__name__}'s dtype {self._dtype}, got an array of dtype "
                f"{arr.dtype} (convert it with .astype(np.{self._dtype}), or use load_state_dict, "
                "which converts)"
            )
        v.check_shape(name, arr, target.shape)
        with self._runtime.changing():
            np.copyto(target, arr)

    def parameters(self, recurse: bool = True) -> Iterator[np.ndarray]:
        """The live parameter arrays in torch's order (as ``torch.nn.Module.parameters``; ``recurse``
        is accepted for its signature: a model has no submodules).

        Handing them out counts as a change of the weights: the next call uploads them to the kernels
        again (and tapes recorded before refuse backward), so in-place updates through them reach that
        call. An array kept and written after it needs :meth:`mark_weights_changed` before the next."""
        return (arr for _, arr in self.named_parameters(recurse=recurse))

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, live array)`` pairs in torch's order, names prefixed with ``prefix + "."`` when
        given (as ``torch.nn.Module.named_parameters``; ``recurse`` is accepted for its signature: a model
        has no submodules). Counts as a change of the weights."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {v.describe(prefix)}")
        self._mark_weights_changed()  # now, not when the iterator is first advanced
        lead = prefix + "." if prefix else ""
        return iter([(lead + name, self._params[name]) for name in self._names])

    def mark_weights_changed(self) -> None:
        """Declare the parameter arrays written in place (through an array kept from an attribute or
        ``parameters()`` after a call): the next call uploads them first."""
        self._mark_weights_changed()

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
        """The stack's static description (cell, sizes, layers, directions, options), a frozen dataclass;
        the reference implementation (:func:`fusedrnn.reference.forward`) takes it."""
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

    # -- state arguments ---------------------------------------------------------------------------

    # How messages name the state: the kind of model whose state is (h, c), h and c, and the gradients'
    # parts (set by layers and cells).
    _pair_kind: str
    _state_labels: tuple[str, str]
    _gradient_labels: tuple[str, str]

    @property
    def _has_cell_state(self) -> bool:
        return self._config.has_cell_state

    def _state_shapes(self, layout: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of h and c in the caller's layout."""
        raise NotImplementedError

    def _state_meaning(self, layout: Any, gradient: bool) -> str:
        """What the state's shapes are, for the messages that refuse another shape."""
        raise NotImplementedError

    def _state_arrays(
        self, name: str, value: Any, layout: Any, gradient: bool = False
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A state argument (or with ``gradient``, the gradient of a final state) as the kernels' arrays
        ``(h, c)``, checked; see ``_state.parse_state``."""
        return parse_state(
            name,
            value,
            pair=self._pair_kind if self._has_cell_state else None,
            model=type(self).__name__,
            labels=self._gradient_labels if gradient else self._state_labels,
            gradient=gradient,
            shapes=self._state_shapes(layout),
            meaning=self._state_meaning(layout, gradient),
            layout=layout,
            dtype=self._dtype,
        )

    def _public_state(self, h: np.ndarray, c: np.ndarray | None, layout: Any) -> Any:
        """The kernels' final state in the caller's layout: ``(h, c)`` or ``h``."""
        if self._has_cell_state:
            return layout.state_out(h), layout.state_out(c)
        return layout.state_out(h)

    def _check_backward_memory(self, steps: int, batch: int) -> None:
        """Refuse, before trying, a backward pass that cannot be allocated."""
