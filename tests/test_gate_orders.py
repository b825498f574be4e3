"""The gate-order table (``fusedrnn.interop.gate_orders``): its permutations are the ones formats.md
states, they round trip between every pair of formats, and the conversions that use them (ONNX export
and import, Keras import) place each gate block where the table says."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn.interop.gate_orders import (
    GATE_ORDERS,
    PEEPHOLE_ORDERS,
    gate_permutation,
    permute_blocks,
    reorder_gates,
)

FORMATS = ("fusedrnn", "torch", "onnx", "keras")
CELLS = {"lstm": 4, "gru": 3, "rnn": 1}


def labelled_blocks(gates: int, hidden: int, cols: int = 2) -> np.ndarray:
    """(gates*hidden, cols): every entry of block k equals k, plus a small ramp to catch flips within a
    block."""
    ramp = np.arange(hidden * cols, dtype=np.float64).reshape(hidden, cols) / 1000
    return np.concatenate([k + ramp for k in range(gates)])


def test_permutations_are_the_ones_formats_md_states():
    # formats.md: PyTorch LSTM -> ONNX block permutation 0,3,1,2; GRU -> ONNX and -> Keras 1,0,2.
    assert gate_permutation(GATE_ORDERS["lstm"]["torch"], GATE_ORDERS["lstm"]["onnx"]) == (0, 3, 1, 2)
    assert gate_permutation(GATE_ORDERS["lstm"]["onnx"], GATE_ORDERS["lstm"]["torch"]) == (0, 2, 3, 1)
    assert gate_permutation(GATE_ORDERS["lstm"]["torch"], GATE_ORDERS["lstm"]["keras"]) == (0, 1, 2, 3)
    assert gate_permutation(GATE_ORDERS["gru"]["torch"], GATE_ORDERS["gru"]["onnx"]) == (1, 0, 2)
    assert gate_permutation(GATE_ORDERS["gru"]["torch"], GATE_ORDERS["gru"]["keras"]) == (1, 0, 2)
    assert gate_permutation(PEEPHOLE_ORDERS["onnx"], PEEPHOLE_ORDERS["fusedrnn"]) == (0, 2, 1)
    # The torch conversion is a plain load_state_dict because the orders are the same.
    for cell in CELLS:
        assert GATE_ORDERS[cell]["torch"] == GATE_ORDERS[cell]["fusedrnn"]
        assert len(GATE_ORDERS[cell]["fusedrnn"]) == CELLS[cell]
        for fmt in FORMATS:
            assert sorted(GATE_ORDERS[cell][fmt]) == sorted(GATE_ORDERS[cell]["fusedrnn"])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("axis", [0, 1], ids=["rows", "columns"])
def test_every_pair_of_formats_round_trips(cell, axis):
    a = labelled_blocks(CELLS[cell], 3)
    a = a if axis == 0 else np.ascontiguousarray(a.T)
    for source, target in itertools.permutations(FORMATS, 2):
        there = reorder_gates(a, cell, source, target, axis=axis)
        back = reorder_gates(there, cell, target, source, axis=axis)
        np.testing.assert_array_equal(back, a, err_msg=f"{cell} {source} -> {target} -> {source}")
        # Block k in the target holds the source block of the gate the target names k-th.
        src, dst = GATE_ORDERS[cell][source], GATE_ORDERS[cell][target]
        for k, gate in enumerate(dst):
            block = np.take(there, range(3 * k, 3 * k + 3), axis=axis)
            assert np.all(np.floor(block) == src.index(gate)), (cell, source, target, gate)


def test_bad_blocks_and_orders_are_refused():
    with pytest.raises(ValueError, match="gate blocks"):
        permute_blocks(np.zeros(7), ("i", "f", "g", "o"), ("i", "o", "f", "g"))
    with pytest.raises(ValueError, match="same gates"):
        gate_permutation(("r", "z", "n"), ("r", "z", "h"))


def test_onnx_export_and_import_place_blocks_as_the_table_says():
    pytest.importorskip("onnx")
    from onnx import numpy_helper

    for cls, cell in ((fr.LSTM, "lstm"), (fr.GRU, "gru")):
        layer = cls(3, 4, bidirectional=True, seed=1)
        state = layer.state_dict()
        model = fr.to_onnx(layer)
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        (node,) = [n for n in model.graph.node if n.op_type == cell.upper()]
        w, r, b = (inits[name] for name in node.input[1:4])
        for d, sfx in enumerate(("_l0", "_l0_reverse")):
            want_w = reorder_gates(state["weight_ih" + sfx], cell, "fusedrnn", "onnx")
            np.testing.assert_array_equal(w[d], want_w)
            np.testing.assert_array_equal(
                r[d], reorder_gates(state["weight_hh" + sfx], cell, "fusedrnn", "onnx")
            )
            bias = np.concatenate(
                [reorder_gates(state[k + sfx], cell, "fusedrnn", "onnx") for k in ("bias_ih", "bias_hh")]
            )
            np.testing.assert_array_equal(b[d], bias)
        (imported,) = fr.from_onnx(model).values()
        for name, value in imported.state_dict().items():
            np.testing.assert_array_equal(value, state[name], err_msg=f"{cell} {name}")


def test_onnx_peepholes_follow_the_table():
    pytest.importorskip("onnx")
    from onnx import numpy_helper

    layer = fr.LSTM(3, 4, peephole=True, seed=2)
    model = fr.to_onnx(layer)
    (node,) = [n for n in model.graph.node if n.op_type == "LSTM"]
    (p,) = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name == node.input[7]]
    want = permute_blocks(
        layer.state_dict()["weight_ph_l0"], PEEPHOLE_ORDERS["fusedrnn"], PEEPHOLE_ORDERS["onnx"]
    )
    np.testing.assert_array_equal(p[0], want)


# Keras' own conversion of its torch-backed variables under NumPy 2, as in test_keras_interop.
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_keras_import_places_blocks_as_the_table_says():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("these tests run Keras with the torch backend")
    for kind, cell in ((keras.layers.LSTM, "lstm"), (keras.layers.GRU, "gru")):
        klayer = kind(4)
        klayer.build((None, 5, 3))
        rng = np.random.default_rng(0)
        for var in klayer.weights:
            var.assign(rng.standard_normal(tuple(var.shape)).astype(np.float32))
        kernel, recurrent = (np.asarray(keras.ops.convert_to_numpy(v.value)) for v in klayer.weights[:2])
        state = fr.from_keras(klayer).state_dict()
        np.testing.assert_array_equal(
            state["weight_ih_l0"], reorder_gates(kernel.T, cell, "keras", "fusedrnn")
        )
        np.testing.assert_array_equal(
            state["weight_hh_l0"], reorder_gates(recurrent, cell, "keras", "fusedrnn", axis=1).T
        )
