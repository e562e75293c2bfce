#include <gtest/gtest.h>

#include <cmath>

#include "model/infinite_attention.h"
#include "tests/model/attention_references.h"

namespace memtrain::model::testing {

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
  const InfiniteOptions& o = dynamic_cast<InfiniteAttentionImpl&>(module).options().infinite;
  const int64_t batch = call.query.size(0), n = call.query.size(1), d = kWidth / kHeads;
  const int64_t basis = o.basis, per_width = basis / static_cast<int64_t>(o.widths.size());
  const at::Tensor q =
      at::matmul(call.query, Param(module, "query.weight").t()) + Param(module, "query.bias");
  const at::Tensor w_mu = Param(module, "mu.weight").view(-1),
                   w_sigma = Param(module, "sigma.weight").view(-1);
  at::Tensor z = at::zeros({batch, n, kWidth}, at::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    if (!state->has_memory[b].item<bool>()) continue;
    const at::Tensor keys = at::matmul(state->coefficients[b], Param(module, "ltm_key.weight").t());
    const at::Tensor values =
        at::matmul(state->coefficients[b], Param(module, "ltm_value.weight").t());
    for (int64_t h = 0; h < kHeads; ++h) {
      for (int64_t i = 0; i < n; ++i) {
        const at::Tensor qi = q[b][i].slice(0, h * d, (h + 1) * d);
        double mu_logit = 0, sigma_logit = 0;
        std::vector<double> u(static_cast<size_t>(basis));
        for (int64_t j = 0; j < basis; ++j) {
          u[j] = at::dot(qi, keys[j].slice(0, h * d, (h + 1) * d)).item<double>() /
                 std::sqrt(double(d));
          mu_logit += w_mu[j].item<double>() * u[j];
          sigma_logit += w_sigma[j].item<double>() * u[j];
        }
        const double mu = 1 / (1 + std::exp(-mu_logit));
        const double variance = std::max(std::log1p(std::exp(sigma_logit)), o.min_variance);
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

}  // namespace memtrain::model::testing
