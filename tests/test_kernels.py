"""The compiled kernels, through the public layers, against the NumPy reference (``fusedrnn.reference``).

Every case builds a layer, runs it (inference call, and ``record`` + ``tape.backward`` under random
cotangents on y, h_n and c_n), and compares with the reference run in float64 on the same weights and
inputs. Tolerances are per dtype (``tolerances.KERNEL_VS_REFERENCE``) and are not to be widened to make a
case pass.

Sampling scheme (a full cartesian product would take too long for CI):

* cell: rnn_tanh, rnn_relu, lstm, lstm-proj, gru, gru-lbr0 -- every case list below covers all six.
* The cheap binary axes form a full product for every cell: direction (uni, bi) x bias (bias, nobias)
  x layout (tm = time-major, bf = batch_first) x lengths (full, varlen) x initial state (zero, given)
  x dtype (f32, f64): 64 cases per cell.
* num_layers and the hidden size are derived from the case's index k in that product:
  layers = (1, 2, 3)[k % 3] and hidden = (1, 7, 8, 9, 31, 32, 33)[k % 7]. As 2, 3 and 7 are coprime and
  the dtype is the fastest axis, k = 0..41 already hits every (dtype, layers, hidden) triple, so every
  value of every axis meets every cell and every layers/hidden/dtype combination is run. lstm-proj cannot
  have hidden size 1 (the projection must be smaller), so it uses 2 there; its projection is
  max(1, hidden // 3).
* T, N and the input size come from a generator seeded by k (T in 1..6, N in 1..4, input size in
  {1, 3, 8, 9, 17}); varlen cases use T >= 2 and lengths drawn in [1, T].

Separately: dropout between layers (the tape's masks fed to the reference), cells, and a few larger
shapes that exercise the kernels' blocking and threading.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import reference
from fusedrnn._testing import get_tuning, tuning

CELL_KINDS = ("rnn_tanh", "rnn_relu", "lstm", "lstm-proj", "gru", "gru-lbr0")
LAYERS = (1, 2, 3)
HIDDEN = (1, 7, 8, 9, 31, 32, 33)
INPUTS = (1, 3, 8, 9, 17)
DTYPES = {"f32": np.float32, "f64": np.float64}


def make_layer(kind: str, input_size: int, hidden: int, **kw: Any) -> fr.RNNBase:
    if kind in ("rnn_tanh", "rnn_relu"):
        return fr.RNN(input_size, hidden, nonlinearity=kind[4:], **kw)
    if kind == "lstm":
        return fr.LSTM(input_size, hidden, **kw)
    if kind == "lstm-proj":
        return fr.LSTM(input_size, hidden, proj_size=max(1, hidden // 3), **kw)
    if kind == "gru":
        return fr.GRU(input_size, hidden, **kw)
    if kind == "gru-lbr0":
        return fr.GRU(input_size, hidden, linear_before_reset=False, **kw)
    raise AssertionError(kind)


class Case:
    """One sampled configuration; ``id`` is what pytest shows."""

    def __init__(
        self,
        kind: str,
        k: int,
        bidirectional: bool,
        bias: bool,
        batch_first: bool,
        varlen: bool,
        given_state: bool,
        dtype: str,
    ) -> None:
        self.kind = kind
        self.bidirectional = bidirectional
        self.bias = bias
        self.batch_first = batch_first
        self.varlen = varlen
        self.given_state = given_state
        self.dtype = DTYPES[dtype]
        self.layers = LAYERS[k % len(LAYERS)]
        hidden = HIDDEN[k % len(HIDDEN)]
        self.hidden = 2 if (kind == "lstm-proj" and hidden == 1) else hidden
        g = np.random.default_rng(1000 * CELL_KINDS.index(kind) + k)
        self.steps = int(g.integers(2 if varlen else 1, 7))
        self.batch = int(g.integers(1, 5))
        self.input_size = int(g.choice(INPUTS))
        self.seed = int(g.integers(2**31))
        self.id = "-".join(
            [
                kind,
                f"L{self.layers}",
                "bi" if bidirectional else "uni",
                "bias" if bias else "nobias",
                "bf" if batch_first else "tm",
                "varlen" if varlen else "full",
                "h0" if given_state else "zero",
                dtype,
                f"H{self.hidden}",
                f"I{self.input_size}",
                f"T{self.steps}",
                f"N{self.batch}",
            ]
        )


def sampled_cases() -> list[Case]:
    cases = []
    for kind in CELL_KINDS:
        product = itertools.product(
            (False, True), (True, False), (False, True), (False, True), (False, True), DTYPES
        )
        for k, (bi, bias, bf, varlen, state, dtype) in enumerate(product):
            cases.append(Case(kind, k, bi, bias, bf, varlen, state, dtype))
    return cases


CASES = sampled_cases()


def as_time_major(a: np.ndarray, batch_first: bool) -> np.ndarray:
    return a.transpose(1, 0, 2) if batch_first else a


class Problem:
    """A layer plus inputs for it, and the same problem in the reference's terms (float64, time-major)."""

    def __init__(
        self,
        layer: fr.RNNBase,
        rng: np.random.Generator,
        steps: int,
        batch: int,
        varlen: bool,
        given_state: bool,
    ) -> None:
        self.layer = layer
        cfg = layer.config
        dtype = layer.dtype
        self.lstm = cfg.has_cell_state
        dl = cfg.num_layers * cfg.num_directions
        shape = (batch, steps, cfg.input_size) if layer.batch_first else (steps, batch, cfg.input_size)
        # Inputs are drawn in float64 and rounded to the layer's dtype, so both sides see the same values.
        self.x = rng.standard_normal(shape).astype(dtype)
        self.lengths = None
        if varlen:  # ragged, with at least one sequence shorter than T
            self.lengths = rng.integers(1, steps + 1, size=batch)
            self.lengths[0] = rng.integers(1, steps)
        self.h0 = self.c0 = None
        if given_state:
            self.h0 = (0.5 * rng.standard_normal((dl, batch, cfg.output_size))).astype(dtype)
            if self.lstm:
                self.c0 = (0.5 * rng.standard_normal((dl, batch, cfg.hidden_size))).astype(dtype)
        self.params64 = {name: a.astype(np.float64) for name, a in layer.state_dict().items()}
        self.x64 = np.ascontiguousarray(as_time_major(self.x, layer.batch_first), dtype=np.float64)
        self.h0_64 = None if self.h0 is None else self.h0.astype(np.float64)
        self.c0_64 = None if self.c0 is None else self.c0.astype(np.float64)

    @property
    def state(self) -> Any:
        if self.lstm:
            return None if self.h0 is None else (self.h0, self.c0)
        return self.h0

    def reference_forward(self, masks: list[np.ndarray] | None = None) -> tuple[Any, ...]:
        masks64 = None if masks is None else [m.astype(np.float64) for m in masks]
        return reference.forward(
            self.layer.config, self.params64, self.x64, self.h0_64, self.c0_64, self.lengths, masks64
        )


