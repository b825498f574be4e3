"""The layer-normalized LSTM and GRU of the NumPy reference: against central differences, against the same
equations written with torch.nn.functional.layer_norm and autograd, and against properties of the
normalization that a wrong implementation breaks."""

from __future__ import annotations

import numpy as np
import pytest

from closeness import assert_scaled_close
from fusedrnn import reference as ref
from fusedrnn._config import StackConfig
from tolerances import (
    FINITE_DIFFERENCE_STEP,
    REFERENCE_REGROUPED,
    VS_FINITE_DIFFERENCES,
    VS_TORCH,
)

# Tiny sizes keep the central differences fast: T steps, N batch, IN inputs, H hidden.
T, N, IN, H = 4, 3, 3, 2
# Ragged lengths: one sequence of full length T, one of length 1, one in between.
RAGGED = np.array([T, 1, 2], dtype=np.int64)
EPS = 1e-5  # the normalization's epsilon, as the reference documents it (PyTorch's default)

# Float64 central differences with a step of 1e-6: truncation error ~ step^2 * f''' ~ 1e-12 and rounding
# ~ 1e-16 * |L| / step ~ 1e-10, so the gradients agree to ~1e-7 relative; VS_FINITE_DIFFERENCES is
# (rtol 1e-6, atol 1e-8), the project's bound for every float64 gradient checked this way.
STEP = FINITE_DIFFERENCE_STEP
RTOL, ATOL = VS_FINITE_DIFFERENCES
# Except around h0 = 0: there h0 U^T is a zero row, which the normalization divides by sqrt(eps) ~ 3e-3,
# so the loss curves on a scale of sqrt(eps) / |U| there, and a step of 1e-6 is off by ~1e-5 relative
# (measured: the error falls as step^2, 2e-2 at 1e-5, 2e-4 at 1e-6, 2e-6 at 1e-7). A step of 1e-8 brings
# the truncation to ~1e-9 relative while rounding stays ~1e-16 * |L| / 1e-8 ~ 1e-7 absolute.
STEP_AT_ZERO_ROW = 1e-8


def make_config(cell: str, num_layers: int = 1, bidirectional: bool = False, **options) -> StackConfig:
    return StackConfig(
        cell,
        IN,
        H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        layer_norm=True,
        **options,
    )


def make_params(config: StackConfig, rng: np.random.Generator, gain: float = 1.0) -> dict[str, np.ndarray]:
    """Random weights and biases; the gains ln_weight_* drawn in gain * [0.5, 1.5] and ln_bias_c in
    [-0.6, 0.6], so that a gradient that mixes up a gain with 1 or the shift with 0 shows."""
    params = {}
    for name, shape in config.param_shapes():
        if name.startswith("ln_weight_"):
            params[name] = gain * rng.uniform(0.5, 1.5, shape)
        else:
            params[name] = rng.uniform(-0.6, 0.6, shape)
    return params


def make_inputs(config: StackConfig, rng: np.random.Generator, *, states: bool, stack: bool) -> dict:
    """x, and (states) random h0, c0; (stack) ragged lengths and dropout masks between the layers."""
    dl = config.num_layers * config.num_directions
    inputs = {"x": rng.standard_normal((T, N, IN))}
    if states:
        inputs["h0"] = 0.5 * rng.standard_normal((dl, N, H))
        if config.has_cell_state:
            inputs["c0"] = 0.5 * rng.standard_normal((dl, N, H))
    if stack:
        inputs["lengths"] = RAGGED.copy()
        keep = 0.7
        shape = (T, N, config.num_directions * H)
        inputs["dropout_masks"] = [(rng.random(shape) < keep) / keep for _ in range(config.num_layers - 1)]
    return inputs


def make_cotangents(config: StackConfig, rng: np.random.Generator) -> dict:
    dl = config.num_layers * config.num_directions
    cot = {
        "grad_y": rng.standard_normal((T, N, config.num_directions * H)),
        "grad_h_n": rng.standard_normal((dl, N, H)),
    }
    if config.has_cell_state:
        cot["grad_c_n"] = rng.standard_normal((dl, N, H))
    return cot


