// The data a layer (one direction of one layer over time) and its cells pass around.
#pragma once

#include <cstdint>
#include <new>
#include <vector>

#include "fusedrnn/buffer.hpp"
#include "fusedrnn/kernels/packing.hpp"
#include "fusedrnn/panels.hpp"
#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

// The weights of one layer-direction as the kernels keep them, built once by Stack::set_weights.
//
// Packed gate order: the H hidden units are cut into K contiguous slices (boundaries unit_begin);
// slice k owns units [u0, u1) and, in every gate-indexed array, the G*(u1-u0) columns starting at
// G*u0, gate-major inside the slice (all of gate 0 for its units, then gate 1, ...). A thread that
// owns a slice reads one contiguous block of the input projection, of the recurrent weights' columns
// and of the saved gates, and keeps its part of W_hh hot in its own cache for all T steps.
// `perm[p]` is the PyTorch row (gate*H + unit) of packed position p.
// The options a stack sets for its cells (cells/traits.hpp lists which cell takes which), as the cells
// read them.
template <typename T>
struct CellOptions {
  bool peephole = false;
  bool input_forget = false;
  T clip = 0;               // 0 = none
  bool hard_gates = false;  // the gates use the hard sigmoid (activations.hpp)
};

//
// T is the compute type (inputs, states, gates, the matrices below); S the type the panel products read
// the weights in (panels), T itself today. A narrower storage adds a PanelWeights<S>, its packing
// (to_storage) and panel_product overloads for it (panels.hpp): the layer's loop is the same.
template <typename T, typename S = T>
struct LayerWeights {
  using Scalar = T;
  using Storage = S;
  Index input_size = 0;   // I
  Index hidden_size = 0;  // H
  Index output_size = 0;  // H_out
  Index proj_size = 0;    // P, 0 = none
  Index gates = 1;        // G
  std::vector<Index> unit_begin;  // [K+1] slice boundaries over the H units
  std::vector<Index> perm;        // [G*H] packed position -> PyTorch row
  Matrix<T> w_ih;         // [G*H, I]   rows in packed order
  Matrix<T> w_hh_t;       // [H_out, G*H] W_hhᵀ, columns in packed order: the step's product is h · w_hh_t
  RowVector<T> bias_x;    // [G*H] bias added to the input projection (packed order)
  RowVector<T> bias_h;    // [G*H] bias kept inside the step (GRU linear-before-reset: b_hn), packed order
  Matrix<T> w_hr_t;       // [H, P] W_hrᵀ (LSTM with P > 0)
  CellOptions<T> options;
  // Peepholes [V*H], V = peephole_vectors (0 = none), in packed order: slice k's V vectors for its
  // units at V*u0 (the LSTM's p_i, p_f, p_o).
  Index peephole_vectors = 0;
  RowVector<T> peep;
  // A whole-row cell's (StepPhases::kWholeRow) own parameters, biases included, in the layout its
  // pack_row_parameters writes (Cell::row_parameters(H) values; empty for the other cells).
  RowVector<T> row_params;
  // The same weights packed for the panel products, in the storage type S (pack_weights).
  PanelWeights<S> panels;

  Index slices() const { return static_cast<Index>(unit_begin.size()) - 1; }
};

// Packs w's matrices into w.panels, in storage type S: w_ihᵀ's columns; each slice's columns of w_hh_t
// in panels of its own (forward); W_hh's columns (backward: dh = dg · W_hh). Leaves them empty where
// this build has no panel kernels for S.
template <typename T, typename S>
void pack_weights(LayerWeights<T, S>& w) {
  w.panels = PanelWeights<S>{};
  if (!has_panel_kernels<S>()) return;
  const Index GH = w.w_ih.rows();
  pack_panels(w.input_size, GH, [&](Index k, Index j) { return w.w_ih(j, k); }, w.panels.ih);
  pack_panels(GH, w.output_size, [&](Index k, Index j) { return w.w_hh_t(j, k); }, w.panels.hh_t);
  for (Index k = 0; k < w.slices(); ++k) {
    const Index col0 = w.gates * w.unit_begin[k], width = w.gates * (w.unit_begin[k + 1] - w.unit_begin[k]);
    w.panels.hh_slice_begin.push_back(static_cast<Index>(w.panels.hh.size()));
    pack_panels(w.output_size, width, [&](Index r, Index j) { return w.w_hh_t(r, col0 + j); }, w.panels.hh);
  }
}