def check_forward(problem: Problem, y: np.ndarray, state: Any, assert_close: Any, ref_out: tuple) -> None:
    layer = problem.layer
    y_ref, h_ref, c_ref, _ = ref_out
    assert y.dtype == layer.dtype
    assert_close(as_time_major(y, layer.batch_first), y_ref, layer.dtype, "y")
    if problem.lstm:
        h_n, c_n = state
        assert_close(c_n, c_ref, layer.dtype, "c_n")
    else:
        h_n = state
    assert_close(h_n, h_ref, layer.dtype, "h_n")


def run_backward(
    problem: Problem, rng: np.random.Generator, assert_close: Any, with_dropout: bool = False
) -> None:
    layer = problem.layer
    dtype = layer.dtype
    tape = layer.record(problem.x, problem.state, problem.lengths)
    masks = tape.dropout_masks
    if with_dropout:
        assert masks is not None and len(masks) == layer.num_layers - 1
    else:
        assert masks is None
    ref_out = problem.reference_forward(masks)
    check_forward(problem, tape.output, tape.state, assert_close, ref_out)

    # Random cotangents everywhere, padded steps included (y is constant zero there).
    gy = rng.standard_normal(tape.output.shape).astype(dtype)
    if problem.lstm:
        gh = rng.standard_normal(tape.state[0].shape).astype(dtype)
        gc = rng.standard_normal(tape.state[1].shape).astype(dtype)
        grads = tape.backward(gy, (gh, gc))
        gx_ref, gh0_ref, gc0_ref, gp_ref = reference.backward(
            ref_out[3],
            as_time_major(gy, layer.batch_first).astype(np.float64),
            gh.astype(np.float64),
            gc.astype(np.float64),
        )
        dh0, dc0 = grads.state
        assert_close(dc0, gc0_ref, dtype, "grad c0")
    else:
        gh = rng.standard_normal(tape.state.shape).astype(dtype)
        grads = tape.backward(gy, gh)
        gx_ref, gh0_ref, _, gp_ref = reference.backward(
            ref_out[3], as_time_major(gy, layer.batch_first).astype(np.float64), gh.astype(np.float64)
        )
        dh0 = grads.state
    assert grads.input.shape == problem.x.shape
    assert grads.input.dtype == dtype
    assert_close(as_time_major(grads.input, layer.batch_first), gx_ref, dtype, "grad x")
    assert_close(dh0, gh0_ref, dtype, "grad h0")
    assert list(grads.params) == list(layer.state_dict())
    for name, g in grads.params.items():
        assert g.dtype == dtype, name
        assert_close(g, gp_ref[name], dtype, f"grad {name}")


