// The one table from a configuration's cell to its cell type. A new cell adds its CellKind value
// (config.hpp) and one arm here.
#pragma once

#include "fusedrnn/cells/gru.hpp"
#include "fusedrnn/cells/layer_norm_gru.hpp"
#include "fusedrnn/cells/layer_norm_lstm.hpp"
#include "fusedrnn/cells/lstm.hpp"
#include "fusedrnn/cells/rnn.hpp"
#include "fusedrnn/config.hpp"

namespace fusedrnn {

// Calls f with a value of the cell type (over scalar T) that the configuration names; returns what f
// returns. A form the cells lack (layer_norm on the reset-before GRU) gets the plain cell, whose options
// StackConfig::validate then refuses.
template <typename T, typename F>
decltype(auto) with_cell(CellKind kind, bool linear_before_reset, bool layer_norm, F&& f) {
  switch (kind) {
    case CellKind::kRnnTanh: return f(RnnCell<T, Nonlinearity::kTanh>{});
    case CellKind::kRnnRelu: return f(RnnCell<T, Nonlinearity::kRelu>{});
    case CellKind::kLstm:
      if (layer_norm) return f(LayerNormLstmCell<T>{});
      return f(LstmCell<T>{});
    case CellKind::kGru:
      if (linear_before_reset && layer_norm) return f(LayerNormGruCell<T>{});
      if (linear_before_reset) return f(GruCell<T, true>{});
      return f(GruCell<T, false>{});
  }
  throw std::invalid_argument("cell: not a CellKind");
}

template <typename T, typename F>
decltype(auto) with_cell(const StackConfig& config, F&& f) {
  return with_cell<T>(config.cell, config.linear_before_reset, config.layer_norm, std::forward<F>(f));
}

}  // namespace fusedrnn
