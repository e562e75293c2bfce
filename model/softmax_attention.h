// File: model/softmax_attention.h
//
// `softmax`: vanilla multi-head attention (ATTENTION.md §2) on ATen's
// scaled_dot_product_attention, self and cross, causal with a bottom-right
// aligned mask, and a KV-cache DecodeState (for cross-attention the projected
// source keys/values are cached once per source). Optional rotary positions
// (model/positions.h) and Transformer-XL cache (AttentionOptions::xl_cache).
#ifndef MEMTRAIN_MODEL_SOFTMAX_ATTENTION_H_
#define MEMTRAIN_MODEL_SOFTMAX_ATTENTION_H_

#include <torch/nn/modules/linear.h>

#include "model/attention.h"

namespace memtrain::model {

class SoftmaxAttentionImpl : public AttentionImpl {
 public:
  explicit SoftmaxAttentionImpl(const AttentionOptions& options);

  at::Tensor forward(const AttentionCall& call) override;
  std::unique_ptr<DecodeState> NewState(int64_t batch) override;
  /// With an XL cache, a state keeping the previous segment; else none.
  std::unique_ptr<SegmentMemoryState> NewSegmentState(int64_t batch) override;
  std::string kind() const override { return "softmax"; }
  AttentionCapabilities capabilities() const override { return {}; }

 private:
  const AttentionOptions options_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr}, output_{nullptr};
};

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_SOFTMAX_ATTENTION_H_
