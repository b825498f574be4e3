"""The NumPy reference against finite differences, against its own semantics, and against PyTorch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fusedrnn import reference as ref
from fusedrnn._config import StackConfig
from tolerances import (
    FINITE_DIFFERENCE_STEP,
    REFERENCE_REGROUPED,
    REFERENCE_VS_TORCH,
    REFERENCE_ZERO_INPUT,
    VS_FINITE_DIFFERENCES,
)

# Tiny sizes keep the finite-difference checks fast: T steps, N batch, IN inputs, H hidden, P projection.
T, N, IN, H, P = 4, 3, 3, 3, 2
# Ragged lengths: one sequence of full length T, one of length 1, one in between.
RAGGED = np.array([T, 1, 2], dtype=np.int64)

EPS = FINITE_DIFFERENCE_STEP
RTOL, ATOL = VS_FINITE_DIFFERENCES

# cell variant id -> StackConfig keyword arguments
CELLS = {
    "rnn_tanh": {"cell": "rnn_tanh"},
    "rnn_relu": {"cell": "rnn_relu"},
    "lstm": {"cell": "lstm"},
    "lstm-proj": {"cell": "lstm", "proj_size": P},
    "gru-lbr": {"cell": "gru", "linear_before_reset": True},
    "gru-resetbefore": {"cell": "gru", "linear_before_reset": False},
}


def make_config(
    variant: str,
    num_layers: int = 1,
    bidirectional: bool = False,
    bias: bool = True,
    input_size: int = IN,
    hidden_size: int = H,
) -> StackConfig:
    return StackConfig(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        **CELLS[variant],
    )


def make_params(config: StackConfig, rng: np.random.Generator, scale: float = 0.6) -> dict[str, np.ndarray]:
    return {name: rng.uniform(-scale, scale, shape) for name, shape in config.param_shapes()}


def make_inputs(
    config: StackConfig,
    rng: np.random.Generator,
    *,
    states: bool,
    lengths: bool,
    dropout: bool,
    steps: int = T,
    batch: int = N,
) -> dict:
    """Random x (and optionally h0, c0, ragged lengths, dropout masks) for ``config``."""
    dl = config.num_layers * config.num_directions
    out = {"x": rng.standard_normal((steps, batch, config.input_size))}
    if states:
        out["h0"] = 0.5 * rng.standard_normal((dl, batch, config.output_size))
        if config.has_cell_state:
            out["c0"] = 0.5 * rng.standard_normal((dl, batch, config.hidden_size))
    if lengths:
        out["lengths"] = RAGGED.copy()
    if dropout:
        keep = 0.7
        shape = (steps, batch, config.num_directions * config.output_size)
        out["dropout_masks"] = [(rng.random(shape) < keep) / keep for _ in range(config.num_layers - 1)]
    return out


def make_cotangents(config: StackConfig, rng: np.random.Generator, steps: int = T, batch: int = N) -> dict:
    dl = config.num_layers * config.num_directions
    out = {
        "grad_y": rng.standard_normal((steps, batch, config.num_directions * config.output_size)),
        "grad_h_n": rng.standard_normal((dl, batch, config.output_size)),
    }
    if config.has_cell_state:
        out["grad_c_n"] = rng.standard_normal((dl, batch, config.hidden_size))
    return out


def loss_of(config, params, inputs, cot) -> float:
    """sum(y * Gy) + sum(h_n * Gh) (+ sum(c_n * Gc)): the scalar whose gradient backward computes."""
    y, h_n, c_n, _ = ref.forward(config, params, **inputs)
    total = np.sum(y * cot["grad_y"]) + np.sum(h_n * cot["grad_h_n"])
    if c_n is not None:
        total += np.sum(c_n * cot["grad_c_n"])
    return float(total)


def numerical_gradient(f, arr: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of ``arr`` (perturbed in place)."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        f_plus = f()
        arr[idx] = old - eps
        f_minus = f()
        arr[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def min_abs_preactivation(cache: ref.ForwardCache) -> float:
    """Smallest |a| over every RNN pre-activation the forward pass computed (active rows only)."""
    return min(
        float(np.min(np.abs(rec.cache.pre)))
        for layer in cache.steps
        for direction in layer
        for rec in direction
    )


def grad_check_cases():
    """Every cell x layers x direction x bias, each without options ("plain") and with initial states,
    ragged lengths and (two layers) dropout masks together ("all"); plus each option alone for two
    layouts, so a failure points at the option."""
    for variant, layers, bidir, bias in itertools.product(CELLS, (1, 2), (False, True), (True, False)):
        for mode in ("plain", "all"):
            yield variant, layers, bidir, bias, mode
    for variant in CELLS:
        for mode in ("states", "lengths"):
            yield variant, 1, False, True, mode
        for mode in ("states", "lengths", "dropout"):
            yield variant, 2, True, True, mode


def _case_id(case) -> str:
    variant, layers, bidir, bias, mode = case
    direction = "bidir" if bidir else "unidir"
    return "-".join([variant, f"L{layers}", direction, "bias" if bias else "nobias", mode])


GRAD_CASES = list(grad_check_cases())


@pytest.mark.parametrize("case", GRAD_CASES, ids=[_case_id(c) for c in GRAD_CASES])
def test_gradients_match_finite_differences(case):
    variant, layers, bidir, bias, mode = case
    config = make_config(variant, layers, bidir, bias)
    options = {
        "states": mode in ("states", "all"),
        "lengths": mode in ("lengths", "all"),
        "dropout": mode in ("dropout", "all") and layers > 1,
    }
    # relu has a kink at 0 where the central difference straddles two slopes and means nothing.
    # For rnn_relu, draw seeds until every pre-activation is at least 1e-3 away from 0: a perturbation
    # of EPS = 1e-6 moves a pre-activation by about EPS times a weight of order 1, far less than that.
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        params = make_params(config, rng)
        inputs = make_inputs(config, rng, **options)
        cot = make_cotangents(config, rng)
        y, h_n, c_n, cache = ref.forward(config, params, **inputs)
        if config.cell != "rnn_relu" or min_abs_preactivation(cache) > 1e-3:
            break
    else:  # pragma: no cover
        pytest.fail("no seed keeps relu pre-activations away from the kink")

    grad_x, grad_h0, grad_c0, grad_params = ref.backward(cache, **cot)
    assert list(grad_params) == config.param_names()

    def f():
        return loss_of(config, params, inputs, cot)

    # The initial states are checked even when they were not given (as zeros), since grad_h0 is returned.
    if "h0" not in inputs:
        inputs["h0"] = np.zeros_like(grad_h0)
        if config.has_cell_state:
            inputs["c0"] = np.zeros_like(grad_c0)

    np.testing.assert_allclose(
        grad_x, numerical_gradient(f, inputs["x"]), rtol=RTOL, atol=ATOL, err_msg="grad_x"
    )
    np.testing.assert_allclose(
        grad_h0, numerical_gradient(f, inputs["h0"]), rtol=RTOL, atol=ATOL, err_msg="grad_h0"
    )
    if config.has_cell_state:
        np.testing.assert_allclose(
            grad_c0, numerical_gradient(f, inputs["c0"]), rtol=RTOL, atol=ATOL, err_msg="grad_c0"
        )
    else:
        assert grad_c0 is None and c_n is None
    for name in config.param_names():
        np.testing.assert_allclose(
            grad_params[name], numerical_gradient(f, params[name]), rtol=RTOL, atol=ATOL, err_msg=name
        )
    if options["lengths"]:
        # past a sequence's end the input is never read
        for j, length in enumerate(inputs["lengths"]):
            assert not np.any(grad_x[length:, j])


# --------------------------------------------------------------------------------------------------
# semantics

SEMANTIC_VARIANTS = list(CELLS)


@pytest.mark.parametrize("bidir", [False, True], ids=["unidir", "bidir"])
@pytest.mark.parametrize("variant", SEMANTIC_VARIANTS)
def test_lengths_match_running_each_sequence_alone(variant, bidir):
    config = make_config(variant, num_layers=2, bidirectional=bidir)
    rng = np.random.default_rng(1)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, states=True, lengths=True, dropout=True)
    y, h_n, c_n, _ = ref.forward(config, params, **inputs)
    for j, length in enumerate(inputs["lengths"]):
        assert not np.any(y[length:, j]), "y must be zero past the sequence's end"
        alone = {
            "x": inputs["x"][:length, j : j + 1],
            "h0": inputs["h0"][:, j : j + 1],
            "dropout_masks": [m[:length, j : j + 1] for m in inputs["dropout_masks"]],
        }
        if config.has_cell_state:
            alone["c0"] = inputs["c0"][:, j : j + 1]
        y1, h1, c1, _ = ref.forward(config, params, **alone)
        np.testing.assert_allclose(y[:length, j : j + 1], y1, **REFERENCE_REGROUPED.kw())
        np.testing.assert_allclose(h_n[:, j : j + 1], h1, **REFERENCE_REGROUPED.kw())
        if config.has_cell_state:
            np.testing.assert_allclose(c_n[:, j : j + 1], c1, **REFERENCE_REGROUPED.kw())


@pytest.mark.parametrize("variant", SEMANTIC_VARIANTS)
def test_final_states_are_taken_at_the_right_steps(variant):
    """Forward h_n = output at the last valid step; reverse h_n = output at step 0 (state after it)."""
    config = make_config(variant, num_layers=1, bidirectional=True)
    rng = np.random.default_rng(2)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, states=True, lengths=True, dropout=False)
    y, h_n, _, _ = ref.forward(config, params, **inputs)
    ho = config.output_size
    for j, length in enumerate(inputs["lengths"]):
        np.testing.assert_array_equal(h_n[0, j], y[length - 1, j, :ho])
        np.testing.assert_array_equal(h_n[1, j], y[0, j, ho:])
    # the reverse direction of a sequence starts at its own last step: its output there does not
    # depend on anything past the end (padding)
    x2 = inputs["x"].copy()
    for j, length in enumerate(inputs["lengths"]):
        x2[length:, j] = rng.standard_normal(x2[length:, j].shape)
    y2, h_n2, _, _ = ref.forward(config, params, **{**inputs, "x": x2})
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(h_n, h_n2)


@pytest.mark.parametrize("variant", SEMANTIC_VARIANTS)
def test_dropout_masks_of_ones_equal_no_masks(variant):
    config = make_config(variant, num_layers=3, bidirectional=True)
    rng = np.random.default_rng(3)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, states=True, lengths=True, dropout=False)
    cot = make_cotangents(config, rng)
    ones = [np.ones((T, N, 2 * config.output_size)) for _ in range(2)]
    out_a = ref.forward(config, params, **inputs)
    out_b = ref.forward(config, params, **inputs, dropout_masks=ones)
    for a, b in zip(out_a[:3], out_b[:3]):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)
    grads_a = ref.backward(out_a[3], **cot)
    grads_b = ref.backward(out_b[3], **cot)
    for a, b in zip(grads_a[:3], grads_b[:3]):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)
    for name in config.param_names():
        np.testing.assert_array_equal(grads_a[3][name], grads_b[3][name])


def test_dropout_mask_is_applied_between_layers():
    """A mask zeroing all of layer 0's output makes layer 1 see zero input (and x get zero gradient)."""
    config = make_config("gru-lbr", num_layers=2)
    rng = np.random.default_rng(4)
    params = make_params(config, rng)
    x = rng.standard_normal((T, N, IN))
    masks = [np.zeros((T, N, H))]
    y, h_n, _, cache = ref.forward(config, params, x, dropout_masks=masks)
    y_layer1, _, _, _ = ref.forward(
        make_config("gru-lbr", input_size=H),
        {k.replace("_l1", "_l0"): v for k, v in params.items() if "_l1" in k},
        np.zeros((T, N, H)),
    )
    np.testing.assert_allclose(y, y_layer1, **REFERENCE_ZERO_INPUT.kw())
    # with the mask zero, the gradient of y (and of layer 1's h_n) does not reach x
    grad_x = ref.backward(cache, np.ones_like(y), np.stack([np.zeros_like(h_n[0]), np.ones_like(h_n[1])]))[0]
    assert not np.any(grad_x)


