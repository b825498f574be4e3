"""load_state_dict as torch users expect it: it returns the keys it did not match, and ``prefix`` loads
one layer out of a whole model's state_dict. Before, strict=False returned None, so a whole model's
state_dict (keys "rnn.weight_ih_l0", ...) loaded nothing without a word."""

from __future__ import annotations

import numpy as np
import pytest

import fusedrnn as fr


def _whole_model(layer: fr.RNNBase, prefix: str) -> dict[str, np.ndarray]:
    """A state_dict such as a torch model holding ``layer`` under ``prefix`` gives."""
    out = {"embedding.weight": np.zeros((10, 3), np.float32), "head.bias": np.zeros(2, np.float32)}
    out.update({prefix + name: value for name, value in layer.state_dict().items()})
    return out


def test_matching_keys_give_empty_lists() -> None:
    lstm, other = fr.LSTM(3, 4, seed=0), fr.LSTM(3, 4, seed=1)
    result = lstm.load_state_dict(other.state_dict())
    assert result == fr.IncompatibleKeys([], [])
    assert result.missing_keys == [] and result.unexpected_keys == []


def test_strict_false_says_what_it_did_not_use() -> None:
    gru, source = fr.GRU(3, 4, num_layers=2, seed=0), fr.GRU(3, 4, num_layers=2, seed=1)
    before = gru.state_dict()
    partial = {k: a for k, a in source.state_dict().items() if k.endswith("_l0")}
    partial["bogus"] = np.zeros(1)
    missing, unexpected = gru.load_state_dict(partial, strict=False)
    assert missing == ["weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"]
    assert unexpected == ["bogus"]
    after = gru.state_dict()
    np.testing.assert_array_equal(after["weight_ih_l0"], partial["weight_ih_l0"])
    np.testing.assert_array_equal(after["weight_ih_l1"], before["weight_ih_l1"])  # kept


def test_a_whole_model_without_prefix_loads_nothing_and_says_so() -> None:
    lstm, source = fr.LSTM(3, 4, seed=0), fr.LSTM(3, 4, seed=1)
    before = lstm.state_dict()
    missing, unexpected = lstm.load_state_dict(_whole_model(source, "rnn."), strict=False)
    assert missing == list(before)
    assert "rnn.weight_ih_l0" in unexpected and "embedding.weight" in unexpected
    for name, value in lstm.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_prefix_loads_one_layer_out_of_a_whole_model() -> None:
    lstm, source = fr.LSTM(3, 4, bidirectional=True, seed=0), fr.LSTM(3, 4, bidirectional=True, seed=1)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    result = lstm.load_state_dict(_whole_model(source, "encoder.rnn."), prefix="encoder.rnn.")
    assert result == ([], [])
    np.testing.assert_array_equal(lstm(x)[0], source(x)[0])


def test_prefix_with_strict_names_the_full_keys() -> None:
    lstm, source = fr.LSTM(3, 4, seed=0), fr.LSTM(3, 4, seed=1)
    whole = _whole_model(source, "rnn.")
    del whole["rnn.bias_hh_l0"]
    whole["rnn.extra"] = np.zeros(1)
    before = lstm.state_dict()
    expected = r"prefix 'rnn\.'.*missing 'rnn\.bias_hh_l0'; unexpected 'rnn\.extra'"
    with pytest.raises(ValueError, match=expected):
        lstm.load_state_dict(whole, prefix="rnn.")
    for name, value in lstm.state_dict().items():  # atomic: unchanged
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("prefix", [None, 1, b"rnn."])
def test_prefix_must_be_a_str(prefix) -> None:
    with pytest.raises(TypeError, match="prefix must be a str"):
        fr.GRU(3, 4, seed=0).load_state_dict({}, strict=False, prefix=prefix)


def test_a_cell_returns_the_keys_too() -> None:
    cell, source = fr.LSTMCell(3, 4, seed=0), fr.LSTMCell(3, 4, seed=1)
    whole = {"cell." + k: a for k, a in source.state_dict().items()}
    assert cell.load_state_dict(whole, prefix="cell.") == ([], [])


def test_the_result_is_torchs_incompatible_keys() -> None:
    torch = pytest.importorskip("torch")
    theirs = torch.nn.GRU(3, 4).load_state_dict(
        {"weight_ih_l0": torch.zeros(12, 3), "x": torch.zeros(1)}, strict=False
    )
    ours = fr.GRU(3, 4).load_state_dict({"weight_ih_l0": np.zeros((12, 3)), "x": np.zeros(1)}, strict=False)
    assert fr.IncompatibleKeys._fields == type(theirs)._fields == ("missing_keys", "unexpected_keys")
    assert ours.missing_keys == theirs.missing_keys and ours.unexpected_keys == theirs.unexpected_keys


def _bad_entry(name: str, value: object) -> dict:
    """A full, valid state_dict for fr.LSTM(3, 4, num_layers=2) with one entry replaced."""
    good = fr.LSTM(3, 4, num_layers=2, seed=9).state_dict()
    good[name] = value
    return good


@pytest.mark.parametrize(
    "state, strict, error, match",
    [
        (_bad_entry("bias_hh_l1", np.zeros(15)), True, ValueError, r"bias_hh_l1.*\(16,\).*\(15,\)"),
        (_bad_entry("bias_hh_l1", np.zeros(15)), False, ValueError, r"bias_hh_l1.*\(16,\).*\(15,\)"),
        (
            _bad_entry("weight_hh_l1", np.zeros((16, 4), complex)),
            False,
            TypeError,
            "weight_hh_l1.*real numbers",
        ),
        (_bad_entry("weight_hh_l1", "zeros"), True, TypeError, "weight_hh_l1"),
        (
            {k: a for k, a in _bad_entry("x", 0).items() if k not in ("x", "bias_ih_l1")},
            True,
            ValueError,
            "missing 'bias_ih_l1'",
        ),
    ],
    ids=["shape", "shape-non-strict", "complex", "string", "strict-missing"],
)
def test_a_failed_load_leaves_the_model_unchanged(state, strict, error, match) -> None:
    """Every other entry is valid and comes first or last: nothing of it may be applied."""
    lstm = fr.LSTM(3, 4, num_layers=2, seed=0)
    x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    y, before = lstm(x)[0], lstm.state_dict()
    with pytest.raises(error, match=match):
        lstm.load_state_dict(state, strict=strict)
    for name, value in lstm.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    np.testing.assert_array_equal(lstm(x)[0], y)
