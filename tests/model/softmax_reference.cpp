#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/model/attention_references.h"

namespace memtrain::model::testing {

at::Tensor Param(AttentionImpl& module, const std::string& name) {
  for (const auto& item : module.named_parameters()) {
    if (item.key() == name) return item.value();
  }
  ADD_FAILURE() << "no parameter " << name;
  return {};
}

at::Tensor ApplyLinear(AttentionImpl& module, const std::string& name, const at::Tensor& x) {
  const at::Tensor projected = at::matmul(x, Param(module, name + ".weight").t());
  // Bias-free projections (the knn layer's, KnnOptions::projection_bias) have no bias.
  for (const auto& item : module.named_parameters()) {
    if (item.key() == name + ".bias") return projected + item.value();
  }
  return projected;
}

// Explicit softmax attention with per-element masks (ATTENTION.md §2(a)).
at::Tensor SoftmaxReference(AttentionImpl& module, const AttentionCall& call) {
  auto project = [&](const std::string& name, const at::Tensor& x) {
    return ApplyLinear(module, name, x);
  };
  const at::Tensor& kv = call.memory.defined() ? call.memory : call.query;
  const int64_t batch = call.query.size(0), n = call.query.size(1), s = kv.size(1);
  const int64_t d = kWidth / kHeads;
  const at::Tensor q = project("query", call.query), k = project("key", kv),
                   v = project("value", kv);
  at::Tensor out = at::zeros({batch, n, kWidth}, at::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < kHeads; ++h) {
      for (int64_t i = 0; i < n; ++i) {
        std::vector<double> weights(static_cast<size_t>(s), 0.0);
        double largest = -INFINITY;
        for (int64_t j = 0; j < s; ++j) {
          const bool padded = call.key_padding.defined() && call.key_padding[b][j].item<bool>();
          const bool future = call.causal && j > i + (s - n);
          if (padded || future) continue;
          const double logit =
              at::dot(q[b][i].slice(0, h * d, (h + 1) * d), k[b][j].slice(0, h * d, (h + 1) * d))
                  .item<double>() /
              std::sqrt(static_cast<double>(d));
          weights[static_cast<size_t>(j)] = logit;
          largest = std::max(largest, logit);
        }
        if (largest == -INFINITY) continue;  // no visible key: zero output
        double total = 0;
        for (int64_t j = 0; j < s; ++j) {
          const bool padded = call.key_padding.defined() && call.key_padding[b][j].item<bool>();
          const bool future = call.causal && j > i + (s - n);
          double& w = weights[static_cast<size_t>(j)];
          w = padded || future ? 0.0 : std::exp(w - largest);
          total += w;
        }
        for (int64_t j = 0; j < s; ++j) {
          out[b][i].slice(0, h * d, (h + 1) * d) +=
              weights[static_cast<size_t>(j)] / total * v[b][j].slice(0, h * d, (h + 1) * d);
        }
      }
    }
  }
  return project("output", out);
}

}  // namespace memtrain::model::testing
