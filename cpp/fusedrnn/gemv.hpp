// Batch 1: the step's recurrent product is a vector times a matrix, bound by streaming the weights.
// The weights of each hidden-unit slice are packed once into column panels of kPanelWidth (the
// panel [K, kPanelWidth] contiguous, the last one zero-padded), so one pass reads them front to
// back while kPanelWidth/8 accumulators stay in registers.
#pragma once

#include <algorithm>
#include <vector>

#include "fusedrnn/shapes.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FUSEDRNN_PANEL_GEMV 1
#endif

namespace fusedrnn {

constexpr Index kPanelWidth = 64;

// Packs columns [col0, col0 + width) of w ([K, *] row-major, row stride `stride`) into panels.
template <typename T>
void pack_panels(const T* w, Index K, Index stride, Index col0, Index width, std::vector<T>& out) {
  const Index panels = (width + kPanelWidth - 1) / kPanelWidth;
  const std::size_t base = out.size();
  out.resize(base + static_cast<std::size_t>(panels * K * kPanelWidth), T(0));
  for (Index p = 0; p < panels; ++p) {
    const Index c0 = p * kPanelWidth, cw = std::min(kPanelWidth, width - c0);
    T* dst = out.data() + base + p * K * kPanelWidth;
    for (Index k = 0; k < K; ++k) std::copy_n(w + k * stride + col0 + c0, cw, dst + k * kPanelWidth);
  }
}

// y[0, M) = x[0, K) · W, W packed by pack_panels. Returns false when this build has no panel kernel
// for T (the caller then uses the general product).
inline bool panel_gemv(const float* x, Index K, const float* panels, Index M, float* y) {
#ifdef FUSEDRNN_PANEL_GEMV
  for (Index c0 = 0; c0 < M; c0 += kPanelWidth) {
    const float* w = panels + (c0 / kPanelWidth) * K * kPanelWidth;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (Index k = 0; k < K; ++k, w += kPanelWidth) {
      const __m256 xk = _mm256_broadcast_ss(x + k);
      a0 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w), a0);
      a1 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w + 8), a1);
      a2 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w + 16), a2);
      a3 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w + 24), a3);
      a4 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w + 32), a4);
      a5 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w + 40), a5);
      a6 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w + 48), a6);
      a7 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w + 56), a7);
    }
    alignas(32) float out[kPanelWidth];
    _mm256_store_ps(out, a0);
    _mm256_store_ps(out + 8, a1);
    _mm256_store_ps(out + 16, a2);
    _mm256_store_ps(out + 24, a3);
    _mm256_store_ps(out + 32, a4);
    _mm256_store_ps(out + 40, a5);
    _mm256_store_ps(out + 48, a6);
    _mm256_store_ps(out + 56, a7);
    std::copy_n(out, std::min(kPanelWidth, M - c0), y + c0);
  }
  return true;
#else
  (void)x, (void)K, (void)panels, (void)M, (void)y;
  return false;
#endif
}

inline bool panel_gemv(const double*, Index, const double*, Index, double*) { return false; }

}  // namespace fusedrnn
