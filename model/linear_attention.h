// File: model/linear_attention.h
//
// The one linear-attention kernel shared by Performer (features phi(q),
// phi(k), normaliser = an extra all-ones value column) and MemSizer
// (addressing p, source weights l, row scale 1/sqrt(t) applied by the
// caller): ATTENTION.md §8. Functional core; the modules own the parameters
// and the DecodeState.
//
//   LinearPrefix prefix;                                    // empty = nothing seen yet
//   at::Tensor out = CausalLinearAttention(q, k, v, log_scale, 64, &prefix);
//   at::Tensor next = CausalLinearAttention(q1, k1, v1, log_scale1, 64, &prefix);  // decoding
#ifndef MEMTRAIN_MODEL_LINEAR_ATTENTION_H_
#define MEMTRAIN_MODEL_LINEAR_ATTENTION_H_

#include <ATen/ATen.h>

namespace memtrain::model {

/// The causal prefix state after the positions seen so far:
/// kv = sum_j k_j v_j^T exp(m_j - log_scale), [B, H, r, e], and log_scale [B, H]
/// (undefined when the caller uses no scales). Undefined kv = empty prefix.
struct LinearPrefix {
  at::Tensor kv;
  at::Tensor log_scale;
};

/// Causal linear attention, chunked: out_i = sum_{j<=i} (q_i . k_j) exp(m_j - m_i) v_j,
/// plus q_i . prefix->kv exp(prefix->log_scale - m_i) for the positions before
/// this call. q [B, H, n, r], k [B, H, n, r], v [B, H, n, e]; out [B, H, n, e].
///
/// `log_scale` m [B, H, n] (optional) says that key j's true feature is
/// k_j exp(m_j): the stabilised feature maps keep every exponential <= 1 by
/// a running maximum. m must be non-decreasing along n and not below
/// prefix->log_scale; then every factor exp(m_j - m_i) with j <= i is <= 1, and
/// a later key never changes an earlier output. Undefined m = all zeros.
///
/// Within a chunk of `chunk` positions the scores are formed explicitly under
/// a causal mask; across chunks the state before each chunk carries the sum
/// (a prefix sum without scales; with scales a recurrence of one
/// multiply-add per chunk). All chunks are processed at once. Time
/// O(n (chunk r + r e)), memory O(n chunk + (n / chunk) r e) beyond the
/// inputs; ordinary autograd. `prefix` (optional) is read as the state before
/// q/k/v and, if given, updated to the state after them: the decode step is
/// this call with n = 1 (its cost is independent of how many positions came
/// before).
at::Tensor CausalLinearAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& log_scale, int64_t chunk,
                                 LinearPrefix* prefix = nullptr);

/// sum_j k_j v_j^T over all j: [B, H, s, r] x [B, H, s, e] -> [B, H, r, e]; the
/// non-causal (and cross-attention) summary, cached once per source.
at::Tensor KeyValueSummary(const at::Tensor& k, const at::Tensor& v);

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_LINEAR_ATTENTION_H_