def build(case: Case, rng: np.random.Generator, **kw: Any) -> Problem:
    layer = make_layer(
        case.kind,
        case.input_size,
        case.hidden,
        num_layers=case.layers,
        bias=case.bias,
        batch_first=case.batch_first,
        bidirectional=case.bidirectional,
        dtype=case.dtype,
        seed=case.seed,
        **kw,
    )
    return Problem(layer, rng, case.steps, case.batch, case.varlen, case.given_state)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_forward(case: Case, rng: np.random.Generator, assert_close: Any) -> None:
    problem = build(case, rng)
    y, state = problem.layer(problem.x, problem.state, problem.lengths)
    check_forward(problem, y, state, assert_close, problem.reference_forward())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_backward(case: Case, rng: np.random.Generator, assert_close: Any) -> None:
    run_backward(build(case, rng), rng, assert_close)


# Dropout between layers: every cell, 2 and 3 layers, both directions, with ragged lengths.
DROPOUT_CASES = [
    (kind, layers, bi, dtype)
    for kind in CELL_KINDS
    for layers, bi, dtype in ((2, False, "f32"), (3, True, "f64"), (2, True, "f64"), (3, False, "f32"))
]


@pytest.mark.parametrize(
    "kind,layers,bi,dtype",
    DROPOUT_CASES,
    ids=[f"{k}-L{n}-{'bi' if b else 'uni'}-{d}" for k, n, b, d in DROPOUT_CASES],
)
def test_backward_with_dropout(
    kind: str, layers: int, bi: bool, dtype: str, rng: np.random.Generator, assert_close: Any
) -> None:
    p = 0.4
    layer = make_layer(
        kind, 5, 9, num_layers=layers, bidirectional=bi, dropout=p, dtype=DTYPES[dtype], seed=3
    )
    problem = Problem(layer, rng, steps=5, batch=3, varlen=True, given_state=True)
    run_backward(problem, rng, assert_close, with_dropout=True)


# Larger problems: blocking, vector tails and several threads in the kernels.
LARGE_CASES = [(kind, dtype) for kind in CELL_KINDS for dtype in ("f32", "f64")]


