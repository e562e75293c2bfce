#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "memory/exact_knn_memory.h"
#include "model/knn_attention.h"
#include "tests/model/attention_references.h"

namespace memtrain::model::testing {
namespace {

double Dot(const at::Tensor& a, const at::Tensor& b) { return at::dot(a, b).item<double>(); }

// Softmax-weighted sum of `values` (rows) with the given logits.
at::Tensor Attend(const std::vector<double>& logits, const std::vector<at::Tensor>& values,
                  int64_t d) {
  at::Tensor out = at::zeros({d}, at::kDouble);
  if (logits.empty()) return out;
  const double largest = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (double logit : logits) total += std::exp(logit - largest);
  for (size_t j = 0; j < logits.size(); ++j)
    out += std::exp(logits[j] - largest) / total * values[j];
  return out;
}

}  // namespace

// ATTENTION.md §7(a), written out per stream, head and query: normalised q, k
// (meliad), logits |a_h| q·k (1/sqrt(d) more without normalisation), local
// causal softmax over the call's positions, brute-force top-k of the stored
// entries by inner product, softmax over them, gate sigmoid(b_h). With a
// KnnDecodeState the call must start a segment (empty local window).
at::Tensor KnnReference(AttentionImpl& module, const AttentionCall& call) {
  const KnnOptions& knn = dynamic_cast<KnnAttentionImpl&>(module).options().knn;
  auto project = [&](const std::string& name, const at::Tensor& x) {
    return ApplyLinear(module, name, x);
  };
  const int64_t batch = call.query.size(0), n = call.query.size(1), d = kWidth / kHeads;
  const at::Tensor q = project("query", call.query), k = project("key", call.query),
                   v = project("value", call.query);
  const at::Tensor gate_bias = Param(module, "head.gate_bias"),
                   scale = Param(module, "head.logit_scale");
  auto normalize = [&](const at::Tensor& x) {
    return knn.normalize_keys ? x / std::sqrt(Dot(x, x) + 1e-6) : x;
  };
  const auto* state = dynamic_cast<const KnnDecodeState*>(call.state);
  at::Tensor out = at::zeros({batch, n, kWidth}, at::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    at::Tensor stored_keys, stored_values;  // [H, size, d]
    if (state != nullptr) {
      std::tie(stored_keys, stored_values) =
          dynamic_cast<const memory::ExactKnnMemory&>(state->memory())
              .Contents(state->streams()[b]);
    }
    for (int64_t h = 0; h < kHeads; ++h) {
      const double factor = std::abs(scale[h].item<double>()) *
                            (knn.normalize_keys ? 1.0 : 1.0 / std::sqrt(double(d)));
      const double g = 1.0 / (1.0 + std::exp(-gate_bias[h].item<double>()));
      auto head = [&](const at::Tensor& x, int64_t i) {
        return x[b][i].slice(0, h * d, (h + 1) * d);
      };
      for (int64_t i = 0; i < n; ++i) {
        const at::Tensor qi = normalize(head(q, i));
        std::vector<double> logits;
        std::vector<at::Tensor> values;
        for (int64_t j = 0; j < n; ++j) {
          const bool padded = call.key_padding.defined() && call.key_padding[b][j].item<bool>();
          if (padded || (call.causal && j > i)) continue;
          logits.push_back(factor * Dot(qi, normalize(head(k, j))));
          values.push_back(head(v, j));
        }
        const at::Tensor local = Attend(logits, values, d);
        at::Tensor mixed = local;
        if (stored_keys.defined()) {
          std::vector<std::pair<double, int64_t>> ranked;
          for (int64_t j = 0; j < stored_keys.size(1); ++j) {
            ranked.emplace_back(Dot(qi, stored_keys[h][j]), j);
          }
          std::sort(ranked.rbegin(), ranked.rend());
          ranked.resize(std::min<size_t>(ranked.size(), static_cast<size_t>(knn.top_k)));
          std::vector<double> memory_logits;
          std::vector<at::Tensor> memory_values;
          for (const auto& [score, j] : ranked) {
            memory_logits.push_back(factor * score);
            memory_values.push_back(stored_values[h][j]);
          }
          mixed = g * Attend(memory_logits, memory_values, d) + (1 - g) * local;
        }
        out[b][i].slice(0, h * d, (h + 1) * d) += mixed;
      }
    }
  }
  return project("output", out);
}

}  // namespace memtrain::model::testing
