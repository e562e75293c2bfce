#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/infinite_attention.h"
#include "tests/model/attention_references.h"

namespace memtrain::model::testing {
namespace {

const InfiniteOptions& OptionsOf(AttentionImpl& module) {
  return dynamic_cast<InfiniteAttentionImpl&>(module).options().infinite;
}

// ψ(t) [N, P] for positions t [P], from the RBF definition: centres
// linspace(0, 1, N/|Σ|) repeated for each width σ_j, N(t; μ_j, σ_j²).
at::Tensor Psi(const at::Tensor& t, const InfiniteOptions& o) {
  const int64_t per_width = o.basis / static_cast<int64_t>(o.widths.size());
  at::Tensor psi = at::empty({o.basis, t.size(0)}, at::kDouble);
  for (int64_t j = 0; j < o.basis; ++j) {
    const double centre = per_width == 1 ? 0.0 : double(j % per_width) / double(per_width - 1);
    const double width = o.widths[static_cast<size_t>(j / per_width)];
    psi[j] =
        at::exp(-(t - centre).pow(2) / (2 * width * width)) / std::sqrt(2 * M_PI * width * width);
  }
  return psi;
}

// The reference's value_function: B = Gᵀ x with G = Fᵀ(FFᵀ + λI)⁻¹, F = ψ at
// `positions`, by the explicit inverse as compute_G does.
at::Tensor RidgeFit(const at::Tensor& positions, const at::Tensor& x, const InfiniteOptions& o) {
  const at::Tensor f = Psi(positions, o);
  const at::Tensor g = at::matmul(
      f.t(), at::inverse(at::matmul(f, f.t()) + o.ridge * at::eye(o.basis, at::kDouble)));
  return at::matmul(g.t(), x);
}

}  // namespace

InfiniteReads InfiniteReadDensities(AttentionImpl& module, const AttentionCall& call) {
  const auto* state = dynamic_cast<const InfiniteDecodeState*>(call.state);
  const InfiniteOptions& o = OptionsOf(module);
  const int64_t batch = call.query.size(0), n = call.query.size(1), d = kWidth / kHeads;
  const at::Tensor q =
      at::matmul(call.query, Param(module, "query.weight").t()) + Param(module, "query.bias");
  const at::Tensor w_mu = Param(module, "mu.weight").view(-1),
                   w_sigma = Param(module, "sigma.weight").view(-1);
  InfiniteReads reads{at::zeros({batch, kHeads, n}, at::kDouble),
                      at::zeros({batch, kHeads, n}, at::kDouble)};
  for (int64_t b = 0; b < batch; ++b) {
    const at::Tensor keys = at::matmul(state->coefficients[b], Param(module, "ltm_key.weight").t());
    for (int64_t h = 0; h < kHeads; ++h) {
      for (int64_t i = 0; i < n; ++i) {
        const at::Tensor qi = q[b][i].slice(0, h * d, (h + 1) * d);
        double mu_logit = 0, sigma_logit = 0;
        for (int64_t j = 0; j < o.basis; ++j) {
          const double u = at::dot(qi, keys[j].slice(0, h * d, (h + 1) * d)).item<double>() /
                           std::sqrt(double(d));
          mu_logit += w_mu[j].item<double>() * u;
          sigma_logit += w_sigma[j].item<double>() * u;
        }
        reads.mu[b][h][i] = 1 / (1 + std::exp(-mu_logit));
        reads.variance[b][h][i] = std::max(std::log1p(std::exp(sigma_logit)), o.min_variance);
      }
    }
  }
  return reads;
}

// ATTENTION.md §6(a): short-term memory = plain softmax attention over the
// call (the softmax reference: same parameter names); long-term memory read
// written out per row, head, query and basis function from the state's
// coefficients B: K = B W_K, V = B W_V, u = K q/√d, μ = sigmoid(w_μ·u),
// σ² = max(softplus(w_σ·u), min), r_j = N(μ; μ_j, σ² + σ_j²), z = Vᵀ r.
// With an InfiniteDecodeState the call must start a segment.
at::Tensor InfiniteReference(AttentionImpl& module, const AttentionCall& call) {
  AttentionCall local = call;
  local.state = nullptr;
  at::Tensor out = SoftmaxReference(module, local);
  const auto* state = dynamic_cast<const InfiniteDecodeState*>(call.state);
  if (state == nullptr || !state->coefficients.defined()) return out;
  const InfiniteOptions& o = OptionsOf(module);
  const int64_t batch = call.query.size(0), n = call.query.size(1), d = kWidth / kHeads;
  const int64_t basis = o.basis, per_width = basis / static_cast<int64_t>(o.widths.size());
  const InfiniteReads reads = InfiniteReadDensities(module, call);
  at::Tensor z = at::zeros({batch, n, kWidth}, at::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    if (!state->has_memory[b].item<bool>()) continue;
    const at::Tensor values =
        at::matmul(state->coefficients[b], Param(module, "ltm_value.weight").t());
    for (int64_t h = 0; h < kHeads; ++h) {
      for (int64_t i = 0; i < n; ++i) {
        const double mu = reads.mu[b][h][i].item<double>();
        const double variance = reads.variance[b][h][i].item<double>();
        for (int64_t j = 0; j < basis; ++j) {
          const double centre =
              per_width == 1 ? 0.0 : double(j % per_width) / double(per_width - 1);
          const double width = o.widths[static_cast<size_t>(j / per_width)];
          const double s2 = variance + width * width;
          const double r =
              std::exp(-(mu - centre) * (mu - centre) / (2 * s2)) / std::sqrt(2 * M_PI * s2);
          z[b][i].slice(0, h * d, (h + 1) * d) += r * values[j].slice(0, h * d, (h + 1) * d);
        }
      }
    }
  }
  return out + at::matmul(z, Param(module, "ltm_output.weight").t());
}

// The code's cnn mask, k ⊙ sigmoid(Conv1d(k)) with kernel 3 and padding 1,
// written out per position and channel.
at::Tensor InfiniteGateReference(AttentionImpl& module, const at::Tensor& x) {
  const at::Tensor weight = Param(module, "gate.weight").detach().contiguous();  // [D, D, 3]
  const at::Tensor bias = Param(module, "gate.bias").detach().contiguous();      // [D]
  const at::Tensor in = x.contiguous();
  const auto w = weight.accessor<double, 3>();
  const auto c = bias.accessor<double, 1>();
  const auto v = in.accessor<double, 2>();
  const int64_t length = x.size(0), width = x.size(1);
  at::Tensor out = at::empty({length, width}, at::kDouble);
  for (int64_t t = 0; t < length; ++t) {
    for (int64_t o = 0; o < width; ++o) {
      double logit = c[o];
      for (int64_t k = 0; k < 3; ++k) {
        const int64_t source = t + k - 1;
        if (source < 0 || source >= length) continue;  // zero padding
        for (int64_t i = 0; i < width; ++i) logit += w[o][i][k] * v[source][i];
      }
      out[t][o] = v[t][o] / (1 + std::exp(-logit));
    }
  }
  return out;
}

// A port of the reference's LongTermAttention.update_inf (finetune_gpt2/…/
// long_term_attention.py) for one row, with memtrain's documented
// departures: the M bins are the quantiles (j + 1/2)/M of p(bin) instead of
// a random draw; the end bins take the Gaussians' tails; the old samples sit
// at τ(j − 1/2)/M and the new vectors at τ + (1 − τ)(i − 1/2)/L (the code:
// τj/M, τ + (1 − τ)i/L) with no edge padding in this fit.
at::Tensor InfiniteUpdateReference(const InfiniteOptions& o, const at::Tensor& old,
                                   const at::Tensor& mu, const at::Tensor& variance,
                                   const at::Tensor& x) {
  const int64_t length = x.size(0), width = x.size(1);
  if (!old.defined()) {
    // value_function with the padded G of length L: positions on
    // [-1/2, 3/2] (2L points for even L, 2L - 1 for odd), the middle L rows
    // of G kept, i.e. zero vectors at the others.
    const int64_t points = length % 2 ? 2 * length - 1 : 2 * length;
    const double shift = length % 2 ? 1.0 / length : 1.0 / (2.0 * length);
    const at::Tensor positions = at::linspace(-0.5 + shift, 1.5 - shift, points, at::kDouble);
    const int64_t pad = (points - length) / 2;
    const at::Tensor zeros = at::zeros({pad, width}, at::kDouble);
    return RidgeFit(positions, at::cat({zeros, x, zeros}), o);
  }
  const int64_t samples = o.samples;
  at::Tensor read_at;  // where the old signal is evaluated
  if (o.sticky) {
    // p(bin) ∝ Σ over the previous reads of N(μ, σ²)'s mass in the bin.
    const int64_t bins = o.sticky_bins;
    std::vector<double> p(static_cast<size_t>(bins), 0.0);
    for (int64_t r = 0; r < mu.numel(); ++r) {
      const double m = mu[r].item<double>(), s = std::sqrt(variance[r].item<double>());
      auto cdf = [&](int64_t edge) {
        if (edge == 0) return 0.0;
        if (edge == bins) return 1.0;
        return 0.5 * (1 + std::erf((double(edge) / bins - m) / (s * std::sqrt(2.0))));
      };
      for (int64_t k = 0; k < bins; ++k) p[k] += cdf(k + 1) - cdf(k);
    }
    double total = 0;
    for (double pk : p) total += pk;
    std::vector<double> ts;
    for (int64_t j = 0; j < samples; ++j) {
      const double quantile = (j + 0.5) / samples;
      double cumulative = 0;
      int64_t k = 0;
      while (k < bins - 1 && (cumulative += p[k] / total) < quantile) ++k;
      ts.push_back(double(k) / bins);  // the bin's left edge
    }
    std::sort(ts.begin(), ts.end());
    read_at = at::tensor(ts, at::kDouble);
  } else {
    read_at = (at::arange(samples, at::kDouble) + 0.5) / samples;
  }
  const at::Tensor old_signal = at::matmul(Psi(read_at, o).t(), old);  // xm_tau, [M, D]
  // G_inf's positions: the M old vectors spread evenly over [0, τ], whichever
  // points they were read at, then the L new ones over [τ, 1].
  const at::Tensor spread = (at::arange(samples, at::kDouble) + 0.5) / samples;
  const at::Tensor midpoints = (at::arange(length, at::kDouble) + 0.5) / length;
  const at::Tensor positions = at::cat({o.tau * spread, o.tau + (1 - o.tau) * midpoints});
  return RidgeFit(positions, at::cat({old_signal, x}), o);
}

}  // namespace memtrain::model::testing
