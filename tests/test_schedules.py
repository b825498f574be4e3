"""Every schedule of the kernels against the NumPy reference, at hidden sizes that cut the layers into
several slices, whatever the machine's core count.

A layer's hidden units are cut into slices (one per 64 units, at most one per hardware thread), and a
team of threads runs them by one of several schedules: slices claimed step by step (the default), the
same with every thread going for the others' slices first, a barrier every step, or each thread taking its
own sequences through every step; a bidirectional layer runs its directions at once or one after the
other. The other kernel tests use hidden sizes of one slice; here H is 128, 136 (a slice boundary off the
16-unit grid), 200 and 256, the slice count is forced through ``fusedrnn._testing.tuning`` (1, 2, 3, 4),
and forward and backward of each schedule must match the reference (float32 and float64).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import reference
from fusedrnn._testing import tuning
from tolerances import REGROUPED_F32

SCHEDULES = {
    "claimed": {},
    "claimed-others-first": {"claim_others_first": True},
    "barrier": {"claim_steps": False},
    "rows": {"rows_per_member": 1},
    "directions-in-turn": {"directions_at_once": False},
}

CELLS = {
    "lstm": lambda h, **kw: fr.LSTM(12, h, **kw),
    "lstm-proj": lambda h, **kw: fr.LSTM(12, h, proj_size=h // 4, **kw),
    "gru": lambda h, **kw: fr.GRU(12, h, **kw),
    "gru-reset-before": lambda h, **kw: fr.GRU(12, h, linear_before_reset=False, **kw),
    "rnn": lambda h, **kw: fr.RNN(12, h, **kw),
}


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("hidden", [128, 136, 200, 256])
@pytest.mark.parametrize("cell", list(CELLS))
def test_every_schedule_and_slice_count_matches_the_reference(cell, hidden, dtype, assert_close) -> None:
    rng = np.random.default_rng(hidden)
    x = rng.standard_normal((4, 4, 12)).astype(dtype)
    lengths = np.array([4, 2, 3, 4])
    grad_y = None
    expected = None
    for slices in (1, 2, 3, 4):
        with tuning(slices=slices):
            layer = CELLS[cell](hidden, num_layers=2, bidirectional=True, dtype=dtype, seed=0)
        assert layer._stack._slices() == slices
        if expected is None:  # the same weights whatever the slices: one reference answer
            y_ref, _, _, cache = reference.forward(
                layer.config, layer.state_dict(), x.astype(np.float64), lengths=lengths
            )
            grad_y = rng.standard_normal(y_ref.shape).astype(dtype)
            gx_ref, _, _, params_ref = reference.backward(cache, grad_y.astype(np.float64))
            expected = (y_ref, gx_ref, params_ref)
        y_ref, gx_ref, params_ref = expected
        for name, switches in SCHEDULES.items():
            what = f"{slices} slices, {name}"
            with tuning(**switches):
                y, _ = layer(x, lengths=lengths)
                tape = layer.record(x, lengths=lengths)
                grads = tape.backward(grad_y)
            assert_close(y, y_ref, dtype, f"{what}: inference y")
            assert_close(tape.output, y_ref, dtype, f"{what}: recorded y")
            assert_close(grads.input, gx_ref, dtype, f"{what}: grad x")
            for param, g in grads.params.items():
                assert_close(g, params_ref[param], dtype, f"{what}: grad {param}")


def test_the_slice_count_is_read_when_a_model_is_built() -> None:
    """Forcing slices changes nothing in the answers (the same bits: every product sums in one order
    whatever the cut) and nothing for models built before."""
    x = np.random.default_rng(0).standard_normal((3, 2, 12)).astype(np.float32)
    default = fr.LSTM(12, 128, seed=0)
    with tuning(slices=4):
        four = fr.LSTM(12, 128, seed=0)
        y_default = default(x)[0]
    assert four._stack._slices() == 4
    assert default._stack._slices() == max(1, min(128 // 64, os.cpu_count() or 1))
    np.testing.assert_allclose(four(x)[0], y_default, **REGROUPED_F32.kw())


@pytest.mark.parametrize("bad", [{"slicez": 2}, {"rows": 1}])
def test_unknown_switches_are_named(bad) -> None:
    with pytest.raises(TypeError, match="unknown tuning switches"):
        with tuning(**bad):
            pass
