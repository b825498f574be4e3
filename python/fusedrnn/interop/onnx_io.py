"""ONNX <-> fusedrnn: ``from_onnx`` imports the LSTM, GRU and RNN nodes of a model as fusedrnn layers,
``to_onnx`` exports a layer as standard ONNX nodes, and ``call_as_onnx`` runs a layer with an ONNX node's
inputs and outputs. The ``onnx`` package is imported only when these functions are called.

``to_onnx`` writes float32 models (a float64 layer's weights are cast, with a warning: ONNX Runtime's
CPU kernels are float32 only); ``onnx_feeds`` turns a layer's call arguments into such a model's inputs
(lengths of any integer dtype as ONNX's int32); ``from_onnx`` reads a ``to_onnx`` model back as the one
layer it was written from.

ONNX's recurrent operators (opset 7 to 22) against fusedrnn's layers:

=====================  ============================================================================
ONNX                   fusedrnn
=====================  ============================================================================
W [D, G*H, I]          ``weight_ih_l0[_reverse]`` (G*H, I), gate blocks reordered: LSTM i,o,f,c ->
R [D, G*H, H]          i,f,g,o; GRU z,r,h -> r,z,n; ``weight_hh_l0[_reverse]`` likewise
B [D, 2*G*H]           ``bias_ih`` = first half, ``bias_hh`` = second half (reordered); absent: bias=False
P [D, 3*H] (LSTM)      ``weight_ph_l0[_reverse]`` with peephole=True; ONNX order i,o,f -> fusedrnn i,f,o
direction              "forward", "bidirectional": the layer; "reverse": ``Reverse(layer)``
layout 0 / 1           batch_first=False / True (states: ONNX (N, D, H) with layout 1, see call_as_onnx)
linear_before_reset    GRU(linear_before_reset=bool(value))
clip                   clip=value (LSTM, GRU, RNN)
input_forget (LSTM)    LSTM(input_forget=bool(value))
activations            the defaults only (LSTM Sigmoid,Tanh,Tanh; GRU Sigmoid,Tanh; RNN Tanh or Relu)
sequence_lens          ``lengths=``; a constant one: ``WithDefaults(layer, lengths=...)``
initial_h, initial_c   ``state=``; nonzero constants: ``WithDefaults(layer, state=...)``
=====================  ============================================================================

The gate orders come from ``gate_orders``, the one table of them that interop and the benchmark share.

Semantics: outputs past a sequence's length are zeros and Y_h/Y_c hold the state at its last valid step
(ONNX Runtime's behaviour, PyTorch's too); the reverse direction starts at each sequence's own last valid
step. A sequence of length 0 (ONNX allows it, fusedrnn's layers do not) gives zeros everywhere in
``call_as_onnx``, as in ONNX Runtime.
"""

from __future__ import annotations

import itertools
import math
import ntpath
import os
import re
import stat
import warnings
from typing import Any, NamedTuple

import numpy as np

from .. import _validation as v
from .. import layers as fr_layers
from .._cells import CELL_KINDS, CellKind, cell_kind_from_onnx
from ..cells import GRUCell, LSTMCell, RNNCell
from ..layers import RNNBase
from .gate_orders import PEEPHOLE_ORDERS, permute_blocks, reorder_gates
from .torch_convert import dropin_as_layer
from .wrappers import Reverse, SumDirections, WithDefaults, unwrap

__all__ = ["from_onnx", "to_onnx", "call_as_onnx", "onnx_feeds"]

_OPS = tuple(dict.fromkeys(kind.onnx_op for kind in CELL_KINDS.values()))
_DEFAULT_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh"), "RNN": ("tanh",)}
# Attributes this converter understands, per operator. An option the layers gain is one entry here and
# one line in _layer_options.
_KNOWN_ATTRIBUTES = {
    "LSTM": {
        "activation_alpha",
        "activation_beta",
        "activations",
        "clip",
        "direction",
        "hidden_size",
        "input_forget",
        "layout",
    },
    "GRU": {
        "activation_alpha",
        "activation_beta",
        "activations",
        "clip",
        "direction",
        "hidden_size",
        "linear_before_reset",
        "layout",
    },
    "RNN": {
        "activation_alpha",
        "activation_beta",
        "activations",
        "clip",
        "direction",
        "hidden_size",
        "layout",
    },
}
_OPSET = 14  # the first with the layout attribute; every attribute used here exists there
# The oldest onnx this module works with: to_onnx writes IR version 8 models, which onnx reads and
# checks from 1.10 on. (External data is checked here, not left to onnx: see _external_file.)
_MIN_ONNX = (1, 10)
# The AttributeProto type of each attribute the converter reads (the operators' schemas, opset 7 to 22).
_ATTRIBUTE_TYPES = {
    "activation_alpha": "FLOATS",
    "activation_beta": "FLOATS",
    "activations": "STRINGS",
    "clip": "FLOAT",
    "direction": "STRING",
    "hidden_size": "INT",
    "input_forget": "INT",
    "layout": "INT",
    "linear_before_reset": "INT",
}
# The longest sequence_lens value: ONNX's sequence_lens are int32.
_MAX_LENGTH = 2**31 - 1


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fusedrnn's ONNX import and export need the onnx package: pip install onnx"
        ) from exc
    match = re.match(r"(\d+)\.(\d+)", str(getattr(onnx, "__version__", "")))
    if match is None or (int(match[1]), int(match[2])) < _MIN_ONNX:
        wanted = ".".join(map(str, _MIN_ONNX))
        raise ImportError(
            f"fusedrnn's ONNX import and export need onnx >= {wanted}, "
            f"{getattr(onnx, '__version__', 'an unknown version')} is installed: pip install -U onnx"
        )
    return onnx


def _to_fused(a: np.ndarray, kind: CellKind) -> np.ndarray:
    """ONNX's gate blocks (rows) of ``a`` in fusedrnn's order."""
    return reorder_gates(a, kind.family, "onnx", "fusedrnn")


def _to_onnx(a: np.ndarray, kind: CellKind) -> np.ndarray:
    """fusedrnn's gate blocks (rows) of ``a`` in ONNX's order."""
    return reorder_gates(a, kind.family, "fusedrnn", "onnx")


# -- import ---------------------------------------------------------------------------------------------


def _load_model(model: Any) -> tuple[Any, str | None]:
    """(the ModelProto, the folder its external data is read from, None unless given a path)."""
    onnx = _import_onnx()
    if isinstance(model, onnx.ModelProto):
        return model, None
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model)), None
        except Exception as exc:
            raise ValueError(f"from_onnx: the bytes given are not an ONNX model: {exc}") from None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"from_onnx: no such file: {path!r}")
        try:
            # External data is read here, after its location is checked, never by onnx (onnx < 1.16
            # follows symlinks out of the model's folder).
            loaded = onnx.load(path, load_external_data=False)
        except Exception as exc:
            raise ValueError(f"from_onnx: {path!r} is not a readable ONNX model: {exc}") from None
        return loaded, os.path.dirname(os.path.abspath(path))
    raise TypeError(f"from_onnx expects a path, bytes or an onnx.ModelProto, got {v.describe(model)}")


