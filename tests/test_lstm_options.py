"""The LSTM options beyond PyTorch's (ONNX's LSTM): peepholes, clip and the coupled input-forget gate.

They run in the compiled stack (``fusedrnn._core.Stack(..., peephole=, clip=, input_forget=)``): the
forward pass is checked against ONNX Runtime's LSTM on the same weights, the backward pass against
central differences of the float64 kernels themselves.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fusedrnn import _core

OPTIONS = [
    pytest.param(
        peephole,
        clip,
        input_forget,
        id=f"{'peep' if peephole else 'nopeep'}-clip{clip}-{'coupled' if input_forget else 'free'}",
    )
    for peephole, clip, input_forget in itertools.product([False, True], [0.0, 0.7], [False, True])
    if peephole or clip or input_forget
]


def make_stack(
    hidden, layers, bidirectional, dtype, peephole, clip, input_forget, seed, input_size=4, scale=0.8
):
    stack = _core.Stack(
        "lstm",
        input_size,
        hidden,
        layers,
        True,
        bidirectional,
        0,
        True,
        dtype == np.float64,
        False,
        peephole,
        clip,
        input_forget,
    )
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal(shape) * scale).astype(dtype) for shape in stack.param_shapes()]
    stack.set_weights(weights)
    return stack, weights


def test_options_are_lstm_only():
    with pytest.raises(ValueError, match="peephole"):
        _core.Stack("gru", 3, 4, 1, True, False, 0, True, False, False, True, 0.0, False)
    with pytest.raises(ValueError, match="clip"):
        _core.Stack("lstm", 3, 4, 1, True, False, 0, True, False, False, False, -1.0, False)


@pytest.mark.parametrize("peephole, clip, input_forget", OPTIONS)
@pytest.mark.parametrize("hidden", [5, 130], ids=["H5", "H130"])
def test_forward_matches_onnxruntime(peephole, clip, input_forget, hidden):
    ort = pytest.importorskip("onnxruntime")
    helper = pytest.importorskip("onnx.helper")
    from onnx import TensorProto

    steps, batch, input_size = 6, 3, 4
    stack, weights = make_stack(hidden, 1, False, np.float32, peephole, clip, input_forget, seed=hidden)
    w_ih, w_hh, b_ih, b_hh = weights[:4]
    order = [0, 3, 1, 2]  # ONNX gate blocks i, o, f, c from PyTorch's i, f, g, o

    def blocks(a):
        return np.concatenate([a[k * hidden : (k + 1) * hidden] for k in order])

    tensors = {
        "W": blocks(w_ih)[None],
        "R": blocks(w_hh)[None],
        "B": np.concatenate([blocks(b_ih), blocks(b_hh)])[None],
    }
    inputs = ["X", "W", "R", "B"]
    if peephole:  # ours i, f, o -> ONNX i, o, f
        p = weights[4]
        tensors["P"] = np.concatenate([p[:hidden], p[2 * hidden :], p[hidden : 2 * hidden]])[None]
        inputs += ["", "", "", "P"]
    attrs = {"hidden_size": hidden, "input_forget": int(input_forget)}
    if clip:
        attrs["clip"] = clip
    node = helper.make_node("LSTM", inputs, ["Y"], **attrs)
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, batch, input_size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=[
            helper.make_tensor(k, TensorProto.FLOAT, v.shape, v.ravel()) for k, v in tensors.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(7).standard_normal((steps, batch, input_size)) * 2).astype(np.float32)
    expected = session.run(["Y"], {"X": x})[0][:, 0]
    y = stack.forward(x)[0]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("peephole, clip, input_forget", OPTIONS)
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)], ids=["L1", "L2-bidir"])
def test_backward_matches_finite_differences(peephole, clip, input_forget, layers, bidirectional):
    steps, batch, hidden, input_size = 4, 3, 3, 4
    stack, weights = make_stack(
        hidden, layers, bidirectional, np.float64, peephole, clip, input_forget, seed=layers, scale=0.6
    )
    rng = np.random.default_rng(11)
    d = 2 if bidirectional else 1
    x = rng.standard_normal((steps, batch, input_size))
    h0 = rng.standard_normal((d * layers, batch, hidden)) * 0.5
    c0 = rng.standard_normal((d * layers, batch, hidden)) * 0.5
    lengths = np.array([4, 1, 3])
    gy = rng.standard_normal((steps, batch, d * hidden))
    gh = rng.standard_normal(h0.shape)
    gc = rng.standard_normal(c0.shape)

    def loss(x_, h0_, c0_, ws):
        stack.set_weights(ws)
        y, h_n, c_n = stack.forward(x_, h0_, c0_, lengths)
        return float((y * gy).sum() + (h_n * gh).sum() + (c_n * gc).sum())

    stack.set_weights(weights)
    saved = stack.forward_train(x, h0, c0, lengths)[3]
    gx, gh0, gc0, gparams = stack.backward(saved, gy, gh, gc)

    eps = 1e-6

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
        (gc0, numeric(c0, lambda a: (x, h0, a, weights))),
    ]
    for k, w in enumerate(weights):
        checks.append(
            (gparams[k], numeric(w, lambda a, k=k: (x, h0, c0, weights[:k] + [a] + weights[k + 1 :])))
        )
    for analytic, expected in checks:
        np.testing.assert_allclose(analytic, expected, rtol=1e-6, atol=1e-8)
    if input_forget:  # the forget gate's rows are unused: their gradient is exactly zero
        assert not gparams[0][hidden : 2 * hidden].any()


@pytest.mark.parametrize("peephole, clip, input_forget", OPTIONS)
def test_thread_count_does_not_change_results(peephole, clip, input_forget):
    stack, _ = make_stack(
        130, 2, True, np.float32, peephole, clip, input_forget, seed=3, input_size=16, scale=0.2
    )
    x = np.random.default_rng(5).standard_normal((7, 4, 16)).astype(np.float32)
    gy = np.random.default_rng(6).standard_normal((7, 4, 260)).astype(np.float32)
    results = []
    before = _core.get_num_threads()
    try:
        for threads in (1, 2):
            _core.set_num_threads(threads)
            y, h_n, c_n, saved = stack.forward_train(x, None, None, np.array([7, 2, 5, 1]))
            results.append((y, h_n, c_n, *stack.backward(saved, gy)[:3], *stack.backward(saved, gy)[3]))
    finally:
        _core.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("peephole, clip, input_forget", OPTIONS)
def test_backward_directional_derivative_across_slices(peephole, clip, input_forget):
    """H=130 spreads the hidden units over several slices (and threads): check the whole gradient at
    once along a random direction, <grad, v> against a central difference of the float64 kernels."""
    steps, batch, hidden, input_size = 5, 2, 130, 6
    stack, weights = make_stack(
        hidden, 2, True, np.float64, peephole, clip, input_forget, seed=9, input_size=input_size, scale=0.15
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

    eps = 1e-6
    numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric))
