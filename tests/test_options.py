"""Options beyond PyTorch's layers: residual stacks (every cell), the LSTM's peepholes and coupled
input-forget gate (ONNX's LSTM), ONNX's clip (every cell: LSTM, both GRU forms, both RNN
nonlinearities), and the hard-sigmoid gates of LSTM and GRU.

The reference against central differences, the public layers (kernels) against the reference, forward and
backward, and their argument checks. Then the options in the compiled stack itself
(``fusedrnn._core.StackConfig(..., peephole=, clip=, input_forget=)``): forward against ONNX Runtime's node
on the same weights, backward against central differences of the float64 kernels, the thread count.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fusedrnn as fr
from closeness import assert_scaled_close
from fusedrnn import _core, reference
from fusedrnn._config import StackConfig
from tolerances import (
    DIRECTIONAL_DERIVATIVE,
    FINITE_DIFFERENCE_STEP,
    KERNEL_VS_REFERENCE,
    VS_FINITE_DIFFERENCES,
    VS_ONNX_RUNTIME,
)

LSTM_OPTIONS = [
    dict(peephole=p, clip=c, input_forget=f)
    for p, c, f in itertools.product([False, True], [0.0, 0.6], [False, True])
    if p or c or f
]


def option_id(options):
    return "-".join(f"{k}{'' if v is True else v}" for k, v in options.items() if v) or "plain"


def random_inputs(config, steps=4, batch=3, seed=0, scale=0.6):
    rng = np.random.default_rng(seed)
    params = {name: rng.uniform(-scale, scale, shape) for name, shape in config.param_shapes()}
    if config.hard_gates:  # biases in [-4, 4]: many gates sit on the hard sigmoid's flat parts (|a| > 3)
        biases = [(n, shape) for n, shape in config.param_shapes() if n.startswith("bias")]
        params.update({n: rng.uniform(-4, 4, shape) for n, shape in biases})
    x = rng.standard_normal((steps, batch, config.input_size))
    d, layers = config.num_directions, config.num_layers
    h0 = rng.standard_normal((d * layers, batch, config.output_size)) * 0.5
    c0 = rng.standard_normal((d * layers, batch, config.hidden_size)) * 0.5 if config.has_cell_state else None
    return rng, params, x, h0, c0


CASES = [
    pytest.param(StackConfig("lstm", 3, 3, 2, True, True, **o), id="lstm-" + option_id(o))
    for o in LSTM_OPTIONS
]
CASES += [
    pytest.param(
        StackConfig(cell, 3, 3, 3, True, bidir, residual=True, proj_size=proj), id=f"{cell}-residual-{tag}"
    )
    for cell, bidir, proj, tag in [
        ("rnn_tanh", False, 0, "L3"),
        ("lstm", True, 0, "L3-bidir"),
        ("lstm", False, 2, "L3-proj"),
        ("gru", True, 0, "L3-bidir"),
    ]
]
CASES.append(
    pytest.param(
        StackConfig("gru", 3, 3, 3, True, False, linear_before_reset=False, residual=True),
        id="gru-lbr0-residual",
    )
)
# Keras 3's hard sigmoid on the gates (gate_activation="hard_sigmoid").
CASES += [
    pytest.param(StackConfig("lstm", 3, 3, 2, True, True, hard_gates=True), id="lstm-hard"),
    pytest.param(
        StackConfig("lstm", 3, 3, 1, True, False, peephole=True, clip=0.6, hard_gates=True),
        id="lstm-hard-options",
    ),
    pytest.param(StackConfig("gru", 3, 3, 2, True, True, hard_gates=True), id="gru-hard"),
    pytest.param(
        StackConfig("gru", 3, 3, 2, True, False, linear_before_reset=False, hard_gates=True),
        id="gru-lbr0-hard",
    ),
]
CASES.append(
    pytest.param(
        StackConfig("lstm", 3, 3, 3, True, True, residual=True, peephole=True, clip=0.6, input_forget=True),
        id="lstm-everything",
    )
)
# ONNX's clip on the GRU (both forms) and the vanilla RNN (both nonlinearities). With the hard-sigmoid
# gates the biases are in [-4, 4] (random_inputs), hence the wider clip.
CLIP_CASES = [
    pytest.param(StackConfig("gru", 3, 3, 2, True, True, clip=0.5), id="gru-clip"),
    pytest.param(
        StackConfig("gru", 3, 3, 2, True, True, linear_before_reset=False, clip=0.5), id="gru-lbr0-clip"
    ),
    pytest.param(StackConfig("gru", 3, 3, 2, True, True, clip=2.0, hard_gates=True), id="gru-hard-clip"),
    pytest.param(StackConfig("rnn_tanh", 3, 3, 2, True, True, clip=0.5), id="rnn_tanh-clip"),
    pytest.param(StackConfig("rnn_relu", 3, 3, 2, True, True, clip=0.5), id="rnn_relu-clip"),
]
CASES += CLIP_CASES


# central differences of the stack with every option take about 2 s
FINITE_DIFFERENCE_CASES = [
    pytest.param(*case.values, id=case.id, marks=pytest.mark.slow) if case.id == "lstm-everything" else case
    for case in CASES
]


@pytest.mark.parametrize("config", FINITE_DIFFERENCE_CASES)
def test_reference_matches_finite_differences(config):
    rng, params, x, h0, c0 = random_inputs(config)
    lengths = np.array([4, 1, 3])
    masks = [
        rng.choice([0.0, 2.0], size=(4, 3, config.num_directions * config.output_size))
        for _ in range(config.num_layers - 1)
    ]
    y, h_n, c_n, cache = reference.forward(config, params, x, h0, c0, lengths, masks)
    gy, gh = rng.standard_normal(y.shape), rng.standard_normal(h_n.shape)
    gc = rng.standard_normal(c_n.shape) if c_n is not None else None
    gx, gh0, gc0, gp = reference.backward(cache, gy, gh, gc)

    def loss(x_, h0_, c0_, params_):
        y_, h_, c_, _ = reference.forward(config, params_, x_, h0_, c0_, lengths, masks)
        total = (y_ * gy).sum() + (h_ * gh).sum()
        return total + ((c_ * gc).sum() if c_ is not None else 0.0)

    eps = FINITE_DIFFERENCE_STEP

    def numeric(value, rebuild):
        out = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus, minus = value.copy(), value.copy()
            plus[index] += eps
            minus[index] -= eps
            out[index] = (loss(*rebuild(plus)) - loss(*rebuild(minus))) / (2 * eps)
        return out

    tol = VS_FINITE_DIFFERENCES.kw()
    np.testing.assert_allclose(gx, numeric(x, lambda a: (a, h0, c0, params)), **tol)
    np.testing.assert_allclose(gh0, numeric(h0, lambda a: (x, a, c0, params)), **tol)
    if c0 is not None:
        np.testing.assert_allclose(gc0, numeric(c0, lambda a: (x, h0, a, params)), **tol)
    for name in params:
        expected = numeric(params[name], lambda a, name=name: (x, h0, c0, {**params, name: a}))
        np.testing.assert_allclose(gp[name], expected, **tol, err_msg=name)


def make_layer(config, dtype, batch_first=False, dropout=0.0):
    kwargs = dict(
        num_layers=config.num_layers,
        bias=config.bias,
        batch_first=batch_first,
        dropout=dropout,
        bidirectional=config.bidirectional,
        residual=config.residual,
        dtype=dtype,
        seed=1,
    )
    if config.hard_gates:
        kwargs["gate_activation"] = "hard_sigmoid"
    if config.cell == "lstm":
        layer = fr.LSTM(
            config.input_size,
            config.hidden_size,
            proj_size=config.proj_size,
            peephole=config.peephole,
            clip=config.clip,
            input_forget=config.input_forget,
            **kwargs,
        )
    elif config.cell == "gru":
        layer = fr.GRU(
            config.input_size,
            config.hidden_size,
            linear_before_reset=config.linear_before_reset,
            clip=config.clip,
            **kwargs,
        )
    else:
        layer = fr.RNN(
            config.input_size, config.hidden_size, nonlinearity=config.cell[4:], clip=config.clip, **kwargs
        )
    return layer


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("hidden", [9, 33, 130], ids=["H9", "H33", "H130"])
@pytest.mark.parametrize("config", CASES)
def test_layer_matches_reference(config, hidden, dtype):
    config = StackConfig(
        **{**config.__dict__, "hidden_size": hidden, "proj_size": min(config.proj_size, hidden - 1)}
    )
    layer = make_layer(config, dtype, dropout=0.3 if config.num_layers > 1 else 0.0)
    rng, params, x, h0, c0 = random_inputs(config, steps=5, batch=3, seed=hidden, scale=0.3)
    layer.load_state_dict({k: v.astype(dtype) for k, v in params.items()})
    state = (h0.astype(dtype), c0.astype(dtype)) if c0 is not None else h0.astype(dtype)
    lengths = [5, 2, 4]
    tape = layer.record(x.astype(dtype), state, lengths=lengths)
    y, h_n, c_n, cache = reference.forward(
        config,
        {k: v.astype(dtype).astype(np.float64) for k, v in params.items()},
        x.astype(dtype).astype(np.float64),
        h0.astype(dtype).astype(np.float64),
        None if c0 is None else c0.astype(dtype).astype(np.float64),
        np.array(lengths),
        tape.dropout_masks,
    )
    tol = KERNEL_VS_REFERENCE[dtype]
    # outputs and states with atol as it is; gradients with atol scaled by their largest value
    np.testing.assert_allclose(tape.output, y, **tol.kw())
    out_state = tape.state if c0 is None else tape.state[0]
    np.testing.assert_allclose(out_state, h_n, **tol.kw())
    gy = rng.standard_normal(y.shape)
    grads = tape.backward(gy.astype(dtype))
    gx, _, _, gp = reference.backward(cache, gy)
    scale = max(1.0, np.abs(gx).max())
    np.testing.assert_allclose(grads.input, gx, rtol=tol.rtol, atol=tol.atol * scale)
    for name, g in gp.items():
        np.testing.assert_allclose(
            grads.params[name],
            g,
            rtol=tol.rtol,
            atol=tol.atol * max(1.0, np.abs(g).max()),
            err_msg=name,
        )
    # inference matches recording without dropout
    if config.num_layers == 1 or layer.dropout == 0:
        np.testing.assert_allclose(layer(x.astype(dtype), state, lengths=lengths)[0], tape.output, **tol.kw())


def clip_activity(config, params, x, h0):
    """For each gate block, the share of the activations' inputs the reference's forward pass computed
    that the clip bounds (|a| >= clip)."""
    _, _, _, cache = reference.forward(config, params, x, h0)
    pre = np.concatenate(
        [rec.cache.pre for layer in cache.steps for direction in layer for rec in direction], axis=0
    )
    blocks = np.split(pre, config.gates, axis=1)
    return [float((np.abs(block) >= config.clip).mean()) for block in blocks]


@pytest.mark.parametrize("config", CLIP_CASES)
def test_clip_is_reached_in_the_tests_above(config):
    """The clip cases above only test the clip if it bounds some of every gate's inputs and leaves
    others alone: check that for the inputs of the finite-difference test and of the layer tests."""
    inputs = [(config, random_inputs(config))]
    for hidden in (9, 33, 130):
        wide = StackConfig(**{**config.__dict__, "hidden_size": hidden})
        inputs.append((wide, random_inputs(wide, steps=5, batch=3, seed=hidden, scale=0.3)))
    for cfg, (_, params, x, h0, _) in inputs:
        for gate, share in zip(cfg.kind.gate_names, clip_activity(cfg, params, x, h0)):
            assert 0.05 < share < 0.95, (cfg, gate, share)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("config", [case for case in CLIP_CASES if case.id != "gru-hard-clip"])
def test_clip_stream_matches_reference(config, dtype):
    """A stream of a one-direction stack with clip, step by step, against the reference's whole call."""
    config = StackConfig(**{**config.__dict__, "bidirectional": False, "hidden_size": 33})
    layer = make_layer(config, dtype)
    _, params, x, h0, _ = random_inputs(config, steps=6, batch=3, seed=5, scale=0.3)
    layer.load_state_dict(params)
    params, x, h0 = (
        {k: v.astype(dtype) for k, v in params.items()},
        x.astype(dtype),
        h0.astype(dtype),
    )
    stream = layer.stream(3, h0)
    steps = np.stack([stream.step(x[t]) for t in range(x.shape[0])])
    y, h_n, _, _ = reference.forward(config, params, x.astype(np.float64), h0.astype(np.float64))
    np.testing.assert_allclose(steps, y, **KERNEL_VS_REFERENCE[dtype].kw())
    np.testing.assert_allclose(stream.state, h_n, **KERNEL_VS_REFERENCE[dtype].kw())


