// What a stack of recurrent layers is, independent of its weights.
#pragma once

#include <stdexcept>
#include <string>

#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

enum class CellKind { kRnnTanh, kRnnRelu, kLstm, kGru };

inline CellKind parse_cell_kind(const std::string& name) {
  if (name == "rnn_tanh") return CellKind::kRnnTanh;
  if (name == "rnn_relu") return CellKind::kRnnRelu;
  if (name == "lstm") return CellKind::kLstm;
  if (name == "gru") return CellKind::kGru;
  throw std::invalid_argument("cell: expected one of 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got '" + name + "'");
}

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
  // LSTM options beyond PyTorch (ONNX's): peepholes, clipping of the activations' inputs to
  // [-clip, clip] (0 = none), and a forget gate coupled to the input gate (f = 1 - i).
  bool peephole = false;
  double clip = 0.0;
  bool input_forget = false;
  // LSTM and GRU: the gates (LSTM i, f, o; GRU r, z) use Keras 3's hard sigmoid clip(x / 6 + 1/2, 0, 1)
  // instead of the logistic function.
  bool hard_gates = false;

  Index gates() const {
    switch (cell) {
      case CellKind::kLstm: return 4;
      case CellKind::kGru: return 3;
      default: return 1;
    }
  }
  Index directions() const { return bidirectional ? 2 : 1; }
  Index output_size() const { return proj_size > 0 ? proj_size : hidden_size; }  // H_out
  bool has_cell_state() const { return cell == CellKind::kLstm; }
  Index layer_input_size(Index layer) const { return layer == 0 ? input_size : directions() * output_size(); }
  // Parameters per layer-direction, in PyTorch's order: w_ih, w_hh, [b_ih, b_hh], [w_hr].
  // Parameters per layer-direction, in order: w_ih, w_hh, [b_ih, b_hh], [w_hr], [peephole].
  Index params_per_layer_direction() const {
    return 2 + (bias ? 2 : 0) + (proj_size > 0 ? 1 : 0) + (peephole ? 1 : 0);
  }

  void validate() const {
    auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
    if (input_size < 1) fail("input_size: expected >= 1, got " + std::to_string(input_size));
    if (hidden_size < 1) fail("hidden_size: expected >= 1, got " + std::to_string(hidden_size));
    if (num_layers < 1) fail("num_layers: expected >= 1, got " + std::to_string(num_layers));
    if (proj_size < 0 || (proj_size > 0 && (cell != CellKind::kLstm || proj_size >= hidden_size)))
      fail("proj_size: expected 0, or 0 < proj_size < hidden_size on an LSTM, got " + std::to_string(proj_size));
    if ((peephole || clip != 0.0 || input_forget) && cell != CellKind::kLstm)
      fail("peephole, clip, input_forget: LSTM options, given for another cell");
    if (hard_gates && cell != CellKind::kLstm && cell != CellKind::kGru)
      fail("hard_gates: an LSTM and GRU option, given for another cell");
    if (!(clip >= 0.0)) fail("clip: expected >= 0 (0 = none), got " + std::to_string(clip));
  }
};

}  // namespace fusedrnn
