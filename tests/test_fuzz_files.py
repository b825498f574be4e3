"""Fuzzing the two readers of untrusted files, fusedrnn.load and fusedrnn.from_onnx, with hypothesis.

Each example is a valid file (a saved model or bundle, an exported ONNX model) mutated: raw bit flips, byte
changes, truncation, insertions, deletions and splices (with the model file's checksum recomputed or
not, so that mutations reach past it), JSON header values replaced by values of every JSON type, and
ONNX attributes, initializers and inputs rewritten. Each reader must either give a model that can be
called, or raise one of its documented errors:

- ``load``: ModelFileError (a ValueError) for anything that is not an intact model file; a bundle that
  loads must hold only callable models, arrays of the dtypes a file stores (bools of 0 and 1 only) and
  metadata that JSON can hold;
- ``from_onnx``: ValueError for a malformed model or node, TypeError for arrays of the wrong dtype,
  NotImplementedError for options the kernels do not compute (and a UserWarning for skipped nodes).

Anything else, or an example that runs longer than ``HANG_SECONDS``, is a bug. The examples are
derandomized (the same every run) and bounded for CI (about 10 s per reader). For a longer search:

    FUSEDRNN_FUZZ_EXAMPLES=200000 FUSEDRNN_FUZZ_SEED=1 pytest tests/test_fuzz_files.py \\
        --hypothesis-show-statistics

(a seed makes the search random from that seed instead of derandomized). tests/fuzz/fuzz_load.py is an
atheris harness over the same checks.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import signal
import struct
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn.interop import ModelFileError, Reverse, SumDirections, WithDefaults, unwrap
from model_files import json_paths, seal, split, version

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HANG_SECONDS = 20
EXAMPLES = int(os.environ.get("FUSEDRNN_FUZZ_EXAMPLES", "0"))
SEED = os.environ.get("FUSEDRNN_FUZZ_SEED")
FUZZ = settings(
    max_examples=EXAMPLES or 2000,
    derandomize=SEED is None,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def seeded(test: Any) -> Any:
    return hypothesis.seed(int(SEED))(test) if SEED is not None else test


# -- the checks (also used by the atheris harness) ------------------------------------------------------


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise Hang when the block runs longer than ``seconds`` (POSIX main thread only; elsewhere no limit)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"an example ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def call_once(model: Any) -> None:
    """Call what a reader gave on a small input that fits its defaults; the call must succeed."""
    inner = unwrap(model)
    rng = np.random.default_rng(0)
    if not isinstance(inner, fr.RNNBase):  # a cell
        x = rng.standard_normal((2, inner.input_size))
        out = model(x)
        for arr in out if isinstance(out, tuple) else (out,):
            assert arr.shape == (2, inner.hidden_size)
        return
    batch, unbatched, steps, lengths = 2, False, 3, None
    wrapper = model
    while not isinstance(wrapper, WithDefaults) and isinstance(wrapper, (Reverse, SumDirections)):
        wrapper = wrapper.layer
    if isinstance(wrapper, WithDefaults):
        state = wrapper.state
        arrays = [a for a in (state if isinstance(state, tuple) else (state,)) if a is not None]
        if arrays:
            unbatched = arrays[0].ndim == 2
            batch = 1 if unbatched else arrays[0].shape[1]
        if wrapper.lengths is not None:
            if wrapper.lengths.ndim == 0:
                unbatched = unbatched or not arrays
            batch = 1 if unbatched else wrapper.lengths.size
            longest = int(wrapper.lengths.max())
            if longest <= 64:
                steps = longest
            else:  # defaults a file may hold but too long to run here: override them
                lengths = np.ones(batch, np.int64) if not unbatched else 1
                steps = 1
    if unbatched:
        x = rng.standard_normal((steps, inner.input_size))
    elif inner.batch_first:
        x = rng.standard_normal((batch, steps, inner.input_size))
    else:
        x = rng.standard_normal((steps, batch, inner.input_size))
    y, _ = model(x, None, lengths)
    assert y.shape[:-1] == x.shape[:-1]


BUNDLE_DTYPES = {np.dtype(t) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "?")}
MODEL_TYPES = (fr.RNNBase, fr.LSTMCell, fr.GRUCell, fr.RNNCell, Reverse, SumDirections, WithDefaults)


def check_loaded(value: Any) -> None:
    """What load gave: a model that can be called, or (from a bundle, at any depth of dicts) an array of a
    dtype a file stores (bools of 0 and 1 only), or metadata that JSON can hold."""
    if isinstance(value, MODEL_TYPES):
        call_once(value)
    elif isinstance(value, np.ndarray):
        assert value.dtype in BUNDLE_DTYPES and value.dtype.isnative, value.dtype
        assert value.ndim <= 32 and value.flags.writeable
        if value.dtype == np.bool_:
            assert value.view(np.uint8).max(initial=0) <= 1
    elif isinstance(value, dict):  # a bundle, a nested mapping or metadata
        for key, item in value.items():
            assert type(key) is str, key
            check_loaded(item)
    elif isinstance(value, list):
        for item in value:
            assert not isinstance(item, (np.ndarray, *MODEL_TYPES)), item  # lists are only metadata
            check_loaded(item)
    else:
        assert value is None or type(value) in (str, int, bool, float), value
        json.dumps(value, allow_nan=False)  # finite numbers only


def check_load(data: bytes) -> None:
    with time_limit(HANG_SECONDS):
        try:
            loaded = fr.load(io.BytesIO(data))
        except ModelFileError:
            return
        check_loaded(loaded)


def check_from_onnx(data: bytes) -> None:
    with time_limit(HANG_SECONDS), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            layers = fr.from_onnx(data)
        except (ValueError, TypeError, NotImplementedError):
            return
        finally:
            for w in caught:
                assert issubclass(w.category, UserWarning) and "from_onnx skipped" in str(w.message), w
        assert layers
        for layer in layers.values():
            call_once(layer)


# -- valid files to start from --------------------------------------------------------------------------


def saved(model: Any) -> bytes:
    buffer = io.BytesIO()
    fr.save(model, buffer)
    return buffer.getvalue()


def model_files() -> list[bytes]:
    return [
        saved(
            WithDefaults(
                Reverse(fr.LSTM(3, 2, num_layers=2, peephole=True, seed=1)),
                state=(np.full((2, 2, 2), 0.5, np.float32), np.full((2, 2, 2), -0.5, np.float32)),
                lengths=[3, 1],
            )
        ),
        saved(SumDirections(fr.GRU(2, 3, bidirectional=True, batch_first=True, dtype=np.float64, seed=2))),
        saved(WithDefaults(fr.RNN(2, 2, nonlinearity="relu", seed=3), state=np.ones((1, 2), np.float32))),
        saved(fr.LSTM(2, 3, proj_size=2, gate_activation="hard_sigmoid", seed=4)),
        saved(fr.GRUCell(2, 2, linear_before_reset=False, seed=5)),
        saved(
            {
                "lstm": WithDefaults(fr.LSTM(3, 2, seed=6), lengths=[2, 1]),
                "embedding": np.linspace(-1, 1, 12, dtype=np.float16).reshape(4, 3),
                "mask": np.array([True, False, True]),
                "vocab": ["a", "b", {"c": [1, 2.5, None, True]}],
                "inner": {"cell": fr.RNNCell(2, 2, seed=7), "ids": np.arange(-3, 3, dtype=np.int8), "n": 1},
            }
        ),
        saved(
            {
                "gru": SumDirections(fr.GRU(2, 2, bidirectional=True, dtype=np.float64, seed=8)),
                "scalar": np.array(7, np.uint8),
                "empty": np.zeros((0, 3), np.int32),
                "deep": {"a": {"b": {"w": np.ones((1, 2, 1, 2), np.int16)}}},
            }
        ),
    ]


def onnx_files() -> list[bytes]:
    return [
        fr.to_onnx(
            WithDefaults(
                fr.LSTM(2, 2, bidirectional=True, peephole=True, clip=0.5, seed=6),
                state=(np.ones((2, 2, 2), np.float32), np.ones((2, 2, 2), np.float32)),
                lengths=[2, 1],
            )
        ).SerializeToString(),
        fr.to_onnx(Reverse(fr.GRU(2, 3, linear_before_reset=False, seed=7))).SerializeToString(),
        fr.to_onnx(fr.RNN(2, 2, nonlinearity="relu", batch_first=True, seed=8)).SerializeToString(),
        fr.to_onnx(fr.GRU(2, 2, gate_activation="hard_sigmoid", seed=9)).SerializeToString(),
    ]


# -- mutations ------------------------------------------------------------------------------------------


def reseal(data: bytes) -> bytes:
    """The same bytes with the last 32 replaced by the checksum of the rest, so that a mutation reaches
    the parts of the reader behind the checksum."""
    if len(data) < 32:
        return data
    return data[:-32] + hashlib.sha256(data[:-32]).digest()


JSON_VALUES = st.one_of(
    st.sampled_from(
        [None, True, False, 0, 1, -1, 2, 3, 64, 2**31, 2**63, 10**30, 0.5, -0.0, 1e308, "", "x"]
        + ["LSTM", "GRU", "RNN", "LSTMCell", "RNNCell", "Reverse", "SumDirections", "WithDefaults"]
        + ["<f4", "<f8", "<i8", "|O", "float32", "float64", "h0", "c0", "tanh", "relu", "hard_sigmoid"]
        + ["processing", "original", "params/weight_ih_l0", "defaults/0/lengths", "defaults/1/h0"]
        + ["model", "array", "json", "bundle", "<f2", "|b1", "|i1", "|u1", "<i2", "<i4", "a/b", "mask"]
        + ["lstm/params/weight_ih_l0", "inner/ids", "inner/cell/params/bias_hh_l0", "embedding"]
        + [{"name": "x", "type": "json", "value": 1}, {"name": "x", "type": "bundle", "entries": []}]
        + [[], [0], [1, 2], [2, 2, 2], [[]], ["h0", "c0"], ["c0"], {}, {"kind": "GRU"}, {"kind": "Reverse"}]
    ).map(copy.deepcopy),  # a fresh list or dict each time: a mutation must not change the samples
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(min_value=-2, max_value=9), max_size=4),
)


@st.composite
def header_mutation(draw: Any, data: bytes) -> bytes:
    """Replace, delete or add values anywhere in the header (one to three times), then reseal; the
    tensor data may be mutated too."""
    header, blob = split(data)
    for _ in range(draw(st.integers(1, 2))):
        paths = json_paths(header)
        path = draw(st.sampled_from(paths))
        parent = header
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "replace", "copy", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif action == "copy":  # a value from elsewhere in the header: right type, wrong place
            source = header
            for key in draw(st.sampled_from(paths)):
                source = source[key]
            parent[path[-1]] = json.loads(json.dumps(source))
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            key = draw(
                st.sampled_from(["extra", "kind", "layer", "state", "lengths", "name", "type", "value"])
            )
            parent[key] = draw(JSON_VALUES)
        else:
            parent.append(draw(JSON_VALUES))
    if blob and draw(st.booleans()):
        blob = bytearray(blob)
        for _ in range(draw(st.integers(1, 4))):
            blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
        blob = bytes(blob)
    return seal(header, blob, version(data))


def regions(data: bytes) -> list[tuple[int, int]]:
    """Spans of a file to mutate, each as likely as the others (hypothesis favours small integers, which
    would otherwise put most mutations in the first bytes): a model file's prefix, header, padding and
    data, and checksum; an ONNX file's sixteenths."""
    n = len(data)
    if data.startswith(b"FUSEDRNN") and n >= 24 + 32:
        header_end = min(n - 32, 24 + struct.unpack_from("<Q", data, 16)[0])
        data_start = min(n - 32, -(-header_end // 64) * 64)
        # The prefix last: hypothesis favours the first choices, and a changed signature stops everything.
        spans = [(24, header_end), (data_start, n - 32), (header_end, data_start), (n - 32, n), (0, 24)]
    else:
        spans = [(k * n // 16, (k + 1) * n // 16) for k in range(16)]
    return [(a, b) for a, b in spans if b > a] or [(0, max(n, 1))]


@st.composite
def byte_mutation(draw: Any, data: bytes, others: list[bytes]) -> bytes:
    """One to four raw mutations: bit flips, byte changes, truncation, insertion, deletion, splices from
    another file or from elsewhere in this one, integer fields set to edge values."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        start, end = draw(st.sampled_from(regions(bytes(out))))
        pos = min(draw(st.integers(start, end - 1)), len(out) - 1)
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete", "splice", "int"]))
        if kind == "flip":
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            out[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, ord("["), ord('"'), ord("-"), ord("9")]))
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[pos : pos + draw(st.integers(1, 64))]
        elif kind == "splice":
            donor = draw(st.sampled_from([bytes(out), *others]))
            a, b = draw(st.sampled_from(regions(donor)))
            chunk = donor[a : a + draw(st.integers(1, max(1, b - a)))]
            if draw(st.booleans()):
                out[pos : pos + len(chunk)] = chunk
            else:
                out[pos:pos] = chunk
        else:  # a little-endian integer field overwritten with an edge value
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(
                st.sampled_from([0, 1, 2**width * 4 - 1, 2 ** (8 * width - 1), 2 ** (8 * width) - 1])
            )
            out[pos : pos + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
    return bytes(out)


MODEL_FILES = model_files()


@st.composite
def mutated_model_file(draw: Any) -> bytes:
    data = draw(st.sampled_from(MODEL_FILES))
    if draw(st.booleans()):
        return draw(header_mutation(data))
    out = draw(byte_mutation(data, MODEL_FILES))
    return reseal(out) if draw(st.booleans()) else out


def onnx_values() -> Any:
    return st.one_of(
        st.sampled_from([-1, 0, 1, 2, 3, 2**31, 2**62, -(2**63)]),
        st.sampled_from([0.0, -0.0, 1.7, 1 / 6, 0.5, -1.0, float("inf"), float("nan"), 1e30]),
        st.sampled_from([b"forward", b"reverse", b"bidirectional", b"", b"\xff\xfe", b"Sigmoid", b"1"]),
        st.lists(
            st.sampled_from([b"Sigmoid", b"Tanh", b"Relu", b"HardSigmoid", b"Affine", b"\xc3"]),
            min_size=1,
            max_size=6,
        ),
        st.lists(st.sampled_from([1 / 6, 0.5, 0.2, float("nan"), -1.0]), min_size=1, max_size=6),
        st.lists(st.integers(-2, 3), min_size=1, max_size=3),
    )


@st.composite
def onnx_mutation(draw: Any, data: bytes) -> bytes:
    """Rewrite the recurrent nodes' attributes and inputs and the initializers (one to three times)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    nodes = [n for n in graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    attr_names = ["hidden_size", "layout", "direction", "clip", "input_forget", "linear_before_reset"]
    attr_names += ["activations", "activation_alpha", "activation_beta"]
    for _ in range(draw(st.integers(1, 3))):
        node = draw(st.sampled_from(nodes))
        kind = draw(st.sampled_from(["attribute", "attribute", "drop", "input", "op", "tensor", "tensor"]))
        if kind == "attribute":  # set (or add a second) attribute of any type
            name = draw(st.sampled_from(attr_names))
            new = helper.make_attribute(name, draw(onnx_values()))
            kept = [a for a in node.attribute if a.name != name or draw(st.booleans())]
            del node.attribute[:]
            node.attribute.extend([*kept, new])
        elif kind == "drop" and node.attribute:
            del node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
        elif kind == "input":
            names = ["", "missing", *(i.name for i in graph.initializer), *node.input]
            inputs = list(node.input) + [""] * draw(st.integers(0, 3))
            inputs[draw(st.integers(0, len(inputs) - 1))] = draw(st.sampled_from(names))
            del node.input[:]
            node.input.extend(inputs)
        elif kind == "op":
            node.op_type = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
        elif kind == "tensor" and graph.initializer:
            init = draw(st.sampled_from(list(graph.initializer)))
            try:
                arr = numpy_helper.to_array(init)
            except Exception:  # already mutated out of shape: start from an empty array
                arr = np.zeros(0, np.float32)
            change = draw(st.sampled_from(["dims", "dtype", "raw", "reshape", "external", "values"]))
            if change == "dims":
                del init.dims[:]
                init.dims.extend(draw(st.lists(st.integers(0, 9), max_size=4)))
            elif change == "dtype":
                init.data_type = draw(st.integers(0, 23))
            elif change == "raw" and init.raw_data:
                init.raw_data = init.raw_data[: draw(st.integers(0, len(init.raw_data)))]
            elif change == "reshape":
                flat = arr.reshape(-1)
                shape = draw(
                    st.sampled_from([(flat.size,), (1, flat.size), (flat.size, 1, 1), (1, 1, flat.size)])
                )
                dtype = draw(
                    st.sampled_from([arr.dtype, np.float64, np.float16, np.int32, np.int64, np.bool_])
                )
                with np.errstate(invalid="ignore", over="ignore"):  # nan and inf to integers: any value
                    flat = flat.astype(dtype)
                init.CopyFrom(numpy_helper.from_array(flat.reshape(shape), init.name))
            elif change == "external":
                init.data_location = onnx.TensorProto.EXTERNAL
                entry = init.external_data.add()
                entry.key, entry.value = "location", draw(st.sampled_from(["../x", "/etc/passwd", "w.bin"]))
            elif arr.size and arr.dtype.kind in "fiu":
                values = arr.copy().reshape(-1)
                if values.dtype.kind == "f":
                    edges = [0.0, -1.0, 1e6, np.inf, -np.inf, np.nan]
                else:
                    info = np.iinfo(values.dtype)
                    edges = [0, 1, info.max, info.min, min(info.max, 2**31)]
                values[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from(edges))
                init.CopyFrom(numpy_helper.from_array(values.reshape(arr.shape), init.name))
    return model.SerializeToString()


ONNX_FILES: list[bytes] = []


@st.composite
def mutated_onnx_file(draw: Any) -> bytes:
    data = draw(st.sampled_from(ONNX_FILES))
    mutations = draw(st.sampled_from(["structure", "structure", "structure", "both", "bytes"]))
    if mutations != "bytes":
        data = draw(onnx_mutation(data))
    if mutations != "structure":
        data = draw(byte_mutation(data, ONNX_FILES))
    return data


# -- the fuzzers ----------------------------------------------------------------------------------------


def test_the_seed_files_are_valid() -> None:
    for data in MODEL_FILES:
        check_loaded(fr.load(io.BytesIO(data)))
    assert sum(version(data) == 2 for data in MODEL_FILES) == 2  # bundles are fuzzed too
    pytest.importorskip("onnx")
    for data in onnx_files():
        for layer in fr.from_onnx(data).values():
            call_once(layer)


@pytest.mark.slow
@seeded
@FUZZ
@given(mutated_model_file())
def test_fuzz_load(data: bytes) -> None:
    check_load(data)


@pytest.fixture
def onnx_seeds() -> None:
    pytest.importorskip("onnx")
    if not ONNX_FILES:
        ONNX_FILES.extend(onnx_files())


@pytest.mark.slow
@seeded
@FUZZ
@given(data=st.data())
def test_fuzz_from_onnx(onnx_seeds: None, data: Any) -> None:
    check_from_onnx(data.draw(mutated_onnx_file()))