def _constants(graph: Any) -> dict[str, Any]:
    """name -> TensorProto for the graph's initializers and Constant nodes' tensor values."""
    onnx = _import_onnx()
    out = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    out[node.output[0]] = attr.t
    return out


def _external_file(tensor: Any, base_dir: str, what: str) -> tuple[str, int, int]:
    """(file, offset, length) of a tensor's external data, after checking that the file is a regular
    file inside ``base_dir`` (symlinks followed) and the bytes inside the file."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    where = f"{what}: external data location {location!r}"
    parts = re.split(r"[/\\]", location)
    if not location or "\0" in location or os.path.isabs(location) or ntpath.isabs(location):
        raise ValueError(f"{where} must be a relative path inside the model's folder")
    if ".." in parts:
        raise ValueError(f"{where} must be a path inside the model's folder, without '..'")
    root = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, path]) != root:
        raise ValueError(f"{where} resolves to {path!r}, outside the model's folder {root!r}")
    try:
        info_stat = os.stat(path)
    except OSError:
        info_stat = None
    if info_stat is None or not stat.S_ISREG(info_stat.st_mode):
        raise ValueError(f"{where} is not a file in the model's folder")
    size = info_stat.st_size
    numbers = {}
    for key, default in (("offset", 0), ("length", None)):
        text = info.get(key)
        if text is None:
            numbers[key] = default
        elif re.fullmatch(r"[0-9]{1,20}", text):
            numbers[key] = int(text)
        else:
            raise ValueError(f"{what}: external data {key} {text!r} must be a non-negative integer")
    offset = numbers["offset"]
    if offset > size:
        raise ValueError(
            f"{what}: external data offset {offset} is beyond the end of {location!r} ({size} bytes)"
        )
    length = size - offset if numbers["length"] is None else numbers["length"]
    if offset + length > size:
        raise ValueError(
            f"{what}: external data length {length} at offset {offset} goes beyond the end of "
            f"{location!r} ({size} bytes)"
        )
    return path, offset, length


def _array(tensor: Any, what: str, base_dir: str | None = None) -> np.ndarray:
    onnx = _import_onnx()
    from onnx import numpy_helper

    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        if base_dir is None:
            raise ValueError(
                f"{what} is stored outside the model file and was not loaded: pass the model's path to "
                "from_onnx (or load it with onnx.load(path), which reads external data)"
            )
        path, offset, length = _external_file(tensor, base_dir, what)
        try:
            # O_NOFOLLOW: the checked path is already resolved, a symlink put there since is refused.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
            with os.fdopen(fd, "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError as exc:
            raise ValueError(f"{what}: its external data cannot be read from {path!r}: {exc}") from None
        loaded = onnx.TensorProto()
        loaded.CopyFrom(tensor)
        del loaded.external_data[:]
        loaded.data_location = onnx.TensorProto.DEFAULT
        loaded.raw_data = data
        tensor = loaded
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:
        raise ValueError(f"{what} cannot be read: {exc}") from None


def _attribute_value(attr: Any) -> Any:
    """What an attribute holds, whatever its type, for messages (strings as bytes)."""
    kind = attr.type
    A = type(attr)
    fields = {
        A.FLOAT: "f",
        A.INT: "i",
        A.STRING: "s",
        A.FLOATS: "floats",
        A.INTS: "ints",
        A.STRINGS: "strings",
    }
    if kind not in fields:
        return None
    value = getattr(attr, fields[kind])
    return list(value) if kind in (A.FLOATS, A.INTS, A.STRINGS) else value


def _attributes(node: Any, label: str) -> dict[str, Any]:
    """The node's attributes by name, each checked to have its ONNX type: ints, floats, str (UTF-8),
    lists of floats or of str. Unknown attributes raise NotImplementedError."""
    A = _import_onnx().AttributeProto
    names = [attr.name for attr in node.attribute]
    unknown = sorted(set(names) - _KNOWN_ATTRIBUTES[node.op_type])
    if unknown:
        raise NotImplementedError(f"{label}: attribute {', '.join(unknown)} is not supported")
    out: dict[str, Any] = {}
    for attr in node.attribute:
        name = attr.name
        if names.count(name) > 1:
            raise ValueError(f"{label}: attribute {name} is given {names.count(name)} times")
        expected = _ATTRIBUTE_TYPES[name]
        if attr.type != getattr(A, expected):
            actual = A.AttributeType.Name(attr.type) if attr.type in A.AttributeType.values() else attr.type
            shown = _attribute_value(attr)
            shown = "" if shown is None else f" ({shown!r:.80})"
            raise ValueError(f"{label}: attribute {name} must be of type {expected}, got {actual}{shown}")
        value = _attribute_value(attr)
        if expected in ("STRING", "STRINGS"):
            try:
                value = value.decode("utf-8") if expected == "STRING" else [s.decode("utf-8") for s in value]
            except UnicodeDecodeError:
                raise ValueError(f"{label}: attribute {name} must be UTF-8 text, got {value!r:.80}") from None
        if expected == "FLOATS" and not all(math.isfinite(x) for x in value):
            raise ValueError(f"{label}: attribute {name} must hold finite numbers, got {value}")
        out[name] = value
    return out


def _flag(label: str, attrs: dict[str, Any], name: str) -> bool:
    """An INT attribute that must be 0 or 1 (absent: 0)."""
    value = attrs.get(name, 0)
    if value not in (0, 1):
        raise ValueError(f"{label}: attribute {name} must be 0 or 1, got {value}")
    return bool(value)


def _float_dtype(arr: np.ndarray, what: str) -> Any:
    if arr.dtype == np.float64:
        return np.float64
    if arr.dtype in (np.float32, np.float16):
        return np.float32
    raise TypeError(f"{what} has dtype {arr.dtype}: fusedrnn computes in float32 or float64")


def _check_activations(
    family: CellKind, label: str, attrs: dict[str, Any], directions: int
) -> tuple[CellKind, bool]:
    """The node's cell kind, given the kind its operator names (``family``; an RNN's is then told by its
    nonlinearity, Tanh or Relu), and whether the gates are hard (LSTM/GRU: HardSigmoid with alpha 1/6 and
    beta 1/2 in place of Sigmoid), after checking the activations are ones the kernels compute."""
    op = family.onnx_op
    default = _DEFAULT_ACTIVATIONS[op]
    acts = attrs.get("activations")
    if acts is None:
        return family, False
    names = [str(a).lower() for a in acts]
    if len(names) != len(default) * directions:
        raise ValueError(
            f"{label}: activations={list(acts)} must list {len(default)} per direction "
            f"({len(default) * directions} for {directions} direction(s))"
        )
    per_direction = [tuple(names[k * len(default) : (k + 1) * len(default)]) for k in range(directions)]
    if family.nonlinearity is not None:  # the RNN: its one activation is the nonlinearity
        if per_direction[0][0] in ("tanh", "relu") and all(d == per_direction[0] for d in per_direction):
            return cell_kind_from_onnx(op, per_direction[0][0].capitalize()), False
        raise NotImplementedError(
            f"{label}: activations={list(acts)}: fusedrnn's RNN computes Tanh or Relu, the same in both "
            "directions"
        )
    hard = ("hardsigmoid",) + tuple(default[1:])
    if all(d == hard for d in per_direction):
        alphas = [float(a) for a in attrs.get("activation_alpha", [])]
        betas = [float(b) for b in attrs.get("activation_beta", [])]
        if (
            alphas
            and betas
            and all(abs(a - 1 / 6) < 1e-6 for a in alphas)
            and all(abs(b - 0.5) < 1e-6 for b in betas)
        ):
            return family, True
        raise NotImplementedError(
            f"{label}: HardSigmoid gates with activation_alpha={alphas}, activation_beta={betas}: fusedrnn's "
            "kernels compute the hard sigmoid with alpha 1/6 and beta 1/2 (Keras 3's) only"
        )
    if any(d != default for d in per_direction):
        raise NotImplementedError(
            f"{label}: activations={list(acts)}: fusedrnn's {op} kernels compute only the default "
            f"activations {[a.capitalize() for a in default]}"
        )
    return family, False


def _layer_options(kind: CellKind, label: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """Constructor keywords for the node's options beyond the weights' shapes."""
    options: dict[str, Any] = {}
    clip = attrs.get("clip")
    if clip is not None:
        if "clip" not in kind.options:
            raise NotImplementedError(f"{label}: clip={clip}: fusedrnn's {kind.onnx_op} has no clip")
        if not (math.isfinite(clip) and clip > 0):
            raise ValueError(f"{label}: attribute clip must be a finite positive number, got {clip}")
        # ONNX holds float32: its shortest decimal (0.9, not 0.8999999761581421), the same float32
        options["clip"] = float(str(np.float32(clip)))
    if "input_forget" in kind.options and _flag(label, attrs, "input_forget"):
        options["input_forget"] = True
    if "linear_before_reset" in kind.options:
        options["linear_before_reset"] = _flag(label, attrs, "linear_before_reset")
    return options


def _default_state(
    label: str,
    arrays: list[tuple[str, str, np.ndarray]],
    dtype: Any,
    layout: int,
    directions: int,
    hidden: int,
) -> tuple[dict[str, np.ndarray], int | None]:
    """The constant states ``[(what, input name, array)]`` checked against the node, in the layer's
    layout (D, N, H) keyed by what, and their N (None without any)."""
    order = "(N, num_directions, hidden_size)" if layout else "(num_directions, N, hidden_size)"
    batch = None
    first = ""
    out = {}
    for what, name, arr in arrays:
        n = arr.shape[1 - layout] if arr.ndim == 3 else 0
        if (
            arr.ndim != 3
            or n < 1
            or arr.shape[layout] != directions
            or arr.shape[2] != hidden
            or (batch is not None and n != batch)
        ):
            if batch is None:
                shape = f"(N, {directions}, {hidden})" if layout else f"({directions}, N, {hidden})"
                expected = f"{shape} {order} with N >= 1"
            else:
                shape = str((batch, directions, hidden) if layout else (directions, batch, hidden))
                expected = f"{shape} {order} with N={batch} as {first}"
            raise ValueError(f"{label}: {what} ({name!r}) must have shape {expected}, got {arr.shape}")
        if batch is None:
            batch, first = n, what
        arr = np.asarray(arr, dtype)
        out[what] = np.ascontiguousarray(arr.transpose(1, 0, 2)) if layout else arr
    return out, batch


class _NodeParts(NamedTuple):
    """One recurrent node read: what builds the one-layer fusedrnn layer that reproduces it."""

    kind: CellKind
    input_size: int
    hidden: int
    options: dict[str, Any]  # constructor keywords beyond input_size, hidden_size (and num_layers)
    weights: dict[str, np.ndarray]  # the "_l0" parameters
    direction: str  # forward, reverse or bidirectional
    default_state: Any  # a nonzero constant initial state, in the layer's (D, N, H) layout, or None
    lengths: np.ndarray | None  # constant sequence_lens (int64), or None


def _read_node(node: Any, constants: dict[str, Any], label: str, base_dir: str | None) -> _NodeParts:
    op = node.op_type
    family = cell_kind_from_onnx(op)  # the RNN's nonlinearity is read from the activations below
    gates = family.gates
    attrs = _attributes(node, label)
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(
            f"{label}: attribute direction must be forward, reverse or bidirectional, got {direction!r}"
        )
    layout = int(_flag(label, attrs, "layout"))
    if attrs.get("hidden_size", 1) < 1:
        raise ValueError(f"{label}: attribute hidden_size must be >= 1, got {attrs['hidden_size']}")
    inputs = list(node.input) + [""] * (8 - len(node.input))
    x_name, w_name, r_name, b_name, lens_name, h_name, c_name, p_name = inputs[:8]
    if not family.has_cell_state and (c_name or p_name):
        raise ValueError(f"{label}: a {op} node has no initial_c or P input")

    def const(name: str, what: str) -> np.ndarray | None:
        if not name:
            return None
        if name not in constants:
            return None
        return _array(constants[name], f"{label}: {what} ({name!r})", base_dir)

    w = const(w_name, "W")
    r = const(r_name, "R")
    if w is None or r is None:
        raise LookupError(f"{label}: W and R must be initializers or Constant outputs to be imported")
    b = const(b_name, "B")
    p = const(p_name, "P")
    if b_name and b is None or p_name and p is None:
        raise LookupError(f"{label}: B and P must be initializers or Constant outputs to be imported")
    dtype = _float_dtype(w, f"{label}: W")
    h0 = const(h_name, "initial_h")
    c0 = const(c_name, "initial_c")
    lens = const(lens_name, "sequence_lens")
    # ONNX gives W, R, B, P and the initial states one type T.
    typed = [
        ("R", r_name, r),
        ("B", b_name, b),
        ("P", p_name, p),
        ("initial_h", h_name, h0),
        ("initial_c", c_name, c0),
    ]
    for what, name, arr in typed:
        if arr is not None and arr.dtype != w.dtype:
            raise TypeError(f"{label}: {what} ({name!r}) must have dtype {w.dtype} (W's), got {arr.dtype}")

    directions = 2 if direction == "bidirectional" else 1
    if w.ndim != 3 or w.shape[0] != directions or w.shape[1] % gates:
        raise ValueError(
            f"{label}: W has shape {w.shape}, expected ({directions}, {gates}*hidden_size, input_size)"
        )
    hidden = w.shape[1] // gates
    if "hidden_size" in attrs and attrs["hidden_size"] != hidden:
        raise ValueError(f"{label}: hidden_size={attrs['hidden_size']} but W has shape {w.shape}")
    input_size = w.shape[2]
    expected = {
        "R": (r, (directions, gates * hidden, hidden)),
        "B": (b, (directions, 2 * gates * hidden)),
        "P": (p, (directions, 3 * hidden)),
    }
    for what, (arr, shape) in expected.items():
        if arr is not None and arr.shape != shape:
            raise ValueError(f"{label}: {what} has shape {arr.shape}, expected {shape}")
    given = [("initial_h", h_name, h0), ("initial_c", c_name, c0)]
    states, batch = _default_state(
        label, [g for g in given if g[2] is not None], dtype, layout, directions, hidden
    )
    if lens is not None:
        what = f"{label}: sequence_lens ({lens_name!r})"
        if lens.dtype.kind not in "iu":
            raise TypeError(f"{what} must hold integers, got dtype {lens.dtype}")
        if lens.ndim != 1 or len(lens) < 1:
            raise ValueError(f"{what} must be 1-D (N,) with N >= 1, got shape {lens.shape}")
        if batch is not None and lens.shape != (batch,):
            raise ValueError(
                f"{what} must have shape ({batch},), one per sequence of the initial state, got {lens.shape}"
            )
        bad = np.flatnonzero((lens < 0) | (lens > _MAX_LENGTH))
        if bad.size:
            raise ValueError(
                f"{what} must each be between 0 and {_MAX_LENGTH}, "
                f"got {lens[bad[0]].item()} at index {bad[0]}"
            )
        if (lens == 0).any():
            raise NotImplementedError(f"{label}: a constant sequence_lens with zero lengths is not supported")
        lens = lens.astype(np.int64)
    kind, hard_gates = _check_activations(family, label, attrs, directions)
    options = _layer_options(kind, label, attrs)
    if hard_gates:
        options["gate_activation"] = "hard_sigmoid"
    if "peephole" in kind.options:
        options["peephole"] = p is not None
    if kind.nonlinearity is not None:
        options["nonlinearity"] = kind.nonlinearity

    # ONNX's arrays in fusedrnn's layout, for the one-layer stack's "_l0" parameters
    weights: dict[str, np.ndarray] = {}
    for d in range(directions):
        sfx = "_l0" + ("_reverse" if d == 1 else "")
        weights["weight_ih" + sfx] = _to_fused(w[d], kind)
        weights["weight_hh" + sfx] = _to_fused(r[d], kind)
        if b is not None:
            weights["bias_ih" + sfx] = _to_fused(b[d, : gates * hidden], kind)
            weights["bias_hh" + sfx] = _to_fused(b[d, gates * hidden :], kind)
        if p is not None:
            weights["weight_ph" + sfx] = permute_blocks(
                p[d], PEEPHOLE_ORDERS["onnx"], PEEPHOLE_ORDERS["fusedrnn"]
            )
    # Constant initial states and lengths become defaults; all-zero states are what None means already.
    default_state: Any = None
    if any(s.any() for s in states.values()):
        default_state = (
            (states.get("initial_h"), states.get("initial_c")) if kind.has_cell_state else states["initial_h"]
        )
    return _NodeParts(
        kind=kind,
        input_size=input_size,
        hidden=hidden,
        # fusedrnn's layers have torch.nn's names and options
        options={
            **options,
            "batch_first": layout == 1,
            "bidirectional": directions == 2,
            "bias": b is not None,
            "dtype": dtype,
        },
        weights=weights,
        direction=direction,
        default_state=default_state,
        lengths=lens,
    )


def _convert_node(node: Any, constants: dict[str, Any], label: str, base_dir: str | None) -> Any:
    parts = _read_node(node, constants, label, base_dir)
    layer: Any = getattr(fr_layers, parts.kind.torch_layer)(parts.input_size, parts.hidden, **parts.options)
    layer.load_state_dict(parts.weights)
    result: Any = Reverse(layer) if parts.direction == "reverse" else layer
    if parts.default_state is not None or parts.lengths is not None:
        result = WithDefaults(result, state=parts.default_state, lengths=parts.lengths)
    return result


# -- a layer written by to_onnx ----------------------------------------------------------------------


def _canonical(graph: Any, base_dir: str | None) -> Any:
    """The graph with its values named by what they are (graph inputs by name and type, initializers by
    dtype, shape and bytes, node outputs by position): equal for two graphs that compute the same thing
    the same way, whatever their nodes and intermediate values are called."""
    names: dict[str, Any] = {}
    inputs = []
    for inp in graph.input:
        names[inp.name] = ("input", inp.name)
        inputs.append((inp.name, inp.type.SerializeToString()))
    for init in graph.initializer:
        arr = _array(init, f"tensor {init.name!r}", base_dir)
        names[init.name] = ("constant", arr.dtype.str, arr.shape, arr.tobytes())
    nodes = []
    for i, node in enumerate(graph.node):
        ins = tuple(names.get(x, ("unknown", x)) if x else "" for x in node.input)
        attrs = tuple(sorted(a.SerializeToString() for a in node.attribute))
        domain = "" if node.domain == "ai.onnx" else node.domain
        nodes.append((domain, node.op_type, ins, attrs, len(node.output)))
        for j, out in enumerate(node.output):
            names[out] = ("value", i, j)
    outputs = tuple((o.name, names.get(o.name), o.type.SerializeToString()) for o in graph.output)
    return tuple(inputs), tuple(nodes), outputs


def _import_layer(onnx_model: Any, constants: dict[str, Any], base_dir: str | None) -> Any:
    """The one layer (stacked, bidirectional, batch_first, residual; in Reverse / SumDirections /
    WithDefaults) whose ``to_onnx`` export the model is, or None when it is not one.

    The model must be fusedrnn's (producer_name "fusedrnn"). Its recurrent nodes, read one by one, give
    the stack's cell kind, options and per-layer weights (each node one layer: the same kind, options,
    hidden_size and direction, each taking the previous one's D*H features). Each possible stack those
    nodes describe (batch_first or not, residual or not, wrapped or not) is exported again, and the
    one whose graph equals the model's, up to the names of nodes and intermediate values, is the layer:
    what it computes is then what the model computes."""
    if onnx_model.producer_name != "fusedrnn":
        return None
    graph = onnx_model.graph
    nodes = [n for n in graph.node if n.domain in ("", "ai.onnx") and n.op_type in _OPS]
    if not nodes:
        return None
    try:
        parts = [_read_node(n, constants, f"{n.op_type} node", base_dir) for n in nodes]
    except (LookupError, ValueError, TypeError, NotImplementedError):
        return None
    first = parts[0]
    directions = 2 if first.direction == "bidirectional" else 1
    same = (first.kind, first.hidden, first.options, first.direction, first.default_state is None)
    for k, part in enumerate(parts):
        if (part.kind, part.hidden, part.options, part.direction, part.default_state is None) != same:
            return None
        if k and part.input_size != directions * first.hidden:
            return None
        if (part.lengths is None) != (first.lengths is None) or (
            part.lengths is not None and not np.array_equal(part.lengths, first.lengths)
        ):
            return None
    if first.default_state is not None or first.options["batch_first"]:
        return None  # to_onnx slices the states of a stack, and writes time-major nodes
    input_names = [i.name for i in graph.input]
    producers = {out: n for n in graph.node for out in n.output}

    def sliced_constant(index: int) -> np.ndarray | None:
        """The constant array whose rows the first node's input ``index`` (initial_h or _c) slices."""
        name = nodes[0].input[index] if len(nodes[0].input) > index else ""
        node = producers.get(name)
        if node is None or node.op_type != "Slice" or node.input[0] not in constants:
            return None
        return _array(constants[node.input[0]], f"tensor {node.input[0]!r}", base_dir)

    lstm = first.kind.has_cell_state  # the state is (h, c)
    default_state: Any = None
    try:
        if "h0" not in input_names:
            h0 = sliced_constant(5)
            c0 = sliced_constant(6) if lstm else None
            if h0 is not None or c0 is not None:
                default_state = (h0, c0) if lstm else h0
        target = _canonical(graph, base_dir)
    except ValueError:  # an unreadable tensor: the nodes are imported one by one, which say what it is
        return None
    ops = {n.op_type for n in graph.node}
    batch_first = any(n.op_type == "Transpose" and list(n.input) == ["input"] for n in graph.node)
    options = {**first.options, "batch_first": batch_first}
    for residual, processing, summed in itertools.product(
        [False, True] if len(nodes) > 1 and "Add" in ops else [False],
        [False, True] if first.direction == "reverse" else [False],
        [False, True] if directions == 2 and "Add" in ops else [False],
    ):
        try:
            layer: Any = getattr(fr_layers, first.kind.torch_layer)(
                first.input_size, first.hidden, num_layers=len(nodes), residual=residual, **options
            )
            config = layer.config
            weights = {}
            for k, part in enumerate(parts):
                for d in range(directions):
                    for role, name in config.layer_param_names(k, d).items():
                        weights[name] = part.weights[role + "_l0" + ("_reverse" if d else "")]
            layer.load_state_dict(weights)
            result: Any = layer
            if first.direction == "reverse":
                result = Reverse(result, order="processing" if processing else "original")
            if summed:
                result = SumDirections(result)
            if default_state is not None or first.lengths is not None:
                result = WithDefaults(result, state=default_state, lengths=first.lengths)
            again = _export(result, None, "h0" in input_names, "lengths" in input_names, keep_float64=True)
        except Exception:  # noqa: BLE001 - no such layer (or no export of it): not this candidate
            continue
        if _canonical(again.graph, None) == target:
            return result
    return None


