"""What each kind of recurrent cell is, in one description per kind that the rest of the package reads
instead of comparing cell names.

A ``CellKind`` holds the cell's gates (PyTorch's order), whether it carries a cell state c beside h, its
nonlinearity (the vanilla RNN's), the ``StackConfig`` options it takes, the parameter roles it may have
and their shapes, and its names in the systems fusedrnn converts to and from (PyTorch, ONNX, Keras).

``CELL_KINDS`` maps fusedrnn's cell names (``StackConfig.cell``, what the compiled stacks take) to the
descriptions; ``cell_kind`` and the ``cell_kind_from_*`` functions look one up, by fusedrnn's name or by
another system's, and raise ValueError naming the argument, the names expected and the name given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import StackConfig

__all__ = [
    "CellKind",
    "CELL_KINDS",
    "CELL_OPTIONS",
    "cell_kind",
    "cell_kind_from_torch_mode",
    "cell_kind_from_torch_class",
    "cell_kind_from_onnx",
    "cell_kind_from_keras",
]

# The StackConfig fields that only some cells take (every cell takes the others: sizes, layers, bias,
# directions, residual).
CELL_OPTIONS = (
    "proj_size",
    "peephole",
    "clip",
    "input_forget",
    "hard_gates",
    "linear_before_reset",
    "layer_norm",
)

# Parameter roles beyond the two weight matrices, each with the StackConfig field that brings it: a layer
# has the role when its cell may have it and the field is set (True, or a size > 0).
_ROLE_FIELDS = {
    "bias_ih": "bias",
    "bias_hh": "bias",
    "weight_hr": "proj_size",
    "weight_ph": "peephole",
    "ln_weight_ih": "layer_norm",
    "ln_weight_hh": "layer_norm",
    "ln_weight_c": "layer_norm",
    "ln_bias_c": "layer_norm",
}

# The layer normalization's parameters (layer_norm=True): gamma_x, gamma_h over the G*H gate rows, and
# the LSTM's gamma_c, beta_c over the H units of the cell state. They start at 1 (gains) and 0 (shift).
LAYER_NORM_ROLES = {"ln_weight_ih": 1.0, "ln_weight_hh": 1.0, "ln_weight_c": 1.0, "ln_bias_c": 0.0}


@dataclass(frozen=True)
class CellKind:
    """One kind of recurrent cell.

    name: fusedrnn's name (``StackConfig.cell``). family: the kind without its nonlinearity ("rnn",
    "lstm", "gru"), which is what gate orders and Keras tell apart. gate_names: the gate blocks of the
    weights in PyTorch's (and the kernels') order. nonlinearity: the vanilla RNN's "tanh" or "relu", None
    for the gated cells. options: the ``StackConfig`` fields among ``CELL_OPTIONS`` the cell takes.
    param_roles: every parameter role the cell may have, in PyTorch's order (``roles`` says which a
    configuration has, ``param_shapes`` with their shapes).

    The names elsewhere: torch_mode is ``torch.nn.RNNBase.mode``; torch_layer and torch_cell are
    torch.nn's class names, which fusedrnn's layers and cells (and ``fusedrnn.torch``'s modules) share;
    onnx_op is the ONNX operator, keras_layer the Keras 3 layer class.
    """

    name: str
    family: str
    gate_names: tuple[str, ...]
    has_cell_state: bool
    nonlinearity: str | None
    options: frozenset[str]
    param_roles: tuple[str, ...]
    torch_mode: str
    torch_layer: str
    torch_cell: str
    onnx_op: str
    keras_layer: str

    @property
    def gates(self) -> int:
        """G: how many gate blocks of H rows the weights and biases stack."""
        return len(self.gate_names)

    def roles(self, config: StackConfig) -> list[str]:
        """The parameter roles each layer-direction of ``config`` has, in PyTorch's order."""
        return [
            role
            for role in self.param_roles
            if role not in _ROLE_FIELDS or getattr(config, _ROLE_FIELDS[role]) > 0
        ]

    def param_shapes(self, config: StackConfig, layer: int) -> list[tuple[str, tuple[int, ...]]]:
        """(role, shape) of each parameter of one direction of ``layer`` in ``config``, in PyTorch's order
        (both directions of a layer have the same)."""
        gate_rows = self.gates * config.hidden_size
        shapes = {
            "weight_ih": (gate_rows, config.layer_input_size(layer)),
            "weight_hh": (gate_rows, config.output_size),
            "bias_ih": (gate_rows,),
            "bias_hh": (gate_rows,),
            "weight_hr": (config.proj_size, config.hidden_size),
            "weight_ph": (3 * config.hidden_size,),  # p_i, p_f, p_o
            "ln_weight_ih": (gate_rows,),
            "ln_weight_hh": (gate_rows,),
            "ln_weight_c": (config.hidden_size,),
            "ln_bias_c": (config.hidden_size,),
        }
        return [(role, shapes[role]) for role in self.roles(config)]

    def layer_parameters(self, config: StackConfig, layer: int) -> int:
        """The number of scalar parameters of one direction of ``layer`` in ``config``."""
        return sum(math.prod(shape) for _, shape in self.param_shapes(config, layer))


_RNN_OPTIONS = frozenset({"clip"})
_LSTM_OPTIONS = frozenset({"proj_size", "peephole", "clip", "input_forget", "hard_gates", "layer_norm"})
_GRU_OPTIONS = frozenset({"linear_before_reset", "hard_gates", "clip", "layer_norm"})
# What layer_norm=True combines with (the layer-normalized cells take no other option).
LAYER_NORM_COMPANIONS = frozenset({"layer_norm", "hard_gates", "linear_before_reset"})
_ROLES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _vanilla_rnn(nonlinearity: str) -> CellKind:
    return CellKind(
        name="rnn_" + nonlinearity,
        family="rnn",
        gate_names=("h",),
        has_cell_state=False,
        nonlinearity=nonlinearity,
        options=_RNN_OPTIONS,
        param_roles=_ROLES,
        torch_mode="RNN_" + nonlinearity.upper(),
        torch_layer="RNN",
        torch_cell="RNNCell",
        onnx_op="RNN",
        keras_layer="SimpleRNN",
    )


CELL_KINDS: dict[str, CellKind] = {
    kind.name: kind
    for kind in (
        _vanilla_rnn("tanh"),
        _vanilla_rnn("relu"),
        CellKind(
            name="lstm",
            family="lstm",
            gate_names=("i", "f", "g", "o"),
            has_cell_state=True,
            nonlinearity=None,
            options=_LSTM_OPTIONS,
            param_roles=(*_ROLES, "weight_hr", "weight_ph", *LAYER_NORM_ROLES),
            torch_mode="LSTM",
            torch_layer="LSTM",
            torch_cell="LSTMCell",
            onnx_op="LSTM",
            keras_layer="LSTM",
        ),
        CellKind(
            name="gru",
            family="gru",
            gate_names=("r", "z", "n"),
            has_cell_state=False,
            nonlinearity=None,
            options=_GRU_OPTIONS,
            param_roles=(*_ROLES, "ln_weight_ih", "ln_weight_hh"),
            torch_mode="GRU",
            torch_layer="GRU",
            torch_cell="GRUCell",
            onnx_op="GRU",
            keras_layer="GRU",
        ),
    )
}


def _index(names_of: Callable[[CellKind], tuple[str, ...]]) -> dict[str, tuple[CellKind, ...]]:
    """Each name ``names_of`` gives a kind -> the kinds it stands for (the RNN's names stand for both)."""
    index: dict[str, tuple[CellKind, ...]] = {}
    for kind in CELL_KINDS.values():
        for name in names_of(kind):
            index[name] = (*index.get(name, ()), kind)
    return index


# Looked up on every call of a model: dictionaries, not searches.
_BY_NAME = _index(lambda kind: (kind.name,))
_BY_TORCH_MODE = _index(lambda kind: (kind.torch_mode,))
_BY_TORCH_CLASS = _index(lambda kind: (kind.torch_layer, kind.torch_cell))
_BY_ONNX_OP = _index(lambda kind: (kind.onnx_op,))
_BY_KERAS_LAYER = _index(lambda kind: (kind.keras_layer,))


def _choices(values: Any) -> str:
    return ", ".join(repr(value) for value in values)


def _find(argument: str, value: Any, index: dict[str, tuple[CellKind, ...]]) -> tuple[CellKind, ...]:
    """The kinds ``value`` stands for in ``index``; ValueError when it is not one of its names."""
    found = index.get(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"{argument}: expected one of {_choices(index)}, got {value!r}")
    return found


def _by_nonlinearity(
    found: tuple[CellKind, ...], argument: str, value: Any, spell: Callable[[str], str] = str
) -> CellKind:
    """The kind among ``found`` (what one name stands for) whose nonlinearity, as ``spell`` writes it, is
    ``value``; a name that stands for one kind ignores ``value``."""
    if len(found) == 1:
        return found[0]
    spelled = {spell(kind.nonlinearity or ""): kind for kind in found}
    if isinstance(value, str) and value in spelled:
        return spelled[value]
    raise ValueError(f"{argument}: expected one of {_choices(spelled)}, got {value!r}")


def cell_kind(name: str) -> CellKind:
    """The kind fusedrnn calls ``name`` ("rnn_tanh", "rnn_relu", "lstm", "gru")."""
    return _find("cell", name, _BY_NAME)[0]


def cell_kind_from_torch_mode(mode: str) -> CellKind:
    """The kind of a torch.nn layer's ``mode`` ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")."""
    return _find("mode", mode, _BY_TORCH_MODE)[0]


def cell_kind_from_torch_class(class_name: str, nonlinearity: str = "tanh") -> CellKind:
    """The kind of a torch.nn (or fusedrnn) layer or cell class ("RNN", "RNNCell", "LSTM", "LSTMCell",
    "GRU", "GRUCell"); ``nonlinearity`` ("tanh" or "relu") tells the RNNs apart."""
    return _by_nonlinearity(_find("class_name", class_name, _BY_TORCH_CLASS), "nonlinearity", nonlinearity)


def cell_kind_from_onnx(op: str, activation: str = "Tanh") -> CellKind:
    """The kind of an ONNX operator ("RNN", "LSTM", "GRU"); ``activation``, the RNN's ("Tanh" or "Relu",
    as ONNX spells them), tells the RNNs apart."""
    return _by_nonlinearity(_find("op", op, _BY_ONNX_OP), "activation", activation, str.capitalize)


def cell_kind_from_keras(class_name: str, activation: str = "tanh") -> CellKind:
    """The kind of a Keras layer class ("SimpleRNN", "LSTM", "GRU"); ``activation``, the SimpleRNN's
    ("tanh" or "relu"), tells the SimpleRNNs apart."""
    return _by_nonlinearity(_find("class_name", class_name, _BY_KERAS_LAYER), "activation", activation)
