"""Parameter counts (the formula, LSTM = 4x and GRU = 3x a vanilla RNN), ``summary()``, the LSTM's
``forget_bias=`` initialization; parameters as attributes with torch's names (live arrays whose in-place
edits reach the next call; checked assignment), ``parameters()`` / ``named_parameters()`` against
torch.nn's, and the read-only configuration."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fusedrnn as fr
from tolerances import FORGET_BIAS_SHIFT_F32


def expected_count(
    gates, input_size, hidden, layers=1, bidirectional=False, bias=True, proj=0, peephole=False
):
    """Per layer and direction: G*H*(I_k + H_out) + 2*G*H [+ P*H] [+ 3*H], I_k = I or D*H_out."""
    d = 2 if bidirectional else 1
    h_out = proj or hidden
    total = 0
    for k in range(layers):
        i_k = input_size if k == 0 else d * h_out
        per = gates * hidden * (i_k + h_out) + (2 * gates * hidden if bias else 0)
        per += proj * hidden + (3 * hidden if peephole else 0)
        total += d * per
    return total


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_counts_follow_the_formula(layers, bidirectional, bias):
    kw = dict(num_layers=layers, bidirectional=bidirectional, bias=bias)
    rnn, lstm, gru = fr.RNN(7, 9, **kw), fr.LSTM(7, 9, **kw), fr.GRU(7, 9, **kw)
    assert rnn.num_parameters() == expected_count(1, 7, 9, layers, bidirectional, bias)
    assert lstm.num_parameters() == expected_count(4, 7, 9, layers, bidirectional, bias)
    assert gru.num_parameters() == expected_count(3, 7, 9, layers, bidirectional, bias)
    assert lstm.num_parameters() == 4 * rnn.num_parameters()
    assert gru.num_parameters() == 3 * rnn.num_parameters()


def test_counts_with_lstm_options():
    lstm = fr.LSTM(7, 9, num_layers=2, proj_size=4, peephole=True)
    assert lstm.num_parameters() == expected_count(4, 7, 9, 2, proj=4, peephole=True)
    assert fr.LSTMCell(7, 9).num_parameters() == 4 * fr.RNNCell(7, 9).num_parameters() == 4 * (9 * 16 + 18)
    assert fr.GRUCell(7, 9).num_parameters() == 3 * fr.RNNCell(7, 9).num_parameters()


def test_summary_lists_every_parameter():
    lstm = fr.LSTM(32, 64, num_layers=2, bidirectional=True)
    lines = lstm.summary().splitlines()
    assert lines[0] == repr(lstm)
    assert lines[1].split() == ["parameter", "shape", "count"]
    body = lines[2:-1]
    state = lstm.state_dict()
    assert [line.split()[0] for line in body] == list(state)
    for line, arr in zip(body, state.values()):
        shape_text = line[line.index("(") : line.index(")") + 1]
        assert shape_text == str(arr.shape)
        assert line.split()[-1] == f"{arr.size:,}"
    assert lines[-1].split() == ["total", f"{lstm.num_parameters():,}"]
    # aligned columns: every count ends in the same column
    assert len({len(line) for line in lines[1:]}) == 1


def test_summary_of_a_cell():
    text = fr.GRUCell(3, 4).summary()
    assert "weight_ih  (12, 3)" in text and text.splitlines()[-1].split() == ["total", str(3 * (4 * 7 + 8))]


# -- forget_bias ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_forget_bias_shifts_the_forget_block_of_bias_ih(bidirectional):
    plain = fr.LSTM(5, 6, num_layers=2, bidirectional=bidirectional, seed=4)
    shifted = fr.LSTM(5, 6, num_layers=2, bidirectional=bidirectional, forget_bias=2.0, seed=4)
    a, b = plain.state_dict(), shifted.state_dict()
    for name in a:
        if name.startswith("bias_ih"):
            np.testing.assert_allclose(b[name][6:12], a[name][6:12] + 2.0, rtol=FORGET_BIAS_SHIFT_F32)
            np.testing.assert_array_equal(np.delete(b[name], np.s_[6:12]), np.delete(a[name], np.s_[6:12]))
        else:
            np.testing.assert_array_equal(b[name], a[name])
    assert "forget_bias=2.0" in repr(shifted)


def test_forget_bias_is_used_by_the_kernels(rng):
    lstm = fr.LSTM(3, 4, forget_bias=1.0, seed=0)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    copy = fr.LSTM(3, 4, seed=1)
    copy.load_state_dict(lstm.state_dict())
    np.testing.assert_array_equal(lstm(x)[0], copy(x)[0])
    assert not np.allclose(fr.LSTM(3, 4, seed=0)(x)[0], lstm(x)[0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(forget_bias="1"), TypeError, "forget_bias must be a number"),
        (dict(forget_bias=True), TypeError, "forget_bias must be a number"),
        (dict(forget_bias=float("nan")), ValueError, "finite"),
        (dict(forget_bias=1.0, bias=False), ValueError, "needs bias=True"),
        (dict(forget_bias=1.0, input_forget=True), ValueError, "input_forget"),
    ],
    ids=["string", "bool", "nan", "no-bias", "coupled"],
)
def test_forget_bias_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fr.LSTM(3, 4, **kwargs)


# -- parameters as attributes, parameters(), named_parameters() ------------------------------------------

TORCH_LAYERS = [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(num_layers=2, proj_size=3)),
    ("LSTM", dict(bias=False, bidirectional=True, proj_size=2)),
    ("GRU", dict(num_layers=3)),
    ("RNN", dict(num_layers=2, bidirectional=True, nonlinearity="relu")),
]


@pytest.mark.parametrize("cls, kwargs", TORCH_LAYERS, ids=lambda p: str(p))
def test_named_parameters_are_torchs(cls, kwargs):
    torch = pytest.importorskip("torch")
    ours = getattr(fr, cls)(5, 6, **kwargs)
    theirs = getattr(torch.nn, cls)(5, 6, **kwargs)
    expected = [(name, tuple(p.shape)) for name, p in theirs.named_parameters()]
    assert [(name, a.shape) for name, a in ours.named_parameters()] == expected
    assert [a.shape for a in ours.parameters()] == [shape for _, shape in expected]
    prefixed = [(name, tuple(p.shape)) for name, p in theirs.named_parameters(prefix="rnn")]
    assert [(name, a.shape) for name, a in ours.named_parameters(prefix="rnn")] == prefixed


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_use_torchs_cell_names(cls):
    torch = pytest.importorskip("torch")
    ours, theirs = getattr(fr, cls)(5, 6), getattr(torch.nn, cls)(5, 6)
    expected = [(name, tuple(p.shape)) for name, p in theirs.named_parameters()]
    assert [(name, a.shape) for name, a in ours.named_parameters()] == expected
    for name, _ in expected:
        assert getattr(ours, name) is ours._parameter_arrays()[name]


def test_attributes_are_the_live_arrays():
    lstm = fr.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    live = lstm._parameter_arrays()
    assert lstm.weight_ih_l0 is live["weight_ih_l0"]
    assert lstm.bias_hh_l1_reverse is live["bias_hh_l1_reverse"]
    for (name, arr), same in zip(lstm.named_parameters(), lstm.parameters()):
        assert arr is live[name] and same is arr
    np.testing.assert_array_equal(lstm.weight_hh_l1, lstm.state_dict()["weight_hh_l1"])


def test_dir_lists_the_parameters():
    names = dir(fr.GRU(3, 4, bidirectional=True))
    assert {"weight_ih_l0", "bias_hh_l0_reverse", "named_parameters", "hidden_size"} <= set(names)
    assert {"weight_ih", "bias_hh"} <= set(dir(fr.GRUCell(3, 4)))


def test_unknown_attributes_still_raise():
    lstm, cell = fr.LSTM(3, 4), fr.LSTMCell(3, 4)
    for model, name in [(lstm, "weight_ih_l1"), (lstm, "weight_ih"), (cell, "weight_ih_l0"), (lstm, "_x")]:
        with pytest.raises(AttributeError, match=name):
            getattr(model, name)
        assert not hasattr(model, name)
    assert not hasattr(fr.LSTM(3, 4, bias=False), "bias_ih_l0")
    lstm.note = "user data"  # other attributes stay free to set
    assert lstm.note == "user data"


def _x(rng, model):
    shape = (5, 2, model.input_size) if isinstance(model, fr.RNNBase) else (2, model.input_size)
    return rng.standard_normal(shape).astype(np.float32)


def _flat(out):
    if isinstance(out, np.ndarray):
        return [out]
    return [a for part in out for a in _flat(part)]


def _flat_all(out):
    return np.concatenate([np.ravel(a) for a in _flat(out)])


def _rebuilt(model, state):
    """A fresh model of the same configuration running ``state``: what ``model`` should compute."""
    other = copy.deepcopy(model)
    other.load_state_dict(state)
    return other


@pytest.mark.parametrize("make", [lambda: fr.LSTM(3, 4, num_layers=2), lambda: fr.GRUCell(3, 4)])
def test_in_place_edits_through_attributes_reach_the_next_call(make, rng):
    model = make()
    x = _x(rng, model)
    before = model(x)
    name = next(iter(model.state_dict()))
    getattr(model, name)[:] = 0.25  # torch: with no_grad(): lstm.weight_ih_l0[:] = 0.25
    state = model.state_dict()
    assert np.all(state[name] == 0.25)
    after = model(x)
    np.testing.assert_array_equal(_flat_all(after), _flat_all(_rebuilt(model, state)(x)))
    assert not np.array_equal(_flat_all(after), _flat_all(before))


def test_in_place_edits_through_parameters_reach_the_next_call(rng):
    gru = fr.GRU(3, 4, bidirectional=True, seed=1)
    x = _x(rng, gru)
    gru(x)  # the stack holds the initial weights
    for p in gru.parameters():
        p *= 0.5
    for name, p in gru.named_parameters():
        if name.startswith("bias"):
            p += 0.125
    np.testing.assert_array_equal(_flat_all(gru(x)), _flat_all(_rebuilt(gru, gru.state_dict())(x)))


def test_a_kept_array_written_after_a_call_needs_mark_weights_changed(rng):
    rnn = fr.RNN(3, 4, seed=2)
    x = _x(rng, rnn)
    w = rnn.weight_hh_l0
    rnn(x)  # uploads; later writes to w are invisible until declared
    w[:] = 0
    rnn.mark_weights_changed()
    np.testing.assert_array_equal(_flat_all(rnn(x)), _flat_all(_rebuilt(rnn, rnn.state_dict())(x)))


def test_assigning_a_parameter_copies_it_in(rng):
    lstm = fr.LSTM(3, 4, num_layers=2, seed=3)
    x = _x(rng, lstm)
    lstm(x)
    live = lstm.weight_ih_l1
    value = rng.standard_normal((16, 4)).astype(np.float32)
    lstm.weight_ih_l1 = value
    assert lstm.weight_ih_l1 is live  # copied into the owned array, which stays the parameter
    np.testing.assert_array_equal(live, value)
    value[:] = 0  # the caller's array is not aliased
    assert not np.any(lstm.weight_ih_l1 == 0)
    expected = _rebuilt(lstm, lstm.state_dict())(x)
    np.testing.assert_array_equal(_flat_all(lstm(x)), _flat_all(expected))


def test_assigning_a_torch_tensor():
    torch = pytest.importorskip("torch")
    cell = fr.GRUCell(3, 4, dtype=np.float64)
    cell.bias_ih = torch.arange(12, dtype=torch.float64)
    np.testing.assert_array_equal(cell.bias_ih, np.arange(12.0))


@pytest.mark.parametrize(
    "value, error, match",
    [
        (
            np.zeros((4, 16), np.float32),
            ValueError,
            r"weight_ih_l0 must have shape \(16, 3\), got shape \(4, 16\)",
        ),
        (
            np.zeros((16, 3), np.float64),
            TypeError,
            "weight_ih_l0 must have LSTM's dtype float32, got .* float64",
        ),
        (np.zeros((16, 3), np.int32), TypeError, "weight_ih_l0 must have LSTM's dtype float32, got .* int32"),
        (np.zeros((16, 3), complex), TypeError, "weight_ih_l0 must be an array of real numbers"),
        ("zeros", TypeError, "weight_ih_l0"),
        (None, TypeError, "weight_ih_l0"),
    ],
    ids=["shape", "float64", "int", "complex", "str", "none"],
)
def test_a_refused_assignment_changes_nothing(value, error, match, rng):
    lstm = fr.LSTM(3, 4, seed=4)
    x = _x(rng, lstm)
    y = lstm(x)[0]
    before = lstm.state_dict()
    with pytest.raises(error, match=match):
        lstm.weight_ih_l0 = value
    for name, arr in lstm.state_dict().items():
        np.testing.assert_array_equal(arr, before[name])
    np.testing.assert_array_equal(lstm(x)[0], y)


def test_parameters_cannot_be_deleted():
    lstm = fr.LSTM(3, 4)
    with pytest.raises(AttributeError, match="cannot delete parameter 'bias_ih_l0'"):
        del lstm.bias_ih_l0
    assert lstm.bias_ih_l0.shape == (16,)


def test_an_edit_between_record_and_backward_is_refused(rng):
    """As torch's autograd refuses a backward after an in-place change of a weight it saved."""
    gru = fr.GRU(3, 4, seed=5)
    tape = gru.record(_x(rng, gru))
    gru.weight_hh_l0[:] = 0
    with pytest.raises(RuntimeError, match="weights changed after this tape was recorded"):
        tape.backward(np.ones_like(tape.output))


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_copies_have_their_own_parameter_attributes(copier, rng):
    lstm = fr.LSTM(3, 4, bidirectional=True, seed=6)
    x = _x(rng, lstm)
    y = lstm(x)[0]
    clone = copier(lstm)
    assert clone.weight_ih_l0_reverse is not lstm.weight_ih_l0_reverse
    clone.weight_ih_l0_reverse[:] = 0
    clone.bias_hh_l0 = np.ones(16, np.float32)
    np.testing.assert_array_equal(lstm(x)[0], y)
    np.testing.assert_array_equal(clone(x)[0], _rebuilt(lstm, clone.state_dict())(x)[0])
    with pytest.raises(AttributeError, match="fixed at construction"):
        clone.hidden_size = 5


