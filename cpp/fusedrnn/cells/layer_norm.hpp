// Layer normalization over one row: LN(v) = (v - mean(v)) / sqrt(var(v) + eps), the variance without
// Bessel's correction, eps = 1e-5 (haste's and torch.nn.LayerNorm's default). The layer-normalized cells
// (layer_norm_lstm.hpp, layer_norm_gru.hpp) apply it to their products and to the LSTM's c'.
#pragma once

#include <cmath>

#include "fusedrnn/layer_types.hpp"
#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

constexpr double kLayerNormEps = 1e-5;

// The mean and 1 / sqrt(var + eps) of a row: LN(v) = (v - mean) * rstd.
template <typename T>
struct RowMoments {
  T mean = 0;
  T rstd = 0;
};

// The mean of f(0), ..., f(n-1), summed in an order fixed by n alone: eight running sums over the
// indices modulo 8, then the rest. Eigen's reductions start their vector loop where the data becomes
// aligned, so their last bit would depend on where a buffer sits; this one gives the same bits for the
// same values wherever they are (and the compiler still vectorizes the eight sums).
template <typename T, typename F>
T fixed_order_mean(Index n, F&& f) {
  constexpr int kLanes = 8;
  T lanes[kLanes] = {};
  Index i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] += f(i + j);
  T tail = 0;
  for (; i < n; ++i) tail += f(i);
  const T sum = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
  return (sum + tail) / static_cast<T>(n);
}

template <typename V>
RowMoments<typename V::Scalar> row_moments(const V& v) {
  using T = typename V::Scalar;
  RowMoments<T> m;
  const T* data = v.data();
  m.mean = fixed_order_mean<T>(v.size(), [&](Index i) { return data[i]; });
  const T mean = m.mean;  // two passes: no cancellation when |mean| >> spread
  const T var = fixed_order_mean<T>(v.size(), [&](Index i) { return (data[i] - mean) * (data[i] - mean); });
  m.rstd = T(1) / std::sqrt(var + T(kLayerNormEps));
  return m;
}

// dx = the gradient wrt v of a row whose normalized values are xhat, from dy, the gradient wrt xhat:
// rstd * (dy - mean(dy) - xhat * mean(dy * xhat)). dx may alias dy.
template <typename T, typename Dy, typename Xhat, typename Dx>
void layer_norm_backward(const Dy& dy, const Xhat& xhat, T rstd, Dx&& dx) {
  const T* g = dy.data();
  const T* x = xhat.data();
  const Index n = dy.size();
  const T mean_dy = fixed_order_mean<T>(n, [&](Index i) { return g[i]; });
  const T mean_dy_xhat = fixed_order_mean<T>(n, [&](Index i) { return g[i] * x[i]; });
  dx = rstd * (dy - mean_dy - xhat * mean_dy_xhat);
}

// The row parameters both layer-normalized cells start with, over GH = G*H gate rows: γ_x, γ_h, b_ih,
// b_hh (zeros without bias), at out[0 : 4*GH).
template <typename T>
void pack_normalized_products(const ParamArrays<const T*>& p, Index GH, T* out) {
  Vec<T>(out, GH) = ConstVec<T>(p.norm_input_gain, GH);
  Vec<T>(out + GH, GH) = ConstVec<T>(p.norm_recurrent_gain, GH);
  if (p.b_ih) {
    Vec<T>(out + 2 * GH, GH) = ConstVec<T>(p.b_ih, GH);
    Vec<T>(out + 3 * GH, GH) = ConstVec<T>(p.b_hh, GH);
  } else {
    Vec<T>(out + 2 * GH, 2 * GH).setZero();
  }
}

// Their gradients back into the parameter arrays (the biases' only with bias).
template <typename T>
void unpack_normalized_products(const T* grad, Index GH, const LayerGrads<T>& g) {
  Vec<T>(g.norm_input_gain, GH) = ConstVec<T>(grad, GH);
  Vec<T>(g.norm_recurrent_gain, GH) = ConstVec<T>(grad + GH, GH);
  if (g.b_ih) {
    Vec<T>(g.b_ih, GH) = ConstVec<T>(grad + 2 * GH, GH);
    Vec<T>(g.b_hh, GH) = ConstVec<T>(grad + 3 * GH, GH);
  }
}

}  // namespace fusedrnn
