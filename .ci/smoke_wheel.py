"""Smoke test of an installed wheel, run away from the source tree (by .ci/run and cibuildwheel): the
kernels against the NumPy reference, and the license shipped. FUSEDRNN_ISA picks the variant."""

import os
from importlib import metadata

import numpy as np

import fusedrnn as fr
from fusedrnn import reference

assert "site-packages" in fr.__file__, fr.__file__
files = [str(f) for f in metadata.distribution("fusedrnn").files]
assert any(f.endswith("LICENSE") for f in files), "LICENSE missing from the wheel"
rng = np.random.default_rng(0)
x = rng.standard_normal((7, 3, 5)).astype(np.float32)
for make in (fr.LSTM, fr.GRU, fr.RNN):
    layer = make(5, 8, num_layers=2, bidirectional=True, seed=1)
    y = layer(x)[0]
    params = {k: np.asarray(v, np.float64) for k, v in layer.state_dict().items()}
    y_ref = reference.forward(layer.config, params, x.astype(np.float64))[0]
    error = float(np.abs(y - y_ref).max())
    assert error < 1e-5, (make.__name__, error)
    print(f"   {make.__name__}: kernels {fr._core.isa}, largest difference from the reference {error:.1e}")
print("   fusedrnn", fr.__version__, "from", os.path.dirname(fr.__file__))
