"""The layer-normalized LSTM and GRU kernels (``layer_norm=True``) against the NumPy reference: forward
and backward, float32 and float64, stacked, bidirectional, with lengths and initial states, hard gates,
at one and two threads under every schedule, one step at a time (streams and cells), and through model
files; the options they do not combine with are refused by name.

The reference itself is checked against central differences and torch in
``test_reference_layer_norm.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import reference
from fusedrnn._testing import tuning
from tolerances import STEP_VS_CALL

LAYERS = {
    "lstm": lambda **kw: fr.LSTM(layer_norm=True, **kw),
    "gru": lambda **kw: fr.GRU(layer_norm=True, **kw),
}
SCHEDULES = {
    "claimed": {},
    "barrier": {"claim_steps": False},
    "rows": {"rows_per_member": 1},
    "directions-in-turn": {"directions_at_once": False},
}


def perturbed(layer: fr.RNNBase, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The layer's parameters moved off their initial values (gains 1 and shift 0 would hide a gain or
    shift used in the wrong place), loaded into it."""
    params = {}
    for name, value in layer.state_dict().items():
        if name.startswith("ln_weight"):
            params[name] = (0.5 + rng.random(value.shape)).astype(value.dtype)
        else:
            params[name] = (value + 0.3 * rng.standard_normal(value.shape)).astype(value.dtype)
    layer.load_state_dict(params)
    return params


def reference_answers(layer, x, state, lengths, grad_y, grad_state):
    """y, the final state and every gradient from the reference, in float64."""
    h0, c0 = state if isinstance(state, tuple) else (state, None)
    y, h_n, c_n, cache = reference.forward(
        layer.config, layer.state_dict(), x.astype(np.float64), h0, c0, lengths=lengths
    )
    gh, gc = grad_state if isinstance(grad_state, tuple) else (grad_state, None)
    gx, gh0, gc0, gparams = reference.backward(cache, grad_y.astype(np.float64), gh, gc)
    return y, h_n, c_n, gx, gh0, gc0, gparams


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("hard", [False, True], ids=["sigmoid", "hard"])
@pytest.mark.parametrize("cell", list(LAYERS))
def test_stack_matches_the_reference(cell, hard, dtype, rng, assert_close) -> None:
    activation = "hard_sigmoid" if hard else "sigmoid"
    layer = LAYERS[cell](
        input_size=5,
        hidden_size=7,
        num_layers=2,
        bidirectional=True,
        gate_activation=activation,
        dtype=dtype,
        seed=1,
    )
    perturbed(layer, rng)
    x = rng.standard_normal((6, 3, 5)).astype(dtype)
    lengths = np.array([6, 2, 4])
    h0 = (0.5 * rng.standard_normal((4, 3, 7))).astype(dtype)
    state = (h0, (0.5 * rng.standard_normal((4, 3, 7))).astype(dtype)) if cell == "lstm" else h0
    grad_y = rng.standard_normal((6, 3, 14)).astype(dtype)
    grad_state = (
        tuple(rng.standard_normal(s.shape).astype(dtype) for s in state)
        if cell == "lstm"
        else (rng.standard_normal(h0.shape).astype(dtype))
    )
    y_ref, h_ref, c_ref, gx_ref, gh0_ref, gc0_ref, gp_ref = reference_answers(
        layer, x, state, lengths, grad_y, grad_state
    )
    y, final = layer(x, state, lengths)
    h_n = final[0] if cell == "lstm" else final
    assert_close(y, y_ref, dtype, "y")
    assert_close(h_n, h_ref, dtype, "h_n")
    if cell == "lstm":
        assert_close(final[1], c_ref, dtype, "c_n")
    tape = layer.record(x, state, lengths)
    assert_close(tape.output, y_ref, dtype, "recorded y")
    grads = tape.backward(grad_y, grad_state)
    assert_close(grads.input, gx_ref, dtype, "grad x")
    g_state = grads.state[0] if cell == "lstm" else grads.state
    assert_close(g_state, gh0_ref, dtype, "grad h0")
    if cell == "lstm":
        assert_close(grads.state[1], gc0_ref, dtype, "grad c0")
    assert set(grads.params) == set(gp_ref)
    for name, g in grads.params.items():
        assert_close(g, gp_ref[name], dtype, f"grad {name}")


