// Small helpers shared by the cells.
#pragma once

#include <algorithm>
#include <cstdint>

#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

inline bool row_active(const std::uint8_t* active, Index n) { return active == nullptr || active[n] != 0; }

// dst[n, :] = src[n, :] for the active rows; the others keep their value. dst, src: [N, W].
template <typename T>
inline void copy_active_rows(const std::uint8_t* active, Index batch, Index width, const T* src, T* dst) {
  if (active == nullptr) {
    std::copy(src, src + batch * width, dst);
    return;
  }
  for (Index n = 0; n < batch; ++n)
    if (active[n]) std::copy(src + n * width, src + (n + 1) * width, dst + n * width);
}

// Writes an active row of the output, or zeros for an inactive one.
template <typename T>
inline void write_output_row(bool active, const T* value, Index width, T* y_row) {
  if (active)
    std::copy(value, value + width, y_row);
  else
    std::fill(y_row, y_row + width, T(0));
}

// dW_hh = dgᵀ · h_prev over all T*N rows: the recurrent weight gradient of cells whose every gate
// multiplies h itself. dg: [T*N, G*H], h_prev: [T*N, H_out], dw_hh: [G*H, H_out] out.
template <typename T>
inline void plain_recurrent_weight_grad(const Matrix<T>& dg, const ConstMatrixMap<T>& h_prev, T* dw_hh) {
  MatrixMap<T>(dw_hh, dg.cols(), h_prev.cols()).noalias() = dg.transpose() * h_prev;
}

}  // namespace fusedrnn
