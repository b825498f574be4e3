// Vanilla RNN cell (Elman): h' = act(W x + b_ih + U h + b_hh), act = tanh or relu.
// clip (ONNX's RNN, as ONNX Runtime computes it, relu included) bounds the activation's input to
// [-clip, clip]: h' = act(clip(W x + b_ih + U h + b_hh)).
// Both biases fold into the input projection. Forward saves h' (the activation's output, from
// which its derivative is written), with clip also the activation's input before clipping (backward's
// mask); the layer saves h entering the step.
#pragma once

#include "fusedrnn/cells/traits.hpp"

namespace fusedrnn {

enum class Nonlinearity { kTanh, kRelu };

template <typename T, Nonlinearity kAct>
struct RnnCell {
  static constexpr const char* kName = kAct == Nonlinearity::kTanh ? "rnn_tanh" : "rnn_relu";
  static constexpr Index kGates = 1;
  static constexpr Index kSavedGates = 1;  // h' (and the input before clipping, with clip)
  static constexpr bool kHasCellState = false;
  static constexpr unsigned kOptions = kOptionClip;
  static constexpr Index kPeepholeVectors = 0;
  static constexpr StepPhases kPhases = StepPhases::kPointwise;
  static constexpr bool kSeparateHiddenGrad = false;
  static constexpr bool kDirectHiddenGrad = false;

  static Index saved_gates(const CellOptions<T>& options) { return options.clip > 0 ? 2 : 1; }

  static void split_bias(const RowVector<T>& b_ih, const RowVector<T>& b_hh, Index, RowVector<T>& bias_x,
                         RowVector<T>& bias_h) {
    bias_x = b_ih + b_hh;
    bias_h.setZero(b_ih.size());
  }

  // h = act(pre).
  template <typename Pre>
  static void activate_into(Vec<T>& h, const Pre& pre) {
    if (kAct == Nonlinearity::kTanh)
      tanh_into(h, pre);
    else
      relu_into(h, pre);
  }

  static void forward_row(const CellRow<T>& r) {
    const Index H = r.units;
    const T bound = r.options->clip;
    Vec<T> h(r.h, H);
    if (bound > 0) {
      Vec<T> pre(r.gates + H, H);
      pre = ConstVec<T>(r.xg, H) + ConstVec<T>(r.hg, H);
      clip_into(h, pre, bound);
      activate_into(h, h);
    } else {
      activate_into(h, ConstVec<T>(r.xg, H) + ConstVec<T>(r.hg, H));
    }
    Vec<T>(r.gates, H) = h;
  }

  static void backward_row(const CellGradRow<T>& r) {
    const Index H = r.units;
    const T bound = r.options->clip;
    ConstVec<T> h_new(r.gates, H), dh(r.dh, H);
    Vec<T> da(r.dg_in, H);
    if (kAct == Nonlinearity::kTanh)
      da = dh * tanh_grad(h_new);
    else
      da = (h_new > T(0)).select(dh, T(0));
    if (bound > 0) mul_clip_grad(da, ConstVec<T>(r.gates + H, H), bound);
  }
};

static_assert(check_cell<RnnCell<float, Nonlinearity::kTanh>, float>() &&
              check_cell<RnnCell<float, Nonlinearity::kRelu>, float>() &&
              check_cell<RnnCell<double, Nonlinearity::kTanh>, double>() &&
              check_cell<RnnCell<double, Nonlinearity::kRelu>, double>());

}  // namespace fusedrnn