def test_clip_changes_the_gru_and_rnn_layers():
    """The same weights with and without clip give different outputs (the option reaches the kernels)."""
    x = np.random.default_rng(4).standard_normal((5, 2, 3)).astype(np.float32)
    for make in (
        lambda **kw: fr.GRU(3, 8, **kw),
        lambda **kw: fr.GRU(3, 8, linear_before_reset=False, **kw),
        lambda **kw: fr.RNN(3, 8, **kw),
        lambda **kw: fr.RNN(3, 8, nonlinearity="relu", **kw),
    ):
        plain, clipped = make(seed=3), make(seed=3, clip=0.2)
        assert clipped.config.clip == 0.2
        assert np.abs(plain(x)[0] - clipped(x)[0]).max() > 1e-3


def test_peephole_parameters_are_named_and_shaped():
    lstm = fr.LSTM(4, 6, num_layers=2, bidirectional=True, peephole=True)
    shapes = {k: v.shape for k, v in lstm.state_dict().items()}
    assert shapes["weight_ph_l0"] == (18,)
    assert shapes["weight_ph_l1_reverse"] == (18,)
    assert "clip=" not in repr(lstm) and "peephole=True" in repr(lstm)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: fr.GRU(3, 4, peephole=True), "peephole"),
        (lambda: fr.RNN(3, 4, input_forget=True), "input_forget"),
        (lambda: fr.LSTM(3, 4, clip=-1.0), "clip"),
        (lambda: fr.LSTM(3, 4, clip=float("inf")), "clip"),
        (lambda: fr.GRU(3, 4, clip=-0.5), r"clip: expected a finite number >= 0 \(0 for none\), got -0.5"),
        (lambda: fr.RNN(3, 4, clip=float("nan")), r"clip: expected a finite number >= 0 .*got nan"),
        (lambda: fr.GRUCell(3, 4, clip=float("inf")), r"clip: expected a finite number >= 0 .*got inf"),
        (lambda: fr.RNNCell(3, 4, clip=-1), r"clip: expected a finite number >= 0 .*got -1.0"),
        (lambda: fr.RNN(3, 4, gate_activation="hard_sigmoid"), "gate_activation"),
        (lambda: fr.GRU(3, 4, gate_activation="hard"), "gate_activation"),
    ],
    ids=[
        "peephole-on-gru",
        "input-forget-on-rnn",
        "negative-clip",
        "inf-clip",
        "negative-clip-gru",
        "nan-clip-rnn",
        "inf-clip-grucell",
        "negative-clip-rnncell",
        "hard-on-rnn",
        "bad-gate",
    ],
)
def test_option_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: fr.LSTM(3, 4, clip="1"),
        lambda: fr.GRU(3, 4, clip=None),
        lambda: fr.RNN(3, 4, clip=True),
        lambda: fr.LSTMCell(3, 4, clip=[0.5]),
        lambda: fr.GRUCell(3, 4, clip="0.5"),
    ],
    ids=["lstm-str", "gru-none", "rnn-bool", "lstmcell-list", "grucell-str"],
)
def test_clip_type_error(make):
    with pytest.raises(TypeError, match=r"clip: expected a number >= 0 \(0 for none\), got "):
        make()


