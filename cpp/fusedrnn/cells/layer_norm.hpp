// Layer normalization over one row: LN(v) = (v - mean(v)) / sqrt(var(v) + eps), the variance without
// Bessel's correction, eps = 1e-5 (haste's and torch.nn.LayerNorm's default). The layer-normalized cells
// (layer_norm_lstm.hpp, layer_norm_gru.hpp) apply it to their products and to the LSTM's c'.
#pragma once

#include <cmath>

#include "fusedrnn/shapes.hpp"

namespace fusedrnn {

constexpr double kLayerNormEps = 1e-5;

// The mean and 1 / sqrt(var + eps) of a row: LN(v) = (v - mean) * rstd.
template <typename T>
struct RowMoments {
  T mean = 0;
  T rstd = 0;
};

template <typename V>
RowMoments<typename V::Scalar> row_moments(const V& v) {
  using T = typename V::Scalar;
  RowMoments<T> m;
  m.mean = v.mean();
  const T var = (v - m.mean).square().mean();  // two passes: no cancellation when |mean| >> spread
  m.rstd = T(1) / std::sqrt(var + T(kLayerNormEps));
  return m;
}

// dx = the gradient wrt v of a row whose normalized values are xhat, from dy, the gradient wrt xhat:
// rstd * (dy - mean(dy) - xhat * mean(dy * xhat)). dx may alias dy.
template <typename T, typename Dy, typename Xhat, typename Dx>
void layer_norm_backward(const Dy& dy, const Xhat& xhat, T rstd, Dx&& dx) {
  const T mean_dy = dy.mean(), mean_dy_xhat = (dy * xhat).mean();
  dx = rstd * (dy - mean_dy - xhat * mean_dy_xhat);
}

}  // namespace fusedrnn