def loss_of(config, params, inputs, cot) -> float:
    """sum(y * Gy) + sum(h_n * Gh) (+ sum(c_n * Gc)): the scalar whose gradient backward computes."""
    y, h_n, c_n, _ = ref.forward(config, params, **inputs)
    total = np.sum(y * cot["grad_y"]) + np.sum(h_n * cot["grad_h_n"])
    if c_n is not None:
        total += np.sum(c_n * cot["grad_c_n"])
    return float(total)


def numerical_gradient(f, arr: np.ndarray, step: float = STEP) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of ``arr`` (perturbed in place)."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + step
        f_plus = f()
        arr[idx] = old - step
        f_minus = f()
        arr[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * step)
    return grad


def hard_gate_outputs(cache: ref.ForwardCache) -> np.ndarray:
    """Every sigmoid gate's output the forward pass computed (i, f, o of the LSTM; r, z of the GRU)."""
    values = []
    for layer in cache.steps:
        for direction in layer:
            for record in direction:
                step = record.cache
                if isinstance(step, ref.LayerNormLSTMStepCache):
                    values += [step.i, step.f, step.o]
                else:
                    values += [step.gates.r, step.gates.z]
    return np.concatenate([v.ravel() for v in values])


def hard_gates_fit_central_differences(cache: ref.ForwardCache) -> bool:
    """Whether the hard sigmoid's kinks (at a = -3 and 3, where it reaches 0 and 1) are out of reach of
    the central differences, and both of its pieces are exercised: each gate is saturated (exactly 0 or
    1) or at least 1e-3 / 6 inside (0, 1), i.e. its input at least 1e-3 from a kink, far more than a step
    of 1e-6 times a weight of order 1 moves it; and some gates are saturated, some not."""
    gates = hard_gate_outputs(cache)
    saturated = (gates == 0) | (gates == 1)
    margin = 1e-3 / 6
    inside = (gates > margin) & (gates < 1 - margin)
    return bool(np.all(saturated | inside) and saturated.any() and inside.any())


# (id, cell, StackConfig options, num_layers, bidirectional, states, stack)
GRAD_CASES = [
    ("lstm-L1", "lstm", {}, 1, False, True, False),
    ("lstm-L1-zero-states", "lstm", {}, 1, False, False, False),
    ("lstm-L1-nobias", "lstm", {"bias": False}, 1, False, True, False),
    ("lstm-L1-hard", "lstm", {"hard_gates": True}, 1, False, True, False),
    ("lstm-L2-bidir-lengths-dropout-residual", "lstm", {"residual": True}, 2, True, True, True),
    ("gru-L1", "gru", {}, 1, False, True, False),
    ("gru-L1-zero-states", "gru", {}, 1, False, False, False),
    ("gru-L1-nobias", "gru", {"bias": False}, 1, False, True, False),
    ("gru-L1-hard", "gru", {"hard_gates": True}, 1, False, True, False),
    ("gru-L2-bidir-lengths-dropout-residual", "gru", {"residual": True}, 2, True, True, True),
    ("lstm-L2-bidir-lengths-hard", "lstm", {"hard_gates": True}, 2, True, True, True),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[case[0] for case in GRAD_CASES])
