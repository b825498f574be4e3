// Vectorized activations (Eigen packet math) and their derivatives written from the outputs.
#pragma once

#include <Eigen/Core>
#include <type_traits>

namespace fusedrnn {

// dst = 1 / (1 + exp(-src)). Written through exp rather than Eigen's logistic, whose relative
// error is large in the far negative tail.
template <typename Dst, typename Src>
inline void sigmoid_into(Dst&& dst, const Src& src) {
  using T = typename Eigen::internal::traits<std::decay_t<Src>>::Scalar;
  dst = (T(1) + (-src).exp()).inverse();
}

template <typename Dst, typename Src>
inline void tanh_into(Dst&& dst, const Src& src) {
  dst = src.tanh();
}

template <typename Dst, typename Src>
inline void relu_into(Dst&& dst, const Src& src) {
  using T = typename Eigen::internal::traits<std::decay_t<Src>>::Scalar;
  dst = src.template max<Eigen::PropagateNaN>(T(0));  // NaN stays NaN, as in PyTorch
}

// Derivatives from the activation's output y.
template <typename Y>
inline auto sigmoid_grad(const Y& y) {
  using T = typename Y::Scalar;
  return y * (T(1) - y);
}

template <typename Y>
inline auto tanh_grad(const Y& y) {
  using T = typename Y::Scalar;
  return T(1) - y.square();
}

}  // namespace fusedrnn