def test_hard_sigmoid_saturation_is_reached_in_the_layer_tests():
    """The hard-gate cases above are only meaningful if some gates sit on the flat parts (derivative 0) and
    others on the slope: check that for the kernel test's inputs."""
    for config, seed in [
        (StackConfig("gru", 3, 9, 2, True, True, hard_gates=True), 9),
        (StackConfig("gru", 3, 130, 2, True, True, hard_gates=True), 130),
        (StackConfig("gru", 3, 3, 2, True, True, hard_gates=True), 0),
    ]:
        steps, batch = (4, 3) if seed == 0 else (5, 3)
        _, params, x, h0, _ = random_inputs(config, steps, batch, seed, 0.6 if seed == 0 else 0.3)
        _, _, _, cache = reference.forward(config, params, x, h0)
        gates = np.concatenate([np.concatenate([r.cache.r, r.cache.z]) for r in cache.steps[0][0]])
        assert 0.05 < np.isin(gates, (0.0, 1.0)).mean() < 0.95, config


# -- the options in the compiled stack (_core.stacks) -------------------------------------------------

STACK_OPTIONS = [
    pytest.param(
        dict(cell="lstm", peephole=peephole, clip=clip, input_forget=input_forget),
        id=f"lstm-{'peep' if peephole else 'nopeep'}-clip{clip}-{'coupled' if input_forget else 'free'}",
    )
    for peephole, clip, input_forget in itertools.product([False, True], [0.0, 0.7], [False, True])
    if peephole or clip or input_forget
]
STACK_OPTIONS += [
    pytest.param(dict(cell="gru", clip=0.7), id="gru-clip0.7"),
    pytest.param(dict(cell="gru", linear_before_reset=False, clip=0.7), id="gru-lbr0-clip0.7"),
    pytest.param(dict(cell="rnn_tanh", clip=0.7), id="rnn_tanh-clip0.7"),
    pytest.param(dict(cell="rnn_relu", clip=0.7), id="rnn_relu-clip0.7"),
]


