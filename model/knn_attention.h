// File: model/knn_attention.h
//
// `knn`: the Memorizing Transformer layer (ATTENTION.md §7). Local causal
// softmax attention over the current segment, plus softmax attention over the
// top-k neighbours that each query retrieves from an external KnnMemory,
// mixed by a learned per-head gate g_h = sigmoid(b_h):
//   out = W_o [ g_h * V_mem + (1 - g_h) * V_local ]      (paper Eq. 1-2)
// Queries and keys are unit-normalised and the logits scaled by a learned
// per-head |a_h| (meliad), in both the local and the memory attention.
//
//   AttentionOptions options;  options.causal = true;  options.knn.memory_size = 8192;
//   auto attention = MakeAttention("knn", options);
//   auto state = (*attention)->NewState(batch);   // owns the memory
//   for (each segment) {
//     call.query = segment;  call.state = state.get();
//     y = (*attention)->forward(call);            // retrieval, then local attention
//     static_cast<KnnDecodeState&>(*state).EndSegment();   // write the segment
//   }
//
// Where the memory lives: in the KnnDecodeState, never in the module. The
// state holds what its layer was given, a memory::KnnLayerMemory
// (memory/knn_layer_memory.h): a std::shared_ptr<memory::KnnMemory> (NewState
// makes an ExactKnnMemory; a caller may give a sharded, FAISS or prebuilt
// one), one stream id per batch row, and the scope, which says whether the
// rows write the memory and whether a new document clears it. Rows of one
// stream search it together, in one call. A call without a state, or with a
// state without a memory (--use_memory=false), is exactly local attention
// (with that state: over its window, the XL cache included).
//
// When memory is written: only by KnnDecodeState::EndSegment, which flushes
// the (normalised, detached) keys and values buffered since the last segment
// boundary and empties the local window. So every query of a segment
// searches the memory as it was before the segment (query-before-write), and
// decoding a segment token by token equals the full forward over it.
//
// Positions: with rotary positions (AttentionOptions::rotary) the local
// branch rotates its queries and keys; the memory branch and the memory see
// them unrotated, so a stored key holds content and no position. With an XL
// cache (AttentionOptions::xl_cache) the local branch also attends to the
// previous segment, as meliad's.
//
// Departures (docs/ATTENTION.md): rotary positions instead of meliad's T5
// relative bias in the local branch; a query that retrieves nothing (empty
// memory) takes the local output alone instead of (1 - g) V_local, so an
// empty memory is exactly local attention. Cross-attention is not defined by
// the paper and refused.
#ifndef MEMTRAIN_MODEL_KNN_ATTENTION_H_
#define MEMTRAIN_MODEL_KNN_ATTENTION_H_

#include <torch/nn/modules/linear.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "memory/knn_layer_memory.h"
#include "memory/knn_memory.h"
#include "model/attention.h"
#include "model/attention_common.h"

namespace memtrain::model {

/// Per-stream state of a `knn` layer: its layer memory (the kNN memory, a
/// shared pointer, so a memory can outlive or be shared by states; the stream
/// id of each batch row; the scope) and the current segment's local
/// keys/values.
class KnnDecodeState final : public SegmentMemoryState {
 public:
  /// `layer_memory.memory` null: the layer has no memory (--use_memory=false;
  /// TransformerImpl::NewSegmentStates): nothing is searched or written and
  /// the layer is its local branch. With `xl_cache` the previous segment
  /// stays in the local window (KnnAttentionImpl::NewState gives it the
  /// layer's setting), memory or not.
  explicit KnnDecodeState(memory::KnnLayerMemory layer_memory, bool xl_cache = false);

  /// Reorders the rows' local windows and stream ids. Rows that come to share
  /// a stream (beam search) share its memory; with scope kStream, EndSegment
  /// refuses then.
  void Reorder(const at::Tensor& indices) override;
  /// The local window (memory contents are the memory's to save).
  std::vector<at::Tensor> Tensors() const override {
    return {window.keys, window.values, window.padding};
  }
  int64_t position() const override { return position_; }

  /// Segment boundary: appends the rows' non-padding keys/values of the
  /// segment to their streams' memory (one add per stream, its rows in
  /// order; none when the scope is kPrebuilt); the local window then keeps
  /// the segment as its XL cache, or empties.
  absl::Status EndSegment() override;
  /// Rows where `starts` ([B] bool) is true begin a new document: their
  /// window is hidden and, with scope kStream, their memory stream is
  /// cleared.
  void NewDocument(const at::Tensor& starts) override;
  /// "position", "streams", the local window ("window.*", when not empty)
  /// and the memory's own state under "memory.".
  absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const override;
  absl::Status LoadState(const std::map<std::string, at::Tensor>& state) override;

  bool has_memory() const { return memory_ != nullptr; }
  /// Requires has_memory().
  memory::KnnMemory& memory() const { return *memory_; }
  const std::vector<int64_t>& streams() const { return streams_; }
  memory::KnnScope scope() const { return scope_; }
  /// The rows of each stream, streams in order of their first row. A sharded
  /// memory is collective, so every search and add goes once per stream, in
  /// this order, on every rank.
  std::vector<std::pair<int64_t, std::vector<int64_t>>> RowsByStream() const;

  /// The local window: keys normalised when the layer normalises, without
  /// positions (the memory stores them as they are).
  LocalWindow window;

 private:
  std::shared_ptr<memory::KnnMemory> memory_;  // null: no memory
  std::vector<int64_t> streams_;               // stream id of each batch row
  memory::KnnScope scope_;
  bool xl_cache_;
  int64_t position_ = 0;
  friend class KnnAttentionImpl;
};

class KnnAttentionImpl : public AttentionImpl {
 public:
  /// Throws (naming the layer) for cross-attention, a width not divisible by
  /// the heads, or top_k / memory_size < 1.
  explicit KnnAttentionImpl(const AttentionOptions& options);

  at::Tensor forward(const AttentionCall& call) override;
  /// A state over a fresh ExactKnnMemory of options.knn.memory_size, rows
  /// 0..batch-1 as streams 0..batch-1, scope kStream.
  std::unique_ptr<DecodeState> NewState(int64_t batch) override;
  /// A state over `layer_memory` (a sharded, FAISS or prebuilt memory).
  std::unique_ptr<KnnDecodeState> NewState(memory::KnnLayerMemory layer_memory) const;
  std::string kind() const override { return "knn"; }
  AttentionCapabilities capabilities() const override {
    AttentionCapabilities caps;
    caps.cross = false;  // not defined by the paper
    return caps;
  }
  const AttentionOptions& options() const { return options_; }

 private:
  const AttentionOptions options_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr}, output_{nullptr};
  at::Tensor gate_bias_;    // [H], b_h
  at::Tensor logit_scale_;  // [H], a_h (used as |a_h|)
};

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_KNN_ATTENTION_H_
