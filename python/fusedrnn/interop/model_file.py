"""fusedrnn's model file: ``save(layer, path)`` and ``load(path)``.

One file holds a versioned JSON description of the model and its weights as raw little-endian arrays;
nothing in it is ever executed (no pickle), and every field is checked before it is used.

Layout (all integers little-endian)::

    magic           12 bytes   b"FUSEDRNN\\r\\n\\x1a\\n"
    format version   4 bytes   uint32 (this version writes and reads 1)
    header length    8 bytes   uint64
    header                     UTF-8 JSON: {"format_version", "fusedrnn_version", "model", "tensors"}
    padding                    zeros up to a multiple of 64 bytes
    data                       the tensors, each at a 64-byte aligned offset (from the data's start)
    checksum        32 bytes   SHA-256 of everything before it

``model`` describes what to build -- ``{"kind": "LSTM", "dtype": "float32", "options": {...}}`` for a
layer or cell (its constructor's arguments), or a wrapper (``Reverse``, ``SumDirections``,
``WithDefaults``) around one (``"layer": {...}``). ``tensors`` lists each array as
``{"name", "dtype" ("<f4", "<f8" or "<i8"), "shape", "offset", "nbytes"}``: the parameters as
``params/<state_dict name>``, a ``WithDefaults``' values as ``defaults/<depth>/{h0,c0,lengths}``.

A truncated, corrupted, hostile or foreign file raises ``ModelFileError`` (a ValueError) that says which;
a file from a newer format version says so. Loading allocates nothing before the sizes it implies have
been checked against the file's own size. Every header value is checked for its JSON type, and a
``WithDefaults``' stored state and lengths against its layer (the shapes and dtype a call accepts,
lengths in [1, 2**31 - 1]), so that a file that loads gives a model that can be called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import struct
import tempfile
from typing import Any

import numpy as np

from .. import _validation as v
from .._cells import cell_kind_from_torch_class
from .._config import StackConfig
from .._version import __version__
from ..cells import GRUCell, LSTMCell, RNNCell
from ..layers import GRU, LSTM, RNN, RNNBase
from .torch_convert import dropin_as_layer
from .wrappers import Reverse, SumDirections, WithDefaults, directions_summed, unwrap

__all__ = ["save", "load", "ModelFileError", "FORMAT_VERSION"]

MAGIC = b"FUSEDRNN\r\n\x1a\n"
FORMAT_VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<12sIQ")
_DIGEST = 32
_MAX_HEADER = 1 << 24  # 16 MiB of JSON is far beyond any real model's description
_MAX_NESTING = 8
_DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8"), "<i8": np.dtype("<i8")}

_LAYERS = {"LSTM": LSTM, "GRU": GRU, "RNN": RNN}
_CELLS = {"LSTMCell": LSTMCell, "GRUCell": GRUCell, "RNNCell": RNNCell}
# Constructor options per kind: name -> type ("int", "bool", "float", or a tuple of allowed strings).
_COMMON_LAYER = {
    "input_size": "int",
    "hidden_size": "int",
    "num_layers": "int",
    "bias": "bool",
    "batch_first": "bool",
    "dropout": "float",
    "bidirectional": "bool",
    "residual": "bool",
}
_OPTIONS: dict[str, dict[str, Any]] = {
    "LSTM": {
        **_COMMON_LAYER,
        "proj_size": "int",
        "peephole": "bool",
        "clip": "float",
        "input_forget": "bool",
        "forget_bias": "float",
        "gate_activation": ("sigmoid", "hard_sigmoid"),
    },
    "GRU": {**_COMMON_LAYER, "linear_before_reset": "bool", "gate_activation": ("sigmoid", "hard_sigmoid")},
    "RNN": {**_COMMON_LAYER, "nonlinearity": ("tanh", "relu")},
    "LSTMCell": {"input_size": "int", "hidden_size": "int", "bias": "bool"},
    "GRUCell": {"input_size": "int", "hidden_size": "int", "bias": "bool", "linear_before_reset": "bool"},
    "RNNCell": {"input_size": "int", "hidden_size": "int", "bias": "bool", "nonlinearity": ("tanh", "relu")},
}
# The cell options a layer's constructor takes as the StackConfig holds them (those its cell takes), in the
# order files list them; hard_gates is written as gate_activation.
_CELL_OPTIONS = ("proj_size", "peephole", "clip", "input_forget", "linear_before_reset")
# Written only when not the default, so that files of models without them read in older versions too.
_OPTIONAL = {"LSTM": {"forget_bias", "gate_activation"}, "GRU": {"gate_activation"}}
# StackConfig fields written from a layer (anything else the config gains must be added here first,
# so that a layer using it is never saved without it).
_CONFIG_FIELDS = {
    "cell",
    "input_size",
    "hidden_size",
    "num_layers",
    "bias",
    "bidirectional",
    "proj_size",
    "linear_before_reset",
    "residual",
    "peephole",
    "clip",
    "input_forget",
    "hard_gates",
}


class ModelFileError(ValueError):
    """A file that is not a readable fusedrnn model file: not one at all, truncated, corrupted, hostile,
    or written by a newer fusedrnn."""


# -- save -----------------------------------------------------------------------------------------------


def _describe(obj: Any, tensors: dict[str, np.ndarray], depth: int) -> dict[str, Any]:
    obj = dropin_as_layer(obj)  # a fusedrnn.torch module is saved as its fusedrnn layer
    if isinstance(obj, Reverse):
        return {"kind": "Reverse", "order": obj.order, "layer": _describe(obj.layer, tensors, depth + 1)}
    if isinstance(obj, SumDirections):
        if directions_summed(obj.layer):
            raise ValueError(
                "save: a SumDirections around a SumDirections cannot be called, and is not saved"
            )
        return {"kind": "SumDirections", "layer": _describe(obj.layer, tensors, depth + 1)}
    if isinstance(obj, WithDefaults):
        spec: dict[str, Any] = {"kind": "WithDefaults", "layer": _describe(obj.layer, tensors, depth + 1)}
        dtype = np.dtype(obj.dtype)
        state = obj.state
        values: dict[str, np.ndarray] = {}
        if state is not None:
            parts = state if isinstance(state, (tuple, list)) else (state,)
            for name, value in zip(("h0", "c0"), parts):
                if value is not None:
                    values[name] = v.as_array(f"{name}", value, dtype)
        lengths = None
        if obj.lengths is not None:
            lengths = np.asarray(obj.lengths)
            if lengths.dtype.kind not in "iuf" or (
                lengths.dtype.kind == "f"
                and not (np.isfinite(lengths) & (lengths == np.round(lengths))).all()
            ):
                raise ValueError(
                    f"save: the WithDefaults' lengths must be whole numbers, got {lengths.tolist()}"
                )
        is_tuple = isinstance(state, (tuple, list))
        # What save writes, load reads: load refuses defaults no call could use, so save does too.
        problem = _defaults_problem(obj.layer, values, is_tuple, lengths, "WithDefaults")
        if problem:
            raise ValueError(f"save: {problem}")
        for name, value in values.items():
            tensors[f"defaults/{depth}/{name}"] = value
        if lengths is not None:
            tensors[f"defaults/{depth}/lengths"] = lengths.astype(np.int64)  # in range: checked above
        spec["state"] = list(values)
        spec["state_is_tuple"] = is_tuple
        spec["lengths"] = lengths is not None
        return spec
    if isinstance(obj, (RNNBase, LSTMCell, GRUCell, RNNCell)):
        dtype = str(np.dtype(obj.dtype))
    if isinstance(obj, RNNBase):
        c: StackConfig = obj.config
        unknown = [
            f.name
            for f in dataclasses.fields(c)
            if f.name not in _CONFIG_FIELDS and getattr(c, f.name) != f.default
        ]
        if unknown:
            raise ValueError(f"save: this file format does not know the option(s) {unknown} the layer uses")
        kind = c.kind.torch_layer  # fusedrnn's layers have torch.nn's names
        options: dict[str, Any] = {
            "input_size": c.input_size,
            "hidden_size": c.hidden_size,
            "num_layers": c.num_layers,
            "bias": c.bias,
            "batch_first": bool(obj.batch_first),
            "dropout": float(obj.dropout),
            "bidirectional": c.bidirectional,
            "residual": c.residual,
        }
        options.update({option: getattr(c, option) for option in _CELL_OPTIONS if option in c.kind.options})
        if getattr(obj, "forget_bias", 0.0):  # initialization only, kept so that the model reads the same
            options["forget_bias"] = float(obj.forget_bias)
        if c.kind.nonlinearity is not None:
            options["nonlinearity"] = c.kind.nonlinearity
        if c.hard_gates:
            options["gate_activation"] = "hard_sigmoid"
    elif isinstance(obj, (LSTMCell, GRUCell, RNNCell)):
        cell = obj.config.kind
        kind = cell.torch_cell  # fusedrnn's cells have torch.nn's names
        options = {"input_size": obj.input_size, "hidden_size": obj.hidden_size, "bias": obj.bias}
        if "linear_before_reset" in cell.options:
            options["linear_before_reset"] = obj.linear_before_reset
        if cell.nonlinearity is not None:
            options["nonlinearity"] = cell.nonlinearity
    else:
        raise TypeError(f"save expects a fusedrnn layer, cell or wrapper, got {v.describe(obj)}")
    for name, arr in obj.state_dict().items():
        tensors[f"params/{name}"] = arr
    return {"kind": kind, "dtype": dtype, "options": options}


def _encode(obj: Any) -> bytes:
    tensors: dict[str, np.ndarray] = {}
    model = _describe(obj, tensors, 0)
    entries = []
    offset = 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = arr.dtype.newbyteorder("<")
        code = dtype.str
        if code not in _DTYPES:
            raise TypeError(f"save: tensor {name} has unsupported dtype {arr.dtype}")
        offset = -(-offset // _ALIGN) * _ALIGN
        entries.append(
            {
                "name": name,
                "dtype": code,
                "shape": list(arr.shape),
                "offset": offset,
                "nbytes": int(arr.nbytes),
            }
        )
        offset += arr.nbytes
    header = json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "fusedrnn_version": __version__,
            "model": model,
            "tensors": entries,
        },
        allow_nan=False,
        separators=(",", ":"),
    ).encode()
    out = io.BytesIO()
    out.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)))
    out.write(header)
    out.write(b"\0" * (-out.tell() % _ALIGN))
    data_start = out.tell()
    for entry, arr in zip(entries, tensors.values()):
        out.write(b"\0" * (data_start + entry["offset"] - out.tell()))
        out.write(np.ascontiguousarray(arr, dtype=_DTYPES[entry["dtype"]]).tobytes())
    body = out.getvalue()
    return body + hashlib.sha256(body).digest()


def save(layer: Any, path: Any) -> None:
    """Write ``layer`` (a fusedrnn layer or cell, or one in ``Reverse``/``SumDirections``/``WithDefaults``)
    with its configuration, dtype and weights to ``path`` (a path; or a binary file object). The file
    is written whole to a temporary name beside ``path`` and then renamed, so that a crash never leaves
    half a file under the final name."""
    data = _encode(layer)
    if hasattr(path, "write"):
        path.write(data)
        return
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fusedrnn-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- load -----------------------------------------------------------------------------------------------

# The longest default length a file may hold: ONNX's sequence_lens are int32, and to_onnx writes a
# layer's default lengths as such (a longer one would wrap around there).
_MAX_LENGTH = 2**31 - 1
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    list: "a list",
    dict: "a JSON object",
}


def _fail(source: str, message: str) -> ModelFileError:
    return ModelFileError(f"{source}: {message}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in JSON")


def _json(value: Any) -> str:
    """A JSON value as a file spells it, cut short, for messages."""
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_type(source: str, where: str, value: Any, expected: type) -> Any:
    # type(), not isinstance(): JSON's true and false are not the integers 1 and 0.
    if type(value) is not expected:
        raise _fail(source, f"{where} must be {_TYPE_NAMES[expected]}, got {_json(value)}")
    return value


def _check_value(source: str, where: str, value: Any, kind: Any) -> Any:
    if kind == "int":
        if type(value) is not int or value < 0:
            raise _fail(source, f"{where} must be a non-negative integer, got {_json(value)}")
    elif kind == "bool":
        _check_type(source, where, value, bool)
    elif kind == "float":
        try:  # an integer too large for a float is not a finite number either
            number = float(value) if type(value) in (int, float) else math.nan
        except OverflowError:
            number = math.nan
        if not math.isfinite(number):
            raise _fail(source, f"{where} must be a finite number, got {_json(value)}")
        value = number
    elif isinstance(kind, tuple):
        if type(value) is not str or value not in kind:
            raise _fail(source, f"{where} must be one of {list(kind)}, got {_json(value)}")
    return value


def _expect_keys(
    source: str, where: str, obj: Any, required: set[str], optional: set[str] = frozenset()
) -> None:
    if not isinstance(obj, dict):
        raise _fail(source, f"{where} must be a JSON object, got {_json(obj)}")
    missing = required - set(obj)
    extra = set(obj) - required - optional
    if missing:
        raise _fail(source, f"{where} lacks {sorted(missing)}")
    if extra:
        raise _fail(source, f"{where} has unknown entries {sorted(extra)}")


def _defaults_problem(
    layer: Any, state: dict[str, np.ndarray], is_tuple: bool, lengths: np.ndarray | None, where: str
) -> str | None:
    """Why no call could use ``WithDefaults(layer)`` with this default state (``{"h0": array, "c0":
    array}``, either absent) and these lengths, in a call's own terms; None when calls can. A file must
    never give a model that fails on every call."""
    inner = unwrap(layer)
    if not isinstance(inner, RNNBase):
        return f"{where}.layer must be an LSTM, GRU or RNN layer, got a {type(inner).__name__}"
    c = inner.config
    kind = c.kind.torch_layer
    if c.has_cell_state and state and not is_tuple:
        return f"{where}.state_is_tuple must be true for an LSTM's default state (h0, c0), got false"
    if not c.has_cell_state and is_tuple:
        return f"{where}.state_is_tuple must be false for a {kind}'s default state (one array h0), got true"
    if not c.has_cell_state and "c0" in state:
        return f"{where}.state lists 'c0', but a {kind} has no cell state"
    lead = c.num_layers * c.num_directions
    batch: tuple[int, ...] | None = None  # (N,), or () for unbatched calls, as the first array has it
    first = ""
    for name, arr in state.items():
        width, meaning = (c.output_size, "H_out") if name == "h0" else (c.hidden_size, "H")
        field = f"{where}: default state {name}"
        batched = f"({lead}, N, {width}) (num_layers*num_directions, N, {meaning})"
        unbatched = f"({lead}, {width}) (num_layers*num_directions, {meaning}) for unbatched calls"
        if arr.ndim not in (2, 3):
            return f"{field} must have shape {batched}, or {unbatched}, got {arr.shape}"
        if arr.ndim == 3 and arr.shape[1] < 1:
            return f"{field} must have shape {batched} with N >= 1, got {arr.shape}"
        if batch is None:
            batch, first = arr.shape[1:-1], name
        if arr.shape != (lead, *batch, width):
            as_first = (
                "" if first == name else (f" with N={batch[0]} as {first}" if batch else f" as {first}")
            )
            return f"{field} must have shape {batched if batch else unbatched}{as_first}, got {arr.shape}"
    if lengths is not None:
        field = f"{where}: default lengths"
        if batch is None and not (lengths.ndim == 0 or (lengths.ndim == 1 and len(lengths) >= 1)):
            return f"{field} must have shape (N,) with N >= 1, or () for unbatched calls, got {lengths.shape}"
        if batch == () and lengths.shape not in ((), (1,)):
            return f"{field} must have shape () or (1,) for unbatched calls, as {first}, got {lengths.shape}"
        if batch and lengths.shape != batch:
            return f"{field} must have shape ({batch[0]},), one per sequence of {first}, got {lengths.shape}"
        flat = lengths.reshape(-1)
        bad = np.flatnonzero((flat < 1) | (flat > _MAX_LENGTH))
        if bad.size:
            return (
                f"{field} must each be between 1 and {_MAX_LENGTH} (ONNX's int32 sequence_lens), "
                f"got {flat[bad[0]].item()!r} at index {int(bad[0])}"
            )
    return None


def _stack_config(kind: str, options: dict[str, Any]) -> StackConfig:
    cell = cell_kind_from_torch_class(kind, options.get("nonlinearity", "tanh")).name
    if kind in _CELLS:
        return StackConfig(
            cell,
            options["input_size"],
            options["hidden_size"],
            1,
            options["bias"],
            False,
            0,
            options.get("linear_before_reset", True),
        )
    return StackConfig(
        cell,
        options["input_size"],
        options["hidden_size"],
        options["num_layers"],
        options["bias"],
        options["bidirectional"],
        options.get("proj_size", 0),
        options.get("linear_before_reset", True),
        options["residual"],
        options.get("peephole", False),
        options.get("clip", 0.0),
        options.get("input_forget", False),
        options.get("gate_activation", "sigmoid") == "hard_sigmoid",
    )


class _Reader:
    def __init__(self, source: str, data: memoryview, data_start: int, tensors: dict[str, dict[str, Any]]):
        self.source = source
        self.data = data
        self.data_start = data_start
        self.tensors = tensors
        self.used: set[str] = set()

    def array(self, name: str) -> np.ndarray:
        entry = self.tensors[name]
        self.used.add(name)
        start = self.data_start + entry["offset"]
        arr = np.frombuffer(
            self.data, dtype=_DTYPES[entry["dtype"]], count=math.prod(entry["shape"]), offset=start
        )
        return arr.reshape(entry["shape"]).astype(_DTYPES[entry["dtype"]].newbyteorder("="))

    def build(self, spec: Any, depth: int) -> Any:
        source = self.source
        where = "model" + ".layer" * depth
        if depth > _MAX_NESTING:
            raise _fail(source, f"{where}: wrappers nested more than {_MAX_NESTING} deep")
        if not isinstance(spec, dict) or "kind" not in spec:
            raise _fail(source, f"{where} must be a JSON object with a 'kind', got {_json(spec)}")
        kind = _check_type(source, f"{where}.kind", spec["kind"], str)
        if kind == "Reverse":
            _expect_keys(source, where, spec, {"kind", "order", "layer"})
            order = _check_value(source, f"{where}.order", spec["order"], ("original", "processing"))
            return self._wrap(lambda: Reverse(self.build(spec["layer"], depth + 1), order), where)
        if kind == "SumDirections":
            _expect_keys(source, where, spec, {"kind", "layer"})
            inner = self.build(spec["layer"], depth + 1)
            if directions_summed(inner):
                raise _fail(
                    source,
                    f"{where}.layer must be a layer whose directions are not summed yet, got {inner!r:.100}",
                )
            return self._wrap(lambda: SumDirections(inner), where)
        if kind == "WithDefaults":
            return self._with_defaults(spec, depth, where)
        if kind not in _OPTIONS:
            raise _fail(
                source,
                f"{where}.kind {kind!r} is not a model this fusedrnn knows "
                f"({', '.join([*_OPTIONS, 'Reverse', 'SumDirections', 'WithDefaults'])})",
            )
        _expect_keys(source, where, spec, {"kind", "dtype", "options"})
        dtype = _check_value(source, f"{where}.dtype", spec["dtype"], ("float32", "float64"))
        schema = _OPTIONS[kind]
        options = spec["options"]
        optional = _OPTIONAL.get(kind, set())
        _expect_keys(source, f"{where}.options", options, set(schema) - optional, optional)
        options = {
            k: _check_value(source, f"{where}.options.{k}", options[k], t)
            for k, t in schema.items()
            if k in options
        }
        # Size the model from its options before building anything, against the tensors the file holds.
        directions = 2 if options.get("bidirectional") else 1
        per_layer = 2 + 2 * int(options["bias"])
        if options.get("num_layers", 1) * directions * per_layer > len(self.tensors):
            raise _fail(
                source,
                f"{where}: the options imply at least "
                f"{options.get('num_layers', 1) * directions * per_layer} parameter tensors, "
                f"the file holds {len(self.tensors)}",
            )
        try:
            config = _stack_config(kind, options)
            shapes = config.param_shapes()
        except (ValueError, TypeError, KeyError) as exc:
            raise _fail(source, f"{where}.options are invalid: {exc}") from None
        if kind in _CELLS:
            shapes = [(name[: -len("_l0")], shape) for name, shape in shapes]
        for name, shape in shapes:
            entry = self.tensors.get(f"params/{name}")
            if entry is None:
                raise _fail(source, f"{where}: parameter {name} is missing")
            if tuple(entry["shape"]) != tuple(shape):
                raise _fail(
                    source,
                    f"{where}: parameter {name} has shape {tuple(entry['shape'])}, the options "
                    f"imply {tuple(shape)}",
                )
            if entry["dtype"] == "<i8":
                raise _fail(source, f"{where}: parameter {name} is stored as integers")
        cls = _LAYERS.get(kind) or _CELLS[kind]
        kwargs = dict(options)
        if kind in _LAYERS and kwargs["dropout"] and kwargs["num_layers"] == 1:
            raise _fail(source, f"{where}: dropout={kwargs['dropout']} with num_layers=1")
        for key, default in (
            ("proj_size", 0),
            ("peephole", False),
            ("clip", 0.0),
            ("input_forget", False),
            ("residual", False),
            ("gate_activation", "sigmoid"),
        ):
            if kwargs.get(key, default) == default:
                kwargs.pop(key, None)
        layer = self._wrap(lambda: cls(**kwargs, dtype=np.dtype(dtype)), where)
        layer.load_state_dict({name: self.array(f"params/{name}") for name, _ in shapes})
        return layer

    def _with_defaults(self, spec: dict[str, Any], depth: int, where: str) -> Any:
        source = self.source
        _expect_keys(source, where, spec, {"kind", "layer", "state", "state_is_tuple", "lengths"})
        inner = self.build(spec["layer"], depth + 1)
        parts = _check_type(source, f"{where}.state", spec["state"], list)
        if not all(type(p) is str and p in ("h0", "c0") for p in parts) or len(set(parts)) != len(parts):
            raise _fail(source, f"{where}.state must list some of 'h0', 'c0' (each once), got {_json(parts)}")
        is_tuple = _check_value(source, f"{where}.state_is_tuple", spec["state_is_tuple"], "bool")
        has_lengths = _check_value(source, f"{where}.lengths", spec["lengths"], "bool")
        if not isinstance(unwrap(inner), RNNBase):
            raise _fail(
                source, f"{where}.layer must be an LSTM, GRU or RNN layer, got a {type(inner).__name__}"
            )
        dtype = np.dtype(inner.dtype)
        stored = {
            p: (f"defaults/{depth}/{p}", dtype.newbyteorder("<").str, f"the layer's {dtype}") for p in parts
        }
        if has_lengths:
            stored["lengths"] = (f"defaults/{depth}/lengths", "<i8", "int64")
        for name, expected, meaning in stored.values():
            if name not in self.tensors:
                raise _fail(source, f"{where}: tensor {name!r} is missing")
            if self.tensors[name]["dtype"] != expected:
                raise _fail(
                    source,
                    f"{where}: tensor {name!r} must be stored as {expected} ({meaning}), "
                    f"got {self.tensors[name]['dtype']}",
                )
        values = {p: self.array(f"defaults/{depth}/{p}") for p in parts}
        lengths = self.array(f"defaults/{depth}/lengths") if has_lengths else None
        problem = _defaults_problem(inner, values, is_tuple, lengths, where)
        if problem:
            raise _fail(source, problem)
        state: Any = None
        if is_tuple:
            state = (values.get("h0"), values.get("c0"))
        elif values:
            state = values["h0"]
        return self._wrap(lambda: WithDefaults(inner, state=state, lengths=lengths), where)

    def _wrap(self, make: Any, where: str) -> Any:
        try:
            return make()
        except ModelFileError:
            raise
        except (ValueError, TypeError) as exc:
            raise _fail(self.source, f"{where} cannot be built: {exc}") from None


def _decode(data: bytes, source: str) -> Any:
    view = memoryview(data)
    size = len(data)
    if size < _PREFIX.size or data[: len(MAGIC)] != MAGIC:
        if size >= 8 and data[:8] == MAGIC[:8]:
            raise _fail(
                source,
                "damaged fusedrnn model file (its signature was altered, e.g. by a text-mode "
                "transfer that rewrote line endings)",
            )
        if size < _PREFIX.size and MAGIC.startswith(data[: len(MAGIC)]):
            raise _fail(source, f"truncated fusedrnn model file ({size} bytes)")
        raise _fail(source, "not a fusedrnn model file (it does not start with fusedrnn's signature)")
    _, version, header_len = _PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise _fail(
            source,
            f"written by a newer fusedrnn: file format version {version}, this fusedrnn "
            f"reads version {FORMAT_VERSION} and older; upgrade fusedrnn to load it",
        )
    if version < 1:
        raise _fail(source, f"invalid file format version {version}")
    if header_len > _MAX_HEADER:
        raise _fail(source, f"corrupted header length ({header_len} bytes)")
    header_end = _PREFIX.size + header_len
    if header_end > size:
        raise _fail(source, f"truncated: the header needs {header_end} bytes, the file has {size}")
    try:
        header = json.loads(
            bytes(view[_PREFIX.size : header_end]).decode("utf-8"), parse_constant=_reject_constant
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(source, f"corrupted header (not valid JSON: {str(exc)[:200]})") from None
    _expect_keys(source, "header", header, {"format_version", "fusedrnn_version", "model", "tensors"})
    if _check_type(source, "header.format_version", header["format_version"], int) != version:
        raise _fail(source, "corrupted header (format versions disagree)")
    _check_type(source, "header.fusedrnn_version", header["fusedrnn_version"], str)
    entries = _check_type(source, "header.tensors", header["tensors"], list)
    data_start = -(-header_end // _ALIGN) * _ALIGN
    tensors: dict[str, dict[str, Any]] = {}
    data_end = 0
    for k, entry in enumerate(entries):
        where = f"header.tensors[{k}]"
        _expect_keys(source, where, entry, {"name", "dtype", "shape", "offset", "nbytes"})
        name = _check_type(source, f"{where}.name", entry["name"], str)
        if name in tensors:
            raise _fail(source, f"{where}.name must be unique, got {_json(name)} a second time")
        if _check_type(source, f"{where}.dtype", entry["dtype"], str) not in _DTYPES:
            raise _fail(source, f"{where}.dtype must be one of {list(_DTYPES)}, got {_json(entry['dtype'])}")
        shape = _check_type(source, f"{where}.shape", entry["shape"], list)
        if len(shape) > 4 or any(type(d) is not int or d < 0 for d in shape):
            raise _fail(
                source, f"{where}.shape must be a list of at most 4 non-negative integers, got {_json(shape)}"
            )
        for key in ("offset", "nbytes"):
            _check_value(source, f"{where}.{key}", entry[key], "int")
        if entry["nbytes"] != math.prod(shape) * _DTYPES[entry["dtype"]].itemsize:
            raise _fail(source, f"{where}: nbytes {entry['nbytes']} does not match shape {shape}")
        if entry["offset"] < data_end or entry["offset"] % _ALIGN:
            raise _fail(
                source, f"{where}: offset {entry['offset']} overlaps the previous tensor or is unaligned"
            )
        data_end = entry["offset"] + entry["nbytes"]
        tensors[name] = entry
    expected_size = data_start + data_end + _DIGEST
    if size < expected_size:
        raise _fail(source, f"truncated: the file has {size} bytes, its header describes {expected_size}")
    if size > expected_size:
        raise _fail(source, f"corrupted: {size - expected_size} unexpected bytes after the data")
    if hashlib.sha256(view[: size - _DIGEST]).digest() != data[size - _DIGEST :]:
        raise _fail(source, "corrupted: the checksum does not match the contents")
    reader = _Reader(source, view, data_start, tensors)
    model = reader.build(header["model"], 0)
    unused = set(tensors) - reader.used
    if unused:
        raise _fail(source, f"the file holds tensors the model does not use: {sorted(unused)[:5]}")
    return model


def load(path: Any) -> Any:
    """Read a model written by ``save``: a fusedrnn layer, cell or wrapped layer with the saved
    configuration, dtype and weights. ``path``: a path, or a binary file object. Raises ModelFileError
    (a ValueError) for anything that is not an intact fusedrnn model file of a version this fusedrnn
    reads, FileNotFoundError for a missing path."""
    if hasattr(path, "read"):
        data = path.read()
        source = getattr(path, "name", "<file object>")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(
                f"load: the file object must be opened in binary mode, it gave {type(data).__name__}"
            )
    else:
        source = os.fspath(path)
        with open(source, "rb") as f:
            data = f.read()
    return _decode(bytes(data), str(source))
