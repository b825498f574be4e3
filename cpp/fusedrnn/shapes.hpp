// The shape contract of fusedrnn, stated once.
//
// Letters used in every shape comment:
//   T  time steps            N  batch (sequences)       I  input features of a layer
//   H  hidden units          P  projection size (LSTM)  H_out = P if projecting, else H
//   G  gates: RNN 1, GRU 3, LSTM 4                      D  directions (1 or 2)
//   L  layers
//
// All arrays are row-major (NumPy order): the rightmost dimension changes fastest. A sequence
// [T, N, X] is therefore also a matrix [T*N, X], which is how the big products see it.
// Gate order and weight shapes are PyTorch's: LSTM i,f,g,o; GRU r,z,n;
//   weight_ih [G*H, I], weight_hh [G*H, H_out], bias_ih / bias_hh [G*H], weight_hr [P, H].
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>

namespace fusedrnn {

using Index = std::ptrdiff_t;

template <typename T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <typename T>
using MatrixMap = Eigen::Map<Matrix<T>>;

template <typename T>
using ConstMatrixMap = Eigen::Map<const Matrix<T>>;

// Rows of a wider matrix, e.g. one direction's columns of y [T*N, D*H_out].
template <typename T>
using StridedMatrixMap = Eigen::Map<Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <typename T>
using ConstStridedMatrixMap = Eigen::Map<const Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// A contiguous run of values (one gate of one row) seen as an array for coefficient-wise math.
template <typename T>
using Vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

template <typename T>
using ConstVec = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

template <typename T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;

}  // namespace fusedrnn
