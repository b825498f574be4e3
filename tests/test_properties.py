"""Property-based tests (hypothesis) of every public entry point against the NumPy reference.

Each example draws a model -- the cell (RNN tanh/relu, LSTM, GRU with linear_before_reset True/False)
and every option (layers, directions, bias, batch_first, residual, proj_size, peephole, clip,
input_forget, hard-sigmoid gates, forget_bias, dropout, dtype) -- and a problem: sizes that straddle
vector widths, T and N from 0, unbatched input, lengths (ragged, all equal, all T, and invalid ones),
initial states (whole, partial, misshapen), and arrays in every form the API accepts (another dtype,
big-endian, Fortran order, strided, negative strides, read-only, zero-stride broadcasts, nested lists).
Then the entry point -- a layer's call, ``record`` + ``tape.backward``, a cell's call and tape, a
stream's steps, ``load_state_dict`` -- must either match the reference (run in float64 on the model's
weights and on the inputs rounded to the model's dtype) within the tolerance of the model's dtype
(``tolerances.KERNEL_VS_REFERENCE``, through the ``assert_close`` fixture), or raise the documented
ValueError / TypeError.

CI runs a fixed (derandomized) set of examples in about a minute. For bug hunting, run many more random
ones by hand: ``FUSEDRNN_PROPERTY_EXAMPLES=50 pytest tests/test_properties.py`` multiplies every test's
number of examples by 50 and draws them at random.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fusedrnn as fr
from fusedrnn import reference
from fusedrnn._config import StackConfig

_SCALE = int(os.environ.get("FUSEDRNN_PROPERTY_EXAMPLES", "0"))


def examples(n: int) -> Callable[[Any], Any]:
    """CI: ``n`` examples, the same every run. By hand: ``n * FUSEDRNN_PROPERTY_EXAMPLES`` random ones."""
    return settings(
        max_examples=n * _SCALE if _SCALE else n,
        derandomize=not _SCALE,
        database=None,
        deadline=None,
        # assert_close is a pure function: one per test serves every example.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        print_blob=True,
    )


SIZES = (1, 7, 8, 9, 16, 17)  # around the kernels' vector widths (8 float32 lanes with AVX2, 4 float64)
DTYPES = (np.float32, np.float64)
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before")

# How an array is handed to the API: its values, in another form the API must accept ("broadcast" repeats
# the first row's values); the reference always reads the values back from what was passed.
LAYOUTS = ("contiguous", "fortran", "strided", "negative", "readonly", "broadcast", "list")
# The dtype the values are passed in ("model": the model's own; integers are rounded values; big-endian:
# the model's dtype in the byte order this machine does not use).
VALUE_DTYPES = ("model", "model", "float32", "float64", "float16", "int32", "big-endian")


def present(values: np.ndarray, layout: str, value_dtype: str, model_dtype: Any) -> Any:
    """``values`` in ``value_dtype`` and ``layout``."""
    if value_dtype == "int32":
        values = np.round(values * 2).astype(np.int32)
    elif value_dtype == "big-endian":
        values = values.astype(np.dtype(model_dtype).newbyteorder(">"))
    else:
        values = values.astype(model_dtype if value_dtype == "model" else value_dtype)
    if layout == "list" and values.size == 0:
        layout = "contiguous"  # a nested list cannot say the shape of an empty array
    if layout == "contiguous":
        return np.ascontiguousarray(values)
    if layout == "fortran":
        return np.asfortranarray(values)
    if layout == "strided":  # every other element of a larger array, on every axis
        big = np.zeros(tuple(2 * s + 1 for s in values.shape), values.dtype)
        view = big[tuple(slice(1, None, 2) for _ in values.shape)]
        view[...] = values
        return view
    if layout == "negative":  # negative strides on every axis
        return np.flip(np.flip(values).copy())
    if layout == "readonly":
        values = values.copy()
        values.flags.writeable = False
        return values
    if layout == "broadcast":  # zero strides on every axis but the last (read-only; repeats the values)
        first = values[tuple(slice(0, 1) for _ in values.shape[:-1])]
        return np.broadcast_to(first, values.shape)
    assert layout == "list", layout
    return values.tolist()


def seen_as(passed: Any, model_dtype: Any) -> np.ndarray:
    """The values the model computes with: what was passed, rounded to the model's dtype, in float64."""
    return np.asarray(passed).astype(model_dtype).astype(np.float64)


