"""Small wrappers around a fusedrnn layer for conventions of other frameworks that a layer alone does not
have. Each keeps the layer's call signature ``y, state = w(x, state=None, lengths=None)`` and its
``record(...) -> tape``, ``tape.backward(...) -> Gradients``; the wrapped layer is ``w.layer``, and
attributes the wrapper does not define (``input_size``, ``dtype``, ``state_dict``, ``load_state_dict``,
...) are the layer's.

- ``Reverse(layer)``: a one-direction layer run backwards in time: ONNX's ``direction="reverse"``
  (``order="original"``: y[t] is the output at step t, in the input's order) or Keras' ``go_backwards``
  (``order="processing"``: y[k] is the k-th step processed). With ``lengths`` each sequence is reversed
  within its own length: the run starts at the sequence's last valid step, outputs past its end are zeros,
  and the state returned is the one after its first step.
- ``SumDirections(layer)``: a bidirectional layer whose two directions' outputs are added
  (Keras' ``Bidirectional(merge_mode="sum")``): y has H_out features instead of 2*H_out.
- ``WithDefaults(layer, state=..., lengths=...)``: a layer with a default initial state and/or default
  lengths, used when the call gives none (an ONNX node whose ``initial_h``/``sequence_lens`` are constants).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import _validation as v
from .._tape import Gradients, Tape
from ..layers import RNNBase

__all__ = ["Reverse", "SumDirections", "WithDefaults", "unwrap"]


def unwrap(obj: Any) -> Any:
    """The fusedrnn layer inside any number of wrappers: ``obj.layer.layer...``; ``obj`` itself when it is
    not a wrapper."""
    while isinstance(obj, _Wrapper):
        obj = obj.layer
    return obj


def directions_summed(obj: Any) -> bool:
    """Whether a SumDirections is among ``obj``'s wrappers: its directions' outputs are added already,
    so a second SumDirections around it would split H_out features into two halves it does not have."""
    while isinstance(obj, _Wrapper):
        if isinstance(obj, SumDirections):
            return True
        obj = obj.layer
    return False


class _Wrapper:
    layer: Any

    def __getattr__(self, name: str) -> Any:
        if name == "layer":  # not yet set (during unpickling)
            raise AttributeError(name)
        return getattr(self.layer, name)

    def __call__(self, x: Any, state: Any = None, lengths: Any = None) -> Any:
        raise NotImplementedError

    def record(self, x: Any, state: Any = None, lengths: Any = None) -> Tape:
        raise NotImplementedError


class _WrappedTape(Tape):
    """A tape whose output and gradients are transformed on the way in and out of the inner tape."""

    def __init__(
        self, inner: Tape, output: Any, state: Any, backward: Callable[[Tape, Any, Any], Gradients]
    ) -> None:
        self._inner = inner
        self._backward = backward
        self.output = output
        self.state = state
        self.dropout_masks = inner.dropout_masks

    def backward(self, grad_output: Any, grad_state: Any = None) -> Gradients:
        return self._backward(self._inner, grad_output, grad_state)

    def __repr__(self) -> str:
        return f"Tape(wrapped {self._inner!r})"


def _time_axis(layer: Any, arr: np.ndarray) -> tuple[int, int, int, bool]:
    """(time axis, steps, batch, unbatched) of an array in the layer's sequence layout."""
    if arr.ndim == 2:
        return 0, arr.shape[0], 1, True
    if arr.ndim != 3:
        raise ValueError(
            f"x must be a 3-D array or a 2-D array for one unbatched sequence, got shape {arr.shape}"
        )
    if layer.batch_first:
        return 1, arr.shape[1], arr.shape[0], False
    return 0, arr.shape[0], arr.shape[1], False


def reverse_in_time(arr: np.ndarray, time_axis: int, lengths: np.ndarray | None) -> np.ndarray:
    """Each sequence reversed within its own length (positions past the length stay where they are);
    all of it when ``lengths`` is None. ``arr`` is (T, N, F) for time_axis 0, (N, T, F) for 1, or (T, F)."""
    if lengths is None:
        return np.ascontiguousarray(np.flip(arr, axis=time_axis))
    steps = arr.shape[time_axis]
    t = np.arange(steps)[:, None]
    src = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (T, N)
    if arr.ndim == 2:  # unbatched (T, F), one length
        return np.ascontiguousarray(arr[src[:, 0]])
    if time_axis == 1:
        src = src.T  # (N, T)
    return np.ascontiguousarray(np.take_along_axis(arr, src[:, :, None], axis=time_axis))


