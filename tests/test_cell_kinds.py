"""The cell descriptions (``fusedrnn._cells``) against facts that do not come from them: torch.nn's
parameters and modes, the gate-order table, the compiled stacks' parameter shapes and options, the public
layers' constructors, the ONNX operator schemas and Keras' layer classes; and their lookups."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import os

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import _core
from fusedrnn._cells import (
    CELL_KINDS,
    CELL_OPTIONS,
    cell_kind,
    cell_kind_from_keras,
    cell_kind_from_onnx,
    cell_kind_from_torch_class,
    cell_kind_from_torch_mode,
)
from fusedrnn._config import CELLS, GATES, StackConfig
from fusedrnn.interop.gate_orders import GATE_ORDERS

KINDS = list(CELL_KINDS.values())
KIND_IDS = list(CELL_KINDS)

# What each cell is, written out here rather than read from the descriptions.
NONLINEARITY = {"rnn_tanh": "tanh", "rnn_relu": "relu", "lstm": None, "gru": None}
PUBLIC_LAYER = {"rnn_tanh": fr.RNN, "rnn_relu": fr.RNN, "lstm": fr.LSTM, "gru": fr.GRU}
PUBLIC_CELL = {"rnn_tanh": fr.RNNCell, "rnn_relu": fr.RNNCell, "lstm": fr.LSTMCell, "gru": fr.GRUCell}
# A value that sets each option (linear_before_reset is set by default; False is the other form).
SET_VALUES = {
    "proj_size": 3,
    "peephole": True,
    "clip": 0.5,
    "input_forget": True,
    "hard_gates": True,
    "linear_before_reset": False,
    "layer_norm": True,
}
# The only option the layer-normalized cells combine with (the GRU's in its linear-before-reset form).
LAYER_NORM_COMBINES_WITH = {"hard_gates"}
# The constructor keyword of each option, where it is not the option's own name.
KEYWORDS = {"hard_gates": "gate_activation"}
# The options the one-step cells (fr.RNNCell, ...) take: ONNX's clip on every cell, and the GRU's form.
CELL_KEYWORDS = {
    "rnn_tanh": {"clip"},
    "rnn_relu": {"clip"},
    "lstm": {"clip", "layer_norm"},
    "gru": {"clip", "linear_before_reset", "layer_norm"},
}


def compiled_shapes(config: StackConfig) -> list[tuple[int, ...]]:
    """The parameter shapes the compiled float32 stack for ``config`` reports."""
    stack = _core.stacks["float32"](_core.StackConfig(**dataclasses.asdict(config)))
    return [tuple(shape) for shape in stack.param_shapes()]


def option_sets(kind) -> list[dict]:
    """Every valid combination of the options ``kind`` takes, each at its default or set."""
    options = sorted(kind.options)
    sets = [
        {option: SET_VALUES[option] for option, on in zip(options, chosen) if on}
        for chosen in itertools.product([False, True], repeat=len(options))
    ]
    return [s for s in sets if "layer_norm" not in s or set(s) - {"layer_norm"} <= LAYER_NORM_COMBINES_WITH]


# -- the registry -------------------------------------------------------------------------------------


def test_registry_names_and_config_tables():
    assert list(CELL_KINDS) == ["rnn_tanh", "rnn_relu", "lstm", "gru"]
    assert all(name == kind.name for name, kind in CELL_KINDS.items())
    assert CELLS == ("rnn_tanh", "rnn_relu", "lstm", "gru")
    assert GATES == {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
    assert {kind.name: kind.nonlinearity for kind in KINDS} == NONLINEARITY
    for kind in KINDS:
        assert kind.options <= set(CELL_OPTIONS)
        assert StackConfig(kind.name, 3, 4).kind is kind


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_gate_names_are_the_gate_order_tables(kind):
    orders = GATE_ORDERS[kind.family]
    assert kind.gate_names == orders["fusedrnn"] == orders["torch"]
    assert kind.gates == len(orders["fusedrnn"])


def test_families_are_the_gate_order_tables_keys():
    assert {kind.family for kind in KINDS} == set(GATE_ORDERS)


# -- against torch.nn ---------------------------------------------------------------------------------


def torch_layer(torch, name: str, **kwargs):
    """torch.nn's layer for the cell fusedrnn calls ``name``, chosen here and not by the description."""
    nn = torch.nn
    if name == "lstm":
        return nn.LSTM(**kwargs)
    if name == "gru":
        return nn.GRU(**kwargs)
    return nn.RNN(nonlinearity=NONLINEARITY[name], **kwargs)