def make_stack(hidden, layers, bidirectional, dtype, options, seed, input_size=4, scale=0.8):
    """A compiled stack of the cell and options ``options`` (``_core.StackConfig``'s keywords), with
    weights drawn from N(0, scale^2)."""
    config = _core.StackConfig(
        input_size=input_size, hidden_size=hidden, num_layers=layers, bidirectional=bidirectional, **options
    )
    stack = _core.stacks[np.dtype(dtype).name](config)
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal(shape) * scale).astype(dtype) for shape in stack.param_shapes()]
    stack.set_weights(weights)
    return stack, weights


def test_stack_options_are_checked():
    with pytest.raises(ValueError, match="peephole"):
        _core.StackConfig(cell="gru", input_size=3, hidden_size=4, peephole=True)
    with pytest.raises(ValueError, match="input_forget"):
        _core.StackConfig(cell="rnn_relu", input_size=3, hidden_size=4, input_forget=True)
    for cell in ("lstm", "gru", "rnn_tanh"):
        with pytest.raises(ValueError, match="clip"):
            _core.StackConfig(cell=cell, input_size=3, hidden_size=4, clip=-1.0)


# ONNX's gate blocks from PyTorch's (the kernels'): LSTM i, f, g, o -> i, o, f, c; GRU r, z, n -> z, r, h.
ONNX_BLOCKS = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}


