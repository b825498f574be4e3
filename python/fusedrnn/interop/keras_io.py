"""Keras 3 -> fusedrnn: ``from_keras(layer)`` and ``call_as_keras``.

Keras layers are batch-major, so the fusedrnn layer made is ``batch_first=True``. Weights (Keras
kernels are transposed relative to fusedrnn's, gate blocks reordered for the GRU)::

    LSTM       kernel (I, 4U) i,f,c,o     -> weight_ih = kernel.T; weight_hh = recurrent_kernel.T;
                                             bias_ih = bias, bias_hh = 0 (same gate order)
    GRU        kernel (I, 3U) z,r,h       -> blocks reordered to r,z,n and transposed;
               reset_after=True:  bias (2, 3U) = [input bias; recurrent bias] -> bias_ih, bias_hh
                                  (linear_before_reset=True, PyTorch's form)
               reset_after=False: bias (3U,) -> bias_ih, bias_hh = 0 (linear_before_reset=False)
    SimpleRNN  kernel (I, U)              -> RNN(nonlinearity = activation: "tanh" or "relu")

Activations come from the layer's config: LSTM and GRU compute ``activation="tanh"`` and
``recurrent_activation`` ``"sigmoid"`` or ``"hard_sigmoid"`` (as Keras 3 defines it, ``relu6(x + 3) / 6 =
clip(x / 6 + 1/2, 0, 1)``: the layers' ``gate_activation="hard_sigmoid"``; Keras 2's ``clip(0.2 x + 1/2, 0,
1)`` differs); SimpleRNN ``"tanh"`` or ``"relu"``. Anything else raises NotImplementedError naming the
option and its value.

Direction: ``go_backwards=True`` gives ``Reverse(layer, order="processing")`` (Keras returns the
outputs in the order it processed the steps, last input step first). ``Bidirectional`` gives a
bidirectional layer (merge_mode ``"concat"``) or ``SumDirections`` of one (``"sum"``); other merge modes
raise ValueError.

Calls: the converted layer is called as any fusedrnn layer, ``y, state = layer(x, state, lengths)``;
``call_as_keras`` returns exactly what the Keras layer's call returns, for its ``return_sequences`` /
``return_state`` flags. ``recurrent_dropout`` is carried over (it acts in ``record`` only; Keras 3 draws one
mask per gate where fusedrnn draws one for all, and the reset-before GRU has none, so there it is left
out); Keras' ``dropout`` (on the input) has no counterpart and is not converted; ``stateful`` layers are
converted as stateless ones (pass the state).

Masks: Keras carries the previous output (and state) through masked steps, fusedrnn's ``lengths=``
follow PyTorch (outputs past a sequence's end are zeros). For right-padded sequences the final state
is the same either way; the per-step outputs past the end differ, and Keras' ``go_backwards`` reverses the
padding together with the data. Masks are therefore not translated: pass ``lengths``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validation as v
from .. import layers as fr_layers
from .._cells import cell_kind_from_keras
from .gate_orders import reorder_gates
from .wrappers import Reverse, SumDirections, unwrap

__all__ = ["from_keras", "call_as_keras"]


def _activation_name(value: Any) -> str:
    """The name of a Keras activation as a config gives it (a string, a serialized function dict, or
    a function)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        return str(value.get("class_name", value))
    if value is None:
        return "linear"
    return getattr(value, "__name__", repr(value))


def _check_activation(label: str, option: str, value: Any, allowed: tuple[str, ...]) -> str:
    name = _activation_name(value)
    if name not in allowed:
        raise NotImplementedError(
            f"{label}: {option}={name!r} is not computed by fusedrnn's kernels "
            f"(supported: {', '.join(allowed)})"
        )
    return name


def _kind(layer: Any) -> str:
    import keras

    if isinstance(layer, keras.layers.LSTM):
        return "LSTM"
    if isinstance(layer, keras.layers.GRU):
        return "GRU"
    if isinstance(layer, keras.layers.SimpleRNN):
        return "SimpleRNN"
    raise TypeError(
        f"from_keras converts keras.layers.LSTM, GRU, SimpleRNN and Bidirectional, got {type(layer).__name__}"
    )