// One layer-direction's parameter arrays by role, in PyTorch's layouts, nullptr where the configuration
// has none (StackConfig::param_arrays reads them from the stack's list): the weights given to
// set_weights (Ptr = const T*) or their gradients (Ptr = T*).
template <typename Ptr>
struct ParamArrays {
  Ptr w_ih = nullptr;      // [G*H, I]
  Ptr w_hh = nullptr;      // [G*H, H_out]
  Ptr b_ih = nullptr;      // [G*H]
  Ptr b_hh = nullptr;      // [G*H]
  Ptr w_hr = nullptr;      // [P, H]
  Ptr peephole = nullptr;  // [V*H] (LSTM: p_i; p_f; p_o)
  Ptr norm_input_gain = nullptr;      // [G*H] layer normalization: gamma of LN(W_ih x)
  Ptr norm_recurrent_gain = nullptr;  // [G*H] gamma of LN(W_hh h)
  Ptr norm_cell_gain = nullptr;       // [H] gamma of LN(c') (LSTM)
  Ptr norm_cell_shift = nullptr;      // [H] beta of LN(c') (LSTM)
};

template <typename T>
using LayerGrads = ParamArrays<T*>;

// What training forward keeps for backward, for one layer-direction, indexed by time t. Per step
// and sequence: the gates after activation (S*H values, S = Cell::saved_gates(w), packed order), the
// hidden state entering the step (H_out) and, for LSTM, the cell state entering it (H): at most
// (G+2)*H values. The layer's input is kept once per layer by the stack.
template <typename T>
struct LayerTape {
  Buffer<T> gates;   // [T, N, S*H]
  Buffer<T> h_prev;  // [T, N, H_out]
  Buffer<T> c_prev;  // [T, N, H] (LSTM only)
  Buffer<T> recurrent_mask;  // [N, H_out] recurrent dropout's mask (stack.hpp), or empty
  Buffer<T> zoneout;         // [T, N, Z*H] zoneout's factors (stack.hpp), or empty
};

// A row-major matrix over a cached buffer (see buffer.hpp): the per-call workspaces. resize()
// leaves the contents unspecified.
template <typename T>
class ScratchMatrix : public MatrixMap<T> {
 public:
  ScratchMatrix() : MatrixMap<T>(nullptr, 0, 0) {}
  ScratchMatrix(const ScratchMatrix&) = delete;
  ScratchMatrix& operator=(const ScratchMatrix&) = delete;
  using MatrixMap<T>::operator=;

  void resize(Index rows, Index cols) {
    buffer_.allocate(static_cast<std::size_t>(rows * cols));
    // Re-seat the map (the way Eigen documents for Map).
    new (static_cast<MatrixMap<T>*>(this)) MatrixMap<T>(buffer_.data(), rows, cols);
  }
  void setZero(Index rows, Index cols) {
    resize(rows, cols);
    MatrixMap<T>::setZero();
  }

 private:
  Buffer<T> buffer_;
};

// One row (sequence) of one slice of Hs units, for a cell's fused forward step.
template <typename T>
struct CellRow {
  Index units = 0;          // Hs
  const T* xg = nullptr;    // [G*Hs] input projection, input-side biases included
  const T* hg = nullptr;    // [G*Hs] recurrent product h · W_hhᵀ
  const T* bias_h = nullptr;  // [G*Hs] bias kept inside the step
  const T* h_prev = nullptr;  // [Hs] this slice of the hidden state entering the step
  T* c = nullptr;           // [Hs] LSTM cell state, in/out
  T* gates = nullptr;       // [S*Hs] out: the gates after activation
  T* h = nullptr;           // [Hs] out: the new hidden state (LSTM: o ⊙ tanh(c), before projection)
  T* rh = nullptr;          // [Hs] out (GRU reset-before, first phase): r ⊙ h_prev
  const CellOptions<T>* options = nullptr;
  const T* peephole = nullptr;  // [V*Hs] this slice's peepholes, or nullptr
  const T* row_params = nullptr;  // a whole-row cell's parameters (LayerWeights::row_params), or nullptr
};

// One row of one slice, for a cell's gate-gradient pass.
template <typename T>
struct CellGradRow {
  Index units = 0;
  const T* gates = nullptr;   // [S*Hs] saved by forward
  const T* c_prev = nullptr;  // [Hs] saved by forward (LSTM)
  const T* h_prev = nullptr;  // [Hs] saved by forward
  const T* dh = nullptr;      // [Hs] gradient wrt this step's new h (LSTM: wrt o ⊙ tanh(c'))
  const T* drh = nullptr;     // [Hs] gradient wrt r ⊙ h_prev (GRU reset-before, second phase)
  T* dc = nullptr;            // [Hs] LSTM: in, gradient wrt c'; out, wrt c entering the step
  T* dg_in = nullptr;         // [G*Hs] out: gradient wrt the input-side pre-activations
  T* dg_hid = nullptr;        // [G*Hs] out: gradient wrt the recurrent product (may alias dg_in)
  T* dh_direct = nullptr;     // [Hs] out: gradient wrt h entering the step not through W_hh (GRU)
  const CellOptions<T>* options = nullptr;
  const T* peephole = nullptr;       // [V*Hs] this slice's peepholes, or nullptr
  T* peephole_grad = nullptr;        // [V*Hs] accumulated gradient of the peepholes
  const T* row_params = nullptr;     // a whole-row cell's parameters, or nullptr
  T* row_params_grad = nullptr;      // their accumulated gradient, same layout
};

}  // namespace fusedrnn
