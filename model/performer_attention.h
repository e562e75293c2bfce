// File: model/performer_attention.h
//
// `performer`: FAVOR+ attention (ATTENTION.md §4). Positive orthogonal random
// features for the softmax kernel (or the generalized ReLU kernel), non-causal
// via the key-value summary, causal and O(1)-state decoding via the shared
// chunked kernel (model/linear_attention.h). The key stabilizer is a running
// maximum, so a later key never changes an earlier output (§4(d)). The
// projection W_omega [r, d] is a buffer (it checkpoints), redrawn every
// `redraw_interval` training calls from a seed derived from (seed, layer,
// redraw number), so every rank draws the same matrix; the redraw counters
// are a buffer too.
//
//   AttentionOptions options;  options.performer.features = 256;
//   auto attention = MakeAttention("performer", options);
#ifndef MEMTRAIN_MODEL_PERFORMER_ATTENTION_H_
#define MEMTRAIN_MODEL_PERFORMER_ATTENTION_H_

#include <torch/nn/modules/linear.h>

#include "model/attention.h"
#include "model/performer_options.h"

namespace memtrain::model {

/// An [r, d] FAVOR+ projection drawn from `seed` (float64, CPU): stacked
/// transposed Q factors of d x d Gaussian matrices when `orthogonal`, rows
/// rescaled per `ortho_scaling`; otherwise iid Gaussian rows.
at::Tensor DrawPerformerProjection(int64_t features, int64_t dim, bool orthogonal,
                                   int64_t ortho_scaling, uint64_t seed);

class PerformerAttentionImpl : public AttentionImpl {
 public:
  explicit PerformerAttentionImpl(const AttentionOptions& options);

  at::Tensor forward(const AttentionCall& call) override;
  std::unique_ptr<DecodeState> NewState(int64_t batch) override;
  std::string kind() const override { return "performer"; }
  AttentionCapabilities capabilities() const override {
    AttentionCapabilities caps;
    caps.constant_state = true;
    caps.exact = false;  // random features
    return caps;
  }

  /// Draws the next projection (redraw number redraws() + 1).
  void RedrawProjection();
  /// The current projection W_omega, [r, d].
  const at::Tensor& projection() const { return projection_; }
  /// How many times the projection has been redrawn.
  int64_t redraws() const;
  const AttentionOptions& options() const { return options_; }

 private:
  /// Query features [B, H, n, r] of per-head queries q [B, H, n, d].
  at::Tensor QueryFeatures(const at::Tensor& q) const;

  const AttentionOptions options_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr}, output_{nullptr};
  at::Tensor projection_;  // buffer "projection", [r, d]
  at::Tensor counters_;    // buffer "redraw_counters": {redraws, training calls since}
};

}  // namespace memtrain::model

#endif  // MEMTRAIN_MODEL_PERFORMER_ATTENTION_H_
