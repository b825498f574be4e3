"""Running a recurrent layer one time step at a time: ``s = layer.stream(batch_size)``.

A stream holds the state of every layer between steps, so that ``y_t = s.step(x_t)`` for t = 0, 1, ...
gives, step after step, what one call of the layer over the whole sequence gives: the same bits with the
AVX2 or AVX-512 kernels in float32 (their products sum every element in one order whatever the number of
rows), and otherwise up to the last rounding of the input projection, which a long call computes as one
product::

    lstm = fr.LSTM(16, 64, num_layers=2)
    s = lstm.stream(batch_size=4)         # state: zeros (or stream(4, state=(h0, c0)))
    for x_t in xs:                        # x_t (4, 16)
        y_t = s.step(x_t)                 # (4, 64): the top layer's output at this step
    h_n, c_n = s.state                    # as lstm(xs) returns it: (L, 4, 64) each
    s.reset()                             # back to zeros (or s.reset(state))

With ``batch_size=None`` the stream runs one unbatched sequence: x_t (I,), y_t (H_out,), state (L, H_out).
Uses: autoregressive generation (feed the sample drawn from y_t back as x_{t+1}), and real-time input.
A bidirectional layer cannot stream (its reverse direction starts at the end of the sequence), and a
stream never applies dropout (it is inference, like a call).

Cost: ``step`` is compiled (``_core.StreamBase``): from Python it is one call, which checks ``x_t``'s
dtype and shape (other inputs take a slower path that converts and explains errors), picks up weights
changed by an optimizer or ``load_state_dict`` between steps, and runs the kernels with T = 1 on
workspaces the stream keeps, so a step allocates nothing but y_t.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from . import _validation as v
from ._model import _Recurrent
from ._state import SequenceLayout

__all__ = ["Stream"]


class Stream(_core.StreamBase):
    """A layer's state carried from one time step to the next, made by ``layer.stream(batch_size,
    state)`` (:meth:`fusedrnn.LSTM.stream`, and GRU's and RNN's).

    ``y_t = s.step(x_t)`` advances every layer by one step: x_t (N, I), or (I,) for an unbatched stream;
    y_t (N, H_out), or (H_out,), the last layer's output at this step. Step after step, the outputs are
    those of one call of the layer over the whole sequence, from the same initial state.

    Not thread-safe: one stream belongs to one thread (several streams may run the same layer at once).
    ``copy.copy(s)`` forks the stream: a second stream of the same layer from the same state.

    Parameters
    ----------
    layer : RNN, LSTM or GRU
        The layer to run, one-directional.
    batch_size : int or None
        N; None for one unbatched sequence.
    state : optional
        The initial state, as :meth:`reset` takes it (zeros if None).

    Shapes
    ------
    N = ``batch_size``, I the layer's ``input_size``, H its ``hidden_size``, H_out its ``proj_size`` or H,
    L its ``num_layers``.

    - ``x_t``: (N, I), or (I,) unbatched.
    - ``y_t``: (N, H_out), or (H_out,) unbatched.
    - ``state``: ``h`` (L, N, H_out) and for an LSTM ``c`` (L, N, H); without the N axis unbatched.
    """

    __slots__ = ("_layer", "_dtype", "_unbatched", "_batch", "_x_shape", "_has_c")

    def __init__(self, layer: _Recurrent, batch_size: int | None, state: Any = None) -> None:
        if layer.config.bidirectional:
            raise ValueError(
                f"{type(layer).__name__}(bidirectional=True) cannot stream: its reverse direction reads "
                "the sequence from its last step backwards, so no output exists before the whole sequence "
                "is known; call the layer on the whole sequence instead"
            )
        self._layer = layer
        self._dtype = layer.dtype
        self._unbatched = batch_size is None
        self._batch = 1 if batch_size is None else v.check_int("batch_size", batch_size, 1)
        features = layer.config.input_size
        self._x_shape = (features,) if self._unbatched else (self._batch, features)
        self._has_c = layer._has_cell_state
        super().__init__(layer._runtime.stack, layer._runtime.refresh, list(self._x_shape))
        self.reset(state)

    # -- state ---------------------------------------------------------------------------------------

    @property
    def batch_size(self) -> int | None:
        """N, the number of sequences stepped together; None for an unbatched stream."""
        return None if self._unbatched else self._batch

    @property
    def layer(self) -> _Recurrent:
        """The layer this stream runs (its weights as they are at each step)."""
        return self._layer

    def reset(self, state: Any = None) -> None:
        """Start again: zeros, or ``state`` (``(h0, c0)`` for an LSTM, either may be None; ``h0``
        otherwise), shaped as the layer's call accepts it for this batch size."""
        layer = self._layer
        c = layer.config
        lead = c.num_layers
        h = np.zeros((lead, self._batch, c.output_size), self._dtype)
        cs = np.zeros((lead, self._batch, c.hidden_size), self._dtype) if self._has_c else None
        if state is not None:
            layout = SequenceLayout(False, self._unbatched, 1, self._batch)
            h_in, c_in = layer._state_arrays("state", state, layout)
            # copies: the kernels update the stream's state in place
            if h_in is not None:
                h = np.array(h_in, dtype=self._dtype, order="C")
            if c_in is not None:
                cs = np.array(c_in, dtype=self._dtype, order="C")
        self._h = h
        self._c = cs
        self.steps = 0

    @property
    def state(self) -> Any:
        """The current state (a copy) in the layout a call of the layer returns, ``(h, c)`` for an LSTM
        and ``h`` otherwise; h (L, N, H_out), c (L, N, H), without the N axis for an unbatched stream."""
        h = self._h[:, 0] if self._unbatched else self._h
        if self._has_c:
            c = self._c[:, 0] if self._unbatched else self._c
            return h.copy(), c.copy()
        return h.copy()

    # -- stepping ------------------------------------------------------------------------------------

    # step(x_t) is compiled (_core.StreamBase.step): an array of the model's dtype and shape goes straight
    # to the kernels, which update the state arrays _h and _c in place on an immutable snapshot of the
    # weights (no lock needed); weights changed since the last upload are uploaded first; anything else
    # goes through _convert.

    def _convert(self, x_t: Any) -> np.ndarray:
        arr = v.as_real_array("x_t", x_t)
        if arr.shape != self._x_shape:
            what = "(input_size,) for an unbatched stream" if self._unbatched else "(batch_size, input_size)"
            raise ValueError(f"x_t must have shape {self._x_shape} {what}, got shape {tuple(arr.shape)}")
        return v.convert(arr, self._dtype)

    def __repr__(self) -> str:
        return f"Stream({self._layer!r}, batch_size={self.batch_size}, steps={self.steps})"

    # -- copies --------------------------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        """copy.copy: a second stream of the same layer; copy.deepcopy and pickle: a stream of a copy of
        the layer. Either way from this stream's state and step count, and stepping one leaves the
        other's state alone (a fork, as beam search wants)."""
        return _restore, (self._layer, self.batch_size, self.state, self.steps)


def _restore(layer: _Recurrent, batch_size: int | None, state: Any, steps: int) -> Stream:
    stream = Stream(layer, batch_size, state)
    stream.steps = steps
    return stream
