// General dense products, C = op(A) · op(B) or C += op(A) · op(B), through Eigen's GEMM.
//
// Every product a layer takes outside the panel kernels goes through matmul(), which matmul.cpp compiles
// once per scalar type. Written inline at each call site, every distinct Eigen expression (a block of a
// map times the transpose of a block of a matrix, ...) instantiated Eigen's whole product machinery again
// for each cell and scalar type, and that was most of the build's time; the results are the same, since
// Eigen chooses its algorithm from the operands' runtime sizes either way.
#pragma once

#include <type_traits>

#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

// A row-major matrix in memory: rows × cols, rows `stride` elements apart; `transposed` reads it as its
// transpose (a product operand only).
template <typename T>
struct MatrixView {
  T* data;
  Index rows, cols, stride;
  bool transposed = false;
};

enum class Accumulate : bool { kNo = false, kYes = true };

// c = op(a) · op(b), or c += op(a) · op(b): c [M, N], op(a) [M, K], op(b) [K, N]. c must not overlap a or b.
template <typename T>
void matmul(MatrixView<T> c, MatrixView<const T> a, MatrixView<const T> b, Accumulate accumulate = Accumulate::kNo);

extern template void matmul<float>(MatrixView<float>, MatrixView<const float>, MatrixView<const float>, Accumulate);
extern template void matmul<double>(MatrixView<double>, MatrixView<const double>, MatrixView<const double>,
                                    Accumulate);

namespace detail {
template <typename D>
constexpr void check_row_major() {
  static_assert(static_cast<bool>(D::Flags & Eigen::RowMajorBit) && static_cast<bool>(D::Flags & Eigen::DirectAccessBit),
                "matmul operands are row-major matrices in memory (maps, matrices or their blocks)");
  static_assert(D::InnerStrideAtCompileTime == 1, "matmul operands have contiguous rows");
}
}  // namespace detail

// An Eigen map, matrix or block of one as a product operand, as it is or transposed.
template <typename D>
MatrixView<const typename D::Scalar> operand(const Eigen::MatrixBase<D>& m) {
  detail::check_row_major<D>();
  return {m.derived().data(), m.rows(), m.cols(), m.derived().outerStride(), false};
}

template <typename D>
MatrixView<const typename D::Scalar> transposed(const Eigen::MatrixBase<D>& m) {
  auto view = operand(m);
  view.transposed = true;
  return view;
}

// An Eigen map, matrix or block of one as the product's destination (a temporary block is fine: it
// refers to memory that outlives it).
template <typename D>
MatrixView<typename std::decay_t<D>::Scalar> target(D&& m) {
  using Plain = std::decay_t<D>;
  static_assert(std::is_base_of<Eigen::MatrixBase<Plain>, Plain>::value, "target: an Eigen matrix expression");
  detail::check_row_major<Plain>();
  return {m.data(), m.rows(), m.cols(), m.outerStride(), false};
}

}  // namespace fusedrnn
