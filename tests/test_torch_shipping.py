"""fusedrnn.torch on torch's shipping paths: ``torch.onnx.export`` (the TorchScript exporter and the default,
dynamo-based one) of a model holding drop-in modules writes the file torch.nn's modules give;
``torch.jit.trace`` and ``torch.export`` record torch.nn's forward and give fusedrnn's numbers;
``torch.compile`` runs fusedrnn's kernels outside its graph; ``torch.jit.script`` is refused with a hint;
modules built or called under ``torch.inference_mode()`` or ``torch.no_grad()`` run, and see weight changes;
``fr.to_onnx``, ``fr.save`` and ``fr.from_torch`` take the drop-in modules and give what the same weights
give through the plain path."""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from typing import Any

import numpy as np
import pytest

from closeness import assert_scaled_close
from tolerances import VS_ONNX_RUNTIME, VS_TORCH

torch = pytest.importorskip("torch")
frt = pytest.importorskip("fusedrnn.torch")

import fusedrnn as fr  # noqa: E402

# torch's own warnings on these paths, which its torch.nn modules raise the same: the notices that
# torch.jit.trace, torch.jit.script and the TorchScript exporter (dynamo=False) are deprecated (they are
# tested all the same), the exporters' notes on torch internals and on batch sizes, the tracer's note on
# torch.nn's check for unbatched input, and torch.nn's note on projected LSTMs.
pytestmark = [
    pytest.mark.filterwarnings(f"ignore:{message}")
    for message in (
        "You are using the legacy TorchScript-based ONNX export:DeprecationWarning",
        "The feature will be removed:DeprecationWarning:torch.onnx",
        "`torch.jit.trace` is deprecated:DeprecationWarning",
        "`torch.jit.trace_method` is deprecated:DeprecationWarning",
        "`torch.jit.script` is deprecated:DeprecationWarning",
        "LSTM with projections is not supported with oneDNN:UserWarning",
        r"`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning",
        r"The tensor attributes self\.(\w+\.)*_flat_weights:UserWarning",
        "Exporting a model to ONNX with a batch_size other than 1:UserWarning",
        "Converting a tensor to a Python boolean might cause the trace:torch.jit.TracerWarning",
    )
]

IN, H, T, N = 5, 7, 6, 3

LAYER_CASES = {
    "lstm": ("LSTM", dict()),
    "lstm-2l-bi-bf": ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    "gru-2l": ("GRU", dict(num_layers=2)),
    "gru-bi-bf": ("GRU", dict(bidirectional=True, batch_first=True)),
    "rnn-tanh": ("RNN", dict()),
    "rnn-relu-bi": ("RNN", dict(nonlinearity="relu", bidirectional=True)),
}
CELL_CASES = {
    "lstmcell": ("LSTMCell", dict()),
    "grucell": ("GRUCell", dict()),
    "rnncell-relu": ("RNNCell", dict(nonlinearity="relu")),
}


def close(actual: Any, expected: Any, what: str, dtype: Any = torch.float32) -> None:
    assert_scaled_close(actual, expected, *VS_TORCH[dtype], what)


def make_pair(name: str, kw: dict, seed: int = 0, dtype: Any = torch.float32) -> tuple[Any, Any]:
    """(torch.nn module, fusedrnn.torch module) with the same weights."""
    torch.manual_seed(seed)
    plain = getattr(torch.nn, name)(IN, H, dtype=dtype, **kw)
    dropin = getattr(frt, name)(IN, H, dtype=dtype, **kw)
    dropin.load_state_dict(plain.state_dict())
    return plain, dropin


class Tagger(torch.nn.Module):
    """A model that holds a recurrent module: the recurrent part, then a linear head on its output."""

    def __init__(self, rnn: Any) -> None:
        super().__init__()
        self.rnn = rnn
        out = rnn.hidden_size * (2 if getattr(rnn, "bidirectional", False) else 1)
        self.head = torch.nn.Linear(out, 2)

    def forward(self, x: Any, state: Any = None) -> Any:
        if isinstance(self.rnn, torch.nn.RNNCellBase):
            h = self.rnn(x, state)
            return self.head(h[0] if isinstance(h, tuple) else h)
        y, h_n = self.rnn(x, state)
        return self.head(y), h_n


