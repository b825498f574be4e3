"""NumPy reference implementation of the recurrent stacks: the specification the kernels are tested against.

Written to be read, not to be fast: every cell is a small step function (forward for one time step,
returning what its backward needs) with its backward step beside it; a layer runs one direction over
time, one step at a time; the stack runs layers x directions with dropout masks between layers.

Shape letters (as in ``_config``): T steps, N batch, I layer input features, H hidden units, P projection
size (LSTM only), H_out = P or H, G gates (RNN 1, GRU 3, LSTM 4), D directions, L layers.
Inside a step, ``n`` is the number of sequences still active at that step (see *Lengths* below).

Parameters use PyTorch's names, shapes and gate orders (``config.param_shapes()``):
``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H_out), ``bias_ih`` and ``bias_hh`` (G*H) when
``config.bias``, ``weight_hr`` (P, H) when ``config.proj_size > 0``.
In the formulas, ``W_* x`` means ``x @ weight_ih[rows of gate *].T`` and ``U_* h`` means
``h @ weight_hh[rows of gate *].T``; ``b_i*`` / ``b_h*`` are the matching rows of ``bias_ih`` / ``bias_hh``
(taken as zero when ``bias=False``); ``*`` between vectors is the elementwise product.
With ``config.layer_norm`` each layer-direction also has ``ln_weight_ih`` and ``ln_weight_hh`` (G*H), the
gains of the two normalized projections, and the LSTM ``ln_weight_c`` and ``ln_bias_c`` (H), the gain and
shift of its normalized cell state.

Lengths (PyTorch packed-sequence semantics): sequence j is active at step t iff ``t < lengths[j]``.
Only active sequences are updated; the others keep their state and output zeros. The forward
direction therefore stops at each sequence's last valid step (so h_n is the state there), and the
reverse direction, which walks t = T-1 .. 0, leaves a sequence at its initial state until t = len-1
and then runs down to t = 0 (so h_n is the state after step 0).

Stack: layer 0 reads x; layer k+1 reads ``y_k * dropout_masks[k]`` (masks already scaled by 1/(1-p)).
``y_k`` (T, N, D*H_out) is the forward direction's features followed by the reverse direction's.
``h_n[k*D + d]`` is the final state of layer k, direction d (d = 1 is the reverse direction).
With ``config.residual``, every layer k > 0 adds its input to its output: ``y_k = layer_k(in_k) + in_k``.

Recurrent dropout (Gal and Ghahramani's variational dropout, training only): ``recurrent_masks[k*D + d]``
(N, H_out), already scaled (0 or 1/(1-p)), is the mask m of every step of layer k, direction d. It
multiplies h_prev only where h_prev enters the recurrent product: ``U (m * h_prev)`` in every cell,
``LN((m * h_prev) U^T)`` in the layer-normalized ones. Every other use of h_prev sees the state itself
(the GRU's ``z * h_prev``). Backward, the gradient wrt h_prev through U is multiplied by m, and dU is
accumulated with m * h_prev. The reset-before GRU takes no recurrent mask.

Zoneout (Krueger et al.): with ``config.zoneout = p > 0`` each unit of the state may keep its previous
value. After the cell's step ``h_t = h_{t-1} + k_h * (h_new - h_{t-1})`` and (LSTM)
``c_t = c_{t-1} + k_c * (c_new - c_{t-1})``, and the layer outputs y_t = h_t (computed as the blend
``k * new + (1 - k) * previous``, which gives the new and the previous value exactly at k = 1 and 0).
Training passes ``zoneout_masks[k*D + d]`` (T, N, Z*H): the factors k in {0, 1} (1: the unit takes its
new value) of step t, indexed by t in both directions; Z = 2 with a cell state (each row: h's H factors,
then c's), else 1. Inference (no masks) uses the constant k = 1 - p. Backward, of the gradient g wrt h_t
the cell's step gets ``k_h * g`` as the gradient wrt h_new and ``(1 - k_h) * g`` goes to h_{t-1};
likewise c. Not with ``proj_size``. Inactive rows (see *Lengths*) are untouched by both.

Cells: each step function states its equations beside its backward step: :func:`rnn_step` (tanh or
relu), :func:`lstm_step` (with the options peephole, input_forget, hard-sigmoid gates and the
projection), :func:`gru_step` (linear-before-reset, PyTorch's) and :func:`gru_reset_before_step`
(ONNX's default); :func:`hard_sigmoid` is the gates' activation with ``config.hard_gates``. Every cell
takes ``clip`` (ONNX's, as ONNX Runtime computes it): each gate's activation input is clipped to
[-clip, clip] first, and its gradient is zero where the clip bounds it (``|a| >= clip``).
With ``config.layer_norm`` the cells are :func:`layer_norm_lstm_step` and :func:`layer_norm_gru_step`
(linear-before-reset only): each projection ``x W^T`` and ``h_prev U^T`` is normalized over its G*H
values before its gain and the biases are applied (and the LSTM's cell state over its H values before
the output tanh); they take ``hard_gates`` and no other option.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple

import numpy as np

from ._cells import CELL_OPTIONS, LAYER_NORM_COMPANIONS
from ._config import StackConfig

__all__ = ["forward", "backward", "ForwardCache", "StepRecord", "sigmoid"]

# --------------------------------------------------------------------------------------------------
# helpers


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-a)), written as (1 + tanh(a / 2)) / 2, which cannot overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def hard_sigmoid(a: np.ndarray) -> np.ndarray:
    """Keras 3's hard sigmoid relu6(a + 3) / 6 = clip(a / 6 + 1/2, 0, 1): the gates with
    ``gate_activation="hard_sigmoid"``."""
    return np.clip(a + 3.0, 0.0, 6.0) / 6.0


def _gate(a: np.ndarray, hard: bool) -> np.ndarray:
    return hard_sigmoid(a) if hard else sigmoid(a)


def _gate_grad(y: np.ndarray, hard: bool) -> np.ndarray:
    """The gate activation's derivative from its output y: y (1 - y), or 1/6 where the hard sigmoid is not
    saturated (0 < y < 1) and 0 where it is."""
    if hard:
        return np.where((y > 0) & (y < 1), 1.0 / 6.0, 0.0).astype(y.dtype)
    return y * (1 - y)


def _affine(v: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``v @ w.T + b``.  v: (n, K), w: (M, K), b: (M,) or None -> (n, M)."""
    out = v @ w.T
    return out if b is None else out + b


