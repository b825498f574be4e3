"""The public API: construction, attributes, state_dict, layouts, lengths, tapes, dropout, cells,
threads and concurrent use."""

from __future__ import annotations

import copy
import math
import pickle
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import reference
from tolerances import REARRANGED_F32, REGROUPED_F32

LAYER_FACTORIES = {
    "rnn": lambda *a, **kw: fr.RNN(*a, **kw),
    "lstm": lambda *a, **kw: fr.LSTM(*a, **kw),
    "lstm-proj": lambda *a, **kw: fr.LSTM(*a, proj_size=3, **kw),
    "gru": lambda *a, **kw: fr.GRU(*a, **kw),
}
KINDS = list(LAYER_FACTORIES)


def make(kind: str, input_size: int = 4, hidden_size: int = 6, **kw: Any) -> fr.RNNBase:
    kw.setdefault("seed", 0)
    return LAYER_FACTORIES[kind](input_size, hidden_size, **kw)


def h_of(state: Any) -> np.ndarray:
    return state[0] if isinstance(state, tuple) else state


def ref_run(layer: fr.RNNBase, x_tm: np.ndarray, h0=None, c0=None, lengths=None, masks=None) -> tuple:
    params = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    return reference.forward(layer.config, params, np.asarray(x_tm, np.float64), h0, c0, lengths, masks)


# -- the package ---------------------------------------------------------------------------------------


def test_import_does_not_import_torch() -> None:
    code = "import sys, fusedrnn; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_friendly_message_when_the_compiled_module_is_missing() -> None:
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "fusedrnn._core":
            raise ImportError("simulated: no compiled module")
sys.meta_path.insert(0, Block())
try:
    import fusedrnn
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "fusedrnn._core" in out.stdout and "could not be imported" in out.stdout
    assert "simulated: no compiled module" in out.stdout
    assert "pip install" in out.stdout


def test_exports() -> None:
    for name in (
        "RNN",
        "LSTM",
        "GRU",
        "RNNCell",
        "LSTMCell",
        "GRUCell",
        "set_num_threads",
        "get_num_threads",
    ):
        assert hasattr(fr, name), name
    assert fr.reference is reference
    assert callable(fr.reference.forward) and callable(fr.reference.backward)
    assert isinstance(fr.__version__, str)


# -- construction and attributes -----------------------------------------------------------------------


def test_defaults_match_torch() -> None:
    m = fr.LSTM(3, 5)
    assert (m.input_size, m.hidden_size, m.num_layers, m.bias, m.batch_first) == (3, 5, 1, True, False)
    assert (m.dropout, m.bidirectional, m.proj_size, m.mode) == (0.0, False, 0, "LSTM")
    assert m.dtype == np.float32
    r = fr.RNN(3, 5)
    assert (r.nonlinearity, r.mode, r.proj_size) == ("tanh", "RNN_TANH", 0)
    assert fr.RNN(3, 5, nonlinearity="relu").mode == "RNN_RELU"
    g = fr.GRU(3, 5)
    assert (g.mode, g.linear_before_reset) == ("GRU", True)


def test_positional_argument_order_is_torchs() -> None:
    r = fr.RNN(3, 5, 2, "relu", False, True, 0.25, True)
    assert (r.num_layers, r.nonlinearity, r.bias, r.batch_first, r.dropout, r.bidirectional) == (
        2,
        "relu",
        False,
        True,
        0.25,
        True,
    )
    m = fr.LSTM(3, 5, 2, False, True, 0.25, True, 2)
    assert (m.num_layers, m.bias, m.batch_first, m.dropout, m.bidirectional, m.proj_size) == (
        2,
        False,
        True,
        0.25,
        True,
        2,
    )
    g = fr.GRU(3, 5, 2, False, True, 0.25, True, linear_before_reset=False)
    assert (g.num_layers, g.bias, g.batch_first, g.bidirectional, g.linear_before_reset) == (
        2,
        False,
        True,
        True,
        False,
    )


