"""Optimizers that update parameters in place from gradients: ``SGD``, ``Adam`` and ``clip_grad_norm``.

An optimizer is given its parameters once, as any number of *sources*: a fusedrnn layer or cell (its
weights, updated in place, after which the layer refreshes whatever it derived from them), or a dict
name -> NumPy array (for example the weights of a NumPy output head, updated in place too). Each step
takes the gradients in the same order, one dict per source, keyed like that source: for a layer, the
``.params`` of ``tape.backward(...)``::

    lstm = fr.LSTM(8, 32)
    head = {"W": np.zeros((32, 5), np.float32), "b": np.zeros(5, np.float32)}
    opt = fr.optim.Adam(lstm, head, lr=1e-3)
    for x, target in batches:
        tape = lstm.record(x)
        grad_y, head_grads = ...                  # the head's forward and backward, in NumPy
        grads = [tape.backward(grad_y).params, head_grads]
        fr.optim.clip_grad_norm(grads, 1.0)        # optional
        opt.step(grads)

A source's gradient dict may leave parameters out (they are not updated: a frozen parameter) but may not
name a parameter the source does not have, and each gradient must have its parameter's shape. With a
single source, ``step`` also accepts its dict alone. Updates run in each parameter's dtype, with
PyTorch's update rules (``torch.optim.SGD`` with dampening 0, ``torch.optim.Adam`` without amsgrad), so
they give PyTorch's numbers for the same gradients.

``opt.state_dict()`` / ``opt.load_state_dict(sd)`` save and restore what training needs to resume
(torch.optim's layout: ``state`` per parameter index with ``step`` and the moments, ``param_groups``
with the hyperparameters and the parameters' names): an optimizer resumed from it, on the same
parameters, continues exactly as one that never stopped. Pass a layer itself as a source, not
``dict(layer.named_parameters())``: a dict's arrays are updated without telling the layer.

Do not call a layer from another thread while a step updates its weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _validation as v

__all__ = ["Optimizer", "SGD", "Adam", "clip_grad_norm"]


def _is_model(obj: Any) -> bool:
    return hasattr(obj, "_parameter_arrays") and hasattr(obj, "_mark_weights_changed")


class _Source:
    """One group of parameters: a fusedrnn model's, or a dict of NumPy arrays."""

    __slots__ = ("obj", "params", "label")

    def __init__(self, obj: Any, index: int) -> None:
        self.obj = obj if _is_model(obj) else None
        if self.obj is not None:
            self.params: dict[str, np.ndarray] = dict(obj._parameter_arrays())
            self.label = f"source {index} ({type(obj).__name__})"
            return
        if not isinstance(obj, Mapping):
            raise TypeError(
                f"parameters: source {index} must be a fusedrnn layer or cell, or a dict of name -> NumPy "
                f"array, got {v.describe(obj)}"
            )
        self.label = f"source {index} (dict)"
        self.params = {}
        for name, arr in obj.items():
            if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
                raise TypeError(
                    f"parameters: {self.label}[{name!r}] must be a floating-point NumPy array (it is "
                    f"updated in place), got {v.describe(arr)}"
                )
            if not arr.flags.writeable:
                raise ValueError(f"parameters: {self.label}[{name!r}] is read-only; it is updated in place")
            self.params[str(name)] = arr

    def changed(self) -> None:
        if self.obj is not None:
            self.obj._mark_weights_changed()


def _sources_of(params: tuple[Any, ...]) -> list[Any]:
    """The sources given to an optimizer: separate arguments, or one list/tuple of them."""
    if len(params) == 1 and isinstance(params[0], (list, tuple)):
        params = tuple(params[0])
    if not params:
        raise ValueError("parameters: expected at least one fusedrnn layer or dict of arrays, got none")
    return list(params)


def _grad_dicts(grads: Any, count: int) -> list[Mapping[str, Any] | None]:
    """One gradient mapping (or None: nothing to update) per source."""
    if isinstance(grads, Mapping):
        if count != 1:
            raise TypeError(
                f"grads: this optimizer has {count} parameter sources, so it expects a list of {count} "
                "gradient dicts (one per source, in order), got a single dict"
            )
        return [grads]
    if not isinstance(grads, Sequence) or isinstance(grads, (str, bytes)):
        raise TypeError(f"grads: expected a list of {count} gradient dicts, got {v.describe(grads)}")
    if len(grads) != count:
        raise ValueError(
            f"grads: expected {count} gradient dicts (one per parameter source, in order), got {len(grads)}"
        )
    for k, g in enumerate(grads):
        if g is not None and not isinstance(g, Mapping):
            raise TypeError(f"grads[{k}]: expected a dict of name -> array or None, got {v.describe(g)}")
    return list(grads)