def torch_cell(torch, name: str, **kwargs):
    nn = torch.nn
    if name == "lstm":
        return nn.LSTMCell(**kwargs)
    if name == "gru":
        return nn.GRUCell(**kwargs)
    return nn.RNNCell(nonlinearity=NONLINEARITY[name], **kwargs)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_parameters_and_names_are_torch_layers(kind, num_layers, bidirectional, bias):
    torch = pytest.importorskip("torch")
    sizes = dict(input_size=3, hidden_size=5, num_layers=num_layers, bias=bias, bidirectional=bidirectional)
    # torch.nn takes proj_size only for the LSTM
    for proj_size in [0, 2] if "proj_size" in kind.options else [0]:
        projection = {"proj_size": proj_size} if proj_size else {}
        module = torch_layer(torch, kind.name, **sizes, **projection)
        config = StackConfig(kind.name, 3, 5, num_layers, bias, bidirectional, proj_size)
        want = [(name, tuple(p.shape)) for name, p in module.named_parameters()]
        assert config.param_shapes() == want
        assert config.num_arrays() == len(want)
        assert config.num_parameters() == sum(p.numel() for p in module.parameters())
        assert module.weight_ih_l0.shape[0] == kind.gates * 5
        assert type(module).__name__ == kind.torch_layer
        assert module.mode == kind.torch_mode
        if kind.nonlinearity is not None:
            assert module.nonlinearity == kind.nonlinearity


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_parameters_and_names_are_torch_cells(kind, bias):
    torch = pytest.importorskip("torch")
    module = torch_cell(torch, kind.name, input_size=3, hidden_size=5, bias=bias)
    config = StackConfig(kind.name, 3, 5, bias=bias)
    want = [(name + "_l0", tuple(p.shape)) for name, p in module.named_parameters()]
    assert config.param_shapes() == want
    assert type(module).__name__ == kind.torch_cell


# -- against the compiled stacks ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_param_shapes_are_the_compiled_stacks(kind, num_layers, bidirectional, bias):
    for options in option_sets(kind):
        config = StackConfig(kind.name, 4, 6, num_layers, bias, bidirectional, **options)
        shapes = config.param_shapes()
        assert [shape for _, shape in shapes] == compiled_shapes(config), options
        assert config.num_arrays() == len(shapes)
        assert config.num_parameters() == sum(int(np.prod(shape)) for _, shape in shapes)
        roles = config.layer_param_names(num_layers - 1, bidirectional)
        assert list(roles) == kind.roles(config)
        assert set(roles) <= set(kind.param_roles)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_compiled_stacks_refuse_the_options_a_cell_does_not_take(kind):
    # linear_before_reset is the exception: the kernels ignore it outside the GRU.
    for option in set(CELL_OPTIONS) - kind.options - {"linear_before_reset"}:
        config = StackConfig(kind.name, 4, 6, **{option: SET_VALUES[option]})
        with pytest.raises(ValueError, match=option):
            compiled_shapes(config)


@pytest.mark.parametrize("kind", [k for k in KINDS if "layer_norm" in k.options], ids=["lstm", "gru"])
def test_compiled_stacks_refuse_what_layer_norm_does_not_combine_with(kind):
    for option in kind.options - LAYER_NORM_COMBINES_WITH - {"layer_norm"}:
        config = StackConfig(kind.name, 4, 6, layer_norm=True, **{option: SET_VALUES[option]})
        with pytest.raises(ValueError, match=option):
            compiled_shapes(config)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_cell_state_is_what_the_compiled_stack_returns(kind):
    stack = _core.stacks["float32"](_core.StackConfig(cell=kind.name, input_size=3, hidden_size=4))
    stack.set_weights([np.zeros(shape, np.float32) for shape in stack.param_shapes()])
    _, _, c_n = stack.forward(np.zeros((2, 1, 3), np.float32), None, None, None)
    assert (c_n is not None) == kind.has_cell_state


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_options_are_the_public_constructors_keywords(kind):
    keywords = set(inspect.signature(PUBLIC_LAYER[kind.name]).parameters)
    taken = {option for option in CELL_OPTIONS if KEYWORDS.get(option, option) in keywords}
    assert taken == kind.options
    nonlinearity = {"nonlinearity": NONLINEARITY[kind.name]} if NONLINEARITY[kind.name] else {}
    layer = PUBLIC_LAYER[kind.name](3, 4, **nonlinearity)
    assert layer.config.kind is kind
    assert type(layer).__name__ == kind.torch_layer
    cell = PUBLIC_CELL[kind.name](3, 4, **nonlinearity)
    assert cell.config.kind is kind
    assert type(cell).__name__ == kind.torch_cell
    cell_keywords = set(inspect.signature(PUBLIC_CELL[kind.name]).parameters)
    cell_takes = {option for option in CELL_OPTIONS if KEYWORDS.get(option, option) in cell_keywords}
    assert cell_takes == CELL_KEYWORDS[kind.name]
    assert cell_takes <= kind.options


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_every_cell_takes_onnx_clip(kind):
    """ONNX's LSTM, GRU and RNN all have the clip attribute; every description, compiled stack, layer and
    cell takes it and keeps its value."""
    assert "clip" in kind.options
    nonlinearity = {"nonlinearity": NONLINEARITY[kind.name]} if NONLINEARITY[kind.name] else {}
    assert PUBLIC_LAYER[kind.name](3, 4, clip=0.25, **nonlinearity).config.clip == 0.25
    assert PUBLIC_CELL[kind.name](3, 4, clip=0.25, **nonlinearity).config.clip == 0.25
    config = _core.StackConfig(cell=kind.name, input_size=3, hidden_size=4, clip=0.25)
    assert _core.stacks["float64"](config).config.clip == 0.25