def test_missing_cotangents_mean_zero():
    config = make_config("lstm-proj", num_layers=2, bidirectional=True)
    rng = np.random.default_rng(5)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, states=True, lengths=True, dropout=False)
    y, h_n, c_n, cache = ref.forward(config, params, **inputs)
    gy = rng.standard_normal(y.shape)
    a = ref.backward(cache, gy)
    b = ref.backward(cache, gy, np.zeros_like(h_n), np.zeros_like(c_n))
    for u, v in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(u, v)


def test_float32_inputs_compute_in_float32_and_float64_wins():
    config = make_config("lstm")
    rng = np.random.default_rng(6)
    params32 = {k: v.astype(np.float32) for k, v in make_params(config, rng).items()}
    x32 = rng.standard_normal((T, N, IN)).astype(np.float32)
    y, h_n, c_n, cache = ref.forward(config, params32, x32)
    assert y.dtype == h_n.dtype == c_n.dtype == np.float32
    grads = ref.backward(cache, np.ones_like(y))
    assert grads[0].dtype == np.float32 and all(g.dtype == np.float32 for g in grads[3].values())
    y64, _, _, _ = ref.forward(config, params32, x32.astype(np.float64))
    assert y64.dtype == np.float64


def test_rejects_bad_arguments():
    config = make_config("gru-lbr", num_layers=2)
    rng = np.random.default_rng(7)
    params = make_params(config, rng)
    x = rng.standard_normal((T, N, IN))
    with pytest.raises(ValueError, match="lengths"):
        ref.forward(config, params, x, lengths=np.array([T + 1, 1, 1]))
    with pytest.raises(ValueError, match="lengths"):
        ref.forward(config, params, x, lengths=np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="h0"):
        ref.forward(config, params, x, h0=np.zeros((1, N, H)))
    with pytest.raises(ValueError, match="c0"):
        ref.forward(config, params, x, c0=np.zeros((2, N, H)))
    with pytest.raises(ValueError, match="dropout_masks"):
        ref.forward(config, params, x, dropout_masks=[])
    with pytest.raises(ValueError, match="params"):
        ref.forward(config, {k: v for k, v in params.items() if k != "bias_hh_l1"}, x)
    with pytest.raises(ValueError, match="weight_ih_l1"):
        ref.forward(config, {**params, "weight_ih_l1": np.zeros((3 * H, IN + 1))}, x)


