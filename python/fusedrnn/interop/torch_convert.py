"""PyTorch <-> fusedrnn: ``from_torch(module)`` and ``to_torch(layer)``.

PyTorch's parameter names, shapes and gate orders (``gate_orders.GATE_ORDERS``) are fusedrnn's own, so
the conversion is a ``load_state_dict``; torch is imported only when these functions are called.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .. import _validation as v
from ..cells import GRUCell, LSTMCell, RNNCell
from ..layers import GRU, LSTM, RNN

__all__ = ["from_torch", "to_torch", "dropin_as_layer"]

# The drop-in modules' home; its modules exist only once it has been imported (which imports torch).
_DROPIN_MODULE = __name__.rsplit(".", 2)[0] + ".torch"


def _dtype_of(module: Any) -> Any:
    import torch

    dtype = next(iter(module.parameters())).dtype
    if dtype == torch.float64:
        return np.float64
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        return np.float32  # half precision weights widen exactly to float32
    raise TypeError(f"from_torch: parameters of dtype {dtype} are not supported (float32 or float64)")


def from_torch(module: Any) -> Any:
    """The fusedrnn layer or cell equivalent to a ``torch.nn`` LSTM, GRU, RNN, LSTMCell, GRUCell or
    RNNCell (or a subclass such as ``fusedrnn.torch.LSTM``): same configuration (layers, directions,
    bias, batch_first, dropout, proj_size, nonlinearity), dtype (float64 stays float64, everything else
    computes in float32) and a copy of the weights. Calls then give the module's numbers on NumPy arrays
    (``lengths=`` in place of a PackedSequence)."""
    import torch

    nn = torch.nn
    if isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
        dtype = _dtype_of(module)
        common = dict(
            num_layers=module.num_layers,
            bias=bool(module.bias),
            batch_first=bool(module.batch_first),
            dropout=float(module.dropout),
            bidirectional=bool(module.bidirectional),
            dtype=dtype,
        )
        if module.dropout and module.num_layers == 1:
            common["dropout"] = 0.0  # no effect in either library; spares the warning
        if isinstance(module, nn.LSTM):
            layer: Any = LSTM(module.input_size, module.hidden_size, proj_size=module.proj_size, **common)
        elif isinstance(module, nn.GRU):
            layer = GRU(module.input_size, module.hidden_size, **common)
        else:
            layer = RNN(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity, **common)
    elif isinstance(module, (nn.LSTMCell, nn.GRUCell, nn.RNNCell)):
        dtype = _dtype_of(module)
        if isinstance(module, nn.LSTMCell):
            layer = LSTMCell(module.input_size, module.hidden_size, bool(module.bias), dtype=dtype)
        elif isinstance(module, nn.GRUCell):
            layer = GRUCell(module.input_size, module.hidden_size, bool(module.bias), dtype=dtype)
        else:
            layer = RNNCell(
                module.input_size, module.hidden_size, bool(module.bias), module.nonlinearity, dtype=dtype
            )
    else:
        raise TypeError(
            "from_torch expects a torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell (or a subclass), "
            f"got {v.describe(module)}"
        )
    layer.load_state_dict(
        {
            k: t.detach().cpu().float() if t.dtype != torch.float64 else t.detach().cpu()
            for k, t in module.state_dict().items()
        }
    )
    return layer


def dropin_as_layer(obj: Any) -> Any:
    """``obj`` as a fusedrnn layer or cell when it is a ``fusedrnn.torch`` module (``from_torch``'s copy
    of its configuration and weights), else ``obj`` itself: how ``to_onnx`` and ``save`` take the drop-in
    modules. Imports nothing: without ``fusedrnn.torch`` imported there is no such module."""
    dropin = sys.modules.get(_DROPIN_MODULE)
    if dropin is not None and isinstance(obj, tuple(getattr(dropin, name) for name in dropin.__all__)):
        return from_torch(obj)
    return obj


def to_torch(layer: Any, fused: bool = True) -> Any:
    """The ``torch.nn`` module equivalent to a fusedrnn layer or cell, with a copy of its weights:
    a ``fusedrnn.torch`` module (running fusedrnn's kernels) when ``fused``, else a plain ``torch.nn`` one.
    Layers with options PyTorch lacks (peepholes, clip, coupled input-forget gate, residual stacks, the
    reset-before GRU, hard-sigmoid gates, layer normalization, zoneout, recurrent dropout) raise
    ValueError naming the option."""
    import torch

    if fused:
        from .. import torch as ns
    else:
        ns = torch.nn
    dtype = torch.float64 if np.dtype(layer.dtype) == np.float64 else torch.float32
    if isinstance(layer, (LSTM, GRU, RNN)):
        c = layer.config
        unsupported = [
            name
            for name, value in (
                ("peephole", c.peephole),
                ("clip", c.clip),
                ("input_forget", c.input_forget),
                ("residual", c.residual),
                (
                    "linear_before_reset=False",
                    "linear_before_reset" in c.kind.options and not c.linear_before_reset,
                ),
                ("gate_activation='hard_sigmoid'", c.hard_gates),
                ("layer_norm", c.layer_norm),
                ("zoneout", c.zoneout),
                ("recurrent_dropout", layer.recurrent_dropout),
            )
            if value
        ]
        if unsupported:
            raise ValueError(f"to_torch: PyTorch's modules have no {', '.join(unsupported)}")
        common = dict(
            num_layers=layer.num_layers,
            bias=layer.bias,
            batch_first=layer.batch_first,
            dropout=layer.dropout,
            bidirectional=layer.bidirectional,
            dtype=dtype,
        )
        if isinstance(layer, LSTM):
            module = ns.LSTM(layer.input_size, layer.hidden_size, proj_size=layer.proj_size, **common)
        elif isinstance(layer, GRU):
            module = ns.GRU(layer.input_size, layer.hidden_size, **common)
        else:
            module = ns.RNN(layer.input_size, layer.hidden_size, nonlinearity=layer.nonlinearity, **common)
    elif isinstance(layer, (LSTMCell, GRUCell, RNNCell)):
        if isinstance(layer, GRUCell) and not layer.linear_before_reset:
            raise ValueError("to_torch: PyTorch's GRUCell has no linear_before_reset=False")
        if layer.config.clip:
            raise ValueError(f"to_torch: PyTorch's {type(layer).__name__} has no clip")
        if layer.config.layer_norm:
            raise ValueError(f"to_torch: PyTorch's {type(layer).__name__} has no layer_norm")
        if isinstance(layer, LSTMCell):
            module = ns.LSTMCell(layer.input_size, layer.hidden_size, layer.bias, dtype=dtype)
        elif isinstance(layer, GRUCell):
            module = ns.GRUCell(layer.input_size, layer.hidden_size, layer.bias, dtype=dtype)
        else:
            module = ns.RNNCell(
                layer.input_size, layer.hidden_size, layer.bias, layer.nonlinearity, dtype=dtype
            )
    else:
        raise TypeError(
            "to_torch expects a fusedrnn LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell, "
            f"got {v.describe(layer)}"
        )
    module.load_state_dict({k: torch.from_numpy(a) for k, a in layer.state_dict().items()})
    return module