# -- the configuration is read-only ---------------------------------------------------------------------

FIXED = [
    (
        lambda: fr.LSTM(3, 4, proj_size=2, forget_bias=1.0),
        [
            "mode",
            "input_size",
            "hidden_size",
            "num_layers",
            "bias",
            "batch_first",
            "dropout",
            "bidirectional",
            "proj_size",
            "residual",
            "forget_bias",
            "num_directions",
            "dtype",
            "config",
        ],
    ),
    (lambda: fr.GRU(3, 4), ["hidden_size", "linear_before_reset", "batch_first"]),
    (lambda: fr.RNN(3, 4), ["nonlinearity", "num_layers"]),
    (lambda: fr.LSTMCell(3, 4), ["input_size", "hidden_size", "bias", "dtype", "config"]),
    (lambda: fr.GRUCell(3, 4), ["linear_before_reset"]),
    (lambda: fr.RNNCell(3, 4), ["nonlinearity"]),
]


@pytest.mark.parametrize("make, names", FIXED, ids=["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_configuration_is_read_only(make, names):
    model = make()
    text = repr(model)
    for name in names:
        value = getattr(model, name)
        with pytest.raises(
            AttributeError, match=rf"cannot set '{name}' of .*fixed at construction.*build a new"
        ):
            setattr(model, name, 99)
        with pytest.raises(AttributeError, match=rf"cannot delete '{name}'"):
            delattr(model, name)
        assert getattr(model, name) == value
    assert repr(model) == text
