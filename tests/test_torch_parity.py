"""Parity with PyTorch: a model whose weights come from torch.nn.RNN/LSTM/GRU (or the cells) gives
PyTorch's outputs and, through ``record``/``backward``, autograd's gradients with respect to the input,
the initial state and every parameter -- including packed variable-length batches, projections,
bidirectional stacks, batch_first, unbatched input and float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fusedrnn as fr
from closeness import assert_scaled_close
from tolerances import VS_TORCH

torch = pytest.importorskip("torch")
# PyTorch's own notice that it runs projected LSTMs without oneDNN: not about this package.
pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
)
rnn_utils = pytest.importorskip("torch.nn.utils.rnn")

TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


def close(actual: Any, expected: Any, dtype: Any, what: str) -> None:
    assert_scaled_close(actual, expected, *VS_TORCH[dtype], what)


def to_np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy()


# id -> (torch class, our class, constructor keyword arguments)
CASES = {
    "lstm": ("LSTM", dict(num_layers=1)),
    "lstm-2l-bi": ("LSTM", dict(num_layers=2, bidirectional=True)),
    "lstm-proj-2l-bi": ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=3)),
    "lstm-proj-bf": ("LSTM", dict(proj_size=2, batch_first=True)),
    "lstm-nobias-3l": ("LSTM", dict(num_layers=3, bias=False)),
    "gru": ("GRU", dict()),
    "gru-2l-bi-bf": ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True)),
    "gru-nobias": ("GRU", dict(bias=False)),
    "rnn-tanh-2l-bi": ("RNN", dict(num_layers=2, bidirectional=True)),
    "rnn-relu": ("RNN", dict(nonlinearity="relu")),
    "rnn-relu-3l-bi-bf": (
        "RNN",
        dict(num_layers=3, bidirectional=True, nonlinearity="relu", batch_first=True),
    ),
}
PARAMS = [
    pytest.param(case, packed, dtype, id=f"{case}-{'packed' if packed else 'padded'}-{dtype.__name__}")
    for case in CASES
    for packed in (False, True)
    for dtype in (np.float32, np.float64)
]

IN, H, T, N = 5, 7, 6, 4
LENGTHS = [6, 2, 5, 1]  # unsorted on purpose: enforce_sorted=False


def make_pair(case: str, dtype: Any, seed: int = 0, from_parameters: bool = False) -> tuple[Any, Any]:
    torch.manual_seed(seed)
    name, kw = CASES[case]
    tm = getattr(torch.nn, name)(IN, H, dtype=TORCH_DTYPES[dtype], **kw)
    ours = getattr(fr, name)(IN, H, dtype=dtype, seed=seed + 1, **kw)
    # Tensors straight from the module: they require grad (named_parameters) or not (state_dict).
    source = dict(tm.named_parameters()) if from_parameters else tm.state_dict()
    ours.load_state_dict(source)
    return tm, ours


@pytest.mark.parametrize("case,packed,dtype", PARAMS)
def test_outputs_and_gradients(case: str, packed: bool, dtype: Any) -> None:
    tm, ours = make_pair(case, dtype, from_parameters=packed)
    tdt = TORCH_DTYPES[dtype]
    bf = tm.batch_first
    lstm = isinstance(tm, torch.nn.LSTM)
    d = 2 if tm.bidirectional else 1
    h_out = tm.proj_size or H
    g = torch.Generator().manual_seed(1)
    x = torch.randn((N, T, IN) if bf else (T, N, IN), generator=g, dtype=tdt, requires_grad=True)
    h0 = torch.randn(d * tm.num_layers, N, h_out, generator=g, dtype=tdt, requires_grad=True)
    c0 = torch.randn(d * tm.num_layers, N, H, generator=g, dtype=tdt, requires_grad=True)
    state = (h0, c0) if lstm else h0
    if packed:
        seq = rnn_utils.pack_padded_sequence(x, LENGTHS, batch_first=bf, enforce_sorted=False)
        out, t_state = tm(seq, state)
        y, _ = rnn_utils.pad_packed_sequence(out, batch_first=bf, total_length=T)
    else:
        y, t_state = tm(x, state)
    gy = torch.randn(y.shape, generator=g, dtype=tdt)
    t_h = t_state[0] if lstm else t_state
    gh = torch.randn(t_h.shape, generator=g, dtype=tdt)
    loss = (y * gy).sum() + (t_h * gh).sum()
    gc = None
    if lstm:
        gc = torch.randn(t_state[1].shape, generator=g, dtype=tdt)
        loss = loss + (t_state[1] * gc).sum()
    loss.backward()

    lengths = LENGTHS if packed else None
    # Inputs as torch tensors (requiring grad) are accepted as they are.
    our_state = (h0, c0) if lstm else h0
    y_ours, s_ours = ours(x, our_state, lengths)
    close(y_ours, to_np(y), dtype, "y")
    tape = ours.record(x, our_state, lengths)
    close(tape.output, to_np(y), dtype, "tape y")
    if lstm:
        close(s_ours[0], to_np(t_state[0]), dtype, "h_n")
        close(s_ours[1], to_np(t_state[1]), dtype, "c_n")
        grads = tape.backward(gy, (gh, gc))
        close(grads.state[0], to_np(h0.grad), dtype, "grad h0")
        close(grads.state[1], to_np(c0.grad), dtype, "grad c0")
    else:
        close(s_ours, to_np(t_state), dtype, "h_n")
        grads = tape.backward(gy, gh)
        close(grads.state, to_np(h0.grad), dtype, "grad h0")
    close(grads.input, to_np(x.grad), dtype, "grad x")
    t_params = dict(tm.named_parameters())
    assert list(grads.params) == list(t_params)
    for name, p in t_params.items():
        close(grads.params[name], to_np(p.grad), dtype, f"grad {name}")


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_unbatched_input(name: str) -> None:
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(IN, H, num_layers=2, bidirectional=True)
    ours = getattr(fr, name)(IN, H, num_layers=2, bidirectional=True)
    ours.load_state_dict(tm.state_dict())
    x = torch.randn(T, IN, requires_grad=True)
    y, state = tm(x)
    y_ours, s_ours = ours(x.detach().numpy())
    close(y_ours, to_np(y), np.float32, "y")
    h, h_ours = (state[0], s_ours[0]) if name == "LSTM" else (state, s_ours)
    assert h_ours.shape == tuple(h.shape) == (4, H)
    close(h_ours, to_np(h), np.float32, "h_n")
    y.sum().backward()
    tape = ours.record(x.detach().numpy())
    close(tape.backward(np.ones(tape.output.shape)).input, to_np(x.grad), np.float32, "grad x")


def test_state_dict_of_ours_loads_into_torch() -> None:
    ours = fr.LSTM(IN, H, num_layers=2, bidirectional=True, proj_size=3, seed=5)
    tm = torch.nn.LSTM(IN, H, num_layers=2, bidirectional=True, proj_size=3)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((T, N, IN)).astype(np.float32)
    with torch.no_grad():
        y, _ = tm(torch.from_numpy(x))
    close(ours(x)[0], y.numpy(), np.float32, "y")


def test_non_contiguous_and_float64_tensors_load() -> None:
    torch.manual_seed(0)
    tm = torch.nn.GRU(IN, H, dtype=torch.float64)
    ours = fr.GRU(IN, H)
    # Transposed-and-back views: same values, non-contiguous storage.
    ours.load_state_dict(
        {k: v.t().contiguous().t() if v.dim() == 2 else v for k, v in tm.state_dict().items()}
    )
    for name, value in tm.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[name], value.numpy().astype(np.float32))


def test_lengths_as_tensor() -> None:
    tm, ours = make_pair("gru-2l-bi-bf", np.float32)
    x = torch.randn(N, T, IN)
    lengths = torch.tensor(LENGTHS)
    seq = rnn_utils.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        out, h = tm(seq)
        y, _ = rnn_utils.pad_packed_sequence(out, batch_first=True, total_length=T)
    y_ours, h_ours = ours(x, None, lengths)
    close(y_ours, y.numpy(), np.float32, "y")
    close(h_ours, h.numpy(), np.float32, "h_n")


CELL_CASES = [
    pytest.param(
        name,
        kw,
        dtype,
        batched,
        id=f"{name}{'-relu' if kw else ''}-{dtype.__name__}-{'b' if batched else 'u'}",
    )
    for name, kw in (
        ("LSTMCell", {}),
        ("GRUCell", {}),
        ("RNNCell", {}),
        ("RNNCell", {"nonlinearity": "relu"}),
    )
    for dtype in (np.float32, np.float64)
    for batched in (True, False)
]


@pytest.mark.parametrize("name,kw,dtype,batched", CELL_CASES)
def test_cells(name: str, kw: dict, dtype: Any, batched: bool) -> None:
    torch.manual_seed(0)
    tdt = TORCH_DTYPES[dtype]
    tm = getattr(torch.nn, name)(IN, H, dtype=tdt, **kw)
    ours = getattr(fr, name)(IN, H, dtype=dtype, **kw)
    ours.load_state_dict(dict(tm.named_parameters()))
    lead = (N,) if batched else ()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(*lead, IN, generator=g, dtype=tdt, requires_grad=True)
    h = torch.randn(*lead, H, generator=g, dtype=tdt, requires_grad=True)
    c = torch.randn(*lead, H, generator=g, dtype=tdt, requires_grad=True)
    lstm = name == "LSTMCell"
    out = tm(x, (h, c)) if lstm else tm(x, h)
    gh = torch.randn(*lead, H, generator=g, dtype=tdt)
    gc = torch.randn(*lead, H, generator=g, dtype=tdt)
    if lstm:
        ((out[0] * gh).sum() + (out[1] * gc).sum()).backward()
    else:
        (out * gh).sum().backward()

    ours_out = ours(x, (h, c)) if lstm else ours(x, h)
    tape = ours.record(x, (h, c) if lstm else h)
    if lstm:
        close(ours_out[0], to_np(out[0]), dtype, "h")
        close(ours_out[1], to_np(out[1]), dtype, "c")
        grads = tape.backward(gh, (None, gc))
        close(grads.state[0], to_np(h.grad), dtype, "grad h")
        close(grads.state[1], to_np(c.grad), dtype, "grad c")
    else:
        close(ours_out, to_np(out), dtype, "h")
        grads = tape.backward(gh)
        close(grads.state, to_np(h.grad), dtype, "grad h")
    close(grads.input, to_np(x.grad), dtype, "grad x")
    for pname, p in tm.named_parameters():
        close(grads.params[pname], to_np(p.grad), dtype, f"grad {pname}")