def test_gradients_match_central_differences(case):
    _, cell, options, layers, bidir, states, stack = case
    config = make_config(cell, layers, bidir, **options)
    hard = config.hard_gates
    # Hard gates: gains of 1 to 3 push some gate inputs past +-3 (saturated); seeds are drawn until no
    # gate input sits at a kink (see hard_gates_fit_central_differences).
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        params = make_params(config, rng, gain=2.0 if hard else 1.0)
        inputs = make_inputs(config, rng, states=states, stack=stack)
        cot = make_cotangents(config, rng)
        _, _, c_n, cache = ref.forward(config, params, **inputs)
        if not hard or hard_gates_fit_central_differences(cache):
            break
    else:  # pragma: no cover
        pytest.fail("no seed keeps the hard gates' inputs away from their kinks")

    grad_x, grad_h0, grad_c0, grad_params = ref.backward(cache, **cot)
    assert list(grad_params) == config.param_names()
    ln_roles = {"ln_weight_ih", "ln_weight_hh"} | ({"ln_weight_c", "ln_bias_c"} if cell == "lstm" else set())
    assert {name.split("_l")[0] for name in grad_params} >= ln_roles

    def f():
        return loss_of(config, params, inputs, cot)

    # The initial states are checked even when they were not given (as zeros), since grad_h0 is returned.
    h0_step = STEP
    if "h0" not in inputs:
        inputs["h0"] = np.zeros_like(grad_h0)
        h0_step = STEP_AT_ZERO_ROW
        if config.has_cell_state:
            inputs["c0"] = np.zeros_like(grad_c0)

    np.testing.assert_allclose(grad_x, numerical_gradient(f, inputs["x"]), rtol=RTOL, atol=ATOL, err_msg="x")
    np.testing.assert_allclose(
        grad_h0, numerical_gradient(f, inputs["h0"], h0_step), rtol=RTOL, atol=ATOL, err_msg="h0"
    )
    if config.has_cell_state:
        np.testing.assert_allclose(
            grad_c0, numerical_gradient(f, inputs["c0"]), rtol=RTOL, atol=ATOL, err_msg="c0"
        )
    else:
        assert grad_c0 is None and c_n is None
    for name in config.param_names():
        np.testing.assert_allclose(
            grad_params[name], numerical_gradient(f, params[name]), rtol=RTOL, atol=ATOL, err_msg=name
        )
    if stack:  # past a sequence's end the input is never read
        for j, length in enumerate(inputs["lengths"]):
            assert not np.any(grad_x[length:, j])


# --------------------------------------------------------------------------------------------------
# an independent oracle: the same equations in torch, differentiated by autograd


def _torch_stack(torch, config: StackConfig, tp: dict, x, h0, c0, lengths, masks):
    """The layer-normalized stack written from its equations with torch.nn.functional.layer_norm.
    Lengths are a mask per step (inactive rows keep their state and output zeros), not the reference's
    selection of the active rows."""
    functional = torch.nn.functional

    def gate(a):
        # Not functional.hardsigmoid: its float64 backward multiplies by 1/6 rounded to float32.
        return torch.clamp(a + 3, 0, 6) / 6 if config.hard_gates else torch.sigmoid(a)

    hs, rows = config.hidden_size, config.gates * config.hidden_size
    lstm = config.cell == "lstm"
    layer_input, h_n, c_n = x, [], []
    for layer in range(config.num_layers):
        if layer > 0 and masks is not None:
            layer_input = layer_input * masks[layer - 1]
        outputs = []
        for direction in range(config.num_directions):
            k = layer * config.num_directions + direction
            sfx = f"_l{layer}" + ("_reverse" if direction else "")

            def w(role, sfx=sfx):
                return tp.get(role + sfx, 0.0)  # the biases are zero without config.bias

            h, c = h0[k], (c0[k] if lstm else None)
            ys = [None] * T
            for t in range(T - 1, -1, -1) if direction else range(T):
                active = (lengths > t)[:, None]
                ax = functional.layer_norm(
                    layer_input[t] @ w("weight_ih").T, (rows,), w("ln_weight_ih"), None, EPS
                )
                ah = functional.layer_norm(h @ w("weight_hh").T, (rows,), w("ln_weight_hh"), None, EPS)
                ax, ah = ax + w("bias_ih"), ah + w("bias_hh")
                if lstm:
                    a_i, a_f, a_g, a_o = (ax + ah).split(hs, dim=1)
                    c_new = gate(a_f) * c + gate(a_i) * torch.tanh(a_g)
                    c_normalized = functional.layer_norm(c_new, (hs,), w("ln_weight_c"), w("ln_bias_c"), EPS)
                    h_new = gate(a_o) * torch.tanh(c_normalized)
                    c = torch.where(active, c_new, c)
                else:
                    x_r, x_z, x_n = ax.split(hs, dim=1)
                    h_r, h_z, h_n_gate = ah.split(hs, dim=1)
                    r, z = gate(x_r + h_r), gate(x_z + h_z)
                    h_new = (1 - z) * torch.tanh(x_n + r * h_n_gate) + z * h
                h = torch.where(active, h_new, h)
                ys[t] = torch.where(active, h_new, torch.zeros_like(h_new))
            outputs.append(torch.stack(ys))
            h_n.append(h)
            c_n.append(c)
        output = torch.cat(outputs, dim=2)
        if config.residual and layer > 0:
            output = output + layer_input
        layer_input = output
    return layer_input, torch.stack(h_n), (torch.stack(c_n) if lstm else None)


