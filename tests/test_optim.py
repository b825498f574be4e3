"""fusedrnn.optim: SGD, Adam and clip_grad_norm give torch.optim's numbers, update layers in place (and
the layers then compute with the new weights), handle several sources, and reject bad gradients
before changing anything."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest

import fusedrnn as fr
from fusedrnn import optim
from tolerances import CLIPPED_NORM, OPTIM_VS_TORCH

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")


def model_and_head(dtype=np.float64, seed=0):
    layer = fr.LSTM(3, 4, num_layers=2, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    head = {"W": rng.standard_normal((4, 2)).astype(dtype), "b": rng.standard_normal(2).astype(dtype)}
    return layer, head


def random_grads(layer, head, rng):
    return [
        {k: rng.standard_normal(v.shape) for k, v in layer.state_dict().items()},
        {k: rng.standard_normal(v.shape) for k, v in head.items()},
    ]


OPTIMIZERS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adamw", dict(lr=0.01, weight_decay=0.1)),
]


@needs_torch
@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)])
def test_matches_torch_optim(name, kwargs, rng):
    import torch

    layer, head = model_and_head()
    start = [layer.state_dict(), {k: v.copy() for k, v in head.items()}]
    tensors = [{k: torch.tensor(v, requires_grad=True) for k, v in group.items()} for group in start]
    flat = [t for group in tensors for t in group.values()]
    if name == "sgd":
        ours = optim.SGD(layer, head, **kwargs)
        theirs = torch.optim.SGD(flat, **kwargs)
    elif name == "adam":
        ours = optim.Adam(layer, head, **kwargs)
        theirs = torch.optim.Adam(flat, **kwargs)
    else:
        ours = optim.Adam(layer, head, decoupled=True, **kwargs)
        theirs = torch.optim.AdamW(flat, **kwargs)
    for _ in range(5):
        grads = random_grads(layer, head, rng)
        ours.step(grads)
        for group, g in zip(tensors, grads):
            for k, t in group.items():
                t.grad = torch.tensor(g[k])
        theirs.step()
    assert ours.steps == 5
    for k, t in tensors[0].items():
        np.testing.assert_allclose(
            layer.state_dict()[k], t.detach().numpy(), **OPTIM_VS_TORCH.kw(), err_msg=k
        )
    for k, t in tensors[1].items():
        np.testing.assert_allclose(head[k], t.detach().numpy(), **OPTIM_VS_TORCH.kw(), err_msg=k)


@needs_torch
def test_clip_grad_norm_matches_torch(rng):
    import torch

    grads = [
        {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)},
        None,
        {"c": rng.standard_normal(2)},
    ]
    tensors = [torch.tensor(g[k], requires_grad=True) for g in grads if g for k in g]
    for t, arr in zip(tensors, [g[k] for g in grads if g for k in g]):
        t.grad = torch.tensor(arr)
    total = optim.clip_grad_norm(grads, 0.5)
    expected = torch.nn.utils.clip_grad_norm_(tensors, 0.5)
    assert total == pytest.approx(float(expected), rel=OPTIM_VS_TORCH.rtol)
    clipped = [g[k] for g in grads if g for k in g]
    for arr, t in zip(clipped, tensors):
        np.testing.assert_allclose(arr, t.grad.numpy(), **OPTIM_VS_TORCH.kw())


def test_clip_grad_norm_below_the_limit_changes_nothing(rng):
    g = {"a": rng.standard_normal(10) * 0.01}
    before = g["a"].copy()
    total = optim.clip_grad_norm(g, 1.0)
    assert total == pytest.approx(float(np.linalg.norm(before)))
    np.testing.assert_array_equal(g["a"], before)
    g = {"a": rng.standard_normal(10)}
    optim.clip_grad_norm(g, 1.0)
    assert np.linalg.norm(g["a"]) == pytest.approx(1.0, rel=CLIPPED_NORM)


def test_step_updates_the_layer_in_place_and_invalidates(rng):
    layer = fr.GRU(3, 5, seed=0)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    arrays = layer._parameter_arrays()
    live = arrays["weight_hh_l0"]
    before = layer(x)[0]
    tape = layer.record(x)
    grads = tape.backward(np.ones_like(tape.output)).params
    optim.SGD(layer, lr=0.5).step(grads)
    assert layer._parameter_arrays()["weight_hh_l0"] is live  # same array, new values
    after = layer(x)[0]
    assert not np.allclose(after, before)
    fresh = fr.GRU(3, 5, seed=1)
    fresh.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(fresh(x)[0], after)
    with pytest.raises(RuntimeError, match="weights changed"):
        tape.backward(np.ones_like(tape.output))


def test_training_reduces_the_loss(rng):
    """A few Adam steps on a small regression: fit y_T to a target."""
    layer = fr.LSTM(3, 8, seed=0)
    head = {"W": np.zeros((8, 1), np.float32)}
    x = rng.standard_normal((10, 16, 3)).astype(np.float32)
    target = np.sign(x[0, :, :1])  # the first step's sign: needs memory through 10 steps
    opt = optim.Adam(layer, head, lr=0.03)
    losses = []
    for _ in range(60):
        tape = layer.record(x)
        pred = tape.output[-1] @ head["W"]
        err = pred - target
        losses.append(float((err**2).mean()))
        dpred = 2 * err / err.size
        gy = np.zeros_like(tape.output)
        gy[-1] = dpred @ head["W"].T
        opt.step([tape.backward(gy).params, {"W": tape.output[-1].T @ dpred}])
    assert losses[-1] < 0.3 * losses[0]


def test_missing_gradients_leave_parameters_alone(rng):
    layer, head = model_and_head()
    before = layer.state_dict()
    opt = optim.SGD(layer, head, lr=1.0)
    opt.step([{"bias_hh_l1": np.ones(16)}, None])
    after = layer.state_dict()
    for k in before:
        if k == "bias_hh_l1":
            np.testing.assert_allclose(after[k], before[k] - 1.0)
        else:
            np.testing.assert_array_equal(after[k], before[k])


def test_single_source_accepts_a_dict_and_a_list_of_sources(rng):
    head = {"w": np.ones(3)}
    optim.SGD(head, lr=0.5).step({"w": np.ones(3)})
    np.testing.assert_allclose(head["w"], 0.5)
    a, b = {"w": np.ones(2)}, {"w": np.ones(2)}
    opt = optim.SGD([a, b], lr=1.0)
    opt.step([{"w": np.ones(2)}, {"w": 2 * np.ones(2)}])
    np.testing.assert_allclose(a["w"], 0.0)
    np.testing.assert_allclose(b["w"], -1.0)
    assert "2 sources" in repr(opt)


def test_float32_parameters_stay_float32(rng):
    layer, head = model_and_head(dtype=np.float32)
    opt = optim.Adam(layer, head)
    opt.step(random_grads(layer, head, rng))  # float64 gradients
    assert all(v.dtype == np.float32 for v in layer.state_dict().values())
    assert all(v.dtype == np.float32 for v in head.values())


@pytest.mark.parametrize(
    "grads, error, match",
    [
        (lambda layer, head: {"W": np.ones((4, 2))}, TypeError, "2 parameter sources"),
        (lambda layer, head: [{}], ValueError, "expected 2 gradient dicts"),
        (lambda layer, head: [{"weight_ih_l9": np.ones(3)}, None], ValueError, "'weight_ih_l9' is not a"),
        (
            lambda layer, head: [None, {"W": np.ones((2, 4))}],
            ValueError,
            r"grads\[1\]\['W'\] must have shape \(4, 2\)",
        ),
        (lambda layer, head: [None, {"W": "x"}], TypeError, "real numbers"),
        (lambda layer, head: [None, 3], TypeError, r"grads\[1\]"),
        (lambda layer, head: "abc", TypeError, "list of 2 gradient dicts"),
    ],
    ids=[
        "dict-for-two-sources",
        "wrong-count",
        "unknown-name",
        "wrong-shape",
        "not-numbers",
        "not-a-dict",
        "string",
    ],
)
def test_bad_gradients_raise_and_change_nothing(grads, error, match):
    layer, head = model_and_head()
    before = layer.state_dict(), {k: v.copy() for k, v in head.items()}
    opt = optim.SGD(layer, head, lr=1.0)
    good = {"b": np.ones(2)}
    g = grads(layer, head)
    if isinstance(g, list) and len(g) == 2 and g[1] is None:
        g[1] = good  # a valid part: still nothing may change
    with pytest.raises(error, match=match):
        opt.step(g)
    for k, v in before[0].items():
        np.testing.assert_array_equal(layer.state_dict()[k], v)
    for k, v in before[1].items():
        np.testing.assert_array_equal(head[k], v)
    assert opt.steps == 0


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: optim.SGD(lr=0.1), ValueError, "at least one"),
        (lambda: optim.SGD([1, 2], lr=0.1), TypeError, "source 0 must be a fusedrnn layer"),
        (lambda: optim.SGD({"w": [1.0, 2.0]}, lr=0.1), TypeError, "floating-point NumPy array"),
        (lambda: optim.SGD({"w": np.arange(3)}, lr=0.1), TypeError, "floating-point NumPy array"),
        (lambda: optim.SGD({"w": np.ones(3)}, lr=-1), ValueError, "lr must be a finite number >= 0"),
        (lambda: optim.SGD({"w": np.ones(3)}, lr="0.1"), TypeError, "lr must be a number"),
        (lambda: optim.SGD({"w": np.ones(3)}, lr=0.1, nesterov=True), ValueError, "momentum > 0"),
        (lambda: optim.Adam({"w": np.ones(3)}, betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
        (lambda: optim.Adam({"w": np.ones(3)}, betas=0.9), TypeError, "betas must be a pair"),
        (lambda: optim.clip_grad_norm({"w": np.ones(3)}, float("nan")), ValueError, "max_norm"),
        (lambda: optim.clip_grad_norm({"w": [1.0]}, 1.0), TypeError, "floating-point NumPy array"),
    ],
    ids=[
        "no-sources",
        "not-a-source",
        "list-values",
        "int-array",
        "negative-lr",
        "string-lr",
        "nesterov",
        "beta-one",
        "betas-scalar",
        "nan-norm",
        "clip-list",
    ],
)
def test_construction_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_read_only_array_is_refused():
    w = np.ones(3)
    w.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD({"w": w}, lr=0.1)


def test_cells_are_sources_too(rng):
    cell = fr.LSTMCell(3, 4, seed=0)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    tape = cell.record(x)
    g = tape.backward(np.ones_like(tape.output))
    before = cell(x)[0]
    optim.Adam(cell, lr=0.1).step(g.params)
    assert not np.allclose(cell(x)[0], before)


# -- state_dict / load_state_dict: resuming --------------------------------------------------------------

RESUMABLE = [
    ("sgd-momentum", lambda *s: optim.SGD(*s, lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("sgd-nesterov", lambda *s: optim.SGD(*s, lr=0.1, momentum=0.5, nesterov=True)),
    ("adam", lambda *s: optim.Adam(*s, lr=0.01, betas=(0.8, 0.99))),
    ("adamw", lambda *s: optim.Adam(*s, lr=0.01, weight_decay=0.1, decoupled=True)),
]


def _training(layer, head, opt, steps, seed):
    """``steps`` steps on real gradients of the layer (and random ones for the head): the head's
    ``W`` only every other step, so some state starts late."""
    rng = np.random.default_rng(seed)
    for k in range(steps):
        x = rng.standard_normal((4, 2, 3))
        tape = layer.record(x)
        grads = [tape.backward(np.ones_like(tape.output)).params, {"b": rng.standard_normal(2)}]
        if k % 2:
            grads[1]["W"] = rng.standard_normal((4, 2))
        opt.step(grads)


@pytest.mark.parametrize("make", [m for _, m in RESUMABLE], ids=[n for n, _ in RESUMABLE])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resuming_from_a_state_dict_matches_an_uninterrupted_run(make, dtype):
    layer, head = model_and_head(dtype)
    opt = make(layer, head)
    _training(layer, head, opt, 3, seed=1)
    _training(layer, head, opt, 4, seed=2)

    # Interrupted after 3 steps: the model and the optimizer saved, then restored into new objects.
    layer2, head2 = model_and_head(dtype)
    opt2 = make(layer2, head2)
    _training(layer2, head2, opt2, 3, seed=1)
    saved_model, saved_head, saved_opt = layer2.state_dict(), copy.deepcopy(head2), opt2.state_dict()
    _training(layer2, head2, opt2, 1, seed=99)  # the saved state_dict is a copy: later steps leave it
    layer3, head3 = model_and_head(dtype, seed=5)
    layer3.load_state_dict(saved_model)
    head3.update(saved_head)
    opt3 = make(layer3, head3)
    opt3.load_state_dict(saved_opt)
    assert opt3.steps == 3
    _training(layer3, head3, opt3, 4, seed=2)

    assert opt3.steps == opt.steps == 7
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(layer3.state_dict()[name], value, err_msg=name)
    for name, value in head.items():
        np.testing.assert_array_equal(head3[name], value, err_msg=name)
    after, resumed = opt.state_dict(), opt3.state_dict()
    assert (
        after["param_groups"] == resumed["param_groups"] and after["state"].keys() == resumed["state"].keys()
    )


def test_state_dict_layout_is_torchs():
    layer, head = model_and_head()
    opt = optim.Adam(layer, head, lr=0.01)
    _training(layer, head, opt, 1, seed=0)
    sd = opt.state_dict()
    (group,) = sd["param_groups"]
    names = [f"0.{n}" for n in layer.state_dict()] + ["1.W", "1.b"]
    assert group == dict(
        lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False,
        params=list(range(len(names))), param_names=names,
    )  # fmt: skip
    assert sorted(sd["state"]) == [i for i, n in enumerate(names) if n != "1.W"]  # W had no gradient yet
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and sd["state"][0]["step"] == 1
    assert sd["steps"] == 1
    assert set(optim.SGD(layer, lr=0.1, momentum=0.9).state_dict()["param_groups"][0]) == {
        "lr", "momentum", "weight_decay", "nesterov", "params", "param_names"
    }  # fmt: skip


def test_load_state_dict_restores_the_hyperparameters():
    layer, head = model_and_head()
    source = optim.SGD(layer, head, lr=0.3, momentum=0.7, nesterov=True)
    target = optim.SGD(layer, head, lr=0.1)
    target.load_state_dict(source.state_dict())
    assert (target.lr, target.momentum, target.nesterov) == (0.3, 0.7, True)


def _refused(opt, sd, match, error=ValueError):
    before = opt.state_dict()
    with pytest.raises(error, match=match):
        opt.load_state_dict(sd)
    after = opt.state_dict()  # unchanged
    assert after["param_groups"] == before["param_groups"] and after["steps"] == before["steps"]
    assert after["state"].keys() == before["state"].keys()
    for index, entry in before["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(after["state"][index][key], value)


def test_a_state_dict_for_other_parameters_is_refused():
    layer, head = model_and_head()
    opt = optim.Adam(layer, head, lr=0.01)
    _training(layer, head, opt, 2, seed=0)

    other = optim.Adam(fr.GRU(3, 4), head).state_dict()
    _refused(opt, other, r"state_dict is for other parameters: expected 10 parameters .*got 6")
    _refused(opt, optim.Adam(layer, lr=0.01).state_dict(), "for other parameters")  # the head missing

    # same names, other sizes: the moments' shapes give it away
    bigger = fr.LSTM(3, 5, num_layers=2, dtype=np.float64)
    big_opt = optim.Adam(bigger, head, lr=0.01)
    tape = bigger.record(np.ones((2, 1, 3)))
    big_opt.step([tape.backward(np.ones_like(tape.output)).params, None])
    _refused(
        opt, big_opt.state_dict(), r"state\[0\] \(0\.weight_ih_l0\)\['exp_avg'\] must have shape \(16, 3\)"
    )

    sgd = optim.SGD(layer, head, lr=0.1, momentum=0.9).state_dict()
    _refused(opt, sgd, "keys are those of another optimizer")


@pytest.mark.parametrize(
    "edit, error, match",
    [
        (lambda sd: sd.pop("steps"), ValueError, "lacks 'steps'"),
        (lambda sd: sd["param_groups"].append({}), ValueError, "list of one group"),
        (lambda sd: sd["param_groups"][0].update(lr=-1.0), ValueError, "lr must be a finite number >= 0"),
        (lambda sd: sd["param_groups"][0].update(betas=(0.9,)), TypeError, "betas must be a pair"),
        (
            lambda sd: sd["state"].update({99: {"step": 1}}),
            ValueError,
            "state key 99 is not a parameter index",
        ),
        (lambda sd: sd["state"][0].update(momentum_buffer=1), ValueError, r"state\[0\].*'momentum_buffer'"),
        (lambda sd: sd["state"][1].update(step=-1), ValueError, r"step"),
        (lambda sd: sd.update(steps="3"), TypeError, "steps"),
    ],
    ids=["no-steps", "two-groups", "lr", "betas", "index", "sgd-buffer", "negative-step", "steps-type"],
)
def test_a_malformed_state_dict_is_refused_and_changes_nothing(edit, error, match):
    layer, head = model_and_head()
    opt = optim.Adam(layer, head, lr=0.01)
    _training(layer, head, opt, 2, seed=0)
    sd = opt.state_dict()
    # the last entry is valid and loaded last: a partial load would show
    sd["state"][max(sd["state"])]["exp_avg"] += 1.0
    edit(sd)
    _refused(opt, sd, match, error)
    with pytest.raises(TypeError, match="expected a mapping"):
        opt.load_state_dict([sd])
