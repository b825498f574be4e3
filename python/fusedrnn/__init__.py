"""fusedrnn: fused RNN, LSTM and GRU kernels for the CPU, forward and backward, with PyTorch's interface
on NumPy arrays::

    import numpy as np, fusedrnn as fr
    lstm = fr.LSTM(16, 32, num_layers=2, bidirectional=True, seed=0)
    y, (h_n, c_n) = lstm(np.zeros((10, 4, 16), np.float32))
    tape = lstm.record(x)                       # forward that keeps what backward needs
    g = tape.backward(grad_y)                   # g.input, g.state, g.params

``fusedrnn.reference`` is the plain NumPy implementation the kernels are tested against.
"""

from __future__ import annotations

try:
    from . import _core  # noqa: F401 - first, so that a missing build is explained
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "fusedrnn's compiled extension (fusedrnn._core) could not be imported: "
        f"{exc}. Install the package with pip (`pip install .` in the source tree, which builds the C++ "
        "core) rather than importing it from the source directory, and check that the build succeeded."
    ) from exc

from . import _threads, analysis, optim, reference
from ._model import IncompatibleKeys
from ._tape import Gradients, Tape
from ._threads import get_num_threads, set_num_threads, thread_limit
from ._version import __version__
from .cells import GRUCell, LSTMCell, RNNCell
from .interop import from_keras, from_onnx, from_torch, load, save, to_onnx, to_torch
from .layers import GRU, LSTM, RNN, RNNBase

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNNBase",
    "Tape",
    "Gradients",
    "IncompatibleKeys",
    "set_num_threads",
    "get_num_threads",
    "thread_limit",
    "reference",
    "from_torch",
    "to_torch",
    "from_onnx",
    "to_onnx",
    "from_keras",
    "save",
    "load",
    "optim",
    "analysis",
    "__version__",
]


_threads.follow_environment()
_threads.register_threadpoolctl_controller()