def onnx_node(options, weights, hidden, steps, batch, input_size):
    """A model of the one ONNX node with the stack's cell, options and (one direction's) weights."""
    helper = pytest.importorskip("onnx.helper")
    from onnx import TensorProto

    cell = options["cell"]
    w_ih, w_hh, b_ih, b_hh = weights[:4]

    def blocks(a):
        return np.concatenate([a[k * hidden : (k + 1) * hidden] for k in ONNX_BLOCKS[cell]])

    tensors = {
        "W": blocks(w_ih)[None],
        "R": blocks(w_hh)[None],
        "B": np.concatenate([blocks(b_ih), blocks(b_hh)])[None],
    }
    inputs = ["X", "W", "R", "B"]
    attrs = {"hidden_size": hidden}
    if cell == "lstm":
        attrs["input_forget"] = int(options["input_forget"])
        if options["peephole"]:  # ours i, f, o -> ONNX i, o, f
            p = weights[4]
            tensors["P"] = np.concatenate([p[:hidden], p[2 * hidden :], p[hidden : 2 * hidden]])[None]
            inputs += ["", "", "", "P"]
    if cell == "gru":
        attrs["linear_before_reset"] = int(options.get("linear_before_reset", True))
    if cell == "rnn_relu":
        attrs["activations"] = ["Relu"]
    if options["clip"]:
        attrs["clip"] = options["clip"]
    op = {"lstm": "LSTM", "gru": "GRU"}.get(cell, "RNN")
    node = helper.make_node(op, inputs, ["Y"], **attrs)
    graph = helper.make_graph(
        [node],
        op.lower(),
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, batch, input_size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=[
            helper.make_tensor(k, TensorProto.FLOAT, v.shape, v.ravel()) for k, v in tensors.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("options", STACK_OPTIONS)
@pytest.mark.parametrize("hidden", [5, 130], ids=["H5", "H130"])
def test_stack_forward_matches_onnxruntime(options, hidden):
    ort = pytest.importorskip("onnxruntime")
    steps, batch, input_size = 6, 3, 4
    # the GRU's and RNN's activations' inputs near the clip, whatever H
    scale = 0.8 if options["cell"] == "lstm" else 1.2 / np.sqrt(hidden)
    stack, weights = make_stack(hidden, 1, False, np.float32, options, seed=hidden, scale=scale)
    model = onnx_node(options, weights, hidden, steps, batch, input_size)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(7).standard_normal((steps, batch, input_size)) * 2).astype(np.float32)
    expected = session.run(["Y"], {"X": x})[0][:, 0]
    y = stack.forward(x)[0]
    assert_scaled_close(y, expected, *VS_ONNX_RUNTIME[np.float32], "against ONNX Runtime")
    if options["clip"]:  # the clip bounds some inputs here: without it, ONNX Runtime's numbers differ
        unclipped = onnx_node({**options, "clip": 0.0}, weights, hidden, steps, batch, input_size)
        plain = ort.InferenceSession(unclipped.SerializeToString(), providers=["CPUExecutionProvider"])
        assert np.abs(plain.run(["Y"], {"X": x})[0][:, 0] - expected).max() > 1e-2


@pytest.mark.parametrize("options", STACK_OPTIONS)
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)], ids=["L1", "L2-bidir"])
def test_stack_backward_matches_finite_differences(options, layers, bidirectional):
    steps, batch, hidden, input_size = 4, 3, 3, 4
    stack, weights = make_stack(hidden, layers, bidirectional, np.float64, options, seed=layers, scale=0.6)
    lstm = options["cell"] == "lstm"
    rng = np.random.default_rng(11)
    d = 2 if bidirectional else 1
    x = rng.standard_normal((steps, batch, input_size))
    h0 = rng.standard_normal((d * layers, batch, hidden)) * 0.5
    c0 = rng.standard_normal((d * layers, batch, hidden)) * 0.5 if lstm else None
    lengths = np.array([4, 1, 3])
    gy = rng.standard_normal((steps, batch, d * hidden))
    gh = rng.standard_normal(h0.shape)
    gc = rng.standard_normal(h0.shape) if lstm else None

    def loss(x_, h0_, c0_, ws):
        stack.set_weights(ws)
        y, h_n, c_n = stack.forward(x_, h0_, c0_, lengths)
        return float((y * gy).sum() + (h_n * gh).sum() + ((c_n * gc).sum() if lstm else 0.0))

    stack.set_weights(weights)
    saved = stack.forward_train(x, h0, c0, lengths)[3]
    gx, gh0, gc0, gparams = stack.backward(saved, gy, gh, gc)

    eps = FINITE_DIFFERENCE_STEP

    def numeric(array, rebuild):
        out = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += eps
            minus[index] -= eps
            out[index] = (loss(*rebuild(plus)) - loss(*rebuild(minus))) / (2 * eps)
        return out

    checks = [
        (gx, numeric(x, lambda a: (a, h0, c0, weights))),
        (gh0, numeric(h0, lambda a: (x, a, c0, weights))),
    ]
    if lstm:
        checks.append((gc0, numeric(c0, lambda a: (x, h0, a, weights))))
    for k, w in enumerate(weights):
        checks.append(
            (gparams[k], numeric(w, lambda a, k=k: (x, h0, c0, weights[:k] + [a] + weights[k + 1 :])))
        )
    for analytic, expected in checks:
        np.testing.assert_allclose(analytic, expected, **VS_FINITE_DIFFERENCES.kw())
    if options.get("input_forget"):  # the forget gate's rows are unused: their gradient is exactly zero
        assert not gparams[0][hidden : 2 * hidden].any()


