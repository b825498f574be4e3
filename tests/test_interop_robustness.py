"""Hostile and malformed inputs to the model readers, beyond test_model_file.py and test_onnx_interop.py:

- fusedrnn.load: a WithDefaults' stored default state or lengths that do not fit its layer, and a JSON
  header with a value of the wrong JSON type anywhere, each a ModelFileError naming the field, the
  expected and the actual value (never a TypeError from inside the reader, never a model that fails
  on every call);
- fusedrnn.from_onnx: mistyped and out-of-range node attributes (a ValueError naming the node, the
  attribute, the expected and the actual), constant states and lengths that do not fit the node, and
  external data that points outside the model's folder or outside its file, checked by fusedrnn itself
  whatever the installed onnx does.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn.interop import ModelFileError, Reverse, SumDirections, WithDefaults
from model_files import json_paths, seal, split

# -- model files: helpers -------------------------------------------------------------------------------


def saved(model: Any) -> bytes:
    buffer = io.BytesIO()
    fr.save(model, buffer)
    return buffer.getvalue()


def load_bytes(data: bytes) -> Any:
    return fr.load(io.BytesIO(data))


def with_tensor(header: dict, data: bytes, name: str, arr: np.ndarray) -> tuple[dict, bytes]:
    """The file's header and data with tensor ``name`` replaced by ``arr`` (its dtype and shape too)."""
    arr = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<"))
    header = json.loads(json.dumps(header))
    entries = [e for e in header["tensors"] if e["name"] != name]
    blobs = {e["name"]: data[e["offset"] : e["offset"] + e["nbytes"]] for e in entries}
    entries.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape)})
    blobs[name] = arr.tobytes()
    out = b""
    for e in entries:
        out += b"\0" * (-len(out) % 64)
        e["offset"], e["nbytes"] = len(out), len(blobs[e["name"]])
        out += blobs[e["name"]]
    header["tensors"] = entries
    return header, out


# -- model files: default state and lengths that do not fit the layer -----------------------------------

H0 = np.full((2, 2, 5), 0.5, np.float32)  # a 2-layer LSTM(3, 5): (num_layers*num_directions, N, H)
C0 = np.full((2, 2, 5), -0.25, np.float32)


def lstm_with_defaults() -> WithDefaults:
    return WithDefaults(Reverse(fr.LSTM(3, 5, num_layers=2, seed=1)), state=(H0, C0), lengths=[3, 1])


BAD_DEFAULTS = {
    # name: (tensor, value, words the message must hold)
    "h0-features": ("defaults/0/h0", np.zeros((2, 2, 4), np.float32), ["h0", "(2, N, 5)", "(2, 2, 4)"]),
    "h0-layers": ("defaults/0/h0", np.zeros((1, 2, 5), np.float32), ["h0", "(2, N, 5)", "(1, 2, 5)"]),
    "h0-4d": ("defaults/0/h0", np.zeros((2, 2, 5, 1), np.float32), ["h0", "(2, N, 5)", "(2, 2, 5, 1)"]),
    "h0-no-batch": ("defaults/0/h0", np.zeros((2, 0, 5), np.float32), ["h0", "N >= 1", "(2, 0, 5)"]),
    "h0-float64": ("defaults/0/h0", H0.astype(np.float64), ["h0", "<f4", "<f8"]),
    "h0-integers": ("defaults/0/h0", np.zeros((2, 2, 5), np.int64), ["h0", "<f4", "<i8"]),
    "c0-batch": ("defaults/0/c0", np.zeros((2, 3, 5), np.float32), ["c0", "N=2", "(2, 3, 5)"]),
    "lengths-float": ("defaults/0/lengths", np.array([3.0, 1.0], np.float32), ["lengths", "<i8", "<f4"]),
    "lengths-zero": ("defaults/0/lengths", np.array([3, 0]), ["lengths", "between 1 and", "0"]),
    "lengths-negative": ("defaults/0/lengths", np.array([-2, 1]), ["lengths", "between 1 and", "-2"]),
    "lengths-too-long": ("defaults/0/lengths", np.array([2**31, 1]), ["lengths", "2147483647", "2147483648"]),
    "lengths-batch": ("defaults/0/lengths", np.array([3, 1, 1]), ["lengths", "(2,)", "(3,)"]),
    "lengths-2d": ("defaults/0/lengths", np.array([[3, 1]]), ["lengths", "(2,)", "(1, 2)"]),
}