def model_pair(name: str, kw: dict, seed: int = 0) -> tuple[Any, Any]:
    """Two Taggers, one around a torch.nn module and one around a drop-in, with the same weights."""
    plain, dropin = make_pair(name, kw, seed)
    plain_model = Tagger(plain).eval()
    dropin_model = Tagger(dropin).eval()
    dropin_model.head.load_state_dict(plain_model.head.state_dict())
    return plain_model, dropin_model


def inputs(rnn: Any, seed: int) -> Any:
    """An input of shape (T, N, IN) or (N, T, IN) for a layer, (N, IN) for a cell."""
    g = torch.Generator().manual_seed(seed)
    if isinstance(rnn, torch.nn.RNNCellBase):
        return torch.randn(N, IN, generator=g)
    return torch.randn((N, T, IN) if rnn.batch_first else (T, N, IN), generator=g)


def runs_fusedrnn_kernels(module: Any, x: Any) -> bool:
    """Whether an eager call of ``module`` went through fusedrnn's kernels: their autograd function is in
    the graph of the first output."""
    y = module(x.clone().requires_grad_(True))
    pending = [(y[0] if isinstance(y, tuple) else y).grad_fn]
    while pending:
        node = pending.pop()
        if node is None:
            continue
        if "_StackFunction" in type(node).__name__:
            return True
        pending.extend(next_node for next_node, _ in node.next_functions)
    return False


def flat(outputs: Any) -> list[Any]:
    if isinstance(outputs, (tuple, list)):
        return [t for o in outputs for t in flat(o)]
    return [outputs]


# -- torch.onnx.export --------------------------------------------------------------------------------


def export(model: Any, args: tuple, path: Any, exporter: str) -> Any:
    onnx = pytest.importorskip("onnx")
    if exporter == "default":
        pytest.importorskip("onnxscript", reason="torch.onnx.export's default exporter needs onnxscript")
        torch.onnx.export(model, args, str(path))
    else:
        torch.onnx.export(model, args, str(path), dynamo=False)
    return onnx.load(str(path))


def run_onnx(path: Any, args: tuple) -> list[np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {name: a.numpy() for name, a in zip(names, args)})


def op_types(model: Any) -> Counter:
    return Counter(node.op_type for node in model.graph.node)