def _weights_of(layer: Any, kind: str, label: str) -> tuple[dict[str, Any], dict[str, np.ndarray], Any]:
    """(constructor keywords, state dict for one direction keyed by role, dtype) of one Keras layer."""
    config = layer.get_config()
    units = int(config["units"])
    use_bias = bool(config.get("use_bias", True))
    import keras

    weights = [np.array(keras.ops.convert_to_numpy(w.value)) for w in layer.weights]
    if len(weights) != (3 if use_bias else 2):
        raise ValueError(
            f"{label}: expected kernel, recurrent_kernel{', bias' if use_bias else ''}, got "
            f"{len(weights)} arrays (is the layer built?)"
        )
    kernel, recurrent = weights[0], weights[1]
    dtype = np.float64 if kernel.dtype == np.float64 else np.float32
    options: dict[str, Any] = {"bias": use_bias}
    # The layer's cell; a SimpleRNN's nonlinearity is its activation, read here.
    cell = cell_kind_from_keras(kind)
    if cell.nonlinearity is not None:
        options["nonlinearity"] = _check_activation(
            label, "activation", config.get("activation"), ("tanh", "relu")
        )
    else:
        _check_activation(label, "activation", config.get("activation"), ("tanh",))
        gate = _check_activation(
            label, "recurrent_activation", config.get("recurrent_activation"), ("sigmoid", "hard_sigmoid")
        )
        if gate == "hard_sigmoid":  # Keras 3's: relu6(x + 3) / 6, the kernels' gate_activation option
            options["gate_activation"] = "hard_sigmoid"
    if "linear_before_reset" in cell.options:
        options["linear_before_reset"] = bool(config.get("reset_after", True))

    def blocks(a: np.ndarray) -> np.ndarray:
        return reorder_gates(a, cell.family, "keras", "fusedrnn")

    state = {"weight_ih": blocks(kernel.T), "weight_hh": blocks(recurrent.T)}
    if use_bias:
        bias = weights[2]
        # GRU with reset_after=True: [input bias; recurrent bias]
        if "linear_before_reset" in cell.options and bias.ndim == 2:
            state["bias_ih"], state["bias_hh"] = blocks(bias[0]), blocks(bias[1])
        else:
            state["bias_ih"], state["bias_hh"] = blocks(bias), np.zeros_like(bias)
    options["input_size"] = int(kernel.shape[0])
    options["hidden_size"] = units
    # Keras' recurrent dropout is fusedrnn's (one mask per sequence on h entering the recurrent product),
    # for training after the import; the reset-before GRU has none.
    recurrent_dropout = float(config.get("recurrent_dropout", 0.0))
    if recurrent_dropout > 0 and options.get("linear_before_reset", True):
        options["recurrent_dropout"] = recurrent_dropout
    return options, state, dtype


def from_keras(layer: Any) -> Any:
    """The fusedrnn equivalent of a Keras 3 recurrent layer, with a copy of its weights.

    Parameters
    ----------
    layer : keras.layers.LSTM, GRU, SimpleRNN or Bidirectional
        A built Keras 3 layer: ``LSTM``, ``GRU`` (reset_after True or False), ``SimpleRNN``, or a
        ``Bidirectional`` of one of them (merge_mode "concat" or "sum").

    Returns
    -------
    LSTM, GRU or RNN
        A ``batch_first=True`` layer (bidirectional for a Bidirectional), wrapped in
        :class:`~fusedrnn.interop.Reverse` (``order="processing"``) for ``go_backwards=True`` and in
        :class:`~fusedrnn.interop.SumDirections` for merge_mode "sum". The module
        ``fusedrnn.interop.keras_io`` says how the weights and options map.

    Raises
    ------
    NotImplementedError
        For an activation or option the kernels do not compute, named with its value.
    ValueError
        For an unsupported merge mode or mismatched directions.
    """
    import keras

    if isinstance(layer, keras.layers.Bidirectional):
        merge = layer.merge_mode
        if merge not in ("concat", "sum"):
            raise ValueError(
                f"from_keras: Bidirectional merge_mode={merge!r} is not supported (only 'concat' and 'sum')"
            )
        fwd, bwd = layer.forward_layer, layer.backward_layer
        kind = _kind(fwd)
        if _kind(bwd) != kind:
            raise ValueError(
                f"from_keras: Bidirectional with a {kind} forward and a {_kind(bwd)} backward layer"
            )
        if fwd.go_backwards or not bwd.go_backwards:
            raise NotImplementedError("from_keras: Bidirectional whose forward layer has go_backwards=True")
        opts_f, state_f, dtype = _weights_of(fwd, kind, f"{layer.name} (forward)")
        opts_b, state_b, _ = _weights_of(bwd, kind, f"{layer.name} (backward)")
        if opts_f != opts_b:
            raise ValueError(f"from_keras: the forward and backward layers differ: {opts_f} vs {opts_b}")
        converted = _make(kind, opts_f, dtype, True)
        params = {f"{role}_l0": a for role, a in state_f.items()}
        params.update({f"{role}_l0_reverse": a for role, a in state_b.items()})
        converted.load_state_dict(params)
        return SumDirections(converted) if merge == "sum" else converted
    kind = _kind(layer)
    options, state, dtype = _weights_of(layer, kind, layer.name)
    converted = _make(kind, options, dtype, False)
    converted.load_state_dict({f"{role}_l0": a for role, a in state.items()})
    if layer.get_config().get("go_backwards", False):
        return Reverse(converted, order="processing")
    return converted


