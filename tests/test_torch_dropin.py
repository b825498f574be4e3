"""fusedrnn.torch: drop-in torch.nn modules. Each is compared with its torch.nn namesake holding the same
weights -- outputs, and autograd's gradients with respect to the input, the initial state and every
parameter -- padded, packed, batch-first and unbatched, float32 and float64; gradcheck in float64; a
training run with torch.optim against torch.nn's; dropout in training mode (same masks as torch.nn from
the same seed); weight changes; conversions; and that ``import fusedrnn`` leaves torch alone."""

from __future__ import annotations

import copy
import pickle
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from closeness import assert_scaled_close
from tolerances import TORCH_GRADCHECK, TRAINING_CURVE_VS_TORCH, VS_TORCH

torch = pytest.importorskip("torch")
frt = pytest.importorskip("fusedrnn.torch")
rnn_utils = pytest.importorskip("torch.nn.utils.rnn")

import fusedrnn as fr  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
)


def close(actual: Any, expected: Any, dtype: Any, what: str) -> None:
    assert_scaled_close(actual, expected, *VS_TORCH[dtype], what)


IN, H, T, N = 5, 7, 6, 4
LENGTHS = [6, 2, 5, 1]  # unsorted: enforce_sorted=False

LAYER_CASES = {
    "lstm": ("LSTM", dict()),
    "lstm-2l-bi": ("LSTM", dict(num_layers=2, bidirectional=True)),
    "lstm-proj-2l-bi-bf": ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=3, batch_first=True)),
    "lstm-nobias-3l": ("LSTM", dict(num_layers=3, bias=False)),
    "gru-2l-bi-bf": ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True)),
    "gru-nobias": ("GRU", dict(bias=False)),
    "rnn-tanh-2l-bi": ("RNN", dict(num_layers=2, bidirectional=True)),
    "rnn-relu-bf": ("RNN", dict(nonlinearity="relu", batch_first=True)),
}
DTYPES = {"f32": torch.float32, "f64": torch.float64}


def make_pair(case: str, dtype: Any, seed: int = 0) -> tuple[Any, Any]:
    name, kw = LAYER_CASES[case]
    torch.manual_seed(seed)
    ref = getattr(torch.nn, name)(IN, H, dtype=dtype, **kw)
    ours = getattr(frt, name)(IN, H, dtype=dtype, **kw)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def state_size(module: Any) -> tuple[int, int]:
    d = 2 if module.bidirectional else 1
    return d * module.num_layers, (
        module.proj_size or module.hidden_size
    ) if module.mode == "LSTM" else module.hidden_size


def run(module: Any, x: Any, hx: Any, packed: bool, unbatched: bool = False) -> list[Any]:
    """Forward, a loss over every output, backward; returns outputs then gradients (input, state, params)."""
    x = x.detach().clone().requires_grad_(True)
    hx_leaf = None
    if hx is not None:
        hx_leaf = tuple(s.detach().clone().requires_grad_(True) for s in hx)
    module.zero_grad()
    state = None if hx_leaf is None else (hx_leaf if module.mode == "LSTM" else hx_leaf[0])
    inp = x
    if packed:
        inp = rnn_utils.pack_padded_sequence(
            x, torch.tensor(LENGTHS), batch_first=module.batch_first, enforce_sorted=False
        )
    y, hidden = module(inp, state)
    hidden = hidden if module.mode == "LSTM" else (hidden,)
    if packed:
        y, _ = rnn_utils.pad_packed_sequence(y, batch_first=module.batch_first, total_length=T)
    gen = torch.Generator().manual_seed(5)
    loss = (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum()
    for s in hidden:
        loss = loss + (s * torch.randn(s.shape, generator=gen, dtype=s.dtype)).sum()
    loss.backward()
    out = [y, *hidden, x.grad]
    if hx_leaf is not None:
        out += [s.grad for s in hx_leaf]
    out += [p.grad for p in module.parameters()]
    return out


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "state"])
@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_matches_torch_nn(case: str, with_state: bool, packed: bool, dtype: Any) -> None:
    ref, ours = make_pair(case, dtype)
    assert isinstance(ours, type(ref))
    gen = torch.Generator().manual_seed(1)
    shape = (N, T, IN) if ref.batch_first else (T, N, IN)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    hx = None
    if with_state:
        lead, hout = state_size(ref)
        hx = (torch.randn(lead, N, hout, generator=gen, dtype=dtype),)
        if ref.mode == "LSTM":
            hx += (torch.randn(lead, N, H, generator=gen, dtype=dtype),)
    expected = run(ref, x, hx, packed)
    actual = run(ours, x, hx, packed)
    names = ["output", "h_n", "c_n"][: 3 if ref.mode == "LSTM" else 2] + ["grad input"]
    if hx is not None:
        names += [f"grad hx[{k}]" for k in range(len(hx))]
    names += [f"grad {n}" for n, _ in ref.named_parameters()]
    assert len(actual) == len(expected) == len(names)
    for a, e, what in zip(actual, expected, names):
        close(a, e, dtype, what)