@pytest.mark.parametrize("case", list(BAD_DEFAULTS))
def test_load_refuses_defaults_that_do_not_fit_the_layer(case: str) -> None:
    name, value, words = BAD_DEFAULTS[case]
    header, data = split(saved(lstm_with_defaults()))
    with pytest.raises(ModelFileError) as info:
        load_bytes(seal(*with_tensor(header, data, name, value)))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_load_refuses_a_state_of_the_wrong_form() -> None:
    # An LSTM's default state must be the tuple (h0, c0); a GRU's one array h0.
    header, data = split(saved(lstm_with_defaults()))
    header["model"]["state_is_tuple"] = False
    with pytest.raises(ModelFileError, match=r"model.state_is_tuple must be true for an LSTM.*got false"):
        load_bytes(seal(header, data))
    gru = WithDefaults(fr.GRU(3, 4, seed=0), state=np.ones((1, 2, 4), np.float32))
    header, data = split(saved(gru))
    header["model"]["state_is_tuple"] = True
    with pytest.raises(ModelFileError, match=r"model.state_is_tuple must be false for a GRU.*got true"):
        load_bytes(seal(header, data))
    header["model"]["state_is_tuple"] = False
    header["model"]["state"] = ["c0"]
    header, data = with_tensor(header, data, "defaults/0/c0", np.ones((1, 2, 4), np.float32))
    header["tensors"] = [e for e in header["tensors"] if e["name"] != "defaults/0/h0"]
    with pytest.raises(ModelFileError, match=r"model.state.*'c0'.*GRU has no cell state"):
        load_bytes(seal(header, data))


def test_defaults_that_fit_still_load_and_run() -> None:
    """Batched and unbatched defaults (PyTorch's (D*L, H) state for one unbatched sequence)."""
    x = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    model = lstm_with_defaults()
    loaded = load_bytes(saved(model))
    for a, b in zip(loaded(x)[1], model(x)[1]):
        np.testing.assert_array_equal(a, b)
    unbatched = WithDefaults(fr.GRU(3, 4, seed=2), state=np.ones((1, 4), np.float32), lengths=2)
    loaded = load_bytes(saved(unbatched))
    np.testing.assert_array_equal(loaded(x[:, 0])[1], unbatched(x[:, 0])[1])