@pytest.mark.parametrize("options", STACK_OPTIONS)
def test_stack_thread_count_does_not_change_results(options):
    stack, _ = make_stack(130, 2, True, np.float32, options, seed=3, input_size=16, scale=0.2)
    x = np.random.default_rng(5).standard_normal((7, 4, 16)).astype(np.float32)
    gy = np.random.default_rng(6).standard_normal((7, 4, 260)).astype(np.float32)
    results = []
    before = _core.get_num_threads()
    try:
        for threads in (1, 2):
            _core.set_num_threads(threads)
            y, h_n, c_n, saved = stack.forward_train(x, None, None, np.array([7, 2, 5, 1]))
            grads = stack.backward(saved, gy)
            results.append((y, h_n, *(a for a in (c_n, *grads[:3]) if a is not None), *grads[3]))
    finally:
        _core.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("options", STACK_OPTIONS)
def test_stack_backward_directional_derivative_across_slices(options):
    """H=130 spreads the hidden units over several slices (and threads): check the whole gradient at
    once along a random direction, <grad, v> against a central difference of the float64 kernels."""
    steps, batch, hidden, input_size = 5, 2, 130, 6
    stack, weights = make_stack(
        hidden, 2, True, np.float64, options, seed=9, input_size=input_size, scale=0.15
    )
    rng = np.random.default_rng(13)
    x = rng.standard_normal((steps, batch, input_size))
    lengths = np.array([5, 3])
    gy = rng.standard_normal((steps, batch, 2 * hidden))
    saved = stack.forward_train(x, None, None, lengths)[3]
    gx, _, _, gparams = stack.backward(saved, gy)
    vx = rng.standard_normal(x.shape)
    vw = [rng.standard_normal(w.shape) for w in weights]
    analytic = float((gx * vx).sum() + sum((g * v).sum() for g, v in zip(gparams, vw)))

    def loss(t):
        stack.set_weights([w + t * v for w, v in zip(weights, vw)])
        return float((stack.forward(x + t * vx, None, None, lengths)[0] * gy).sum())

    eps = FINITE_DIFFERENCE_STEP
    numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    assert abs(analytic - numeric) <= DIRECTIONAL_DERIVATIVE * max(1.0, abs(numeric))
