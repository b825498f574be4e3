"""The order in which each format stacks the gate blocks of a recurrent layer's weights and biases.

A layer with G gates stacks G blocks of H rows in its input weights (G*H, I), recurrent weights (G*H, H)
and biases (G*H); Keras stacks them along the columns of its (I, G*U) kernels. The formats agree on the
gates and disagree on their order (``reference/formats.md``)::

    format     LSTM         GRU       (letters as each format writes them)
    fusedrnn   i, f, g, o   r, z, n   (PyTorch's order: the kernels' own)
    torch      i, f, g, o   r, z, n
    onnx       i, o, f, c   z, r, h
    keras      i, f, c, o   z, r, h

Below every order is written in PyTorch's letters (ONNX's and Keras' c is PyTorch's g, their h is n), so
that the same letter is the same gate everywhere. An RNN has one gate, the same in every format.

The table is keyed by cell family (``_cells.CellKind.family``: both vanilla RNNs are "rnn"). It is written
out from the formats' documentation, not derived from the cell descriptions: the descriptions'
``gate_names`` are tested against it.

ONNX's LSTM peepholes ``P`` (3*H) are stacked i, o, f; fusedrnn's ``weight_ph`` i, f, o.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["GATE_ORDERS", "PEEPHOLE_ORDERS", "gate_permutation", "permute_blocks", "reorder_gates"]

GATE_ORDERS: dict[str, dict[str, tuple[str, ...]]] = {
    "lstm": {
        "fusedrnn": ("i", "f", "g", "o"),
        "torch": ("i", "f", "g", "o"),
        "onnx": ("i", "o", "f", "g"),
        "keras": ("i", "f", "g", "o"),
    },
    "gru": {
        "fusedrnn": ("r", "z", "n"),
        "torch": ("r", "z", "n"),
        "onnx": ("z", "r", "n"),
        "keras": ("z", "r", "n"),
    },
    "rnn": {fmt: ("h",) for fmt in ("fusedrnn", "torch", "onnx", "keras")},
}

PEEPHOLE_ORDERS: dict[str, tuple[str, ...]] = {"fusedrnn": ("i", "f", "o"), "onnx": ("i", "o", "f")}


def gate_permutation(source: Sequence[str], target: Sequence[str]) -> tuple[int, ...]:
    """Block k in the ``target`` order is block ``perm[k]`` in the ``source`` order."""
    if sorted(source) != sorted(target) or len(set(source)) != len(source):
        raise ValueError(f"gate orders {tuple(source)} and {tuple(target)} do not name the same gates")
    return tuple(source.index(gate) for gate in target)


def permute_blocks(a: np.ndarray, source: Sequence[str], target: Sequence[str], axis: int = 0) -> np.ndarray:
    """``a`` with its len(source) equal blocks along ``axis`` moved from the ``source`` order to the
    ``target`` order (a new array)."""
    perm = gate_permutation(source, target)
    if a.shape[axis] % len(perm):
        raise ValueError(
            f"an axis of {a.shape[axis]} does not split into {len(perm)} gate blocks (shape {a.shape})"
        )
    blocks = np.split(a, len(perm), axis=axis)
    return np.concatenate([blocks[k] for k in perm], axis=axis)


def reorder_gates(a: np.ndarray, cell: str, source: str, target: str, axis: int = 0) -> np.ndarray:
    """``a`` (gate blocks along ``axis``) of a ``cell`` family ("lstm", "gru", "rnn": ``CellKind.family``)
    from the ``source`` format's gate order to the ``target`` format's, formats as in :data:`GATE_ORDERS`."""
    orders = GATE_ORDERS[cell]
    return permute_blocks(a, orders[source], orders[target], axis=axis)
