"""Models from and to other frameworks, and fusedrnn's own model files.

- ``from_torch(module)`` / ``to_torch(layer)``: torch.nn's RNN, LSTM, GRU and cells (``torch_convert``);
  ``fusedrnn.torch`` holds drop-in torch.nn modules running fusedrnn's kernels.
- ``from_onnx(model)`` / ``to_onnx(layer, path)`` / ``call_as_onnx``: ONNX's LSTM, GRU and RNN nodes
  (``onnx_io``); ``onnx_feeds`` builds ONNX Runtime's inputs for a ``to_onnx`` model (int32 lengths).
- ``from_keras(layer)`` / ``call_as_keras``: Keras 3's LSTM, GRU, SimpleRNN and Bidirectional
  (``keras_io``).
- ``save(layer, path)`` / ``load(path)``: one versioned file, no pickle (``model_file``); ``save`` of a
  mapping bundles models, NumPy arrays and JSON metadata in one file.
- ``Reverse``, ``SumDirections``, ``WithDefaults``: wrappers for conventions a layer alone lacks
  (``wrappers``).
- ``gate_orders``: each format's order of the gate blocks, one table that the conversions and the
  benchmark share.

Layouts are converted here and only here; the frameworks are imported only when a function needs them.
"""

from __future__ import annotations

from .keras_io import call_as_keras, from_keras
from .model_file import FORMAT_VERSION, ModelFileError, load, save
from .onnx_io import call_as_onnx, from_onnx, onnx_feeds, to_onnx
from .torch_convert import from_torch, to_torch
from .wrappers import Reverse, SumDirections, WithDefaults, unwrap

__all__ = [
    "from_torch",
    "to_torch",
    "from_onnx",
    "to_onnx",
    "call_as_onnx",
    "onnx_feeds",
    "from_keras",
    "call_as_keras",
    "save",
    "load",
    "ModelFileError",
    "FORMAT_VERSION",
    "Reverse",
    "SumDirections",
    "WithDefaults",
    "unwrap",
]
