// GRU cell, gate order r, z, n; h' = (1 - z) ⊙ n + z ⊙ h. Two forms:
//   linear before reset (PyTorch's; kLinearBeforeReset = true), one recurrent product per step:
//     r = σ(W_r x + b_ir + U_r h + b_hr)   z = σ(W_z x + b_iz + U_z h + b_hz)
//     n = tanh(W_n x + b_in + r ⊙ (U_n h + b_hn))
//   reset before (ONNX's default, Keras reset_after=False): the n gate's product needs r first,
//   so the step has two phases:
//     n = tanh(W_n x + b_in + U_n (r ⊙ h) + b_hn)
// b_hn stays inside the step in the first form (it is scaled by r); it folds in the second.
// clip (ONNX's GRU, as ONNX Runtime computes it) bounds the three activations' inputs to [-clip, clip]:
// those of r and z, and the whole of n's (W_n x + b_in + r ⊙ (U_n h + b_hn) in the first form).
// Forward saves r, z, n (and U_n h + b_hn in the first form), then with clip the three inputs before
// clipping (backward's mask); the layer saves h entering the step.
#pragma once

#include "fusedrnn/cells/traits.hpp"

namespace fusedrnn {

template <typename T, bool kLinearBeforeReset>
struct GruCell {
  static constexpr const char* kName = "gru";
  static constexpr Index kGates = 3;
  static constexpr Index kSavedGates = kLinearBeforeReset ? 4 : 3;  // r, z, n [, U_n h + b_hn]
  static constexpr bool kHasCellState = false;
  static constexpr unsigned kOptions = kOptionLinearBeforeReset | kOptionHardGates | kOptionClip;
  static constexpr Index kPeepholeVectors = 0;
  static constexpr StepPhases kPhases = kLinearBeforeReset ? StepPhases::kPointwise : StepPhases::kSecondProduct;
  // Linear-before-reset scales U_n h by r; reset-before's U_n sees r ⊙ h, handled by the layer.
  static constexpr bool kSeparateHiddenGrad = true;
  static constexpr bool kDirectHiddenGrad = true;  // z ⊙ h

  // With clip, the activations' inputs of r, z and n before clipping follow, at kSavedGates * H.
  static Index saved_gates(const CellOptions<T>& options) { return kSavedGates + (options.clip > 0 ? 3 : 0); }

  static void split_bias(const RowVector<T>& b_ih, const RowVector<T>& b_hh, Index H, RowVector<T>& bias_x,
                         RowVector<T>& bias_h) {
    bias_x = b_ih + b_hh;
    bias_h.setZero(b_ih.size());
    if (kLinearBeforeReset) {
      bias_x.tail(H) = b_ih.tail(H);
      bias_h.tail(H) = b_hh.tail(H);
    }
  }

  // r and z (both forms).
  static void forward_rz(const CellRow<T>& r) {
    const Index H = r.units;
    const CellOptions<T>& opt = *r.options;
    Vec<T> rz(r.gates, 2 * H);
    if (opt.clip > 0) {
      Vec<T> pre(r.gates + kSavedGates * H, 2 * H);
      pre = ConstVec<T>(r.xg, 2 * H) + ConstVec<T>(r.hg, 2 * H);
      clip_into(rz, pre, opt.clip);
      gate_into(rz, rz, opt.hard_gates);
    } else {
      gate_into(rz, ConstVec<T>(r.xg, 2 * H) + ConstVec<T>(r.hg, 2 * H), opt.hard_gates);
    }
  }

  // Reset-before, first phase: r, z, and r ⊙ h for the n gate's product.
  static void forward_row_first(const CellRow<T>& r) {
    const Index H = r.units;
    forward_rz(r);
    Vec<T>(r.rh, H) = Vec<T>(r.gates, H) * ConstVec<T>(r.h_prev, H);
  }

