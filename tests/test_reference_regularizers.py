"""Zoneout and recurrent (variational) dropout in the NumPy reference: against central differences, against
the same equations written in torch and differentiated by autograd, and against properties that a wrong
placement of either breaks."""

from __future__ import annotations

import numpy as np
import pytest

from fusedrnn import reference as ref
from fusedrnn._config import StackConfig
from tolerances import FINITE_DIFFERENCE_STEP, REFERENCE_REGROUPED, REFERENCE_VS_TORCH, VS_FINITE_DIFFERENCES

# Tiny sizes keep the central differences fast: T steps, N batch, IN inputs, H hidden, P projection.
T, N, IN, H, P = 4, 3, 3, 2, 1
# Ragged lengths: one sequence of full length T, one of length 1, one in between.
RAGGED = np.array([T, 1, 2], dtype=np.int64)
ZONEOUT = 0.3  # p of the configurations: inference keeps 1 - p = 0.7 of each new value
RECURRENT_KEEP = 0.7  # 1 - the recurrent dropout probability: kept units are scaled by 1 / 0.7
STEP = FINITE_DIFFERENCE_STEP
RTOL, ATOL = VS_FINITE_DIFFERENCES

# cell variant id -> StackConfig keyword arguments
VARIANTS = {
    "rnn_tanh": {"cell": "rnn_tanh"},
    "rnn_relu": {"cell": "rnn_relu"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
    "lstm-ln": {"cell": "lstm", "layer_norm": True},
    "gru-ln": {"cell": "gru", "layer_norm": True},
}


def make_config(variant: str, num_layers: int = 1, bidirectional: bool = False, **options) -> StackConfig:
    return StackConfig(
        input_size=IN,
        hidden_size=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        **{**VARIANTS[variant], **options},
    )


def make_params(config: StackConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights and biases in [-0.6, 0.6]; the layer normalization's gains in [0.5, 1.5]."""
    return {
        name: rng.uniform(0.5, 1.5, shape) if name.startswith("ln_weight_") else rng.uniform(-0.6, 0.6, shape)
        for name, shape in config.param_shapes()
    }


def zoneout_width(config: StackConfig) -> int:
    """Z*H: the factors of h, then (LSTM) those of c."""
    return (2 if config.has_cell_state else 1) * config.hidden_size


def make_zoneout_masks(config: StackConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """0/1 factors, both present in every layer-direction's mask."""
    masks = []
    for _ in range(config.num_layers * config.num_directions):
        mask = (rng.random((T, N, zoneout_width(config))) < 0.6).astype(np.float64)
        mask[0, 0, 0], mask[-1, -1, -1] = 0.0, 1.0
        masks.append(mask)
    return masks


def make_recurrent_masks(config: StackConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Scaled masks (0 or 1 / keep), both values present in every layer-direction's mask."""
    masks = []
    for _ in range(config.num_layers * config.num_directions):
        mask = (rng.random((N, config.output_size)) < RECURRENT_KEEP) / RECURRENT_KEEP
        mask[0, 0], mask[-1, -1] = 0.0, 1.0 / RECURRENT_KEEP
        masks.append(mask)
    return masks


def make_inputs(config: StackConfig, rng: np.random.Generator, *, stack: bool) -> dict:
    """x and random initial states; (stack) ragged lengths and dropout masks between the layers."""
    dl = config.num_layers * config.num_directions
    inputs = {
        "x": rng.standard_normal((T, N, IN)),
        "h0": 0.5 * rng.standard_normal((dl, N, config.output_size)),
    }
    if config.has_cell_state:
        inputs["c0"] = 0.5 * rng.standard_normal((dl, N, H))
    if stack:
        inputs["lengths"] = RAGGED.copy()
        shape = (T, N, config.num_directions * config.output_size)
        inputs["dropout_masks"] = [(rng.random(shape) < 0.7) / 0.7 for _ in range(config.num_layers - 1)]
    return inputs


def make_cotangents(config: StackConfig, rng: np.random.Generator) -> dict:
    dl = config.num_layers * config.num_directions
    cot = {
        "grad_y": rng.standard_normal((T, N, config.num_directions * config.output_size)),
        "grad_h_n": rng.standard_normal((dl, N, config.output_size)),
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


def numerical_gradient(f, arr: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of ``arr`` (perturbed in place)."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + STEP
        f_plus = f()
        arr[idx] = old - STEP
        f_minus = f()
        arr[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * STEP)
    return grad


# --------------------------------------------------------------------------------------------------
# gradients against central differences

# regularizer modes: "masks" = zoneout masks of 0/1 factors and recurrent masks; "inference" = zoneout=p
# without masks (the constant factor 1 - p); "zoneout" / "recurrent" = only that one, with masks.


def regularizer_inputs(config: StackConfig, mode: str, rng: np.random.Generator) -> dict:
    inputs = {}
    if mode in ("masks", "zoneout"):
        inputs["zoneout_masks"] = make_zoneout_masks(config, rng)
    if mode in ("masks", "recurrent"):
        inputs["recurrent_masks"] = make_recurrent_masks(config, rng)
    return inputs


# (id, variant, StackConfig options, num_layers, bidirectional, mode, stack)
GRAD_CASES = [
    (f"{v}-{mode}", v, {}, 1, False, mode, False) for v in VARIANTS for mode in ("masks", "inference")
]
GRAD_CASES += [
    ("lstm-L2-bidir-lengths-dropout-masks", "lstm", {}, 2, True, "masks", True),
    ("gru-L2-bidir-lengths-dropout-masks", "gru", {}, 2, True, "masks", True),
    ("lstm-ln-L2-bidir-lengths-dropout-masks", "lstm-ln", {}, 2, True, "masks", True),
    ("gru-ln-L2-bidir-lengths-dropout-inference", "gru-ln", {}, 2, True, "inference", True),
    (
        "rnn_tanh-L2-bidir-lengths-dropout-residual-masks",
        "rnn_tanh",
        {"residual": True},
        2,
        True,
        "masks",
        True,
    ),
    (
        "lstm-peephole-input_forget-masks",
        "lstm",
        {"peephole": True, "input_forget": True},
        1,
        False,
        "masks",
        False,
    ),
    ("gru-resetbefore-zoneout", "gru", {"linear_before_reset": False}, 1, False, "zoneout", False),
    ("lstm-proj-recurrent", "lstm", {"proj_size": P, "zoneout": 0.0}, 1, False, "recurrent", False),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[case[0] for case in GRAD_CASES])
def test_gradients_match_central_differences(case, rng):
    _, variant, options, layers, bidir, mode, stack = case
    config = make_config(variant, layers, bidir, **{"zoneout": ZONEOUT, **options})
    params = make_params(config, rng)
    inputs = {**make_inputs(config, rng, stack=stack), **regularizer_inputs(config, mode, rng)}
    cot = make_cotangents(config, rng)
    y, _, c_n, cache = ref.forward(config, params, **inputs)
    grad_x, grad_h0, grad_c0, grad_params = ref.backward(cache, **cot)

    def f():
        return loss_of(config, params, inputs, cot)

    np.testing.assert_allclose(grad_x, numerical_gradient(f, inputs["x"]), rtol=RTOL, atol=ATOL, err_msg="x")
    np.testing.assert_allclose(
        grad_h0, numerical_gradient(f, inputs["h0"]), rtol=RTOL, atol=ATOL, err_msg="h0"
    )
    if config.has_cell_state:
        np.testing.assert_allclose(
            grad_c0, numerical_gradient(f, inputs["c0"]), rtol=RTOL, atol=ATOL, err_msg="c0"
        )
    else:
        assert grad_c0 is None and c_n is None
    assert list(grad_params) == config.param_names()
    for name in config.param_names():
        np.testing.assert_allclose(
            grad_params[name], numerical_gradient(f, params[name]), rtol=RTOL, atol=ATOL, err_msg=name
        )
    if stack:  # past a sequence's end nothing is read and the output is zero
        for j, length in enumerate(inputs["lengths"]):
            assert not np.any(grad_x[length:, j]) and not np.any(y[length:, j])


# --------------------------------------------------------------------------------------------------
# an independent oracle: the same equations in torch, differentiated by autograd


def _torch_stack(torch, config: StackConfig, tp: dict, x, h0, c0, lengths, dropout_masks, recurrent, zoneout):
    """The plain LSTM or (linear-before-reset) GRU stack with recurrent dropout and zoneout, written from
    the equations: ``U (m * h)`` for the recurrent product, ``h + k * (h_new - h)`` after the cell. Lengths
    are a mask per step (inactive rows keep their state and output zeros)."""
    hs = config.hidden_size
    lstm = config.cell == "lstm"
    layer_input, h_n, c_n = x, [], []
    for layer in range(config.num_layers):
        if layer > 0 and dropout_masks is not None:
            layer_input = layer_input * dropout_masks[layer - 1]
        outputs = []
        for direction in range(config.num_directions):
            k = layer * config.num_directions + direction
            sfx = f"_l{layer}" + ("_reverse" if direction else "")

            def w(role, sfx=sfx):
                return tp.get(role + sfx, 0.0)  # the biases are zero without config.bias

            mask = 1.0 if recurrent is None else recurrent[k]
            h, c = h0[k], (c0[k] if lstm else None)
            ys = [None] * T
            for t in range(T - 1, -1, -1) if direction else range(T):
                active = (lengths > t)[:, None]
                ax = layer_input[t] @ w("weight_ih").T + w("bias_ih")
                ah = (mask * h) @ w("weight_hh").T + w("bias_hh")
                if lstm:
                    a_i, a_f, a_g, a_o = (ax + ah).split(hs, dim=1)
                    c_new = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
                    h_new = torch.sigmoid(a_o) * torch.tanh(c_new)
                else:
                    x_r, x_z, x_n = ax.split(hs, dim=1)
                    h_r, h_z, h_n_gate = ah.split(hs, dim=1)
                    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
                    h_new = (1 - z) * torch.tanh(x_n + r * h_n_gate) + z * h
                if zoneout is not None:
                    factors = zoneout[k][t]
                    h_new = h + factors[:, :hs] * (h_new - h)
                    if lstm:
                        c_new = c + factors[:, hs:] * (c_new - c)
                h = torch.where(active, h_new, h)
                if lstm:
                    c = torch.where(active, c_new, c)
                ys[t] = torch.where(active, h_new, torch.zeros_like(h_new))
            outputs.append(torch.stack(ys))
            h_n.append(h)
            c_n.append(c)
        output = torch.cat(outputs, dim=2)
        if config.residual and layer > 0:
            output = output + layer_input
        layer_input = output
    return layer_input, torch.stack(h_n), (torch.stack(c_n) if lstm else None)


# (id, variant, num_layers, bidirectional, mode, stack)
TORCH_CASES = [
    ("lstm-L1-masks", "lstm", 1, False, "masks", False),
    ("lstm-L1-inference", "lstm", 1, False, "inference", False),
    ("lstm-L2-bidir-lengths-dropout-masks", "lstm", 2, True, "masks", True),
    ("gru-L1-masks", "gru", 1, False, "masks", False),
    ("gru-L1-inference", "gru", 1, False, "inference", False),
    ("gru-L2-bidir-lengths-dropout-masks", "gru", 2, True, "masks", True),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[case[0] for case in TORCH_CASES])
def test_matches_torch_autograd(case, rng):
    torch = pytest.importorskip("torch")
    _, variant, layers, bidir, mode, stack = case
    config = make_config(variant, layers, bidir, zoneout=ZONEOUT)
    params = make_params(config, rng)
    inputs = {**make_inputs(config, rng, stack=stack), **regularizer_inputs(config, mode, rng)}
    cot = make_cotangents(config, rng)
    y, h_n, c_n, cache = ref.forward(config, params, **inputs)
    grad_x, grad_h0, grad_c0, grad_params = ref.backward(cache, **cot)

    tp = {name: torch.tensor(value, requires_grad=True) for name, value in params.items()}
    x_t = torch.tensor(inputs["x"], requires_grad=True)
    h0_t = torch.tensor(inputs["h0"], requires_grad=True)
    c0_t = torch.tensor(inputs["c0"], requires_grad=True) if config.has_cell_state else None
    lengths = torch.tensor(inputs.get("lengths", np.full(N, T)))

    def tensors(name):
        return [torch.tensor(m) for m in inputs[name]] if name in inputs else None

    zoneout = tensors("zoneout_masks")
    if mode == "inference":  # the oracle is given inference's constant factor 1 - p explicitly
        zoneout = [torch.full((T, N, zoneout_width(config)), 1 - ZONEOUT, dtype=torch.float64)] * (
            config.num_layers * config.num_directions
        )
    y_t, h_n_t, c_n_t = _torch_stack(
        torch,
        config,
        tp,
        x_t,
        h0_t,
        c0_t,
        lengths,
        tensors("dropout_masks"),
        tensors("recurrent_masks"),
        zoneout,
    )

    tol = REFERENCE_VS_TORCH.kw()

    def check(actual, expected, what):
        np.testing.assert_allclose(actual, expected.detach().numpy(), err_msg=what, **tol)

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
# properties


def _run(config, params, inputs, cot):
    """forward and backward: (y, h_n, c_n), (grad_x, grad_h0, grad_c0, grad_params)."""
    y, h_n, c_n, cache = ref.forward(config, params, **inputs)
    return (y, h_n, c_n), ref.backward(cache, **cot)


def _assert_runs_equal(a, b):
    """Two _run results equal to the bit."""
    (outputs_a, grads_a), (outputs_b, grads_b) = a, b
    for what, left, right in zip(
        ["y", "h_n", "c_n", "grad_x", "grad_h0", "grad_c0"], outputs_a + grads_a[:3], outputs_b + grads_b[:3]
    ):
        if left is None or right is None:
            assert left is None and right is None, what
        else:
            np.testing.assert_array_equal(left, right, err_msg=what)
    assert list(grads_a[3]) == list(grads_b[3])
    for name in grads_a[3]:
        np.testing.assert_array_equal(grads_a[3][name], grads_b[3][name], err_msg=name)


STACK_VARIANTS = list(VARIANTS)


@pytest.mark.parametrize("variant", STACK_VARIANTS)
def test_zoneout_factors_of_one_are_the_plain_stack(variant, rng):
    """Every unit takes its new value: the same numbers, to the bit, as without zoneout (and a single zero
    factor shows that the masks are read at all)."""
    plain = make_config(variant, 2, True)
    config = make_config(variant, 2, True, zoneout=ZONEOUT)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, stack=True)
    cot = make_cotangents(config, rng)
    ones = [np.ones((T, N, zoneout_width(config))) for _ in range(4)]
    expected = _run(plain, params, inputs, cot)
    _assert_runs_equal(_run(config, params, {**inputs, "zoneout_masks": ones}, cot), expected)

    ones[3][1, 0, 0] = 0.0  # the last layer's reverse direction, one unit at one step
    y_changed = ref.forward(config, params, **inputs, zoneout_masks=ones)[0]
    assert not np.array_equal(y_changed, expected[0][0])


@pytest.mark.parametrize("variant", STACK_VARIANTS)
def test_zoneout_factors_of_zero_keep_the_initial_state(variant, rng):
    """No unit ever takes a new value: every step outputs h0 and the final states are h0 and c0, to the
    bit; x and the weights get exactly zero gradient, h0's gradient is the sum of y's over time plus h_n's."""
    config = make_config(variant, 1, True, zoneout=ZONEOUT)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, stack=False)
    cot = make_cotangents(config, rng)
    zeros = [np.zeros((T, N, zoneout_width(config))) for _ in range(2)]
    (y, h_n, c_n), (grad_x, grad_h0, grad_c0, grad_params) = _run(
        config, params, {**inputs, "zoneout_masks": zeros}, cot
    )
    h0 = inputs["h0"]
    for t in range(T):
        np.testing.assert_array_equal(y[t], np.concatenate([h0[0], h0[1]], axis=1), err_msg=f"y[{t}]")
    np.testing.assert_array_equal(h_n, h0)
    if config.has_cell_state:
        np.testing.assert_array_equal(c_n, inputs["c0"])
        np.testing.assert_array_equal(grad_c0, cot["grad_c_n"])
    assert not np.any(grad_x)
    assert not any(np.any(g) for g in grad_params.values())
    gy = cot["grad_y"].sum(axis=0)
    expected_h0 = np.stack([gy[:, :H], gy[:, H:]]) + cot["grad_h_n"]
    # the same sums as backward's, in another order
    np.testing.assert_allclose(grad_h0, expected_h0, **REFERENCE_REGROUPED.kw())


@pytest.mark.parametrize("variant", STACK_VARIANTS)
def test_recurrent_masks_of_one_are_the_plain_stack(variant, rng):
    config = make_config(variant, 2, True)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, stack=True)
    cot = make_cotangents(config, rng)
    ones = [np.ones((N, H)) for _ in range(4)]
    _assert_runs_equal(
        _run(config, params, {**inputs, "recurrent_masks": ones}, cot), _run(config, params, inputs, cot)
    )


@pytest.mark.parametrize("variant", STACK_VARIANTS)
def test_recurrent_masks_of_zero_cut_the_recurrent_product(variant, rng):
    """With m = 0 weight_hh never meets h: its gradient is exactly zero (and so is the gain of the
    normalized product, LN(0) = 0). Without zoneout h0 then reaches the output only through the GRU's
    z * h_prev: the other cells' grad_h0 is exactly zero (the LSTM's c0 still matters), the GRU's is not."""
    config = make_config(variant, 2, True)
    params = make_params(config, rng)
    inputs = {**make_inputs(config, rng, stack=True), "recurrent_masks": [np.zeros((N, H)) for _ in range(4)]}
    cot = make_cotangents(config, rng)
    _, (grad_x, grad_h0, grad_c0, grad_params) = _run(config, params, inputs, cot)
    cut = [name for name in config.param_names() if name.startswith(("weight_hh", "ln_weight_hh"))]
    others = [name for name in config.param_names() if name not in cut]
    for name in cut:
        assert not np.any(grad_params[name]), name
    if config.cell == "rnn_relu":  # with H = 2 both units of a direction can be off at every step
        assert any(np.any(grad_params[name]) for name in others)
    else:
        for name in others:
            assert np.any(grad_params[name]), name
    if config.cell == "gru":
        assert np.all(grad_h0 != 0)
    else:
        assert not np.any(grad_h0)
    if config.has_cell_state:
        assert np.all(grad_c0 != 0)


def test_gru_with_recurrent_masks_of_zero_is_affine_in_h0(rng):
    """m = 0: the gates see no h, so ``h_t = (1 - z_t) n_t + z_t h_{t-1}`` with z_t = sigmoid(W_z x_t +
    b_iz + b_hz) computed here from x alone: y_t moves by prod_{s <= t} z_s times a change of h0, and
    grad_h0 is sum_t grad_y_t prod_{s <= t} z_s + grad_h_n prod_s z_s."""
    config = make_config("gru")
    params = make_params(config, rng)
    inputs = {**make_inputs(config, rng, stack=False), "recurrent_masks": [np.zeros((N, H))]}
    cot = make_cotangents(config, rng)
    (y, _, _), (_, grad_h0, _, _) = _run(config, params, inputs, cot)

    rows = slice(H, 2 * H)
    a_z = (
        inputs["x"] @ params["weight_ih_l0"][rows].T + params["bias_ih_l0"][rows] + params["bias_hh_l0"][rows]
    )
    carried = np.cumprod(ref.sigmoid(a_z), axis=0)  # (T, N, H): prod_{s <= t} z_s
    # the same products as backward's, grouped differently
    expected = (cot["grad_y"] * carried).sum(axis=0) + cot["grad_h_n"][0] * carried[-1]
    np.testing.assert_allclose(grad_h0[0], expected, **REFERENCE_REGROUPED.kw())

    shift = rng.standard_normal((1, N, H))
    y_shifted = ref.forward(config, params, **{**inputs, "h0": inputs["h0"] + shift})[0]
    np.testing.assert_allclose(y_shifted - y, carried * shift, **REFERENCE_REGROUPED.kw())


@pytest.mark.parametrize("variant", STACK_VARIANTS + ["gru-resetbefore"])
def test_inference_is_the_mask_form_with_factor_one_minus_p(variant, rng):
    """zoneout=p without masks is exactly the masks filled with 1 - p; masks of another constant differ."""
    options = (
        {"cell": "gru", "linear_before_reset": False} if variant == "gru-resetbefore" else VARIANTS[variant]
    )
    config = StackConfig(
        input_size=IN, hidden_size=H, num_layers=2, bidirectional=True, zoneout=ZONEOUT, **options
    )
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, stack=True)
    cot = make_cotangents(config, rng)
    constant = [np.full((T, N, zoneout_width(config)), 1 - ZONEOUT) for _ in range(4)]
    expected = _run(config, params, {**inputs, "zoneout_masks": constant}, cot)
    _assert_runs_equal(_run(config, params, inputs, cot), expected)
    other = [np.full((T, N, zoneout_width(config)), ZONEOUT) for _ in range(4)]
    assert not np.allclose(ref.forward(config, params, **inputs, zoneout_masks=other)[0], expected[0][0])


def test_lstm_zoneout_splits_h_and_c_factors(rng):
    """The LSTM's factors are h's H, then c's H: zero for c only keeps c at c0 while h moves on; zero for h
    only keeps h at h0 while c moves on."""
    config = make_config("lstm", zoneout=ZONEOUT)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, stack=False)
    keep_c = np.ones((T, N, 2 * H))
    keep_c[:, :, H:] = 0.0
    y, h_n, c_n, _ = ref.forward(config, params, **inputs, zoneout_masks=[keep_c])
    np.testing.assert_array_equal(c_n, inputs["c0"])
    assert np.all(h_n != inputs["h0"])
    keep_h = 1.0 - keep_c
    y, h_n, c_n, _ = ref.forward(config, params, **inputs, zoneout_masks=[keep_h])
    np.testing.assert_array_equal(h_n, inputs["h0"])
    assert np.all(c_n != inputs["c0"])


def test_zoneout_leaves_inactive_rows_alone(rng):
    """Past a sequence's end its state is what it was at its last step and its output zero, whatever the
    factors there say."""
    config = make_config("lstm", zoneout=ZONEOUT)
    params = make_params(config, rng)
    inputs = make_inputs(config, rng, stack=True)
    masks = make_zoneout_masks(config, rng)
    y, h_n, c_n, _ = ref.forward(config, params, **inputs, zoneout_masks=masks)
    changed = [masks[0].copy()]
    for j, length in enumerate(inputs["lengths"]):
        changed[0][length:, j] = 1.0 - changed[0][length:, j]
    y2, h_n2, c_n2, _ = ref.forward(config, params, **inputs, zoneout_masks=changed)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(h_n2, h_n)
    np.testing.assert_array_equal(c_n2, c_n)
    short = 1  # the sequence of length 1 took one step
    assert not np.any(y[1:, short])


# --------------------------------------------------------------------------------------------------
# refused arguments


def _small(config: StackConfig, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    return make_params(config, rng), rng.standard_normal((T, N, IN))


@pytest.mark.parametrize(
    "variant, layers, masks, message",
    [
        (
            "lstm",
            1,
            [np.ones((T, N, 2 * H))] * 2,
            r"zoneout_masks: expected 1 masks \(num_layers \* num_directions\), got 2",
        ),
        ("lstm", 1, [np.ones((T, N, H))], r"zoneout_masks\[0\]: expected shape \(4, 3, 4\), got \(4, 3, 2\)"),
        (
            "gru",
            2,
            [np.ones((T, N, H)), np.ones((T, N, 2 * H))],
            r"zoneout_masks\[1\]: expected shape \(4, 3, 2\), got \(4, 3, 4\)",
        ),
    ],
)
def test_refuses_zoneout_masks_of_the_wrong_count_or_shape(variant, layers, masks, message, rng):
    config = make_config(variant, layers, zoneout=ZONEOUT)
    params, x = _small(config, rng)
    with pytest.raises(ValueError, match=message):
        ref.forward(config, params, x, zoneout_masks=masks)


@pytest.mark.parametrize(
    "variant, masks, message",
    [
        (
            "rnn_tanh",
            [np.ones((N, H))] * 2,
            r"recurrent_masks: expected 1 masks \(num_layers \* num_directions\), got 2",
        ),
        ("gru", [np.ones((N, H + 1))], r"recurrent_masks\[0\]: expected shape \(3, 2\), got \(3, 3\)"),
    ],
)
def test_refuses_recurrent_masks_of_the_wrong_count_or_shape(variant, masks, message, rng):
    config = make_config(variant)
    params, x = _small(config, rng)
    with pytest.raises(ValueError, match=message):
        ref.forward(config, params, x, recurrent_masks=masks)


def test_lstm_projection_takes_recurrent_masks_of_its_output_size(rng):
    config = make_config("lstm", proj_size=P)
    params, x = _small(config, rng)
    ref.forward(config, params, x, recurrent_masks=[np.ones((N, P))])
    with pytest.raises(ValueError, match=r"recurrent_masks\[0\]: expected shape \(3, 1\), got \(3, 2\)"):
        ref.forward(config, params, x, recurrent_masks=[np.ones((N, H))])


def test_refuses_what_the_options_exclude(rng):
    config = make_config("gru", linear_before_reset=False)
    params, x = _small(config, rng)
    with pytest.raises(
        ValueError, match=r"recurrent_masks: the reset-before GRU \(linear_before_reset=False\)"
    ):
        ref.forward(config, params, x, recurrent_masks=[np.ones((N, H))])

    config = make_config("lstm")
    params, x = _small(config, rng)
    with pytest.raises(
        ValueError, match=r"zoneout_masks: only with config.zoneout > 0, got 1 masks with zoneout=0.0"
    ):
        ref.forward(config, params, x, zoneout_masks=[np.ones((T, N, 2 * H))])

    config = make_config("lstm", proj_size=P, zoneout=ZONEOUT)
    params, x = _small(config, rng)
    with pytest.raises(
        ValueError, match="config: zoneout does not combine with proj_size, got zoneout=0.3, proj_size=1"
    ):
        ref.forward(config, params, x)

    for bad in (-0.1, 1.0):
        config = make_config("gru", zoneout=bad)
        params, x = _small(config, rng)
        with pytest.raises(ValueError, match=rf"config: zoneout must be in \[0, 1\), got {bad}"):
            ref.forward(config, params, x)