@pytest.mark.parametrize("kind,dtype", LARGE_CASES, ids=[f"{k}-{d}" for k, d in LARGE_CASES])
def test_larger_shapes(kind: str, dtype: str, rng: np.random.Generator, assert_close: Any) -> None:
    layer = make_layer(kind, 40, 70, num_layers=2, bidirectional=True, dtype=DTYPES[dtype], seed=11)
    problem = Problem(layer, rng, steps=12, batch=9, varlen=True, given_state=True)
    y, state = layer(problem.x, problem.state, problem.lengths)
    check_forward(problem, y, state, assert_close, problem.reference_forward())
    run_backward(problem, rng, assert_close)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_input_projection_step_by_step_gives_the_same_numbers(kind: str, rng: np.random.Generator) -> None:
    """The input projection computed step by step, inside the time loop (as one-step calls and large batches
    do), against the usual one product before the loop: the AVX2 and AVX-512 kernels sum each element in
    one order whatever the number of rows, so the numbers are the same bits; other builds never project per
    step."""
    layer = make_layer(kind, 40, 70, num_layers=2, bidirectional=True, dtype=np.float32, seed=5)
    x = rng.standard_normal((9, 5, 40)).astype(np.float32)
    lengths = np.array([9, 3, 7, 1, 9])
    y, state = layer(x, lengths=lengths)
    with tuning(projection_per_step=True) as switches:
        assert switches["projection_per_step"]
        y_steps, state_steps = layer(x, lengths=lengths)
    assert not get_tuning()["projection_per_step"]
    np.testing.assert_array_equal(y_steps, y)
    for got, want in zip(
        state_steps if isinstance(state, tuple) else [state_steps],
        state if isinstance(state, tuple) else [state],
    ):
        np.testing.assert_array_equal(got, want)


# Cells: one step of one layer, so the reference runs with T=1, L=1 and the cell's names suffixed _l0.
CELL_CLIP = 0.4
CELL_CLASSES = {
    "rnn_tanh": lambda i, h, **kw: fr.RNNCell(i, h, nonlinearity="tanh", **kw),
    "rnn_relu": lambda i, h, **kw: fr.RNNCell(i, h, nonlinearity="relu", **kw),
    "lstm": lambda i, h, **kw: fr.LSTMCell(i, h, **kw),
    "gru": lambda i, h, **kw: fr.GRUCell(i, h, **kw),
    "gru-lbr0": lambda i, h, **kw: fr.GRUCell(i, h, linear_before_reset=False, **kw),
    # ONNX's clip, at a bound the cells' default weights reach on some units and not on others
    "rnn_tanh-clip": lambda i, h, **kw: fr.RNNCell(i, h, nonlinearity="tanh", clip=CELL_CLIP, **kw),
    "rnn_relu-clip": lambda i, h, **kw: fr.RNNCell(i, h, nonlinearity="relu", clip=CELL_CLIP, **kw),
    "lstm-clip": lambda i, h, **kw: fr.LSTMCell(i, h, clip=CELL_CLIP, **kw),
    "gru-clip": lambda i, h, **kw: fr.GRUCell(i, h, clip=CELL_CLIP, **kw),
    "gru-lbr0-clip": lambda i, h, **kw: fr.GRUCell(i, h, linear_before_reset=False, clip=CELL_CLIP, **kw),
}
CELL_CASES = [
    (kind, hidden, bias, batched, given, dtype)
    for kind in CELL_CLASSES
    for hidden, bias, batched, given, dtype in (
        (1, True, True, True, "f32"),
        (8, False, False, True, "f64"),
        (9, True, False, False, "f32"),
        (31, True, True, False, "f64"),
        (33, False, True, True, "f32"),
        (32, True, True, True, "f64"),
    )
]


