// The buffers of a layer call, sized before its team starts and reused across the stack's layers.
#pragma once

#include <vector>

#include "fusedrnn/layer/plan.hpp"
#include "fusedrnn/layer_types.hpp"

namespace fusedrnn {

// Buffers of one layer-direction call, shared by its team.
template <typename T>
struct LayerWorkspace {
  ScratchMatrix<T> xg;      // [T*N, G*H] input projection (packed order); [B*N, G*H] by blocks of B steps
  ScratchMatrix<T> hg;      // [N, G*H] recurrent product of the step
  ScratchMatrix<T> gates;   // [N, S*H] gate values when not training
  ScratchMatrix<T> h_alt;   // [N, H_out] the second buffer of the double-buffered h (or dh in backward)
  ScratchMatrix<T> m;       // [N, H] LSTM: o ⊙ tanh(c) before projection (backward: its gradient); GRU: r ⊙ h
  ScratchMatrix<T> h_masked[2];  // [N, H_out] recurrent dropout: h ⊙ mask, what the product reads, and the next
  ScratchMatrix<T> c_old;   // [N, H] zoneout: c entering the step (the cell updates c in place)
  // backward only
  ScratchMatrix<T> dg_in;   // [T*N, G*H] gradient wrt the input projection
  ScratchMatrix<T> dg_hid;  // [T*N, G*H] gradient wrt the recurrent product
  ScratchMatrix<T> dh_out;  // [T*N, P] gradient wrt the projected output
  ScratchMatrix<T> drh;     // [N, H] GRU reset-before: gradient wrt r ⊙ h
  ScratchMatrix<T> direct;  // [N, H] GRU: gradient wrt h entering the step not through W_hh
  ScratchMatrix<T> zoned;   // [N, H] zoneout: gradient wrt h entering the step through the units kept
  ScratchMatrix<T> zoned_c; // [N, H] zoneout, LSTM: the same for c
  ScratchMatrix<T> rows_masked;  // [T*N, H_out] recurrent dropout: h entering each step ⊙ mask
  ScratchMatrix<T> rows_h;  // [T*N, H] LSTM projection: o ⊙ tanh(c'); GRU reset-before: r ⊙ h_prev
  ScratchMatrix<T> grad_ih; // [G*H, I] packed-order weight gradients before unpacking
  ScratchMatrix<T> grad_hh; // [G*H, H_out]
  ScratchMatrix<T> peephole_grad;  // [1, 3*H] LSTM peepholes, packed order
  ScratchMatrix<T> row_params_grad;  // [1, row parameters] a whole-row cell's parameters
  // Forward: whether the call's first step sweeps the weights backwards (steps alternate, and so do a
  // stream's one-step calls).
  bool backwards_first = false;

  template <typename Cell, typename S>
  void resize_forward(const LayerWeights<T, S>& w, const LayerPlan& plan, Index steps, Index batch, bool training,
                      bool recurrent_dropout, bool zoneout) {
    const Index H = w.hidden_size, GH = Cell::kGates * H;
    xg.resize((plan.projection_steps > 0 ? plan.projection_steps : steps) * batch, GH);
    hg.resize(batch, GH);
    if (!training) gates.resize(batch, Cell::saved_gates(w.options) * H);
    h_alt.resize(batch, w.output_size);
    m.setZero(batch, H);
    for (auto& masked : h_masked) masked.resize(recurrent_dropout ? batch : 0, w.output_size);
    c_old.resize(zoneout && Cell::kHasCellState ? batch : 0, H);
  }

  // max_input: the largest layer input size of the stack (the workspace serves every layer).
  template <typename Cell>
  void resize_backward(const LayerWeights<T>& w, Index steps, Index batch, Index max_input, bool recurrent_dropout,
                       bool zoneout) {
    const Index H = w.hidden_size, GH = Cell::kGates * H, rows = steps * batch;
    dg_in.resize(rows, GH);
    dg_hid.resize(Cell::kSeparateHiddenGrad ? rows : 0, GH);
    dh_out.resize(w.proj_size > 0 ? rows : 0, w.proj_size);
    h_alt.resize(batch, w.output_size);
    m.setZero(batch, H);
    drh.setZero(has_second_product<Cell>() ? batch : 0, H);
    direct.setZero(Cell::kDirectHiddenGrad ? batch : 0, H);
    zoned.setZero(zoneout ? batch : 0, H);
    zoned_c.setZero(zoneout && Cell::kHasCellState ? batch : 0, H);
    rows_masked.resize(recurrent_dropout ? rows : 0, w.output_size);
    rows_h.resize(w.proj_size > 0 || has_second_product<Cell>() ? rows : 0, H);
    grad_ih.resize(GH, max_input);
    grad_hh.resize(GH, w.output_size);
    peephole_grad.setZero(1, w.peephole_vectors * H);
    row_params_grad.setZero(1, w.row_params.size());
  }
};

// The workspaces of one stack call: one per direction (shared by the layers in turn) and, for inference,
// the outputs of the inner layers (ping-ponged). A call makes its own; a stream keeps one from step to
// step, so that a step allocates nothing.
template <typename T>
struct StackWorkspace {
  std::vector<LayerWorkspace<T>> directions;
  Buffer<T> between[2];
  unsigned calls = 0;
};

// What one layer-direction call reads and writes (the same for every member of its team).
// x: [T, N, I] layer input; lengths: [N] or nullptr; h: [N, H_out], c: [N, H] initial state in, final
// state out; y: [T, N, *] this direction's H_out output columns, row stride y_stride.
template <typename T>
struct LayerCall {
  Index steps = 0;
  Index batch = 0;
  bool reverse = false;
  const T* x = nullptr;
  const std::int64_t* lengths = nullptr;
  T* h = nullptr;
  T* c = nullptr;
  T* y = nullptr;
  Index y_stride = 0;
  const T* recurrent_mask = nullptr;  // training: [N, H_out] (stack.hpp), or nullptr
  const T* zoneout = nullptr;         // training: [T, N, Z*H] (stack.hpp), or nullptr
  T zoneout_keep = 0;                 // inference: zoneout's p (each unit keeps p of its previous value)
};

// What backward reads and writes for one layer-direction. dy: [T, N, *] gradient of this direction's
// output columns, row stride dy_stride; dh: [N, H_out], dc: [N, H] gradient wrt the final state in, wrt
// the initial state out; dx: [T, N, I] out; grads: parameter gradients out (overwritten).
template <typename T>
struct LayerGradCall {
  Index steps = 0;
  Index batch = 0;
  bool reverse = false;
  const T* x = nullptr;  // the layer input forward saw
  const std::int64_t* lengths = nullptr;
  const T* dy = nullptr;
  Index dy_stride = 0;
  T* dh = nullptr;
  T* dc = nullptr;
  T* dx = nullptr;
  LayerGrads<T> grads;
  const T* recurrent_mask = nullptr;  // the masks forward used, or nullptr
  const T* zoneout = nullptr;
};

// Which sequences are active at time t (PyTorch's packed-sequence semantics without packing): sequence
// n while t < lengths[n]. Inactive sequences keep their state.
class ActiveRows {
 public:
  ActiveRows(const std::int64_t* lengths, Index batch) : lengths_(lengths), active_(lengths ? batch : 0) {}
  void at(Index t) {
    for (std::size_t n = 0; n < active_.size(); ++n) active_[n] = t < lengths_[n];
  }
  bool operator()(Index n) const { return !lengths_ || active_[static_cast<std::size_t>(n)]; }

 private:
  const std::int64_t* lengths_;
  std::vector<std::uint8_t> active_;
};

}  // namespace fusedrnn
