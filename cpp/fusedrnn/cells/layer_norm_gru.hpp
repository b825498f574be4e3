// Layer-normalized GRU, gate order r, z, n, in PyTorch's linear-before-reset form. LN (layer_norm.hpp)
// normalizes over all 3H values of each product, before the gates, as the layer-normalized LSTM does:
//   a_x = LN(W_ih x) ⊙ γ_x + b_ih      a_h = LN(W_hh h) ⊙ γ_h + b_hh
//   r = σ(a_x,r + a_h,r)   z = σ(a_x,z + a_h,z)   n = tanh(a_x,n + r ⊙ a_h,n)
//   h' = (1 - z) ⊙ n + z ⊙ h
// StepPhases::kWholeRow: the layer passes the raw products; the biases live in the cell's row
// parameters. Forward saves the two raw products, r, z, n and a_h,n.
#pragma once

#include "fusedrnn/cells/layer_norm.hpp"
#include "fusedrnn/cells/traits.hpp"

namespace fusedrnn {

template <typename T>
struct LayerNormGruCell {
  static constexpr const char* kName = "gru";
  static constexpr Index kGates = 3;
  static constexpr Index kSavedGates = 10;  // W_ih x, W_hh h (raw), r, z, n, a_h,n
  static constexpr bool kHasCellState = false;
  static constexpr unsigned kOptions = kOptionLayerNorm | kOptionHardGates | kOptionLinearBeforeReset;
  static constexpr Index kPeepholeVectors = 0;
  static constexpr StepPhases kPhases = StepPhases::kWholeRow;
  static constexpr bool kSeparateHiddenGrad = true;
  static constexpr bool kDirectHiddenGrad = true;  // z ⊙ h

  static Index saved_gates(const CellOptions<T>&) { return kSavedGates; }

  static void split_bias(const RowVector<T>& b_ih, const RowVector<T>&, Index, RowVector<T>& bias_x,
                         RowVector<T>& bias_h) {
    bias_x.setZero(b_ih.size());
    bias_h.setZero(b_ih.size());
  }

  // Row parameters: γ_x [3H], γ_h [3H], b_ih [3H], b_hh [3H].
  static Index row_parameters(Index H) { return 12 * H; }

  static void pack_row_parameters(const ParamArrays<const T*>& p, Index H, T* out) {
    pack_normalized_products(p, 3 * H, out);
  }

  static void unpack_row_gradients(const T* grad, Index H, const LayerGrads<T>& g) {
    unpack_normalized_products(grad, 3 * H, g);
  }

  static void forward_row(const CellRow<T>& r) {
    const Index H = r.units, GH = 3 * H;
    const bool hard = r.options->hard_gates;
    const T* p = r.row_params;
    Vec<T> x_raw(r.gates, GH), h_raw(r.gates + GH, GH);
    x_raw = ConstVec<T>(r.xg, GH);
    h_raw = ConstVec<T>(r.hg, GH);
    const RowMoments<T> mx = row_moments(x_raw), mh = row_moments(h_raw);
    Vec<T> rz(r.gates + 2 * GH, 2 * H), n(r.gates + 2 * GH + 2 * H, H), ah_n(r.gates + 3 * GH, H);
    // a_x + a_h for r and z; a_h,n apart (r scales it).
    rz = ((x_raw.head(2 * H) - mx.mean) * mx.rstd * ConstVec<T>(p, 2 * H) + ConstVec<T>(p + 2 * GH, 2 * H)) +
         ((h_raw.head(2 * H) - mh.mean) * mh.rstd * ConstVec<T>(p + GH, 2 * H) + ConstVec<T>(p + 3 * GH, 2 * H));
    gate_into(rz, rz, hard);
    ah_n = (h_raw.tail(H) - mh.mean) * mh.rstd * ConstVec<T>(p + GH + 2 * H, H) + ConstVec<T>(p + 3 * GH + 2 * H, H);
    tanh_into(n, (x_raw.tail(H) - mx.mean) * mx.rstd * ConstVec<T>(p + 2 * H, H) + ConstVec<T>(p + 2 * GH + 2 * H, H) +
                     rz.head(H) * ah_n);
    ConstVec<T> z(rz.data() + H, H), h_prev(r.h_prev, H);
    Vec<T>(r.h, H) = n + z * (h_prev - n);
  }

  static void backward_row(const CellGradRow<T>& r) {
    using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
    const Index H = r.units, GH = 3 * H;
    const bool hard = r.options->hard_gates;
    const T* p = r.row_params;
    T* dp = r.row_params_grad;
    ConstVec<T> x_raw(r.gates, GH), h_raw(r.gates + GH, GH);
    ConstVec<T> rg(r.gates + 2 * GH, H), z(r.gates + 2 * GH + H, H), n(r.gates + 2 * GH + 2 * H, H),
        ah_n(r.gates + 3 * GH, H), h_prev(r.h_prev, H), dh(r.dh, H);
    // The gradients wrt a_x (dg_in) and a_h (dg_hid) first; the normalizations then take them over.
    Vec<T> dax(r.dg_in, GH), dah(r.dg_hid, GH);
    Vec<T> dr(r.dg_in, H), dz(r.dg_in + H, H), dn(r.dg_in + 2 * H, H);
    dn = dh * (T(1) - z) * tanh_grad(n);
    dz = dh * (h_prev - n);
    mul_gate_grad(dz, z, hard);
    dr = dn * ah_n;
    mul_gate_grad(dr, rg, hard);
    dah.head(2 * H) = dax.head(2 * H);
    dah.tail(H) = dn * rg;
    Vec<T>(r.dh_direct, H) = dh * z;
    Vec<T>(dp + 2 * GH, GH) += dax;
    Vec<T>(dp + 3 * GH, GH) += dah;
    const RowMoments<T> mx = row_moments(x_raw), mh = row_moments(h_raw);
    const Array x_hat = (x_raw - mx.mean) * mx.rstd, h_hat = (h_raw - mh.mean) * mh.rstd;
    Vec<T>(dp, GH) += dax * x_hat;
    Vec<T>(dp + GH, GH) += dah * h_hat;
    layer_norm_backward(Array(dax * ConstVec<T>(p, GH)), x_hat, mx.rstd, dax);
    layer_norm_backward(Array(dah * ConstVec<T>(p + GH, GH)), h_hat, mh.rstd, dah);
  }
};

static_assert(check_cell<LayerNormGruCell<float>, float>() && check_cell<LayerNormGruCell<double>, double>());

}  // namespace fusedrnn
