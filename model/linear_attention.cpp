#include "model/linear_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/attention_common.h"

namespace memtrain::model {

at::Tensor KeyValueSummary(const at::Tensor& k, const at::Tensor& v) {
  const AutocastOff full_precision;  // a running sum (attention.h)
  return at::matmul(k.transpose(-2, -1), v);
}

at::Tensor CausalLinearAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& log_scale, int64_t chunk, LinearPrefix* prefix) {
  const AutocastOff full_precision;  // prefix sums (attention.h)
  TORCH_CHECK(chunk > 0, "CausalLinearAttention: chunk must be positive, got ", chunk);
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4 && v.size(2) == q.size(2),
              "CausalLinearAttention: q, k must be [B, H, n, r] and v [B, H, n, e]; got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  const bool scaled = log_scale.defined();
  const int64_t batch = q.size(0), heads = q.size(1), n = q.size(2), r = q.size(3), e = v.size(3);
  if (n == 0) return at::zeros({batch, heads, 0, e}, v.options());
  at::Tensor kv = prefix != nullptr ? prefix->kv : at::Tensor();
  at::Tensor kv_scale = prefix != nullptr ? prefix->log_scale : at::Tensor();

  // Every chunk at once: pad n to a multiple of `chunk` (zero keys add
  // nothing; the padded scales repeat the last one, so they stay
  // non-decreasing) and view the sequence as [chunks, chunk].
  const int64_t chunks = (n + chunk - 1) / chunk, padded = chunks * chunk;
  auto blocks = [&](const at::Tensor& t) {
    at::Tensor full = t;
    if (padded != n) {
      std::vector<int64_t> shape = t.sizes().vec();
      shape[2] = padded - n;
      full = at::cat({t, at::zeros(shape, t.options())}, 2);
    }
    std::vector<int64_t> shape = t.sizes().vec();
    shape[2] = chunk;
    shape.insert(shape.begin() + 2, chunks);
    return full.reshape(shape);
  };
  const at::Tensor qc = blocks(q), kc = blocks(k), vc = blocks(v);  // [B, H, N, C, r|e]
  at::Tensor mc;                                                    // [B, H, N, C]
  if (scaled) {
    at::Tensor m = log_scale;
    if (padded != n) m = at::cat({m, m.narrow(2, n - 1, 1).expand({batch, heads, padded - n})}, 2);
    mc = m.reshape({batch, heads, chunks, chunk});
  }

  // Intra-chunk: explicit scores under the causal mask, each key rescaled to
  // the query's running maximum. Future entries are masked before exp, so a
  // large later key cannot overflow into an earlier row.
  const at::Tensor causal = at::ones({chunk, chunk}, q.options().dtype(at::kBool)).tril();
  at::Tensor scores = at::matmul(qc, kc.transpose(-2, -1));  // [B, H, N, C, C]
  if (scaled) {
    const at::Tensor gap = mc.unsqueeze(-2) - mc.unsqueeze(-1);  // m_j - m_i
    scores = scores * at::where(causal, gap, at::full({}, -INFINITY, gap.options())).exp();
  }
  scores = at::where(causal, scores, at::zeros({}, scores.options()));
  at::Tensor out = at::matmul(scores, vc);  // [B, H, N, C, e]

  // Each chunk's own summary, at its last (largest) scale.
  at::Tensor last;  // [B, H, N]
  at::Tensor kc_scaled = kc;
  if (scaled) {
    last = mc.select(3, chunk - 1);
    kc_scaled = kc * (mc - last.unsqueeze(-1)).exp().unsqueeze(-1);
  }
  const at::Tensor summaries = at::matmul(kc_scaled.transpose(-2, -1), vc);  // [B, H, N, r, e]

  // The state before each chunk. Unscaled: an exclusive prefix sum. Scaled:
  // a recurrence over chunks (one multiply-add each) that rescales the
  // running state from one chunk's maximum to the next, so every factor is
  // exp(older - newer) <= 1 and nothing later than a chunk enters it.
  at::Tensor before;        // [B, H, N, r, e]
  at::Tensor before_scale;  // [B, H, N] (scaled only)
  if (!scaled) {
    at::Tensor inclusive = summaries.cumsum(2);
    if (kv.defined()) inclusive = inclusive + kv.unsqueeze(2);
    const at::Tensor first =
        kv.defined() ? kv.unsqueeze(2) : at::zeros_like(summaries.narrow(2, 0, 1));
    before = at::cat({first, inclusive.narrow(2, 0, chunks - 1)}, 2);
    kv = inclusive.select(2, chunks - 1);
  } else {
    std::vector<at::Tensor> states, scales;
    at::Tensor state = kv, scale = kv_scale;
    // unbind, not select in the loop: select's backward fills a whole-size
    // zero gradient per chunk, which made this quadratic in the chunks.
    const std::vector<at::Tensor> chunk_summaries = summaries.unbind(2),
                                  chunk_scales = last.unbind(2);
    for (int64_t c = 0; c < chunks; ++c) {
      states.push_back(state.defined() ? state
                                       : at::zeros({batch, heads, r, e}, summaries.options()));
      // No state yet: zeros, at the chunk's first scale, so that the factor
      // exp(scale - m_i) below stays <= 1 (0 * inf would be NaN).
      scales.push_back(scale.defined() ? scale : mc.select(2, c).select(2, 0));
      const at::Tensor& chunk_scale = chunk_scales[c];
      state = state.defined() ? state * (scale - chunk_scale).exp().unsqueeze(-1).unsqueeze(-1) +
                                    chunk_summaries[c]
                              : chunk_summaries[c];
      scale = chunk_scale;
    }
    before = at::stack(states, 2);
    before_scale = at::stack(scales, 2);
    kv = state;
    kv_scale = scale;
  }

  // Inter-chunk: the state before the chunk, rescaled from its maximum to each row's.
  at::Tensor carried = at::matmul(qc, before);  // [B, H, N, C, e]
  if (scaled) carried = carried * (before_scale.unsqueeze(-1) - mc).exp().unsqueeze(-1);
  out = out + carried;
  if (prefix != nullptr) {
    prefix->kv = kv;
    prefix->log_scale = kv_scale;
  }
  return out.reshape({batch, heads, padded, e}).narrow(2, 0, n);
}

}  // namespace memtrain::model
