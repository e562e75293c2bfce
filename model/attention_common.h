// File: model/attention_common.h
//
// Pieces every attention variant uses: head split/merge, the key mask
// (padding and bottom-right-aligned causal), the local window of a decoding
// or segment state, input checks, and fp32 compute for low-precision inputs.
// Internal to model/, except LocalWindow, which KnnDecodeState exposes.
#ifndef MEMTRAIN_MODEL_ATTENTION_COMMON_H_
#define MEMTRAIN_MODEL_ATTENTION_COMMON_H_

#include <ATen/ATen.h>

#include <map>
#include <string>

#include "model/attention.h"

namespace memtrain::model {

/// [B, t, H*d] -> [B, H, t, d].
at::Tensor SplitHeads(const at::Tensor& x, int64_t heads);
/// [B, H, t, d] -> [B, t, H*d].
at::Tensor MergeHeads(const at::Tensor& x);

/// Softmax attention of q [B, H, n, d] (already scaled) over k, v [B, H, s, d]:
/// keys marked in `key_padding` ([B, s] bool, undefined = none) are hidden,
/// and with `causal` key j is visible to query i iff j <= i + (s - n) (the
/// queries are the last n of s positions: bottom-right alignment, as a KV
/// cache needs). A query with no visible key outputs zeros with finite
/// gradients. Causal self-attention with no padding, or (on the CPU) padding
/// only at the end of each row, runs SDPA's `is_causal` without a mask.
at::Tensor PaddedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_padding, bool causal, double dropout);

/// Throws (TORCH_CHECK, naming `layer`) unless `call` fits a layer of width
/// `model_dim`: 3-D query, matching memory and padding shapes, no causal
/// cross-attention.
void CheckCall(const AttentionCall& call, int64_t model_dim, const std::string& layer);

/// Incremental self-attention: appends a call's keys/values [B, H, n, d] and
/// its key padding ([B, n] bool; undefined = none) to a state's window
/// (undefined tensors = empty). Throws (naming `layer`) for a padding shape
/// that does not cover exactly the new positions.
void AppendToWindow(at::Tensor& keys, at::Tensor& values, at::Tensor& padding,
                    const at::Tensor& new_keys, const at::Tensor& new_values,
                    const at::Tensor& key_padding, const std::string& layer);

/// The keys/values a self-attention state keeps for its local attention:
/// the positions of the current segment so far and, with a Transformer-XL
/// cache, the whole previous segment before them. Keys are stored as
/// projected (before rotary positions), so a window's positions can be
/// counted from its start at every call, and a knn layer can write them to
/// memory without positions.
struct LocalWindow {
  at::Tensor keys, values;    ///< [B, H, t, d]; undefined when empty
  at::Tensor padding;         ///< [B, t] bool, true = hidden
  int64_t segment_begin = 0;  ///< where the current segment starts in the window

  /// Appends a call's keys/values [B, H, n, d] and key padding ([B, n] bool;
  /// undefined = none). Throws (naming `layer`) for a padding shape that
  /// does not cover exactly the new positions.
  void Append(const at::Tensor& new_keys, const at::Tensor& new_values,
              const at::Tensor& key_padding, const std::string& layer);
  int64_t length() const { return keys.defined() ? keys.size(2) : 0; }
  /// Segment boundary: with `keep_as_cache` the current segment stays,
  /// detached, as the cache the next segment attends to; otherwise the
  /// window empties.
  void EndSegment(bool keep_as_cache);
  /// Rows where `starts` ([B] bool) is true begin a new document: everything
  /// the window holds for them is hidden.
  void HideRows(const at::Tensor& starts);
  void Reorder(const at::Tensor& indices);
  /// Checkpoints: "window.keys|values|padding|segment_begin" (none when
  /// empty), read back by Load.
  void Save(std::map<std::string, at::Tensor>* state) const;
  void Load(const std::map<std::string, at::Tensor>& state);
};

/// `state[name]`, or an undefined tensor when the state has none (a
/// checkpoint written before the entry existed, or an empty window).
at::Tensor StateTensor(const std::map<std::string, at::Tensor>& state, const std::string& name);

/// `call.state` as the variant's state type (nullptr without one); throws,
/// naming `layer` and `kind`, for another variant's state.
template <typename State>
State* StateOf(const AttentionCall& call, const std::string& layer, const char* kind) {
  if (call.state == nullptr) return nullptr;
  auto* state = dynamic_cast<State*>(call.state);
  TORCH_CHECK(state != nullptr, layer, ": the DecodeState is not a ", kind, " state");
  return state;
}

/// Throws (TORCH_CHECK, naming the layer) unless the width splits evenly
/// into the heads; every kind's constructor calls it first.
void CheckHeads(const AttentionOptions& options);

/// The dtype attention math runs in: float32 for half types, else the input's.
c10::ScalarType ComputeType(c10::ScalarType input);

/// While alive, LibTorch's autocast (CUDA and CPU) is off on this thread, so
/// a matmul runs in its inputs' dtype instead of bf16. Under --bf16 the
/// projections of an attention layer run in bf16, but the math attention.h
/// promises in float32 (logits, feature maps and their exponents, prefix
/// sums, running summaries) runs inside one of these, on inputs already cast
/// to ComputeType. Restores the previous state on destruction.
class AutocastOff {
 public:
  AutocastOff();
  ~AutocastOff();
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  const bool cuda_was_enabled_;
  const bool cpu_was_enabled_;
};

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_ATTENTION_COMMON_H_