# --------------------------------------------------------------------------------------------------
# parity with PyTorch

TORCH_VARIANTS = ["rnn_tanh", "rnn_relu", "lstm", "lstm-proj", "gru-lbr"]


def _torch_module(torch, config: StackConfig):
    kw = {
        "input_size": config.input_size,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_layers,
        "bias": config.bias,
        "bidirectional": config.bidirectional,
    }
    if config.cell == "lstm":
        return torch.nn.LSTM(proj_size=config.proj_size, **kw)
    if config.cell == "gru":
        return torch.nn.GRU(**kw)
    return torch.nn.RNN(nonlinearity=config.cell[4:], **kw)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layout", [(1, False), (2, True)], ids=["L1-unidir", "L2-bidir"])
@pytest.mark.parametrize("variant", TORCH_VARIANTS)
def test_matches_torch(variant, layout, bias, lengths):
    torch = pytest.importorskip("torch")
    layers, bidir = layout
    config = make_config(variant, layers, bidir, bias, input_size=4, hidden_size=4)
    torch.manual_seed(0)
    module = _torch_module(torch, config).double()
    params = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    assert list(params) == config.param_names()

    rng = np.random.default_rng(8)
    inputs = make_inputs(config, rng, states=True, lengths=lengths, dropout=False)
    cot = make_cotangents(config, rng)
    y, h_n, c_n, cache = ref.forward(config, params, **inputs)
    grad_x, grad_h0, grad_c0, grad_params = ref.backward(cache, **cot)

    x_t = torch.tensor(inputs["x"], requires_grad=True)
    h0_t = torch.tensor(inputs["h0"], requires_grad=True)
    c0_t = torch.tensor(inputs["c0"], requires_grad=True) if config.has_cell_state else None
    state = (h0_t, c0_t) if config.has_cell_state else h0_t
    if lengths:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x_t, torch.tensor(inputs["lengths"]), enforce_sorted=False
        )
        out_packed, state_out = module(packed, state)
        y_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_packed, total_length=T)
    else:
        y_t, state_out = module(x_t, state)
    h_n_t, c_n_t = state_out if config.has_cell_state else (state_out, None)

    tol = REFERENCE_VS_TORCH.kw()
    np.testing.assert_allclose(y, y_t.detach().numpy(), **tol)
    np.testing.assert_allclose(h_n, h_n_t.detach().numpy(), **tol)
    loss = (y_t * torch.tensor(cot["grad_y"])).sum() + (h_n_t * torch.tensor(cot["grad_h_n"])).sum()
    if config.has_cell_state:
        np.testing.assert_allclose(c_n, c_n_t.detach().numpy(), **tol)
        loss = loss + (c_n_t * torch.tensor(cot["grad_c_n"])).sum()
    loss.backward()

    np.testing.assert_allclose(grad_x, x_t.grad.numpy(), err_msg="grad_x", **tol)
    np.testing.assert_allclose(grad_h0, h0_t.grad.numpy(), err_msg="grad_h0", **tol)
    if config.has_cell_state:
        np.testing.assert_allclose(grad_c0, c0_t.grad.numpy(), err_msg="grad_c0", **tol)
    for name, param in module.named_parameters():
        np.testing.assert_allclose(grad_params[name], param.grad.numpy(), err_msg=name, **tol)