class Optimizer:
    """The base class of :class:`SGD` and :class:`Adam`: holds the parameter sources and each parameter's
    state, checks the gradients of a step, saves and restores its state.

    Parameters
    ----------
    *params
        The parameter sources, as separate arguments or one list: fusedrnn layers and cells (their
        parameters are updated in place and the layer told), and dicts of name -> floating-point NumPy
        array (updated in place).
    lr : float
        The learning rate, >= 0.

    Attributes
    ----------
    lr : float
        The learning rate (and each subclass's other hyperparameters, by their constructor's names); may
        be changed between steps (a learning-rate schedule).
    steps : int
        The number of steps taken.
    """

    # The hyperparameters a state_dict carries, and the per-parameter arrays of its state, torch's names.
    _hyperparameters: tuple[str, ...] = ("lr",)
    _buffers: tuple[str, ...] = ()

    def __init__(self, *params: Any, lr: float) -> None:
        self._sources = [_Source(obj, k) for k, obj in enumerate(_sources_of(params))]
        self.lr = _check_number("lr", lr, minimum=0.0)
        self._state: dict[tuple[int, str], dict[str, Any]] = {}
        self.steps = 0

    def _checked_hyperparameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The hyperparameters validated (as the constructor does), without setting them."""
        return {"lr": _check_number("lr", values["lr"], minimum=0.0)}

    def _keys(self) -> list[tuple[int, str]]:
        """(source index, name) of every parameter, in the order of a state_dict's indices."""
        return [(k, name) for k, source in enumerate(self._sources) for name in source.params]

    def _param_names(self) -> list[str]:
        return [f"{k}.{name}" for k, name in self._keys()]

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs, in torch.optim's layout (copies: later steps do not change it)::

            {"state": {index: {"step": t, <buffers>}},      # the parameters stepped so far
             "param_groups": [{<hyperparameters>, "params": [0, 1, ...],
                               "param_names": ["0.weight_ih_l0", ...]}],
             "steps": n}

        Indices run over the sources in order and each source's parameters in order; a name is
        ``"<source index>.<parameter name>"``. Buffers: SGD ``momentum_buffer``; Adam ``exp_avg``,
        ``exp_avg_sq``.
        """
        keys = self._keys()
        state: dict[int, dict[str, Any]] = {}
        for index, key in enumerate(keys):
            entry = self._state.get(key)
            if entry is None:
                continue
            saved: dict[str, Any] = {"step": entry["step"]}
            for buffer in self._buffers:
                if buffer in entry:
                    saved[buffer] = entry[buffer].copy()
            state[index] = saved
        group = {name: getattr(self, name) for name in self._hyperparameters}
        group["params"] = list(range(len(keys)))
        group["param_names"] = self._param_names()
        return {"state": state, "param_groups": [group], "steps": self.steps}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` of an optimizer of this type over the same parameters (names and
        shapes): the step counts, the moments and the hyperparameters. Checked completely before
        anything changes; a state_dict of other parameters raises ValueError."""
        what = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"{what}: expected a mapping (an optimizer's state_dict()), got {v.describe(state_dict)}"
            )
        missing = [k for k in ("state", "param_groups", "steps") if k not in state_dict]
        if missing:
            raise ValueError(f"{what}: the state_dict lacks {', '.join(map(repr, missing))}")
        groups = state_dict["param_groups"]
        if not isinstance(groups, Sequence) or len(groups) != 1 or not isinstance(groups[0], Mapping):
            raise ValueError(
                f"{what}: expected param_groups to be a list of one group, got {v.describe(groups)}"
            )
        group = groups[0]
        expected_keys = {*self._hyperparameters, "params", "param_names"}
        if set(group) != expected_keys:
            raise ValueError(
                f"{what}: the group's keys are those of another optimizer: expected "
                f"{sorted(expected_keys)}, got {sorted(group)}"
            )
        names = self._param_names()
        given = list(group["param_names"])
        if given != names or list(group["params"]) != list(range(len(names))):
            raise ValueError(
                f"{what}: the state_dict is for other parameters: expected {len(names)} parameters "
                f"{names}, got {len(given)} {given}"
            )
        hyper = self._checked_hyperparameters(group)
        steps = v.check_int("state_dict['steps']", state_dict["steps"], 0)
        keys = self._keys()
        params = [self._sources[k].params[name] for k, name in keys]
        state = state_dict["state"]
        if not isinstance(state, Mapping):
            raise TypeError(f"{what}: expected state to be a mapping index -> dict, got {v.describe(state)}")
        staged: dict[tuple[int, str], dict[str, Any]] = {}
        for index, entry in state.items():
            if (
                isinstance(index, bool)
                or not isinstance(index, (int, np.integer))
                or not 0 <= index < len(keys)
            ):
                raise ValueError(f"{what}: state key {index!r} is not a parameter index 0..{len(keys) - 1}")
            label = f"state[{index}] ({names[index]})"
            if not isinstance(entry, Mapping) or "step" not in entry:
                raise ValueError(f"{what}: {label} must be a dict with 'step', got {v.describe(entry)}")
            unknown = set(entry) - {"step", *self._buffers}
            if unknown:
                raise ValueError(
                    f"{what}: {label} has {sorted(unknown)}, not state of {type(self).__name__} "
                    f"(expected 'step' and {', '.join(map(repr, self._buffers))})"
                )
            param = params[index]
            restored: dict[str, Any] = {"step": v.check_int(f"{label}['step']", entry["step"], 0)}
            for buffer in self._buffers:
                if buffer not in entry:
                    continue
                arr = v.as_real_array(f"{label}[{buffer!r}]", entry[buffer])
                v.check_shape(f"{label}[{buffer!r}]", arr, param.shape, f"(the shape of {names[index]!r})")
                restored[buffer] = np.array(arr, dtype=param.dtype, order="C")  # our own copy
            staged[keys[index]] = restored
        for name, value in hyper.items():
            setattr(self, name, value)
        self._state = staged
        self.steps = steps

    @property
    def param_count(self) -> int:
        """The number of scalar values the optimizer updates."""
        return sum(int(a.size) for s in self._sources for a in s.params.values())

    def _checked(self, grads: Any) -> list[list[tuple[str, np.ndarray, np.ndarray]]]:
        """Per source, (name, parameter, gradient in the parameter's dtype) for every given gradient."""
        out = []
        for k, (source, g) in enumerate(zip(self._sources, _grad_dicts(grads, len(self._sources)))):
            items: list[tuple[str, np.ndarray, np.ndarray]] = []
            out.append(items)
            if g is None:
                continue
            for name, value in g.items():
                param = source.params.get(name)
                if param is None:
                    raise ValueError(
                        f"grads[{k}]: {name!r} is not a parameter of {source.label}; its parameters are "
                        f"{', '.join(source.params)}"
                    )
                arr = v.as_real_array(f"grads[{k}][{name!r}]", value)
                v.check_shape(f"grads[{k}][{name!r}]", arr, param.shape, f"(the shape of {name!r})")
                items.append((name, param, v.convert(arr, param.dtype)))
        return out

    def step(self, grads: Any) -> None:
        """Update every parameter that has a gradient in ``grads``, in place.

        Parameters
        ----------
        grads : list of dict, or dict
            One dict of name -> gradient per source, in the order the sources were given (None, or a
            dict that leaves a parameter out, does not update it); a single dict when there is one
            source. For a layer, the ``.params`` of ``tape.backward(...)``. Every gradient is checked
            (name, shape, numbers) before any parameter changes.
        """
        checked = self._checked(grads)  # everything is validated before anything changes
        self.steps += 1
        for k, (source, items) in enumerate(zip(self._sources, checked)):
            for name, param, grad in items:
                state = self._state.get((k, name))
                if state is None:
                    state = self._state[(k, name)] = {"step": 0}
                state["step"] += 1
                self._update(param, grad, state)
            if items:
                source.changed()

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self._sources)} sources, {self.param_count:,} values, lr={self.lr})"
        )