def test_save_refuses_defaults_that_load_would_refuse() -> None:
    """What save writes, load reads: a WithDefaults whose defaults cannot serve any call is refused."""
    bad = WithDefaults(fr.GRU(3, 4, seed=0), state=np.ones((1, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"h0.*\(1, N, 4\).*\(1, 2, 5\)"):
        saved(bad)
    with pytest.raises(ValueError, match="lengths.*0"):
        saved(WithDefaults(fr.GRU(3, 4, seed=0), lengths=[2, 0]))
    with pytest.raises(ValueError, match=r"lengths.*whole.*2\.5"):
        saved(WithDefaults(fr.GRU(3, 4, seed=0), lengths=[2.5, 1.0]))


def test_load_refuses_nested_sum_directions() -> None:
    """Found by test_fuzz_files: SumDirections(SumDirections(layer)) loaded, then failed every call with
    a broadcasting error (its outer wrapper splits features the inner one has already summed)."""
    header, data = split(saved(SumDirections(fr.GRU(2, 3, bidirectional=True, seed=0))))
    header["model"] = {"kind": "SumDirections", "layer": header["model"]}
    with pytest.raises(ModelFileError, match=r"model.layer must be a layer whose directions are not summed"):
        load_bytes(seal(header, data))
    with pytest.raises(ValueError, match="SumDirections around a SumDirections"):
        SumDirections(SumDirections(fr.GRU(2, 3, bidirectional=True, seed=0)))
    # nor through another wrapper
    with pytest.raises(ValueError, match="SumDirections around a SumDirections"):
        SumDirections(WithDefaults(SumDirections(fr.GRU(2, 3, bidirectional=True, seed=0))))


# -- model files: a JSON value of the wrong type anywhere in the header ---------------------------------


def field_name(path: tuple) -> str:
    """The name the reader gives the field at ``path``: header.tensors[3].shape, model.layer.options.clip
    (an element of a short list, like a shape's, is named by its list)."""
    if path[0] == "tensors" and len(path) > 1:
        return f"header.tensors[{path[1]}]" + "".join(f".{k}" for k in path[2:3])
    if path[0] != "model":
        return f"header.{path[0]}"
    names = ["model"]
    for key in path[1:]:
        if not isinstance(key, str):  # inside a list (model.state)
            break
        names.append(key)
    return ".".join(names)


# One value of each JSON type; a float is a mistake where an integer belongs, an integer is not where a
# number belongs.
WRONG_VALUES = [None, True, 7, 2.5, "x", [1, "y"], {"a": [2]}]

HEADER_MODELS = {
    "defaults-reverse-lstm": lstm_with_defaults,
    "cell": lambda: fr.GRUCell(3, 4, seed=3),
    "rnn": lambda: fr.RNN(3, 4, nonlinearity="relu", dropout=0.5, num_layers=2, seed=4),
}


def mistyped_cases() -> list[Any]:
    cases = []
    for model_name, make in HEADER_MODELS.items():
        header, _ = split(saved(make()))
        for path in json_paths(header):
            original = header
            for key in path:
                original = original[key]
            for wrong in WRONG_VALUES:
                if type(wrong) is type(original) or (type(original) is float and type(wrong) is int):
                    continue
                cases.append(pytest.param(model_name, path, wrong, id=f"{model_name}-{path}-{wrong!r}"))
    return cases


@pytest.mark.parametrize("model_name, path, wrong", mistyped_cases())
def test_load_names_a_mistyped_header_field(model_name: str, path: tuple, wrong: Any) -> None:
    header, data = split(saved(HEADER_MODELS[model_name]()))
    target = header
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = wrong
    with pytest.raises(ModelFileError) as info:
        load_bytes(seal(header, data))
    message = str(info.value)
    assert field_name(path) in message, (field_name(path), message)
    assert "must" in message, message  # what was expected
    assert json.dumps(wrong) in message.partition(" got ")[2], message  # what was found


def test_load_names_the_type_expected_and_found() -> None:
    header, data = split(saved(fr.GRU(3, 4, seed=0)))
    header["tensors"][1]["dtype"] = ["<f4"]
    with pytest.raises(ModelFileError, match=r"header.tensors\[1\].dtype must be a string, got \[\"<f4\"\]"):
        load_bytes(seal(header, data))
    header, data = split(saved(fr.GRU(3, 4, seed=0)))
    header["model"]["kind"] = {"GRU": 1}
    with pytest.raises(ModelFileError, match=r"model.kind must be a string, got \{\"GRU\": 1\}"):
        load_bytes(seal(header, data))
    header, data = split(saved(fr.GRU(3, 4, seed=0)))
    header["format_version"] = True  # true == 1 in Python, but not a version number
    with pytest.raises(ModelFileError, match="header.format_version must be an integer, got true"):
        load_bytes(seal(header, data))


# -- ONNX: helpers --------------------------------------------------------------------------------------

HIDDEN, INPUT = 3, 2


def onnx_model(op: str = "LSTM", attrs: Any = (), inits: Any = None, inputs: Any = None) -> Any:
    """A one-node model ``op`` named "rnn" (hidden size 3, input size 2, one direction, with bias)
    with extra ``attrs`` (AttributeProtos) and initializers ``inits`` (name -> array) beside W, R, B."""
    from onnx import TensorProto, helper, numpy_helper

    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    rng = np.random.default_rng(0)
    arrays = {
        "W": rng.standard_normal((1, gates * HIDDEN, INPUT)).astype(np.float32),
        "R": rng.standard_normal((1, gates * HIDDEN, HIDDEN)).astype(np.float32),
        "B": rng.standard_normal((1, 2 * gates * HIDDEN)).astype(np.float32),
        **(inits or {}),
    }
    node = helper.make_node(op, inputs or ["X", "W", "R", "B"], ["Y"], name="rnn", hidden_size=HIDDEN)
    node.attribute.extend(attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 1, INPUT])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(a, k) for k, a in arrays.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


def attribute(name: str, value: Any) -> Any:
    from onnx import helper

    return helper.make_attribute(name, value)


def replace_attribute(model: Any, name: str, value: Any) -> Any:
    node = model.graph.node[0]
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, attribute(name, value)])
    return model


