#include <cmath>
#include <vector>

#include "tests/model/attention_references.h"

namespace memtrain::model::testing {

// Explicit Linformer attention (ATTENTION.md §3(a)): zero the padded rows of
// K and V, project them along the sequence axis with the first s columns of
// E and F, softmax over the k slots.
at::Tensor LinformerReference(AttentionImpl& module, const AttentionCall& call) {
  auto project = [&](const std::string& name, const at::Tensor& x) {
    return ApplyLinear(module, name, x);
  };
  const at::Tensor& source = call.memory.defined() ? call.memory : call.query;
  const int64_t batch = call.query.size(0), n = call.query.size(1), s = source.size(1);
  const int64_t d = kWidth / kHeads;
  const at::Tensor e = Param(module, "project_key");
  const auto parameters = module.named_parameters();
  const at::Tensor f =
      parameters.find("project_value") != nullptr ? *parameters.find("project_value") : e;
  const at::Tensor q = project("query", call.query);
  at::Tensor k = project("key", source), v = project("value", source);
  if (call.key_padding.defined()) {
    const at::Tensor keep = call.key_padding.logical_not().unsqueeze(-1).to(at::kDouble);
    k = k * keep;
    v = v * keep;
  }
  const int64_t slots = e.size(1);
  at::Tensor out = at::zeros({batch, n, kWidth}, at::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < kHeads; ++h) {
      const at::Tensor eh = e[e.size(0) == 1 ? 0 : h], fh = f[f.size(0) == 1 ? 0 : h];
      at::Tensor projected_k = at::zeros({slots, d}, at::kDouble),
                 projected_v = at::zeros({slots, d}, at::kDouble);
      for (int64_t a = 0; a < slots; ++a) {
        for (int64_t j = 0; j < s; ++j) {
          projected_k[a] += eh[a][j] * k[b][j].slice(0, h * d, (h + 1) * d);
          projected_v[a] += fh[a][j] * v[b][j].slice(0, h * d, (h + 1) * d);
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        std::vector<double> logits(static_cast<size_t>(slots));
        double largest = -INFINITY, total = 0;
        for (int64_t a = 0; a < slots; ++a) {
          logits[a] = at::dot(q[b][i].slice(0, h * d, (h + 1) * d), projected_k[a]).item<double>() /
                      std::sqrt(static_cast<double>(d));
          largest = std::max(largest, logits[a]);
        }
        for (double& logit : logits) total += (logit = std::exp(logit - largest));
        for (int64_t a = 0; a < slots; ++a) {
          out[b][i].slice(0, h * d, (h + 1) * d) += logits[a] / total * projected_v[a];
        }
      }
    }
  }
  return project("output", out);
}

}  // namespace memtrain::model::testing
