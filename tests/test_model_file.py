"""fusedrnn.save / fusedrnn.load: round trips of every model kind and option, and every failure mode --
not a model file, truncated anywhere, corrupted anywhere, a newer format version, and hostile files whose
checksum is valid but whose contents lie (sizes, types, kinds, nesting) -- each a clear ModelFileError,
with nothing executed and nothing large allocated."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
from typing import Any

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn.interop import ModelFileError, Reverse, SumDirections, WithDefaults, unwrap
from fusedrnn.interop.model_file import FORMAT_VERSION, MAGIC, MODEL_VERSION

MODELS = {
    "lstm": lambda: fr.LSTM(3, 5, seed=1),
    "lstm-everything": lambda: fr.LSTM(
        3,
        5,
        num_layers=2,
        bidirectional=True,
        batch_first=True,
        dropout=0.25,
        peephole=True,
        clip=0.5,
        input_forget=True,
        residual=True,
        seed=2,
    ),
    "lstm-proj-f64": lambda: fr.LSTM(3, 5, proj_size=2, num_layers=2, dtype=np.float64, seed=3),
    "lstm-nobias": lambda: fr.LSTM(3, 5, bias=False, seed=4),
    "lstm-forget-bias": lambda: fr.LSTM(3, 5, forget_bias=1.0, seed=15),
    "gru-reset-before": lambda: fr.GRU(3, 5, linear_before_reset=False, bidirectional=True, seed=5),
    "lstm-hard-gates": lambda: fr.LSTM(3, 5, gate_activation="hard_sigmoid", forget_bias=2.0, seed=16),
    "gru-hard-gates": lambda: fr.GRU(3, 5, gate_activation="hard_sigmoid", num_layers=2, seed=17),
    "rnn-relu": lambda: fr.RNN(3, 5, nonlinearity="relu", num_layers=3, seed=6),
    "gru-clip": lambda: fr.GRU(3, 5, num_layers=2, bidirectional=True, clip=0.3, seed=18),
    "gru-reset-before-clip-f64": lambda: fr.GRU(
        3, 5, linear_before_reset=False, clip=0.25, dtype=np.float64, seed=19
    ),
    "rnn-tanh-clip": lambda: fr.RNN(3, 5, num_layers=2, clip=0.3, seed=20),
    "rnn-relu-clip": lambda: fr.RNN(3, 5, nonlinearity="relu", clip=0.3, seed=21),
    "lstmcell-clip": lambda: fr.LSTMCell(3, 5, clip=0.3, seed=22),
    "grucell-clip": lambda: fr.GRUCell(3, 5, linear_before_reset=False, clip=0.3, seed=23),
    "rnncell-relu-clip": lambda: fr.RNNCell(3, 5, nonlinearity="relu", clip=0.3, seed=24),
    "lstmcell": lambda: fr.LSTMCell(3, 5, seed=7),
    "grucell-f64": lambda: fr.GRUCell(3, 5, linear_before_reset=False, dtype=np.float64, seed=8),
    "rnncell-relu-nobias": lambda: fr.RNNCell(3, 5, bias=False, nonlinearity="relu", seed=9),
    "reverse": lambda: Reverse(fr.GRU(3, 5, seed=10), order="processing"),
    "sum": lambda: SumDirections(fr.LSTM(3, 5, bidirectional=True, seed=11)),
    "defaults-lstm": lambda: WithDefaults(
        Reverse(fr.LSTM(3, 5, seed=12)),
        state=(np.full((1, 2, 5), 0.5, np.float32), np.full((1, 2, 5), -0.25, np.float32)),
        lengths=[3, 1],
    ),
    "defaults-gru": lambda: WithDefaults(fr.GRU(3, 5, seed=13), state=np.ones((1, 2, 5), np.float32)),
}


def outputs(model: Any, x: np.ndarray) -> list[np.ndarray]:
    inner = unwrap(model)
    if isinstance(inner, fr.RNNBase):
        xin = x.transpose(1, 0, 2) if inner.batch_first else x
        y, s = model(xin)
        return [y, *(s if isinstance(s, tuple) else (s,))]
    out = model(x[0])
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip(name: str, tmp_path: Any) -> None:
    model = MODELS[name]()
    path = tmp_path / "model.frnn"
    fr.save(model, path)
    loaded = fr.load(path)
    assert type(loaded) is type(model)
    assert repr(loaded) == repr(model)
    assert np.dtype(loaded.dtype) == np.dtype(model.dtype)
    for k, a in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], a, err_msg=k)
    x = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(model.dtype)
    for a, b in zip(outputs(loaded, x), outputs(model, x)):
        np.testing.assert_array_equal(a, b)
    # The same bytes through a file object.
    buffer = io.BytesIO()
    fr.save(model, buffer)
    assert buffer.getvalue() == path.read_bytes()
    buffer.seek(0)
    assert repr(fr.load(buffer)) == repr(model)


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: fr.GRU(3, 5, **kw),
        lambda **kw: fr.RNN(3, 5, nonlinearity="relu", **kw),
        lambda **kw: fr.LSTMCell(3, 5, **kw),
        lambda **kw: fr.GRUCell(3, 5, **kw),
        lambda **kw: fr.RNNCell(3, 5, **kw),
    ],
    ids=["gru", "rnn", "lstmcell", "grucell", "rnncell"],
)
def test_clip_is_written_only_when_set(make: Any) -> None:
    """A model without clip is saved exactly as before these models had clip (fusedrnn versions without
    it read the file); with clip the option holds its value."""
    for clip in (0.0, 0.375):
        buffer = io.BytesIO()
        fr.save(make(clip=clip, seed=1), buffer)
        header, _ = parts(buffer.getvalue())
        options = header["model"]["options"]
        assert options.get("clip", "absent") == (clip if clip else "absent")


def test_save_replaces_atomically(tmp_path: Any) -> None:
    path = tmp_path / "m.frnn"
    fr.save(fr.GRU(2, 3, seed=0), path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="save expects"):
        fr.save(object(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.frnn"]  # no temporary file left behind
    fr.save(fr.RNN(2, 3, seed=1), path)
    assert isinstance(fr.load(path), fr.RNN)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError):
        fr.load("/nonexistent/model.frnn")


# -- damaged files ------------------------------------------------------------------------------------


@pytest.fixture
def good() -> bytes:
    buffer = io.BytesIO()
    fr.save(fr.LSTM(3, 4, num_layers=2, bidirectional=True, seed=14), buffer)
    return buffer.getvalue()


def load_bytes(data: bytes) -> Any:
    return fr.load(io.BytesIO(data))


def test_not_a_model_file(tmp_path: Any) -> None:
    for data in (b"", b"hello world, not a model file at all....", b"PK\x03\x04" + b"\0" * 60):
        with pytest.raises(ModelFileError, match="not a fusedrnn model file|truncated"):
            load_bytes(data)
    with pytest.raises(ModelFileError, match="not a fusedrnn model file"):
        load_bytes(np.lib.format.magic(1, 0) + b"\0" * 100)


def test_pickle_is_never_run(tmp_path: Any) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> Any:
            return (open, (str(marker), "w"))

    with pytest.raises(ModelFileError, match="not a fusedrnn model file"):
        load_bytes(pickle.dumps(Payload()))
    assert not marker.exists()


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.01, 0.05, 0.3, 0.6, 0.99])
def test_truncated_anywhere(good: bytes, fraction: float) -> None:
    cut = max(1, int(len(good) * fraction)) if fraction else 5
    with pytest.raises(ModelFileError, match="truncated"):
        load_bytes(good[:cut])


def test_truncated_by_one_byte(good: bytes) -> None:
    with pytest.raises(ModelFileError, match="truncated"):
        load_bytes(good[:-1])


def test_trailing_garbage(good: bytes) -> None:
    with pytest.raises(ModelFileError, match="unexpected bytes"):
        load_bytes(good + b"\0")


@pytest.mark.parametrize("where", ["data", "checksum", "padding", "last"])
def test_corrupted_bytes(good: bytes, where: str) -> None:
    header_len = struct.unpack_from("<Q", good, 16)[0]
    header_end = 24 + header_len
    positions = {
        "data": len(good) - 32 - 100,
        "checksum": len(good) - 10,
        "padding": header_end + 1,
        "last": len(good) - 33,
    }
    data = bytearray(good)
    data[positions[where]] ^= 0x01
    with pytest.raises(ModelFileError, match="corrupted"):
        load_bytes(bytes(data))


def test_corrupted_header(good: bytes) -> None:
    data = bytearray(good)
    start = 24
    data[start] = ord("[")  # the JSON no longer parses
    with pytest.raises(ModelFileError, match="corrupted header"):
        load_bytes(bytes(data))
    data = bytearray(good)
    data[16:24] = struct.pack("<Q", 1 << 40)  # header length
    with pytest.raises(ModelFileError, match="header length"):
        load_bytes(bytes(data))


def test_text_mode_transfer_is_recognised(good: bytes) -> None:
    with pytest.raises(ModelFileError, match="line endings"):
        load_bytes(good.replace(b"\r\n", b"\n", 1))


def test_newer_format_version(good: bytes) -> None:
    data = bytearray(good)
    data[12:16] = struct.pack("<I", FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError, match=f"newer fusedrnn: file format version {FORMAT_VERSION + 1}"):
        load_bytes(bytes(data))
    data[12:16] = struct.pack("<I", 0)
    with pytest.raises(ModelFileError, match="invalid file format version 0"):
        load_bytes(bytes(data))


# -- hostile files with a valid checksum ------------------------------------------------------------------


def forge(header: Any, data: bytes = b"", raw_header: bytes | None = None) -> bytes:
    """A one-model (format version 1) file with any header and data, and a correct checksum."""
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    body = struct.pack("<12sIQ", MAGIC, MODEL_VERSION, len(text)) + text
    body += b"\0" * (-len(body) % 64) + data
    return body + hashlib.sha256(body).digest()


def parts(good: bytes) -> tuple[dict, bytes]:
    header_len = struct.unpack_from("<Q", good, 16)[0]
    header = json.loads(good[24 : 24 + header_len])
    start = -(-(24 + header_len) // 64) * 64
    return header, good[start:-32]


def test_forged_file_round_trips(good: bytes) -> None:
    header, data = parts(good)
    assert isinstance(load_bytes(forge(header, data)), fr.LSTM)  # the forger itself is right


def mutate(good: bytes, change: Any) -> bytes:
    header, data = parts(good)
    change(header)
    return forge(header, data)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda h: h["model"].update(kind="os.system"), "not a model this fusedrnn knows"),
        (lambda h: h["model"].update(kind="Reverse"), "lacks"),
        (lambda h: h["model"]["options"].update(hidden_size=True), "non-negative integer"),
        (lambda h: h["model"]["options"].update(hidden_size=-4), "non-negative integer"),
        (lambda h: h["model"]["options"].update(hidden_size=5), "shape"),
        (lambda h: h["model"]["options"].update(num_layers=10**12), "parameter tensors"),
        (lambda h: h["model"]["options"].update(clip="0.5"), "finite number"),
        (lambda h: h["model"]["options"].update(__class__="x"), "unknown entries"),
        (lambda h: h["model"]["options"].pop("bias"), "lacks"),
        (lambda h: h["model"].update(dtype="float16"), "dtype"),
        (lambda h: h["model"]["options"].update(input_size=0), "cannot be built|shape"),
        (lambda h: h["tensors"][0].update(shape=[10**6, 10**6]), "nbytes"),
        (lambda h: h["tensors"][0].update(shape=[10**6, 10**6], nbytes=4 * 10**12), "truncated|overlaps"),
        (lambda h: h["tensors"][-1].update(offset=h["tensors"][-1]["offset"] + 64), "truncated"),
        (lambda h: h["tensors"][1].update(offset=0), "overlaps"),
        (lambda h: h["tensors"][0].update(dtype="|O"), "dtype"),
        (lambda h: h["tensors"][0].update(name=h["tensors"][1]["name"]), "unique"),
        (lambda h: h["tensors"].pop(0), "parameter tensors, the file holds 15"),
        (lambda h: h["tensors"][0].update(name="params/extra"), "missing"),
        (lambda h: h.update(format_version=0), "format versions disagree"),
        (lambda h: h.update(extra=1), "unknown entries"),
        (lambda h: h.update(tensors={}), "must be a list"),
    ],
)
def test_hostile_headers(good: bytes, change: Any, match: str) -> None:
    with pytest.raises(ModelFileError, match=match):
        load_bytes(mutate(good, change))


@pytest.mark.parametrize(
    "clip, match",
    [(-0.5, r"clip: expected a finite number >= 0 .*got -0.5"), ("0.5", "clip.*finite number")],
    ids=["negative", "string"],
)
@pytest.mark.parametrize("name", ["GRU", "RNNCell"])
def test_hostile_clip_on_gru_and_rnn_is_refused(name: str, clip: Any, match: str) -> None:
    buffer = io.BytesIO()
    fr.save(getattr(fr, name)(3, 5, clip=0.5, seed=0), buffer)
    with pytest.raises(ModelFileError, match=match):
        load_bytes(mutate(buffer.getvalue(), lambda h: h["model"]["options"].update(clip=clip)))


def test_hostile_extra_tensor_is_refused(good: bytes) -> None:
    header, data = parts(good)
    end = header["tensors"][-1]["offset"] + header["tensors"][-1]["nbytes"]
    offset = -(-end // 64) * 64
    header["tensors"].append(
        {"name": "params/smuggled", "dtype": "<f4", "shape": [2], "offset": offset, "nbytes": 8}
    )
    data = data + b"\0" * (offset - len(data)) + b"\0" * 8
    with pytest.raises(ModelFileError, match="does not use"):
        load_bytes(forge(header, data))


def test_hostile_json(good: bytes) -> None:
    with pytest.raises(ModelFileError, match="corrupted header"):
        load_bytes(forge(None, raw_header=b"[" * 100000 + b"]" * 100000))
    with pytest.raises(ModelFileError, match="corrupted header"):
        load_bytes(forge(None, raw_header=b'{"format_version": NaN}'))
    with pytest.raises(ModelFileError, match="header"):
        load_bytes(forge(None, raw_header=b"\xff\xfe not utf-8"))
    with pytest.raises(ModelFileError, match="JSON object"):
        load_bytes(forge([1, 2, 3]))


def test_hostile_nesting() -> None:
    spec: dict = {"kind": "GRU", "dtype": "float32", "options": {}}
    for _ in range(20):
        spec = {"kind": "SumDirections", "layer": spec}
    header = {"format_version": MODEL_VERSION, "fusedrnn_version": "x", "model": spec, "tensors": []}
    with pytest.raises(ModelFileError, match="nested"):
        load_bytes(forge(header))


def test_hostile_wrapper_state(good: bytes) -> None:
    buffer = io.BytesIO()
    fr.save(WithDefaults(fr.GRU(3, 4, seed=0), state=np.ones((1, 2, 4), np.float32)), buffer)
    header, data = parts(buffer.getvalue())
    header["model"]["state"] = ["h0", "h0"]
    with pytest.raises(ModelFileError, match="state"):
        load_bytes(forge(header, data))
    header["model"]["state"] = ["h0", "c0"]
    with pytest.raises(ModelFileError, match="missing"):
        load_bytes(forge(header, data))


def test_load_needs_a_binary_file(tmp_path: Any) -> None:
    path = tmp_path / "m.frnn"
    fr.save(fr.RNN(2, 3, seed=0), path)
    with open(path, encoding="latin-1") as f, pytest.raises(TypeError, match="binary mode"):
        fr.load(f)
