// The one table from a configuration's cell to its cell type. A new cell adds its CellKind value
// (config.hpp) and one arm here.
#pragma once

#include "fusedrnn/cells/gru.hpp"
#include "fusedrnn/cells/lstm.hpp"
#include "fusedrnn/cells/rnn.hpp"
#include "fusedrnn/config.hpp"

namespace fusedrnn {

// Calls f with a value of the cell type (over scalar T) that the configuration names; returns what f
// returns.
template <typename T, typename F>
decltype(auto) with_cell(CellKind kind, bool linear_before_reset, F&& f) {
  switch (kind) {
    case CellKind::kRnnTanh: return f(RnnCell<T, Nonlinearity::kTanh>{});
    case CellKind::kRnnRelu: return f(RnnCell<T, Nonlinearity::kRelu>{});
    case CellKind::kLstm: return f(LstmCell<T>{});
    case CellKind::kGru:
      if (linear_before_reset) return f(GruCell<T, true>{});
      return f(GruCell<T, false>{});
  }
  throw std::invalid_argument("cell: not a CellKind");
}

template <typename T, typename F>
decltype(auto) with_cell(const StackConfig& config, F&& f) {
  return with_cell<T>(config.cell, config.linear_before_reset, std::forward<F>(f));
}

}  // namespace fusedrnn
