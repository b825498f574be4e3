// Weights packed once for the panel products (any instruction set): B (K rows, ncols columns) stored
// as column panels of kPanelWidth columns, each panel [K, kPanelWidth] contiguous (the last
// zero-padded). The recurrent product of every step and the input projection read them, so the weights
// are never repacked per call or per step (a general GEMM repacks its right-hand side every time).
#pragma once

#include <algorithm>
#include <cstddef>
#include <new>
#include <vector>

#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

constexpr Index kPanelWidth = 16;

// Packed weights start on a cache line: a panel row (16 floats, 64 bytes) then never straddles two, and
// its vector loads never split. From malloc they start 16 bytes into a line for some weight sets and
// not others, and the products over the unlucky ones ran slower (bench/README.md, Kernel decisions).
constexpr std::size_t kCacheLine = 64;

template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{kCacheLine}));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t{kCacheLine}); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};

template <typename T>
using PackedVector = std::vector<T, CacheLineAllocator<T>>;

inline Index panel_count(Index ncols) { return (ncols + kPanelWidth - 1) / kPanelWidth; }

// A weight in storage type S; the one place a narrower storage rounds.
template <typename S, typename V>
S to_storage(V value) {
  return static_cast<S>(value);
}

// Appends B's columns [0, ncols) as panels to out; b(k, j) gives B's element at row k, column j. Copies
// 16x16 blocks, so that the reads stay in a few cache lines whichever way B is laid out.
template <typename T, typename Element>
void pack_panels(Index K, Index ncols, Element b, PackedVector<T>& out) {
  const std::size_t base = out.size();
  out.resize(base + static_cast<std::size_t>(panel_count(ncols) * K * kPanelWidth), T(0));
  for (Index j0 = 0; j0 < ncols; j0 += kPanelWidth) {
    T* panel = out.data() + base + (j0 / kPanelWidth) * K * kPanelWidth;
    const Index width = std::min(kPanelWidth, ncols - j0);
    for (Index k0 = 0; k0 < K; k0 += kPanelWidth) {
      const Index k1 = std::min(K, k0 + kPanelWidth);
      for (Index j = 0; j < width; ++j)
        for (Index k = k0; k < k1; ++k) panel[k * kPanelWidth + j] = to_storage<T>(b(k, j0 + j));
    }
  }
}

// One layer-direction's weights packed for the panel products, in storage type S: w_ihᵀ (ih), each
// hidden-unit slice's columns of W_hhᵀ (hh, slice k from hh_slice_begin[k]) and W_hh (hh_t).
template <typename S>
struct PanelWeights {
  PackedVector<S> ih;
  PackedVector<S> hh;
  std::vector<Index> hh_slice_begin;  // [K]
  PackedVector<S> hh_t;

  // Slice k's panels of W_hhᵀ, w_ihᵀ's from column col0, W_hh's from column col0; nullptr where none are
  // built (builds without panel kernels for S), whose products go through Eigen.
  const S* hh_slice(Index k) const {
    return hh_slice_begin.empty() ? nullptr : hh.data() + hh_slice_begin[static_cast<std::size_t>(k)];
  }
  const S* ih_from(Index col0, Index K) const { return ih.empty() ? nullptr : ih.data() + col0 * K; }
  const S* hh_t_from(Index col0, Index K) const { return hh_t.empty() ? nullptr : hh_t.data() + col0 * K; }
};

}  // namespace fusedrnn
