// GRU cell, gate order r, z, n; h' = (1 - z) ⊙ n + z ⊙ h. Two forms:
//   linear before reset (PyTorch's; kLinearBeforeReset = true), one recurrent product per step:
//     r = σ(W_r x + b_ir + U_r h + b_hr)   z = σ(W_z x + b_iz + U_z h + b_hz)
//     n = tanh(W_n x + b_in + r ⊙ (U_n h + b_hn))
//   reset before (ONNX's default, Keras reset_after=False), a second product that needs r first:
//     n = tanh(W_n x + b_in + U_n (r ⊙ h) + b_hn)
// b_hn cannot fold into the input projection in the first form (it sits inside r ⊙ (...)).
// Forward saves r, z, n (and U_n h + b_hn in the first form) and h entering the step.
#pragma once

#include <algorithm>

#include "fusedrnn/activations.hpp"
#include "fusedrnn/cells/common.hpp"
#include "fusedrnn/layer_types.hpp"

namespace fusedrnn {

template <typename T, bool kLinearBeforeReset>
struct GruCell {
  static constexpr Index kGates = 3;
  static constexpr Index kSavedGates = kLinearBeforeReset ? 4 : 3;  // r, z, n [, U_n h + b_hn]
  static constexpr bool kHasCellState = false;
  // Linear-before-reset: the recurrent part of n is scaled by r, so its gradient differs from the
  // input part's.
  static constexpr bool kSeparateHiddenGrad = kLinearBeforeReset;

  static RowVector<T> input_bias(const LayerWeights<T>& w) {
    RowVector<T> b = w.b_ih + w.b_hh;
    if (kLinearBeforeReset) {
      const Index H = w.hidden_size;
      b.tail(H) = w.b_ih.tail(H);  // b_hn is added to U_n h inside the step
    }
    return b;
  }

  template <bool kTraining>
  static void forward_step(const LayerWeights<T>& w, const ForwardStep<T>& s, StepScratch<T>& scratch) {
    const Index batch = s.batch, H = w.hidden_size, GH = kGates * H, SH = kSavedGates * H;
    if (kTraining) std::copy(s.h, s.h + batch * H, s.saved_h_prev);
    const ConstMatrixMap<T> h_mat(s.h, batch, H);
    if (kLinearBeforeReset)
      scratch.hg.noalias() = h_mat * w.w_hh_t;
    else
      scratch.hg.leftCols(2 * H).noalias() = h_mat * w.w_hh_t.leftCols(2 * H);

    // r and z for every active row (reset-before needs all of r before its second product).
    for (Index n = 0; n < batch; ++n) {
      T* gates = kTraining ? s.saved_gates + n * SH : scratch.gates.data() + n * SH;
      if (!row_active(s.active, n)) {
        if (kTraining) std::fill(gates, gates + SH, T(0));
        continue;
      }
      Vec<T> rz(gates, 2 * H);
      sigmoid_into(rz, ConstVec<T>(s.xg + n * GH, 2 * H) + ConstVec<T>(scratch.hg.data() + n * GH, 2 * H));
      if (!kLinearBeforeReset)
        Vec<T>(scratch.m.data() + n * H, H) = Vec<T>(gates, H) * ConstVec<T>(s.h + n * H, H);
    }
    if (!kLinearBeforeReset)  // U_n (r ⊙ h); inactive rows compute garbage that is never read
      scratch.hg.rightCols(H).noalias() = scratch.m * w.w_hh_t.rightCols(H);

    for (Index n = 0; n < batch; ++n) {
      T* y_row = s.y + n * s.y_stride;
      if (!row_active(s.active, n)) {
        write_output_row(false, y_row, H, y_row);
        continue;
      }
      T* gates = kTraining ? s.saved_gates + n * SH : scratch.gates.data() + n * SH;
      ConstVec<T> r(gates, H), z(gates + H, H);
      Vec<T> n_gate(gates + 2 * H, H);
      ConstVec<T> xn(s.xg + n * GH + 2 * H, H);
      Vec<T> hn(scratch.hg.data() + n * GH + 2 * H, H);
      if (kLinearBeforeReset) {
        hn += w.b_hh.tail(H).array().transpose();
        tanh_into(n_gate, xn + r * hn);
        if (kTraining) std::copy(hn.data(), hn.data() + H, gates + 3 * H);
      } else {
        tanh_into(n_gate, xn + hn);
      }
      Vec<T> h(s.h + n * H, H);
      h = n_gate + z * (h - n_gate);
      std::copy(h.data(), h.data() + H, y_row);
    }
  }

