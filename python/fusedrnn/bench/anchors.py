"""The implementations timed against each other: fusedrnn and its anchors.

``numpy`` (``fusedrnn.reference``, explicit per-step NumPy loops; slow, so it is timed in fewer rounds),
``torch`` (``torch.nn.RNN``/``LSTM``/``GRU`` with ``torch.set_num_threads`` equal to the thread count,
inference under ``torch.inference_mode``, a ragged batch through ``pack_padded_sequence``),
``onnxruntime`` (float32 inference without projection only, the model of :mod:`.onnx_graph`; one session
per thread count with ``intra_op_num_threads`` equal to it). Each is a :class:`Runner`; an anchor that
cannot run here, or cannot express the workload, raises :class:`AnchorUnavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._cells import CellKind
from . import optional
from .problems import Problem, fusedrnn_layer, lengths_array, onnx_expresses, torch_forward

ALL_ANCHORS = ("numpy", "torch", "onnxruntime")


class AnchorUnavailable(Exception):
    """An anchor cannot run here (not installed, or not applicable); the message says why."""


@dataclass
class Runner:
    """One implementation of one problem at one thread count.

    ``call()`` is what is timed; ``answer(result)`` turns its result into arrays to compare (outside the
    timed region). ``max_runs`` limits how many rounds include it (None: every round)."""

    name: str
    call: Callable[[], Any]
    answer: Callable[[Any], dict[str, np.ndarray]]
    max_runs: int | None = None


def _state_answer(kind: CellKind, state: Any, to_numpy: Callable[[Any], np.ndarray]) -> dict[str, np.ndarray]:
    if kind.has_cell_state:
        return {"h_n": to_numpy(state[0]), "c_n": to_numpy(state[1])}
    return {"h_n": to_numpy(state)}


def fusedrnn_runner(problem: Problem) -> Runner:
    import fusedrnn as fr

    w = problem.workload
    layer = fusedrnn_layer(fr, w)
    if problem.torch_module is not None:
        layer.load_state_dict(problem.torch_module.state_dict())
    else:
        layer.load_state_dict(problem.params)
    x, gy = problem.x, problem.gy
    lengths = lengths_array(w)

    if w.mode == "inference":

        def call() -> Any:
            return layer(x, lengths=lengths)

        def answer(res: Any) -> dict[str, np.ndarray]:
            y, state = res
            return {"output": y, **_state_answer(w.kind, state, np.asarray)}
    else:

        def call() -> Any:
            tape = layer.record(x, lengths=lengths)
            return tape, tape.backward(gy)

        def answer(res: Any) -> dict[str, np.ndarray]:
            tape, g = res
            out = {"output": tape.output, "grad_input": g.input}
            out.update({"grad_" + k: v for k, v in g.params.items()})
            return out

    return Runner("fusedrnn", call, answer)


def numpy_runner(problem: Problem, threads: int) -> Runner:
    from fusedrnn import reference
    from fusedrnn._config import StackConfig

    w = problem.workload
    config = StackConfig(
        cell=w.cell,
        input_size=w.I,
        hidden_size=w.H,
        num_layers=w.layers,
        bidirectional=w.bidirectional,
        proj_size=w.proj_size,
    )
    params = problem.params
    x, gy = problem.x, problem.gy
    lengths = lengths_array(w)

    if w.mode == "inference":

        def call() -> Any:
            return reference.forward(config, params, x, lengths=lengths)

        def answer(res: Any) -> dict[str, np.ndarray]:
            y, h_n, c_n, _ = res
            out = {"output": y, "h_n": h_n}
            if c_n is not None:
                out["c_n"] = c_n
            return out
    else:

        def call() -> Any:
            y, _, _, cache = reference.forward(config, params, x, lengths=lengths)
            return y, reference.backward(cache, gy)

        def answer(res: Any) -> dict[str, np.ndarray]:
            y, (grad_x, _, _, grad_params) = res
            out = {"output": y, "grad_input": grad_x}
            out.update({"grad_" + k: v for k, v in grad_params.items()})
            return out

    return Runner("numpy", call, answer)


def torch_runner(problem: Problem, threads: int) -> Runner:
    torch = optional.try_import("torch")
    if torch is None:
        raise AnchorUnavailable("PyTorch is not installed")
    torch.set_num_threads(threads)
    w = problem.workload
    module = problem.torch_module
    if w.mode == "inference":
        module.eval()
        xt = torch.from_numpy(problem.x)

        def call() -> Any:
            with torch.inference_mode():
                return torch_forward(torch, module, xt, w)

        def answer(res: Any) -> dict[str, np.ndarray]:
            y, state = res
            return {"output": y.numpy(), **_state_answer(w.kind, state, lambda t: t.numpy())}
    else:
        module.train()
        xt = torch.from_numpy(problem.x.copy()).requires_grad_(True)
        gt = torch.from_numpy(problem.gy)
        params = dict(module.named_parameters())

        def call() -> Any:
            module.zero_grad(set_to_none=True)
            xt.grad = None
            y, _ = torch_forward(torch, module, xt, w)
            y.backward(gt)  # the gradients of loss = sum(y * g), without forming y * g
            return y

        def answer(res: Any) -> dict[str, np.ndarray]:
            out = {"output": res.detach().numpy(), "grad_input": xt.grad.numpy()}
            out.update({"grad_" + k: p.grad.numpy() for k, p in params.items()})
            return out

    return Runner("torch", call, answer)


def onnxruntime_runner(problem: Problem, threads: int) -> Runner:
    cannot = onnx_expresses(problem.workload)
    if cannot is not None:
        raise AnchorUnavailable(cannot)
    ort = optional.try_import("onnxruntime")
    if ort is None:
        raise AnchorUnavailable("onnxruntime is not installed")
    if problem.onnx_model is None:
        raise AnchorUnavailable("no ONNX model: the onnx package is not installed")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    session = ort.InferenceSession(problem.onnx_model, sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: problem.x}
    w = problem.workload

    def call() -> Any:
        return session.run(None, feed)

    def answer(res: Any) -> dict[str, np.ndarray]:
        out = {"output": res[0], "h_n": res[1]}
        if w.kind.has_cell_state:
            out["c_n"] = res[2]
        return out

    return Runner("onnxruntime", call, answer)


# name -> factory(problem, threads) -> Runner, or raises AnchorUnavailable
ANCHOR_FACTORIES: dict[str, Callable[[Problem, int], Runner]] = {
    "numpy": numpy_runner,
    "torch": torch_runner,
    "onnxruntime": onnxruntime_runner,
}
