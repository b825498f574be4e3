// Vanilla RNN cell (Elman): h' = act(W x + b_ih + U h + b_hh), act = tanh or relu.
// Both biases fold into the input projection. Forward saves h' (the activation's output, from
// which its derivative is written); the layer saves h entering the step.
#pragma once

#include "fusedrnn/cells/traits.hpp"

namespace fusedrnn {

enum class Nonlinearity { kTanh, kRelu };

template <typename T, Nonlinearity kAct>
struct RnnCell {
  static constexpr const char* kName = kAct == Nonlinearity::kTanh ? "rnn_tanh" : "rnn_relu";
  static constexpr Index kGates = 1;
  static constexpr Index kSavedGates = 1;  // h'
  static constexpr bool kHasCellState = false;
  static constexpr unsigned kOptions = 0;
  static constexpr Index kPeepholeVectors = 0;
  static constexpr StepPhases kPhases = StepPhases::kPointwise;
  static constexpr bool kSeparateHiddenGrad = false;
  static constexpr bool kDirectHiddenGrad = false;

  static Index saved_gates(const CellOptions<T>&) { return kSavedGates; }

  static void split_bias(const RowVector<T>& b_ih, const RowVector<T>& b_hh, Index, RowVector<T>& bias_x,
                         RowVector<T>& bias_h) {
    bias_x = b_ih + b_hh;
    bias_h.setZero(b_ih.size());
  }

  static void forward_row(const CellRow<T>& r) {
    const Index H = r.units;
    Vec<T> h(r.h, H);
    const auto pre = ConstVec<T>(r.xg, H) + ConstVec<T>(r.hg, H);
    if (kAct == Nonlinearity::kTanh)
      tanh_into(h, pre);
    else
      relu_into(h, pre);
    Vec<T>(r.gates, H) = h;
  }

  static void backward_row(const CellGradRow<T>& r) {
    const Index H = r.units;
    ConstVec<T> h_new(r.gates, H), dh(r.dh, H);
    if (kAct == Nonlinearity::kTanh)
      Vec<T>(r.dg_in, H) = dh * tanh_grad(h_new);
    else
      Vec<T>(r.dg_in, H) = (h_new > T(0)).select(dh, T(0));
  }
};

static_assert(check_cell<RnnCell<float, Nonlinearity::kTanh>, float>() &&
              check_cell<RnnCell<float, Nonlinearity::kRelu>, float>() &&
              check_cell<RnnCell<double, Nonlinearity::kTanh>, double>() &&
              check_cell<RnnCell<double, Nonlinearity::kRelu>, double>());

}  // namespace fusedrnn