class Reverse(_Wrapper):
    """A one-direction layer run backwards in time (see the module docstring).

    ``order="original"`` (ONNX ``direction="reverse"``): ``y[t]`` is the output computed at input step t,
    so y is in the input's time order. ``order="processing"`` (Keras ``go_backwards``): ``y[k]`` is the
    output of the k-th step processed, i.e. of input step ``len-1-k``. Stacked layers all run backwards.

    Parameters
    ----------
    layer : RNN, LSTM or GRU
        A one-direction fusedrnn layer (or a wrapper of one).
    order : {"original", "processing"}, default "original"
        The time order of the output, as above.
    """

    def __init__(self, layer: Any, order: str = "original") -> None:
        if not isinstance(unwrap(layer), RNNBase):
            raise TypeError(f"Reverse wraps a fusedrnn RNN, LSTM or GRU layer, got {v.describe(layer)}")
        if layer.bidirectional:
            raise ValueError("Reverse needs a one-direction layer, got a bidirectional one")
        self.layer = layer
        self.order = v.check_choice("order", order, ("original", "processing"))

    def __repr__(self) -> str:
        return f"Reverse({self.layer!r}, order={self.order!r})"

    def stream(self, batch_size: int | None = None, state: Any = None) -> Any:
        """Refused (TypeError), whatever ``batch_size`` and ``state``: running backwards in time starts at
        the end of the sequence, which a stream never has."""
        raise TypeError("a Reverse layer cannot stream: it starts at the end of the sequence")

    def _prepare(self, x: Any, lengths: Any) -> tuple[np.ndarray, int, np.ndarray | None]:
        arr = v.as_real_array("x", x)
        axis, steps, batch, unbatched = _time_axis(self.layer, arr)
        lens = v.as_lengths(lengths, batch, steps, unbatched)
        return reverse_in_time(arr, axis, lens), axis, lens

    def __call__(self, x: Any, state: Any = None, lengths: Any = None) -> Any:
        """Run the layer backwards in time over each sequence (within its own length).

        Parameters
        ----------
        x : array_like
            The input sequence, in the layer's layout.
        state : optional
            The initial state, in the layer's layout; None: zeros.
        lengths : array_like, optional
            (N,) the sequences' lengths; None: all T steps.

        Returns
        -------
        (y, state)
            ``y`` in the order ``order`` says, the shape of the layer's; ``state`` the layer's final
            state, after each sequence's first step.
        """
        xr, axis, lens = self._prepare(x, lengths)
        y, new_state = self.layer(xr, state, lengths)
        if self.order == "original":
            y = reverse_in_time(y, axis, lens)
        return y, new_state

    def record(self, x: Any, state: Any = None, lengths: Any = None) -> Tape:
        """The forward pass of a call, keeping what ``tape.backward(grad_output, grad_state=None)`` needs.

        Parameters
        ----------
        x : array_like
            The input sequence, as for a call.
        state : optional
            The initial state, as for a call.
        lengths : array_like, optional
            The sequences' lengths, as for a call.

        Returns
        -------
        Tape
            ``tape.output`` and ``tape.state`` are what the call returns; the gradients ``tape.backward``
            returns are with respect to ``x`` as given (in its time order).
        """
        xr, axis, lens = self._prepare(x, lengths)
        inner = self.layer.record(xr, state, lengths)
        original = self.order == "original"
        output = reverse_in_time(inner.output, axis, lens) if original else inner.output

        def backward(tape: Tape, grad_output: Any, grad_state: Any) -> Gradients:
            gy = v.as_real_array("grad_output", grad_output)
            v.check_shape("grad_output", gy, np.shape(output), "(the shape of tape.output)")
            g = tape.backward(reverse_in_time(gy, axis, lens) if original else gy, grad_state)
            return Gradients(reverse_in_time(g.input, axis, lens), g.state, g.params)

        return _WrappedTape(inner, output, inner.state, backward)


