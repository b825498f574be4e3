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

// Keras 3's hard sigmoid, relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1).
template <typename Dst, typename Src>
inline void hard_sigmoid_into(Dst&& dst, const Src& src) {
  using T = typename Eigen::internal::traits<std::decay_t<Src>>::Scalar;
  dst = (src + T(3)).max(T(0)).min(T(6)) / T(6);
}

// The gates' activation: the logistic function, or the hard sigmoid when `hard`.
template <typename Dst, typename Src>
inline void gate_into(Dst&& dst, const Src& src, bool hard) {
  if (hard)
    hard_sigmoid_into(dst, src);
  else
    sigmoid_into(dst, src);
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

// dst = src bounded to [-bound, bound]: ONNX's clip of the activations' inputs. NaN stays NaN.
template <typename Dst, typename Src, typename T>
inline void clip_into(Dst&& dst, const Src& src, T bound) {
  dst = src.template max<Eigen::PropagateNaN>(-bound).template min<Eigen::PropagateNaN>(bound);
}

// d *= the clip's derivative from its input a: 1 strictly inside (-bound, bound), 0 where the clip
// bounds a (|a| >= bound).
template <typename D, typename A, typename T>
inline void mul_clip_grad(D&& d, const A& a, T bound) {
  d = (a.abs() < bound).select(d, T(0));
}

// Derivatives from the activation's output y.
template <typename Y>
inline auto sigmoid_grad(const Y& y) {
  using T = typename Y::Scalar;
  return y * (T(1) - y);
}

// d *= the gate activation's derivative, from its output y: y (1 - y), or for the hard sigmoid 1/6
// where it is not saturated (0 < y < 1) and 0 where it is.
template <typename D, typename Y>
inline void mul_gate_grad(D&& d, const Y& y, bool hard) {
  using T = typename Y::Scalar;
  if (hard)
    d *= ((y > T(0)) && (y < T(1))).template cast<T>() * T(1.0 / 6.0);
  else
    d *= sigmoid_grad(y);
}

template <typename Y>
inline auto tanh_grad(const Y& y) {
  using T = typename Y::Scalar;
  return T(1) - y.square();
}

}  // namespace fusedrnn
