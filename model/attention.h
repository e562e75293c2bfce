// File: model/attention.h
//
// `Attention`: one interface for every attention variant memtrain trains
// (softmax, linformer, performer, memsizer, infinite, knn; ATTENTION.md is the
// specification, docs/ATTENTION.md what is implemented). Variants register by
// name in model/attention_registry.cpp and are chosen by configuration:
//
//   AttentionOptions options;
//   options.layer = "decoder.0.self";  options.model_dim = 512;  options.heads = 8;
//   options.causal = true;
//   MEMTRAIN_ASSIGN_OR_RETURN(std::shared_ptr<AttentionImpl> attention,
//                             MakeAttention("softmax", options));
//   AttentionCall call;  call.query = x;  call.causal = true;
//   at::Tensor y = attention->forward(call);                        // training
//   auto state = attention->NewState(batch);                        // decoding, chunk by chunk
//   call.query = x_t;  call.state = state.get();
//   at::Tensor y_t = attention->forward(call);
//
// Contract for every variant:
//   - query [B, n, D] -> output [B, n, D]; `memory` [B, s, D] is the key/value
//     side for cross-attention (undefined = self-attention on `query`);
//     `key_padding` [B, s] bool marks padded keys (true = pad).
//   - A query row whose keys are all padding gets a zero output and finite
//     gradients (never NaN). Logits, softmax and running sums are computed in
//     float32 or wider, whatever the input dtype.
//   - Causal self-attention: output i depends on inputs 0..i only.
//   - Incremental decoding: calling forward with a DecodeState on successive
//     chunks of a sequence gives the same outputs as one causal forward over
//     the whole sequence (to float tolerance). All cross-call state lives in
//     the DecodeState (or a per-stream state object), never in the module.
//   - Variants with documented limits refuse at construction, naming the
//     layer (Linformer has no causal form); MakeAttention refuses rotary
//     positions or an XL cache for a kind without them.
#ifndef MEMTRAIN_MODEL_ATTENTION_H_
#define MEMTRAIN_MODEL_ATTENTION_H_

#include <torch/nn/module.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/linformer_options.h"
#include "model/memsizer_options.h"
#include "model/performer_options.h"

namespace memtrain::model {

/// Cross-call state of one attention layer for a batch of sequences (or
/// document streams): a KV cache, a linear-attention prefix state, a
/// long-term memory. Made by AttentionImpl::NewState.
class DecodeState {
 public:
  virtual ~DecodeState() = default;
  /// Keeps batch rows `indices` (int64 [B']), in that order: beam search's
  /// reorder, or dropping finished sequences.
  virtual void Reorder(const at::Tensor& indices) = 0;
  /// The tensors held. For the constant-state variants their total size does
  /// not depend on how many positions have been decoded.
  virtual std::vector<at::Tensor> Tensors() const = 0;
  /// Positions consumed so far.
  virtual int64_t position() const = 0;
};

/// The state of a layer whose memory outlives a segment (knn, infinite).
/// Training and evaluation over document streams keep these states across
/// steps (TransformerImpl::ForwardSegment); every other layer attends within
/// the segment.
class SegmentMemoryState : public DecodeState {
 public:
  /// Segment boundary: moves what the segment buffered into the long-term
  /// memory, detached: the stored tensors carry no gradient into later
  /// segments (a layer may still train parameters it applies to them when
  /// the next segment reads them, as the ∞-former's gate does).
  virtual absl::Status EndSegment() = 0;
  /// Rows where `starts` ([B] bool) is true begin a new document and forget
  /// their memory.
  virtual void NewDocument(const at::Tensor& starts) = 0;
  /// A regulariser the layer adds to the training loss for its reads in the
  /// latest segment (the calls since the first forward after EndSegment; it
  /// outlives EndSegment until the next segment starts): a scalar with
  /// autograd history, already weighted, summed over the query positions as
  /// the token loss is (the trainer divides both by the token count).
  /// Undefined when the layer has none (the default; the ∞-former's KL term
  /// with InfiniteOptions::kl_weight > 0).
  virtual at::Tensor AuxiliaryLoss() const { return {}; }