# The TorchScript exporter, and the default one (in torch 2.13 the dynamo-based exporter, which needs
# onnxscript).
EXPORTERS = ["dynamo=False", pytest.param("default", marks=pytest.mark.slow)]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_onnx_export_writes_torch_nn_graph(case: str, exporter: str, tmp_path: Any) -> None:
    name, kw = LAYER_CASES[case]
    plain_model, dropin_model = model_pair(name, kw, seed=1)
    x = inputs(dropin_model.rnn, seed=2)
    plain_onnx = export(plain_model, (x,), tmp_path / "plain.onnx", exporter)
    dropin_onnx = export(dropin_model, (x,), tmp_path / "dropin.onnx", exporter)
    assert op_types(dropin_onnx) == op_types(plain_onnx)
    if exporter == "dynamo=False" or name != "RNN":  # the dynamo exporter unrolls torch.nn.RNN itself
        assert op_types(dropin_onnx)[name] == dropin_model.rnn.num_layers, op_types(dropin_onnx)
    # A different input than the one exported with: the graph computes, it does not replay.
    x2 = inputs(dropin_model.rnn, seed=3)
    got = run_onnx(tmp_path / "dropin.onnx", (x2,))
    want = run_onnx(tmp_path / "plain.onnx", (x2,))
    with torch.no_grad():
        eager = flat(dropin_model(x2))
    assert len(got) == len(want) == len(eager)
    for k, (g, w, e) in enumerate(zip(got, want, eager)):
        assert_scaled_close(g, w, *VS_ONNX_RUNTIME[np.float32], f"output {k}: the drop-in's file, torch.nn's")
        assert_scaled_close(g, e, *VS_ONNX_RUNTIME[np.float32], f"output {k}: the drop-in's file, eager")
    assert runs_fusedrnn_kernels(dropin_model.rnn, x2), "after the export, eager calls run fusedrnn's kernels"


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_onnx_export_with_initial_state(exporter: str, tmp_path: Any) -> None:
    plain_model, dropin_model = model_pair("LSTM", dict(num_layers=2), seed=4)
    x = inputs(dropin_model.rnn, seed=5)
    g = torch.Generator().manual_seed(6)
    state = (torch.randn(2, N, H, generator=g), torch.randn(2, N, H, generator=g))

    class WithState(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any, h0: Any, c0: Any) -> Any:
            return self.model(x, (h0, c0))

    args = (x, *state)
    plain_onnx = export(WithState(plain_model).eval(), args, tmp_path / "plain.onnx", exporter)
    dropin_onnx = export(WithState(dropin_model).eval(), args, tmp_path / "dropin.onnx", exporter)
    assert op_types(dropin_onnx) == op_types(plain_onnx)
    assert op_types(dropin_onnx)["LSTM"] == 2
    got = run_onnx(tmp_path / "dropin.onnx", args)
    with torch.no_grad():
        eager = flat(dropin_model(x, state))
    for k, (a, e) in enumerate(zip(got, eager)):
        assert_scaled_close(a, e, *VS_ONNX_RUNTIME[np.float32], f"output {k}")


@pytest.mark.parametrize("case", list(CELL_CASES))
def test_onnx_export_of_cells(case: str, tmp_path: Any) -> None:
    name, kw = CELL_CASES[case]
    plain_model, dropin_model = model_pair(name, kw, seed=7)
    x = inputs(dropin_model.rnn, seed=8)
    plain_onnx = export(plain_model, (x,), tmp_path / "plain.onnx", "dynamo=False")
    dropin_onnx = export(dropin_model, (x,), tmp_path / "dropin.onnx", "dynamo=False")
    assert op_types(dropin_onnx) == op_types(plain_onnx)
    x2 = inputs(dropin_model.rnn, seed=9)
    (got,) = run_onnx(tmp_path / "dropin.onnx", (x2,))
    with torch.no_grad():
        assert_scaled_close(got, dropin_model(x2), *VS_ONNX_RUNTIME[np.float32], name)


# -- torch.jit.trace, torch.compile, torch.jit.script ---------------------------------------------------


@pytest.mark.parametrize("case", list(LAYER_CASES) + list(CELL_CASES))
def test_trace_gives_the_eager_output(case: str) -> None:
    name, kw = {**LAYER_CASES, **CELL_CASES}[case]
    _, model = model_pair(name, kw, seed=10)
    x = inputs(model.rnn, seed=11)
    traced = torch.jit.trace(model, (x,))  # its sanity check reruns the module and compares the graphs
    assert "PythonOp" not in str(traced.graph), "the trace records torch operations only"
    x2 = inputs(model.rnn, seed=12)
    with torch.no_grad():
        got, want = flat(traced(x2)), flat(model(x2))
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        close(a, b, f"{case} output {k}")
    assert runs_fusedrnn_kernels(model.rnn, x2), "after the trace, eager calls run fusedrnn's kernels"


def test_traced_module_trains_like_the_eager_one() -> None:
    _, model = model_pair("GRU", dict(num_layers=2), seed=13)
    model.train()
    x = inputs(model.rnn, seed=14)
    traced = torch.jit.trace(model, (x,))
    grads = []
    for run in (traced, model):
        model.zero_grad()
        run(x)[0].square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for k, (a, b) in enumerate(zip(*grads)):
        close(a, b, f"gradient of parameter {k}")


