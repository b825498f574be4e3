"""fusedrnn's model file: ``save(layer, path)`` and ``load(path)``, for one model or a bundle of them.

One file holds a versioned JSON description and raw little-endian arrays; nothing in it is ever executed
(no pickle), and every field is checked before it is used. ``save`` writes one layer, cell or wrapper as
format version 1, exactly as fusedrnn always has, so that older fusedrnn reads it; and a mapping (a
bundle: names to models, arrays and JSON metadata) as format version 2, which a fusedrnn that reads only
version 1 refuses as "written by a newer fusedrnn". ``load`` reads both: a version 1 file gives the model,
a version 2 file the mapping.

Layout (all integers little-endian)::

    magic           12 bytes   b"FUSEDRNN\\r\\n\\x1a\\n"
    format version   4 bytes   uint32: 1 (one model) or 2 (a bundle)
    header length    8 bytes   uint64
    header                     UTF-8 JSON, at most 16 MiB:
                                 version 1: {"format_version", "fusedrnn_version", "model", "tensors"}
                                 version 2: {"format_version", "fusedrnn_version", "entries", "tensors"}
    padding                    zeros up to a multiple of 64 bytes
    data                       the tensors, each at a 64-byte aligned offset (from the data's start)
    checksum        32 bytes   SHA-256 of everything before it

``model`` describes what to build -- ``{"kind": "LSTM", "dtype": "float32", "options": {...}}`` for a
layer or cell (its constructor's arguments), or a wrapper (``Reverse``, ``SumDirections``,
``WithDefaults``) around one (``"layer": {...}``). ``tensors`` lists each array, in the order of their
offsets and without overlap, as ``{"name", "dtype", "shape", "offset", "nbytes"}``: the parameters as
``params/<state_dict name>``, a ``WithDefaults``' values as ``defaults/<depth>/{h0,c0,lengths}``. A
version 1 file's dtypes are ``"<f4"``, ``"<f8"`` and ``"<i8"``, its shapes of at most 4 dimensions.

``entries`` (version 2) lists the mapping's items in its order, each ``{"name", "type", ...}``:

- ``{"name", "type": "model", "model": {...}}``: a model as above, its tensors named ``<path>/params/...``
  and ``<path>/defaults/...``;
- ``{"name", "type": "array"}``: a NumPy array, the tensor named ``<path>``; dtypes ``"<f2"``, ``"<f4"``,
  ``"<f8"``, ``"|i1"``, ``"<i2"``, ``"<i4"``, ``"<i8"``, ``"|u1"`` and ``"|b1"`` (bytes 0 and 1 only),
  shapes of at most 32 dimensions, 0-d and empty ones too;
- ``{"name", "type": "json", "value": ...}``: JSON metadata (a vocabulary, a configuration), finite
  numbers only;
- ``{"name", "type": "bundle", "entries": [...]}``: a nested mapping, at most 8 deep.

A name is 1 to 128 of the characters ``A-Z a-z 0-9 _ . -``, unique within its mapping; ``<path>`` joins
the names from the outermost mapping with ``/`` (``encoder/lstm``), so that every tensor belongs to
exactly one entry. A dict value holding (at any depth of dicts) a model or an array is saved as a nested
mapping, any other dict as JSON metadata: either way ``load`` gives back an equal dict.

A truncated, corrupted, hostile or foreign file raises ``ModelFileError`` (a ValueError) that says which;
a file from a newer format version says so. Loading allocates nothing before the sizes it implies have
been checked against the file's own size. Every header value is checked for its JSON type (a JSON object
with a key twice is refused), every tensor is used by exactly one entry, and a ``WithDefaults``' stored
state and lengths against its layer (the shapes and dtype a call accepts, lengths in [1, 2**31 - 1]), so
that a file that loads gives a model that can be called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import struct
import tempfile
from collections.abc import Mapping
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

__all__ = ["save", "load", "ModelFileError", "FORMAT_VERSION", "MODEL_VERSION", "BUNDLE_VERSION"]

MAGIC = b"FUSEDRNN\r\n\x1a\n"
MODEL_VERSION = 1  # a file holding one layer, cell or wrapper
BUNDLE_VERSION = 2  # a file holding a mapping of names to models, arrays and metadata
FORMAT_VERSION = BUNDLE_VERSION  # the newest format version this fusedrnn writes and reads
_ALIGN = 64
_PREFIX = struct.Struct("<12sIQ")
_DIGEST = 32
_MAX_HEADER = 1 << 24  # 16 MiB of JSON is far beyond any real model's description
_MAX_NESTING = 8
_MAX_JSON_DEPTH = 64  # of saved metadata: deep enough for any configuration, shallow enough to recurse
# The tensors each format version stores, by their little-endian dtype strings, and their largest rank.
_MODEL_DTYPES = {code: np.dtype(code) for code in ("<f4", "<f8", "<i8")}
_ARRAY_DTYPES = {
    np.dtype(t).newbyteorder("<").str: np.dtype(t).newbyteorder("<")
    for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_)
}
_DTYPES = {MODEL_VERSION: _MODEL_DTYPES, BUNDLE_VERSION: _ARRAY_DTYPES}
_MAX_RANK = {MODEL_VERSION: 4, BUNDLE_VERSION: 32}
_PARAM_DTYPES = ("<f4", "<f8")
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_NAME_RULE = "1 to 128 of the characters A-Z a-z 0-9 _ . -"
_ENTRY_TYPES = ("model", "array", "json", "bundle")
_ENTRY_FIELDS = {"model": {"model"}, "array": set(), "json": {"value"}, "bundle": {"entries"}}

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
    "zoneout": "float",
    "recurrent_dropout": "float",
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
        "layer_norm": "bool",
    },
    "GRU": {
        **_COMMON_LAYER,
        "linear_before_reset": "bool",
        "gate_activation": ("sigmoid", "hard_sigmoid"),
        "clip": "float",
        "layer_norm": "bool",
    },
    "RNN": {**_COMMON_LAYER, "nonlinearity": ("tanh", "relu"), "clip": "float"},
    "LSTMCell": {
        "input_size": "int",
        "hidden_size": "int",
        "bias": "bool",
        "clip": "float",
        "layer_norm": "bool",
    },
    "GRUCell": {
        "input_size": "int",
        "hidden_size": "int",
        "bias": "bool",
        "linear_before_reset": "bool",
        "clip": "float",
        "layer_norm": "bool",
    },
    "RNNCell": {
        "input_size": "int",
        "hidden_size": "int",
        "bias": "bool",
        "nonlinearity": ("tanh", "relu"),
        "clip": "float",
    },
}
# The cell options a layer's constructor takes as the StackConfig holds them (those its cell takes), in the
# order files list them; hard_gates is written as gate_activation.
_CELL_OPTIONS = ("proj_size", "peephole", "clip", "input_forget", "linear_before_reset", "layer_norm")
# Written only when not the default, so that files of models without them read in older versions too.
_OPTIONAL = {
    "LSTM": {"forget_bias", "gate_activation", "layer_norm", "zoneout", "recurrent_dropout"},
    "GRU": {"gate_activation", "clip", "layer_norm", "zoneout", "recurrent_dropout"},
    "RNN": {"clip", "zoneout", "recurrent_dropout"},
    "LSTMCell": {"clip", "layer_norm"},
    "GRUCell": {"clip", "layer_norm"},
    "RNNCell": {"clip"},
}
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
    "layer_norm",
    "zoneout",
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
        if c.zoneout:  # written only when set (see _OPTIONAL)
            options["zoneout"] = c.zoneout
        if obj.recurrent_dropout:
            options["recurrent_dropout"] = float(obj.recurrent_dropout)
        optional = _OPTIONAL.get(kind, set())
        options.update(
            {
                option: getattr(c, option)
                for option in _CELL_OPTIONS
                if option in c.kind.options and (option not in optional or getattr(c, option))
            }
        )
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
        if obj.config.clip:
            options["clip"] = obj.config.clip
        if obj.config.layer_norm:
            options["layer_norm"] = True
    else:
        raise TypeError(f"save expects a fusedrnn layer, cell or wrapper, got {v.describe(obj)}")
    for name, arr in obj.state_dict().items():
        tensors[f"params/{name}"] = arr
    return {"kind": kind, "dtype": dtype, "options": options}


_MODEL_TYPES = (RNNBase, LSTMCell, GRUCell, RNNCell, Reverse, SumDirections, WithDefaults)


def _pack(version: int, description: dict[str, Any], tensors: dict[str, np.ndarray]) -> bytes:
    """The file: prefix, header (``description`` between the versions and the tensor table), padding,
    the tensors, checksum."""
    dtypes = _DTYPES[version]
    entries = []
    offset = 0
    for name, arr in tensors.items():
        # np.ascontiguousarray makes a 0-d array 1-d: version 1 files have always stored a WithDefaults'
        # unbatched lengths so (which their readers accept), a bundle keeps every array's shape.
        arr = np.ascontiguousarray(arr) if version == MODEL_VERSION else np.asarray(arr, order="C")
        code = arr.dtype.newbyteorder("<").str
        if code not in dtypes:
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
        {"format_version": version, "fusedrnn_version": __version__, **description, "tensors": entries},
        allow_nan=False,
        separators=(",", ":"),
    ).encode()
    if len(header) > _MAX_HEADER:  # load would refuse it
        raise ValueError(
            f"save: the file's JSON header would be {len(header)} bytes, more than the {_MAX_HEADER} a file "
            "may hold; store large data as arrays rather than as metadata"
        )
    out = io.BytesIO()
    out.write(_PREFIX.pack(MAGIC, version, len(header)))
    out.write(header)
    out.write(b"\0" * (-out.tell() % _ALIGN))
    data_start = out.tell()
    for entry, arr in zip(entries, tensors.values()):
        out.write(b"\0" * (data_start + entry["offset"] - out.tell()))
        out.write(np.asarray(arr, dtype=dtypes[entry["dtype"]]).tobytes())  # tobytes: C order
    body = out.getvalue()
    return body + hashlib.sha256(body).digest()


def _encode(obj: Any) -> bytes:
    if isinstance(obj, Mapping):
        tensors: dict[str, np.ndarray] = {}
        entries = _describe_bundle(obj, "", tensors, 0)
        return _pack(BUNDLE_VERSION, {"entries": entries}, tensors)
    obj = dropin_as_layer(obj)
    if not isinstance(obj, _MODEL_TYPES):
        raise TypeError(
            "save expects a fusedrnn layer, cell or wrapper, or a mapping of names to those, NumPy arrays "
            f"and JSON metadata, got {v.describe(obj)}"
        )
    tensors = {}
    model = _describe(obj, tensors, 0)
    return _pack(MODEL_VERSION, {"model": model}, tensors)


def _entry_path(key: Any, prefix: str) -> str:
    """``prefix`` + ``key`` once ``key`` is a valid entry name."""
    inside = f" in mapping {prefix[:-1]!r}" if prefix else ""
    if not isinstance(key, str):
        raise TypeError(
            f"save: the keys of a mapping must be strings, got {key!r:.80} ({type(key).__name__}){inside}"
        )
    if not _NAME.fullmatch(key):
        raise ValueError(f"save: a key must be {_NAME_RULE}, got {key[:140]!r}{inside}")
    return prefix + key


def _holds_arrays_or_models(value: Mapping, depth: int) -> bool:
    """Whether a dict is a nested mapping of entries (it holds a model or an array among its values, at
    any depth of dicts) rather than JSON metadata."""
    if depth > _MAX_JSON_DEPTH:  # a cycle, or absurd depth: the metadata check says which
        return False
    for item in value.values():
        if isinstance(dropin_as_layer(item), (np.ndarray, *_MODEL_TYPES)):
            return True
        if isinstance(item, Mapping) and _holds_arrays_or_models(item, depth + 1):
            return True
    return False


def _describe_bundle(
    mapping: Mapping, prefix: str, tensors: dict[str, np.ndarray], depth: int
) -> list[dict[str, Any]]:
    if depth >= _MAX_NESTING:
        raise ValueError(
            f"save: mappings may be nested at most {_MAX_NESTING} deep, got deeper at {prefix[:-1]!r}"
        )
    entries: list[dict[str, Any]] = []
    for key, value in mapping.items():
        path = _entry_path(key, prefix)
        value = dropin_as_layer(value)
        if isinstance(value, _MODEL_TYPES):
            inner: dict[str, np.ndarray] = {}
            try:
                model = _describe(value, inner, 0)
            except (ValueError, TypeError) as exc:
                if type(exc) not in (ValueError, TypeError):
                    raise
                raise type(exc)(f"save: {path!r}: {str(exc).removeprefix('save: ')}") from None
            tensors.update((f"{path}/{name}", arr) for name, arr in inner.items())
            entries.append({"name": key, "type": "model", "model": model})
        elif isinstance(value, np.ndarray):
            tensors[path] = _checked_array(path, value)
            entries.append({"name": key, "type": "array"})
        elif isinstance(value, Mapping) and _holds_arrays_or_models(value, 0):
            entries.append(
                {
                    "name": key,
                    "type": "bundle",
                    "entries": _describe_bundle(value, path + "/", tensors, depth + 1),
                }
            )
        else:
            _check_metadata(value, repr(path), 0)
            entries.append({"name": key, "type": "json", "value": value})
    return entries


def _checked_array(path: str, arr: np.ndarray) -> np.ndarray:
    if isinstance(arr, np.ma.MaskedArray):
        raise TypeError(
            f"save: {path!r} is a masked array; a file stores plain arrays (np.asarray drops the mask)"
        )
    if arr.dtype.newbyteorder("<").str not in _ARRAY_DTYPES:
        raise TypeError(
            f"save: {path!r} must be an array of dtype float16, float32, float64, int8, int16, int32, int64, "
            f"uint8 or bool, got dtype {arr.dtype}"
        )
    if arr.ndim > _MAX_RANK[BUNDLE_VERSION]:
        raise ValueError(
            f"save: {path!r} must have at most {_MAX_RANK[BUNDLE_VERSION]} dimensions, got {arr.ndim}"
        )
    return arr


def _check_metadata(value: Any, where: str, depth: int) -> None:
    """Refuse what JSON would not give back as it was: other types (tuples come back as lists), keys
    that are not strings, NaN and infinities."""
    if depth > _MAX_JSON_DEPTH:
        raise ValueError(f"save: {where} nests lists and dicts more than {_MAX_JSON_DEPTH} deep")
    if value is None or type(value) in (str, bool, int):
        return
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError(
                f"save: {where} must be a finite number (JSON has no NaN or infinity), got {value}"
            )
    elif type(value) is list:
        for k, item in enumerate(value):
            _check_metadata(item, f"{where}[{k}]", depth + 1)
    elif type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(
                    f"save: the keys of {where} must be strings (JSON's are), got {v.describe(key)}"
                )
            _check_metadata(item, f"{where}[{key!r}]", depth + 1)
    else:
        hint = ""
        if isinstance(value, np.generic):
            hint = " (np.asarray(value) makes it a 0-d array, value.item() a Python number)"
        elif isinstance(value, tuple):
            hint = " (a tuple would come back as a list: pass a list)"
        elif isinstance(value, np.ndarray):
            hint = " (arrays may be values of a mapping, not items of a list)"
        what = (
            "a fusedrnn layer, cell or wrapper, a NumPy array, a mapping of those, or JSON metadata"
            if depth == 0
            else "JSON metadata"
        )
        raise TypeError(
            f"save: {where} must be {what} (dict with string keys, list, str, int, float, bool or None), "
            f"got {v.describe(value)}{hint}"
        )


def save(layer: Any, path: Any) -> None:
    """Write ``layer`` to ``path`` (a path; or a binary file object).

    ``layer``: a fusedrnn layer or cell, or one in ``Reverse``/``SumDirections``/``WithDefaults``, written
    with its configuration, dtype and weights as format version 1 (which every fusedrnn reads); or a
    mapping (a bundle, written as format version 2) of names to such models, NumPy arrays (float16/32/64,
    int8/16/32/64, uint8 or bool, any shape, stored raw and little-endian) and JSON metadata (dict with
    string keys, list, str, int, finite float, bool, None), and to nested mappings of those. A name is
    1 to 128 of the characters ``A-Z a-z 0-9 _ . -``. ``load`` gives the same mapping back, in the same
    order. Anything else raises TypeError or ValueError naming the key, before anything is written.

    The file is written whole to a temporary name beside ``path`` and then renamed, so that a crash never
    leaves half a file under the final name, and a failed save leaves an existing file as it was."""
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
            clip=options.get("clip", 0.0),
            layer_norm=options.get("layer_norm", False),
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
        options.get("layer_norm", False),
        options.get("zoneout", 0.0),
    )


class _Reader:
    """Builds what a file describes from its checked tensor table. A model's tensors are looked up under
    ``prefix`` (its entry's path and ``/`` in a bundle), and its header fields named from ``root``."""

    def __init__(
        self,
        source: str,
        data: memoryview,
        data_start: int,
        tensors: dict[str, dict[str, Any]],
        used: set[str],
        prefix: str = "",
        root: str = "model",
    ):
        self.source = source
        self.data = data
        self.data_start = data_start
        self.tensors = tensors
        self.used = used
        self.prefix = prefix
        self.root = root

    def entry(self, name: str) -> dict[str, Any] | None:
        return self.tensors.get(self.prefix + name)

    def array(self, name: str) -> np.ndarray:
        name = self.prefix + name
        entry = self.tensors[name]
        self.used.add(name)
        start = self.data_start + entry["offset"]
        dtype = _ARRAY_DTYPES[entry["dtype"]]
        arr = np.frombuffer(self.data, dtype=dtype, count=math.prod(entry["shape"]), offset=start)
        return arr.reshape(tuple(entry["shape"])).astype(dtype.newbyteorder("="))

    def build(self, spec: Any, depth: int) -> Any:
        source = self.source
        where = self.root + ".layer" * depth
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
            entry = self.entry(f"params/{name}")
            if entry is None:
                raise _fail(source, f"{where}: parameter {name} is missing")
            if tuple(entry["shape"]) != tuple(shape):
                raise _fail(
                    source,
                    f"{where}: parameter {name} has shape {tuple(entry['shape'])}, the options "
                    f"imply {tuple(shape)}",
                )
            if entry["dtype"] not in _PARAM_DTYPES:
                raise _fail(
                    source,
                    f"{where}: parameter {name} must be stored as {' or '.join(_PARAM_DTYPES)}, "
                    f"got {entry['dtype']}",
                )
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
            ("layer_norm", False),
            ("zoneout", 0.0),
            ("recurrent_dropout", 0.0),
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
            entry = self.entry(name)
            if entry is None:
                raise _fail(source, f"{where}: tensor {self.prefix + name!r} is missing")
            if entry["dtype"] != expected:
                raise _fail(
                    source,
                    f"{where}: tensor {self.prefix + name!r} must be stored as {expected} ({meaning}), "
                    f"got {entry['dtype']}",
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

    def bundle(self, entries: Any, prefix: str, depth: int, where: str) -> dict[str, Any]:
        """The mapping a bundle's ``entries`` list describes (``where`` names the list's owner), read by
        the file's top reader (prefix ""), which gives each model a reader of its own."""
        source = self.source
        if depth >= _MAX_NESTING:
            raise _fail(source, f"{where}: mappings nested more than {_MAX_NESTING} deep")
        entries = _check_type(source, f"{where}.entries", entries, list)
        out: dict[str, Any] = {}
        for k, entry in enumerate(entries):
            at = f"{where}.entries[{k}]"
            if not isinstance(entry, dict) or "name" not in entry or "type" not in entry:
                raise _fail(
                    source, f"{at} must be a JSON object with a 'name' and a 'type', got {_json(entry)}"
                )
            name = _check_type(source, f"{at}.name", entry["name"], str)
            if not _NAME.fullmatch(name):
                raise _fail(source, f"{at}.name must be {_NAME_RULE}, got {_json(name)}")
            if name in out:
                raise _fail(
                    source, f"{at}.name must be unique in its mapping, got {_json(name)} a second time"
                )
            path = prefix + name
            at = f"entry {path!r}"
            kind = _check_value(source, f"{at}.type", entry["type"], _ENTRY_TYPES)
            _expect_keys(source, at, entry, {"name", "type", *_ENTRY_FIELDS[kind]})
            if kind == "model":
                reader = _Reader(
                    source, self.data, self.data_start, self.tensors, self.used, f"{path}/", f"{at}.model"
                )
                out[name] = reader.build(entry["model"], 0)
            elif kind == "array":
                out[name] = self._bundle_array(path, at)
            elif kind == "json":
                out[name] = entry["value"]  # any JSON; the parser has refused non-finite numbers
            else:
                out[name] = self.bundle(entry["entries"], f"{path}/", depth + 1, at)
        return out

    def _bundle_array(self, path: str, where: str) -> np.ndarray:
        if path not in self.tensors:
            raise _fail(self.source, f"{where}: its tensor {path!r} is missing from header.tensors")
        arr = self.array(path)
        if arr.dtype == np.bool_ and arr.view(np.uint8).max(initial=0) > 1:
            # NumPy would take any byte for a bool, and such arrays compare inconsistently.
            raise _fail(self.source, f"{where}: tensor {path!r} is bool but holds bytes other than 0 and 1")
        return arr


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys silently: a file could say two things at once.
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(f"a JSON object has the key {_json(key)} twice")
        seen.add(key)
    return dict(pairs)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 parses as infinity, which JSON cannot hold
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def _tensor_table(source: str, entries: list, version: int) -> tuple[dict[str, dict[str, Any]], int]:
    """The checked tensor table, by name, and the data's length it implies."""
    dtypes = _DTYPES[version]
    rank = _MAX_RANK[version]
    tensors: dict[str, dict[str, Any]] = {}
    data_end = 0
    for k, entry in enumerate(entries):
        where = f"header.tensors[{k}]"
        _expect_keys(source, where, entry, {"name", "dtype", "shape", "offset", "nbytes"})
        name = _check_type(source, f"{where}.name", entry["name"], str)
        if name in tensors:
            raise _fail(source, f"{where}.name must be unique, got {_json(name)} a second time")
        if _check_type(source, f"{where}.dtype", entry["dtype"], str) not in dtypes:
            raise _fail(source, f"{where}.dtype must be one of {list(dtypes)}, got {_json(entry['dtype'])}")
        shape = _check_type(source, f"{where}.shape", entry["shape"], list)
        if len(shape) > rank or any(type(d) is not int or d < 0 for d in shape):
            raise _fail(
                source,
                f"{where}.shape must be a list of at most {rank} non-negative integers, got {_json(shape)}",
            )
        itemsize = dtypes[entry["dtype"]].itemsize
        # NumPy refuses a shape whose non-zero dimensions multiply past its index type, even with a zero.
        if math.prod(d for d in shape if d) * itemsize >= 2**63:
            raise _fail(source, f"{where}.shape {_json(shape)} is larger than any array can be")
        for key in ("offset", "nbytes"):
            _check_value(source, f"{where}.{key}", entry[key], "int")
        if entry["nbytes"] != math.prod(shape) * itemsize:
            raise _fail(source, f"{where}: nbytes {entry['nbytes']} does not match shape {shape}")
        if entry["offset"] < data_end or entry["offset"] % _ALIGN:
            raise _fail(
                source, f"{where}: offset {entry['offset']} overlaps the previous tensor or is unaligned"
            )
        data_end = entry["offset"] + entry["nbytes"]
        tensors[name] = entry
    return tensors, data_end


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
            bytes(view[_PREFIX.size : header_end]).decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except _DuplicateKey as exc:
        raise _fail(source, f"corrupted header ({exc})") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(source, f"corrupted header (not valid JSON: {str(exc)[:200]})") from None
    content = "model" if version == MODEL_VERSION else "entries"
    _expect_keys(source, "header", header, {"format_version", "fusedrnn_version", content, "tensors"})
    if _check_type(source, "header.format_version", header["format_version"], int) != version:
        raise _fail(source, "corrupted header (format versions disagree)")
    _check_type(source, "header.fusedrnn_version", header["fusedrnn_version"], str)
    table = _check_type(source, "header.tensors", header["tensors"], list)
    tensors, data_end = _tensor_table(source, table, version)
    data_start = -(-header_end // _ALIGN) * _ALIGN
    expected_size = data_start + data_end + _DIGEST
    if size < expected_size:
        raise _fail(source, f"truncated: the file has {size} bytes, its header describes {expected_size}")
    if size > expected_size:
        raise _fail(source, f"corrupted: {size - expected_size} unexpected bytes after the data")
    if hashlib.sha256(view[: size - _DIGEST]).digest() != data[size - _DIGEST :]:
        raise _fail(source, "corrupted: the checksum does not match the contents")
    used: set[str] = set()
    reader = _Reader(source, view, data_start, tensors, used)
    if version == MODEL_VERSION:
        result = reader.build(header["model"], 0)
    else:
        result = reader.bundle(header["entries"], "", 0, "header")
    unused = set(tensors) - used
    if unused:
        user = "the model does not use" if version == MODEL_VERSION else "no entry uses"
        raise _fail(source, f"the file holds tensors {user}: {sorted(unused)[:5]}")
    return result


def load(path: Any) -> Any:
    """Read a file written by ``save``. ``path``: a path, or a binary file object.

    A format version 1 file gives the fusedrnn layer, cell or wrapped layer it holds, with the saved
    configuration, dtype and weights; a version 2 file (a bundle) gives a dict, in the saved order, of
    its names to models, NumPy arrays (the saved dtype and shape, in this machine's byte order) and JSON
    metadata, nested mappings as dicts. Raises ModelFileError (a ValueError) for anything that is not an
    intact fusedrnn model file of a version this fusedrnn reads, saying what is wrong and where;
    FileNotFoundError for a missing path."""
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
