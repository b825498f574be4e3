// Weights packed once for the panel products (any instruction set): B (K rows, ncols columns) stored
// as column panels of kPanelWidth columns, each panel [K, kPanelWidth] contiguous (the last
// zero-padded). The recurrent product of every step and the input projection read them, so the weights
// are never repacked per call or per step (a general GEMM repacks its right-hand side every time).
#pragma once

#include <algorithm>
#include <vector>

#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

constexpr Index kPanelWidth = 16;

inline Index panel_count(Index ncols) { return (ncols + kPanelWidth - 1) / kPanelWidth; }

// Appends B's columns [0, ncols) as panels to out; b(k, j) gives B's element at row k, column j. Copies
// 16x16 blocks, so that the reads stay in a few cache lines whichever way B is laid out.
template <typename T, typename Element>
void pack_panels(Index K, Index ncols, Element b, std::vector<T>& out) {
  const std::size_t base = out.size();
  out.resize(base + static_cast<std::size_t>(panel_count(ncols) * K * kPanelWidth), T(0));
  for (Index j0 = 0; j0 < ncols; j0 += kPanelWidth) {
    T* panel = out.data() + base + (j0 / kPanelWidth) * K * kPanelWidth;
    const Index width = std::min(kPanelWidth, ncols - j0);
    for (Index k0 = 0; k0 < K; k0 += kPanelWidth) {
      const Index k1 = std::min(K, k0 + kPanelWidth);
      for (Index j = 0; j < width; ++j)
        for (Index k = k0; k < k1; ++k) panel[k * kPanelWidth + j] = b(k, j0 + j);
    }
  }
}

}  // namespace fusedrnn
