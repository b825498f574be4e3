"""Every tolerance the tests compare numbers with, named by what is compared with what.

A ``Tol`` is (rtol, atol). Where a comparison goes through ``closeness.assert_scaled_close`` the atol is
multiplied by max(1, max|expected|); elsewhere it is used as it is. The per-dtype tables answer to NumPy
dtypes, their scalar types and torch dtypes alike. Not to be widened to make a case pass.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Tol(NamedTuple):
    rtol: float
    atol: float

    def kw(self) -> dict:
        """rtol= and atol= for np.testing.assert_allclose."""
        return {"rtol": self.rtol, "atol": self.atol}


class PerDtype(dict):
    """{dtype name: Tol}, looked up by any spelling of the dtype (np.float32, np.dtype, torch.float32)."""

    def __getitem__(self, dtype: Any) -> Tol:
        text = str(dtype)
        name = text.removeprefix("torch.") if text.startswith("torch.") else np.dtype(dtype).name
        return super().__getitem__(name)


# -- the compiled kernels against the NumPy reference (float64 arithmetic on the same rounded inputs):
# float32 rounding, float64 rounding. atol scaled.
KERNEL_VS_REFERENCE = PerDtype(float32=Tol(1e-4, 1e-5), float64=Tol(1e-10, 1e-10))

# -- fusedrnn against other implementations of the same layers, atol scaled
VS_TORCH = PerDtype(float32=Tol(1e-4, 1e-5), float64=Tol(1e-10, 1e-10))
VS_ONNX_RUNTIME = PerDtype(float32=Tol(1e-5, 1e-5), float64=Tol(1e-12, 1e-12))
VS_KERAS = PerDtype(float32=Tol(1e-5, 1e-5), float64=Tol(1e-12, 1e-12))
# The same float32 model trained 40 Adam steps by torch and by fusedrnn: the loss curves.
TRAINING_CURVE_VS_TORCH = Tol(2e-4, 2e-4)

# -- the NumPy reference (float64) against PyTorch's float64 modules, and against torch's own spelling
# of the reset-before-candidate GRU, unscaled
REFERENCE_VS_TORCH = Tol(1e-12, 1e-13)
# The reference against itself: one sequence alone against the same sequence in a padded batch, and a
# masked-off layer against a layer fed zeros. Only the summation order of a few products differs.
REFERENCE_REGROUPED = Tol(1e-13, 1e-14)
REFERENCE_ZERO_INPUT = Tol(1e-14, 0.0)

# -- float64 gradients against central differences (of the reference, or of the float64 kernels)
FINITE_DIFFERENCE_STEP = 1e-6
VS_FINITE_DIFFERENCES = Tol(1e-6, 1e-8)
# a whole gradient along one direction, <grad, v>: |analytic - numeric| <= this * max(1, |numeric|)
DIRECTIONAL_DERIVATIVE = 1e-6
# a float32 NumPy gradient (README's softmax cross-entropy head) against float64 central differences of
# the same loss at the same point: float32 rounding of values below 1, unscaled
FLOAT32_VS_FINITE_DIFFERENCES = Tol(1e-6, 1e-7)
# torch.autograd.gradcheck of the float64 autograd functions
TORCH_GRADCHECK = {"eps": 1e-6, "atol": 1e-7, "rtol": 1e-5}

# -- one float32 model, the same answer reached two ways (unscaled)
# the same sums in another layout or through another entry point (batch_first, unbatched, record vs call)
REARRANGED_F32 = Tol(1e-6, 1e-7)
# sums grouped differently: a sequence alone or in a batch, a state carried between calls, cell steps
# against a layer, another thread or slice count
REGROUPED_F32 = Tol(1e-5, 1e-6)
# a stream's (or a cell's) step against a whole call: the input projection of one step's rows against all
# T*N rows at once, the same sums rounded differently in the last bit
STEP_VS_CALL = PerDtype(float32=Tol(0.0, 2e-6), float64=Tol(0.0, 1e-13))

# LSTM(forget_bias=2.0) against the same weights plus 2.0 afterwards, float32 (rtol)
FORGET_BIAS_SHIFT_F32 = 1e-6

# Allowed |kernel - float64 reference| over all T steps, for outputs and states bounded by 1 (y, h; c is
# scaled by max(1, |c|)): 8 float32 epsilons, whatever T. Each step's rounding is a few eps (the
# float32 reference itself is up to 1.5 eps off), and in a contracting network (forget gate < 1, the
# default U(-1/sqrt(H), 1/sqrt(H)) weights) an error made at one step decays over the next ones instead
# of accumulating: measured 0.9 to 1.8 eps at T = 100,000, the same in the first and last 1,000 steps.
# Accumulating errors would be a random walk, sqrt(100,000) = 316 steps' worth, or worse.
LONG_SEQUENCE_F32 = 8 * float(np.finfo(np.float32).eps)

# -- float64 arithmetic that should agree to rounding (rtol only)
# gradient-flow norms against the norms of central differences of the reference
FLOW_VS_FINITE_DIFFERENCES = 1e-6
# the same gradient-flow norms in another layout
FLOW_REARRANGED = 1e-12
# fusedrnn.optim's steps, clip_grad_norm's total and clipped gradients against torch's, float64
OPTIM_VS_TORCH = Tol(1e-12, 0.0)
# a gradient clipped to norm 1: both divide by total + 1e-6, so the norm is 1 - 1e-6 or so
CLIPPED_NORM = 1e-5