@pytest.mark.parametrize("case", ["lstm-2l-bi-bf", "grucell"])
def test_torch_compile_runs_the_kernels_outside_its_graph(case: str) -> None:
    name, kw = {**LAYER_CASES, **CELL_CASES}[case]
    _, model = model_pair(name, kw, seed=15)
    compiled = torch.compile(model, backend="eager")  # dynamo's capture, without a C++ compiler
    x = inputs(model.rnn, seed=16)
    with torch.no_grad():
        got, want = flat(compiled(x)), flat(model(x))
    for k, (a, b) in enumerate(zip(got, want)):
        close(a, b, f"output {k}")
    assert runs_fusedrnn_kernels(compiled, x), "under torch.compile the recurrent module runs the kernels"


@pytest.mark.parametrize(
    "strict", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["non-strict", "strict"]
)
def test_torch_export_records_torch_nn_forward(strict: bool) -> None:
    plain_model, dropin_model = model_pair("GRU", dict(num_layers=2, batch_first=True), seed=36)
    x = inputs(dropin_model.rnn, seed=37)
    recorded = [
        str(node.target)
        for node in torch.export.export(dropin_model, (x,), strict=strict).graph.nodes
        if node.op == "call_function"
    ]
    expected = [
        str(node.target)
        for node in torch.export.export(plain_model, (x,), strict=strict).graph.nodes
        if node.op == "call_function"
    ]
    assert recorded == expected
    assert "aten.gru.input" in recorded
    program = torch.export.export(dropin_model, (x,), strict=strict).module()
    x2 = inputs(dropin_model.rnn, seed=38)
    with torch.no_grad():
        for k, (a, b) in enumerate(zip(flat(program(x2)), flat(dropin_model(x2)))):
            close(a, b, f"output {k}")


def test_script_is_refused_with_a_hint() -> None:
    _, model = model_pair("LSTM", dict(), seed=17)
    held = model.rnn
    with pytest.raises(
        TypeError,
        match=r"fusedrnn\.torch\.LSTM cannot be compiled by torch\.jit\.script.*"
        r"torch\.jit\.trace",
    ):
        torch.jit.script(model)
    assert model.rnn is held


# -- inference_mode and no_grad -------------------------------------------------------------------------

GRAD_MODES = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad}


@pytest.mark.parametrize("mode", list(GRAD_MODES))
@pytest.mark.parametrize("case", list(LAYER_CASES) + list(CELL_CASES))
def test_built_and_called_under_a_grad_mode(case: str, mode: str) -> None:
    name, kw = {**LAYER_CASES, **CELL_CASES}[case]
    with GRAD_MODES[mode]():
        plain, dropin = make_pair(name, kw, seed=18)
        x = inputs(dropin, seed=19)
        got, want = flat(dropin(x)), flat(plain(x))
    for k, (a, b) in enumerate(zip(got, want)):
        close(a, b, f"{case} under {mode}, output {k}")


@pytest.mark.parametrize("case", ["lstm-2l-bi-bf", "gru-2l", "lstmcell"])
def test_built_normally_called_under_inference_mode(case: str) -> None:
    name, kw = {**LAYER_CASES, **CELL_CASES}[case]
    plain, dropin = make_pair(name, kw, seed=20)
    x = inputs(dropin, seed=21)
    dropin(x)  # the packed weights now held from an ordinary call
    with torch.inference_mode():
        got, want = flat(dropin(x)), flat(plain(x))
    for k, (a, b) in enumerate(zip(got, want)):
        close(a, b, f"output {k}")
    # And the module still trains afterwards.
    y = dropin(x.clone().requires_grad_(True))
    flat(y)[0].sum().backward()
    assert all(p.grad is not None for p in dropin.parameters())


