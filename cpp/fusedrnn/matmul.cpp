// The one place Eigen's products are instantiated (see matmul.hpp).
#include "fusedrnn/matmul.hpp"

namespace fusedrnn {

template <typename T>
void matmul(MatrixView<T> c, MatrixView<const T> a, MatrixView<const T> b, Accumulate accumulate) {
  using In = Eigen::Map<const Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
  const In A(a.data, a.rows, a.cols, Eigen::OuterStride<>(a.stride));
  const In B(b.data, b.rows, b.cols, Eigen::OuterStride<>(b.stride));
  StridedMatrixMap<T> C(c.data, c.rows, c.cols, Eigen::OuterStride<>(c.stride));
  const auto run = [&](const auto& lhs, const auto& rhs) {
    if (accumulate == Accumulate::kYes)
      C.noalias() += lhs * rhs;
    else
      C.noalias() = lhs * rhs;
  };
  if (!a.transposed && !b.transposed)
    run(A, B);
  else if (!a.transposed)
    run(A, B.transpose());
  else if (!b.transposed)
    run(A.transpose(), B);
  else
    run(A.transpose(), B.transpose());
}

template void matmul<float>(MatrixView<float>, MatrixView<const float>, MatrixView<const float>, Accumulate);
template void matmul<double>(MatrixView<double>, MatrixView<const double>, MatrixView<const double>, Accumulate);

}  // namespace fusedrnn