TORCH_CASES = [
    ("lstm-L1", "lstm", {}, 1, False, False),
    ("lstm-L1-hard-nobias", "lstm", {"hard_gates": True, "bias": False}, 1, False, False),
    ("lstm-L2-bidir-lengths-dropout-residual", "lstm", {"residual": True}, 2, True, True),
    ("lstm-L2-bidir-lengths-hard", "lstm", {"hard_gates": True}, 2, True, True),
    ("gru-L1", "gru", {}, 1, False, False),
    ("gru-L1-hard-nobias", "gru", {"hard_gates": True, "bias": False}, 1, False, False),
    ("gru-L2-bidir-lengths-dropout-residual", "gru", {"residual": True}, 2, True, True),
    ("gru-L2-bidir-lengths-hard", "gru", {"hard_gates": True}, 2, True, True),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[case[0] for case in TORCH_CASES])
def test_matches_torch_layer_norm_and_autograd(case, rng):
    torch = pytest.importorskip("torch")
    _, cell, options, layers, bidir, stack = case
    config = make_config(cell, layers, bidir, **options)
    params = make_params(config, rng, gain=2.0 if config.hard_gates else 1.0)
    inputs = make_inputs(config, rng, states=True, stack=stack)
    cot = make_cotangents(config, rng)
    y, h_n, c_n, cache = ref.forward(config, params, **inputs)
    grad_x, grad_h0, grad_c0, grad_params = ref.backward(cache, **cot)

    tp = {name: torch.tensor(value, requires_grad=True) for name, value in params.items()}
    x_t = torch.tensor(inputs["x"], requires_grad=True)
    h0_t = torch.tensor(inputs["h0"], requires_grad=True)
    c0_t = torch.tensor(inputs["c0"], requires_grad=True) if config.has_cell_state else None
    lengths = torch.tensor(inputs.get("lengths", np.full(N, T)))
    masks = [torch.tensor(m) for m in inputs["dropout_masks"]] if "dropout_masks" in inputs else None
    y_t, h_n_t, c_n_t = _torch_stack(torch, config, tp, x_t, h0_t, c0_t, lengths, masks)

    # The normalization divides by a row's standard deviation, which may be as small as sqrt(eps) ~ 3e-3
    # (a state near 0), so rounding grows more than in the plain cells (REFERENCE_VS_TORCH, unscaled):
    # held to VS_TORCH, atol scaled by the largest expected value (measured: at most 1.2e-11 over 60 seeds).
    rtol, atol = VS_TORCH[np.float64]

    def check(actual, expected, what):
        assert_scaled_close(actual, expected.detach().numpy(), rtol, atol, what)

    check(y, y_t, "y")
    check(h_n, h_n_t, "h_n")
    loss = (y_t * torch.tensor(cot["grad_y"])).sum() + (h_n_t * torch.tensor(cot["grad_h_n"])).sum()
    if config.has_cell_state:
        check(c_n, c_n_t, "c_n")
        loss = loss + (c_n_t * torch.tensor(cot["grad_c_n"])).sum()
    loss.backward()

    check(grad_x, x_t.grad, "grad_x")
    check(grad_h0, h0_t.grad, "grad_h0")
    if config.has_cell_state:
        check(grad_c0, c0_t.grad, "grad_c0")
    assert list(grad_params) == list(tp)
    for name, value in tp.items():
        check(grad_params[name], value.grad, name)


