// File: model/memsizer_attention.h
//
// `memsizer`: the key-value memory layer of MemSizer (ATTENTION.md §5).
// Input-independent learned keys Phi address k slots per head; the head
// distributions are averaged, p_i = mean_h softmax(Phi_h x_i + b_h), and read
// one value memory built from the source, V = L^T R / sqrt(s) with
// L = LN_k(X W_l^T), R = LN_v(X W_r^T). No output projection. Causal training
// uses the shared chunked kernel (features p and l, row scale 1/sqrt(t)),
// decoding keeps the unscaled S [B, k, D] and the count; cross-attention
// caches V per source.
//
//   AttentionOptions options;  options.memsizer.slots = 32;
//   auto attention = MakeAttention("memsizer", options);
#ifndef MEMTRAIN_MODEL_MEMSIZER_ATTENTION_H_
#define MEMTRAIN_MODEL_MEMSIZER_ATTENTION_H_

#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "model/attention.h"
#include "model/memsizer_options.h"

namespace memtrain::model {

class MemSizerAttentionImpl : public AttentionImpl {
 public:
  explicit MemSizerAttentionImpl(const AttentionOptions& options);

  at::Tensor forward(const AttentionCall& call) override;
  std::unique_ptr<DecodeState> NewState(int64_t batch) override;
  std::string kind() const override { return "memsizer"; }
  AttentionCapabilities capabilities() const override {
    AttentionCapabilities caps;
    caps.constant_state = true;
    return caps;
  }

 private:
  const AttentionOptions options_;
  const int64_t slots_;  ///< memsizer.slots, or cross_slots in the cross-attention role
  torch::nn::Linear keys_{nullptr}, left_{nullptr}, right_{nullptr};
  torch::nn::LayerNorm left_norm_{nullptr}, right_norm_{nullptr};
};

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_MEMSIZER_ATTENTION_H_
