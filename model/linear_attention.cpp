#include "model/linear_attention.h"

#include <algorithm>
#include <vector>

namespace memtrain::model {

at::Tensor KeyValueSummary(const at::Tensor& k, const at::Tensor& v) {
  return at::matmul(k.transpose(-2, -1), v);
}

at::Tensor CausalLinearAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& log_scale, int64_t chunk,
                                 LinearPrefix* prefix) {
  TORCH_CHECK(chunk > 0, "CausalLinearAttention: chunk must be positive, got ", chunk);
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4 &&
                  v.size(2) == q.size(2),
              "CausalLinearAttention: q, k must be [B, H, n, r] and v [B, H, n, e]; got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  const bool scaled = log_scale.defined();
  const int64_t n = q.size(2);
  at::Tensor kv = prefix != nullptr ? prefix->kv : at::Tensor();
  at::Tensor kv_scale = prefix != nullptr ? prefix->log_scale : at::Tensor();
  std::vector<at::Tensor> outputs;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t end = std::min(n, start + chunk), length = end - start;
    const at::Tensor qc = q.slice(2, start, end), kc = k.slice(2, start, end), vc = v.slice(2, start, end);
    // Intra-chunk: explicit scores under the causal mask, each key rescaled to
    // the query's running maximum. Future entries are masked before exp, so a
    // large later key cannot overflow into an earlier row.
    const at::Tensor causal = at::ones({length, length}, q.options().dtype(at::kBool)).tril();
    at::Tensor scores = at::matmul(qc, kc.transpose(-2, -1));  // [B, H, C, C]
    at::Tensor mc;
    if (scaled) {
      mc = log_scale.slice(2, start, end);
      const at::Tensor gap = mc.unsqueeze(-2) - mc.unsqueeze(-1);  // m_j - m_i
      scores = scores * at::where(causal, gap, at::full({}, -INFINITY, gap.options())).exp();
    }
    scores = at::where(causal, scores, at::zeros({}, scores.options()));
    at::Tensor out = at::matmul(scores, vc);
    // Inter-chunk: the prefix state, rescaled from its own maximum to each row's.
    if (kv.defined()) {
      at::Tensor carried = at::matmul(qc, kv);
      if (scaled) carried = carried * (kv_scale.unsqueeze(-1) - mc).exp().unsqueeze(-1);
      out = out + carried;
    }
    outputs.push_back(out);
    // Fold this chunk into the prefix, at the chunk's last (largest) scale.
    at::Tensor kc_scaled = kc;
    if (scaled) {
      const at::Tensor last = mc.select(2, length - 1);
      kc_scaled = kc * (mc - last.unsqueeze(-1)).exp().unsqueeze(-1);
      if (kv.defined()) kv = kv * (kv_scale - last).exp().unsqueeze(-1).unsqueeze(-1);
      kv_scale = last;
    }
    const at::Tensor added = KeyValueSummary(kc_scaled, vc);
    kv = kv.defined() ? kv + added : added;
  }
  if (prefix != nullptr && n > 0) {
    prefix->kv = kv;
    prefix->log_scale = kv_scale;
  }
  return n > 0 ? at::cat(outputs, 2) : at::zeros({q.size(0), q.size(1), 0, v.size(3)}, v.options());
}

}  // namespace memtrain::model
