// The panel products' micro-kernels for AVX2 with FMA (8 floats per register, 16 registers).
//
// The register tiles: R rows of A times P panels, R*P*2 accumulators of 8 floats (at most 12, so A's
// broadcasts and B's loads fit in the other registers), every element summed over k in ascending order
// by one FMA chain, so an element's value never depends on M, the tile it fell in or the thread that ran
// it. Batch 1 (R = 1) reads four panels side by side to keep eight FMA chains in flight: it is bound by
// streaming the weights. Included by panels.hpp in builds for AVX2 and FMA only.
#pragma once

#include <immintrin.h>

#include <algorithm>

#include "fusedrnn/kernels/packing.hpp"

namespace fusedrnn {
namespace avx2 {

// Rows [0, K) of the k-block at hand, K <= kDepth: a panel's block then stays in L1 while the
// register tile walks down A.
constexpr Index kDepth = 256;

// dst[R, P*16] (row stride ldd) = start + A[R, K] · panels[P], start = src[R, P*16] (row stride lds,
// 0 repeats one row) or zeros when src is nullptr. Full tiles only: edges go through a local copy.
template <int R, int P>
inline void tile(const float* a, Index lda, const float* b, Index panel_stride, Index K, const float* src,
                 Index lds, float* dst, Index ldd) {
  __m256 acc[R][2 * P];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < 2 * P; ++v) acc[r][v] = src ? _mm256_loadu_ps(src + r * lds + 8 * v) : _mm256_setzero_ps();
  for (Index k = 0; k < K; ++k) {
    __m256 bk[2 * P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      bk[2 * p] = _mm256_loadu_ps(b + p * panel_stride + k * kPanelWidth);
      bk[2 * p + 1] = _mm256_loadu_ps(b + p * panel_stride + k * kPanelWidth + 8);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r * lda + k);
#pragma GCC unroll 8
      for (int v = 0; v < 2 * P; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bk[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < 2 * P; ++v) _mm256_storeu_ps(dst + r * ldd + 8 * v, acc[r][v]);
}

// C[R, width] (row stride ldc) = start + A · panels[P(width)]: start is C when accumulate, else the row
// init ([width], nullptr for zeros). A tile short of P*16 columns runs on a local copy.
template <int R, int P>
inline void tile_at(const float* a, Index lda, const float* b, Index panel_stride, Index K, const float* init,
                    bool accumulate, float* c, Index ldc, Index width) {
  constexpr Index span = P * kPanelWidth;
  if (width == span) {
    tile<R, P>(a, lda, b, panel_stride, K, accumulate ? c : init, accumulate ? ldc : 0, c, ldc);
    return;
  }
  alignas(32) float edge[R][span] = {};
  for (int r = 0; r < R; ++r) {
    const float* from = accumulate ? c + r * ldc : init;
    if (from) std::copy_n(from, width, edge[r]);
  }
  tile<R, P>(a, lda, b, panel_stride, K, edge[0], span, edge[0], span);
  for (int r = 0; r < R; ++r) std::copy_n(edge[r], width, c + r * ldc);
}

// Panels side by side per tile for a tile of R rows: enough accumulators to cover the FMA latency.
template <int R>
constexpr int panels_per_tile() {
  return R == 1 ? 4 : R == 2 ? 3 : R == 3 ? 2 : 1;
}

// Rows [0, R) of A against every panel, P(R) panels at a time, for one k-block; the groups of panels
// last to first when backwards.
template <int R>
inline void row_block(const float* a, Index lda, const float* panels, Index panel_stride, Index K, Index ncols,
                      const float* init, bool accumulate, float* c, Index ldc, bool backwards) {
  constexpr int P = panels_per_tile<R>();
  constexpr Index span = P * kPanelWidth;
  const Index groups = (ncols + span - 1) / span;
  for (Index g = 0; g < groups; ++g) {
    const Index c0 = (backwards ? groups - 1 - g : g) * span;
    const Index width = std::min(span, ncols - c0);
    const float* b = panels + (c0 / kPanelWidth) * panel_stride;
    const float* init_here = init ? init + c0 : nullptr;
    // The last group may hold fewer panels: run it with as many as it has, never past the packed data.
    switch (panel_count(width)) {
      case 1: tile_at<R, 1>(a, lda, b, panel_stride, K, init_here, accumulate, c + c0, ldc, width); break;
      case 2: if constexpr (P >= 2) tile_at<R, 2>(a, lda, b, panel_stride, K, init_here, accumulate, c + c0, ldc, width); break;
      case 3: if constexpr (P >= 3) tile_at<R, 3>(a, lda, b, panel_stride, K, init_here, accumulate, c + c0, ldc, width); break;
      default: if constexpr (P >= 4) tile_at<R, 4>(a, lda, b, panel_stride, K, init_here, accumulate, c + c0, ldc, width); break;
    }
  }
}

inline void rows_tail(Index R, const float* a, Index lda, const float* panels, Index panel_stride, Index K,
                      Index ncols, const float* init, bool accumulate, float* c, Index ldc, bool backwards) {
  switch (R) {
    case 1: row_block<1>(a, lda, panels, panel_stride, K, ncols, init, accumulate, c, ldc, backwards); break;
    case 2: row_block<2>(a, lda, panels, panel_stride, K, ncols, init, accumulate, c, ldc, backwards); break;
    case 3: row_block<3>(a, lda, panels, panel_stride, K, ncols, init, accumulate, c, ldc, backwards); break;
    default: break;
  }
}

// C[M, ncols] = init + A · B, B packed (see panel_product in panels.hpp).
inline void panel_product(const float* A, Index M, Index K, Index lda, const float* panels, Index ncols,
                          const float* init, float* C, Index ldc, bool backwards) {
  const Index panel_stride = K * kPanelWidth;
  if (M < 4) {  // too few rows for a tall tile: several panels side by side instead
    for (Index k0 = 0; k0 < K; k0 += kDepth) {
      const bool accumulate = k0 > 0;
      rows_tail(M, A + k0, lda, panels + k0 * kPanelWidth, panel_stride, std::min(kDepth, K - k0), ncols,
                accumulate ? nullptr : init, accumulate, C, ldc, backwards);
    }
    return;
  }
  // Tiles of 4 to 6 rows cover M, so that one pass over the panels serves every row: at small M the
  // panels come from L2 or L3, and a second pass for the leftover rows would read them all again.
  const Index sixes = M / 6, rest = M % 6;
  Index last_heights[2] = {rest, 0};
  Index full = sixes;
  if (rest > 0 && rest < 4) {  // 6 + rest rows as two tiles of 3 to 5
    --full;
    last_heights[0] = (6 + rest + 1) / 2;
    last_heights[1] = (6 + rest) / 2;
  }
  // Panel by panel, each panel's k-blocks in turn, so that the weights are read in one sequential
  // stream and a k-block of the panel stays in L1 while the tiles walk down A.
  const Index panels_here = panel_count(ncols);
  for (Index q = 0; q < panels_here; ++q) {
    const Index p = backwards ? panels_here - 1 - q : q;
    const Index c0 = p * kPanelWidth, width = std::min(kPanelWidth, ncols - c0);
    for (Index k0 = 0; k0 < K; k0 += kDepth) {
      const Index depth = std::min(kDepth, K - k0);
      const bool accumulate = k0 > 0;
      const float* a = A + k0;
      const float* init_here = init && !accumulate ? init + c0 : nullptr;
      const float* bp = panels + p * panel_stride + k0 * kPanelWidth;
      Index r = 0;
      for (Index t = 0; t < full; ++t, r += 6)
        tile_at<6, 1>(a + r * lda, lda, bp, panel_stride, depth, init_here, accumulate, C + r * ldc + c0, ldc, width);
      for (Index h : last_heights) {
        const float* ar = a + r * lda;
        float* cr = C + r * ldc + c0;
        switch (h) {
          case 3: tile_at<3, 1>(ar, lda, bp, panel_stride, depth, init_here, accumulate, cr, ldc, width); break;
          case 4: tile_at<4, 1>(ar, lda, bp, panel_stride, depth, init_here, accumulate, cr, ldc, width); break;
          case 5: tile_at<5, 1>(ar, lda, bp, panel_stride, depth, init_here, accumulate, cr, ldc, width); break;
          default: break;
        }
        r += h;
      }
    }
  }
}

}  // namespace avx2
}  // namespace fusedrnn
