"""The static description of a recurrent stack, shared by the layers, the kernels and the reference.

Shape letters (as in ``cpp/fusedrnn/shapes.hpp``): T steps, N batch, I input features, H hidden units,
P projection size, H_out = P or H, G gates (RNN 1, GRU 3, LSTM 4), D directions, L layers.
Parameter names, order and shapes are PyTorch's, so a ``torch.nn`` state_dict maps one to one.
What differs from cell to cell (gates, cell state, options, parameter roles) is the cell's ``CellKind``
(``_cells``): ``StackConfig.kind``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._cells import CELL_KINDS, CellKind, cell_kind

CELLS = tuple(CELL_KINDS)
GATES = {name: kind.gates for name, kind in CELL_KINDS.items()}


@dataclass(frozen=True)
class StackConfig:
    """What a stack of recurrent layers is, independent of its weights.

    cell: one of ``CELLS``; ``linear_before_reset`` only matters for ``"gru"`` (True is PyTorch's form
    ``n = tanh(W_n x + b_in + r * (U_n h + b_hn))``, False the reset-before form
    ``n = tanh(W_n x + b_in + U_n (r * h) + b_hn)``); ``proj_size`` only for ``"lstm"`` (0 = none);
    ``hard_gates`` for ``"lstm"`` and ``"gru"``: the gates use ``hard_sigmoid(a) = clip(a / 6 + 1/2, 0, 1)``.
    Which options each cell takes is its ``kind.options``.
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    bidirectional: bool = False
    proj_size: int = 0
    linear_before_reset: bool = True
    residual: bool = False
    peephole: bool = False
    clip: float = 0.0
    input_forget: bool = False
    hard_gates: bool = False  # LSTM/GRU gates: Keras 3's hard sigmoid clip(x / 6 + 1/2, 0, 1)
    # LSTM/GRU: layer normalization of W_ih x, W_hh h (and the LSTM's c') over each row, with the
    # parameters ln_weight_ih, ln_weight_hh (and ln_weight_c, ln_bias_c); linear-before-reset GRU only.
    layer_norm: bool = False
    # Every cell (not with proj_size): zoneout's probability p. A call computes h' = p h + (1 - p) h_new
    # (and likewise the LSTM's c); training draws per step and unit which keep their previous value.
    zoneout: float = 0.0

    @property
    def kind(self) -> CellKind:
        """The description of ``cell``; ValueError for a name that is not one of ``CELLS``."""
        return cell_kind(self.cell)

    @property
    def gates(self) -> int:
        return self.kind.gates

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """H_out: the size of h (and of each direction's output)."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def has_cell_state(self) -> bool:
        return self.kind.has_cell_state

    def uses(self, option: str) -> bool:
        """Whether the cell takes ``option`` (a field among ``_cells.CELL_OPTIONS``) and this configuration
        sets it (True, or a number > 0)."""
        return option in self.kind.options and getattr(self, option) > 0

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_directions * self.output_size

    def num_arrays(self) -> int:
        """How many parameter arrays ``param_shapes()`` lists, in closed form."""
        return self.num_layers * self.num_directions * len(self.kind.roles(self))

    def num_parameters(self) -> int:
        """The number of scalar parameters, in closed form: sizes too large to allocate are refused from
        it before anything is built per layer (a list of 10**8 layers' shapes takes minutes)."""
        # Every layer after the first has the second's shapes (only W_ih depends on the layer's input).
        first, later = self.kind.layer_parameters(self, 0), self.kind.layer_parameters(self, 1)
        return self.num_directions * (first + (self.num_layers - 1) * later)

    def param_names(self) -> list[str]:
        """All parameter names in PyTorch's order: per layer, per direction: w_ih, w_hh, b_ih, b_hh, w_hr
        (then the LSTM peepholes w_ph)."""
        return [name for name, _ in self.param_shapes()]

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        out = []
        for layer in range(self.num_layers):
            shapes = self.kind.param_shapes(self, layer)
            for direction in range(self.num_directions):
                sfx = _suffix(layer, direction)
                out += [(role + sfx, shape) for role, shape in shapes]
        return out

    def layer_param_names(self, layer: int, direction: int) -> dict[str, str]:
        """Map role ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh', 'weight_hr', 'weight_ph') -> full name,
        for one layer-direction; roles absent from this configuration are left out."""
        sfx = _suffix(layer, direction)
        return {role: role + sfx for role in self.kind.roles(self)}


def _suffix(layer: int, direction: int) -> str:
    """What PyTorch appends to a role to name a layer-direction's parameter."""
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")
