// File: model/linformer_attention.h
//
// `linformer`: softmax attention over k slots made by projecting the keys and
// values along the sequence axis with learned E, F in R^{k x n_max}
// (ATTENTION.md §3): K -> E[:, :s] K. Padded key rows are zeroed before the
// projection, the projection is sliced to the actual length, and the K/V
// biases are projected too (the paper's E(XW + 1b^T), not fairseq's order).
// Non-causal only: causal use is refused at construction. Cross-attention
// decoding caches the projected source ([B, H, k, d] twice) in the DecodeState.
//
//   AttentionOptions options;  options.linformer.projected_length = 128;
//   auto attention = MakeAttention("linformer", options);
#ifndef MEMTRAIN_MODEL_LINFORMER_ATTENTION_H_
#define MEMTRAIN_MODEL_LINFORMER_ATTENTION_H_

#include <torch/nn/modules/linear.h>

#include "model/attention.h"
#include "model/linformer_options.h"

namespace memtrain::model {

/// `copies` projection matrices [copies, k, max_length], initialised as
/// fairseq does (xavier-uniform with gain 1/sqrt(2) on each k x n_max matrix).
at::Tensor MakeLinformerProjection(const LinformerOptions& options, int64_t copies);

class LinformerAttentionImpl : public AttentionImpl {
 public:
  explicit LinformerAttentionImpl(const AttentionOptions& options);

  at::Tensor forward(const AttentionCall& call) override;
  std::unique_ptr<DecodeState> NewState(int64_t batch) override;
  std::string kind() const override { return "linformer"; }
  AttentionCapabilities capabilities() const override {
    AttentionCapabilities caps;
    caps.causal = false;  // a projected slot mixes every position, future included
    return caps;
  }

 private:
  const AttentionOptions options_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr}, output_{nullptr};
  // [P, k, n_max], P = heads without sharing, else 1. With key-value and
  // layerwise sharing the value projection is the key projection; layerwise,
  // it is options.linformer.shared_projection and registered by its owner.
  at::Tensor project_key_, project_value_;
};

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_LINFORMER_ATTENTION_H_