  // The whole step (linear-before-reset) or its second phase (reset-before: hg's n block then
  // holds U_n (r ⊙ h) and bias_x already has b_hn).
  static void forward_row(const CellRow<T>& r) {
    const Index H = r.units;
    const CellOptions<T>& opt = *r.options;
    if (kLinearBeforeReset) forward_rz(r);
    ConstVec<T> rg(r.gates, H), z(r.gates + H, H), xn(r.xg + 2 * H, H), h_prev(r.h_prev, H);
    Vec<T> n(r.gates + 2 * H, H);
    if (kLinearBeforeReset) {
      Vec<T> hn(r.gates + 3 * H, H);
      hn = ConstVec<T>(r.hg + 2 * H, H) + ConstVec<T>(r.bias_h + 2 * H, H);
    }
    if (opt.clip > 0) {
      Vec<T> pre(r.gates + (kSavedGates + 2) * H, H);
      if (kLinearBeforeReset)
        pre = xn + rg * ConstVec<T>(r.gates + 3 * H, H);
      else
        pre = xn + ConstVec<T>(r.hg + 2 * H, H);
      clip_into(n, pre, opt.clip);
      tanh_into(n, n);
    } else if (kLinearBeforeReset) {
      tanh_into(n, xn + rg * ConstVec<T>(r.gates + 3 * H, H));
    } else {
      tanh_into(n, xn + ConstVec<T>(r.hg + 2 * H, H));
    }
    Vec<T>(r.h, H) = n + z * (h_prev - n);
  }

  // d (gradients of consecutive gate blocks, block `first` first) *= the clip's derivative, from the
  // inputs forward saved before clipping; nothing without clip.
  static void mul_clip_grads(const CellGradRow<T>& r, Vec<T> d, Index first) {
    const T bound = r.options->clip;
    if (bound > 0) mul_clip_grad(d, ConstVec<T>(r.gates + (kSavedGates + first) * r.units, d.size()), bound);
  }

  // z and n pre-activation gradients (both forms).
  static void backward_zn(const CellGradRow<T>& r) {
    const Index H = r.units;
    ConstVec<T> z(r.gates + H, H), n(r.gates + 2 * H, H), h_prev(r.h_prev, H), dh(r.dh, H);
    Vec<T>(r.dg_in + 2 * H, H) = dh * (T(1) - z) * tanh_grad(n);
    Vec<T> dz(r.dg_in + H, H);
    dz = dh * (h_prev - n);
    mul_gate_grad(dz, z, r.options->hard_gates);
    mul_clip_grads(r, Vec<T>(r.dg_in + H, 2 * H), 1);
  }

  // Linear-before-reset: the whole gate-gradient pass.
  static void backward_row(const CellGradRow<T>& r) {
    static_assert(kLinearBeforeReset, "reset-before runs backward_row_first, then backward_row_second");
    const Index H = r.units;
    backward_zn(r);
    ConstVec<T> rg(r.gates, H), z(r.gates + H, H), hn(r.gates + 3 * H, H), dh(r.dh, H), dn(r.dg_in + 2 * H, H);
    Vec<T> dr(r.dg_in, H);
    dr = dn * hn;
    mul_gate_grad(dr, rg, r.options->hard_gates);
    mul_clip_grads(r, dr, 0);
    Vec<T>(r.dg_hid, 2 * H) = Vec<T>(r.dg_in, 2 * H);
    Vec<T>(r.dg_hid + 2 * H, H) = dn * rg;
    Vec<T>(r.dh_direct, H) = dh * z;
  }

  // Reset-before, first phase: z and n, whose n-gradient gives d(r ⊙ h) through U_n (the layer).
  static void backward_row_first(const CellGradRow<T>& r) { backward_zn(r); }

  // Reset-before, second phase: drh = d(r ⊙ h) is known; finish r and the direct path to h.
  static void backward_row_second(const CellGradRow<T>& r) {
    const Index H = r.units;
    ConstVec<T> rg(r.gates, H), z(r.gates + H, H), h_prev(r.h_prev, H), dh(r.dh, H), drh(r.drh, H);
    Vec<T> dr(r.dg_in, H);
    dr = drh * h_prev;
    mul_gate_grad(dr, rg, r.options->hard_gates);
    mul_clip_grads(r, dr, 0);
    Vec<T>(r.dg_hid, 2 * H) = Vec<T>(r.dg_in, 2 * H);
    Vec<T>(r.dg_hid + 2 * H, H).setZero();  // U_n's gradient goes through r ⊙ h (the layer adds it)
    Vec<T>(r.dh_direct, H) = dh * z + drh * rg;
  }

  // Reset-before: r ⊙ h, what U_n multiplies, from what forward saved.
  static void second_input_from_tape(const CellGradRow<T>& r, T* out) {
    Vec<T>(out, r.units) = ConstVec<T>(r.gates, r.units) * ConstVec<T>(r.h_prev, r.units);
  }
};

static_assert(check_cell<GruCell<float, true>, float>() && check_cell<GruCell<float, false>, float>() &&
              check_cell<GruCell<double, true>, double>() && check_cell<GruCell<double, false>, double>());

}  // namespace fusedrnn