@pytest.mark.parametrize("case", ["lstm-2l-bi", "gru-2l-bi-bf", "rnn-relu-bf"])
def test_unbatched_input(case: str) -> None:
    ref, ours = make_pair(case, torch.float64)
    x = torch.randn(T, IN, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    lead, hout = state_size(ref)
    h0 = torch.randn(lead, hout, dtype=torch.float64)
    state = (h0, torch.randn(lead, H, dtype=torch.float64)) if ref.mode == "LSTM" else h0
    for args in [(x,), (x, state)]:
        ye, he = ref(*args)
        ya, ha = ours(*args)
        close(ya, ye, torch.float64, "output")
        for a, e in zip(ha if ref.mode == "LSTM" else (ha,), he if ref.mode == "LSTM" else (he,)):
            close(a, e, torch.float64, "state")


CELL_CASES = {
    "lstmcell": ("LSTMCell", dict()),
    "grucell": ("GRUCell", dict()),
    "rnncell-relu": ("RNNCell", dict(nonlinearity="relu")),
    "rnncell-nobias": ("RNNCell", dict(bias=False)),
}


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("case", list(CELL_CASES))
def test_cell_matches_torch_nn(case: str, batched: bool, dtype: Any) -> None:
    name, kw = CELL_CASES[case]
    torch.manual_seed(3)
    ref = getattr(torch.nn, name)(IN, H, dtype=dtype, **kw)
    ours = getattr(frt, name)(IN, H, dtype=dtype, **kw)
    ours.load_state_dict(ref.state_dict())
    lstm = name == "LSTMCell"
    gen = torch.Generator().manual_seed(4)
    lead = (N,) if batched else ()
    x0 = torch.randn(*lead, IN, generator=gen, dtype=dtype)
    s0 = [torch.randn(*lead, H, generator=gen, dtype=dtype) for _ in range(2 if lstm else 1)]
    g = [torch.randn(*lead, H, generator=gen, dtype=dtype) for _ in range(2 if lstm else 1)]
    results = []
    for module in (ref, ours):
        module.zero_grad()
        x = x0.clone().requires_grad_(True)
        s = [t.clone().requires_grad_(True) for t in s0]
        out = module(x, tuple(s) if lstm else s[0])
        out = out if lstm else (out,)
        # Two steps, the second from the first's state: gradients flow through the state too.
        out2 = module(x * 0.5, out if lstm else out[0])
        out2 = out2 if lstm else (out2,)
        loss = sum((o * gg).sum() for o, gg in zip(out2, g)) + (out[0] ** 2).sum()
        loss.backward()
        results.append([*out, *out2, x.grad, *(t.grad for t in s), *(p.grad for p in module.parameters())])
        no_state = module(x0)
        results[-1] += list(no_state) if lstm else [no_state]
    for k, (a, e) in enumerate(zip(*results)):
        close(a, e, dtype, f"result {k}")


@pytest.mark.parametrize(
    "name, kw, packed",
    [
        ("LSTM", dict(num_layers=2, bidirectional=True), False),
        ("LSTM", dict(proj_size=2), True),
        ("GRU", dict(bidirectional=True, batch_first=True), True),
        ("RNN", dict(num_layers=2, nonlinearity="tanh"), False),
    ],
    ids=["lstm-2l-bi", "lstm-proj-packed", "gru-bi-bf-packed", "rnn-2l"],
)
def test_gradcheck_layers(name: str, kw: dict, packed: bool) -> None:
    torch.manual_seed(6)
    m = getattr(frt, name)(3, 4, dtype=torch.float64, **kw)
    lstm = name == "LSTM"
    lead = (2 if m.bidirectional else 1) * m.num_layers
    hout = m.proj_size if lstm and m.proj_size else m.hidden_size
    batch, steps = 3, 4
    x = torch.randn(
        (batch, steps, 3) if m.batch_first else (steps, batch, 3), dtype=torch.float64, requires_grad=True
    )
    h0 = torch.randn(lead, batch, hout, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(lead, batch, 4, dtype=torch.float64, requires_grad=True)
    params = list(m.parameters())
    lengths = torch.tensor([4, 1, 3])

    def f(x: Any, h0: Any, c0: Any, *ps: Any) -> Any:
        # gradcheck perturbs the parameters through .data, which no version counter sees.
        m.mark_weights_changed()
        inp = (
            rnn_utils.pack_padded_sequence(x, lengths, batch_first=m.batch_first, enforce_sorted=False)
            if packed
            else x
        )
        y, hidden = m(inp, (h0, c0) if lstm else h0)
        if packed:
            y = y.data
        return (y, *hidden) if lstm else (y, hidden)

    inputs = (x, h0, c0, *params) if lstm else (x, h0, *params)
    fn = f if lstm else (lambda x, h0, *ps: f(x, h0, None, *ps))
    assert torch.autograd.gradcheck(fn, inputs, **TORCH_GRADCHECK)


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_gradcheck_cells(name: str) -> None:
    torch.manual_seed(7)
    m = getattr(frt, name)(3, 4, dtype=torch.float64)
    lstm = name == "LSTMCell"
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)

    def f(x: Any, h: Any, c: Any, *ps: Any) -> Any:
        m.mark_weights_changed()
        return m(x, (h, c)) if lstm else m(x, h)

    inputs = (x, h, c, *m.parameters()) if lstm else (x, h, *m.parameters())
    fn = f if lstm else (lambda x, h, *ps: f(x, h, None, *ps))
    assert torch.autograd.gradcheck(fn, inputs, **TORCH_GRADCHECK)


class _Model(torch.nn.Module):
    """A sequence classifier: recurrent layer, then a linear head on the last output."""

    def __init__(self, rnn_module: Any, head_in: int) -> None:
        super().__init__()
        self.rnn = rnn_module
        self.head = torch.nn.Linear(head_in, 3, dtype=torch.float32)

    def forward(self, x: Any) -> Any:
        y, _ = self.rnn(x)
        return self.head(y[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_training_follows_torch_nn(name: str) -> None:
    """The same model trained with Adam from the same initialization on the same data: the loss curves
    stay together step by step (float32 rounding differences grow only slowly over 40 steps)."""
    kw = dict(num_layers=2, bidirectional=True)
    torch.manual_seed(8)
    ref = _Model(getattr(torch.nn, name)(6, 12, **kw), 24)
    ours = _Model(getattr(frt, name)(6, 12, **kw), 24)
    ours.load_state_dict(ref.state_dict())
    gen = torch.Generator().manual_seed(9)
    xs = torch.randn(40, 10, 16, 6, generator=gen)
    labels = (xs[:, :, :, :3].sum(dim=(1,)) > 0).long().argmax(dim=-1)  # (40, 16) in {0, 1, 2}
    curves = []
    for model in (ref, ours):
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        losses = []
        for step in range(40):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xs[step]), labels[step])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves.append(np.array(losses))
    assert curves[0][-5:].mean() < curves[0][:5].mean() - 0.1  # it learned something
    np.testing.assert_allclose(curves[1], curves[0], **TRAINING_CURVE_VS_TORCH.kw())
    for (n, p), (_, q) in zip(ref.named_parameters(), ours.named_parameters()):
        close(q, p, torch.float32, f"trained {n}")


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("case", ["lstm-2l-bi", "lstm-proj-2l-bi-bf", "gru-2l-bi-bf", "rnn-tanh-2l-bi"])
def test_dropout_train_and_eval(case: str, packed: bool) -> None:
    name, kw = LAYER_CASES[case]
    torch.manual_seed(10)
    ref = getattr(torch.nn, name)(IN, H, dropout=0.4, **kw)
    ours = getattr(frt, name)(IN, H, dropout=0.4, **kw)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn((N, T, IN) if ref.batch_first else (T, N, IN))
    for module in (ref, ours):
        assert module.training
    # Training mode: dropout between layers, with torch.nn's masks for the same seed.
    train_runs = []
    for module in (ref, ours):
        torch.manual_seed(11)
        train_runs.append(run(module, x, None, packed))
    for k, (a, e) in enumerate(zip(*train_runs)):
        close(a, e, torch.float32, f"training result {k}")
    # Eval mode: no dropout, and the output differs from the training one.
    ref.eval()
    ours.eval()
    eval_runs = [run(module, x, None, packed) for module in (ref, ours)]
    for k, (a, e) in enumerate(zip(*eval_runs)):
        close(a, e, torch.float32, f"eval result {k}")
    assert not torch.allclose(eval_runs[1][0], train_runs[1][0])
    # No grad in training mode still applies dropout (and matches).
    ref.train()
    ours.train()
    with torch.no_grad():
        outs = []
        for module in (ref, ours):
            torch.manual_seed(12)
            outs.append(module(x)[0])
    close(outs[1], outs[0], torch.float32, "no_grad training output")


def test_weight_changes_are_seen() -> None:
    torch.manual_seed(13)
    ref = torch.nn.LSTM(IN, H, num_layers=2)
    ours = frt.LSTM(IN, H, num_layers=2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, N, IN)

    def check(what: str) -> None:
        close(ours(x)[0], ref(x)[0], torch.float32, what)

    check("initial")
    # An optimizer step (in-place updates under no_grad).
    for m in (ref, ours):
        m.zero_grad()
        m(x)[0].sum().backward()
        torch.optim.SGD(m.parameters(), lr=0.5).step()
    check("after an optimizer step")
    # load_state_dict from a different model.
    other = torch.nn.LSTM(IN, H, num_layers=2)
    ref.load_state_dict(other.state_dict())
    ours.load_state_dict(other.state_dict())
    check("after load_state_dict")
    # torch.nn.init, in place.
    for m in (ref, ours):
        torch.nn.init.constant_(m.bias_hh_l1, 0.3)
    check("after torch.nn.init")
    # Replacing a parameter's tensor.
    new = torch.randn(4 * H, H)
    for m in (ref, ours):
        m.weight_hh_l0 = torch.nn.Parameter(new.clone())
    check("after replacing a parameter")
    # A write through .data is declared with mark_weights_changed().
    for m in (ref, ours):
        m.weight_ih_l0.data.mul_(-1.0)
    ours.mark_weights_changed()
    check("after a .data write and mark_weights_changed()")


def test_in_place_change_before_backward_is_refused_like_torch_nn() -> None:
    torch.manual_seed(14)
    for m in (torch.nn.GRU(IN, H), frt.GRU(IN, H)):
        y, _ = m(torch.randn(T, N, IN))
        with torch.no_grad():
            m.weight_hh_l0.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


def test_backward_after_another_forward_uses_its_own_weights() -> None:
    """Two forwards with different weights (a parameter replaced in between), then both backwards: each
    gets the gradients of its own weights, as with torch.nn."""
    torch.manual_seed(15)
    ref = torch.nn.LSTM(IN, H)
    ours = frt.LSTM(IN, H)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, N, IN)
    grads = []
    for m in (ref, ours):
        y1, _ = m(x)
        old = m.weight_hh_l0
        m.weight_hh_l0 = torch.nn.Parameter(old.detach() * 2)
        y2, _ = m(x)
        y1.pow(2).sum().backward()
        y2.pow(2).sum().backward()
        grads.append([old.grad, m.weight_hh_l0.grad, m.weight_ih_l0.grad])
    for a, e in zip(*grads):
        close(a, e, torch.float32, "gradient")