def test_repr() -> None:
    assert repr(fr.LSTM(10, 20)) == "LSTM(10, 20)"
    text = repr(
        fr.LSTM(10, 20, 2, batch_first=True, dropout=0.5, bidirectional=True, proj_size=5, dtype=np.float64)
    )
    assert text == (
        "LSTM(10, 20, num_layers=2, batch_first=True, dropout=0.5, bidirectional=True, proj_size=5, "
        "dtype=float64)"
    )
    assert repr(fr.RNN(3, 4, nonlinearity="relu", bias=False)) == "RNN(3, 4, nonlinearity='relu', bias=False)"
    assert repr(fr.GRU(3, 4, linear_before_reset=False)) == "GRU(3, 4, linear_before_reset=False)"
    assert repr(fr.LSTMCell(3, 4)) == "LSTMCell(3, 4)"
    assert repr(fr.RNNCell(3, 4, nonlinearity="relu")) == "RNNCell(3, 4, nonlinearity='relu')"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers,bi", [(1, False), (2, True), (3, False)])
def test_num_parameters(kind: str, layers: int, bi: bool) -> None:
    i, h = 4, 6
    m = make(kind, i, h, num_layers=layers, bidirectional=bi)
    g = {"rnn": 1, "lstm": 4, "lstm-proj": 4, "gru": 3}[kind]
    p = 3 if kind == "lstm-proj" else 0
    out = p or h
    d = 2 if bi else 1
    total = 0
    for layer in range(layers):
        inp = i if layer == 0 else d * out
        total += d * (g * h * inp + g * h * out + 2 * g * h + p * h)
    assert m.num_parameters() == total
    assert sum(a.size for a in m.state_dict().values()) == total


@pytest.mark.parametrize("kind", KINDS)
def test_init_is_torchs_uniform_and_seeded(kind: str) -> None:
    m = make(kind, 5, 16, num_layers=2, bidirectional=True, seed=123)
    bound = 1 / math.sqrt(16)
    values = np.concatenate([a.ravel() for a in m.state_dict().values()])
    assert values.min() >= -bound and values.max() <= bound
    assert values.min() < -0.9 * bound and values.max() > 0.9 * bound  # the whole range is used
    assert abs(values.mean()) < 0.1 * bound
    same = make(kind, 5, 16, num_layers=2, bidirectional=True, seed=123).state_dict()
    other = make(kind, 5, 16, num_layers=2, bidirectional=True, seed=124).state_dict()
    for name, a in m.state_dict().items():
        np.testing.assert_array_equal(a, same[name])
        assert not np.array_equal(a, other[name])
    unseeded = [make(kind, 5, 16, seed=None).state_dict()["weight_ih_l0"] for _ in range(2)]
    assert not np.array_equal(*unseeded)


def test_seed_accepts_generator() -> None:
    a = fr.GRU(3, 4, seed=np.random.default_rng(7)).state_dict()
    b = fr.GRU(3, 4, seed=np.random.default_rng(7)).state_dict()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32", "float64", np.dtype("float64")])
def test_dtype_argument(dtype: Any) -> None:
    m = fr.LSTM(3, 4, dtype=dtype)
    assert m.dtype == np.dtype(dtype)
    assert all(a.dtype == np.dtype(dtype) for a in m.state_dict().values())
    y, (h, c) = m(np.ones((2, 1, 3)))
    assert y.dtype == h.dtype == c.dtype == np.dtype(dtype)


# -- state_dict ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_names_shapes_order(kind: str) -> None:
    m = make(kind, num_layers=2, bidirectional=True, bias=True)
    sd = m.state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == m.config.param_shapes()
    assert list(sd)[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert "weight_ih_l1_reverse" in sd
    assert not any(k.startswith("bias") for k in make(kind, bias=False).state_dict())


def test_state_dict_returns_copies() -> None:
    m = fr.GRU(3, 4, seed=0)
    x = np.ones((2, 1, 3), np.float32)
    y0, _ = m(x)
    sd = m.state_dict()
    sd["weight_ih_l0"][...] = 100.0
    np.testing.assert_array_equal(m(x)[0], y0)
    assert not np.array_equal(m.state_dict()["weight_ih_l0"], sd["weight_ih_l0"])


@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_roundtrip(kind: str, rng: np.random.Generator) -> None:
    a = make(kind, num_layers=2, bidirectional=True, seed=1)
    b = make(kind, num_layers=2, bidirectional=True, seed=2)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    assert not np.array_equal(a(x)[0], b(x)[0])
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[name], value)