@pytest.mark.parametrize(
    "kind,hidden,bias,batched,given,dtype",
    CELL_CASES,
    ids=[
        f"{k}-H{h}-{'bias' if b else 'nobias'}-{'batched' if n else 'unbatched'}-{'h0' if g else 'zero'}-{d}"
        for k, h, b, n, g, d in CELL_CASES
    ],
)
def test_cells(
    kind: str,
    hidden: int,
    bias: bool,
    batched: bool,
    given: bool,
    dtype: str,
    rng: np.random.Generator,
    assert_close: Any,
) -> None:
    dt = DTYPES[dtype]
    cell = CELL_CLASSES[kind](6, hidden, bias=bias, dtype=dt, seed=5)
    cfg = cell.config
    lstm = cfg.has_cell_state
    n = 4 if batched else 1
    x = rng.standard_normal((n, 6)).astype(dt)
    h = (0.5 * rng.standard_normal((n, hidden))).astype(dt)
    c = (0.5 * rng.standard_normal((n, hidden))).astype(dt)
    params64 = {f"{name}_l0": a.astype(np.float64) for name, a in cell.state_dict().items()}
    y_ref, h_ref, c_ref, cache = reference.forward(
        cfg,
        params64,
        x[None].astype(np.float64),
        h[None].astype(np.float64) if given else None,
        c[None].astype(np.float64) if (given and lstm) else None,
    )

    def user(a: np.ndarray) -> np.ndarray:
        return a if batched else a[0]

    state = ((user(h), user(c)) if lstm else user(h)) if given else None
    out = cell(user(x), state)
    tape = cell.record(user(x), state)
    if lstm:
        assert_close(out[0], user(h_ref[0]), dt, "h")
        assert_close(out[1], user(c_ref[0]), dt, "c")
        assert_close(tape.state[1], user(c_ref[0]), dt, "tape c")
    else:
        assert_close(out, user(h_ref[0]), dt, "h")
    assert_close(tape.output, user(h_ref[0]), dt, "tape h")

    gout = rng.standard_normal((n, hidden)).astype(dt)
    gh = rng.standard_normal((n, hidden)).astype(dt)
    gc = rng.standard_normal((n, hidden)).astype(dt)
    if lstm:
        g = tape.backward(user(gout), (user(gh), user(gc)))
        ref_grads = reference.backward(
            cache, gout[None].astype(np.float64), gh[None].astype(np.float64), gc[None].astype(np.float64)
        )
        assert_close(g.state[1], user(ref_grads[2][0]), dt, "grad c")
        dh = g.state[0]
    else:
        g = tape.backward(user(gout), user(gh))
        ref_grads = reference.backward(cache, gout[None].astype(np.float64), gh[None].astype(np.float64))
        dh = g.state
    assert_close(g.input, user(ref_grads[0][0]), dt, "grad x")
    assert_close(dh, user(ref_grads[1][0]), dt, "grad h")
    assert list(g.params) == list(cell.state_dict())
    for name, grad in g.params.items():
        assert_close(grad, ref_grads[3][f"{name}_l0"], dt, f"grad {name}")


@pytest.mark.parametrize("kind", [kind for kind in CELL_CLASSES if kind.endswith("-clip")])
def test_cell_clip_bounds_some_inputs_and_not_others(kind: str) -> None:
    """The clip cells above test the clip only if it bounds some of the activations' inputs and leaves
    others: the share it bounds, over the hidden sizes of CELL_CASES with the cells' weights (seed 5)."""
    bounded = []
    for hidden in sorted({case[1] for case in CELL_CASES}):
        cell = CELL_CLASSES[kind](6, hidden, dtype=np.float64, seed=5)
        g = np.random.default_rng(hidden)
        x = g.standard_normal((1, 4, 6))
        h, c = 0.5 * g.standard_normal((2, 1, 4, hidden))
        params = {f"{name}_l0": a for name, a in cell.state_dict().items()}
        _, _, _, cache = reference.forward(
            cell.config, params, x, h, c if cell.config.has_cell_state else None
        )
        bounded.append(np.abs(cache.steps[0][0][0].cache.pre) >= CELL_CLIP)
    share = float(np.concatenate([b.ravel() for b in bounded]).mean())
    assert 0.1 < share < 0.9, share