def _check_number(name: str, value: Any, minimum: float | None = None, below: float | None = None) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {v.describe(value)}")
    x = float(value)
    if not math.isfinite(x) or (minimum is not None and x < minimum) or (below is not None and x >= below):
        bounds = []
        if minimum is not None:
            bounds.append(f">= {minimum}")
        if below is not None:
            bounds.append(f"< {below}")
        raise ValueError(
            f"{name} must be a finite number{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}"
        )
    return x


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum and L2 weight decay, PyTorch's
    ``torch.optim.SGD`` (dampening 0). At each step, for each parameter p with gradient
    :math:`\nabla`, learning rate :math:`\eta` (``lr``), momentum :math:`\mu` and weight decay
    :math:`\lambda`:

    .. math::

        \begin{array}{ll}
        g = \nabla + \lambda p \\
        b = \mu b + g \qquad (b = 0 \text{ before the first step; without momentum } b = g) \\
        p \leftarrow p - \eta (g + \mu b) \qquad \text{with } \texttt{nesterov=True} \\
        p \leftarrow p - \eta b \qquad \text{otherwise}
        \end{array}

    Parameters
    ----------
    *params
        The parameter sources: fusedrnn layers and cells, and dicts of name -> NumPy array (see
        :class:`Optimizer`).
    lr : float
        :math:`\eta`, >= 0.
    momentum : float, default 0.0
        :math:`\mu`, >= 0.
    weight_decay : float, default 0.0
        :math:`\lambda`, the L2 penalty's factor, >= 0.
    nesterov : bool, default False
        Nesterov momentum (needs momentum > 0).

    Examples
    --------
    >>> import numpy as np, fusedrnn as fr
    >>> w = {"w": np.array([1.0, -2.0])}
    >>> opt = fr.optim.SGD(w, lr=0.5)
    >>> opt.step({"w": np.array([2.0, 2.0])})
    >>> w["w"]
    array([ 0., -3.])
    """

    def __init__(
        self,
        *params: Any,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(*params, lr=lr)
        hyper = self._checked_hyperparameters(
            dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        )
        for name, value in hyper.items():
            setattr(self, name, value)

    _hyperparameters = ("lr", "momentum", "weight_decay", "nesterov")
    _buffers = ("momentum_buffer",)

    def _checked_hyperparameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = super()._checked_hyperparameters(values)
        out["momentum"] = _check_number("momentum", values["momentum"], minimum=0.0)
        out["weight_decay"] = _check_number("weight_decay", values["weight_decay"], minimum=0.0)
        out["nesterov"] = v.check_bool("nesterov", values["nesterov"])
        if out["nesterov"] and out["momentum"] == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        return out

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        dt = param.dtype.type
        if self.weight_decay:
            grad = grad + dt(self.weight_decay) * param
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.zeros_like(param)
            buf *= dt(self.momentum)
            buf += grad
            grad = grad + dt(self.momentum) * buf if self.nesterov else buf
        param -= dt(self.lr) * grad


class Adam(Optimizer):
    r"""Adam (Kingma & Ba), PyTorch's ``torch.optim.Adam`` (without amsgrad), or with ``decoupled=True``
    ``torch.optim.AdamW``. At step t = 1, 2, ... of each parameter p with gradient :math:`\nabla`,
    learning rate :math:`\eta` (``lr``), ``betas`` :math:`(\beta_1, \beta_2)`, ``eps``
    :math:`\epsilon` and weight decay :math:`\lambda`:

    .. math::

        \begin{array}{ll}
        g = \nabla + \lambda p \qquad \text{(L2 penalty; with } \texttt{decoupled=True}: g = \nabla
        \text{ and first } p \leftarrow p (1 - \eta \lambda)) \\
        m = \beta_1 m + (1 - \beta_1) g \qquad (m = v = 0 \text{ before the first step}) \\
        v = \beta_2 v + (1 - \beta_2) g^2 \\
        p \leftarrow p - \frac{\eta}{1 - \beta_1^t} \, \frac{m}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}
        \end{array}

    Parameters
    ----------
    *params
        The parameter sources: fusedrnn layers and cells, and dicts of name -> NumPy array (see
        :class:`Optimizer`).
    lr : float, default 1e-3
        :math:`\eta`, >= 0.
    betas : tuple of two floats, default (0.9, 0.999)
        :math:`(\beta_1, \beta_2)`, each in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon`, >= 0.
    weight_decay : float, default 0.0
        :math:`\lambda`, >= 0.
    decoupled : bool, default False
        AdamW's decoupled weight decay instead of the L2 penalty.
    """

    def __init__(
        self,
        *params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        super().__init__(*params, lr=lr)
        hyper = self._checked_hyperparameters(
            dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=decoupled)
        )
        for name, value in hyper.items():
            setattr(self, name, value)

    _hyperparameters = ("lr", "betas", "eps", "weight_decay", "decoupled")
    _buffers = ("exp_avg", "exp_avg_sq")

    def _checked_hyperparameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = super()._checked_hyperparameters(values)
        betas = values["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {v.describe(betas)}")
        out["betas"] = (
            _check_number("betas[0]", betas[0], minimum=0.0, below=1.0),
            _check_number("betas[1]", betas[1], minimum=0.0, below=1.0),
        )
        out["eps"] = _check_number("eps", values["eps"], minimum=0.0)
        out["weight_decay"] = _check_number("weight_decay", values["weight_decay"], minimum=0.0)
        out["decoupled"] = v.check_bool("decoupled", values["decoupled"])
        return out

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        dt = param.dtype.type
        beta1, beta2 = self.betas
        t = state["step"]
        if self.weight_decay:
            if self.decoupled:
                param *= dt(1.0 - self.lr * self.weight_decay)
            else:
                grad = grad + dt(self.weight_decay) * param
        m = state.get("exp_avg")
        if m is None:
            m = state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
        tmp = state.get("tmp")
        if tmp is None:  # scratch space, not saved by state_dict
            tmp = state["tmp"] = np.empty_like(param)
        sq = state["exp_avg_sq"]
        m *= dt(beta1)
        m += dt(1.0 - beta1) * grad
        np.multiply(grad, grad, out=tmp)
        tmp *= dt(1.0 - beta2)
        sq *= dt(beta2)
        sq += tmp
        # denominator sqrt(v) / sqrt(1 - beta2^t) + eps; step size lr / (1 - beta1^t)
        np.sqrt(sq, out=tmp)
        tmp /= dt(math.sqrt(1.0 - beta2**t))
        tmp += dt(self.eps)
        np.divide(m, tmp, out=tmp)
        tmp *= dt(self.lr / (1.0 - beta1**t))
        param -= tmp


def clip_grad_norm(grads: Any, max_norm: float) -> float:
    r"""Scale gradients in place so that their global L2 norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``:

    .. math::

        \|g\| = \sqrt{\textstyle\sum_{\text{arrays}} \sum g^2}, \qquad
        g \leftarrow g \cdot \min\left(1, \frac{\text{max\_norm}}{\|g\| + 10^{-6}}\right)

    A non-finite norm leaves the gradients unchanged (and is returned as it is).

    Parameters
    ----------
    grads : dict or list of dict
        Name -> floating-point NumPy array, or a list of such dicts (None entries are skipped): what
        :meth:`Optimizer.step` takes.
    max_norm : float
        The largest norm allowed, >= 0.

    Returns
    -------
    float
        The global norm before clipping.
    """
    max_norm = _check_number("max_norm", max_norm, minimum=0.0)
    arrays: list[np.ndarray] = []
    groups: Iterable[Any] = [grads] if isinstance(grads, Mapping) else grads
    if not isinstance(groups, Iterable):
        raise TypeError(f"grads: expected a dict of arrays or a list of them, got {v.describe(grads)}")
    for k, group in enumerate(groups):
        if group is None:
            continue
        if not isinstance(group, Mapping):
            raise TypeError(f"grads[{k}]: expected a dict of name -> array or None, got {v.describe(group)}")
        for name, arr in group.items():
            if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
                raise TypeError(
                    f"grads[{k}][{name!r}]: expected a floating-point NumPy array (scaled in place), "
                    f"got {v.describe(arr)}"
                )
            arrays.append(arr)
    total = math.sqrt(sum(float(np.square(a, dtype=np.float64).sum()) for a in arrays))
    if math.isfinite(total):
        scale = max_norm / (total + 1e-6)
        if scale < 1.0:
            for a in arrays:
                a *= a.dtype.type(scale)
    return total