  static void backward_step(const LayerWeights<T>& w, const BackwardStep<T>& s, StepScratch<T>& scratch) {
    const Index batch = s.batch, H = w.hidden_size, GH = kGates * H, SH = kSavedGates * H;
    // First pass: dn and dz pre-activation, and for linear-before-reset everything.
    for (Index n = 0; n < batch; ++n) {
      Vec<T> dg(s.dg_in + n * GH, GH);
      if (!row_active(s.active, n)) {
        dg.setZero();
        if (kLinearBeforeReset) Vec<T>(s.dg_hid + n * GH, GH).setZero();
        continue;
      }
      const T* gates = s.gates + n * SH;
      ConstVec<T> r(gates, H), z(gates + H, H), n_gate(gates + 2 * H, H);
      ConstVec<T> h_prev(s.h_prev + n * H, H);
      // dh (kept in scratch.h_new): total gradient wrt h' of this step.
      Vec<T> dh(scratch.h_new.data() + n * H, H);
      dh = ConstVec<T>(s.dh + n * H, H) + ConstVec<T>(s.dy + n * s.dy_stride, H);
      Vec<T> dr(dg.data(), H), dz(dg.data() + H, H), dn(dg.data() + 2 * H, H);
      dn = dh * (T(1) - z) * tanh_grad(n_gate);
      dz = dh * (h_prev - n_gate) * sigmoid_grad(z);
      if (kLinearBeforeReset) {
        ConstVec<T> hn(gates + 3 * H, H);
        dr = dn * hn * sigmoid_grad(r);
        Vec<T> dg_hid(s.dg_hid + n * GH, GH);
        dg_hid.head(2 * H) = dg.head(2 * H);
        dg_hid.tail(H) = dn * r;
      }
    }
    if (kLinearBeforeReset) {
      scratch.dh_prev.noalias() = ConstMatrixMap<T>(s.dg_hid, batch, GH) * w.w_hh_t.transpose();  // [N, H]
      for (Index n = 0; n < batch; ++n) {
        if (!row_active(s.active, n)) continue;
        ConstVec<T> z(s.gates + n * SH + H, H);
        Vec<T>(s.dh + n * H, H) =
            Vec<T>(scratch.dh_prev.data() + n * H, H) + Vec<T>(scratch.h_new.data() + n * H, H) * z;
      }
      return;
    }
    // Reset-before: d(r ⊙ h) = dn · U_n, then dr, then the r/z product.
    const Eigen::Map<const Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>> dn_all(
        s.dg_in + 2 * H, batch, H, Eigen::OuterStride<>(GH));
    scratch.m.noalias() = dn_all * w.w_hh_t.rightCols(H).transpose();  // [N, H] d(r ⊙ h)
    const Eigen::Map<const Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>> drz_all(
        s.dg_in, batch, 2 * H, Eigen::OuterStride<>(GH));
    for (Index n = 0; n < batch; ++n) {
      if (!row_active(s.active, n)) continue;
      const T* gates = s.gates + n * SH;
      ConstVec<T> r(gates, H);
      ConstVec<T> h_prev(s.h_prev + n * H, H);
      ConstVec<T> drh(scratch.m.data() + n * H, H);
      Vec<T>(s.dg_in + n * GH, H) = drh * h_prev * sigmoid_grad(r);
    }
    scratch.dh_prev.noalias() = drz_all * w.w_hh_t.leftCols(2 * H).transpose();  // [N, H]
    for (Index n = 0; n < batch; ++n) {
      if (!row_active(s.active, n)) continue;
      ConstVec<T> r(s.gates + n * SH, H), z(s.gates + n * SH + H, H);
      Vec<T>(s.dh + n * H, H) = Vec<T>(scratch.dh_prev.data() + n * H, H) +
                                Vec<T>(scratch.h_new.data() + n * H, H) * z +
                                Vec<T>(scratch.m.data() + n * H, H) * r;
    }
  }

  // dg: [T*N, 3H], h_prev: [T*N, H], dw_hh: [3H, H] out. Reset-before: U_n multiplies r ⊙ h.
  static void recurrent_weight_grad(const LayerWeights<T>& w, const LayerTape<T>& tape, Index rows,
                                    const Matrix<T>& dg, const ConstMatrixMap<T>& h_prev, T* dw_hh) {
    if (kLinearBeforeReset) {
      plain_recurrent_weight_grad(dg, h_prev, dw_hh);
      return;
    }
    const Index H = w.hidden_size;
    MatrixMap<T> dw(dw_hh, 3 * H, H);
    dw.topRows(2 * H).noalias() = dg.leftCols(2 * H).transpose() * h_prev;
    Matrix<T> rh(rows, H);  // [T*N, H] r ⊙ h_prev
    for (Index r = 0; r < rows; ++r)
      rh.row(r).array() = ConstVec<T>(tape.gates.data() + r * kSavedGates * H, H).transpose() * h_prev.row(r).array();
    dw.bottomRows(H).noalias() = dg.rightCols(H).transpose() * rh;
  }
};

}  // namespace fusedrnn