def test_load_state_dict_converts_dtype_and_layout(rng: np.random.Generator, assert_close: Any) -> None:
    m = fr.LSTM(4, 6, seed=0)
    new = {}
    for name, a in m.state_dict().items():
        wide = rng.uniform(-0.5, 0.5, a.shape)  # float64
        if wide.ndim == 2:
            wide = np.asfortranarray(wide)  # non-contiguous in C order
        new[name] = wide
    new["bias_hh_l0"] = np.arange(24)  # integers are fine too
    strided = np.zeros(48)
    strided[::2] = rng.uniform(-0.5, 0.5, 24)
    new["bias_ih_l0"] = strided[::2]
    m.load_state_dict(new)
    sd = m.state_dict()
    for name, value in new.items():
        assert sd[name].dtype == np.float32 and sd[name].flags.c_contiguous
        np.testing.assert_array_equal(sd[name], np.asarray(value, np.float32))
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    y, _ = m(x)
    assert_close(y, ref_run(m, x)[0], np.float32, "y after load")


def test_load_state_dict_non_strict() -> None:
    m = fr.GRU(3, 4, seed=0)
    before = m.state_dict()
    m.load_state_dict({"weight_ih_l0": np.zeros((12, 3)), "extra": np.ones(2)}, strict=False)
    after = m.state_dict()
    np.testing.assert_array_equal(after["weight_ih_l0"], 0)
    np.testing.assert_array_equal(after["weight_hh_l0"], before["weight_hh_l0"])


def test_load_state_dict_keeps_array_identity() -> None:
    m = fr.RNN(3, 4, seed=0)
    live = m._parameter_arrays()["weight_hh_l0"]
    m.load_state_dict({k: np.zeros_like(v) for k, v in m.state_dict().items()})
    assert m._parameter_arrays()["weight_hh_l0"] is live
    np.testing.assert_array_equal(live, 0)


def test_in_place_update_hook(rng: np.random.Generator, assert_close: Any) -> None:
    """What an optimizer does: change the live arrays, then declare the change."""
    m = fr.LSTM(4, 6, num_layers=2, seed=0)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    y0, _ = m(x)
    for arr in m._parameter_arrays().values():
        arr *= 0.5
    m._mark_weights_changed()
    y1, _ = m(x)
    assert not np.allclose(y0, y1)
    assert_close(y1, ref_run(m, x)[0], np.float32, "y after in-place update")


def test_tape_refuses_backward_after_weight_change() -> None:
    m = fr.GRU(3, 4, seed=0)
    tape = m.record(np.ones((2, 1, 3)))
    m.load_state_dict(m.state_dict())
    with pytest.raises(RuntimeError, match="weights changed"):
        tape.backward(np.ones_like(tape.output))
    tape = m.record(np.ones((2, 1, 3)))
    m._mark_weights_changed()
    with pytest.raises(RuntimeError, match="record again"):
        tape.backward(np.ones_like(tape.output))