@st.composite
def array_forms(draw: st.DrawFn) -> tuple[str, str]:
    return draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(VALUE_DTYPES))


# -- models ----------------------------------------------------------------------------------------------


@dataclass
class LayerSpec:
    """A layer's constructor arguments (``kwargs``) besides the cell and the sizes."""

    cell: str
    input_size: int
    hidden_size: int
    kwargs: dict[str, Any]

    def build(self) -> fr.RNNBase:
        kw = dict(self.kwargs)
        if self.cell.startswith("rnn"):
            return fr.RNN(self.input_size, self.hidden_size, nonlinearity=self.cell[4:], **kw)
        if self.cell == "lstm":
            return fr.LSTM(self.input_size, self.hidden_size, **kw)
        if self.cell == "gru_reset_before":
            kw["linear_before_reset"] = False
        return fr.GRU(self.input_size, self.hidden_size, **kw)


@st.composite
def layer_specs(draw: st.DrawFn, dropout: bool = False, bidirectional: float = 0.5) -> LayerSpec:
    """``bidirectional``: the share of bidirectional layers."""
    cell = draw(st.sampled_from(CELLS))
    input_size, hidden_size = draw(st.sampled_from(SIZES)), draw(st.sampled_from(SIZES))
    num_layers = draw(st.integers(1, 3))
    kw: dict[str, Any] = dict(
        num_layers=num_layers,
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.floats(0, 1)) < bidirectional,
        residual=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    if dropout and num_layers > 1 and draw(st.booleans()):  # (with one layer it only warns)
        kw["dropout"] = draw(st.sampled_from([0.25, 0.5]))
    if cell in ("lstm", "gru", "gru_reset_before"):
        kw["gate_activation"] = draw(st.sampled_from(["sigmoid", "hard_sigmoid"]))
    if cell == "lstm":
        if hidden_size > 1 and draw(st.booleans()):
            kw["proj_size"] = draw(st.integers(1, hidden_size - 1))
        kw["peephole"] = draw(st.booleans())
        kw["clip"] = draw(st.sampled_from([0.0, 0.0, 0.5, 3.0]))
        kw["input_forget"] = draw(st.booleans())
        if kw["bias"] and not kw["input_forget"]:
            kw["forget_bias"] = draw(st.sampled_from([0.0, 1.0]))
    else:  # ONNX's clip on the GRU and the RNN
        kw["clip"] = draw(st.sampled_from([0.0, 0.0, 0.5, 3.0]))
    return LayerSpec(cell, input_size, hidden_size, kw)


# -- problems --------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """What a call is given, drawn for one layer; arrays come from ``seed``."""

    steps: int
    batch: int
    unbatched: bool
    lengths: str  # none, full (all T), equal (all the same k < T), ragged, zero, too-long
    lengths_form: str  # list, int32, float, readonly, negative, scalar (unbatched only)
    state: str  # none, given, h-only, c-only (LSTM), misshapen
    x_form: tuple[str, str]
    h_form: tuple[str, str]
    c_form: tuple[str, str]
    seed: int
    expected_error: tuple[type[Exception], str] | None = field(default=None)