# -- against ONNX and Keras -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_onnx_operator_schema(kind):
    defs = pytest.importorskip("onnx.defs")
    inputs = [i.name for i in defs.get_schema(kind.onnx_op).inputs]
    assert ("initial_c" in inputs) == kind.has_cell_state
    attributes = set(defs.get_schema(kind.onnx_op).attributes)
    for option in ("clip", "input_forget", "linear_before_reset"):
        if option in kind.options:
            assert option in attributes


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_keras_layer_class(kind):
    os.environ.setdefault("KERAS_BACKEND", "torch")  # as test_keras_interop: the backend installed here
    keras = pytest.importorskip("keras")
    layer = getattr(keras.layers, kind.keras_layer)(4)
    assert isinstance(layer, keras.layers.RNN)


# -- lookups ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_every_lookup_finds_the_kind_again(kind):
    nonlinearity = kind.nonlinearity or "tanh"
    assert cell_kind(kind.name) is kind
    assert cell_kind_from_torch_mode(kind.torch_mode) is kind
    assert cell_kind_from_torch_class(kind.torch_layer, nonlinearity) is kind
    assert cell_kind_from_torch_class(kind.torch_cell, nonlinearity) is kind
    assert cell_kind_from_onnx(kind.onnx_op, nonlinearity.capitalize()) is kind
    assert cell_kind_from_keras(kind.keras_layer, nonlinearity) is kind
    if kind.nonlinearity is None:  # only the RNN's names need the nonlinearity
        assert cell_kind_from_torch_class(kind.torch_layer, "relu") is kind
        assert cell_kind_from_onnx(kind.onnx_op, "Relu") is kind
        assert cell_kind_from_keras(kind.keras_layer, "relu") is kind


def test_the_default_nonlinearity_is_tanh():
    assert cell_kind_from_torch_class("RNN").name == "rnn_tanh"
    assert cell_kind_from_torch_class("RNNCell").name == "rnn_tanh"
    assert cell_kind_from_onnx("RNN").name == "rnn_tanh"
    assert cell_kind_from_keras("SimpleRNN").name == "rnn_tanh"


@pytest.mark.parametrize(
    "lookup, arguments, message",
    [
        (cell_kind, ("LSTM",), "cell: expected one of 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got 'LSTM'"),
        (cell_kind, (None,), "cell: expected one of 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got None"),
        (
            cell_kind_from_torch_mode,
            ("lstm",),
            "mode: expected one of 'RNN_TANH', 'RNN_RELU', 'LSTM', 'GRU', got 'lstm'",
        ),
        (
            cell_kind_from_torch_class,
            ("SimpleRNN",),
            "class_name: expected one of 'RNN', 'RNNCell', 'LSTM', 'LSTMCell', 'GRU', 'GRUCell', "
            "got 'SimpleRNN'",
        ),
        (
            cell_kind_from_torch_class,
            ("RNN", "gelu"),
            "nonlinearity: expected one of 'tanh', 'relu', got 'gelu'",
        ),
        (cell_kind_from_onnx, ("Lstm",), "op: expected one of 'RNN', 'LSTM', 'GRU', got 'Lstm'"),
        (
            cell_kind_from_onnx,
            ("RNN", "Sigmoid"),
            "activation: expected one of 'Tanh', 'Relu', got 'Sigmoid'",
        ),
        (
            cell_kind_from_keras,
            ("RNN",),
            "class_name: expected one of 'SimpleRNN', 'LSTM', 'GRU', got 'RNN'",
        ),
        (
            cell_kind_from_keras,
            ("SimpleRNN", "relu6"),
            "activation: expected one of 'tanh', 'relu', got 'relu6'",
        ),
    ],
)
def test_unknown_names_raise_naming_the_argument(lookup, arguments, message):
    with pytest.raises(ValueError) as info:
        lookup(*arguments)
    assert str(info.value) == message


def test_a_config_of_an_unknown_cell_says_so():
    with pytest.raises(ValueError, match="cell: expected one of .*got 'lstm2'"):
        StackConfig("lstm2", 3, 4).param_shapes()