# -- layouts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_output_shapes(kind: str) -> None:
    m = make(kind, 4, 6, num_layers=2, bidirectional=True)
    h_out = 3 if kind == "lstm-proj" else 6
    y, state = m(np.zeros((5, 3, 4)))
    assert y.shape == (5, 3, 2 * h_out)
    assert h_of(state).shape == (4, 3, h_out)
    if isinstance(state, tuple):
        assert state[1].shape == (4, 3, 6)
    bf = make(kind, 4, 6, num_layers=2, bidirectional=True, batch_first=True)
    y, state = bf(np.zeros((3, 5, 4)))
    assert y.shape == (3, 5, 2 * h_out)
    assert h_of(state).shape == (4, 3, h_out)  # states stay (D*L, N, H_out), as in torch
    y, state = m(np.zeros((5, 4)))
    assert y.shape == (5, 2 * h_out)
    assert h_of(state).shape == (4, h_out)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_first_and_unbatched_agree(kind: str, rng: np.random.Generator) -> None:
    tm = make(kind, num_layers=2, bidirectional=True, seed=4)
    bf = make(kind, num_layers=2, bidirectional=True, seed=4, batch_first=True)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    lengths = [5, 2, 4]
    y_tm, s_tm = tm(x, None, lengths)
    y_bf, s_bf = bf(x.transpose(1, 0, 2), None, lengths)
    np.testing.assert_allclose(y_bf.transpose(1, 0, 2), y_tm, **REARRANGED_F32.kw())
    np.testing.assert_allclose(h_of(s_bf), h_of(s_tm), **REARRANGED_F32.kw())
    y_one, s_one = tm(x[:, 1])
    y_b1, s_b1 = tm(x[:, 1:2])
    np.testing.assert_allclose(y_one, y_b1[:, 0], **REARRANGED_F32.kw())
    np.testing.assert_allclose(h_of(s_one), h_of(s_b1)[:, 0], **REARRANGED_F32.kw())


# -- lengths ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_lengths_match_running_each_sequence_alone(kind: str, rng: np.random.Generator) -> None:
    m = make(kind, num_layers=2, bidirectional=True, seed=9)
    x = rng.standard_normal((6, 4, 4)).astype(np.float32)
    lengths = np.array([6, 1, 3, 5])
    y, state = m(x, None, lengths)
    for n, length in enumerate(lengths):
        y_n, state_n = m(x[:length, n : n + 1])
        np.testing.assert_allclose(y[:length, n], y_n[:, 0], **REGROUPED_F32.kw())
        assert not y[length:, n].any(), "outputs past the end must be zeros"
        np.testing.assert_allclose(h_of(state)[:, n], h_of(state_n)[:, 0], **REGROUPED_F32.kw())
        if isinstance(state, tuple):
            np.testing.assert_allclose(state[1][:, n], state_n[1][:, 0], **REGROUPED_F32.kw())


@pytest.mark.parametrize(
    "lengths", [[5, 5, 5], (5, 5, 5), np.array([5, 5, 5], np.int32), np.array([5.0, 5, 5])]
)
def test_full_lengths_equal_none(lengths: Any, rng: np.random.Generator) -> None:
    m = fr.LSTM(4, 6, bidirectional=True, seed=0)
    x = rng.standard_normal((5, 3, 4))
    np.testing.assert_array_equal(m(x, None, lengths)[0], m(x)[0])


def test_lengths_forms_agree(rng: np.random.Generator) -> None:
    m = fr.GRU(4, 6, seed=0)
    x = rng.standard_normal((5, 3, 4))
    base = m(x, None, [5, 2, 3])[0]
    for form in ((5, 2, 3), np.array([5, 2, 3], np.uint8), np.array([5.0, 2.0, 3.0])):
        np.testing.assert_array_equal(m(x, None, form)[0], base)
    one = m(x[:, 0], None, 2)[0]  # unbatched: a single int
    np.testing.assert_array_equal(one, m(x[:, 0], None, [2])[0])


# -- states ----------------------------------------------------------------------------------------------


def test_lstm_partial_state_is_zeros(rng: np.random.Generator) -> None:
    m = fr.LSTM(4, 6, num_layers=2, seed=0)
    x = rng.standard_normal((3, 2, 4))
    h0 = rng.standard_normal((2, 2, 6))
    zeros = np.zeros((2, 2, 6))
    np.testing.assert_array_equal(m(x, (h0, None))[0], m(x, (h0, zeros))[0])
    np.testing.assert_array_equal(m(x, (None, h0))[0], m(x, (zeros, h0))[0])
    np.testing.assert_array_equal(m(x, [h0, zeros])[0], m(x, (h0, zeros))[0])
    np.testing.assert_array_equal(m(x)[0], m(x, (zeros, zeros))[0])


