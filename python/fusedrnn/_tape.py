"""The record of a forward pass and its backward pass: ``Tape`` (made by ``record``) and ``Gradients``.

``tape.backward(grad_output, grad_state)`` checks the gradients against what the forward returned,
converts them to the kernels' arrays (the tape's layout), and runs the compiled stack's backward on what
the forward saved, with the weights it ran with: a tape whose model's weights changed since refuses.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from . import _validation as v
from ._runtime import Runtime
from ._state import SequenceLayout, StepLayout

__all__ = ["Tape", "Gradients"]


class Gradients:
    """What :meth:`Tape.backward` returns: the gradients of a loss with respect to the input, the initial
    state and the parameters.

    Parameters
    ----------
    input : ndarray
        dL/dx.
    state : ndarray or tuple of ndarray
        dL/d(initial state).
    params : dict of str to ndarray
        dL/d(parameter), by name.
    """

    # A dict: its values are the attributes' docstrings (help() and the API reference show them).
    __slots__ = {
        "input": (
            "The gradient with respect to the input, the shape of ``x`` (batch_first / unbatched as given)."
        ),
        "state": (
            "The gradient with respect to the initial state, ``(dh_0, dc_0)`` for an LSTM and ``dh_0`` "
            "otherwise, in the layout of the state the call accepted (also when no state was given, as its "
            "initial state was zeros)."
        ),
        "params": (
            "The gradients with respect to every parameter, a dict keyed and ordered like ``state_dict()``."
        ),
    }

    def __init__(self, input: np.ndarray, state: Any, params: dict[str, np.ndarray]) -> None:
        self.input = input
        self.state = state
        self.params = params

    def __repr__(self) -> str:
        return f"Gradients(input={self.input.shape}, params=[{', '.join(self.params)}])"


class Recorder(Protocol):
    """What a model that records tapes gives their backward pass."""

    _runtime: Runtime
    _names: list[str]

    @property
    def dtype(self) -> np.dtype: ...

    def _state_arrays(
        self, name: str, value: Any, layout: Any, gradient: bool = False
    ) -> tuple[np.ndarray | None, np.ndarray | None]: ...

    def _public_state(self, h: np.ndarray, c: np.ndarray | None, layout: Any) -> Any: ...

    def _check_backward_memory(self, steps: int, batch: int) -> None: ...


class Tape:
    """A forward pass that keeps what its backward pass needs, made by a layer's or a cell's ``record``
    (not constructed directly).

    ``g = tape.backward(grad_output, grad_state=None)`` gives the gradients (:class:`Gradients`) of the
    loss ``sum(output * grad_output) + sum(state * grad_state)`` with respect to the input, the initial
    state and every parameter, computed with the weights the forward pass ran with: a tape refuses once
    its model's weights have changed (``load_state_dict``, an optimizer step), so record again then.

    A tape stays in the process that recorded it: pickle and ``copy.deepcopy`` raise TypeError (send
    ``output``, ``state`` or the Gradients instead, or the model and its input to record again);
    ``copy.copy`` is a second handle on the same record.

    Parameters
    ----------
    owner
        The model that recorded the tape (backward refuses the tape to any other).
    saved
        The compiled forward pass's saved buffers.
    version
        The model's weights' version at the forward pass.
    output : ndarray
        What the call would have returned as its output.
    state : ndarray or tuple of ndarray
        What the call would have returned as its state.
    dropout_masks : list of ndarray or None
        The dropout masks the forward pass used.
    layout
        How the caller's arrays map to the kernels' (batch_first, unbatched, T, N).

    Attributes
    ----------
    output : ndarray
        What the call would have returned as its output: ``y`` for a layer, the new ``h`` for a cell.
    state : ndarray or tuple of ndarray
        What the call would have returned as its state: ``h_n`` (``(h_n, c_n)`` for an LSTM) for a layer,
        the new ``h`` (``(h, c)`` for an LSTMCell) for a cell.
    dropout_masks : list of ndarray or None
        The dropout masks the forward pass used: None, or L-1 arrays (T, N, D*H_out), time-major whatever
        ``batch_first`` is, already scaled by 1/(1-p): the input of layer k+1 was layer k's output times
        ``dropout_masks[k]``.
    recurrent_masks : list of ndarray or None
        Recurrent dropout's masks (``recurrent_dropout`` > 0): None, or L*D arrays (N, H_out), entry
        ``k*D + d`` for layer k and direction d, already scaled by 1/(1-p): h entered every step's
        recurrent product times its mask.
    zoneout_masks : list of ndarray or None
        Zoneout's factors (``zoneout`` > 0): None, or L*D arrays (T, N, Z*H), Z = 2 for an LSTM (each
        row's factors for h, then for c), else 1: 1 where a unit took its new value, 0 where it kept its
        previous one.
    """

    recurrent_masks: list[np.ndarray] | None = None
    zoneout_masks: list[np.ndarray] | None = None

    def __init__(
        self,
        owner: Recorder,
        saved: Any,
        version: int,
        output: Any,
        state: Any,
        dropout_masks: list[np.ndarray] | None,
        layout: SequenceLayout | StepLayout,
    ) -> None:
        self._owner = owner
        self._saved = saved
        self._version = version
        self._layout = layout
        self.output = output
        self.state = state
        self.dropout_masks = dropout_masks

    def backward(self, grad_output: Any, grad_state: Any = None) -> Gradients:
        """The gradients of ``L = sum(output * grad_output) + sum(state * grad_state)``.

        May be called more than once (with other gradients, for instance).

        Parameters
        ----------
        grad_output : array_like
            dL/d(output), the shape of ``tape.output``.
        grad_state : optional
            dL/d(state), the shape of ``tape.state``: None for zero; for an LSTM a pair ``(grad_h,
            grad_c)`` in which either part may be None.

        Returns
        -------
        Gradients
            ``.input`` (the shape of x), ``.state`` (of the initial state) and ``.params`` (a dict keyed
            like ``state_dict()``).

        Raises
        ------
        RuntimeError
            When the model's weights changed after the tape was recorded.
        ValueError
            For a tape recorded by another model, or gradients of the wrong shape.
        """
        return run_backward(self._owner, self, grad_output, grad_state)

    def __repr__(self) -> str:
        return f"Tape({type(self._owner).__name__}, output shape {np.shape(self.output)})"

    # -- copies --------------------------------------------------------------------------------------

    # A tape is the compiled stack's record in this process's memory, and belongs to the model object that
    # recorded it (backward checks both): a pickled one would have neither, so pickle and deepcopy refuse
    # and say what to send instead. copy.copy is a second handle on the same record (backward may run more
    # than once).

    def __copy__(self) -> Tape:
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __reduce__(self) -> Any:
        raise TypeError(
            f"a fusedrnn Tape ({type(self._owner).__name__}) cannot be pickled or deep-copied: it holds the "
            "compiled forward pass's saved buffers, which live in this process, and belongs to the model "
            "object that recorded it. Pickle what it computed instead (tape.output, tape.state, or the "
            "Gradients that tape.backward returns), or pickle the model and its input and call record again "
            "where they are unpickled"
        )


def check_tape(owner: Recorder, tape: Tape) -> None:
    """Refuse a tape of another model, or one recorded before the model's weights changed."""
    if tape._owner is not owner:
        raise ValueError("this tape was recorded by another model")
    if tape._version != owner._runtime.version:
        raise RuntimeError(
            f"{type(owner).__name__}'s weights changed after this tape was recorded "
            "(load_state_dict or an in-place update): record again"
        )


def run_backward(owner: Recorder, tape: Tape, grad_output: Any, grad_state: Any) -> Gradients:
    """The gradients of ``sum(output * grad_output) + sum(state * grad_state)`` (see ``Tape``)."""
    check_tape(owner, tape)
    layout = tape._layout
    gy = v.as_real_array("grad_output", grad_output)
    v.check_shape("grad_output", gy, np.shape(tape.output), "(the shape of tape.output)")
    gy = v.convert(layout.output_in(gy), owner.dtype)
    gh, gc = owner._state_arrays("grad_state", grad_state, layout, gradient=True)
    owner._check_backward_memory(gy.shape[0], gy.shape[1])
    runtime = owner._runtime
    runtime.begin_call()
    try:
        check_tape(owner, tape)  # the weights may have changed while this call waited
        gx, gh0, gc0, grads = runtime.stack.backward(tape._saved, gy, gh, gc)
    finally:
        runtime.end_call()
    params = dict(zip(owner._names, grads))
    return Gradients(layout.input_out(gx), owner._public_state(gh0, gc0, layout), params)