class SumDirections(_Wrapper):
    """A bidirectional layer whose output is the sum of its two directions' (Keras merge_mode="sum"):
    y (..., H_out) = y_forward + y_backward. The state is the layer's.

    Parameters
    ----------
    layer : RNN, LSTM or GRU
        A bidirectional fusedrnn layer (or a wrapper of one that has not summed its directions already).
    """

    def __init__(self, layer: Any) -> None:
        if not isinstance(unwrap(layer), RNNBase):
            raise TypeError(f"SumDirections wraps a fusedrnn layer, got {v.describe(layer)}")
        if not layer.bidirectional:
            raise ValueError("SumDirections needs a bidirectional layer")
        if directions_summed(layer):
            raise ValueError(
                "SumDirections around a SumDirections: the inner one has added the directions already"
            )
        self.layer = layer

    def __repr__(self) -> str:
        return f"SumDirections({self.layer!r})"

    def _half(self) -> int:
        return unwrap(self.layer).config.output_size

    def __call__(self, x: Any, state: Any = None, lengths: Any = None) -> Any:
        """Run the layer and add its two directions' outputs.

        Parameters
        ----------
        x : array_like
            The input sequence, in the layer's layout.
        state : optional
            The initial state, in the layer's layout; None: zeros.
        lengths : array_like, optional
            (N,) the sequences' lengths; None: all T steps.

        Returns
        -------
        (y, state)
            ``y`` with H_out features (the layer's has 2*H_out); ``state`` the layer's final state.
        """
        y, new_state = self.layer(x, state, lengths)
        h = self._half()
        return y[..., :h] + y[..., h:], new_state

    def record(self, x: Any, state: Any = None, lengths: Any = None) -> Tape:
        """The forward pass of a call, keeping what ``tape.backward(grad_output, grad_state=None)`` needs.

        Parameters
        ----------
        x : array_like
            The input sequence, as for a call.
        state : optional
            The initial state, as for a call.
        lengths : array_like, optional
            The sequences' lengths, as for a call.

        Returns
        -------
        Tape
            ``tape.output`` and ``tape.state`` are what the call returns; the gradients ``tape.backward``
            returns are with respect to ``x`` as given.
        """
        inner = self.layer.record(x, state, lengths)
        h = self._half()
        output = inner.output[..., :h] + inner.output[..., h:]

        def backward(tape: Tape, grad_output: Any, grad_state: Any) -> Gradients:
            gy = v.as_real_array("grad_output", grad_output)
            v.check_shape("grad_output", gy, output.shape, "(the shape of tape.output)")
            return tape.backward(np.concatenate([gy, gy], axis=-1), grad_state)

        return _WrappedTape(inner, output, inner.state, backward)


class WithDefaults(_Wrapper):
    """A layer with a default initial ``state`` and/or default ``lengths``, used when a call passes None.

    Parameters
    ----------
    layer : RNN, LSTM or GRU
        A fusedrnn layer (or a wrapper of one).
    state : optional
        The default initial state, in the layer's layout: ``h0`` or ``(h0, c0)``, shapes (D*L, N, H_out)
        and (D*L, N, H).
    lengths : array_like, optional
        The default lengths (N,).
    """

    def __init__(self, layer: Any, state: Any = None, lengths: Any = None) -> None:
        if not isinstance(unwrap(layer), RNNBase):
            raise TypeError(f"WithDefaults wraps a fusedrnn layer, got {v.describe(layer)}")
        self.layer = layer
        self.state = state
        self.lengths = None if lengths is None else np.asarray(lengths)

    def __repr__(self) -> str:
        parts = [repr(self.layer)]
        if self.state is not None:
            parts.append("state=...")
        if self.lengths is not None:
            parts.append(f"lengths={self.lengths.tolist()}")
        return f"WithDefaults({', '.join(parts)})"

    def stream(self, batch_size: int | None = None, state: Any = None) -> Any:
        """The layer's stream (``layer.stream(batch_size, state)``), starting from the default state unless
        ``state`` is given."""
        return self.layer.stream(batch_size, self.state if state is None else state)

    def _args(self, state: Any, lengths: Any) -> tuple[Any, Any]:
        return (self.state if state is None else state), (self.lengths if lengths is None else lengths)

    def __call__(self, x: Any, state: Any = None, lengths: Any = None) -> Any:
        """Call the layer, with the defaults in place of a state or lengths that are None.

        Parameters
        ----------
        x : array_like
            The input sequence, in the layer's layout.
        state : optional
            The initial state, in the layer's layout; None: the default state.
        lengths : array_like, optional
            (N,) the sequences' lengths; None: the default lengths.

        Returns
        -------
        (y, state)
            What the layer returns.
        """
        return self.layer(x, *self._args(state, lengths))

    def record(self, x: Any, state: Any = None, lengths: Any = None) -> Tape:
        """The forward pass of a call, keeping what ``tape.backward(grad_output, grad_state=None)`` needs.

        Parameters
        ----------
        x : array_like
            The input sequence, as for a call.
        state : optional
            The initial state, as for a call.
        lengths : array_like, optional
            The sequences' lengths, as for a call.

        Returns
        -------
        Tape
            ``tape.output`` and ``tape.state`` are what the call returns; the gradients ``tape.backward``
            returns are with respect to ``x`` as given.
        """
        return self.layer.record(x, *self._args(state, lengths))
