// Vanilla RNN cell (Elman): h' = act(W x + b_ih + U h + b_hh), act = tanh or relu.
// Both biases fold into the input projection. Forward saves h' (the activation's output, from
// which its derivative is written) and h entering the step.
#pragma once

#include <algorithm>

#include "fusedrnn/activations.hpp"
#include "fusedrnn/cells/common.hpp"
#include "fusedrnn/layer_types.hpp"

namespace fusedrnn {

enum class Nonlinearity { kTanh, kRelu };

template <typename T, Nonlinearity kAct>
struct RnnCell {
  static constexpr Index kGates = 1;
  static constexpr Index kSavedGates = 1;  // h'
  static constexpr bool kHasCellState = false;
  static constexpr bool kSeparateHiddenGrad = false;

  static RowVector<T> input_bias(const LayerWeights<T>& w) { return w.b_ih + w.b_hh; }

  template <bool kTraining>
  static void forward_step(const LayerWeights<T>& w, const ForwardStep<T>& s, StepScratch<T>& scratch) {
    const Index batch = s.batch, H = w.hidden_size;
    if (kTraining) std::copy(s.h, s.h + batch * H, s.saved_h_prev);
    scratch.hg.noalias() = ConstMatrixMap<T>(s.h, batch, H) * w.w_hh_t;
    for (Index n = 0; n < batch; ++n) {
      const bool active = row_active(s.active, n);
      T* y_row = s.y + n * s.y_stride;
      if (!active) {
        if (kTraining) std::fill(s.saved_gates + n * H, s.saved_gates + (n + 1) * H, T(0));
        write_output_row(false, y_row, H, y_row);
        continue;
      }
      Vec<T> h(s.h + n * H, H);
      auto pre = ConstVec<T>(s.xg + n * H, H) + ConstVec<T>(scratch.hg.data() + n * H, H);
      if (kAct == Nonlinearity::kTanh)
        tanh_into(h, pre);
      else
        relu_into(h, pre);
      std::copy(h.data(), h.data() + H, y_row);
      if (kTraining) std::copy(h.data(), h.data() + H, s.saved_gates + n * H);
    }
  }

  static void backward_step(const LayerWeights<T>& w, const BackwardStep<T>& s, StepScratch<T>& scratch) {
    const Index batch = s.batch, H = w.hidden_size;
    for (Index n = 0; n < batch; ++n) {
      Vec<T> dg(s.dg_in + n * H, H);
      if (!row_active(s.active, n)) {
        dg.setZero();
        continue;
      }
      ConstVec<T> h_new(s.gates + n * H, H);
      auto dh = ConstVec<T>(s.dh + n * H, H) + ConstVec<T>(s.dy + n * s.dy_stride, H);
      if (kAct == Nonlinearity::kTanh)
        dg = dh * tanh_grad(h_new);
      else
        dg = (h_new > T(0)).select(dh, T(0));
    }
    scratch.dh_prev.noalias() = ConstMatrixMap<T>(s.dg_in, batch, H) * w.w_hh_t.transpose();
    copy_active_rows(s.active, batch, H, scratch.dh_prev.data(), s.dh);
  }

  static void recurrent_weight_grad(const LayerWeights<T>&, const LayerTape<T>&, Index, const Matrix<T>& dg,
                                    const ConstMatrixMap<T>& h_prev, T* dw_hh) {
    plain_recurrent_weight_grad(dg, h_prev, dw_hh);
  }
};

}  // namespace fusedrnn