@pytest.mark.parametrize("kind", KINDS)
def test_state_carries_over(kind: str, rng: np.random.Generator) -> None:
    """Running a sequence in two halves, passing the state, equals running it whole."""
    m = make(kind, num_layers=2, seed=3)
    x = rng.standard_normal((6, 2, 4)).astype(np.float32)
    y_all, s_all = m(x)
    y1, s1 = m(x[:3])
    y2, s2 = m(x[3:], s1)
    np.testing.assert_allclose(np.concatenate([y1, y2]), y_all, **REGROUPED_F32.kw())
    np.testing.assert_allclose(h_of(s2), h_of(s_all), **REGROUPED_F32.kw())


# -- tapes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_record_matches_call(kind: str, rng: np.random.Generator) -> None:
    m = make(kind, num_layers=2, bidirectional=True, batch_first=True, dropout=0.0, seed=2)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    y, state = m(x, None, [5, 3, 1])
    tape = m.record(x, None, [5, 3, 1])
    np.testing.assert_allclose(tape.output, y, **REARRANGED_F32.kw())
    np.testing.assert_allclose(h_of(tape.state), h_of(state), **REARRANGED_F32.kw())
    assert tape.dropout_masks is None
    assert "Tape" in repr(tape)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_shapes(kind: str, rng: np.random.Generator) -> None:
    m = make(kind, num_layers=2, bidirectional=True, batch_first=True, seed=2)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    tape = m.record(x)
    g = tape.backward(np.ones_like(tape.output))
    assert g.input.shape == x.shape
    assert h_of(g.state).shape == h_of(tape.state).shape
    if isinstance(tape.state, tuple):
        assert g.state[1].shape == tape.state[1].shape
    assert {k: v.shape for k, v in g.params.items()} == {k: v.shape for k, v in m.state_dict().items()}
    assert "Gradients" in repr(g)
    # unbatched
    tape = m.record(x[0])
    g = tape.backward(np.ones_like(tape.output))
    assert g.input.shape == x[0].shape
    assert h_of(g.state).shape == h_of(tape.state).shape


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_grad_state_none_means_zero(kind: str, rng: np.random.Generator) -> None:
    m = make(kind, num_layers=2, seed=0)
    x = rng.standard_normal((4, 2, 4)).astype(np.float32)
    tape = m.record(x)
    gy = rng.standard_normal(tape.output.shape)
    a = tape.backward(gy)
    if kind == "lstm":
        zeros = (np.zeros_like(tape.state[0]), np.zeros_like(tape.state[1]))
        c = tape.backward(gy, (None, None))
        np.testing.assert_array_equal(c.input, a.input)
        gh = rng.standard_normal(tape.state[0].shape)
        d = tape.backward(gy, (gh, None))
        e = tape.backward(gy, (gh, np.zeros_like(tape.state[1])))
        np.testing.assert_array_equal(d.input, e.input)
    else:
        zeros = np.zeros_like(tape.state)
    b = tape.backward(gy, zeros)
    np.testing.assert_array_equal(a.input, b.input)
    for name in a.params:
        np.testing.assert_allclose(a.params[name], b.params[name], **REARRANGED_F32.kw())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_is_repeatable_bit_for_bit(kind: str, dtype: Any, rng: np.random.Generator) -> None:
    """The same tape and cotangent give the same bits every time (reproducible training)."""
    m = make(kind, num_layers=2, bidirectional=True, bias=True, dtype=dtype, seed=0)
    tape = m.record(rng.standard_normal((9, 5, 4)), None, [9, 3, 7, 1, 9])
    gy = rng.standard_normal(tape.output.shape)
    first = tape.backward(gy)
    for _ in range(20):
        again = tape.backward(gy)
        np.testing.assert_array_equal(again.input, first.input)
        for name in first.params:
            np.testing.assert_array_equal(again.params[name], first.params[name], err_msg=name)


