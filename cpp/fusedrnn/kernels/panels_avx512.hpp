// The panel products' micro-kernels for AVX-512 (F, VL, BW, DQ; 16 floats per register, 32 registers).
//
// One zmm register holds one panel's row, so a register tile is R rows of A times P whole panels, R*P
// accumulators (at most 24, so that B's P rows and A's broadcast fit in the other registers). As in the AVX2 kernels, every element is summed over k in ascending order by one FMA
// chain, so an element's value never depends on M, the tile it fell in or the thread that ran it, and it
// is the AVX2 kernels' value to the bit: the same FMAs on the same operands in the same order, 16 lanes
// wide instead of 8. Batch 1 (R = 1) reads six panels side by side to keep six FMA chains in flight: it
// is bound by streaming the weights. A tile's last panel may be short of 16 columns: its loads and
// stores of C are masked, where the AVX2 kernels go through a local copy. Included by panels.hpp in
// builds for AVX-512 only.
#pragma once

#include <immintrin.h>

#include <algorithm>

#include "fusedrnn/kernels/packing.hpp"

namespace fusedrnn {
namespace avx512 {

// Rows [0, K) of the k-block at hand, K <= kDepth, as in the AVX2 kernels: the panels' block then stays
// in L1 or L2 while the register tiles walk down A. Blocks of 128 rows (four panels' block within L1)
// were no faster.
constexpr Index kDepth = 256;

// Panels side by side in the tiles of 4 rows and more.
constexpr int kTallPanels = 4;

// Keeps a panel's row in a register for the R FMAs that read it. Without this GCC folds the load into
// each FMA (R loads of the same row instead of one), and the tiles of 2 and 3 rows were bound by loads.
inline void keep_in_register(__m512& v) { __asm__("" : "+v"(v)); }

// The lanes of a panel's last `width` columns (1 <= width <= 16).
inline __mmask16 lanes(Index width) {
  return width >= kPanelWidth ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << width) - 1u);
}

// dst[R, P*16] (row stride ldd) = start + A[R, K] · panels[P], start = src[R, P*16] (row stride lds, 0
// repeats one row) or zeros when src is nullptr. The last panel's columns are `last` (a lane mask): only
// those are read from src and written to dst.
template <int R, int P>
inline void tile(const float* a, Index lda, const float* b, Index panel_stride, Index K, const float* src,
                 Index lds, float* dst, Index ldd, __mmask16 last) {
  __m512 acc[R][P];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __mmask16 mask = p == P - 1 ? last : static_cast<__mmask16>(0xFFFF);
      acc[r][p] = src ? _mm512_maskz_loadu_ps(mask, src + r * lds + kPanelWidth * p) : _mm512_setzero_ps();
    }
  for (Index k = 0; k < K; ++k) {
    __m512 bk[P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      bk[p] = _mm512_loadu_ps(b + p * panel_stride + k * kPanelWidth);
      if constexpr (R > 1) keep_in_register(bk[p]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r * lda + k]);
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[r][p] = _mm512_fmadd_ps(ar, bk[p], acc[r][p]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __mmask16 mask = p == P - 1 ? last : static_cast<__mmask16>(0xFFFF);
      _mm512_mask_storeu_ps(dst + r * ldd + kPanelWidth * p, mask, acc[r][p]);
    }
}

// C[R, width] (row stride ldc) = start + A · the panels under `width` columns, at most P of them: start
// is C when accumulate, else the row init ([width], nullptr for zeros). A group of fewer panels (the
// last of a row) runs the tile of its own panel count, never past the packed data.
template <int R, int P>
inline void tile_at(const float* a, Index lda, const float* b, Index panel_stride, Index K, const float* init,
                    bool accumulate, float* c, Index ldc, Index width) {
  if constexpr (P > 1) {
    if (width <= (P - 1) * kPanelWidth) {
      tile_at<R, P - 1>(a, lda, b, panel_stride, K, init, accumulate, c, ldc, width);
      return;
    }
  }
  const __mmask16 last = lanes(width - (P - 1) * kPanelWidth);
  tile<R, P>(a, lda, b, panel_stride, K, accumulate ? c : init, accumulate ? ldc : 0, c, ldc, last);
}

// Panels side by side per tile for a tile of R rows (R < 4): enough accumulators to cover the FMA
// latency, and B's loads shared by the rows. Batch 1 is bound by reading the weights from L2: four to
// six panels read as fast as any count, eight slightly slower (their rows, a panel apart, share L1 sets).
template <int R>
constexpr int panels_per_tile() {
  return R == 1 ? 6 : R == 2 ? 8 : 6;
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
    tile_at<R, P>(a, lda, panels + (c0 / kPanelWidth) * panel_stride, panel_stride, K, init ? init + c0 : nullptr,
                  accumulate, c + c0, ldc, width);
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
  // Four panels at a time, each group's k-blocks in turn, so that the weights are read in four
  // sequential streams and a k-block of the group stays in L1 while the tiles walk down A.
  constexpr Index span = kTallPanels * kPanelWidth;
  const Index groups = (ncols + span - 1) / span;
  for (Index q = 0; q < groups; ++q) {
    const Index c0 = (backwards ? groups - 1 - q : q) * span, width = std::min(span, ncols - c0);
    for (Index k0 = 0; k0 < K; k0 += kDepth) {
      const Index depth = std::min(kDepth, K - k0);
      const bool accumulate = k0 > 0;
      const float* a = A + k0;
      const float* init_here = init && !accumulate ? init + c0 : nullptr;
      const float* bp = panels + (c0 / kPanelWidth) * panel_stride + k0 * kPanelWidth;
      Index r = 0;
      for (Index t = 0; t < full; ++t, r += 6)
        tile_at<6, kTallPanels>(a + r * lda, lda, bp, panel_stride, depth, init_here, accumulate, C + r * ldc + c0,
                                ldc, width);
      for (Index h : last_heights) {
        const float* ar = a + r * lda;
        float* cr = C + r * ldc + c0;
        switch (h) {
          case 3: tile_at<3, kTallPanels>(ar, lda, bp, panel_stride, depth, init_here, accumulate, cr, ldc, width); break;
          case 4: tile_at<4, kTallPanels>(ar, lda, bp, panel_stride, depth, init_here, accumulate, cr, ldc, width); break;
          case 5: tile_at<5, kTallPanels>(ar, lda, bp, panel_stride, depth, init_here, accumulate, cr, ldc, width); break;
          default: break;
        }
        r += h;
      }
    }
  }
}

}  // namespace avx512
}  // namespace fusedrnn
