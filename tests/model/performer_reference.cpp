#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/performer_attention.h"
#include "tests/model/attention_references.h"

namespace memtrain::model::testing {

// FAVOR+ written out (ATTENTION.md §4(a)): with the module's current
// projection, explicit features phi(q_i), phi(k_j) and, per query, the
// normalised sum over its visible keys, O(n s) with explicit masks. Each query
// row rescales its keys' exponentials by the largest exponent among the keys
// it sees (a factor common to the row, so it cancels exactly), only so that
// fp64 does not underflow. The query stabilizer (a per-row max and the
// additive epsilon) is part of the estimator, so it is mirrored.
at::Tensor PerformerReference(AttentionImpl& module, const AttentionCall& call) {
  auto* performer = dynamic_cast<PerformerAttentionImpl*>(&module);
  if (performer == nullptr) {
    ADD_FAILURE() << "not a performer module";
    return {};
  }
  const PerformerOptions& options = performer->options().performer;
  auto project = [&](const std::string& name, const at::Tensor& x) {
    return ApplyLinear(module, name, x);
  };
  const at::Tensor& source = call.memory.defined() ? call.memory : call.query;
  const int64_t batch = call.query.size(0), n = call.query.size(1), s = source.size(1);
  const int64_t d = kWidth / kHeads;
  const at::Tensor w = performer->projection().to(at::kDouble);
  const int64_t r = w.size(0);
  const bool relu = options.kernel == PerformerKernel::kRelu;
  const double normalizer = std::pow(static_cast<double>(d), -0.25);
  // w.x (ReLU) or w.x - |x|^2/2 (softmax) for each feature.
  auto exponents = [&](const at::Tensor& head_vector) {
    const at::Tensor x = head_vector * normalizer;
    std::vector<double> out(static_cast<size_t>(r));
    for (int64_t f = 0; f < r; ++f) {
      const double dot = at::dot(w[f], x).item<double>();
      out[f] = relu ? dot : dot - at::dot(x, x).item<double>() / 2;
    }
    return out;
  };
  auto query_feature = [&](const std::vector<double>& e) {
    const double largest = *std::max_element(e.begin(), e.end());
    std::vector<double> out(e.size());
    for (size_t f = 0; f < e.size(); ++f) {
      out[f] =
          relu ? std::max(e[f], 0.0) + options.relu_epsilon
               : std::exp(e[f] - largest) / std::sqrt(static_cast<double>(r)) + options.stabilizer;
    }
    return out;
  };
  // phi(k) exp(-shift).
  auto key_feature = [&](const std::vector<double>& e, double shift) {
    std::vector<double> out(e.size());
    for (size_t f = 0; f < e.size(); ++f) {
      out[f] = relu ? std::max(e[f], 0.0) + options.relu_epsilon
                    : std::exp(e[f] - shift) / std::sqrt(static_cast<double>(r));
    }
    return out;
  };
  const at::Tensor q = project("query", call.query), k = project("key", source),
                   v = project("value", source);
  at::Tensor out = at::zeros({batch, n, kWidth}, at::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < kHeads; ++h) {
      std::vector<std::vector<double>> key_exponents;
      for (int64_t j = 0; j < s; ++j)
        key_exponents.push_back(exponents(k[b][j].slice(0, h * d, (h + 1) * d)));
      for (int64_t i = 0; i < n; ++i) {
        const std::vector<double> phi_q =
            query_feature(exponents(q[b][i].slice(0, h * d, (h + 1) * d)));
        auto visible = [&](int64_t j) {
          const bool padded = call.key_padding.defined() && call.key_padding[b][j].item<bool>();
          return !padded && !(call.causal && j > i + (s - n));
        };
        double shift = -INFINITY;
        for (int64_t j = 0; j < s; ++j) {
          if (visible(j) && !relu) {
            shift = std::max(shift,
                             *std::max_element(key_exponents[j].begin(), key_exponents[j].end()));
          }
        }
        at::Tensor numerator = at::zeros({d}, at::kDouble);
        double denominator = 0;
        for (int64_t j = 0; j < s; ++j) {
          if (!visible(j)) continue;
          const std::vector<double> phi_k = key_feature(key_exponents[j], relu ? 0.0 : shift);
          double weight = 0;
          for (int64_t f = 0; f < r; ++f) weight += phi_q[f] * phi_k[f];
          numerator += weight * v[b][j].slice(0, h * d, (h + 1) * d);
          denominator += weight;
        }
        if (denominator > 0) out[b][i].slice(0, h * d, (h + 1) * d) = numerator / denominator;
      }
    }
  }
  return project("output", out);
}

}  // namespace memtrain::model::testing
