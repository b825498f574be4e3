// What a stack of recurrent layers is, independent of its weights.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "fusedrnn/cells/traits.hpp"
#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

// The cells a stack can run; cells/registry.hpp maps each to its cell type.
enum class CellKind { kRnnTanh, kRnnRelu, kLstm, kGru };
constexpr CellKind kCellKinds[] = {CellKind::kRnnTanh, CellKind::kRnnRelu, CellKind::kLstm, CellKind::kGru};

// The kind whose cell is named `name` (CellInfo::name); invalid_argument naming the choices otherwise.
CellKind parse_cell_kind(const std::string& name);

// The parameter arrays of one layer-direction, in PyTorch's order (w_ih, w_hh, b_ih, b_hh, w_hr) with
// the peepholes, then the layer normalization's gains and shift.
enum class ParamRole {
  kInputWeights,
  kRecurrentWeights,
  kInputBias,
  kRecurrentBias,
  kProjection,
  kPeephole,
  kNormInputGain,      // [G*H] gamma of LN(W_ih x)
  kNormRecurrentGain,  // [G*H] gamma of LN(W_hh h)
  kNormCellGain,       // [H] gamma of LN(c') (LSTM)
  kNormCellShift,      // [H] beta of LN(c') (LSTM)
};

struct StackConfig {
  CellKind cell = CellKind::kLstm;
  Index input_size = 0;
  Index hidden_size = 0;  // H
  Index num_layers = 1;   // L
  bool bias = true;
  bool bidirectional = false;
  Index proj_size = 0;               // P, LSTM only; 0 = no projection
  bool linear_before_reset = true;   // GRU only: PyTorch's form
  bool residual = false;             // layers after the first add their input to their output
  // LSTM options beyond PyTorch (ONNX's): peepholes and a forget gate coupled to the input gate
  // (f = 1 - i). Every cell: clip, ONNX's clipping of the activations' inputs to [-clip, clip] (0 = none).
  bool peephole = false;
  double clip = 0.0;
  bool input_forget = false;
  // LSTM and GRU: the gates (LSTM i, f, o; GRU r, z) use Keras 3's hard sigmoid clip(x / 6 + 1/2, 0, 1)
  // instead of the logistic function.
  bool hard_gates = false;
  // LSTM and GRU (linear-before-reset): layer normalization of W_ih x, W_hh h and the LSTM's c'
  // (cells/layer_norm_lstm.hpp, layer_norm_gru.hpp).
  bool layer_norm = false;
  // Every cell (not with proj_size): zoneout's probability p. A call computes h' = p h + (1 - p) h_new
  // (and likewise the LSTM's c); training draws which units keep their previous value (ForwardArgs).
  double zoneout = 0.0;

  // What the cell declares about itself (cells/traits.hpp).
  CellInfo info() const;
  Index gates() const { return info().gates; }
  bool has_cell_state() const { return info().cell_state; }
  // The options this configuration sets, as CellOption bits (validate checks them against the cell's).
  // linear_before_reset picks one of the GRU's forms and is ignored by cells with one form (every
  // configuration carries PyTorch's default), so it is not among them.
  unsigned options() const {
    return (proj_size != 0 ? kOptionProjection : 0u) | (peephole ? kOptionPeephole : 0u) |
           (clip != 0.0 ? kOptionClip : 0u) | (input_forget ? kOptionInputForget : 0u) |
           (hard_gates ? kOptionHardGates : 0u) | (layer_norm ? kOptionLayerNorm : 0u);
  }
  Index directions() const { return bidirectional ? 2 : 1; }
  Index output_size() const { return proj_size > 0 ? proj_size : hidden_size; }  // H_out
  Index layer_input_size(Index layer) const { return layer == 0 ? input_size : directions() * output_size(); }

  // The parameter arrays of each layer-direction, in order, and the shape of each in `layer`.
  std::vector<ParamRole> param_roles() const {
    std::vector<ParamRole> roles{ParamRole::kInputWeights, ParamRole::kRecurrentWeights};
    if (bias) roles.insert(roles.end(), {ParamRole::kInputBias, ParamRole::kRecurrentBias});
    if (proj_size > 0) roles.push_back(ParamRole::kProjection);
    if (peephole) roles.push_back(ParamRole::kPeephole);
    if (layer_norm) {
      roles.insert(roles.end(), {ParamRole::kNormInputGain, ParamRole::kNormRecurrentGain});
      if (has_cell_state()) roles.insert(roles.end(), {ParamRole::kNormCellGain, ParamRole::kNormCellShift});
    }
    return roles;
  }
  Index params_per_layer_direction() const { return static_cast<Index>(param_roles().size()); }
  std::vector<Index> param_shape(ParamRole role, Index layer) const {
    const Index GH = gates() * hidden_size;
    switch (role) {
      case ParamRole::kInputWeights: return {GH, layer_input_size(layer)};
      case ParamRole::kRecurrentWeights: return {GH, output_size()};
      case ParamRole::kInputBias:
      case ParamRole::kRecurrentBias:
      case ParamRole::kNormInputGain:
      case ParamRole::kNormRecurrentGain: return {GH};
      case ParamRole::kNormCellGain:
      case ParamRole::kNormCellShift: return {hidden_size};
      case ParamRole::kProjection: return {proj_size, hidden_size};
      case ParamRole::kPeephole: return {info().peephole_vectors * hidden_size};
    }
    return {};
  }

  // One layer-direction's arrays by role, from its params_per_layer_direction() entries at p.
  template <typename Ptr>
  ParamArrays<Ptr> param_arrays(const Ptr* p) const {
    ParamArrays<Ptr> arrays;
    for (ParamRole role : param_roles()) {
      const Ptr array = *p++;
      switch (role) {
        case ParamRole::kInputWeights: arrays.w_ih = array; break;
        case ParamRole::kRecurrentWeights: arrays.w_hh = array; break;
        case ParamRole::kInputBias: arrays.b_ih = array; break;
        case ParamRole::kRecurrentBias: arrays.b_hh = array; break;
        case ParamRole::kProjection: arrays.w_hr = array; break;
        case ParamRole::kPeephole: arrays.peephole = array; break;
        case ParamRole::kNormInputGain: arrays.norm_input_gain = array; break;
        case ParamRole::kNormRecurrentGain: arrays.norm_recurrent_gain = array; break;
        case ParamRole::kNormCellGain: arrays.norm_cell_gain = array; break;
        case ParamRole::kNormCellShift: arrays.norm_cell_shift = array; break;
      }
    }
    return arrays;
  }

  // invalid_argument naming the field, what it must be and what it is.
  void validate() const;
};

}  // namespace fusedrnn