@pytest.mark.parametrize("cell", list(LAYERS))
def test_without_bias(cell, rng, assert_close) -> None:
    layer = LAYERS[cell](input_size=4, hidden_size=6, bias=False, dtype=np.float64, seed=2)
    perturbed(layer, rng)
    assert not any(name.startswith("bias") for name in layer.state_dict())
    x = rng.standard_normal((5, 2, 4))
    grad_y = rng.standard_normal((5, 2, 6))
    y_ref, _, _, gx_ref, _, _, gp_ref = reference_answers(layer, x, None, None, grad_y, None)
    tape = layer.record(x)
    assert_close(tape.output, y_ref, np.float64, "y")
    grads = tape.backward(grad_y)
    assert_close(grads.input, gx_ref, np.float64, "grad x")
    for name, g in grads.params.items():
        assert_close(g, gp_ref[name], np.float64, f"grad {name}")


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("hidden", [64, 136])
@pytest.mark.parametrize("cell", list(LAYERS))
def test_every_schedule_at_two_threads(cell, hidden, rng, assert_close) -> None:
    """A whole-row cell runs as one slice of all H units whatever the slices asked for; each schedule
    gives the reference's answer (a schedule that split a row would normalize over part of it)."""
    x = rng.standard_normal((4, 4, 12)).astype(np.float32)
    lengths = np.array([4, 2, 3, 4])
    with tuning(slices=2):
        layer = LAYERS[cell](input_size=12, hidden_size=hidden, num_layers=2, bidirectional=True, seed=0)
    assert layer._stack._slices() == 1
    perturbed(layer, rng)
    grad_y = rng.standard_normal((4, 4, 2 * hidden)).astype(np.float32)
    y_ref, _, _, gx_ref, _, _, gp_ref = reference_answers(layer, x, None, lengths, grad_y, None)
    for name, switches in SCHEDULES.items():
        with tuning(**switches):
            y, _ = layer(x, lengths=lengths)
            tape = layer.record(x, lengths=lengths)
            grads = tape.backward(grad_y)
        assert_close(y, y_ref, np.float32, f"{name}: y")
        assert_close(grads.input, gx_ref, np.float32, f"{name}: grad x")
        for param, g in grads.params.items():
            assert_close(g, gp_ref[param], np.float32, f"{name}: grad {param}")


@pytest.mark.parametrize("cell", list(LAYERS))
def test_stream_steps_give_the_call(cell, rng) -> None:
    layer = LAYERS[cell](input_size=3, hidden_size=8, num_layers=2, seed=3)
    perturbed(layer, rng)
    x = rng.standard_normal((7, 2, 3)).astype(np.float32)
    y, _ = layer(x)
    stream = layer.stream(2)
    stepped = np.stack([stream.step(x[t]) for t in range(7)])
    np.testing.assert_allclose(stepped, y, **STEP_VS_CALL[np.float32].kw())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cls", [fr.LSTMCell, fr.GRUCell], ids=["lstm", "gru"])
def test_cells_match_the_one_step_reference(cls, dtype, rng, assert_close) -> None:
    cell = cls(4, 6, layer_norm=True, dtype=dtype, seed=4)
    params = perturbed(cell, rng)
    x = rng.standard_normal((3, 4)).astype(dtype)
    h = rng.standard_normal((3, 6)).astype(dtype)
    c = rng.standard_normal((3, 6)).astype(dtype)
    lstm = cls is fr.LSTMCell
    config = cell.config
    stack_params = {name + "_l0": value for name, value in params.items()}
    y_ref, h_ref, c_ref, _ = reference.forward(
        config, stack_params, x[None].astype(np.float64), h[None], c[None] if lstm else None
    )
    out = cell(x, (h, c)) if lstm else cell(x, h)
    assert_close(out[0] if lstm else out, h_ref[0], dtype, "h'")
    if lstm:
        assert_close(out[1], c_ref[0], dtype, "c'")