@st.composite
def problems(draw: st.DrawFn, lstm: bool) -> Problem:
    unbatched = draw(st.booleans())
    # Mostly T, N >= 1; one time in ten, 0 allowed (refused: "x must hold at least one time step ...").
    steps = draw(st.integers(0 if draw(st.integers(0, 9)) == 0 else 1, 6))
    batch = 1 if unbatched else draw(st.integers(0 if draw(st.integers(0, 9)) == 0 else 1, 4))
    lengths = draw(
        st.sampled_from(["none", "none", "full", "equal", "ragged", "ragged", "ragged", "zero", "too-long"])
    )
    if lengths == "equal" and steps < 2:
        lengths = "full"
    forms = ["list", "int32", "float", "readonly", "negative"] + (["scalar"] if unbatched else [])
    states = ["none", "none", "given", "given", "given", "misshapen"] + (["h-only", "c-only"] if lstm else [])
    problem = Problem(
        steps=steps,
        batch=batch,
        unbatched=unbatched,
        lengths=lengths,
        lengths_form=draw(st.sampled_from(forms)),
        state=draw(st.sampled_from(states)),
        x_form=draw(array_forms()),
        h_form=draw(array_forms()),
        c_form=draw(array_forms()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    if steps == 0 or batch == 0:
        problem.expected_error = (ValueError, "x must hold at least one time step and one sequence")
    elif problem.state == "misshapen":
        problem.expected_error = (ValueError, "must have shape")
    elif lengths in ("zero", "too-long"):
        problem.expected_error = (
            ValueError,
            f"lengths must each be between 1 and the number of time steps T={steps}",
        )
    return problem


class Inputs:
    """A problem's arguments as passed to the layer, and as the reference sees them (float64, time-major)."""

    def __init__(self, layer: fr.RNNBase, p: Problem) -> None:
        rng = np.random.default_rng(p.seed)
        cfg, dtype = layer.config, layer.dtype
        self.lstm = cfg.has_cell_state
        lead = cfg.num_layers * cfg.num_directions
        if p.unbatched:
            x_shape: tuple[int, ...] = (p.steps, cfg.input_size)
        elif layer.batch_first:
            x_shape = (p.batch, p.steps, cfg.input_size)
        else:
            x_shape = (p.steps, p.batch, cfg.input_size)
        self.x = present(rng.standard_normal(x_shape), *p.x_form, dtype)
        x64 = seen_as(self.x, dtype)
        if p.unbatched:
            x64 = x64[:, None, :]
        elif layer.batch_first:
            x64 = x64.transpose(1, 0, 2)
        self.x64 = np.ascontiguousarray(x64)

        def state_shape(features: int) -> tuple[int, ...]:
            return (lead, features) if p.unbatched else (lead, p.batch, features)

        h_shape, c_shape = state_shape(cfg.output_size), state_shape(cfg.hidden_size)
        if p.state == "misshapen":
            h_shape = c_shape = state_shape(cfg.output_size + 1)
        h = present(0.5 * rng.standard_normal(h_shape), *p.h_form, dtype)
        c = present(0.5 * rng.standard_normal(c_shape), *p.c_form, dtype) if self.lstm else None
        if p.state == "h-only":
            c = None
        if p.state == "c-only":
            h = None
        if p.state == "none":
            h = c = None
        self.h0_64 = None if h is None else self._state64(h, p, dtype)
        self.c0_64 = None if c is None else self._state64(c, p, dtype)
        if p.state == "none":
            self.state: Any = None
        else:
            self.state = (h, c) if self.lstm else h

        self.lengths: Any = None
        self.lengths64 = None
        if p.lengths != "none" and p.steps >= 1 and p.batch >= 1:
            n = p.batch
            pick = np.arange(n) == rng.integers(n)  # one sequence, for the invalid lengths
            if p.lengths == "full":
                values = np.full(n, p.steps)
            elif p.lengths == "equal":
                values = np.full(n, rng.integers(1, p.steps))
            elif p.lengths == "ragged":
                values = rng.integers(1, p.steps + 1, n)
            elif p.lengths == "zero":
                values = np.where(pick, 0, p.steps)
            else:
                assert p.lengths == "too-long"
                values = np.where(pick, p.steps + 1, 1)
            self.lengths = self._lengths_form(values, p.lengths_form)
            self.lengths64 = values.astype(np.int64)

    @staticmethod
    def _state64(s: Any, p: Problem, dtype: Any) -> np.ndarray:
        s64 = seen_as(s, dtype)
        return np.ascontiguousarray(s64[:, None, :] if p.unbatched else s64)

    @staticmethod
    def _lengths_form(values: np.ndarray, form: str) -> Any:
        if form == "list":
            return [int(v) for v in values]
        if form == "int32":
            return values.astype(np.int32)
        if form == "float":  # whole numbers in a float array are accepted
            return values.astype(np.float64)
        if form == "readonly":
            values = values.astype(np.int64)
            values.flags.writeable = False
            return values
        if form == "negative":
            return np.flip(np.flip(values).copy())
        assert form == "scalar" and values.shape == (1,)
        return int(values[0])

    def reference(self, layer: fr.RNNBase, masks: list[np.ndarray] | None = None) -> tuple[Any, ...]:
        params64 = {name: a.astype(np.float64) for name, a in layer.state_dict().items()}
        masks64 = None if masks is None else [m.astype(np.float64) for m in masks]
        return reference.forward(
            layer.config, params64, self.x64, self.h0_64, self.c0_64, self.lengths64, masks64
        )


def to_time_major(a: np.ndarray, layer: Any, unbatched: bool) -> np.ndarray:
    """A sequence array (y, grad x) from the caller's layout to (T, N, F)."""
    if unbatched:
        return a[:, None, :]
    return a.transpose(1, 0, 2) if layer.batch_first else a


def state_to_batched(a: np.ndarray, unbatched: bool) -> np.ndarray:
    return a[:, None, :] if unbatched else a


def check_outputs(
    layer: fr.RNNBase, inputs: Inputs, p: Problem, y: Any, state: Any, ref: tuple, assert_close: Any
) -> None:
    y_ref, h_ref, c_ref, _ = ref
    dtype = layer.dtype
    assert isinstance(y, np.ndarray) and y.dtype == dtype
    assert_close(to_time_major(y, layer, p.unbatched), y_ref, dtype, "y")
    h_n, c_n = state if inputs.lstm else (state, None)
    assert h_n.dtype == dtype
    assert_close(state_to_batched(h_n, p.unbatched), h_ref, dtype, "h_n")
    if inputs.lstm:
        assert c_n.dtype == dtype
        assert_close(state_to_batched(c_n, p.unbatched), c_ref, dtype, "c_n")


def outcome(p: Problem) -> str:
    """The example's class, for ``--hypothesis-show-statistics``."""
    if p.expected_error:
        return f"raises {p.expected_error[0].__name__}: {p.expected_error[1][:40]}"
    return f"matches the reference (lengths {p.lengths}, state {p.state})"


@st.composite
def layer_cases(draw: st.DrawFn, dropout: bool = False) -> tuple[LayerSpec, Problem]:
    spec = draw(layer_specs(dropout=dropout))
    return spec, draw(problems(lstm=spec.cell == "lstm"))


# -- layers: the call ------------------------------------------------------------------------------------


@pytest.mark.slow
@examples(2500)
@given(case=layer_cases())
def test_layer_call(case: tuple[LayerSpec, Problem], assert_close: Any) -> None:
    spec, p = case
    layer = spec.build()
    inputs = Inputs(layer, p)
    event(outcome(p))
    if p.expected_error:
        exc, message = p.expected_error
        with pytest.raises(exc, match=re.escape(message)):
            layer(inputs.x, inputs.state, inputs.lengths)
        return
    y, state = layer(inputs.x, inputs.state, inputs.lengths)
    check_outputs(layer, inputs, p, y, state, inputs.reference(layer), assert_close)


# -- layers: record and backward -------------------------------------------------------------------------

GRAD_STATES = ("none", "all", "all", "h-only", "c-only")


def grad_state_arrays(
    tape: fr.Tape, which: str, form: tuple[str, str], dtype: Any, rng: np.random.Generator
) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    """(grad_state as passed, gh as passed, gc as passed): random cotangents on h_n and c_n, or None."""
    lstm = isinstance(tape.state, tuple)
    h_n, c_n = tape.state if lstm else (tape.state, None)
    gh = present(rng.standard_normal(h_n.shape), *form, dtype)
    gc = present(rng.standard_normal(c_n.shape), *form, dtype) if lstm else None
    if which == "none":
        return None, None, None
    if which == "h-only":
        gc = None
    if which == "c-only" and lstm:
        gh = None
    return ((gh, gc) if lstm else gh), gh, gc


@pytest.mark.slow
@examples(2000)
@given(case=layer_cases(dropout=True), which=st.sampled_from(GRAD_STATES), grad_form=array_forms())
def test_layer_record_and_backward(
    case: tuple[LayerSpec, Problem], which: str, grad_form: tuple[str, str], assert_close: Any
) -> None:
    spec, p = case
    layer = spec.build()
    dtype = layer.dtype
    inputs = Inputs(layer, p)
    event(outcome(p))
    if p.expected_error:
        exc, message = p.expected_error
        with pytest.raises(exc, match=re.escape(message)):
            layer.record(inputs.x, inputs.state, inputs.lengths)
        return
    tape = layer.record(inputs.x, inputs.state, inputs.lengths)
    masks = tape.dropout_masks
    cfg = layer.config
    if layer.dropout and cfg.num_layers > 1:
        assert masks is not None and len(masks) == cfg.num_layers - 1
        for m in masks:
            assert m.shape == (p.steps, p.batch, cfg.num_directions * cfg.output_size)
            assert set(np.unique(m)) <= {0.0, dtype.type(1.0 / (1.0 - layer.dropout))}
    else:
        assert masks is None
    ref = inputs.reference(layer, masks)
    check_outputs(layer, inputs, p, tape.output, tape.state, ref, assert_close)

    rng = np.random.default_rng(p.seed + 1)
    # Cotangents everywhere, padded steps included (y is constant zero there, so they do not count).
    gy = present(rng.standard_normal(tape.output.shape), *grad_form, dtype)
    grad_state, gh, gc = grad_state_arrays(tape, which, grad_form, dtype, rng)
    grads = tape.backward(gy, grad_state)
    gx_ref, gh0_ref, gc0_ref, gp_ref = reference.backward(
        ref[3],
        to_time_major(seen_as(gy, dtype), layer, p.unbatched),
        None if gh is None else state_to_batched(seen_as(gh, dtype), p.unbatched),
        None if gc is None else state_to_batched(seen_as(gc, dtype), p.unbatched),
    )
    assert grads.input.shape == np.shape(inputs.x) and grads.input.dtype == dtype
    assert_close(to_time_major(grads.input, layer, p.unbatched), gx_ref, dtype, "grad x")
    dh0, dc0 = grads.state if inputs.lstm else (grads.state, None)
    assert_close(state_to_batched(dh0, p.unbatched), gh0_ref, dtype, "grad h0")
    if inputs.lstm:
        assert_close(state_to_batched(dc0, p.unbatched), gc0_ref, dtype, "grad c0")
    assert list(grads.params) == list(layer.state_dict())
    for name, g in grads.params.items():
        assert g.dtype == dtype, name
        assert_close(g, gp_ref[name], dtype, f"grad {name}")
    # A tape may run backward again, with the same result. (In float64 only within the tolerance, for
    # now: the last bit of grad x depends on the address of the array it is returned in, a kernel issue.)
    again = tape.backward(gy, grad_state)
    if dtype == np.float64:
        assert_close(again.input, grads.input, dtype, "grad x again")
    else:
        np.testing.assert_array_equal(again.input, grads.input)


# -- cells -----------------------------------------------------------------------------------------------


@dataclass
class CellCase:
    cell: str
    input_size: int
    hidden_size: int
    bias: bool
    dtype: Any
    batch: int
    unbatched: bool
    state: str  # none, given, list (LSTM state as a list), h-only, c-only, misshapen
    x_form: tuple[str, str]
    state_form: tuple[str, str]
    grad_form: tuple[str, str]
    grad_state: str
    seed: int
    clip: float = 0.0

    def build(self) -> Any:
        kw = dict(bias=self.bias, clip=self.clip, dtype=self.dtype, seed=self.seed)
        if self.cell.startswith("rnn"):
            return fr.RNNCell(self.input_size, self.hidden_size, nonlinearity=self.cell[4:], **kw)
        if self.cell == "lstm":
            return fr.LSTMCell(self.input_size, self.hidden_size, **kw)
        return fr.GRUCell(self.input_size, self.hidden_size, linear_before_reset=self.cell == "gru", **kw)


@st.composite
def cell_cases(draw: st.DrawFn) -> CellCase:
    cell = draw(st.sampled_from(CELLS))
    lstm = cell == "lstm"
    unbatched = draw(st.booleans())
    states = ["none", "given", "given", "misshapen"] + (["list", "h-only", "c-only"] if lstm else [])
    return CellCase(
        cell=cell,
        input_size=draw(st.sampled_from(SIZES)),
        hidden_size=draw(st.sampled_from(SIZES)),
        bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)),
        batch=1 if unbatched else draw(st.sampled_from([0, 1, 2, 3, 4, 8, 9])),
        unbatched=unbatched,
        state=draw(st.sampled_from(states)),
        x_form=draw(array_forms()),
        state_form=draw(array_forms()),
        grad_form=draw(array_forms()),
        grad_state=draw(st.sampled_from(GRAD_STATES)),
        seed=draw(st.integers(0, 2**32 - 1)),
        clip=draw(st.sampled_from([0.0, 0.0, 0.5, 3.0])),
    )


