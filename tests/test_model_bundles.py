"""fusedrnn.save / fusedrnn.load of a bundle: a mapping of names to models, NumPy arrays, JSON metadata
and nested mappings, written as format version 2 -- round trips of every kind of value, the errors that
name the key for what cannot be saved, the atomic write, hostile bundles (each refused with a
ModelFileError that says what is wrong), files of format version 1 still read, and the deployment path:
a model built in torch, saved as one bundle, loaded and run where torch cannot be imported."""

from __future__ import annotations

import base64
import collections
import enum
import hashlib
import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fusedrnn as fr
from closeness import assert_scaled_close
from fusedrnn.interop import ModelFileError, Reverse, SumDirections, WithDefaults, unwrap
from fusedrnn.interop.model_file import BUNDLE_VERSION, FORMAT_VERSION, MAGIC, MODEL_VERSION
from model_files import json_paths, seal, split, version
from tolerances import VS_TORCH

MODELS = {
    "lstm": lambda: fr.LSTM(3, 5, seed=1),
    "lstm-stacked-bidirectional": lambda: fr.LSTM(
        3, 5, num_layers=2, bidirectional=True, batch_first=True, dropout=0.25, peephole=True, seed=2
    ),
    "lstm-proj-f64": lambda: fr.LSTM(3, 5, proj_size=2, num_layers=2, dtype=np.float64, seed=3),
    "gru-stacked-bidirectional": lambda: fr.GRU(3, 5, num_layers=2, bidirectional=True, seed=4),
    "gru-reset-before-hard": lambda: fr.GRU(
        3, 5, linear_before_reset=False, gate_activation="hard_sigmoid", seed=5
    ),
    "rnn-relu-stacked": lambda: fr.RNN(3, 5, nonlinearity="relu", num_layers=3, bias=False, seed=6),
    "rnn-tanh-bidirectional": lambda: fr.RNN(3, 5, bidirectional=True, residual=True, seed=7),
    "lstmcell": lambda: fr.LSTMCell(3, 5, seed=8),
    "grucell-f64": lambda: fr.GRUCell(3, 5, linear_before_reset=False, dtype=np.float64, seed=9),
    "rnncell-relu": lambda: fr.RNNCell(3, 5, nonlinearity="relu", seed=10),
    "reverse": lambda: Reverse(fr.GRU(3, 5, seed=11), order="processing"),
    "sum-directions": lambda: SumDirections(fr.LSTM(3, 5, bidirectional=True, seed=12)),
    "defaults": lambda: WithDefaults(
        Reverse(fr.LSTM(3, 5, seed=13)),
        state=(np.full((1, 2, 5), 0.5, np.float32), np.full((1, 2, 5), -0.25, np.float32)),
        lengths=[3, 1],
    ),
    "defaults-unbatched": lambda: WithDefaults(fr.GRU(3, 5, seed=14), state=np.ones((1, 5), np.float32)),
}

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_]
SHAPES = [(), (0,), (7,), (2, 0, 3), (2, 3, 4), (1,) * 9]


def to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    fr.save(obj, buffer)
    return buffer.getvalue()


def load_bytes(data: bytes) -> Any:
    return fr.load(io.BytesIO(data))