@pytest.mark.parametrize("case", ["lstm-2l-bi-bf", "grucell"])
def test_inference_tensor_weights_changed_in_place_are_seen(case: str) -> None:
    # Parameters made under inference_mode have no version counter; a write to them must still reach
    # the kernels' packed copy.
    name, kw = {**LAYER_CASES, **CELL_CASES}[case]
    with torch.inference_mode():
        plain, dropin = make_pair(name, kw, seed=22)
        assert all(p.is_inference() for p in dropin.parameters())
        x = inputs(dropin, seed=23)
        before = flat(dropin(x))
        other, _ = make_pair(name, kw, seed=24)
        dropin.load_state_dict(other.state_dict())  # in place, as torch does it
        got, want = flat(dropin(x)), flat(other(x))
        for k, (a, b) in enumerate(zip(got, want)):
            close(a, b, f"after load_state_dict, output {k}")
        assert not torch.equal(got[0], before[0])
        for p in dropin.parameters():
            p.mul_(0.5)
        for p in other.parameters():
            p.mul_(0.5)
        got, want = flat(dropin(x)), flat(other(x))
    for k, (a, b) in enumerate(zip(got, want)):
        close(a, b, f"after an in-place mul_, output {k}")


def test_normal_weights_changed_in_place_under_inference_mode_are_seen() -> None:
    plain, dropin = make_pair("LSTM", dict(num_layers=2), seed=25)
    x = inputs(dropin, seed=26)
    dropin(x)  # the packed weights now held
    with torch.no_grad():
        for p in plain.parameters():
            p.mul_(0.5)
    with torch.inference_mode():
        for p in dropin.parameters():
            p.mul_(0.5)
        got, want = flat(dropin(x)), flat(plain(x))
    for k, (a, b) in enumerate(zip(got, want)):
        close(a, b, f"output {k}")


# -- fr.to_onnx, fr.save, fr.from_torch -------------------------------------------------------------------

INTEROP_CASES = {**LAYER_CASES, **CELL_CASES, "lstm-proj": ("LSTM", dict(proj_size=3, num_layers=2))}