# -- ONNX: attributes of the wrong type or out of range -------------------------------------------------

# attribute -> (its ONNX type, the values of other types to try)
MISTYPED = {
    "hidden_size": ("INT", [3.0, float("inf"), "3", [3], [3.0]]),
    "layout": ("INT", [1.7, 0.0, "0", [0], b"\xff"]),
    "input_forget": ("INT", [0.5, "1", [1]]),
    "direction": ("STRING", [1, 0.5, ["forward"]]),
    "clip": ("FLOAT", ["x", [1.0], b"\xff"]),
    "activations": ("STRINGS", [1, "Sigmoid", [1.0, 2.0], [1, 2]]),
    "activation_alpha": ("FLOATS", ["a", 0.5, ["a"]]),
    "activation_beta": ("FLOATS", [1, [1, 2]]),
}


def mistyped_attribute_cases() -> list[Any]:
    return [
        pytest.param(name, expected, value, id=f"{name}={value!r}")
        for name, (expected, values) in MISTYPED.items()
        for value in values
    ]


@pytest.mark.parametrize("name, expected, value", mistyped_attribute_cases())
def test_from_onnx_names_a_mistyped_attribute(name: str, expected: str, value: Any) -> None:
    pytest.importorskip("onnx")
    model = replace_attribute(onnx_model("LSTM"), name, value)
    actual = model.graph.node[0].attribute[-1]
    from onnx import AttributeProto

    actual_type = AttributeProto.AttributeType.Name(actual.type)
    with pytest.raises(ValueError) as info:
        fr.from_onnx(model)
    message = str(info.value)
    for word in ("LSTM node 'rnn'", f"attribute {name}", expected, actual_type):
        assert word in message, (word, message)


@pytest.mark.parametrize(
    "op, name, value, words",
    [
        ("LSTM", "hidden_size", 0, ["hidden_size", ">= 1", "0"]),
        ("LSTM", "hidden_size", -3, ["hidden_size", ">= 1", "-3"]),
        ("LSTM", "layout", 2, ["layout", "0 or 1", "2"]),
        ("LSTM", "layout", -1, ["layout", "0 or 1", "-1"]),
        ("LSTM", "input_forget", 2, ["input_forget", "0 or 1", "2"]),
        ("GRU", "linear_before_reset", 5, ["linear_before_reset", "0 or 1", "5"]),
        ("LSTM", "clip", float("inf"), ["clip", "finite", "inf"]),
        ("LSTM", "clip", float("nan"), ["clip", "finite", "nan"]),
        ("LSTM", "clip", -1.0, ["clip", "positive", "-1.0"]),
        ("GRU", "clip", float("inf"), ["clip", "finite", "inf"]),
        ("RNN", "clip", 0.0, ["clip", "positive", "0.0"]),
        ("LSTM", "direction", b"\xff\xfeforward", ["direction", "UTF-8", "xff"]),
        ("LSTM", "direction", "Forward", ["direction", "forward, reverse or bidirectional", "Forward"]),
        ("LSTM", "activations", [b"Sigmoid", b"\xffTanh", b"Tanh"], ["activations", "UTF-8", "xff"]),
        ("LSTM", "activation_alpha", [float("nan")] * 3, ["activation_alpha", "finite", "nan"]),
    ],
)
def test_from_onnx_checks_attribute_values(op: str, name: str, value: Any, words: list[str]) -> None:
    pytest.importorskip("onnx")
    model = replace_attribute(onnx_model(op), name, value)
    with pytest.raises(ValueError) as info:
        fr.from_onnx(model)
    message = str(info.value)
    for word in (f"{op} node 'rnn'", *words):
        assert word in message, (word, message)