def from_onnx(model: Any) -> dict[str, Any]:
    """Import every LSTM, GRU and RNN node of an ONNX model whose weights (W, R, and B, P when present)
    are initializers (or Constant outputs), as ``{node name, or its first output's name: layer}``.

    ``model``: a path, the serialized bytes, or an ``onnx.ModelProto``. Each value is a fusedrnn layer
    configured to reproduce the node (see the module docstring for the mapping), wrapped in ``Reverse``
    for ``direction="reverse"`` and in ``WithDefaults`` when initial states or lengths are nonzero
    constants. ``call_as_onnx(layer, X, ...)`` runs it with the node's own input and output layouts.
    Options the kernels do not compute (activations other than the defaults; constant zero lengths)
    raise NotImplementedError naming the attribute. A malformed node (an attribute of the wrong ONNX
    type or out of range, arrays of the wrong shape) raises ValueError, and arrays of the wrong dtype
    TypeError, naming the node, the attribute or input, the expected and the actual. Nodes whose weights
    are graph inputs are skipped with a warning; a model with no importable node raises ValueError.

    External data (a model given by its path) is read by fusedrnn, not onnx, and only from regular files
    inside the model's folder (after following symlinks), within the file's size; anything else raises
    ValueError before any external data is read. Needs onnx >= 1.10.

    A model written by ``to_onnx`` for a layer (a stack of one node per layer, bidirectional, batch_first,
    residual; in ``Reverse`` / ``SumDirections`` / ``WithDefaults``) reads back as that one layer, keyed
    by its first recurrent node: the same class, num_layers, bidirectional, batch_first and options, the
    same call and outputs (float32: to_onnx writes float32). It is recognised by its graph being exactly
    what to_onnx writes for the layer its nodes describe, up to names; any other graph (a to_onnx model
    edited since, a cell's model) imports node by node as above.
    """
    onnx_model, base_dir = _load_model(model)
    graph = onnx_model.graph
    constants = _constants(graph)
    if base_dir is not None:  # every location checked before any external data is read
        external = _import_onnx().TensorProto.EXTERNAL
        for name, tensor in constants.items():
            if tensor.data_location == external:
                _external_file(tensor, base_dir, f"from_onnx: tensor {name!r}")
    whole = _import_layer(onnx_model, constants, base_dir)
    if whole is not None:
        first = next(n for n in graph.node if n.domain in ("", "ai.onnx") and n.op_type in _OPS)
        return {first.name or first.output[0]: whole}
    layers: dict[str, Any] = {}
    skipped = []
    seen_ops = []
    for index, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in _OPS:
            continue
        seen_ops.append(node.op_type)
        outputs = [o for o in node.output if o]
        key = node.name or (outputs[0] if outputs else f"{node.op_type}_{index}")
        label = f"{node.op_type} node {key!r}"
        try:
            layer = _convert_node(node, constants, label, base_dir)
        except LookupError as exc:
            skipped.append(str(exc))
            continue
        if key in layers:
            raise ValueError(f"from_onnx: two recurrent nodes are both called {key!r}")
        layers[key] = layer
    if skipped and layers:
        warnings.warn("from_onnx skipped: " + "; ".join(skipped), UserWarning, stacklevel=2)
    if not layers:
        if skipped:
            raise ValueError("from_onnx: no importable LSTM, GRU or RNN node: " + "; ".join(skipped))
        raise ValueError("from_onnx: the model's graph has no LSTM, GRU or RNN node")
    return layers