@pytest.mark.parametrize("cell", list(LAYERS))
def test_parameters_start_at_one_and_zero_and_are_counted(cell) -> None:
    layer = LAYERS[cell](input_size=3, hidden_size=4, num_layers=2, bidirectional=True, seed=0)
    gates = 4 if cell == "lstm" else 3
    expected = {"ln_weight_ih": (gates * 4,), "ln_weight_hh": (gates * 4,)}
    if cell == "lstm":
        expected.update({"ln_weight_c": (4,), "ln_bias_c": (4,)})
    state = layer.state_dict()
    for layer_index in range(2):
        for suffix in ("", "_reverse"):
            for role, shape in expected.items():
                value = state[f"{role}_l{layer_index}{suffix}"]
                assert value.shape == shape
                np.testing.assert_array_equal(value, 0.0 if role == "ln_bias_c" else 1.0)
    plain = (fr.LSTM if cell == "lstm" else fr.GRU)(3, 4, num_layers=2, bidirectional=True)
    extra = 4 * sum(int(np.prod(shape)) for shape in expected.values())
    assert layer.num_parameters() == plain.num_parameters() + extra
    assert "ln_weight_ih_l1_reverse" in layer.summary()


@pytest.mark.parametrize("cell", list(LAYERS))
def test_model_file_keeps_the_option_and_the_parameters(cell, rng, tmp_path) -> None:
    layer = LAYERS[cell](input_size=3, hidden_size=5, bidirectional=True, seed=0)
    params = perturbed(layer, rng)
    fr.save(layer, tmp_path / "m.frnn")
    loaded = fr.load(tmp_path / "m.frnn")
    assert loaded.config.layer_norm
    for name, value in params.items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x)[0], layer(x)[0])


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: fr.LSTM(3, 4, layer_norm=True, peephole=True), "peephole"),
        (lambda: fr.LSTM(3, 4, layer_norm=True, proj_size=2), "proj_size"),
        (lambda: fr.LSTM(3, 4, layer_norm=True, clip=1.0), "clip"),
        (lambda: fr.LSTM(3, 4, layer_norm=True, input_forget=True), "input_forget"),
        (lambda: fr.GRU(3, 4, layer_norm=True, clip=1.0), "clip"),
        (lambda: fr.GRU(3, 4, layer_norm=True, linear_before_reset=False), "linear_before_reset=False"),
        (lambda: fr.GRUCell(3, 4, layer_norm=True, linear_before_reset=False), "linear_before_reset=False"),
        (lambda: fr.LSTM(3, 4, layer_norm="yes"), "layer_norm"),
    ],
)
def test_what_it_does_not_combine_with_is_refused_by_name(make, named) -> None:
    with pytest.raises((ValueError, TypeError), match=named):
        make()


@pytest.mark.parametrize("cell", list(LAYERS))
def test_exporters_refuse_it_by_name(cell) -> None:
    layer = LAYERS[cell](input_size=3, hidden_size=4)
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="layer_norm"):
        fr.to_onnx(layer)
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="layer_norm"):
        fr.to_torch(layer)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_same_bits_every_time_and_at_any_thread_count(cell, rng) -> None:
    """The normalizations' sums run in an order fixed by the row's length: not by where the tape or the
    workspace happens to sit in memory (each record gets fresh buffers), nor by the team (one or two
    threads split rows in forward and columns in backward)."""
    x = rng.standard_normal((20, 32, 37)).astype(np.float32)
    grad_y = rng.standard_normal((20, 32, 128)).astype(np.float32)
    before = fr.get_num_threads()
    results = []
    try:
        for threads in (1, 1, 1, 2, 2):
            fr.set_num_threads(threads)
            layer = LAYERS[cell](input_size=37, hidden_size=128, seed=0)
            outputs = [layer.record(x) for _ in range(3)]
            grads = [tape.backward(grad_y) for tape in outputs]
            results += [(tape.output, g.input, g.params) for tape, g in zip(outputs, grads)]
    finally:
        fr.set_num_threads(before)
    y0, gx0, gp0 = results[0]
    for y, gx, gp in results[1:]:
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(gx, gx0)
        for name, g in gp.items():
            np.testing.assert_array_equal(g, gp0[name], err_msg=name)
