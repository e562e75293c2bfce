// fp64 reference implementations of each attention kind's formula, written
// from ATTENTION.md independently of the code under test, for the shared
// harness in attention_test.cpp. A new kind adds one function here (in its own
// <kind>_reference.cpp) and one line to References() there.
#ifndef MEMTRAIN_TESTS_MODEL_ATTENTION_REFERENCES_H_
#define MEMTRAIN_TESTS_MODEL_ATTENTION_REFERENCES_H_

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "model/attention.h"

namespace memtrain::model::testing {

/// The harness's layer size: width 16, 4 heads of width 4.
inline constexpr int64_t kWidth = 16;
inline constexpr int64_t kHeads = 4;

/// The parameter `name` of `module` (e.g. "query.weight"); fails the test if absent.
at::Tensor Param(AttentionImpl& module, const std::string& name);

/// x W^T + b with `module`'s linear layer `name` (e.g. "query").
at::Tensor ApplyLinear(AttentionImpl& module, const std::string& name, const at::Tensor& x);

/// An AttentionCall from its fields.
/// A float64 tensor of standard normal entries.
inline at::Tensor Random(std::vector<int64_t> shape) { return at::randn(shape, at::kDouble); }

inline AttentionCall Call(const at::Tensor& query, bool causal, const at::Tensor& memory = {},
                          const at::Tensor& padding = {}, DecodeState* state = nullptr) {
  AttentionCall call;
  call.query = query;
  call.memory = memory;
  call.key_padding = padding;
  call.causal = causal;
  call.state = state;
  return call;
}

/// Output of `module`'s formula for `call`, computed naively in float64 from
/// the module's parameters.
using Reference = std::function<at::Tensor(AttentionImpl& module, const AttentionCall& call)>;

at::Tensor SoftmaxReference(AttentionImpl& module, const AttentionCall& call);
at::Tensor LinformerReference(AttentionImpl& module, const AttentionCall& call);
/// With the module's current projection (the module must be a performer).
at::Tensor PerformerReference(AttentionImpl& module, const AttentionCall& call);
at::Tensor MemSizerReference(AttentionImpl& module, const AttentionCall& call);
at::Tensor KnnReference(AttentionImpl& module, const AttentionCall& call);
at::Tensor InfiniteReference(AttentionImpl& module, const AttentionCall& call);

/// The Gaussian of each LTM read, μ and σ² [B, H, n], of an infinite module
/// for `call` (whose state holds B), from the formula in float64.
struct InfiniteReads {
  at::Tensor mu, variance;
};
InfiniteReads InfiniteReadDensities(AttentionImpl& module, const AttentionCall& call);
/// An infinite module's CNN gate X ⊙ sigmoid(Conv1d_{k=3}(X)) on one row's
/// vectors x [L, D], in float64 loops.
at::Tensor InfiniteGateReference(AttentionImpl& module, const at::Tensor& x);
/// One row's new B [N, D] after a memory update, ported from the ∞-former
/// code's `update_inf` in float64: `old` [N, D] (undefined: the row's first
/// write), the previous segment's reads `mu`, `variance` [reads] (for sticky
/// sampling), the new vectors `x` [L, D].
at::Tensor InfiniteUpdateReference(const InfiniteOptions& options, const at::Tensor& old,
                                   const at::Tensor& mu, const at::Tensor& variance,
                                   const at::Tensor& x);

/// The weights of one meliad memory layer's attention (meliad's KVQLayer has
/// no q/k/v biases), in torch's [out, in] layout.
struct MeliadWeights {
  at::Tensor queries, keys, values;       ///< [D, D]
  at::Tensor output_weight, output_bias;  ///< [D, D], [D]
  at::Tensor attention_scale;             ///< [H], used as |scale|
  at::Tensor external_memory_bias;        ///< [H], gate sigmoid(bias)
};
/// meliad's attention step and its pieces, float64 ([B, n, H, d] unless said).
struct MeliadCombine {
  at::Tensor output;            ///< [B, n, D]: W_o [(1 - g) local + g external] + b_o
  at::Tensor queries;           ///< normalised queries
  at::Tensor retrieved_keys;    ///< [B, n, H, num_neighbors, d]
  at::Tensor retrieved_values;  ///< [B, n, H, num_neighbors, d]
  at::Tensor local, external;   ///< the two branches before the gate
  at::Tensor gate;              ///< [H], sigmoid(external_memory_bias)
};
/// A port of google-research/meliad's memory layer on one segment `x`
/// [B, n, D] (causal, no positions, no XL cache, eval), independent of
/// model/: retrieval of `num_neighbors` entries from meliad's on-device
/// database (MemoryOnTpu) `key_db`, `value_db` [B, H, database_size, d]
/// (dataset = row, head; an all-zero key is a never-written entry), then
/// local attention, external attention and the learned gate, as meliad
/// computes them (meliad_combine_reference.cpp names the functions).
MeliadCombine MeliadCombineReference(const MeliadWeights& weights, const at::Tensor& x,
                                     const at::Tensor& key_db, const at::Tensor& value_db,
                                     int64_t num_neighbors);

}  // namespace memtrain::model::testing

#endif  // MEMTRAIN_TESTS_MODEL_ATTENTION_REFERENCES_H_