def test_double_float_and_state_dict_both_ways() -> None:
    torch.manual_seed(16)
    ref = torch.nn.GRU(IN, H, bidirectional=True)
    ours = frt.GRU(IN, H, bidirectional=True)
    ours.load_state_dict(ref.state_dict())  # torch.nn -> fusedrnn.torch
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    x = torch.randn(T, N, IN)
    close(ours(x)[0], ref(x)[0], torch.float32, "float32")
    ref.double()
    ours.double()
    assert all(p.dtype == torch.float64 for p in ours.parameters())
    out = ours(x.double())[0]
    assert out.dtype == torch.float64
    close(out, ref(x.double())[0], torch.float64, "after .double()")
    with pytest.raises(ValueError, match="dtype"):
        ours(x)  # float32 input, float64 weights: refused as torch.nn refuses it
    ours.float()
    ref.float()
    close(ours(x)[0], ref(x)[0], torch.float32, "after .float()")
    back = torch.nn.GRU(IN, H, bidirectional=True)
    back.load_state_dict(ours.state_dict())  # fusedrnn.torch -> torch.nn
    close(back(x)[0], ref(x)[0], torch.float32, "torch.nn loaded from fusedrnn.torch")


def test_copy_and_pickle() -> None:
    torch.manual_seed(17)
    m = frt.LSTM(IN, H, num_layers=2)
    x = torch.randn(T, N, IN)
    y = m(x)[0]
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        close(clone(x)[0], y, torch.float32, "copy")
        with torch.no_grad():
            clone.weight_ih_l0.zero_()
        assert not torch.allclose(clone(x)[0], y)
    close(m(x)[0], y, torch.float32, "original unchanged by changes to its copies")


