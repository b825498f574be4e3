// Products against weights packed once (kernels/packing.hpp): C = init + A · B. The micro-kernels are
// per instruction set, each in its own file under kernels/, chosen by the flags the variant is compiled
// with; a build without one (the baseline, and double everywhere) has no panels and its callers use a
// general product.
#pragma once

#ifdef FUSEDRNN_ISA_NEUTRAL
#error "panels.hpp: its inline kernels depend on the variant's instruction set; code shared by every variant must not include it"
#endif

#include <type_traits>

#include "fusedrnn/kernels/packing.hpp"
#include "fusedrnn/shapes.hpp"

// The best kernels the variant's flags allow (an AVX-512 build has AVX2 and FMA too).
#if defined(__AVX512F__)
#include "fusedrnn/kernels/panels_avx512.hpp"
#define FUSEDRNN_PANEL_KERNELS 1
namespace fusedrnn {
namespace panel_isa = avx512;
}
#elif defined(__AVX2__) && defined(__FMA__)
#include "fusedrnn/kernels/panels_avx2.hpp"
#define FUSEDRNN_PANEL_KERNELS 1
namespace fusedrnn {
namespace panel_isa = avx2;
}
#endif

namespace fusedrnn {

// Whether this build has panel kernels for T: only then are weights packed.
template <typename T>
constexpr bool has_panel_kernels() {
#ifdef FUSEDRNN_PANEL_KERNELS
  return std::is_same<T, float>::value;
#else
  return false;
#endif
}

// C[M, ncols] (row stride ldc) = init + A[M, K] (row stride lda) · B, B packed by pack_panels with K
// rows (K >= 1); init: a row [ncols] added to every row of C, or nullptr for none. Returns false when
// this build has no kernel for T (the caller then uses a general product).
// backwards: visit the panels last to first (same results). When a step's weights outgrow the cache,
// sweeping them alternately forwards and backwards starts each step on what the last one left cached.
inline bool panel_product(const float* A, Index M, Index K, Index lda, const float* panels, Index ncols,
                          const float* init, float* C, Index ldc, bool backwards = false) {
#ifdef FUSEDRNN_PANEL_KERNELS
  panel_isa::panel_product(A, M, K, lda, panels, ncols, init, C, ldc, backwards);
  return true;
#else
  (void)A, (void)M, (void)K, (void)lda, (void)panels, (void)ncols, (void)init, (void)C, (void)ldc, (void)backwards;
  return false;
#endif
}

inline bool panel_product(const double*, Index, Index, Index, const double*, Index, const double*, double*, Index,
                          bool = false) {
  return false;
}

}  // namespace fusedrnn