@pytest.mark.slow
@examples(1200)
@given(case=cell_cases())
def test_cell_call_record_and_backward(case: CellCase, assert_close: Any) -> None:
    cell = case.build()
    cfg, dtype = cell.config, cell.dtype
    lstm = cfg.has_cell_state
    rng = np.random.default_rng(case.seed)

    def shaped(features: int) -> tuple[int, ...]:
        return (features,) if case.unbatched else (case.batch, features)

    def batched64(a: Any) -> np.ndarray:  # as the reference sees it: (1, N, F) float64
        a64 = seen_as(a, dtype)
        return (a64[None, :] if case.unbatched else a64)[None]

    x = present(rng.standard_normal(shaped(case.input_size)), *case.x_form, dtype)
    hidden = case.hidden_size + (case.state == "misshapen")
    h = present(0.5 * rng.standard_normal(shaped(hidden)), *case.state_form, dtype)
    c = present(0.5 * rng.standard_normal(shaped(hidden)), *case.state_form, dtype)
    h_in = None if case.state in ("none", "c-only") else h
    c_in = None if case.state in ("none", "h-only") or not lstm else c
    if case.state == "none":
        state: Any = None
    elif lstm:
        state = [h_in, c_in] if case.state == "list" else (h_in, c_in)
    else:
        state = h_in

    event("raises" if case.batch == 0 or case.state == "misshapen" else f"matches (state {case.state})")
    if case.batch == 0 or case.state == "misshapen":
        message = "x must hold at least one sample" if case.batch == 0 else "must have shape"
        for run in (cell, cell.record):
            with pytest.raises(ValueError, match=message):
                run(x, state)
        return
    params64 = {f"{name}_l0": a.astype(np.float64) for name, a in cell.state_dict().items()}
    y_ref, h_ref, c_ref, cache = reference.forward(
        cfg,
        params64,
        batched64(x),
        None if h_in is None else batched64(h_in),
        None if c_in is None else batched64(c_in),
    )

    def user(a: np.ndarray) -> np.ndarray:  # (1, N, F) reference array -> the cell's layout
        return a[0, 0] if case.unbatched else a[0]

    out = cell(x, state)
    tape = cell.record(x, state)
    for got in (out, tape.state):
        h_new, c_new = got if lstm else (got, None)
        assert h_new.dtype == dtype and h_new.shape == shaped(case.hidden_size)
        assert_close(h_new, user(h_ref), dtype, "h")
        if lstm:
            assert_close(c_new, user(c_ref), dtype, "c")
    assert_close(tape.output, user(h_ref), dtype, "tape output")

    gy = present(rng.standard_normal(shaped(case.hidden_size)), *case.grad_form, dtype)
    grad_state, gh, gc = grad_state_arrays(tape, case.grad_state, case.grad_form, dtype, rng)
    grads = tape.backward(gy, grad_state)
    gh_total = batched64(gy) + (0 if gh is None else batched64(gh))  # h is both the output and the state
    gx_ref, gh0_ref, gc0_ref, gp_ref = reference.backward(
        cache, np.zeros_like(y_ref), gh_total, None if gc is None else batched64(gc)
    )
    assert grads.input.shape == np.shape(x) and grads.input.dtype == dtype
    assert_close(grads.input, user(gx_ref), dtype, "grad x")
    dh0, dc0 = grads.state if lstm else (grads.state, None)
    assert_close(dh0, user(gh0_ref), dtype, "grad h")
    if lstm:
        assert_close(dc0, user(gc0_ref), dtype, "grad c")
    assert list(grads.params) == list(cell.state_dict())
    for name, g in grads.params.items():
        assert_close(g, gp_ref[f"{name}_l0"], dtype, f"grad {name}")