def _torch_gru_reset_before(torch, w_ih, w_hh, b_ih, b_hh, x, h, reverse):
    """One direction of the reset-before GRU, written from the formula
    n = tanh(W_n x + b_in + U_n (r * h) + b_hn), h' = (1 - z) * n + z * h."""
    hs = h.shape[1]
    outputs = [None] * x.shape[0]
    times = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    for t in times:
        ai = x[t] @ w_ih.T + b_ih
        r = torch.sigmoid(ai[:, :hs] + h @ w_hh[:hs].T + b_hh[:hs])
        z = torch.sigmoid(ai[:, hs : 2 * hs] + h @ w_hh[hs : 2 * hs].T + b_hh[hs : 2 * hs])
        n = torch.tanh(ai[:, 2 * hs :] + (r * h) @ w_hh[2 * hs :].T + b_hh[2 * hs :])
        h = (1 - z) * n + z * h
        outputs[t] = h
    return torch.stack(outputs), h


def test_gru_reset_before_matches_torch_formula():
    torch = pytest.importorskip("torch")
    config = make_config("gru-resetbefore", num_layers=1, bidirectional=True)
    rng = np.random.default_rng(9)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, states=True, lengths=False, dropout=False)
    cot = make_cotangents(config, rng)
    y, h_n, _, cache = ref.forward(config, params, **inputs)
    grad_x, grad_h0, _, grad_params = ref.backward(cache, **cot)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x_t = torch.tensor(inputs["x"], requires_grad=True)
    h0_t = torch.tensor(inputs["h0"], requires_grad=True)
    ys, hs = [], []
    for direction, sfx in enumerate(["_l0", "_l0_reverse"]):
        y_d, h_d = _torch_gru_reset_before(
            torch,
            tp["weight_ih" + sfx],
            tp["weight_hh" + sfx],
            tp["bias_ih" + sfx],
            tp["bias_hh" + sfx],
            x_t,
            h0_t[direction],
            reverse=direction == 1,
        )
        ys.append(y_d)
        hs.append(h_d)
    y_t, h_n_t = torch.cat(ys, dim=2), torch.stack(hs)
    tol = REFERENCE_VS_TORCH.kw()
    np.testing.assert_allclose(y, y_t.detach().numpy(), **tol)
    np.testing.assert_allclose(h_n, h_n_t.detach().numpy(), **tol)
    loss = (y_t * torch.tensor(cot["grad_y"])).sum() + (h_n_t * torch.tensor(cot["grad_h_n"])).sum()
    loss.backward()
    np.testing.assert_allclose(grad_x, x_t.grad.numpy(), err_msg="grad_x", **tol)
    np.testing.assert_allclose(grad_h0, h0_t.grad.numpy(), err_msg="grad_h0", **tol)
    for name, value in tp.items():
        np.testing.assert_allclose(grad_params[name], value.grad.numpy(), err_msg=name, **tol)