def test_from_onnx_refuses_an_attribute_given_twice() -> None:
    pytest.importorskip("onnx")
    model = onnx_model("LSTM", attrs=[attribute("layout", 0), attribute("layout", 1)])
    with pytest.raises(ValueError, match="LSTM node 'rnn': attribute layout is given 2 times"):
        fr.from_onnx(model)


def test_from_onnx_reads_well_typed_attributes() -> None:
    pytest.importorskip("onnx")
    attrs = [attribute("layout", 1), attribute("input_forget", 1), attribute("clip", 0.5)]
    layer = fr.from_onnx(onnx_model("LSTM", attrs=attrs))["rnn"]
    assert layer.batch_first and layer.config.input_forget and layer.config.clip == 0.5


# -- ONNX: constant states and lengths that do not fit the node -----------------------------------------


@pytest.mark.parametrize(
    "inits, error, words",
    [
        ({"H0": np.zeros((1, 2), np.float32)}, ValueError, ["initial_h", "(1, N, 3)", "(1, 2)"]),
        ({"H0": np.ones((1, 2, 4), np.float32)}, ValueError, ["initial_h", "(1, N, 3)", "(1, 2, 4)"]),
        ({"H0": np.ones((1, 2, 3), np.int32)}, TypeError, ["initial_h", "float", "int32"]),
        ({"L": np.array([[2, 2]], np.int32)}, ValueError, ["sequence_lens", "1-D", "(1, 2)"]),
        ({"L": np.array([2.0, 1.0], np.float32)}, TypeError, ["sequence_lens", "integer", "float32"]),
        ({"L": np.array([2, -1], np.int32)}, ValueError, ["sequence_lens", "-1"]),
        ({"L": np.array([2, 1, 1], np.int32), "H0": np.ones((1, 2, 3), np.float32)}, ValueError,
         ["sequence_lens", "(2,)", "(3,)"]),
        ({"H0": np.ones((1, 2, 3), np.float32), "C0": np.ones((1, 3, 3), np.float32)}, ValueError,
         ["initial_c", "(1, 2, 3)", "(1, 3, 3)"]),
    ],
)  # fmt: skip
def test_from_onnx_checks_constant_states_and_lengths(inits: dict, error: type, words: list[str]) -> None:
    pytest.importorskip("onnx")
    names = ["X", "W", "R", "B", "L" if "L" in inits else "", "H0" if "H0" in inits else ""]
    names.append("C0" if "C0" in inits else "")
    while not names[-1]:
        names.pop()
    with pytest.raises(error) as info:
        fr.from_onnx(onnx_model("LSTM", inits=inits, inputs=names))
    message = str(info.value)
    for word in ("LSTM node 'rnn'", *words):
        assert word in message, (word, message)


def test_from_onnx_mixed_weight_dtypes_are_refused() -> None:
    pytest.importorskip("onnx")
    r = np.zeros((1, 4 * HIDDEN, HIDDEN), np.float64)
    with pytest.raises(TypeError, match=r"LSTM node 'rnn': R.*float32 \(W's\).*float64"):
        fr.from_onnx(onnx_model("LSTM", inits={"R": r}))


# -- ONNX: external data --------------------------------------------------------------------------------


def external_model(folder: Any) -> Any:
    """A model saved in ``folder`` with its weights in ``weights.bin`` beside it; returns its path."""
    onnx = pytest.importorskip("onnx")
    model = onnx_model("GRU")
    path = folder / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    return path