# -- streams ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@examples(1000)
@given(
    spec=layer_specs(bidirectional=0.1),  # which cannot stream
    batch_size=st.sampled_from([None, None, 0, 1, 2, 3, 9]),
    steps=st.integers(1, 6),
    initial=st.sampled_from(["none", "given", "h-only"]),
    x_form=array_forms(),
    midway=st.sampled_from(["nothing", "nothing", "fork", "reload", "reset", "bad-x"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_stream_steps(
    spec: LayerSpec,
    batch_size: int | None,
    steps: int,
    initial: str,
    x_form: tuple[str, str],
    midway: str,
    seed: int,
    assert_close: Any,
) -> None:
    """Step after step, a stream gives the reference's run over the whole sequence; midway, a fork
    (copy.copy) continues alike, new weights (load_state_dict) apply from the next step on, and a reset
    starts again."""
    layer = spec.build()
    cfg, dtype = layer.config, layer.dtype
    lstm = cfg.has_cell_state
    rng = np.random.default_rng(seed)
    unbatched = batch_size is None
    n = 1 if unbatched else batch_size
    x = rng.standard_normal((steps, n, cfg.input_size))
    lead = cfg.num_layers * cfg.num_directions

    def user_state(a: np.ndarray) -> np.ndarray:
        return a[:, 0] if unbatched else a

    h0 = 0.5 * rng.standard_normal((lead, n, cfg.output_size))
    c0 = 0.5 * rng.standard_normal((lead, n, cfg.hidden_size))
    h0, c0 = h0.astype(dtype), c0.astype(dtype)
    if initial == "none":
        state: Any = None
        h0, c0 = np.zeros_like(h0), np.zeros_like(c0)
    elif lstm:
        if initial == "h-only":
            c0 = np.zeros_like(c0)
        state = (user_state(h0), None if initial == "h-only" else user_state(c0))
    else:
        state = user_state(h0)

    if cfg.bidirectional:
        with pytest.raises(ValueError, match=r"bidirectional=True\) cannot stream"):
            layer.stream(batch_size, state)
        return
    if batch_size == 0:
        with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
            layer.stream(batch_size, state)
        return
    s = layer.stream(batch_size, state)
    event(f"steps, then {midway}")

    def step_input(t: int) -> Any:
        return present(x[t, 0] if unbatched else x[t], *x_form, dtype)

    def run_reference(first: int, h: np.ndarray, c: np.ndarray | None) -> tuple[Any, ...]:
        params64 = {name: a.astype(np.float64) for name, a in layer.state_dict().items()}
        xs = np.stack([seen_as(step_input(t), dtype) for t in range(first, steps)])
        xs = xs[:, None, :] if unbatched else xs
        return reference.forward(
            cfg, params64, xs, h.astype(np.float64), None if c is None else c.astype(np.float64)
        )

    def check_steps(stream: Any, first: int, h: np.ndarray, c: np.ndarray | None) -> None:
        y_ref, h_ref, c_ref, _ = run_reference(first, h, c)
        for t in range(first, steps):
            y_t = stream.step(step_input(t))
            assert y_t.dtype == dtype
            assert_close(y_t, y_ref[t - first, 0] if unbatched else y_ref[t - first], dtype, f"y[{t}]")
        assert stream.steps == steps
        final = stream.state
        h_n, c_n = final if lstm else (final, None)
        assert_close(h_n, user_state(h_ref), dtype, "h_n")
        if lstm:
            assert_close(c_n, user_state(c_ref), dtype, "c_n")

    k = steps // 2
    if midway == "nothing":
        check_steps(s, 0, h0, c0 if lstm else None)
        return
    for t in range(k):
        s.step(step_input(t))
    mid = s.state
    h_k = mid[0] if lstm else mid
    h_k = h_k[:, None] if unbatched else h_k
    c_k = (mid[1][:, None] if unbatched else mid[1]) if lstm else None
    if midway == "bad-x":
        bad = np.zeros(((cfg.input_size + 1,) if unbatched else (n, cfg.input_size + 1)), dtype)
        with pytest.raises(ValueError, match="x_t must have shape"):
            s.step(bad)
        check_steps(s, k, h_k, c_k)  # the refused step changed nothing
    elif midway == "fork":
        fork = copy.copy(s)
        check_steps(fork, k, h_k, c_k)
        check_steps(s, k, h_k, c_k)
    elif midway == "reload":
        layer.load_state_dict(_reseeded(spec).state_dict())
        check_steps(s, k, h_k, c_k)
    else:
        assert midway == "reset"
        s.reset(state)
        assert s.steps == 0
        check_steps(s, 0, h0, c0 if lstm else None)


def _reseeded(spec: LayerSpec) -> fr.RNNBase:
    """The same layer with other weights."""
    kw = dict(spec.kwargs, seed=spec.kwargs["seed"] + 1)
    return LayerSpec(spec.cell, spec.input_size, spec.hidden_size, kw).build()


# -- load_state_dict -------------------------------------------------------------------------------------

FAULTS = (
    "none",
    "none",
    "missing",
    "unexpected",
    "misshapen",
    "not-numbers",
    "not-a-mapping",
    "partial-not-strict",
    "extra-not-strict",
)


@pytest.mark.slow
@examples(800)
@given(
    spec=layer_specs(),
    fault=st.sampled_from(FAULTS),
    form=array_forms(),
    victim=st.integers(0, 10**6),
    seed=st.integers(0, 2**32 - 1),
)
def test_load_state_dict(
    spec: LayerSpec, fault: str, form: tuple[str, str], victim: int, seed: int, assert_close: Any
) -> None:
    """Loaded weights, in any form, are the ones the model then computes with; a bad state_dict raises
    naming the entry and leaves the model exactly as it was (its weights bit for bit, and its outputs)."""
    layer = spec.build()
    cfg, dtype = layer.config, layer.dtype
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 2, cfg.input_size) if not layer.batch_first else (2, 3, cfg.input_size))
    y_before, _ = layer(x)
    before = layer.state_dict()
    names = list(before)
    name = names[victim % len(names)]
    new = {k: present(rng.uniform(-0.6, 0.6, a.shape), *form, dtype) for k, a in before.items()}
    strict = True
    error: tuple[type[Exception], str] | None = None
    if fault == "missing":
        del new[name]
        error = ValueError, f"missing {name!r}"
    elif fault == "unexpected":
        new["weight_ih_l9"] = np.zeros(3)
        error = ValueError, "unexpected 'weight_ih_l9'"
    elif fault == "misshapen":
        new[name] = np.zeros(before[name].shape + (1,))
        error = ValueError, f"state_dict[{name!r}] must have shape {before[name].shape}"
    elif fault == "not-numbers":
        new[name] = np.full(before[name].shape, "0.5")
        error = TypeError, f"state_dict[{name!r}] must be an array of real numbers"
    elif fault == "not-a-mapping":
        new = list(new.items())  # type: ignore[assignment]
        error = TypeError, "state_dict must be a mapping"
    elif fault == "partial-not-strict":
        del new[name]
        strict = False
    elif fault == "extra-not-strict":
        new["bias_xx_l0"] = "ignored"
        strict = False

    event(f"fault: {fault}")
    if error is not None:
        exc, message = error
        with pytest.raises(exc, match=re.escape(message)):
            layer.load_state_dict(new, strict=strict)
        after = layer.state_dict()
        for k in names:
            np.testing.assert_array_equal(after[k], before[k], err_msg=k)
        if dtype == np.float64:
            # Only within the tolerance, for now: float64 calls of a stacked bidirectional projected LSTM
            # differ in the last bit from call to call (a kernel issue, reported).
            assert_close(layer(x)[0], y_before, dtype, "y after the refused load")
        else:
            np.testing.assert_array_equal(layer(x)[0], y_before)
        return
    layer.load_state_dict(new, strict=strict)
    after = layer.state_dict()
    assert list(after) == names
    for k in names:
        want = seen_as(new[k], dtype) if k in new else before[k]
        assert after[k].dtype == dtype
        np.testing.assert_array_equal(after[k], want, err_msg=k)
    y, _ = layer(x)
    if form[1] == "int32":
        # Integer weights are whole numbers, far larger than a trained model's: the problem is so badly
        # conditioned that float32 rounding alone moves y past the tolerance (the NumPy reference run in
        # float32 does too). What is checked is that the model computes with what it shows: the same as a
        # twin given those weights in its own dtype.
        twin = _reseeded(spec)
        twin.load_state_dict(after)
        if dtype == np.float64:  # (the last bit varies from call to call in float64, see above)
            assert_close(y, twin(x)[0], dtype, "y")
        else:
            np.testing.assert_array_equal(y, twin(x)[0])
        return
    x64 = seen_as(x, dtype)
    x64 = x64.transpose(1, 0, 2) if layer.batch_first else x64
    params64 = {k: a.astype(np.float64) for k, a in after.items()}
    y_ref = reference.forward(cfg, params64, x64)[0]
    assert_close(y.transpose(1, 0, 2) if layer.batch_first else y, y_ref, dtype, "y")


# -- the closed-form size ---------------------------------------------------------------------------------


@st.composite
def stack_configs(draw: st.DrawFn) -> StackConfig:
    cell = draw(st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru"]))
    hidden = draw(st.integers(1, 40))
    lstm = cell == "lstm"
    return StackConfig(
        cell,
        draw(st.integers(1, 40)),
        hidden,
        num_layers=draw(st.integers(1, 6)),
        bias=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)) if lstm else 0,
        peephole=lstm and draw(st.booleans()),
    )


@examples(300)
@given(config=stack_configs())
def test_closed_form_size_counts_the_listed_parameters(config: StackConfig) -> None:
    """The closed forms the size check uses (before any per-layer list exists) count what is built."""
    shapes = config.param_shapes()
    assert config.num_parameters() == sum(int(np.prod(shape)) for _, shape in shapes)
    assert config.num_arrays() == len(shapes)