def outputs(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """Every array a call gives: (T, N, I) input for layers (batch_first ones get it transposed), its first
    step for cells, both in the model's dtype."""
    inner = unwrap(model)
    x = x.astype(inner.dtype)
    if isinstance(inner, fr.RNNBase):
        y, state = model(x.transpose(1, 0, 2) if inner.batch_first else x)
        return [y, *(state if isinstance(state, tuple) else (state,))]
    out = model(x[0])
    return list(out) if isinstance(out, tuple) else [out]


def assert_same_model(loaded: Any, model: Any) -> None:
    assert type(loaded) is type(model)
    assert repr(loaded) == repr(model)
    x = np.random.default_rng(0).standard_normal((3, 2, 3))
    if isinstance(model, WithDefaults) and model.state is not None:
        state = model.state[0] if isinstance(model.state, tuple) else model.state
        if state.ndim == 2:  # unbatched defaults: an unbatched call
            x = x[:, 0]
    for a, b in zip(outputs(loaded, x), outputs(model, x)):
        np.testing.assert_array_equal(a, b)


def assert_same_json(a: Any, b: Any) -> None:
    """Equal, with the same JSON types everywhere (== alone takes True for 1 and 1.0 for 1)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_json(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_json(x, y)
    else:
        assert a == b


def assert_same_array(loaded: Any, arr: np.ndarray) -> None:
    assert type(loaded) is np.ndarray
    assert loaded.dtype == arr.dtype.newbyteorder("=")
    assert loaded.shape == arr.shape
    # Bit for bit: raw storage keeps NaN payloads and -0.0.
    assert np.ascontiguousarray(loaded).tobytes() == np.ascontiguousarray(arr, loaded.dtype).tobytes()


# -- round trips ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_each_model_kind_round_trips_in_a_bundle(name: str) -> None:
    model = MODELS[name]()
    loaded = load_bytes(to_bytes({"model": model, "scale": np.float32([2.0])}))
    assert list(loaded) == ["model", "scale"]
    assert_same_model(loaded["model"], model)
    for key, value in unwrap(model).state_dict().items():
        np.testing.assert_array_equal(unwrap(loaded["model"]).state_dict()[key], value, err_msg=key)


def test_every_model_kind_in_one_bundle(tmp_path: Path) -> None:
    models = {name: make() for name, make in MODELS.items()}
    path = tmp_path / "models.frnn"
    fr.save(models, path)
    loaded = fr.load(path)
    assert list(loaded) == list(models)
    for name, model in models.items():
        assert_same_model(loaded[name], model)
    # A path and a file object get the same bytes.
    assert path.read_bytes() == to_bytes(models)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_arrays_of_each_dtype_and_shape_round_trip(dtype: Any, shape: tuple) -> None:
    rng = np.random.default_rng(len(shape))
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        arr = np.asarray(rng.standard_normal(shape) * 100).astype(dtype)  # 0-d: an array, not a scalar
        if arr.size >= 4:  # the values JSON could not hold, stored raw
            arr.reshape(-1)[:4] = [np.nan, np.inf, -np.inf, -0.0]
    elif dtype.kind == "b":
        arr = np.asarray(rng.integers(0, 2, shape)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = np.asarray(rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True))
        if arr.size >= 2:
            arr.reshape(-1)[:2] = [info.min, info.max]
    loaded = load_bytes(to_bytes({"a": arr}))
    assert_same_array(loaded["a"], arr)


def test_arrays_in_any_layout_and_byte_order_round_trip() -> None:
    base = np.arange(24, dtype=np.float64).reshape(2, 3, 4) - 7.5
    arrays = {
        "big-endian": base.astype(">f8"),
        "big-endian-int": np.arange(5, dtype=">i4") * -3,
        "fortran": np.asfortranarray(base),
        "strided": base[:, ::2, ::-1],
        "read-only": np.frombuffer(base.tobytes(), np.float64),
        "0-d": np.array(np.float16(1.5)),
    }
    loaded = load_bytes(to_bytes(arrays))
    for name, arr in arrays.items():
        assert_same_array(loaded[name], arr)
        np.testing.assert_array_equal(loaded[name], arr, err_msg=name)
        assert loaded[name].flags.writeable and loaded[name].dtype.isnative, name


def test_metadata_round_trips_with_its_types() -> None:
    metadata = {
        "vocab": ["<pad>", "the", "cat", "naïve", "日本", "", "tab\there"],
        "config": {"hidden": 64, "lr": 1e-3, "big": 2**80, "neg": -0.0, "on": True, "none": None, "z": {}},
        "one": 1,
        "one-float": 1.0,
        "flag": False,
        "nothing": None,
        "text": "a 'quoted' \"string\"\n",
        "empty-list": [],
        "empty-dict": {},
        "nested": [[1, [2, [3, {"k": [4.5]}]]]],
    }
    # The whole dict as one value, and each of its values under its own name.
    loaded = load_bytes(to_bytes({"meta": metadata, **metadata}))
    assert_same_json(loaded["meta"], metadata)
    for key, value in metadata.items():
        assert_same_json(loaded[key], value)


def test_metadata_dict_keys_may_be_any_string() -> None:
    value = {"spaces and / slashes": 1, "": 2, "ключ": [3], "1": None}
    assert_same_json(load_bytes(to_bytes({"m": value}))["m"], value)


def test_nested_mappings_round_trip_in_order() -> None:
    lstm = fr.LSTM(3, 3, seed=0)
    bundle = {
        "z-last-alphabetically": np.arange(3, dtype=np.int32),
        "encoder": {
            "rnn": lstm,
            "norm": {"scale": np.ones(3, np.float32), "eps": 1e-5},
            "notes": "encoder notes",
        },
        "a-first": {"only": ["json", 1]},  # no model or array inside: saved as one JSON value
        "decoder": {"cell": fr.GRUCell(3, 2, seed=1), "out": {"w": np.eye(2)}},
    }
    data = to_bytes(bundle)
    loaded = load_bytes(data)
    assert list(loaded) == ["z-last-alphabetically", "encoder", "a-first", "decoder"]
    assert list(loaded["encoder"]) == ["rnn", "norm", "notes"]
    assert list(loaded["encoder"]["norm"]) == ["scale", "eps"]
    assert_same_model(loaded["encoder"]["rnn"], lstm)
    assert_same_model(loaded["decoder"]["cell"], bundle["decoder"]["cell"])
    assert_same_array(loaded["encoder"]["norm"]["scale"], bundle["encoder"]["norm"]["scale"])
    assert_same_array(loaded["decoder"]["out"]["w"], np.eye(2))
    assert_same_json(loaded["encoder"]["norm"]["eps"], 1e-5)
    assert_same_json(loaded["a-first"], {"only": ["json", 1]})
    # How the file says it: nested mappings as "bundle" entries, their tensors under their path.
    header, _ = split(data)
    types_ = {e["name"]: e["type"] for e in header["entries"]}
    assert types_ == {
        "z-last-alphabetically": "array",
        "encoder": "bundle",
        "a-first": "json",
        "decoder": "bundle",
    }
    names = [t["name"] for t in header["tensors"]]
    assert "encoder/rnn/params/weight_ih_l0" in names and "encoder/norm/scale" in names


def test_any_mapping_and_repeated_values() -> None:
    arr = np.arange(4.0)
    mapping = types.MappingProxyType(collections.OrderedDict([("b", arr), ("a", arr), ("c", [1])]))
    loaded = load_bytes(to_bytes(mapping))
    assert type(loaded) is dict and list(loaded) == ["b", "a", "c"]
    assert_same_array(loaded["a"], arr)
    assert_same_array(loaded["b"], arr)
    assert loaded["a"] is not loaded["b"]  # each name its own array
    assert load_bytes(to_bytes({})) == {}


def test_versions_one_model_is_version_1_a_bundle_version_2() -> None:
    assert (MODEL_VERSION, BUNDLE_VERSION, FORMAT_VERSION) == (1, 2, 2)
    single = to_bytes(fr.GRU(2, 3, seed=0))
    bundle = to_bytes({"gru": fr.GRU(2, 3, seed=0)})
    assert version(single) == 1 and split(single)[0]["format_version"] == 1
    assert set(split(single)[0]) == {"format_version", "fusedrnn_version", "model", "tensors"}
    assert version(bundle) == 2 and split(bundle)[0]["format_version"] == 2
    assert set(split(bundle)[0]) == {"format_version", "fusedrnn_version", "entries", "tensors"}
    # The model is described the same way in both; the bundle's tensors sit under its name.
    assert split(bundle)[0]["entries"][0]["model"] == split(single)[0]["model"]
    assert split(bundle)[1] == split(single)[1]
    assert [t["name"] for t in split(bundle)[0]["tensors"]] == [
        "gru/" + t["name"] for t in split(single)[0]["tensors"]
    ]


# A GRU(2, 2) with weights arange(size) / 8 - 1 in each state_dict entry, as fusedrnn wrote it before
# bundles existed (format version 1, fusedrnn 0.1.0).
VERSION_1_GRU = base64.b64decode(
    "RlVTRURSTk4NChoKAQAAAFMCAAAAAAAAeyJmb3JtYXRfdmVyc2lvbiI6MSwiZnVzZWRybm5fdmVyc2lvbiI6IjAuMS4wIiwibW9k"
    "ZWwiOnsia2luZCI6IkdSVSIsImR0eXBlIjoiZmxvYXQzMiIsIm9wdGlvbnMiOnsiaW5wdXRfc2l6ZSI6MiwiaGlkZGVuX3NpemUi"
    "OjIsIm51bV9sYXllcnMiOjEsImJpYXMiOnRydWUsImJhdGNoX2ZpcnN0IjpmYWxzZSwiZHJvcG91dCI6MC4wLCJiaWRpcmVjdGlv"
    "bmFsIjpmYWxzZSwicmVzaWR1YWwiOmZhbHNlLCJsaW5lYXJfYmVmb3JlX3Jlc2V0Ijp0cnVlfX0sInRlbnNvcnMiOlt7Im5hbWUi"
    "OiJwYXJhbXMvd2VpZ2h0X2loX2wwIiwiZHR5cGUiOiI8ZjQiLCJzaGFwZSI6WzYsMl0sIm9mZnNldCI6MCwibmJ5dGVzIjo0OH0s"
    "eyJuYW1lIjoicGFyYW1zL3dlaWdodF9oaF9sMCIsImR0eXBlIjoiPGY0Iiwic2hhcGUiOls2LDJdLCJvZmZzZXQiOjY0LCJuYnl0"
    "ZXMiOjQ4fSx7Im5hbWUiOiJwYXJhbXMvYmlhc19paF9sMCIsImR0eXBlIjoiPGY0Iiwic2hhcGUiOls2XSwib2Zmc2V0IjoxMjgs"
    "Im5ieXRlcyI6MjR9LHsibmFtZSI6InBhcmFtcy9iaWFzX2hoX2wwIiwiZHR5cGUiOiI8ZjQiLCJzaGFwZSI6WzZdLCJvZmZzZXQi"
    "OjE5MiwibmJ5dGVzIjoyNH1dfQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgL8AAGC/AABAvwAAIL8AAAC/AADAvgAAgL4AAAC+AAAA"
    "AAAAAD4AAIA+AADAPgAAAAAAAAAAAAAAAAAAAAAAAIC/AABgvwAAQL8AACC/AAAAvwAAwL4AAIC+AAAAvgAAAAAAAAA+AACAPgAA"
    "wD4AAAAAAAAAAAAAAAAAAAAAAACAvwAAYL8AAEC/AAAgvwAAAL8AAMC+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAgL8AAGC/AABAvwAAIL8AAAC/AADAvjMuxHhkR94xcgI1z2ycI8mU9oenQJbQ2PGcL46b5pnn"
)


def test_a_version_1_file_written_before_bundles_still_loads_and_is_still_written_so() -> None:
    gru = fr.load(io.BytesIO(VERSION_1_GRU))
    assert type(gru) is fr.GRU and (gru.input_size, gru.hidden_size) == (2, 2)
    shapes = {"weight_ih_l0": (6, 2), "weight_hh_l0": (6, 2), "bias_ih_l0": (6,), "bias_hh_l0": (6,)}
    assert {k: v.shape for k, v in gru.state_dict().items()} == shapes
    for key, shape in shapes.items():
        expected = (np.arange(math.prod(shape)).reshape(shape) / 8 - 1).astype(np.float32)
        np.testing.assert_array_equal(gru.state_dict()[key], expected, err_msg=key)
    # The single-model writer is unchanged: the same file, but for the version of fusedrnn named in it.
    header, data = split(to_bytes(gru))
    old_header, old_data = split(VERSION_1_GRU)
    assert header.pop("fusedrnn_version") and old_header.pop("fusedrnn_version") == "0.1.0"
    assert (header, data) == (old_header, old_data)
    assert version(to_bytes(gru)) == 1


# -- what cannot be saved -------------------------------------------------------------------------------


BAD_KEYS = [
    ("", ValueError),
    ("a/b", ValueError),
    ("two words", ValueError),
    ("naïve", ValueError),
    ("x" * 129, ValueError),
    ("new\nline", ValueError),
    (3, TypeError),
    (("a", "b"), TypeError),
    (None, TypeError),
]


@pytest.mark.parametrize("key, error", BAD_KEYS, ids=lambda k: repr(k)[:20])
def test_save_refuses_bad_keys_naming_them(key: Any, error: type) -> None:
    with pytest.raises(error) as info:
        to_bytes({"fine": 1, key: np.ones(2)})
    message = str(info.value)
    assert repr(key)[:60] in message, message
    assert "A-Z a-z 0-9 _ . -" in message if error is ValueError else "must be strings" in message
    # And inside a nested mapping, which the message names.
    with pytest.raises(error, match="in mapping 'outer'"):
        to_bytes({"outer": {"w": np.ones(1), key: 1}})


def test_save_accepts_names_at_the_limits() -> None:
    names = ["x" * 128, "a", "0", ".", "..", "-", "_", "Layer_1.weight-v2"]
    loaded = load_bytes(to_bytes({name: k for k, name in enumerate(names)}))
    assert list(loaded) == names and list(loaded.values()) == list(range(len(names)))


BAD_ARRAYS = {
    "object": (np.array([1, "a"], dtype=object), "dtype object"),
    "uint16": (np.arange(3, dtype=np.uint16), "dtype uint16"),
    "uint64": (np.arange(3, dtype=np.uint64), "dtype uint64"),
    "complex": (np.ones(2, np.complex64), "dtype complex64"),
    "strings": (np.array(["a", "b"]), "dtype <U1"),
    "bytes": (np.array([b"a"]), "dtype |S1"),
    "datetime": (np.array(["2020-01-01"], dtype="datetime64[D]"), "dtype datetime64"),
    "structured": (np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), "dtype"),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_save_refuses_arrays_of_other_dtypes(case: str) -> None:
    arr, words = BAD_ARRAYS[case]
    with pytest.raises(TypeError) as info:
        to_bytes({"ok": np.ones(1), "inner": {"arr": arr}})
    message = str(info.value)
    for word in ("'inner/arr'", words, "float16, float32, float64, int8, int16, int32, int64, uint8 or bool"):
        assert word in message, (word, message)


def test_save_refuses_masked_arrays() -> None:
    with pytest.raises(TypeError, match=r"'m' is a masked array"):
        to_bytes({"m": np.ma.masked_array([1.0, 2.0], mask=[0, 1])})


BAD_VALUES = {
    # name: (value in the mapping under "v", error, words the message must hold)
    "nan": (float("nan"), ValueError, ["'v'", "finite number", "nan"]),
    "inf-in-dict": ({"lr": float("inf")}, ValueError, ["'v'['lr']", "finite", "inf"]),
    "nan-in-list": ([1.0, [float("-inf")]], ValueError, ["'v'[1][0]", "finite", "-inf"]),
    "int-key": ({1: "a"}, TypeError, ["keys of 'v'", "strings", "1 (int)"]),
    "none-key": ({"ok": {None: 1}}, TypeError, ["keys of 'v'['ok']", "None (NoneType)"]),
    "tuple": ((1, 2), TypeError, ["'v'", "a tuple of length 2", "pass a list"]),
    "tuple-in-list": ([1, (2,)], TypeError, ["'v'[1]", "JSON metadata", "tuple"]),
    "set": ({1, 2}, TypeError, ["'v'", "JSON metadata", "(set)"]),
    "numpy-scalar": (np.float32(1.5), TypeError, ["'v'", "float32", "0-d array"]),
    "numpy-int-in-list": ([np.int64(3)], TypeError, ["'v'[0]", "int64", ".item()"]),
    "array-in-list": ([np.ones(2)], TypeError, ["'v'[0]", "values of a mapping, not items of a list"]),
    "object": (object(), TypeError, ["'v'", "a fusedrnn layer, cell or wrapper, a NumPy array", "object"]),
    "bytes": (b"raw", TypeError, ["'v'", "(bytes)"]),
    "function": (len, TypeError, ["'v'", "builtin_function_or_method"]),
    "int-enum": (enum.IntEnum("Color", "RED").RED, TypeError, ["'v'", "JSON metadata", "(Color)"]),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_save_refuses_values_it_could_not_give_back(case: str) -> None:
    value, error, words = BAD_VALUES[case]
    with pytest.raises(error) as info:
        to_bytes({"fine": [1, 2], "v": value})
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_save_refuses_too_deep_or_cyclic_structures() -> None:
    deep: Any = np.ones(1)
    for _ in range(8):  # eight mappings, the outermost included: the most a file may hold
        deep = {"d": deep}
    assert_same_array(load_bytes(to_bytes(deep))["d"]["d"]["d"]["d"]["d"]["d"]["d"]["d"], np.ones(1))
    with pytest.raises(ValueError, match=r"nested at most 8 deep, got deeper at 'd/d/d/d/d/d/d/d'"):
        to_bytes({"d": deep})
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match=r"'c'\[0\]\[0\].*more than 64 deep"):
        to_bytes({"c": cyclic})
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="more than 64 deep"):
        to_bytes({"loop": loop})


def test_save_names_the_key_of_a_model_it_cannot_save() -> None:
    bad = WithDefaults(fr.GRU(3, 4, seed=0), state=np.ones((1, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"save: 'encoder/gru': .*h0.*\(1, N, 4\).*\(1, 2, 5\)"):
        to_bytes({"encoder": {"gru": bad}})


def test_save_refuses_a_header_load_would_refuse() -> None:
    with pytest.raises(
        ValueError, match="more than the 16777216 a file may hold; store large data as arrays"
    ):
        to_bytes({"text": "x" * (1 << 24)})


def test_save_of_something_else_names_what_it_takes() -> None:
    with pytest.raises(
        TypeError, match=r"save expects .* or a mapping of names to those.*got a list of length 2"
    ):
        to_bytes([1, 2])


# -- the atomic write -----------------------------------------------------------------------------------


def test_a_failed_bundle_save_leaves_the_file_and_folder_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "bundle.frnn"
    fr.save({"w": np.arange(3.0), "vocab": ["a"]}, path)
    before = path.read_bytes()
    for bad in (
        {"w": np.zeros(2), "lstm": fr.LSTM(2, 3, seed=0), "late": float("nan")},  # fails after a model
        {"w": np.zeros(2), "bad key": 1},
        {"w": np.zeros(2, np.complex128)},
    ):
        with pytest.raises((ValueError, TypeError)):
            fr.save(bad, path)
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ["bundle.frnn"]  # no temporary file left behind
    buffer = io.BytesIO()
    with pytest.raises(ValueError):
        fr.save({"w": np.zeros(2), "late": float("nan")}, buffer)
    assert buffer.getvalue() == b""  # nothing half written to a file object either
    fr.save({"w": np.arange(4.0)}, path)  # and a good save replaces the file
    assert_same_array(fr.load(path)["w"], np.arange(4.0))


# -- hostile bundles ------------------------------------------------------------------------------------


def good_bundle() -> bytes:
    return to_bytes(
        {
            "lstm": fr.LSTM(3, 4, num_layers=2, seed=0),
            "embedding": np.arange(12, dtype=np.float32).reshape(4, 3),
            "mask": np.array([True, False, True]),
            "vocab": ["a", "b", "c", "d"],
            "inner": {"cell": WithDefaults(fr.GRU(2, 2, seed=1), lengths=[2, 1]), "ids": np.arange(3)},
        }
    )


def forge(change: Any) -> bytes:
    """The good bundle with ``change(header, data)`` applied (returning new data as bytes, or anything
    else to keep it), sealed as format version 2 with a correct checksum."""
    header, data = split(good_bundle())
    new_data = change(header, data)
    return seal(header, new_data if isinstance(new_data, bytes) else data, BUNDLE_VERSION)


def tensor(header: dict, name: str) -> dict:
    return next(t for t in header["tensors"] if t["name"] == name)


def entry(header: dict, name: str) -> dict:
    return next(e for e in header["entries"] if e["name"] == name)


def set_bytes(data: bytes, offset: int, raw: bytes) -> bytes:
    return data[:offset] + raw + data[offset + len(raw) :]


def test_the_forger_itself_is_right() -> None:
    loaded = load_bytes(forge(lambda h, d: None))
    assert list(loaded) == ["lstm", "embedding", "mask", "vocab", "inner"]


HOSTILE = {
    # name: (change, words the message must hold)
    "offset-unaligned": (
        lambda h, d: tensor(h, "embedding").update(offset=tensor(h, "embedding")["offset"] + 4),
        ["header.tensors[", "unaligned"],
    ),
    "offset-overlapping": (
        lambda h, d: tensor(h, "embedding").update(offset=0),
        ["header.tensors[", "overlaps the previous tensor"],
    ),
    "tensors-out-of-order": (
        lambda h, d: h["tensors"].reverse(),
        ["overlaps the previous tensor"],
    ),
    "offset-past-the-end": (
        lambda h, d: h["tensors"][-1].update(offset=h["tensors"][-1]["offset"] + 1024),
        ["truncated", "its header describes"],
    ),
    "offset-negative": (lambda h, d: h["tensors"][0].update(offset=-64), ["offset must be a non-negative"]),
    "nbytes-lies": (
        lambda h, d: tensor(h, "embedding").update(nbytes=44),
        ["nbytes 44 does not match shape [4, 3]"],
    ),
    "shape-huge": (
        lambda h, d: h["tensors"][-1].update(dtype="<f4", shape=[10**6, 10**6], nbytes=4 * 10**12),
        ["truncated: the file has", "its header describes"],
    ),
    "shape-zero-with-huge": (
        lambda h, d: tensor(h, "embedding").update(shape=[0, 2**62, 8], nbytes=0),
        ["[0, 4611686018427387904, 8] is larger than any array can be"],
    ),
    "shape-rank-33": (
        lambda h, d: tensor(h, "mask").update(shape=[1] * 32 + [3]),
        ["shape must be a list of at most 32 non-negative integers"],
    ),
    "dtype-object": (
        lambda h, d: tensor(h, "embedding").update(dtype="|O"),
        ["dtype must be one of", '"|O"'],
    ),
    "dtype-big-endian": (lambda h, d: tensor(h, "embedding").update(dtype=">f4"), ["dtype must be one of"]),
    "dtype-numpy-name": (
        lambda h, d: tensor(h, "embedding").update(dtype="float32"),
        ["dtype must be one of"],
    ),
    "dtype-uint32": (lambda h, d: tensor(h, "embedding").update(dtype="<u4"), ["dtype must be one of"]),
    "dtype-pickle-ish": (
        lambda h, d: tensor(h, "embedding").update(dtype="V12,O"),
        ["dtype must be one of", "V12,O"],
    ),
    "parameter-as-float16": (
        lambda h, d: tensor(h, "lstm/params/bias_hh_l1").update(dtype="<f2", nbytes=32),
        ["entry 'lstm'.model: parameter bias_hh_l1 must be stored as <f4 or <f8, got <f2"],
    ),
    "parameter-as-bool": (
        lambda h, d: tensor(h, "lstm/params/bias_hh_l1").update(dtype="|b1", nbytes=16),
        ["parameter bias_hh_l1 must be stored as <f4 or <f8, got |b1"],
    ),
    "bool-byte-2": (
        lambda h, d: set_bytes(d, tensor(h, "mask")["offset"] + 1, b"\x02"),
        ["entry 'mask'", "bool but holds bytes other than 0 and 1"],
    ),
    "duplicate-entry": (
        lambda h, d: h["entries"].append(dict(entry(h, "vocab"))),
        ["header.entries[5].name must be unique in its mapping", '"vocab"'],
    ),
    "duplicate-nested-entry": (
        lambda h, d: entry(h, "inner")["entries"].append({"name": "ids", "type": "json", "value": 1}),
        ["entry 'inner'.entries[2].name must be unique"],
    ),
    "duplicate-tensor": (
        lambda h, d: h["tensors"][1].update(name=h["tensors"][0]["name"]),
        ["header.tensors[1].name must be unique"],
    ),
    "name-with-slash": (
        lambda h, d: entry(h, "vocab").update(name="../vocab"),
        ["header.entries[3].name must be 1 to 128 of the characters", '"../vocab"'],
    ),
    "name-empty": (
        lambda h, d: entry(h, "vocab").update(name=""),
        ["header.entries[3].name must be 1 to 128"],
    ),
    "type-unknown": (
        lambda h, d: entry(h, "vocab").update(type="pickle"),
        ["entry 'vocab'.type must be one of ['model', 'array', 'json', 'bundle'], got \"pickle\""],
    ),
    "type-swapped": (
        lambda h, d: entry(h, "vocab").update(type="array"),
        ["entry 'vocab' has unknown entries ['value']"],
    ),
    "entry-lacks-value": (lambda h, d: entry(h, "vocab").pop("value"), ["entry 'vocab' lacks ['value']"]),
    "entry-extra-field": (
        lambda h, d: entry(h, "embedding").update(tensor="lstm/params/weight_ih_l0"),
        ["entry 'embedding' has unknown entries ['tensor']"],
    ),
    "entry-not-an-object": (
        lambda h, d: h["entries"].append(["name", "x"]),
        ["header.entries[5] must be a JSON object with a 'name' and a 'type'"],
    ),
    "array-tensor-missing": (
        lambda h, d: tensor(h, "embedding").update(name="embedding2"),
        ["entry 'embedding': its tensor 'embedding' is missing"],
    ),
    "array-tensor-renamed-to-a-parameter": (
        lambda h, d: tensor(h, "lstm/params/weight_ih_l0").update(name="lstm/params/weight_ih_l9"),
        ["entry 'lstm'.model: parameter weight_ih_l0 is missing"],
    ),
    "nested-array-missing": (
        lambda h, d: tensor(h, "inner/ids").update(name="ids"),
        ["entry 'inner/ids': its tensor 'inner/ids' is missing"],
    ),
    "nested-defaults-missing": (
        lambda h, d: tensor(h, "inner/cell/defaults/0/lengths").update(name="inner/cell/defaults/1/lengths"),
        ["entry 'inner/cell'.model: tensor 'inner/cell/defaults/0/lengths' is missing"],
    ),
    "tensor-nothing-uses": (
        lambda h, d: h["entries"].remove(entry(h, "mask")),
        ["the file holds tensors no entry uses: ['mask']"],
    ),
    "model-options-lie": (
        lambda h, d: entry(h, "lstm")["model"]["options"].update(hidden_size=5),
        ["entry 'lstm'.model: parameter weight_ih_l0 has shape (16, 3), the options imply (20, 3)"],
    ),
    "model-kind-unknown": (
        lambda h, d: entry(h, "lstm")["model"].update(kind="os.system"),
        ["entry 'lstm'.model.kind 'os.system' is not a model this fusedrnn knows"],
    ),
    "entries-not-a-list": (lambda h, d: h.update(entries={"lstm": 1}), ["header.entries must be a list"]),
    "bundle-entries-not-a-list": (
        lambda h, d: entry(h, "inner").update(entries="x"),
        ["entry 'inner'.entries must be a list, got \"x\""],
    ),
    "a-model-in-a-bundle-file": (
        lambda h, d: h.update(model=h.pop("entries")),
        ["header lacks ['entries']"],
    ),
    "format-versions-disagree": (lambda h, d: h.update(format_version=1), ["format versions disagree"]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bundles_are_refused_saying_why(case: str) -> None:
    change, words = HOSTILE[case]
    with pytest.raises(ModelFileError) as info:
        load_bytes(forge(change))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_hostile_nesting_of_bundles() -> None:
    def nest(levels: int) -> bytes:
        spec: dict = {"name": "leaf", "type": "json", "value": 1}
        for _ in range(levels - 1):
            spec = {"name": "n", "type": "bundle", "entries": [spec]}
        header = {"format_version": 2, "fusedrnn_version": "x", "entries": [spec], "tensors": []}
        return seal(header, b"", BUNDLE_VERSION)

    loaded = load_bytes(nest(8))
    for _ in range(7):
        loaded = loaded["n"]
    assert loaded == {"leaf": 1}
    with pytest.raises(ModelFileError, match=r"entry 'n/n/n/n/n/n/n/n': mappings nested more than 8 deep"):
        load_bytes(nest(9))
    with pytest.raises(ModelFileError, match="mappings nested more than 8 deep"):
        load_bytes(nest(100))


def raw_bundle(header_text: bytes) -> bytes:
    """A bundle file with this header text (no tensors) and a correct checksum."""
    body = struct.pack("<12sIQ", MAGIC, BUNDLE_VERSION, len(header_text)) + header_text
    body += b"\0" * (-len(body) % 64)
    return body + hashlib.sha256(body).digest()


def test_hostile_json_in_a_bundle() -> None:
    start = b'{"format_version":2,"fusedrnn_version":"x","entries":[{"name":"m","type":"json","value":'
    end = b'}],"tensors":[]}'
    assert load_bytes(raw_bundle(start + b"[1.5, 2]" + end)) == {"m": [1.5, 2]}
    for value, words in [
        (b"NaN", "non-finite number NaN"),
        (b"[1, -Infinity]", "non-finite number -Infinity"),
        (b"1e400", "the number 1e400 is out of range"),
        (b'{"a": [-2e999]}', "the number -2e999 is out of range"),
        (b'{"k": 1, "k": 2}', 'a JSON object has the key "k" twice'),
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ]:
        with pytest.raises(ModelFileError, match=re.escape(words)):
            load_bytes(raw_bundle(start + value + end))
    duplicated = b'{"format_version":2,"fusedrnn_version":"x","entries":[],"entries":[],"tensors":[]}'
    with pytest.raises(ModelFileError, match='corrupted header .a JSON object has the key "entries" twice'):
        load_bytes(raw_bundle(duplicated))


def test_bundle_files_damaged_anywhere() -> None:
    good = good_bundle()
    assert isinstance(load_bytes(good), dict)
    with pytest.raises(ModelFileError, match="truncated"):
        load_bytes(good[:-1])
    for cut in (5, 30, len(good) // 3, len(good) // 2):
        with pytest.raises(ModelFileError, match="truncated"):
            load_bytes(good[:cut])
    with pytest.raises(ModelFileError, match="unexpected bytes"):
        load_bytes(good + b"\0")
    damaged = bytearray(good)
    damaged[len(good) - 40] ^= 1
    with pytest.raises(ModelFileError, match="checksum does not match"):
        load_bytes(bytes(damaged))
    newer = bytearray(good)
    newer[12:16] = (FORMAT_VERSION + 1).to_bytes(4, "little")
    with pytest.raises(ModelFileError, match=f"newer fusedrnn: file format version {FORMAT_VERSION + 1}"):
        load_bytes(bytes(newer))
    # A bundle's header under the one-model version, and the other way round.
    header, data = split(good)
    with pytest.raises(ModelFileError, match=r"header lacks \['model'\]"):
        load_bytes(seal(header, data, MODEL_VERSION))
    header, data = split(to_bytes(fr.GRU(2, 2, seed=0)))
    with pytest.raises(ModelFileError, match=r"header lacks \['entries'\]"):
        load_bytes(seal(header, data, BUNDLE_VERSION))


def test_version_1_files_keep_version_1_limits() -> None:
    """A one-model file may hold only what such files always held: no bundle dtypes or ranks in it."""
    header, data = split(to_bytes(fr.GRU(2, 2, seed=0)))
    header["tensors"][0]["dtype"] = "<f2"
    with pytest.raises(ModelFileError, match=r"dtype must be one of \['<f4', '<f8', '<i8'\]"):
        load_bytes(seal(header, data))
    header, data = split(to_bytes(fr.GRU(2, 2, seed=0)))
    header["tensors"][0].update(shape=[6, 2, 1, 1, 1])
    with pytest.raises(ModelFileError, match="at most 4 non-negative integers"):
        load_bytes(seal(header, data))


def test_an_empty_shape_too_large_for_numpy_is_a_model_file_error() -> None:
    """A zero in a shape makes nbytes 0 whatever the other dimensions; NumPy still refuses to shape an
    array so, with a plain ValueError that load used to let through (from a WithDefaults' stored h0)."""
    model = WithDefaults(fr.GRU(2, 2, seed=0), state=np.ones((1, 2, 2), np.float32))
    header, data = split(to_bytes(model))
    h0 = header["tensors"][-1]
    assert h0["name"] == "defaults/0/h0"
    h0.update(shape=[1, 0, 10**30], nbytes=0)
    with pytest.raises(
        ModelFileError, match=r"header.tensors\[4\].shape \[1, 0, 10{30}\] is larger than any"
    ):
        load_bytes(seal(header, data[: h0["offset"]]))


# One value of each JSON type; a float is a mistake where an integer belongs, an integer is not where a
# number belongs.
WRONG_VALUES = [None, True, 7, 2.5, "x", [1, "y"], {"a": [2]}]


def expected_field(header: dict, path: tuple) -> str:
    """The name the reader gives the field at ``path`` of a bundle's header: ``header.tensors[3].shape``,
    ``header.entries[2].name`` (an entry whose name is not read yet),
    ``entry 'inner/cell'.model.options.bias`` (an element of a short list, like a shape's, is named by
    its list)."""
    if path[0] == "tensors":
        return "header.tensors" + (
            f"[{path[1]}]" + "".join(f".{k}" for k in path[2:3]) if len(path) > 1 else ""
        )
    where, names, node, rest = "header", [], header, list(path)
    while rest and rest[0] == "entries":
        if len(rest) == 1:
            return f"{where}.entries"
        index, rest = rest[1], rest[2:]
        node = node["entries"][index]
        if not rest or rest == ["name"]:
            return f"{where}.entries[{index}]" + (".name" if rest else "")
        names.append(node["name"])
        where = f"entry {'/'.join(names)!r}"
    fields = []
    for key in rest:
        if not isinstance(key, str):
            break
        fields.append(key)
    return ".".join([where, *fields])


def mistyped_cases() -> list[Any]:
    header, _ = split(good_bundle())
    cases = []
    for path in json_paths(header):
        if "value" in path:  # a json entry's value: any JSON is metadata
            continue
        original = header
        for key in path:
            original = original[key]
        for wrong in WRONG_VALUES:
            if type(wrong) is type(original) or (type(original) is float and type(wrong) is int):
                continue
            cases.append(pytest.param(path, wrong, id=f"{path}-{wrong!r}"))
    return cases


@pytest.mark.parametrize("path, wrong", mistyped_cases())
def test_load_names_a_mistyped_bundle_field(path: tuple, wrong: Any) -> None:
    header, data = split(good_bundle())
    target = header
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = wrong
    with pytest.raises(ModelFileError) as info:
        load_bytes(seal(header, data, BUNDLE_VERSION))
    message = str(info.value)
    field = expected_field(split(good_bundle())[0], path)
    assert field in message, (field, message)
    assert "must" in message, message  # what was expected
    assert json.dumps(wrong) in message.partition(" got ")[2], message  # what was found


# -- the deployment path: torch on one machine, NumPy alone on the other ---------------------------------

RUN_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # from here on, any import of torch raises ImportError

import numpy as np
import fusedrnn as fr

bundle_path, sentences_path, out_path = sys.argv[1:]
model = fr.load(bundle_path)
index = {word: k for k, word in enumerate(model["vocab"])}
with open(sentences_path, encoding="utf-8") as f:
    ids = np.array([[index[w] for w in line.split()] for line in f.read().splitlines()])
x = model["embedding"][ids]                       # (N, T, E)
y, (h_n, c_n) = model["lstm"](x)                  # batch_first LSTM
logits = y[:, -1] @ model["head"]["weight"].T + model["head"]["bias"]
assert "torch" not in {m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}
np.save(out_path, logits)
print(model["labels"][int(np.argmax(logits[0]))])
"""


def test_a_torch_model_runs_from_its_bundle_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    vocab = ["<pad>", "the", "cat", "sat", "on", "mat", "dog", "ran"]
    labels = ["animal", "place", "action"]
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(len(vocab), 6)
    lstm = torch.nn.LSTM(6, 10, num_layers=2, batch_first=True)
    head = torch.nn.Linear(10, len(labels))
    sentences = ["the cat sat on the mat", "the dog ran on the mat", "cat dog cat dog sat ran"]
    ids = torch.tensor([[vocab.index(w) for w in s.split()] for s in sentences])
    # A few steps of training, so that the weights are no longer their initial ones.
    params = [*embedding.parameters(), *lstm.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            head(lstm(embedding(ids))[0][:, -1]), torch.tensor([0, 1, 2])
        )
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        expected = head(lstm(embedding(ids))[0][:, -1]).numpy()

    bundle = {
        "embedding": embedding.weight.detach().numpy(),
        "lstm": fr.from_torch(lstm),
        "head": {"weight": head.weight.detach().numpy(), "bias": head.bias.detach().numpy()},
        "vocab": vocab,
        "labels": labels,
    }
    fr.save(bundle, tmp_path / "model.frnn")
    (tmp_path / "sentences.txt").write_text("\n".join(sentences), encoding="utf-8")
    script = tmp_path / "run.py"
    script.write_text(RUN_WITHOUT_TORCH, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(script), "model.frnn", "sentences.txt", "logits.npy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    logits = np.load(tmp_path / "logits.npy")
    assert logits.dtype == np.float32 and logits.shape == (3, 3)
    assert_scaled_close(logits, expected, *VS_TORCH["float32"], "logits without torch vs torch")
    assert out.stdout.strip() == labels[int(np.argmax(expected[0]))]


def test_torch_is_really_unimportable_in_the_child(tmp_path: Path) -> None:
    """The blocking the deployment test relies on: with sys.modules["torch"] = None, import fails."""
    code = (
        'import sys\nsys.modules["torch"] = None\n'
        'try:\n    import torch\nexcept ImportError:\n    print("blocked")'
    )

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout.strip() == "blocked", out.stdout + out.stderr