def _masked(v: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``v * mask``, or v itself without a mask: a recurrent dropout mask applied to h_prev where it enters
    the recurrent product (forward), or to that product's gradient wrt h_prev (backward)."""
    return v if mask is None else v * mask


def _part(b: np.ndarray | None, lo: int, hi: int) -> np.ndarray | None:
    """Rows lo:hi of an optional bias vector."""
    return None if b is None else b[lo:hi]


def _accumulate_affine(
    grads: dict[str, np.ndarray], w_role: str, b_role: str, da: np.ndarray, v: np.ndarray, lo: int, hi: int
) -> None:
    """Weight/bias gradients of ``a[:, lo:hi] = v @ w[lo:hi].T + b[lo:hi]`` given ``da`` (n, hi-lo)."""
    grads[w_role][lo:hi] += da.T @ v
    if b_role in grads:
        grads[b_role][lo:hi] += da.sum(axis=0)


# torch.nn.LayerNorm's default: small next to a row's variance, it keeps a constant row (a projection of
# h0 = 0 at the first step) from dividing by zero.
LAYER_NORM_EPS = 1e-5


class LayerNormCache(NamedTuple):
    normalized: np.ndarray  # (n, K) (v - mean(v)) * rstd, row by row
    rstd: np.ndarray  # (n, 1) 1 / sqrt(var(v) + eps) of each row


def _layer_norm(v: np.ndarray) -> tuple[np.ndarray, LayerNormCache]:
    """Each row of v (n, K) normalized over its K entries: ``(v - mean(v)) / sqrt(var(v) + eps)``, with
    the population variance (divided by K) and eps = ``LAYER_NORM_EPS``. No gain or shift: the callers
    apply their own."""
    centered = v - v.mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt((centered * centered).mean(axis=1, keepdims=True) + LAYER_NORM_EPS)
    normalized = centered * rstd
    return normalized, LayerNormCache(normalized, rstd)


def _layer_norm_backward(d_normalized: np.ndarray, cache: LayerNormCache) -> np.ndarray:
    """Backward of :func:`_layer_norm`: with v_hat the normalized row and dv_hat its gradient,
    ``dv = rstd * (dv_hat - mean(dv_hat) - v_hat * mean(dv_hat * v_hat))`` over each row (the two means
    are the gradient through the row's mean and through its variance)."""
    v_hat = cache.normalized
    mean_d = d_normalized.mean(axis=1, keepdims=True)
    mean_dv = (d_normalized * v_hat).mean(axis=1, keepdims=True)
    return cache.rstd * (d_normalized - mean_d - v_hat * mean_dv)


def _normalized_affine(p, side: str, v: np.ndarray) -> tuple[np.ndarray, LayerNormCache]:
    """``LN(v @ weight_{side}.T) * ln_weight_{side} + bias_{side}`` for side "ih" or "hh" (no bias
    without ``config.bias``), and the normalization's cache. v: (n, K) -> (n, G*H)."""
    normalized, norm = _layer_norm(v @ p["weight_" + side].T)
    a = normalized * p["ln_weight_" + side]
    bias = p.get("bias_" + side)
    return (a if bias is None else a + bias), norm


def _normalized_affine_backward(p, grads, side: str, da: np.ndarray, v: np.ndarray, norm: LayerNormCache):
    """Backward of :func:`_normalized_affine` given ``da`` (n, G*H); accumulates into ``grads`` and
    returns dv (n, K)::

        d_ln_weight += sum_n da * LN(v W^T);  d_bias += sum_n da   (the bias is added after the norm)
        d_proj = LN'(da * ln_weight);  dW += d_proj^T v;  dv = d_proj W
    """
    grads["ln_weight_" + side] += (da * norm.normalized).sum(axis=0)
    if "bias_" + side in grads:
        grads["bias_" + side] += da.sum(axis=0)
    d_proj = _layer_norm_backward(da * p["ln_weight_" + side], norm)
    grads["weight_" + side] += d_proj.T @ v
    return d_proj @ p["weight_" + side]


# --------------------------------------------------------------------------------------------------
# cells: step(p, x, h_prev, c_prev[, recurrent_mask=m]) -> (h, c, cache); step_backward(p, cache, dh, dc,
#   grads) -> (dx, dh_prev, dc_prev). p maps role ('weight_ih', ...) to the array of one layer-direction;
#   grads has the same keys and is accumulated in place. c / dc are None except for the LSTM.
#   m (n, H_out), recurrent dropout: the recurrent product reads h_rec = m * h_prev (h_prev without m),
#   every other use of h_prev the state itself; the caches keep m for the backward step.


class RNNStepCache(NamedTuple):
    x: np.ndarray  # (n, I)  input rows of this step
    h_prev: np.ndarray  # (n, H)  state before the step
    pre: np.ndarray  # (n, H)  pre-activation a (before clipping)
    h: np.ndarray  # (n, H)  state after the step, act(clip(a))
    recurrent_mask: np.ndarray | None = None  # (n, H)  m of h_rec = m * h_prev; None: no recurrent dropout


def _clip(a: np.ndarray, clip: float) -> np.ndarray:
    return np.clip(a, -clip, clip) if clip > 0 else a


def _clip_grad(a: np.ndarray, clip: float) -> np.ndarray | float:
    """Derivative of the clip: 1 strictly inside [-clip, clip], else 0."""
    return (np.abs(a) < clip).astype(a.dtype) if clip > 0 else 1.0


def rnn_step(p, x, h_prev, c_prev=None, *, relu=False, clip=0.0, recurrent_mask=None):
    """Vanilla RNN step: ``a = W x + b_ih + U h_rec + b_hh``, ``h = tanh(a)`` (or ``max(a, 0)``);
    with clip > 0, ``h = tanh(clip(a))`` (or ``max(clip(a), 0)``), ``clip(a)`` = a bounded to
    [-clip, clip]. ``h_rec = recurrent_mask * h_prev`` (h_prev without a mask).

    x: (n, I), h_prev: (n, H), recurrent_mask: (n, H) or None -> h: (n, H)."""
    h_rec = _masked(h_prev, recurrent_mask)
    a = _affine(x, p["weight_ih"], p.get("bias_ih")) + _affine(h_rec, p["weight_hh"], p.get("bias_hh"))
    bounded = _clip(a, clip)
    h = np.maximum(bounded, 0) if relu else np.tanh(bounded)
    return h, None, RNNStepCache(x, h_prev, a, h, recurrent_mask)


def rnn_step_backward(p, cache: RNNStepCache, dh, dc=None, grads=None, *, relu=False, clip=0.0):
    """Backward of :func:`rnn_step`: ``da = dh * act'(clip(a)) * clip'(a)`` with tanh' = 1 - h^2,
    relu' = [a > 0] and ``clip' = [|a| < clip]`` (1 without clip); ``dx = da W``,
    ``dh_prev = m * (da U)``, ``dW += da^T x``, ``dU += da^T h_rec``, ``db_ih += sum_n da``,
    ``db_hh += sum_n da`` (m the recurrent mask, h_rec = m * h_prev; without a mask m = 1)."""
    da = dh * (cache.pre > 0) if relu else dh * (1 - cache.h * cache.h)
    da = da * _clip_grad(cache.pre, clip)
    g = da.shape[1]
    mask = cache.recurrent_mask
    _accumulate_affine(grads, "weight_ih", "bias_ih", da, cache.x, 0, g)
    _accumulate_affine(grads, "weight_hh", "bias_hh", da, _masked(cache.h_prev, mask), 0, g)
    return da @ p["weight_ih"], _masked(da @ p["weight_hh"], mask), None


class LSTMStepCache(NamedTuple):
    x: np.ndarray  # (n, I)
    h_prev: np.ndarray  # (n, H_out)
    c_prev: np.ndarray  # (n, H)
    i: np.ndarray  # (n, H)  input gate (after sigmoid)
    f: np.ndarray  # (n, H)  forget gate (after sigmoid; 1 - i when coupled)
    g: np.ndarray  # (n, H)  cell candidate (after tanh)
    o: np.ndarray  # (n, H)  output gate (after sigmoid)
    c: np.ndarray  # (n, H)  the new cell state
    tanh_c: np.ndarray  # (n, H)  tanh(c)
    m: np.ndarray  # (n, H)  o * tanh(c), the input of the projection (same as h without projection)
    pre: np.ndarray  # (n, 4H) the activations' inputs before clipping (peephole terms included)
    recurrent_mask: np.ndarray | None = None  # (n, H_out) m of h_rec = m * h_prev; None: no recurrent dropout


def lstm_step(p, x, h_prev, c_prev, *, clip=0.0, input_forget=False, hard=False, recurrent_mask=None):
    """LSTM step, gate order i, f, g, o (row blocks of the weights), ``h_rec = recurrent_mask * h_prev``
    (h_prev without a mask)::

        i = sigmoid(W_i x + b_ii + U_i h_rec + b_hi [+ p_i * c_prev])
        f = sigmoid(W_f x + b_if + U_f h_rec + b_hf [+ p_f * c_prev])      f = 1 - i   (input_forget)
        g = tanh   (W_g x + b_ig + U_g h_rec + b_hg)
        c = f * c_prev + i * g
        o = sigmoid(W_o x + b_io + U_o h_rec + b_ho [+ p_o * c])
        m = o * tanh(c)
        h = m                  (no projection)       h = m @ weight_hr.T     (proj_size P > 0)

    The bracketed peephole terms come with ``weight_ph`` = [p_i; p_f; p_o]; with clip > 0 every
    activation's input is clipped to [-clip, clip] first (ONNX's LSTM); hard=True puts
    :func:`hard_sigmoid` in place of sigmoid.
    x: (n, I), h_prev: (n, H_out), c_prev: (n, H), recurrent_mask: (n, H_out) or None -> h: (n, H_out),
    c: (n, H)."""
    hs = c_prev.shape[1]
    h_rec = _masked(h_prev, recurrent_mask)
    a = _affine(x, p["weight_ih"], p.get("bias_ih")) + _affine(h_rec, p["weight_hh"], p.get("bias_hh"))
    ph = p.get("weight_ph")
    if ph is not None:
        a[:, 0:hs] += ph[0:hs] * c_prev
        a[:, hs : 2 * hs] += ph[hs : 2 * hs] * c_prev
    i = _gate(_clip(a[:, 0:hs], clip), hard)
    f = 1 - i if input_forget else _gate(_clip(a[:, hs : 2 * hs], clip), hard)
    g = np.tanh(_clip(a[:, 2 * hs : 3 * hs], clip))
    c = f * c_prev + i * g
    if ph is not None:
        a[:, 3 * hs :] += ph[2 * hs :] * c
    o = _gate(_clip(a[:, 3 * hs : 4 * hs], clip), hard)
    tanh_c = np.tanh(c)
    m = o * tanh_c
    h = m @ p["weight_hr"].T if "weight_hr" in p else m
    return h, c, LSTMStepCache(x, h_prev, c_prev, i, f, g, o, c, tanh_c, m, a, recurrent_mask)


def lstm_step_backward(p, cache: LSTMStepCache, dh, dc, grads, *, clip=0.0, input_forget=False, hard=False):
    """Backward of :func:`lstm_step`.

    dh: (n, H_out), dc: (n, H) are the gradients of the new state::

        dm = dh @ weight_hr, dW_hr += dh^T m     (projection; else dm = dh)
        da_o = dm * tanh(c) * o(1-o) * clip'(a_o)
        dc_tot = dc + dm * o * (1 - tanh(c)^2) [+ da_o * p_o]
        di = dc_tot * (g [- c_prev when coupled]);  df = dc_tot * c_prev;  dg = dc_tot * i
        da = [di i(1-i), df f(1-f) (0 when coupled), dg (1-g^2), da_o] * clip'(a)   (n, 4H)
        dc_prev = dc_tot * f [+ da_i * p_i + da_f * p_f]
        dp += [sum da_i c_prev, sum da_f c_prev, sum da_o c]
        dx = da W, dh_prev = m * (da U), dW += da^T x, dU += da^T h_rec, db_ih = db_hh += sum_n da

    (m the recurrent mask, h_rec = m * h_prev; without a mask m = 1.)
    """
    hs = cache.c.shape[1]
    ph = p.get("weight_ph")
    if "weight_hr" in p:
        grads["weight_hr"] += dh.T @ cache.m
        dm = dh @ p["weight_hr"]
    else:
        dm = dh
    pre = cache.pre
    da_o = dm * cache.tanh_c * _gate_grad(cache.o, hard) * _clip_grad(pre[:, 3 * hs :], clip)
    dc_tot = dc + dm * cache.o * (1 - cache.tanh_c * cache.tanh_c)
    if ph is not None:
        dc_tot = dc_tot + da_o * ph[2 * hs :]
    di = dc_tot * cache.g
    dg = dc_tot * cache.i
    if input_forget:
        di = di - dc_tot * cache.c_prev
        da_f = np.zeros_like(di)
    else:
        da_f = dc_tot * cache.c_prev * _gate_grad(cache.f, hard) * _clip_grad(pre[:, hs : 2 * hs], clip)
    da_i = di * _gate_grad(cache.i, hard) * _clip_grad(pre[:, 0:hs], clip)
    da_g = dg * (1 - cache.g * cache.g) * _clip_grad(pre[:, 2 * hs : 3 * hs], clip)
    dc_prev = dc_tot * cache.f
    if ph is not None:
        dc_prev = dc_prev + da_i * ph[0:hs] + da_f * ph[hs : 2 * hs]
        grads["weight_ph"] += np.concatenate(
            [
                (da_i * cache.c_prev).sum(axis=0),
                (da_f * cache.c_prev).sum(axis=0),
                (da_o * cache.c).sum(axis=0),
            ]
        )
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
    g4 = da.shape[1]
    mask = cache.recurrent_mask
    _accumulate_affine(grads, "weight_ih", "bias_ih", da, cache.x, 0, g4)
    _accumulate_affine(grads, "weight_hh", "bias_hh", da, _masked(cache.h_prev, mask), 0, g4)
    return da @ p["weight_ih"], _masked(da @ p["weight_hh"], mask), dc_prev


class GRUStepCache(NamedTuple):
    x: np.ndarray  # (n, I)
    h_prev: np.ndarray  # (n, H)
    r: np.ndarray  # (n, H)  reset gate (after sigmoid)
    z: np.ndarray  # (n, H)  update gate (after sigmoid)
    n: np.ndarray  # (n, H)  candidate (after tanh)
    # (n, H)  the n block of the recurrent projection, U_n h_prev + b_hn (its normalized, scaled form plus
    # b_hn with layer_norm); None for the reset-before GRU
    hn: np.ndarray | None
    pre: np.ndarray  # (n, 3H) the inputs of the activations of r, z and n, before clipping
    recurrent_mask: np.ndarray | None = None  # (n, H)  m of h_rec = m * h_prev; None: no recurrent dropout


def gru_step(p, x, h_prev, c_prev=None, *, hard=False, clip=0.0, recurrent_mask=None):
    """GRU step, linear-before-reset (PyTorch's form), gate order r, z, n::

        a_r = W_r x + b_ir + U_r h_rec + b_hr;  r = sigmoid(clip(a_r))
        a_z = W_z x + b_iz + U_z h_rec + b_hz;  z = sigmoid(clip(a_z))
        a_n = W_n x + b_in + r * (U_n h_rec + b_hn);  n = tanh(clip(a_n))
        h = (1 - z) * n + z * h_prev

    ``h_rec = recurrent_mask * h_prev`` (h_prev without a mask): only the recurrent product sees the
    mask, not ``z * h_prev``. ``clip(a)`` bounds a to [-clip, clip] (the identity for clip = 0): the
    whole of n's input is clipped, as ONNX Runtime does. x: (n, I), h_prev: (n, H), recurrent_mask:
    (n, H) or None -> h: (n, H)."""
    ai = _affine(x, p["weight_ih"], p.get("bias_ih"))  # (n, 3H)
    ah = _affine(_masked(h_prev, recurrent_mask), p["weight_hh"], p.get("bias_hh"))  # (n, 3H)
    h, cache = _gru_gates(x, h_prev, ai, ah, hard=hard, clip=clip)
    return h, None, cache._replace(recurrent_mask=recurrent_mask)


def _gru_gates(x, h_prev, ai, ah, *, hard, clip):
    """The linear-before-reset GRU from its two projections ``ai = W x + b_ih`` and ``ah = U h_rec +
    b_hh`` (each (n, 3H)): the equations of :func:`gru_step` after the products, shared with
    :func:`layer_norm_gru_step`, whose projections are normalized. Returns h and the step's cache
    (without a recurrent mask: the caller, who applied it, adds it)."""
    hs = h_prev.shape[1]
    a_rz = ai[:, 0 : 2 * hs] + ah[:, 0 : 2 * hs]
    r = _gate(_clip(a_rz[:, 0:hs], clip), hard)
    z = _gate(_clip(a_rz[:, hs:], clip), hard)
    hn = ah[:, 2 * hs : 3 * hs]
    a_n = ai[:, 2 * hs : 3 * hs] + r * hn
    n = np.tanh(_clip(a_n, clip))
    h = (1 - z) * n + z * h_prev
    return h, GRUStepCache(x, h_prev, r, z, n, hn, np.concatenate([a_rz, a_n], axis=1))


def gru_step_backward(p, cache: GRUStepCache, dh, dc=None, grads=None, *, hard=False, clip=0.0):
    """Backward of :func:`gru_step`.

    Step by step, ``clip'(a) = [|a| < clip]`` (1 without clip)::

        dn = dh * (1 - z);  dz = dh * (h_prev - n)
        da_n = dn * (1 - n^2) * clip'(a_n)          (gradient of n's input)
        dr = da_n * hn;  dhn = da_n * r
        da_r = dr * r (1 - r) * clip'(a_r);  da_z = dz * z (1 - z) * clip'(a_z)
        input side:     dai = [da_r, da_z, da_n]   -> dx = dai W, dW += dai^T x, db_ih += sum_n dai
        recurrent side: dah = [da_r, da_z, dhn]    -> dU += dah^T h_rec, db_hh += sum_n dah
        dh_prev = dh * z + m * (dah U)

    (m the recurrent mask, h_rec = m * h_prev; without a mask m = 1.)
    """
    dai, dah = _gru_gates_backward(cache, dh, hard=hard, clip=clip)
    g3 = dai.shape[1]
    mask = cache.recurrent_mask
    _accumulate_affine(grads, "weight_ih", "bias_ih", dai, cache.x, 0, g3)
    _accumulate_affine(grads, "weight_hh", "bias_hh", dah, _masked(cache.h_prev, mask), 0, g3)
    return dai @ p["weight_ih"], dh * cache.z + _masked(dah @ p["weight_hh"], mask), None


def _gru_gates_backward(cache: GRUStepCache, dh, *, hard, clip):
    """Backward of :func:`_gru_gates`: the gradients dai and dah (each (n, 3H)) of the two projections;
    h_prev's direct path, ``dh * z``, and the recurrent mask are left to the caller."""
    r, z, n, hn, pre = cache.r, cache.z, cache.n, cache.hn, cache.pre
    hs = r.shape[1]
    dn = dh * (1 - z)
    dz = dh * (cache.h_prev - n)
    da_n = dn * (1 - n * n) * _clip_grad(pre[:, 2 * hs :], clip)
    dr = da_n * hn
    dhn = da_n * r
    da_r = dr * _gate_grad(r, hard) * _clip_grad(pre[:, 0:hs], clip)
    da_z = dz * _gate_grad(z, hard) * _clip_grad(pre[:, hs : 2 * hs], clip)
    dai = np.concatenate([da_r, da_z, da_n], axis=1)
    dah = np.concatenate([da_r, da_z, dhn], axis=1)
    return dai, dah


def gru_reset_before_step(p, x, h_prev, c_prev=None, *, hard=False, clip=0.0):
    """GRU step, reset-before form (ONNX default, Keras reset_after=False), gate order r, z, n::

        a_r = W_r x + b_ir + U_r h_prev + b_hr;  r = sigmoid(clip(a_r))
        a_z = W_z x + b_iz + U_z h_prev + b_hz;  z = sigmoid(clip(a_z))
        a_n = W_n x + b_in + U_n (r * h_prev) + b_hn;  n = tanh(clip(a_n))
        h = (1 - z) * n + z * h_prev

    ``clip(a)`` bounds a to [-clip, clip] (the identity for clip = 0). x: (n, I), h_prev: (n, H) ->
    h: (n, H). The n-gate's recurrent product needs r first."""
    hs = h_prev.shape[1]
    w_hh, b_hh = p["weight_hh"], p.get("bias_hh")
    ai = _affine(x, p["weight_ih"], p.get("bias_ih"))  # (n, 3H)
    ah_rz = _affine(h_prev, w_hh[0 : 2 * hs], _part(b_hh, 0, 2 * hs))  # (n, 2H)
    a_rz = ai[:, 0 : 2 * hs] + ah_rz
    r = _gate(_clip(a_rz[:, 0:hs], clip), hard)
    z = _gate(_clip(a_rz[:, hs:], clip), hard)
    ah_n = _affine(r * h_prev, w_hh[2 * hs : 3 * hs], _part(b_hh, 2 * hs, 3 * hs))
    a_n = ai[:, 2 * hs : 3 * hs] + ah_n
    n = np.tanh(_clip(a_n, clip))
    h = (1 - z) * n + z * h_prev
    return h, None, GRUStepCache(x, h_prev, r, z, n, None, np.concatenate([a_rz, a_n], axis=1))


def gru_reset_before_step_backward(p, cache: GRUStepCache, dh, dc=None, grads=None, *, hard=False, clip=0.0):
    """Backward of :func:`gru_reset_before_step`.

    Step by step, ``clip'(a) = [|a| < clip]`` (1 without clip)::

        dn = dh * (1 - z);  dz = dh * (h_prev - n);  da_n = dn * (1 - n^2) * clip'(a_n)
        d(rh) = da_n U_n;  dU_n += da_n^T (r * h_prev);  db_hn += sum_n da_n
        dr = d(rh) * h_prev;  da_r = dr * r (1 - r) * clip'(a_r);  da_z = dz * z (1 - z) * clip'(a_z)
        dU_rz += [da_r, da_z]^T h_prev;  db_h{r,z} += sum_n [da_r, da_z]
        dai = [da_r, da_z, da_n] -> dx = dai W, dW += dai^T x, db_ih += sum_n dai
        dh_prev = dh * z + d(rh) * r + [da_r, da_z] U_rz
    """
    h_prev, r, z, n, pre = cache.h_prev, cache.r, cache.z, cache.n, cache.pre
    hs = h_prev.shape[1]
    w_hh = p["weight_hh"]
    dn = dh * (1 - z)
    dz = dh * (h_prev - n)
    da_n = dn * (1 - n * n) * _clip_grad(pre[:, 2 * hs :], clip)
    d_rh = da_n @ w_hh[2 * hs : 3 * hs]
    _accumulate_affine(grads, "weight_hh", "bias_hh", da_n, r * h_prev, 2 * hs, 3 * hs)
    dr = d_rh * h_prev
    da_r = dr * _gate_grad(r, hard) * _clip_grad(pre[:, 0:hs], clip)
    da_z = dz * _gate_grad(z, hard) * _clip_grad(pre[:, hs : 2 * hs], clip)
    da_rz = np.concatenate([da_r, da_z], axis=1)
    _accumulate_affine(grads, "weight_hh", "bias_hh", da_rz, h_prev, 0, 2 * hs)
    dai = np.concatenate([da_r, da_z, da_n], axis=1)
    _accumulate_affine(grads, "weight_ih", "bias_ih", dai, cache.x, 0, 3 * hs)
    dh_prev = dh * z + d_rh * r + da_rz @ w_hh[0 : 2 * hs]
    return dai @ p["weight_ih"], dh_prev, None


class LayerNormLSTMStepCache(NamedTuple):
    x: np.ndarray  # (n, I)
    h_prev: np.ndarray  # (n, H)
    c_prev: np.ndarray  # (n, H)
    i: np.ndarray  # (n, H)  input gate (after sigmoid)
    f: np.ndarray  # (n, H)  forget gate (after sigmoid)
    g: np.ndarray  # (n, H)  cell candidate (after tanh)
    o: np.ndarray  # (n, H)  output gate (after sigmoid)
    tanh_c: np.ndarray  # (n, H)  tanh(LN(c) * ln_weight_c + ln_bias_c)
    norm_ih: LayerNormCache  # of x W^T (n, 4H)
    norm_hh: LayerNormCache  # of h_rec U^T (n, 4H)
    norm_c: LayerNormCache  # of the new cell state c (n, H)
    recurrent_mask: np.ndarray | None = None  # (n, H)  m of h_rec = m * h_prev; None: no recurrent dropout


def layer_norm_lstm_step(p, x, h_prev, c_prev, *, hard=False, recurrent_mask=None):
    """Layer-normalized LSTM step (haste's LayerNormLSTM), gate order i, f, g, o, ``h_rec =
    recurrent_mask * h_prev`` (h_prev without a mask)::

        a = LN(x W^T) * ln_weight_ih + LN(h_rec U^T) * ln_weight_hh + b_ih + b_hh       (n, 4H)
        i = sigmoid(a_i);  f = sigmoid(a_f);  g = tanh(a_g);  o = sigmoid(a_o)
        c = f * c_prev + i * g
        h = o * tanh(LN(c) * ln_weight_c + ln_bias_c)

    ``LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5)`` over each row: all 4H values of a projection (the
    gates together), the H values of c. The state c itself is carried unnormalized; hard=True puts
    :func:`hard_sigmoid` in place of sigmoid. x: (n, I), h_prev: (n, H), c_prev: (n, H), recurrent_mask:
    (n, H) or None -> h, c: (n, H)."""
    hs = c_prev.shape[1]
    a_x, norm_ih = _normalized_affine(p, "ih", x)
    a_h, norm_hh = _normalized_affine(p, "hh", _masked(h_prev, recurrent_mask))
    a = a_x + a_h
    i = _gate(a[:, 0:hs], hard)
    f = _gate(a[:, hs : 2 * hs], hard)
    g = np.tanh(a[:, 2 * hs : 3 * hs])
    o = _gate(a[:, 3 * hs :], hard)
    c = f * c_prev + i * g
    c_normalized, norm_c = _layer_norm(c)
    tanh_c = np.tanh(c_normalized * p["ln_weight_c"] + p["ln_bias_c"])
    h = o * tanh_c
    cache = LayerNormLSTMStepCache(
        x, h_prev, c_prev, i, f, g, o, tanh_c, norm_ih, norm_hh, norm_c, recurrent_mask
    )
    return h, c, cache


def layer_norm_lstm_step_backward(p, cache: LayerNormLSTMStepCache, dh, dc, grads, *, hard=False):
    """Backward of :func:`layer_norm_lstm_step`.

    dh, dc: (n, H) are the gradients of the new state; ``LN'`` is the normalization's backward,
    ``dv = rstd * (dv_hat - mean(dv_hat) - v_hat * mean(dv_hat * v_hat))`` over each row::

        da_o = dh * tanh_c * o(1-o)
        d_out = dh * o * (1 - tanh_c^2)           (gradient of LN(c) * ln_weight_c + ln_bias_c)
        d_ln_weight_c += sum_n d_out * LN(c);  d_ln_bias_c += sum_n d_out
        dc_tot = dc + LN'(d_out * ln_weight_c)
        da = [dc_tot * g * i(1-i), dc_tot * c_prev * f(1-f), dc_tot * i * (1-g^2), da_o]   (n, 4H)
        dc_prev = dc_tot * f
        db_ih += sum_n da;  db_hh += sum_n da      (the biases add to a, after the normalization)
        d_ln_weight_ih += sum_n da * LN(x W^T);  d_x_proj = LN'(da * ln_weight_ih)
        dW += d_x_proj^T x;  dx = d_x_proj W       (and alike for U, h_rec with ln_weight_hh)
        dh_prev = m * dh_rec                       (m the recurrent mask; 1 without)
    """
    da_o = dh * cache.tanh_c * _gate_grad(cache.o, hard)
    d_out = dh * cache.o * (1 - cache.tanh_c * cache.tanh_c)
    grads["ln_weight_c"] += (d_out * cache.norm_c.normalized).sum(axis=0)
    grads["ln_bias_c"] += d_out.sum(axis=0)
    dc_tot = dc + _layer_norm_backward(d_out * p["ln_weight_c"], cache.norm_c)
    da_i = dc_tot * cache.g * _gate_grad(cache.i, hard)
    da_f = dc_tot * cache.c_prev * _gate_grad(cache.f, hard)
    da_g = dc_tot * cache.i * (1 - cache.g * cache.g)
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
    dx = _normalized_affine_backward(p, grads, "ih", da, cache.x, cache.norm_ih)
    mask = cache.recurrent_mask
    dh_rec = _normalized_affine_backward(p, grads, "hh", da, _masked(cache.h_prev, mask), cache.norm_hh)
    return dx, _masked(dh_rec, mask), dc_tot * cache.f


class LayerNormGRUStepCache(NamedTuple):
    gates: GRUStepCache  # the gates' part, as for gru_step (its hn is the normalized, scaled n block + b_hn)
    norm_ih: LayerNormCache  # of x W^T (n, 3H)
    norm_hh: LayerNormCache  # of h_rec U^T (n, 3H)
    recurrent_mask: np.ndarray | None = None  # (n, H)  m of h_rec = m * h_prev; None: no recurrent dropout


def layer_norm_gru_step(p, x, h_prev, c_prev=None, *, hard=False, recurrent_mask=None):
    """Layer-normalized GRU step, linear-before-reset (PyTorch's form), gate order r, z, n, ``h_rec =
    recurrent_mask * h_prev`` (h_prev without a mask)::

        ax = LN(x W^T) * ln_weight_ih + b_ih;  ah = LN(h_rec U^T) * ln_weight_hh + b_hh      (n, 3H)
        r = sigmoid(ax_r + ah_r);  z = sigmoid(ax_z + ah_z)
        n = tanh(ax_n + r * ah_n)
        h = (1 - z) * n + z * h_prev

    ``LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5)`` over each row's 3H values (the gates together);
    hard=True puts :func:`hard_sigmoid` in place of sigmoid. x: (n, I), h_prev: (n, H), recurrent_mask:
    (n, H) or None -> h: (n, H)."""
    ai, norm_ih = _normalized_affine(p, "ih", x)
    ah, norm_hh = _normalized_affine(p, "hh", _masked(h_prev, recurrent_mask))
    h, gates = _gru_gates(x, h_prev, ai, ah, hard=hard, clip=0.0)
    return h, None, LayerNormGRUStepCache(gates, norm_ih, norm_hh, recurrent_mask)


def layer_norm_gru_step_backward(p, cache: LayerNormGRUStepCache, dh, dc=None, grads=None, *, hard=False):
    """Backward of :func:`layer_norm_gru_step`.

    dai and dah, the gradients of ax and ah, are :func:`gru_step_backward`'s; then, with ``LN'`` the
    normalization's backward ``dv = rstd * (dv_hat - mean(dv_hat) - v_hat * mean(dv_hat * v_hat))``::

        db_ih += sum_n dai;  d_ln_weight_ih += sum_n dai * LN(x W^T);  d_x_proj = LN'(dai * ln_weight_ih)
        dW += d_x_proj^T x;  dx = d_x_proj W
        db_hh += sum_n dah;  d_ln_weight_hh += sum_n dah * LN(h_rec U^T);  d_h_proj = LN'(dah * ln_weight_hh)
        dU += d_h_proj^T h_rec;  dh_prev = dh * z + m * (d_h_proj U)      (m the recurrent mask; 1 without)
    """
    gates, mask = cache.gates, cache.recurrent_mask
    dai, dah = _gru_gates_backward(gates, dh, hard=hard, clip=0.0)
    dx = _normalized_affine_backward(p, grads, "ih", dai, gates.x, cache.norm_ih)
    dh_rec = _normalized_affine_backward(p, grads, "hh", dah, _masked(gates.h_prev, mask), cache.norm_hh)
    return dx, dh * gates.z + _masked(dh_rec, mask), None


StepFn = Callable[..., Any]


def _rnn_functions(config: StackConfig) -> tuple[StepFn, StepFn]:
    options = {"relu": config.kind.nonlinearity == "relu", "clip": config.clip}
    return partial(rnn_step, **options), partial(rnn_step_backward, **options)


def _check_layer_norm_options(config: StackConfig) -> None:
    """ValueError naming config when layer_norm comes with an option the layer-normalized cells lack."""
    others = [
        option for option in CELL_OPTIONS if option not in LAYER_NORM_COMPANIONS and config.uses(option)
    ]
    if others:
        given = ", ".join(f"{option}={getattr(config, option)!r}" for option in others)
        raise ValueError(f"config: layer_norm combines only with hard_gates, got {given}")


def _lstm_functions(config: StackConfig) -> tuple[StepFn, StepFn]:
    if config.layer_norm:
        _check_layer_norm_options(config)
        hard = {"hard": config.hard_gates}
        return partial(layer_norm_lstm_step, **hard), partial(layer_norm_lstm_step_backward, **hard)
    options = {"clip": config.clip, "input_forget": config.input_forget, "hard": config.hard_gates}
    return partial(lstm_step, **options), partial(lstm_step_backward, **options)


def _gru_functions(config: StackConfig) -> tuple[StepFn, StepFn]:
    if config.layer_norm:
        _check_layer_norm_options(config)
        if not config.linear_before_reset:
            raise ValueError(
                "config: layer_norm needs the linear-before-reset GRU (linear_before_reset=True), "
                "got linear_before_reset=False"
            )
        hard = {"hard": config.hard_gates}
        return partial(layer_norm_gru_step, **hard), partial(layer_norm_gru_step_backward, **hard)
    options = {"hard": config.hard_gates, "clip": config.clip}
    if config.linear_before_reset:
        return partial(gru_step, **options), partial(gru_step_backward, **options)
    return partial(gru_reset_before_step, **options), partial(gru_reset_before_step_backward, **options)


# The step functions of each cell family (``CellKind.family``), bound to a configuration's options.
_CELL_FUNCTIONS: dict[str, Callable[[StackConfig], tuple[StepFn, StepFn]]] = {
    "rnn": _rnn_functions,
    "lstm": _lstm_functions,
    "gru": _gru_functions,
}


def cell_functions(config: StackConfig) -> tuple[StepFn, StepFn]:
    """The (step, step_backward) pair for ``config``'s cell."""
    return _CELL_FUNCTIONS[config.kind.family](config)


# --------------------------------------------------------------------------------------------------
# one layer, one direction, over time


class StepRecord(NamedTuple):
    """One time step of one layer-direction as :func:`forward` ran it, for :func:`backward`.

    Parameters
    ----------
    t : int
        The time index of the step.
    rows : ndarray (n,)
        The indices of the sequences active at step t (``t < lengths[j]``).
    cache : NamedTuple
        What the cell's step function returned for its backward step, for those rows.
    zoneout : ndarray (n, Z*H) or None
        The zoneout factors k the step applied to those rows (h's H, then the LSTM's c's H); None
        without zoneout.
    """

    t: int
    rows: np.ndarray
    cache: Any
    zoneout: np.ndarray | None = None


StepRecord.t.__doc__ = "The time index of the step."
StepRecord.rows.__doc__ = "(n,) the indices of the sequences active at step t (t < lengths[j])."
StepRecord.cache.__doc__ = "The cell's step cache for those rows (what its backward step needs)."
StepRecord.zoneout.__doc__ = "(n, Z*H) the zoneout factors of those rows (h's, then c's), or None."


def _zoneout(previous: np.ndarray, new: np.ndarray, keep_new: np.ndarray) -> np.ndarray:
    """``previous + k * (new - previous)``: each unit takes its new value where k = 1, keeps its previous
    one where k = 0 (and mixes them for a k between, as inference's k = 1 - p does). Written as the blend
    ``k * new + (1 - k) * previous``, which is exact at k = 1 and k = 0 (the difference form can be off by
    a rounding at k = 1)."""
    return keep_new * new + (1 - keep_new) * previous


def layer_forward(
    step: StepFn,
    p: dict[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray | None,
    lengths: np.ndarray,
    reverse: bool,
    recurrent_mask: np.ndarray | None = None,
    zoneout: np.ndarray | None = None,
):
    """Run one direction of one layer over time.

    x: (T, N, I), h0: (N, H_out), c0: (N, H) or None, lengths: (N,) ints in [1, T].
    Steps t = 0..T-1 (``reverse``: T-1..0); at step t only the rows with ``t < lengths`` are updated.
    recurrent_mask: (N, H_out) or None, the recurrent dropout mask of every step (passed to the step
    function, which applies it to h_prev where it enters the recurrent product).
    zoneout: (T, N, Z*H) or None, the factors k of step t (h's H, then the LSTM's c's H): after the cell's
    step ``h_t = h_{t-1} + k_h * (h_new - h_{t-1})``, likewise c, and y_t is this h_t.
    Returns y: (T, N, H_out) (zero where inactive), h_last: (N, H_out), c_last: (N, H) or None, and the
    list of :class:`StepRecord` in processing order (steps with no active row are skipped).
    """
    steps_total, batch, _ = x.shape
    h = h0.copy()
    c = None if c0 is None else c0.copy()
    h_size = h.shape[1]
    y = np.zeros((steps_total, batch, h_size), dtype=h.dtype)
    records = []
    times = range(steps_total - 1, -1, -1) if reverse else range(steps_total)
    for t in times:
        rows = np.flatnonzero(lengths > t)
        if rows.size == 0:
            continue
        h_prev, c_prev = h[rows], None if c is None else c[rows]
        # Only a masked step gets the keyword: the reset-before GRU takes no mask.
        masked = {} if recurrent_mask is None else {"recurrent_mask": recurrent_mask[rows]}
        h_new, c_new, cache = step(p, x[t, rows], h_prev, c_prev, **masked)
        factors = None if zoneout is None else zoneout[t, rows]
        if factors is not None:
            h_new = _zoneout(h_prev, h_new, factors[:, :h_size])
            if c is not None:
                c_new = _zoneout(c_prev, c_new, factors[:, h_size:])
        h[rows] = h_new
        if c is not None:
            c[rows] = c_new
        y[t, rows] = h_new
        records.append(StepRecord(t, rows, cache, factors))
    return y, h, c, records


def layer_backward(
    step_backward: StepFn,
    p: dict[str, np.ndarray],
    records: list[StepRecord],
    x_shape: tuple[int, ...],
    dy: np.ndarray,
    dh_last: np.ndarray,
    dc_last: np.ndarray | None,
):
    """Backward through time of :func:`layer_forward`.

    dy: (T, N, H_out) gradient of y (ignored where y was inactive), dh_last: (N, H_out),
    dc_last: (N, H) or None. Walks the records in reverse processing order; the gradient of an inactive
    row's state passes through the step unchanged. With zoneout factors k in a record, of the gradient g
    wrt h_t the cell's backward step gets ``k_h * g`` (wrt h_new) and ``(1 - k_h) * g`` goes straight to
    h_{t-1}; likewise c.
    Returns dx: (T, N, I), dh0: (N, H_out), dc0: (N, H) or None, grads: dict role -> array like p.
    """
    grads = {role: np.zeros_like(w) for role, w in p.items()}
    dx = np.zeros(x_shape, dtype=dy.dtype)
    dh = dh_last.copy()
    dc = None if dc_last is None else dc_last.copy()
    h_size = dh.shape[1]
    for rec in reversed(records):
        rows = rec.rows
        dh_rows = dh[rows] + dy[rec.t, rows]
        dc_rows = None if dc is None else dc[rows]
        if rec.zoneout is None:
            dx_rows, dh_prev, dc_prev = step_backward(p, rec.cache, dh_rows, dc_rows, grads)
        else:
            keep_h = rec.zoneout[:, :h_size]
            keep_c = None if dc is None else rec.zoneout[:, h_size:]
            dx_rows, dh_prev, dc_prev = step_backward(
                p, rec.cache, keep_h * dh_rows, None if dc is None else keep_c * dc_rows, grads
            )
            dh_prev = dh_prev + (1 - keep_h) * dh_rows
            if dc is not None:
                dc_prev = dc_prev + (1 - keep_c) * dc_rows
        dx[rec.t, rows] = dx_rows
        dh[rows] = dh_prev
        if dc is not None:
            dc[rows] = dc_prev
    return dx, dh, dc, grads


# --------------------------------------------------------------------------------------------------
# the stack


@dataclass
class ForwardCache:
    """What :func:`backward` needs from :func:`forward` (made by forward, not constructed directly).

    Parameters
    ----------
    config : StackConfig
        The stack that ran.
    dtype : numpy.dtype
        The dtype forward computed in.
    params : dict of str to ndarray
        Copies of the parameters, in that dtype, taken at forward time.
    lengths : ndarray (N,)
        The sequences' lengths (T for all when forward was given None).
    dropout_masks : list of ndarray or None
        The masks between layers forward applied.
    inputs : list of ndarray
        ``inputs[layer]`` is the input the layer read: x, or the previous layer's output times its
        dropout mask.
    steps : list of list of list of StepRecord
        ``steps[layer][direction]`` is the list of :class:`StepRecord` of that layer-direction, in
        processing order. The records keep the zoneout factors of their step and the step caches the
        recurrent mask of their rows, so backward needs nothing more.
    """

    config: StackConfig
    dtype: np.dtype
    params: dict[str, np.ndarray]
    lengths: np.ndarray
    dropout_masks: list[np.ndarray] | None
    inputs: list[np.ndarray]
    steps: list[list[list[StepRecord]]]


def _shape_error(name: str, expected: tuple[int, ...], actual: tuple[int, ...]) -> ValueError:
    return ValueError(f"{name}: expected shape {expected}, got {actual}")


def _as_array(name: str, value: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A copy of ``value`` in ``dtype``, after checking its shape."""
    arr = np.array(value, dtype=dtype)
    if arr.shape != shape:
        raise _shape_error(name, shape, arr.shape)
    return arr


def _mask_list(
    name: str, masks: Any, count: int, counted: str, shape: tuple[int, ...], dtype: np.dtype
) -> list[np.ndarray]:
    """``count`` masks, each a copy in ``dtype`` of shape ``shape``; ValueError naming ``name`` otherwise
    (``counted`` says what count is)."""
    if len(masks) != count:
        raise ValueError(f"{name}: expected {count} masks ({counted}), got {len(masks)}")
    return [_as_array(f"{name}[{k}]", m, shape, dtype) for k, m in enumerate(masks)]


def _recurrent_masks(config: StackConfig, masks: Any, batch: int, dtype: np.dtype) -> list[np.ndarray] | None:
    """The recurrent dropout mask of each layer-direction (N, H_out), checked; None without."""
    if masks is None:
        return None
    if config.kind.family == "gru" and not config.linear_before_reset:
        raise ValueError(
            "recurrent_masks: the reset-before GRU (linear_before_reset=False) takes no recurrent dropout, "
            f"got {len(masks)} masks"
        )
    count = config.num_layers * config.num_directions
    shape = (batch, config.output_size)
    return _mask_list("recurrent_masks", masks, count, "num_layers * num_directions", shape, dtype)


def _zoneout_factors(
    config: StackConfig, masks: Any, steps_total: int, batch: int, dtype: np.dtype
) -> list[np.ndarray] | None:
    """The zoneout factors of each layer-direction (T, N, Z*H): the masks, checked, or the constant
    1 - p of inference; None without zoneout."""
    p = config.zoneout
    if not 0 <= p < 1:
        raise ValueError(f"config: zoneout must be in [0, 1), got {p!r}")
    if p == 0:
        if masks is not None:
            raise ValueError(
                f"zoneout_masks: only with config.zoneout > 0, got {len(masks)} masks with zoneout={p!r}"
            )
        return None
    if config.proj_size > 0:
        raise ValueError(
            "config: zoneout does not combine with proj_size, "
            f"got zoneout={p!r}, proj_size={config.proj_size}"
        )
    count = config.num_layers * config.num_directions
    shape = (steps_total, batch, (2 if config.has_cell_state else 1) * config.hidden_size)
    if masks is None:  # inference: the expectation of the training masks, every unit keeps 1 - p
        return [np.full(shape, 1 - p, dtype) for _ in range(count)]
    return _mask_list("zoneout_masks", masks, count, "num_layers * num_directions", shape, dtype)


def _layer_params(config: StackConfig, params: dict[str, np.ndarray], layer: int, direction: int):
    return {role: params[name] for role, name in config.layer_param_names(layer, direction).items()}


def _compute_dtype(*arrays: Any) -> np.dtype:
    dtype = np.result_type(*arrays)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.result_type(dtype, np.float64)
    return dtype


def forward(
    config: StackConfig,
    params: dict[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    dropout_masks: list[np.ndarray] | None = None,
    recurrent_masks: list[np.ndarray] | None = None,
    zoneout_masks: list[np.ndarray] | None = None,
):
    """Forward pass of the stack described by ``config``, one step at a time (see the module docstring).

    Computes in ``np.result_type`` of x, h0, c0 and the parameters (float64 if that is not a float type).

    Parameters
    ----------
    config : StackConfig
        The stack: cell, sizes, layers, directions and options (a layer's ``.config``).
    params : dict of str to array_like
        Name -> array, exactly ``config.param_shapes()`` (a layer's ``state_dict()``).
    x : array_like (T, N, I)
        The input, time-major.
    h0 : array_like (D*L, N, H_out), optional
        The initial hidden state; None: zeros.
    c0 : array_like (D*L, N, H), optional
        The initial cell state, LSTM only; None: zeros.
    lengths : array_like (N,), optional
        Ints with 1 <= len <= T; None: all T.
    dropout_masks : list of array_like, optional
        None, or L-1 arrays (T, N, D*H_out): layer k+1 reads ``y_k * dropout_masks[k]``.
    recurrent_masks : list of array_like, optional
        Recurrent dropout: None, or L*D arrays (N, H_out), index ``layer*D + direction``, already scaled
        (0 or 1/(1-p)). The mask of every step of that layer-direction, applied to h_prev only where it
        enters the recurrent product ``h_prev @ weight_hh.T``. Not for the reset-before GRU.
    zoneout_masks : list of array_like, optional
        Zoneout in training, with ``config.zoneout > 0`` only: None, or L*D arrays (T, N, Z*H), index
        ``layer*D + direction``, Z = 2 for the LSTM (each row: h's H factors, then c's), else 1. Factor 1:
        the unit takes its new value at step t; 0: it keeps its previous one. None with
        ``config.zoneout = p > 0`` is inference: the constant factor 1 - p.

    Returns
    -------
    y : ndarray (T, N, D*H_out)
        The last layer's output.
    h_n : ndarray (D*L, N, H_out)
    c_n : ndarray (D*L, N, H) or None
        None for a cell without a cell state.
    cache : ForwardCache
        For :func:`backward`.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x: expected a 3-d (T, N, I) array, got shape {x.shape}")
    steps_total, batch, _ = x.shape
    big_l, big_d = config.num_layers, config.num_directions
    h_out, hs = config.output_size, config.hidden_size

    shapes = dict(config.param_shapes())
    missing = [k for k in shapes if k not in params]
    unexpected = [k for k in params if k not in shapes]
    if missing or unexpected:
        raise ValueError(f"params: missing {missing}, unexpected {unexpected}")
    if c0 is not None and not config.has_cell_state:
        raise ValueError(f"c0: only an LSTM has a cell state, got c0 for cell {config.cell!r}")

    present = [x] + [np.asarray(params[k]) for k in shapes] + [a for a in (h0, c0) if a is not None]
    dtype = _compute_dtype(*present)

    x = _as_array("x", x, (steps_total, batch, config.input_size), dtype)
    p_all = {k: _as_array(f"params[{k!r}]", params[k], shape, dtype) for k, shape in shapes.items()}
    state_shape = (big_l * big_d, batch, h_out)
    h0 = np.zeros(state_shape, dtype) if h0 is None else _as_array("h0", h0, state_shape, dtype)
    if config.has_cell_state:
        cell_shape = (big_l * big_d, batch, hs)
        c0 = np.zeros(cell_shape, dtype) if c0 is None else _as_array("c0", c0, cell_shape, dtype)

    if lengths is None:
        lengths = np.full(batch, steps_total, dtype=np.int64)
    else:
        lengths = np.asarray(lengths)
        if lengths.shape != (batch,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(
                f"lengths: expected an int array of shape ({batch},), got {lengths.dtype} {lengths.shape}"
            )
        if lengths.size and (lengths.min() < 1 or lengths.max() > steps_total):
            raise ValueError(f"lengths: expected values in [1, {steps_total}], got {lengths.tolist()}")
        lengths = lengths.astype(np.int64)

    if dropout_masks is not None:
        mask_shape = (steps_total, batch, big_d * h_out)
        dropout_masks = _mask_list(
            "dropout_masks", dropout_masks, big_l - 1, "num_layers - 1", mask_shape, dtype
        )
    recurrent_masks = _recurrent_masks(config, recurrent_masks, batch, dtype)
    zoneout_factors = _zoneout_factors(config, zoneout_masks, steps_total, batch, dtype)

    step, _ = cell_functions(config)
    h_n = np.zeros_like(h0)
    c_n = np.zeros_like(c0) if config.has_cell_state else None
    inputs, steps = [], []
    layer_input = x
    for layer in range(big_l):
        if layer > 0 and dropout_masks is not None:
            layer_input = layer_input * dropout_masks[layer - 1]
        inputs.append(layer_input)
        outputs, records = [], []
        for direction in range(big_d):
            k = layer * big_d + direction
            p = _layer_params(config, p_all, layer, direction)
            y_d, h_last, c_last, recs = layer_forward(
                step,
                p,
                layer_input,
                h0[k],
                None if c0 is None else c0[k],
                lengths,
                reverse=direction == 1,
                recurrent_mask=None if recurrent_masks is None else recurrent_masks[k],
                zoneout=None if zoneout_factors is None else zoneout_factors[k],
            )
            outputs.append(y_d)
            records.append(recs)
            h_n[k] = h_last
            if c_n is not None:
                c_n[k] = c_last
        steps.append(records)
        layer_output = np.concatenate(outputs, axis=2)
        if config.residual and layer > 0:  # y_k = layer_k(in_k) + in_k
            layer_output = layer_output + layer_input
        layer_input = layer_output

    cache = ForwardCache(config, dtype, p_all, lengths, dropout_masks, inputs, steps)
    return layer_input, h_n, c_n, cache


def backward(
    cache: ForwardCache,
    grad_y: np.ndarray,
    grad_h_n: np.ndarray | None = None,
    grad_c_n: np.ndarray | None = None,
):
    """Backward pass of :func:`forward`: the gradients of
    ``L = sum(y * grad_y) + sum(h_n * grad_h_n) + sum(c_n * grad_c_n)``.

    Parameters
    ----------
    cache : ForwardCache
        What :func:`forward` returned last.
    grad_y : ndarray (T, N, D*H_out)
        dL/dy. Gradients past a sequence's end are ignored (y is constant zero there).
    grad_h_n : ndarray (D*L, N, H_out), optional
        dL/dh_n; None: zeros.
    grad_c_n : ndarray (D*L, N, H), optional
        dL/dc_n, LSTM only; None: zeros.

    Returns
    -------
    grad_x : ndarray (T, N, I)
    grad_h0 : ndarray (D*L, N, H_out)
        Returned even when forward's h0 was None.
    grad_c0 : ndarray (D*L, N, H) or None
        None for a cell without a cell state.
    grad_params : dict of str to ndarray
        Keyed and ordered like ``config.param_names()``.
    """
    config, dtype = cache.config, cache.dtype
    big_l, big_d = config.num_layers, config.num_directions
    h_out, hs = config.output_size, config.hidden_size
    steps_total, batch, _ = cache.inputs[0].shape

    grad_y = _as_array("grad_y", grad_y, (steps_total, batch, big_d * h_out), dtype)
    state_shape = (big_l * big_d, batch, h_out)
    grad_h_n = (
        np.zeros(state_shape, dtype)
        if grad_h_n is None
        else _as_array("grad_h_n", grad_h_n, state_shape, dtype)
    )
    if config.has_cell_state:
        cell_shape = (big_l * big_d, batch, hs)
        grad_c_n = (
            np.zeros(cell_shape, dtype)
            if grad_c_n is None
            else _as_array("grad_c_n", grad_c_n, cell_shape, dtype)
        )
    elif grad_c_n is not None:
        raise ValueError(f"grad_c_n: only an LSTM has a cell state, got grad_c_n for cell {config.cell!r}")

    _, step_backward = cell_functions(config)
    grad_h0 = np.zeros(state_shape, dtype)
    grad_c0 = np.zeros_like(grad_c_n) if config.has_cell_state else None
    grad_params = {}
    d_out = grad_y  # gradient of the current layer's output
    for layer in range(big_l - 1, -1, -1):
        layer_input = cache.inputs[layer]
        d_in = np.zeros(layer_input.shape, dtype)
        for direction in range(big_d):
            k = layer * big_d + direction
            p = _layer_params(config, cache.params, layer, direction)
            dy_d = d_out[:, :, direction * h_out : (direction + 1) * h_out]
            dx_d, dh0_d, dc0_d, grads = layer_backward(
                step_backward,
                p,
                cache.steps[layer][direction],
                layer_input.shape,
                dy_d,
                grad_h_n[k],
                None if grad_c_n is None else grad_c_n[k],
            )
            d_in += dx_d
            grad_h0[k] = dh0_d
            if grad_c0 is not None:
                grad_c0[k] = dc0_d
            for role, name in config.layer_param_names(layer, direction).items():
                grad_params[name] = grads[role]
        if config.residual and layer > 0:  # the input also reached the output directly
            d_in = d_in + d_out
        if layer > 0 and cache.dropout_masks is not None:
            d_in = d_in * cache.dropout_masks[layer - 1]
        d_out = d_in

    grad_params = {name: grad_params[name] for name in config.param_names()}
    return d_out, grad_h0, grad_c0, grad_params