# -- running with ONNX's layouts ----------------------------------------------------------------------


def call_as_onnx(
    layer: Any,
    X: Any,
    sequence_lens: Any = None,
    initial_h: Any = None,
    initial_c: Any = None,
) -> tuple[np.ndarray, ...]:
    """Run a one-layer fusedrnn layer (as ``from_onnx`` returns it) with an ONNX node's inputs and
    outputs: X (T, N, I), or (N, T, I) when the layer is batch_first (the node's layout=1);
    initial_h/initial_c (D, N, H), or (N, D, H) for layout=1. Returns (Y, Y_h) or (Y, Y_h, Y_c) for an
    LSTM: Y (T, D, N, H) / layout 1 (N, T, D, H), Y_h and Y_c like initial_h. sequence_lens may hold
    zeros: those sequences give zeros, as in ONNX Runtime."""
    inner = unwrap(layer)
    if not isinstance(inner, RNNBase) or inner.num_layers != 1:
        raise TypeError(f"call_as_onnx runs a one-layer fusedrnn layer, got {v.describe(layer)}")
    if isinstance(layer, SumDirections) or (isinstance(layer, Reverse) and layer.order != "original"):
        raise TypeError(
            "call_as_onnx: the layer's outputs are not an ONNX node's (SumDirections / processing order)"
        )
    lstm = inner.config.has_cell_state  # the state is (h, c)
    layout = 1 if inner.batch_first else 0
    x = v.as_real_array("X", X)
    if x.ndim != 3:
        raise ValueError(f"X must be 3-D ({'(N, T, I)' if layout else '(T, N, I)'}), got shape {x.shape}")
    steps, batch = (x.shape[1], x.shape[0]) if layout else (x.shape[0], x.shape[1])

    def state_in(s: Any, name: str) -> np.ndarray | None:
        if s is None:
            return None
        arr = v.as_real_array(name, s)
        if arr.ndim != 3:
            raise ValueError(f"{name} must be 3-D, got shape {arr.shape}")
        return np.ascontiguousarray(arr.transpose(1, 0, 2)) if layout else arr

    h0 = state_in(initial_h, "initial_h")
    c0 = state_in(initial_c, "initial_c")
    zero = None
    lens = None
    if sequence_lens is not None:
        lens = np.asarray(v.to_numpy(sequence_lens))
        if lens.shape != (batch,) or lens.dtype.kind not in "iu":
            raise ValueError(
                f"sequence_lens must be an integer array of shape ({batch},), got {v.describe(lens)}"
            )
        if (lens < 0).any() or (lens > steps).any():
            raise ValueError(f"sequence_lens must be between 0 and T={steps}, got {lens.tolist()}")
        zero = lens == 0
        lens = np.where(zero, 1, lens).astype(np.int64)
        if not zero.any():
            zero = None
    if lstm:
        state = None if h0 is None and c0 is None else (h0, c0)
    else:
        state = h0
    y, new_state = layer(x, state, lens)
    h_n, c_n = new_state if lstm else (new_state, None)
    directions = 2 if inner.bidirectional else 1
    hidden = inner.config.output_size
    if layout:
        y4 = y.reshape(batch, steps, directions, hidden)
    else:
        y4 = y.reshape(steps, batch, directions, hidden).transpose(0, 2, 1, 3)
    y4 = np.ascontiguousarray(y4)
    outs = [y4, h_n] + ([c_n] if lstm else [])
    if zero is not None:
        if layout:
            outs[0][zero] = 0
        else:
            outs[0][:, :, zero] = 0
        for s in outs[1:]:
            s[:, zero] = 0
    if layout:
        outs[1:] = [np.ascontiguousarray(s.transpose(1, 0, 2)) for s in outs[1:]]
    return tuple(outs)