def test_errors_match_torch_nn_kinds() -> None:
    m = frt.LSTM(IN, H)
    with pytest.raises(ValueError, match="2D or 3D"):
        m(torch.randn(2, 3, 4, IN))
    with pytest.raises(RuntimeError, match="input_size"):
        m(torch.randn(T, N, IN + 1))
    with pytest.raises(RuntimeError, match="hidden"):
        m(torch.randn(T, N, IN), (torch.zeros(1, N + 1, H), torch.zeros(1, N + 1, H)))
    with pytest.raises(RuntimeError, match="3-D"):
        m(torch.randn(T, N, IN), (torch.zeros(N, H), torch.zeros(N, H)))
    with pytest.raises(TypeError, match="float32 or torch.float64"):
        m.half()(torch.randn(T, N, IN).half())
    cell = frt.GRUCell(IN, H)
    with pytest.raises(RuntimeError, match="input_size"):
        cell(torch.randn(N, IN + 2))
    with pytest.raises(RuntimeError, match="shape"):
        cell(torch.randn(N, IN), torch.zeros(N + 1, H))


def test_no_grad_call_matches_and_keeps_no_graph() -> None:
    torch.manual_seed(18)
    ref, ours = make_pair("lstm-2l-bi", torch.float32)
    x = torch.randn(T, N, IN)
    with torch.no_grad():
        y = ours(x)[0]
    assert y.grad_fn is None
    close(y, ref(x)[0], torch.float32, "no_grad output")
    y2 = ours(x.requires_grad_(True))[0]
    assert y2.grad_fn is not None