def test_gradient_of_a_sum_is_additive(rng: np.random.Generator, assert_close: Any) -> None:
    """backward is linear in the cotangent: a check independent of the reference."""
    m = fr.GRU(4, 6, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    tape = m.record(rng.standard_normal((4, 2, 4)))
    g1 = rng.standard_normal(tape.output.shape)
    g2 = rng.standard_normal(tape.output.shape)
    a, b, ab = tape.backward(g1), tape.backward(g2), tape.backward(g1 + g2)
    assert_close(ab.input, a.input + b.input, np.float64)
    for name in a.params:
        assert_close(ab.params[name], a.params[name] + b.params[name], np.float64)


# -- dropout ---------------------------------------------------------------------------------------------


def test_dropout_masks(rng: np.random.Generator, assert_close: Any) -> None:
    p = 0.3
    m = fr.LSTM(4, 20, num_layers=3, bidirectional=True, dropout=p, seed=0)
    x = rng.standard_normal((30, 8, 4)).astype(np.float32)
    tape = m.record(x)
    masks = tape.dropout_masks
    assert masks is not None and len(masks) == 2
    scale = np.float32(1 / (1 - p))
    for mask in masks:
        assert mask.shape == (30, 8, 40) and mask.dtype == np.float32
        assert set(np.unique(mask).tolist()) == {0.0, float(scale)}
        assert abs((mask == 0).mean() - p) < 0.03
    # Inference applies no dropout, recording does.
    y_call, _ = m(x)
    assert_close(y_call, ref_run(m, x)[0], np.float32, "call without dropout")
    assert not np.allclose(tape.output, y_call)
    assert_close(tape.output, ref_run(m, x, masks=[k.astype(np.float64) for k in masks])[0], np.float32)
    # Fresh masks each time, reproducible from the seed.
    assert not np.array_equal(m.record(x).dropout_masks[0], masks[0])
    again = fr.LSTM(4, 20, num_layers=3, bidirectional=True, dropout=p, seed=0).record(x).dropout_masks
    np.testing.assert_array_equal(again[0], masks[0])


def test_dropout_masks_follow_batch_first_time_major() -> None:
    m = fr.GRU(4, 5, num_layers=2, batch_first=True, dropout=0.5, seed=0)
    tape = m.record(np.zeros((3, 7, 4)))
    assert tape.dropout_masks[0].shape == (7, 3, 5)


def test_dropout_with_one_layer_warns() -> None:
    with pytest.warns(UserWarning, match="num_layers=1"):
        m = fr.GRU(3, 4, dropout=0.5)
    assert m.record(np.zeros((2, 3))).dropout_masks is None


# -- dtypes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_dtype_is_the_models(dtype: Any) -> None:
    m = fr.GRU(3, 4, dtype=dtype)
    for x in (np.ones((2, 1, 3), np.float32), np.ones((2, 1, 3), np.float64), np.ones((2, 1, 3), np.int64)):
        y, h = m(x)
        assert y.dtype == h.dtype == dtype
        tape = m.record(x)
        g = tape.backward(np.ones(tape.output.shape, np.float16))
        assert g.input.dtype == dtype


def test_float64_model_computes_in_float64(rng: np.random.Generator, assert_close: Any) -> None:
    m = fr.LSTM(4, 9, num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    x = rng.standard_normal((5, 3, 4))
    y, _ = m(x)
    assert_close(y, ref_run(m, x)[0], np.float64)


# -- threads ---------------------------------------------------------------------------------------------


def test_num_threads_roundtrip(rng: np.random.Generator) -> None:
    original = fr.get_num_threads()
    assert isinstance(original, int) and original >= 1
    m = fr.LSTM(16, 40, num_layers=2, bidirectional=True, seed=0)
    x = rng.standard_normal((10, 5, 16)).astype(np.float32)
    try:
        results = []
        for n in (1, 2, 3):
            fr.set_num_threads(n)
            assert fr.get_num_threads() == n
            results.append(m(x)[0])
        for other in results[1:]:
            np.testing.assert_allclose(other, results[0], **REGROUPED_F32.kw())
    finally:
        fr.set_num_threads(original)


def test_concurrent_calls_from_threads(rng: np.random.Generator) -> None:
    m = fr.GRU(8, 24, num_layers=2, bidirectional=True, seed=0)
    xs = [rng.standard_normal((12, 3, 8)).astype(np.float32) for _ in range(16)]
    serial = [m(x)[0] for x in xs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda x: m(x)[0], xs))
        tapes = list(pool.map(m.record, xs))
        grads = list(pool.map(lambda t: t.backward(np.ones_like(t.output)).input, tapes))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    for t, g in zip(tapes, grads):
        np.testing.assert_array_equal(g, t.backward(np.ones_like(t.output)).input)


def test_weight_changes_racing_with_calls(rng: np.random.Generator) -> None:
    """Every call sees one complete set of weights or the other, never a mix or a torn upload."""
    m = fr.LSTM(8, 16, num_layers=2, seed=0)
    sd_a = m.state_dict()
    sd_b = {k: -v for k, v in sd_a.items()}
    x = rng.standard_normal((8, 2, 8)).astype(np.float32)
    y_a = m(x)[0]
    m.load_state_dict(sd_b)
    y_b = m(x)[0]
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            m.load_state_dict(sd_a)
            m.load_state_dict(sd_b)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            outs = list(pool.map(lambda _: m(x)[0], range(60)))
    finally:
        stop.set()
        flipper.join()
    for y in outs:
        assert np.array_equal(y, y_a) or np.array_equal(y, y_b)


# -- copies ----------------------------------------------------------------------------------------------


def test_deepcopy_and_pickle(rng: np.random.Generator) -> None:
    m = fr.LSTM(4, 6, num_layers=2, dropout=0.2, seed=0)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    y = m(x)[0]
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        np.testing.assert_array_equal(clone(x)[0], y)
        clone.load_state_dict({k: np.zeros_like(v) for k, v in clone.state_dict().items()})
        np.testing.assert_array_equal(m(x)[0], y)
        assert repr(clone) == repr(m)


# -- cells -----------------------------------------------------------------------------------------------


CELLS = {
    "rnn": (fr.RNNCell, fr.RNN),
    "lstm": (fr.LSTMCell, fr.LSTM),
    "gru": (fr.GRUCell, fr.GRU),
}


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_is_one_step_of_the_layer(kind: str, rng: np.random.Generator) -> None:
    cell_cls, layer_cls = CELLS[kind]
    cell = cell_cls(4, 6, seed=0)
    layer = layer_cls(4, 6, seed=1)
    layer.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    assert list(cell.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    y, state = layer(x)
    s = None
    for t in range(5):
        s = cell(x[t], s)
        np.testing.assert_allclose(h_of(s), y[t], **REGROUPED_F32.kw())
    np.testing.assert_allclose(h_of(s), h_of(state)[0], **REGROUPED_F32.kw())
    if kind == "lstm":
        np.testing.assert_allclose(s[1], state[1][0], **REGROUPED_F32.kw())


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_shapes_and_defaults(kind: str, rng: np.random.Generator) -> None:
    cell = CELLS[kind][0](4, 6, seed=0)
    x = rng.standard_normal((3, 4))
    out = cell(x)
    zeros = np.zeros((3, 6))
    explicit = cell(x, (zeros, zeros) if kind == "lstm" else zeros)
    np.testing.assert_array_equal(h_of(out), h_of(explicit))
    assert h_of(out).shape == (3, 6)
    unbatched = cell(x[1])
    assert h_of(unbatched).shape == (6,)
    np.testing.assert_allclose(h_of(unbatched), h_of(out)[1], **REARRANGED_F32.kw())
    tape = cell.record(x)
    np.testing.assert_allclose(tape.output, h_of(out), **REARRANGED_F32.kw())
    g = tape.backward(np.ones((3, 6)))
    assert g.input.shape == (3, 4)
    assert h_of(g.state).shape == (3, 6)
    assert list(g.params) == list(cell.state_dict())
    tape = cell.record(x[0])
    g = tape.backward(np.ones(6))
    assert g.input.shape == (4,) and h_of(g.state).shape == (6,)


def test_cell_attributes() -> None:
    c = fr.RNNCell(3, 4, False, "relu", dtype=np.float64)
    assert (c.input_size, c.hidden_size, c.bias, c.nonlinearity, c.dtype) == (3, 4, False, "relu", np.float64)
    assert fr.GRUCell(3, 4, linear_before_reset=False).linear_before_reset is False
    assert fr.LSTMCell(3, 4).num_parameters() == 4 * 4 * (3 + 4 + 2)