def layer_input(layer: Any, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if isinstance(layer, (fr.LSTMCell, fr.GRUCell, fr.RNNCell)):
        return rng.standard_normal((N, IN)).astype(np.float32)
    return rng.standard_normal((N, T, IN) if layer.batch_first else (T, N, IN)).astype(np.float32)


def assert_same_weights(layer: Any, module: Any) -> None:
    got = layer.state_dict()
    want = {k: t.detach().numpy() for k, t in module.state_dict().items()}
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("case", list(INTEROP_CASES))
def test_from_torch_takes_the_dropin(case: str) -> None:
    name, kw = INTEROP_CASES[case]
    plain, dropin = make_pair(name, kw, seed=27)
    layer, via_plain = fr.from_torch(dropin), fr.from_torch(plain)
    assert type(layer) is type(via_plain) is getattr(fr, name)
    assert repr(layer) == repr(via_plain)
    assert_same_weights(layer, dropin)
    x = layer_input(layer, seed=28)
    for k, (a, b) in enumerate(zip(flat(layer(x)), flat(via_plain(x)))):
        np.testing.assert_array_equal(a, b, err_msg=f"output {k}")
    with torch.no_grad():
        for k, (a, b) in enumerate(zip(flat(layer(x)), flat(plain(torch.from_numpy(x))))):
            close(a, b, f"output {k} vs torch.nn")


def test_from_torch_takes_a_dropin_built_under_inference_mode() -> None:
    with torch.inference_mode():
        plain, dropin = make_pair("GRU", dict(num_layers=2, bidirectional=True), seed=29)
    layer = fr.from_torch(dropin)
    assert_same_weights(layer, plain)


@pytest.mark.parametrize("case", list(INTEROP_CASES))
def test_save_takes_the_dropin(case: str) -> None:
    name, kw = INTEROP_CASES[case]
    plain, dropin = make_pair(name, kw, seed=30)
    got, want = io.BytesIO(), io.BytesIO()
    fr.save(dropin, got)
    fr.save(fr.from_torch(plain), want)
    assert got.getvalue() == want.getvalue(), "the same file as the plain path's"
    loaded = fr.load(io.BytesIO(got.getvalue()))
    assert type(loaded) is getattr(fr, name)
    assert_same_weights(loaded, plain)
    x = layer_input(loaded, seed=31)
    with torch.no_grad():
        for k, (a, b) in enumerate(zip(flat(loaded(x)), flat(dropin(torch.from_numpy(x))))):
            close(a, b, f"output {k} vs the drop-in")


def test_save_takes_a_dropin_in_a_path(tmp_path: Any) -> None:
    plain, dropin = make_pair("LSTM", dict(bidirectional=True), seed=32, dtype=torch.float64)
    fr.save(dropin, tmp_path / "model.frnn")
    loaded = fr.load(tmp_path / "model.frnn")
    assert loaded.dtype == np.float64
    assert_same_weights(loaded, plain)


def test_save_takes_dropins_inside_a_bundle() -> None:
    plain, dropin = make_pair("GRU", dict(num_layers=2), seed=34)
    embedding = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = io.BytesIO()
    fr.save({"encoder": {"rnn": dropin, "embedding": embedding}, "vocab": ["a", "b", "c"]}, got)
    loaded = fr.load(io.BytesIO(got.getvalue()))
    assert list(loaded) == ["encoder", "vocab"] and loaded["vocab"] == ["a", "b", "c"]
    assert type(loaded["encoder"]["rnn"]) is fr.GRU
    assert_same_weights(loaded["encoder"]["rnn"], plain)
    np.testing.assert_array_equal(loaded["encoder"]["embedding"], embedding)


@pytest.mark.parametrize("case", list(LAYER_CASES) + list(CELL_CASES))
def test_to_onnx_takes_the_dropin(case: str, tmp_path: Any) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    name, kw = {**LAYER_CASES, **CELL_CASES}[case]
    plain, dropin = make_pair(name, kw, seed=33)
    got = fr.to_onnx(dropin, tmp_path / "dropin.onnx")
    want = fr.to_onnx(fr.from_torch(plain))
    assert [n.op_type for n in got.graph.node] == [n.op_type for n in want.graph.node]
    assert [n.attribute for n in got.graph.node] == [n.attribute for n in want.graph.node]
    got_init = {i.name: numpy_helper.to_array(i) for i in got.graph.initializer}
    want_init = {i.name: numpy_helper.to_array(i) for i in want.graph.initializer}
    assert got_init.keys() == want_init.keys()
    for k in want_init:
        np.testing.assert_array_equal(got_init[k], want_init[k], err_msg=k)
    onnx.checker.check_model(str(tmp_path / "dropin.onnx"))
    x = torch.from_numpy(layer_input(fr.from_torch(dropin), seed=34))
    outputs = run_onnx(tmp_path / "dropin.onnx", (x,))
    with torch.no_grad():
        eager = flat(dropin(x))
    assert len(outputs) == len(eager)
    for k, (a, b) in enumerate(zip(outputs, eager)):
        assert_scaled_close(a, b, *VS_ONNX_RUNTIME[np.float32], f"output {k}")


def test_to_onnx_refuses_a_projected_dropin_as_the_plain_path_does() -> None:
    pytest.importorskip("onnx")
    plain, dropin = make_pair("LSTM", dict(proj_size=3), seed=35)
    with pytest.raises(ValueError, match="proj_size"):
        fr.to_onnx(fr.from_torch(plain))
    with pytest.raises(ValueError, match="proj_size"):
        fr.to_onnx(dropin)


def test_save_and_to_onnx_do_not_import_torch() -> None:
    # They take drop-in modules without importing torch to look for them.
    code = (
        "import io, sys, fusedrnn as fr\n"
        "fr.save(fr.GRU(3, 4), io.BytesIO())\n"
        "try:\n"
        "    fr.to_onnx(fr.GRU(3, 4))\n"
        "except ImportError:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
