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
//     layer (Linformer has no causal form).
#ifndef MEMTRAIN_MODEL_ATTENTION_H_
#define MEMTRAIN_MODEL_ATTENTION_H_

#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

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
  bool decode = true;          ///< incremental decoding with a DecodeState
  bool constant_state = false; ///< DecodeState size independent of position
  bool exact = true;           ///< equals an exact formula (false: random features)
};

struct AttentionOptions {
  std::string layer = "attention";  ///< named in error messages, e.g. "decoder.3.self"
  int64_t model_dim = 512;
  int64_t heads = 8;
  double dropout = 0.0;  ///< on attention probabilities, training only
  bool causal = false;   ///< the layer will be called causally
  bool cross = false;    ///< a cross-attention layer
};

class AttentionImpl : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const AttentionCall& call) = 0;
  /// A fresh state for `batch` rows.
  virtual std::unique_ptr<DecodeState> NewState(int64_t batch) = 0;
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

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_ATTENTION_H_