# --------------------------------------------------------------------------------------------------
# properties of the normalization


def _with(params: dict, **changes) -> dict:
    return {**params, **changes}


@pytest.mark.parametrize("hard", [False, True], ids=["sigmoid", "hard"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_input_weights_scale_drops_out(cell, hard, rng):
    """With unit gains on the projections, W x is seen only through LN(W x): scaling weight_ih by 7
    changes nothing, but by -7 (LN(-v) = -LN(v)) it does, and without layer_norm 7 does too.

    Exactly, LN with eps of 7v is LN with eps / 49 of v, so the outputs move by about eps / var(W x):
    weights of order 1e6 make var(W x) ~ 1e11 and that change ~ 1e-16 (of order 1e-5 at unit weights),
    leaving the rounding of the products, ~1e-16 relative."""
    config = make_config(cell, hard_gates=hard)
    params = make_params(config, rng)
    params.update(ln_weight_ih_l0=np.ones(config.gates * H), ln_weight_hh_l0=np.ones(config.gates * H))
    params["weight_ih_l0"] = 1e6 * params["weight_ih_l0"]
    inputs = make_inputs(config, rng, states=True, stack=False)

    y, h_n, _, _ = ref.forward(config, params, **inputs)
    y7, h_n7, _, _ = ref.forward(config, _with(params, weight_ih_l0=7 * params["weight_ih_l0"]), **inputs)
    np.testing.assert_allclose(y7, y, rtol=0, atol=1e-13)
    np.testing.assert_allclose(h_n7, h_n, rtol=0, atol=1e-13)
    y_neg, _, _, _ = ref.forward(config, _with(params, weight_ih_l0=-7 * params["weight_ih_l0"]), **inputs)
    assert np.max(np.abs(y_neg - y)) > 1e-2

    plain = StackConfig(cell, IN, H, hard_gates=hard)
    plain_params = {
        name: params[name] / (1e6 if name == "weight_ih_l0" else 1) for name in plain.param_names()
    }
    y_plain, _, _, _ = ref.forward(plain, plain_params, **inputs)
    y_plain7, _, _, _ = ref.forward(
        plain, _with(plain_params, weight_ih_l0=7 * plain_params["weight_ih_l0"]), **inputs
    )
    assert np.max(np.abs(y_plain7 - y_plain)) > 1e-2


def _layer_norm(v: np.ndarray) -> np.ndarray:
    centered = v - v.mean(axis=-1, keepdims=True)
    return centered / np.sqrt((centered**2).mean(axis=-1, keepdims=True) + EPS)


@pytest.mark.parametrize("hard", [False, True], ids=["sigmoid", "hard"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_zero_gains_leave_the_gates_to_the_biases(cell, hard, rng):
    """With ln_weight_ih = ln_weight_hh = 0 every gate input is b_ih + b_hh (the GRU's n: b_in + r * b_hn),
    the same at every step and for every sequence: the outputs follow a recurrence of the biases alone,
    written out here, x and both weight matrices get exactly zero gradient, and the gains do not."""
    config = make_config(cell, hard_gates=hard)
    params = make_params(config, rng)
    params.update(ln_weight_ih_l0=np.zeros(config.gates * H), ln_weight_hh_l0=np.zeros(config.gates * H))
    inputs = make_inputs(config, rng, states=True, stack=False)
    y, h_n, c_n, cache = ref.forward(config, params, **inputs)

    gate = ref.hard_sigmoid if hard else ref.sigmoid
    b_ih, b_hh = params["bias_ih_l0"], params["bias_hh_l0"]
    h = inputs["h0"][0]
    expected = []
    if cell == "lstm":
        a_i, a_f, a_g, a_o = np.split(b_ih + b_hh, 4)
        i, f, g, o = gate(a_i), gate(a_f), np.tanh(a_g), gate(a_o)
        c = inputs["c0"][0]
        for _ in range(T):
            c = f * c + i * g
            h = o * np.tanh(_layer_norm(c) * params["ln_weight_c_l0"] + params["ln_bias_c_l0"])
            expected.append(h)
        np.testing.assert_allclose(c_n[0], c, **REFERENCE_REGROUPED.kw())
    else:
        (x_r, x_z, x_n), (h_r, h_z, h_n_gate) = np.split(b_ih, 3), np.split(b_hh, 3)
        r, z = gate(x_r + h_r), gate(x_z + h_z)
        n = np.tanh(x_n + r * h_n_gate)
        for _ in range(T):
            h = (1 - z) * n + z * h
            expected.append(h)
    np.testing.assert_allclose(y, np.stack(expected), **REFERENCE_REGROUPED.kw())
    np.testing.assert_allclose(h_n[0], h, **REFERENCE_REGROUPED.kw())

    cot = make_cotangents(config, rng)
    grad_x, _, _, grad_params = ref.backward(cache, **cot)
    assert not np.any(grad_x)
    assert not np.any(grad_params["weight_ih_l0"]) and not np.any(grad_params["weight_hh_l0"])
    assert np.any(grad_params["ln_weight_ih_l0"]) and np.any(grad_params["ln_weight_hh_l0"])


# --------------------------------------------------------------------------------------------------
# dtypes and refused combinations


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float32_computes_in_float32_close_to_float64(cell, rng, assert_close):
    config = make_config(cell, num_layers=2, bidirectional=True, residual=True)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, states=True, stack=True)
    cot = make_cotangents(config, rng)
    out64 = ref.forward(config, params, **inputs)
    grads64 = ref.backward(out64[3], **cot)

    def single(value):
        return [v.astype(np.float32) for v in value] if isinstance(value, list) else value.astype(np.float32)

    inputs32 = {k: v if k == "lengths" else single(v) for k, v in inputs.items()}
    out32 = ref.forward(config, {k: v.astype(np.float32) for k, v in params.items()}, **inputs32)
    grads32 = ref.backward(out32[3], **cot)
    for what, a32, a64 in [
        ("y", out32[0], out64[0]),
        ("h_n", out32[1], out64[1]),
        ("grad_x", grads32[0], grads64[0]),
    ]:
        assert a32.dtype == np.float32, what
        assert_close(a32, a64, np.float32, what)
    for name in config.param_names():
        assert grads32[3][name].dtype == np.float32, name
        assert_close(grads32[3][name], grads64[3][name], np.float32, name)


@pytest.mark.parametrize(
    "cell, options, named",
    [
        ("lstm", {"peephole": True}, "peephole=True"),
        ("lstm", {"proj_size": 1}, "proj_size=1"),
        ("lstm", {"clip": 2.0}, "clip=2.0"),
        ("lstm", {"input_forget": True}, "input_forget=True"),
        ("gru", {"clip": 2.0}, "clip=2.0"),
        ("gru", {"linear_before_reset": False}, "linear_before_reset=False"),
    ],
)
def test_refuses_options_the_normalized_cells_lack(cell, options, named, rng):
    config = make_config(cell, **options)
    params = {name: rng.uniform(-0.5, 0.5, shape) for name, shape in config.param_shapes()}
    with pytest.raises(ValueError, match=f"config: layer_norm .*{named}"):
        ref.forward(config, params, rng.standard_normal((T, N, IN)))