def _make(kind: str, options: dict[str, Any], dtype: Any, bidirectional: bool) -> Any:
    options = dict(options)
    input_size, hidden = options.pop("input_size"), options.pop("hidden_size")
    # fusedrnn's layers have torch.nn's names
    cls = getattr(fr_layers, cell_kind_from_keras(kind).torch_layer)
    return cls(input_size, hidden, batch_first=True, bidirectional=bidirectional, dtype=dtype, **options)


def call_as_keras(
    layer: Any,
    x: Any,
    initial_state: Any = None,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    lengths: Any = None,
) -> Any:
    """Run a layer made by :func:`from_keras` and return what the Keras layer's call returns for the same
    flags (Keras' defaults: the last output only, no states).

    Parameters
    ----------
    layer
        What :func:`from_keras` returned.
    x : array_like
        The input, (N, T, I) (Keras is batch-major).
    initial_state : list of array_like, optional
        Keras' list: ``[h, c]`` (LSTM) or ``[h]``, each (N, U); for a Bidirectional the forward
        direction's, then the backward's. None: zeros.
    return_sequences : bool, default False
        Return the output at every step, (N, T, F), instead of the last one, (N, F).
    return_state : bool, default False
        Return ``[output, *states]`` in Keras' order instead of the output alone.
    lengths : array_like, optional
        (N,) the sequences' lengths, with PyTorch's semantics (Keras masks are not translated: see
        ``fusedrnn.interop.keras_io``).

    Returns
    -------
    ndarray or list of ndarray
        The output, or with ``return_state`` the list ``[output, *states]``.
    """
    inner = unwrap(layer)
    lstm = inner.config.has_cell_state  # the state is [h, c]
    directions = 2 if inner.bidirectional else 1
    state = None
    if initial_state is not None:
        parts = [v.as_real_array(f"initial_state[{k}]", s) for k, s in enumerate(initial_state)]
        per = 2 if lstm else 1
        if len(parts) != per * directions:
            raise ValueError(f"initial_state must hold {per * directions} arrays, got {len(parts)}")
        h = np.stack([parts[d * per] for d in range(directions)])
        state = (h, np.stack([parts[d * per + 1] for d in range(directions)])) if lstm else h
    y, new_state = layer(x, state, lengths)
    h_n, c_n = new_state if lstm else (new_state, None)
    if return_sequences:
        output = y
    else:
        # The last step processed is each direction's final state (also with lengths: the last valid step).
        output = np.concatenate(list(h_n), axis=-1) if directions == 2 else h_n[0]
        if isinstance(layer, SumDirections):
            output = h_n[0] + h_n[1]
    if not return_state:
        return output
    states: list[np.ndarray] = []
    for d in range(directions):
        states.append(h_n[d])
        if lstm:
            states.append(c_n[d])
    return [output, *states]
