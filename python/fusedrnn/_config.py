"""The static description of a recurrent stack, shared by the layers, the kernels and the reference.

Shape letters (as in ``cpp/fusedrnn/shapes.hpp``): T steps, N batch, I input features, H hidden units,
P projection size, H_out = P or H, G gates (RNN 1, GRU 3, LSTM 4), D directions, L layers.
Parameter names, order and shapes are PyTorch's, so a ``torch.nn`` state_dict maps one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


@dataclass(frozen=True)
class StackConfig:
    """What a stack of recurrent layers is, independent of its weights.

    cell: one of ``CELLS``; ``linear_before_reset`` only matters for ``"gru"`` (True is PyTorch's form
    ``n = tanh(W_n x + b_in + r * (U_n h + b_hn))``, False the reset-before form
    ``n = tanh(W_n x + b_in + U_n (r * h) + b_hn)``); ``proj_size`` only for ``"lstm"`` (0 = none);
    ``hard_gates`` for ``"lstm"`` and ``"gru"``: the gates use ``hard_sigmoid(a) = clip(a / 6 + 1/2, 0, 1)``.
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

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """H_out: the size of h (and of each direction's output)."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def has_cell_state(self) -> bool:
        return self.cell == "lstm"

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_directions * self.output_size

    def num_arrays(self) -> int:
        """How many parameter arrays ``param_shapes()`` lists, in closed form."""
        per_direction = 2 + 2 * self.bias + (self.proj_size > 0) + self.peephole
        return self.num_layers * self.num_directions * per_direction

    def num_parameters(self) -> int:
        """The number of scalar parameters, in closed form: sizes too large to allocate are refused from
        it before anything is built per layer (a list of 10**8 layers' shapes takes minutes)."""
        gh = self.gates * self.hidden_size
        # Per direction of every layer: W_hh, the biases, W_hr, the peepholes; W_ih depends on the layer.
        rest = gh * self.output_size + 2 * gh * self.bias + self.proj_size * self.hidden_size
        rest += 3 * self.hidden_size * self.peephole
        w_ih = gh * (self.input_size + (self.num_layers - 1) * self.num_directions * self.output_size)
        return self.num_directions * (w_ih + self.num_layers * rest)

    def param_names(self) -> list[str]:
        """All parameter names in PyTorch's order: per layer, per direction: w_ih, w_hh, b_ih, b_hh, w_hr
        (then the LSTM peepholes w_ph)."""
        return [name for name, _ in self.param_shapes()]

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        gh = self.gates * self.hidden_size
        out = []
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                out.append((f"weight_ih{sfx}", (gh, self.layer_input_size(layer))))
                out.append((f"weight_hh{sfx}", (gh, self.output_size)))
                if self.bias:
                    out.append((f"bias_ih{sfx}", (gh,)))
                    out.append((f"bias_hh{sfx}", (gh,)))
                if self.proj_size > 0:
                    out.append((f"weight_hr{sfx}", (self.proj_size, self.hidden_size)))
                if self.peephole:
                    out.append((f"weight_ph{sfx}", (3 * self.hidden_size,)))
        return out

    def layer_param_names(self, layer: int, direction: int) -> dict[str, str]:
        """Map role ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh', 'weight_hr') -> full name, for one
        layer-direction; roles absent from this configuration are left out."""
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        roles = ["weight_ih", "weight_hh"]
        if self.bias:
            roles += ["bias_ih", "bias_hh"]
        if self.proj_size > 0:
            roles.append("weight_hr")
        if self.peephole:
            roles.append("weight_ph")
        return {role: role + sfx for role in roles}