# -- running a to_onnx model --------------------------------------------------------------------------


def _int32_lengths(value: Any, what: str = "lengths") -> np.ndarray:
    """Lengths of any integer dtype as the int32 array ONNX's sequence_lens is (ONNX Runtime refuses
    int64 there); a value outside int32's range [0, 2**31 - 1] raises ValueError naming ``what``."""
    arr = np.asarray(v.to_numpy(value))
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integers, got {v.describe(value)}")
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, one length per sequence (N,), got shape {arr.shape}")
    bad = np.flatnonzero((arr < 0) | (arr > _MAX_LENGTH))
    if bad.size:
        raise ValueError(
            f"{what} must each be between 0 and {_MAX_LENGTH} (ONNX's sequence_lens are int32), "
            f"got {arr[bad[0]].item()} at index {bad[0]}"
        )
    return np.ascontiguousarray(arr.astype(np.int32))


def onnx_feeds(input: Any, state: Any = None, lengths: Any = None, *, dtype: Any = np.float32) -> dict:
    """The inputs of a model written by ``to_onnx``, as ONNX Runtime's ``InferenceSession.run`` takes
    them: ``{"input": ..., "h0": ..., "c0": ..., "lengths": ...}``, given the layer's call arguments.

    ``input`` and ``state`` (h0, or (h0, c0) for an LSTM; the layer's layouts) are cast to ``dtype``,
    the model's: float32 (to_onnx writes float32 models, also for float64 layers). ``lengths`` of any
    integer dtype (int64 included, NumPy's default) become int32, ONNX's sequence_lens type, which ONNX
    Runtime insists on; a length outside int32's range raises ValueError naming ``lengths``. Give state
    and lengths only when the model was written with ``state=True`` / ``lengths=True``."""
    feeds = {"input": np.ascontiguousarray(v.as_real_array("input", input), dtype)}
    if state is not None:
        h0, c0 = state if isinstance(state, tuple) else (state, None)
        for name, s in (("h0", h0), ("c0", c0)):
            if s is not None:
                feeds[name] = np.ascontiguousarray(v.as_real_array(name, s), dtype)
    if lengths is not None:
        feeds["lengths"] = _int32_lengths(lengths)
    return feeds


