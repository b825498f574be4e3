// The data a layer (one direction of one layer over time) and its cells pass around.
#pragma once

#include <cstdint>
#include <vector>

#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

// The weights of one layer-direction as the kernels keep them (copied from the user's arrays by
// Stack::set_weights). Biases are stored even without bias (as zeros) so the hot loops never branch.
template <typename T>
struct LayerWeights {
  Index input_size = 0;   // I
  Index hidden_size = 0;  // H
  Index output_size = 0;  // H_out
  Index proj_size = 0;    // P, 0 = none
  Matrix<T> w_ih;         // [G*H, I]
  Matrix<T> w_hh_t;       // [H_out, G*H] transposed: the per-step product is h · w_hh_t
  RowVector<T> b_ih;      // [G*H]
  RowVector<T> b_hh;      // [G*H]
  Matrix<T> w_hr_t;       // [H, P] transposed projection (LSTM with P > 0)
};

// Gradients of one layer-direction's parameters, in PyTorch's layouts.
template <typename T>
struct LayerGrads {
  T* w_ih = nullptr;  // [G*H, I]
  T* w_hh = nullptr;  // [G*H, H_out]
  T* b_ih = nullptr;  // [G*H] or nullptr (no bias)
  T* b_hh = nullptr;  // [G*H] or nullptr
  T* w_hr = nullptr;  // [P, H] or nullptr
};

// What training forward keeps for backward, for one layer-direction. Indexed by time t (not by
// processing order). Per step and sequence: the activated gates (S*H, S = Cell::kSavedGates), the
// hidden state entering the step (H_out) and, for LSTM, the cell state entering it (H). The layer's
// input is kept once per layer by the stack (it is shared by both directions).
template <typename T>
struct LayerTape {
  std::vector<T> gates;   // [T, N, S*H]
  std::vector<T> h_prev;  // [T, N, H_out]
  std::vector<T> c_prev;  // [T, N, H] (LSTM only)
};

// One forward step over the batch. `active` marks the sequences for which time t lies inside
// their length; the others keep their state and output zeros.
template <typename T>
struct ForwardStep {
  Index batch = 0;                   // N
  const std::uint8_t* active = nullptr;  // [N], nullptr = all active
  const T* xg = nullptr;             // [N, G*H] input projection of this step, input-side biases folded in
  T* h = nullptr;                    // [N, H_out] hidden state, in/out
  T* c = nullptr;                    // [N, H] cell state (LSTM), in/out
  T* y = nullptr;                    // [N, H_out] output rows, row stride y_stride
  Index y_stride = 0;
  T* saved_gates = nullptr;          // [N, S*H] training only
  T* saved_h_prev = nullptr;         // [N, H_out] training only
  T* saved_c_prev = nullptr;         // [N, H] training only (LSTM)
};

// One backward step over the batch, walking time in reverse of the forward processing order.
template <typename T>
struct BackwardStep {
  Index batch = 0;
  const std::uint8_t* active = nullptr;  // [N], nullptr = all active
  const T* gates = nullptr;          // [N, S*H] saved by forward
  const T* h_prev = nullptr;         // [N, H_out] saved by forward
  const T* c_prev = nullptr;         // [N, H] saved by forward (LSTM)
  const T* dy = nullptr;             // [N, H_out] gradient arriving at this step's output, row stride dy_stride
  Index dy_stride = 0;
  T* dh = nullptr;                   // [N, H_out] in: grad wrt the state after the step; out: before it
  T* dc = nullptr;                   // [N, H] same for the LSTM cell state
  T* dg_in = nullptr;                // [N, G*H] out: grad wrt the input-side pre-activations (xg)
  T* dg_hid = nullptr;               // [N, G*H] out: grad wrt the recurrent product (== dg_in for most cells)
  T* dh_out = nullptr;               // [N, P] out: grad wrt the projected output (LSTM with P > 0)
};

// Per-call scratch of one layer-direction, sized once before the time loop.
template <typename T>
struct StepScratch {
  Matrix<T> hg;      // [N, G*H] recurrent product
  Matrix<T> gates;   // [N, S*H] gate values when not training
  Matrix<T> m;       // [N, H] LSTM output before projection / its gradient; GRU r*h and its gradient
  Matrix<T> h_new;   // [N, H_out] new hidden state before masking; in backward the gradient wrt it
  Matrix<T> dh_prev; // [N, H_out] backward: gradient wrt the hidden state entering the step
};

}  // namespace fusedrnn
