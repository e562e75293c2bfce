#include <cmath>
#include <vector>

#include "tests/model/attention_references.h"

namespace memtrain::model::testing {

// MemSizer written out (ATTENTION.md §5(a)): per target token the head-
// averaged addressing p_i over the memory keys Phi; per source token
// l_j = LN_k(W_l x_j), r_j = LN_v(W_r x_j); y_i = p_i^T (sum_j l_j r_j^T) / sqrt(#j)
// over the visible (non-pad, and with causal, not future) source tokens.
at::Tensor MemSizerReference(AttentionImpl& module, const AttentionCall& call) {
  auto linear = [&](const std::string& name, const at::Tensor& x) {
    return ApplyLinear(module, name, x);
  };
  auto layer_norm = [&](const std::string& name, const at::Tensor& x) {
    const at::Tensor centred = x - x.mean(-1, /*keepdim=*/true);
    const at::Tensor variance = centred.square().mean(-1, /*keepdim=*/true);
    return centred / (variance + 1e-5).sqrt() * Param(module, name + ".weight") +
           Param(module, name + ".bias");
  };
  const at::Tensor& source = call.memory.defined() ? call.memory : call.query;
  const int64_t batch = call.query.size(0), n = call.query.size(1), s = source.size(1);
  const at::Tensor logits = linear("keys", call.query);  // [B, n, H k]
  const int64_t slots = logits.size(2) / kHeads;
  const at::Tensor left = layer_norm("left_norm", linear("left", source));     // [B, s, k]
  const at::Tensor right = layer_norm("right_norm", linear("right", source));  // [B, s, D]
  at::Tensor out = at::zeros({batch, n, kWidth}, at::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < n; ++i) {
      std::vector<double> address(static_cast<size_t>(slots), 0.0);
      for (int64_t h = 0; h < kHeads; ++h) {
        double total = 0;
        std::vector<double> e(static_cast<size_t>(slots));
        for (int64_t a = 0; a < slots; ++a)
          total += (e[a] = std::exp(logits[b][i][h * slots + a].item<double>()));
        for (int64_t a = 0; a < slots; ++a) address[a] += e[a] / total / kHeads;
      }
      at::Tensor read = at::zeros({kWidth}, at::kDouble);
      int64_t count = 0;
      for (int64_t j = 0; j < s; ++j) {
        const bool padded = call.key_padding.defined() && call.key_padding[b][j].item<bool>();
        const bool future = call.causal && j > i + (s - n);
        if (padded || future) continue;
        ++count;
        double weight = 0;
        for (int64_t a = 0; a < slots; ++a) weight += address[a] * left[b][j][a].item<double>();
        read += weight * right[b][j];
      }
      if (count > 0) out[b][i] = read / std::sqrt(static_cast<double>(count));
    }
  }
  return out;
}

}  // namespace memtrain::model::testing