# -- export ---------------------------------------------------------------------------------------------


class _GraphBuilder:
    def __init__(self, elem_type: int, np_dtype: Any) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.elem_type = elem_type
        self.np_dtype = np_dtype
        self._count = 0

    def name(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def const(self, base: str, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(base)
        if arr.dtype.kind == "f":  # weights and states in the model's dtype
            arr = arr.astype(self.np_dtype, copy=False)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(
        self, op: str, inputs: list[str], n_outputs: int = 1, base: str | None = None, **attrs: Any
    ) -> Any:
        from onnx import helper

        outputs = [self.name(base or op.lower()) for _ in range(n_outputs)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=self.name(op), **attrs))
        return outputs if n_outputs > 1 else outputs[0]


def _layer_state(g: _GraphBuilder, state: str, lo: int, hi: int, base: str) -> str:
    """Rows [lo, hi) (one layer's directions) of an initial-state graph value, or "" without one."""
    if not state:
        return ""
    bounds = [g.const("lo", np.array([lo])), g.const("hi", np.array([hi])), g.const("axis", np.array([0]))]
    return g.node("Slice", [state, *bounds], base=base)


def _recurrent_nodes(
    g: _GraphBuilder,
    inner: RNNBase,
    x: str,
    lengths: str,
    h0: str,
    c0: str,
    reverse: bool,
) -> tuple[str, list[str], list[str]]:
    """One ONNX node per layer over time-major x; returns (y (T, N, D*H), [Y_h per layer], [Y_c])."""
    c = inner.config
    kind = c.kind
    op = kind.onnx_op
    if c.proj_size:
        raise ValueError("to_onnx: ONNX's LSTM has no projection (proj_size); this layer cannot be exported")
    hidden, directions = c.hidden_size, c.num_directions
    params = inner.state_dict()
    direction = "bidirectional" if directions == 2 else ("reverse" if reverse else "forward")
    attrs: dict[str, Any] = {"hidden_size": hidden, "direction": direction}
    if "linear_before_reset" in kind.options:
        attrs["linear_before_reset"] = int(c.linear_before_reset)
    if kind.nonlinearity == "relu":  # Tanh is ONNX's default
        attrs["activations"] = ["Relu"] * directions
    if c.hard_gates:  # the gates' activation comes first, the others stay ONNX's defaults
        acts = ["HardSigmoid"] + [a.capitalize() for a in _DEFAULT_ACTIVATIONS[op][1:]]
        attrs["activations"] = acts * directions
        # alpha and beta at every position: runtimes that hand them out per activation and those that
        # hand them out only to the activations that take them both give HardSigmoid 1/6 and 1/2.
        attrs["activation_alpha"] = [1 / 6] * len(acts) * directions
        attrs["activation_beta"] = [0.5] * len(acts) * directions
    if c.clip:
        attrs["clip"] = float(c.clip)
    if c.input_forget:
        attrs["input_forget"] = 1
    hs, cs = [], []
    cur = x
    for k in range(c.num_layers):
        names = [c.layer_param_names(k, d) for d in range(directions)]
        w = np.stack([_to_onnx(params[n["weight_ih"]], kind) for n in names])
        r = np.stack([_to_onnx(params[n["weight_hh"]], kind) for n in names])
        ins = [cur, g.const(f"W_l{k}", w), g.const(f"R_l{k}", r)]
        if c.bias:
            b = np.stack(
                [
                    np.concatenate(
                        [
                            _to_onnx(params[n["bias_ih"]], kind),
                            _to_onnx(params[n["bias_hh"]], kind),
                        ]
                    )
                    for n in names
                ]
            )
            ins.append(g.const(f"B_l{k}", b))
        else:
            ins.append("")
        ins.append(lengths)
        lo, hi = k * directions, (k + 1) * directions
        ins.append(_layer_state(g, h0, lo, hi, f"h0_l{k}"))
        if kind.has_cell_state:  # ONNX's LSTM inputs: initial_c, then the peepholes P
            ins.append(_layer_state(g, c0, lo, hi, f"c0_l{k}"))
            if c.peephole:
                p = np.stack([params[n["weight_ph"]] for n in names])
                p = permute_blocks(p, PEEPHOLE_ORDERS["fusedrnn"], PEEPHOLE_ORDERS["onnx"], axis=1)
                ins.append(g.const(f"P_l{k}", p))
        while ins and ins[-1] == "":
            ins.pop()
        n_out = 3 if kind.has_cell_state else 2  # Y, Y_h (, Y_c)
        outs = g.node(op, ins, n_out, base=f"{op.lower()}_l{k}", **attrs)
        y4 = g.node("Transpose", [outs[0]], perm=[0, 2, 1, 3])  # (T, D, N, H) -> (T, N, D, H)
        y = g.node("Reshape", [y4, g.const("shape", np.array([0, 0, directions * hidden]))], base=f"y_l{k}")
        if c.residual and k > 0:
            y = g.node("Add", [y, cur], base=f"res_l{k}")
        hs.append(outs[1])
        if kind.has_cell_state:
            cs.append(outs[2])
        cur = y
    return cur, hs, cs


def to_onnx(layer: Any, path: Any = None, *, state: bool = False, lengths: bool = False) -> Any:
    """Export a fusedrnn layer (LSTM, GRU, RNN: stacked, bidirectional, batch_first, residual, clip, LSTM
    peepholes / input_forget, reset-before GRU), a cell, or a layer in ``Reverse`` /
    ``SumDirections`` / ``WithDefaults`` as a standard ONNX model (opset 14) with one ONNX LSTM/GRU/RNN
    node per layer; saved to ``path`` when given; returns the ``onnx.ModelProto``.

    The model's interface is the layer's call, time-major unless batch_first: input ``input`` (T, N, I);
    with ``state=True`` also ``h0`` (D*L, N, H_out) and, for an LSTM, ``c0`` (D*L, N, H); with
    ``lengths=True`` also ``lengths`` (N,) int32 (each in [1, T]). Outputs ``output`` (T, N, D*H_out),
    ``h_n``, and ``c_n`` for an LSTM. A cell's model maps ``input`` (N, I) (and ``h0``/``c0`` (N, H)
    with ``state=True``) to ``h1`` (and ``c1``). Dropout is not exported (inference). A projected LSTM
    (proj_size) raises ValueError: ONNX's LSTM has no projection, nor its LSTM and GRU a layer
    normalization (layer_norm), nor any of them zoneout; recurrent dropout, like dropout, acts in
    training only and is left out. ``onnx_feeds`` builds the inputs.

    A float64 layer is written as a float32 model, with a UserWarning saying so: ONNX Runtime's CPU
    LSTM, GRU and RNN kernels compute in float32 only (a float64 model loads there but does not run), so
    the weights (and constant states) are rounded to float32 and the model takes and returns float32;
    its outputs match the layer's within float32 rounding. The layer itself is not changed.

    A ``fusedrnn.torch`` module is exported as the fusedrnn layer ``from_torch`` makes of it.

    ``from_onnx`` reads the model back as this one layer (see there).
    """
    return _export(dropin_as_layer(layer), path, state, lengths, keep_float64=False)


def _export(layer: Any, path: Any, state: bool, lengths: bool, keep_float64: bool) -> Any:
    """to_onnx; ``keep_float64``: a float64 layer as a float64 model (what to_onnx wrote before it cast
    to float32), without a warning. Warnings name to_onnx's caller."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper

    wrappers = []
    obj = layer
    while isinstance(obj, (Reverse, SumDirections, WithDefaults)):
        wrappers.append(obj)
        obj = obj.layer
    inner = obj
    if not isinstance(inner, (RNNBase, LSTMCell, GRUCell, RNNCell)):
        raise TypeError(f"to_onnx exports a fusedrnn layer or cell, got {v.describe(layer)}")
    if inner.config.layer_norm:
        raise ValueError(
            f"to_onnx: ONNX's {inner.config.kind.onnx_op} has no layer normalization, got layer_norm=True"
        )
    if inner.config.zoneout:
        raise ValueError(
            f"to_onnx: ONNX's {inner.config.kind.onnx_op} has no zoneout (a call mixes each unit's previous "
            f"state in), got zoneout={inner.config.zoneout}"
        )
    np_dtype = np.dtype(inner.dtype)
    if np_dtype == np.float64 and not keep_float64:
        warnings.warn(
            "to_onnx: the layer's float64 weights were cast to float32: the ONNX model is float32 (its "
            "inputs and outputs too), since ONNX Runtime's CPU LSTM, GRU and RNN kernels compute in "
            "float32 only",
            UserWarning,
            stacklevel=3,
        )
        np_dtype = np.dtype(np.float32)
    elem = TensorProto.DOUBLE if np_dtype == np.float64 else TensorProto.FLOAT
    g = _GraphBuilder(elem, np_dtype)
    if not isinstance(inner, RNNBase):
        if wrappers:
            raise TypeError("to_onnx: a cell cannot be wrapped")
        return _export_cell(g, inner, path, state)
    c = inner.config
    lstm = c.has_cell_state  # the state is (h, c)
    reverse = any(isinstance(w, Reverse) for w in wrappers)
    processing_order = any(isinstance(w, Reverse) and w.order == "processing" for w in wrappers)
    summed = any(isinstance(w, SumDirections) for w in wrappers)
    default_state = next(
        (w.state for w in wrappers if isinstance(w, WithDefaults) and w.state is not None), None
    )
    default_lengths = next(
        (w.lengths for w in wrappers if isinstance(w, WithDefaults) and w.lengths is not None), None
    )
    lead = c.num_layers * c.num_directions
    seq = ["N", "T", c.input_size] if inner.batch_first else ["T", "N", c.input_size]
    graph_inputs = [helper.make_tensor_value_info("input", elem, seq)]
    x = "input"
    if inner.batch_first:
        x = g.node("Transpose", ["input"], perm=[1, 0, 2], base="x_time_major")
    h0 = c0 = ""
    if state:
        graph_inputs.append(helper.make_tensor_value_info("h0", elem, [lead, "N", c.output_size]))
        h0 = "h0"
        if lstm:
            graph_inputs.append(helper.make_tensor_value_info("c0", elem, [lead, "N", c.hidden_size]))
            c0 = "c0"
    elif default_state is not None:
        hs0, cs0 = default_state if lstm else (default_state, None)
        h0 = g.const("h0", np.asarray(hs0, np_dtype)) if hs0 is not None else ""
        c0 = g.const("c0", np.asarray(cs0, np_dtype)) if cs0 is not None else ""
    lens = ""
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["N"]))
        lens = "lengths"
    elif default_lengths is not None:
        lens = g.const("lengths", _int32_lengths(default_lengths, "to_onnx: the default lengths"))
    y, hs, cs = _recurrent_nodes(g, inner, x, lens, h0, c0, reverse)
    if processing_order:  # Keras go_backwards: outputs in the order the steps ran
        if lens:
            lens64 = g.node("Cast", [lens], to=TensorProto.INT64)
            y = g.node("ReverseSequence", [y, lens64], batch_axis=1, time_axis=0)
        else:
            big = np.iinfo(np.int64).max
            y = g.node(
                "Slice",
                [
                    y,
                    g.const("s", np.array([-1])),
                    g.const("e", np.array([-big])),
                    g.const("a", np.array([0])),
                    g.const("st", np.array([-1])),
                ],
            )
    if summed:
        h = c.output_size
        fwd = g.node(
            "Slice",
            [y, g.const("s", np.array([0])), g.const("e", np.array([h])), g.const("a", np.array([2]))],
        )
        bwd = g.node(
            "Slice",
            [y, g.const("s", np.array([h])), g.const("e", np.array([2 * h])), g.const("a", np.array([2]))],
        )
        y = g.node("Add", [fwd, bwd])
    features = c.output_size if summed else c.num_directions * c.output_size
    if inner.batch_first:
        g.nodes.append(helper.make_node("Transpose", [y], ["output"], perm=[1, 0, 2], name="to_batch_first"))
        out_shape = ["N", "T", features]
    else:
        g.nodes.append(helper.make_node("Identity", [y], ["output"], name="output"))
        out_shape = ["T", "N", features]
    graph_outputs = [helper.make_tensor_value_info("output", elem, out_shape)]
    for name, parts, size in (("h_n", hs, c.output_size), ("c_n", cs, c.hidden_size)):
        if not parts:
            continue
        if len(parts) == 1:
            g.nodes.append(helper.make_node("Identity", parts, [name], name=name))
        else:
            g.nodes.append(helper.make_node("Concat", parts, [name], axis=0, name=name))
        graph_outputs.append(helper.make_tensor_value_info(name, elem, [lead, "N", size]))
    return _finish(onnx, g, graph_inputs, graph_outputs, path, repr(layer))


def _export_cell(g: _GraphBuilder, cell: Any, path: Any, state: bool) -> Any:
    onnx = _import_onnx()
    from onnx import helper

    kind = cell.config.kind
    lstm = kind.has_cell_state  # the state is (h, c)
    kwargs: dict[str, Any] = dict(bias=cell.bias, clip=cell.config.clip, dtype=cell.dtype)
    if "linear_before_reset" in kind.options:
        kwargs["linear_before_reset"] = cell.linear_before_reset
    if kind.nonlinearity is not None:
        kwargs["nonlinearity"] = kind.nonlinearity
    as_layer = getattr(fr_layers, kind.torch_layer)(cell.input_size, cell.hidden_size, **kwargs)
    as_layer.load_state_dict({k + "_l0": a for k, a in cell.state_dict().items()})
    elem = g.elem_type
    graph_inputs = [helper.make_tensor_value_info("input", elem, ["N", cell.input_size])]
    axis0 = g.const("axis", np.array([0]))
    x = g.node("Unsqueeze", ["input", axis0])
    h0 = c0 = ""
    if state:
        graph_inputs.append(helper.make_tensor_value_info("h0", elem, ["N", cell.hidden_size]))
        h0 = g.node("Unsqueeze", ["h0", axis0])
        if lstm:
            graph_inputs.append(helper.make_tensor_value_info("c0", elem, ["N", cell.hidden_size]))
            c0 = g.node("Unsqueeze", ["c0", axis0])
    _, hs, cs = _recurrent_nodes(g, as_layer, x, "", h0, c0, False)
    graph_outputs = []
    for name, parts in (("h1", hs), ("c1", cs)):
        if parts:
            g.nodes.append(helper.make_node("Squeeze", [parts[0], axis0], [name], name=name))
            graph_outputs.append(helper.make_tensor_value_info(name, elem, ["N", cell.hidden_size]))
    return _finish(onnx, g, graph_inputs, graph_outputs, path, repr(cell))


def _finish(onnx: Any, g: _GraphBuilder, inputs: list[Any], outputs: list[Any], path: Any, doc: str) -> Any:
    from onnx import helper

    graph = helper.make_graph(
        g.nodes, "fusedrnn", inputs, outputs, initializer=g.initializers, doc_string=doc
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="fusedrnn"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