  /// Checkpoints: everything the state carries into the next segment, as
  /// named CPU tensors. LoadState, on a fresh state the same layer made for
  /// the same batch, restores it so that later segments give bitwise the same
  /// outputs. Variants that cannot keep the default (kUnimplemented).
  virtual absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const {
    return absl::UnimplementedError("this attention variant's memory cannot be checkpointed");
  }
  /// `state`'s tensors on the device the layer runs on.
  virtual absl::Status LoadState(const std::map<std::string, at::Tensor>& state) {
    (void)state;
    return absl::UnimplementedError("this attention variant's memory cannot be checkpointed");
  }
};

/// One call of an attention layer.
struct AttentionCall {
  at::Tensor query;        ///< [B, n, D]
  at::Tensor memory;       ///< [B, s, D]; undefined for self-attention
  at::Tensor key_padding;  ///< [B, s] bool, true = padding; undefined = none
  bool causal = false;
  DecodeState* state = nullptr;  ///< incremental mode when set
};

/// What a variant supports; the shared tests read this.
struct AttentionCapabilities {
  bool non_causal = true;
  bool causal = true;
  bool cross = true;
  bool decode = true;           ///< incremental decoding with a DecodeState
  bool constant_state = false;  ///< DecodeState size independent of position
  bool exact = true;            ///< equals an exact formula (false: random features)
};

/// The Memorizing Transformer layer, kind `knn` (ATTENTION.md §7).
struct KnnOptions {
  /// Neighbours retrieved per query and head (paper §4.2: 32).
  int64_t top_k = 32;
  /// Memory capacity in tokens per stream (paper: 1,536 to 262,144; 65K in Table 4).
  int64_t memory_size = 65536;
  /// Unit-norm queries and keys against staleness (§3.2; meliad default).
  bool normalize_keys = true;
  double logit_scale = 1.0;  ///< initial learned per-head logit scale |a_h| (meliad: 1)
  double gate_bias = 0.0;    ///< initial per-head gate bias b_h, g = sigmoid(b_h) (meliad: 0)
  /// Biases on the query, key and value projections. meliad has none (a
  /// key bias only adds q.b to every score of a query, and the paper's
  /// authors saw large uniform values grow there); models saved before
  /// model.json format 3 had them, and load with them.
  bool projection_bias = false;
};

/// The ∞-former layer, kind `infinite` (ATTENTION.md §6; the GPT-2 finetune config).
struct InfiniteOptions {
  int64_t basis = 512;                         ///< N radial basis functions
  std::vector<double> widths = {0.005, 0.01};  ///< Σ, RBF widths (centres repeat per width)
  double ridge = 0.5;                          ///< λ of the ridge regression
  double tau = 0.5;                            ///< old memory compressed into [0, τ] at an update
  int64_t samples = 512;                       ///< M points read from the old signal at an update
  bool sticky = false;         ///< sticky memories (the `_sticky_mem` config); else uniform samples
  int64_t sticky_bins = 128;   ///< D_b histogram bins for sticky sampling
  double min_variance = 1e-4;  ///< clamp of σ² (GPT-2 code)
  /// The learned gate X ⊙ sigmoid(Conv1d_{k=3}(X)) on what enters the LTM
  /// (the code's mask_type='cnn'; parameters `gate.*` only when on).
  bool gate = false;
  /// λ_KL of the regulariser KL(N(μ, σ²) ‖ N(μ, σ₀²)) on every LTM read (the
  /// code's kl_m: 1e-6); 0 = off. σ only (ATTENTION.md §6(d): the code's μ
  /// term is a quirk).
  double kl_weight = 0.0;
  double kl_sigma = 0.05;  ///< σ₀ of the KL regulariser
};

// Each variant's options are declared once: the struct with its defaults,
// and beside it a table of its fields, X(variant, flag, member, help). From
// the tables come the flags (launch/model_flags.cpp: --flag, default from the
// struct), model.json (model/transformer.cpp: key `member` under
// "attention_options"/`variant`) and AttentionOptions' members (below).
// A new variant with options adds its struct and table in its own header and
// one line here.
// clang-format off
#define MEMTRAIN_KNN_OPTIONS(X)                                                                   \
  X(knn, knn_top_k, top_k, "Memorizing Transformer: neighbours retrieved.")                      \
  X(knn, knn_memory_size, memory_size,                                                          \
    "Memorizing Transformer: memory capacity in tokens per stream.")                            \
  X(knn, knn_normalize_keys, normalize_keys,                                                    \
    "Memorizing Transformer: unit-norm queries and keys (against staleness).")                  \
  X(knn, knn_logit_scale, logit_scale, "Memorizing Transformer: initial per-head logit scale.") \
  X(knn, knn_gate_bias, gate_bias, "Memorizing Transformer: initial per-head gate bias.")      \
  X(knn, knn_projection_bias, projection_bias,                                                  \
    "Memorizing Transformer: biases on the query/key/value projections (meliad: none).")
#define MEMTRAIN_INFINITE_OPTIONS(X)                                                              \
  X(infinite, infinite_basis, basis, "∞-former: radial basis functions N.")                     \
  X(infinite, infinite_widths, widths, "∞-former: RBF widths (centres repeat per width).")      \
  X(infinite, infinite_ridge, ridge, "∞-former: ridge penalty λ.")                              \
  X(infinite, infinite_tau, tau, "∞-former: compression point τ.")                              \
  X(infinite, infinite_samples, samples, "∞-former: samples M at a memory update.")             \
  X(infinite, infinite_sticky, sticky, "∞-former: sticky memories.")                            \
  X(infinite, infinite_sticky_bins, sticky_bins, "∞-former: histogram bins of sticky sampling.") \
  X(infinite, infinite_min_variance, min_variance, "∞-former: clamp of the variance.")          \
  X(infinite, infinite_gate, gate, "∞-former: learned CNN gate on the memory input.")           \
  X(infinite, infinite_kl_weight, kl_weight, "∞-former: weight of the KL term (0: off).")       \
  X(infinite, infinite_kl_sigma, kl_sigma, "∞-former: σ₀ of the KL regulariser.")
/// Every variant with options: X(variant, Type, TABLE).
#define MEMTRAIN_ATTENTION_VARIANTS(X)                                                            \
  X(knn, KnnOptions, MEMTRAIN_KNN_OPTIONS)                                                      \
  X(infinite, InfiniteOptions, MEMTRAIN_INFINITE_OPTIONS)                                       \
  X(linformer, LinformerOptions, MEMTRAIN_LINFORMER_OPTIONS)                                    \
  X(performer, PerformerOptions, MEMTRAIN_PERFORMER_OPTIONS)                                    \
  X(memsizer, MemSizerOptions, MEMTRAIN_MEMSIZER_OPTIONS)
// clang-format on

struct AttentionOptions {
  std::string layer = "attention";  ///< named in error messages, e.g. "decoder.3.self"
  int64_t model_dim = 512;
  int64_t heads = 8;
  double dropout = 0.0;  ///< on attention probabilities, training only
  bool causal = false;   ///< the layer will be called causally
  bool cross = false;    ///< a cross-attention layer
  /// Rotary positions (model/positions.h) on this self-attention layer's
  /// queries and keys; only kinds with SupportsRotary.
  bool rotary = false;
  /// Transformer-XL cache: over document streams, the layer also attends to
  /// the previous segment's keys/values of its stream (no gradient through
  /// them); only kinds with SupportsXlCache, with rotary positions.
  bool xl_cache = false;
  /// One member per variant, named after its kind, used by that kind only:
  /// knn, infinite, linformer, performer, memsizer.
#define MEMTRAIN_ATTENTION_VARIANT_MEMBER(variant, Type, TABLE) Type variant;
  MEMTRAIN_ATTENTION_VARIANTS(MEMTRAIN_ATTENTION_VARIANT_MEMBER)
#undef MEMTRAIN_ATTENTION_VARIANT_MEMBER
};

class AttentionImpl : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const AttentionCall& call) = 0;
  /// A fresh state for `batch` rows.
  virtual std::unique_ptr<DecodeState> NewState(int64_t batch) = 0;
  /// The state this layer carries from one segment of a document stream to
  /// the next (TransformerImpl::ForwardSegment), or null when it attends
  /// within the segment only. By default NewState's state when that is a
  /// SegmentMemoryState (knn, infinite).
  virtual std::unique_ptr<SegmentMemoryState> NewSegmentState(int64_t batch) {
    std::unique_ptr<DecodeState> state = NewState(batch);
    if (dynamic_cast<SegmentMemoryState*>(state.get()) == nullptr) return nullptr;
    return std::unique_ptr<SegmentMemoryState>(static_cast<SegmentMemoryState*>(state.release()));
  }
  virtual std::string kind() const = 0;
  virtual AttentionCapabilities capabilities() const = 0;
};

/// Makes the variant `kind`; kInvalidArgument listing the known kinds for an
/// unknown one, kFailedPrecondition (naming the layer) for an unsupported
/// configuration.
absl::StatusOr<std::shared_ptr<AttentionImpl>> MakeAttention(const std::string& kind,
                                                             const AttentionOptions& options);
/// Every registered kind, in registration order.
std::vector<std::string> AttentionKinds();
/// Whether `kind` takes rotary positions (AttentionOptions::rotary); false
/// for an unknown kind.
bool SupportsRotary(const std::string& kind);
/// Whether `kind` has a Transformer-XL cache (AttentionOptions::xl_cache).
bool SupportsXlCache(const std::string& kind);

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_ATTENTION_H_