def set_external(path: Any, **fields: str) -> None:
    """Rewrite every external tensor's location/offset/length fields in the model at ``path``."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        entries = {e.key: e.value for e in init.external_data}
        entries.update(fields)
        del init.external_data[:]
        for key, value in entries.items():
            entry = init.external_data.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))


@pytest.fixture
def permissive_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnx's external-data loader as it was in onnx 1.15: the location joined to the folder and read,
    symlinks followed, nothing checked. fusedrnn must not depend on onnx's checks."""
    onnx = pytest.importorskip("onnx")
    from onnx import external_data_helper

    def load_unchecked(model: Any, base_dir: str) -> None:
        for tensor in external_data_helper._get_all_tensors(model):
            if external_data_helper.uses_external_data(tensor):
                info = external_data_helper.ExternalDataInfo(tensor)
                with open(os.path.join(base_dir, info.location), "rb") as f:
                    f.seek(info.offset or 0)
                    tensor.raw_data = f.read(info.length) if info.length else f.read()
                tensor.data_location = onnx.TensorProto.DEFAULT
                del tensor.external_data[:]

    monkeypatch.setattr(onnx, "load_external_data_for_model", load_unchecked)
    monkeypatch.setattr(external_data_helper, "load_external_data_for_model", load_unchecked)


def test_from_onnx_reads_external_data_in_the_models_folder(tmp_path: Any) -> None:
    path = external_model(tmp_path)
    expected = fr.from_onnx(onnx_model("GRU"))["rnn"].state_dict()
    for k, a in fr.from_onnx(path)["rnn"].state_dict().items():
        np.testing.assert_array_equal(a, expected[k], err_msg=k)


def test_from_onnx_refuses_a_symlink_out_of_the_models_folder(tmp_path: Any, permissive_onnx: None) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    path = external_model(folder)
    secret = tmp_path / "secret.bin"
    secret.write_bytes((folder / "weights.bin").read_bytes())  # a file the model must not reach
    (folder / "weights.bin").unlink()
    os.symlink(secret, folder / "weights.bin")
    with pytest.raises(
        ValueError, match=r"'weights.bin'.*resolves to .*secret.bin.*outside the model's folder"
    ):
        fr.from_onnx(path)


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"location": "../weights.bin"}, r"location '../weights.bin'.*'\.\.'"),
        ({"location": "sub/../../weights.bin"}, r"'\.\.'"),
        ({"location": "/etc/passwd"}, r"location '/etc/passwd'.*relative"),
        ({"location": ""}, r"location ''"),
        ({"location": "missing.bin"}, r"'missing.bin'.*not a file"),
        ({"location": "."}, r"location '\.'.*not a file"),
        ({"offset": "100000"}, r"offset 100000.*beyond the end of 'weights.bin' \(\d+ bytes\)"),
        ({"offset": "-4"}, r"offset '-4'.*non-negative integer"),
        ({"length": "100000"}, r"length 100000.*beyond the end of 'weights.bin' \(\d+ bytes\)"),
        ({"length": "1e3"}, r"length '1e3'.*non-negative integer"),
    ],
)
def test_from_onnx_checks_external_data_locations(
    tmp_path: Any, permissive_onnx: None, fields: dict, match: str
) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    path = external_model(folder)
    (tmp_path / "weights.bin").write_bytes((folder / "weights.bin").read_bytes())  # for '..' to reach
    set_external(path, **fields)
    with pytest.raises(ValueError, match=match):
        fr.from_onnx(path)


def test_from_onnx_states_its_minimum_onnx_version(monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = pytest.importorskip("onnx")
    monkeypatch.setattr(onnx, "__version__", "1.9.0")
    with pytest.raises(ImportError, match=r"onnx >= 1\.10.*1\.9\.0 is installed"):
        fr.from_onnx(onnx_model("GRU"))
    with pytest.raises(ImportError, match=r"onnx >= 1\.10"):
        fr.to_onnx(fr.GRU(2, 3, seed=0))
    monkeypatch.setattr(onnx, "__version__", "1.10.0rc1")
    assert list(fr.from_onnx(onnx_model("GRU"))) == ["rnn"]