def test_from_torch_converts_modules() -> None:
    torch.manual_seed(19)
    x = np.random.default_rng(0).standard_normal((T, N, IN)).astype(np.float32)
    for module in (
        torch.nn.LSTM(IN, H, num_layers=2, bidirectional=True, proj_size=3),
        frt.GRU(IN, H, batch_first=True),
        torch.nn.RNN(IN, H, nonlinearity="relu", dtype=torch.float64),
    ):
        layer = fr.from_torch(module)
        assert isinstance(layer, getattr(fr, type(module).__mro__[0].__name__))
        assert layer.dtype == (np.float64 if module.weight_ih_l0.dtype == torch.float64 else np.float32)
        xt = torch.from_numpy(x).to(module.weight_ih_l0.dtype)
        xt = xt.transpose(0, 1).contiguous() if module.batch_first else xt
        expected = module(xt)[0]
        close(
            layer(xt.numpy())[0], expected, module.weight_ih_l0.dtype, f"from_torch({type(module).__name__})"
        )
    cell = torch.nn.LSTMCell(IN, H)
    fcell = fr.from_torch(cell)
    h, c = fcell(x[0])
    he, ce = cell(torch.from_numpy(x[0]))
    close(h, he, torch.float32, "LSTMCell h")
    close(c, ce, torch.float32, "LSTMCell c")
    with pytest.raises(TypeError, match="torch.nn.LSTM"):
        fr.from_torch(torch.nn.Linear(2, 3))
    back = fr.to_torch(fr.from_torch(cell))
    assert isinstance(back, frt.LSTMCell)
    close(back(torch.from_numpy(x[0]))[0], he, torch.float32, "to_torch(LSTMCell)")


@pytest.mark.parametrize(
    "layer, option",
    [
        (lambda: fr.LSTM(IN, H, peephole=True), "peephole"),
        (lambda: fr.GRU(IN, H, linear_before_reset=False), "linear_before_reset=False"),
        (lambda: fr.GRU(IN, H, gate_activation="hard_sigmoid"), "gate_activation='hard_sigmoid'"),
        (lambda: fr.RNN(IN, H, num_layers=2, residual=True), "residual"),
        (lambda: fr.GRU(IN, H, clip=0.5), "clip"),
        (lambda: fr.RNN(IN, H, nonlinearity="relu", clip=0.5), "clip"),
        (lambda: fr.LSTMCell(IN, H, clip=0.5), "LSTMCell has no clip"),
        (lambda: fr.GRUCell(IN, H, clip=0.5), "GRUCell has no clip"),
        (lambda: fr.RNNCell(IN, H, clip=0.5), "RNNCell has no clip"),
    ],
)
def test_to_torch_refuses_what_torch_lacks(layer: Any, option: str) -> None:
    with pytest.raises(ValueError, match=re.escape(option)):
        fr.to_torch(layer())


def test_import_fusedrnn_does_not_import_torch() -> None:
    code = (
        "import sys, fusedrnn, fusedrnn.interop; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'onnx' not in sys.modules and 'keras' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
