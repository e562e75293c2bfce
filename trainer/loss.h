// File: trainer/loss.h
//
// Label-smoothed cross-entropy as fairseq computes it
// (label_smoothed_cross_entropy.py): with ε spread over the other V - 1
// classes, loss = (1 - ε - ε/(V-1)) · nll + ε/(V-1) · Σ_v -log p_v, summed
// over the target positions that count. Sums, not means: the trainer divides
// by the global token count of the step (all ranks, all micro-batches), so
// that the gradient does not depend on how tokens are split across ranks.
//
//   TokenLoss loss = LabelSmoothedLoss(logits, batch.targets, batch.loss_mask, 0.1);
//   loss.smoothed.backward();            // totals.nll_sum for perplexity
//
// The logits may be every position's, [B, n, V], or only the counted
// positions', [T, V] (TransformerImpl's `logits_at` = the mask). Both give
// the same loss and gradients, bit for bit: the per-position terms are
// summed in the [B, n] layout either way.
#ifndef MEMTRAIN_TRAINER_LOSS_H_
#define MEMTRAIN_TRAINER_LOSS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace memtrain::trainer {

/// Detached sums over a batch (or a whole evaluation), all-reducible as four numbers.
struct LossTotals {
  double nll_sum = 0;         ///< Σ -log p(target), natural log
  double tokens = 0;          ///< target positions counted
  double long_range_nll = 0;  ///< the same over the long-range targets (demo corpus)
  double long_range_tokens = 0;

  LossTotals& operator+=(const LossTotals& other);
  /// exp(nll_sum / tokens); 0 tokens gives NaN (nothing was measured).
  double perplexity() const;
  double long_range_perplexity() const;
};

struct TokenLoss {
  at::Tensor smoothed;  ///< scalar, summed, with autograd history
  LossTotals totals;
};

/// logits [B, n, V], or [T, V] for the T positions where mask is true in
/// row-major order; targets [B, n] int64; mask [B, n] bool (true = counts);
/// long_range [B, n] bool or undefined. Computed in float32 or wider.
TokenLoss LabelSmoothedLoss(const at::Tensor& logits, const at::Tensor& targets,
                            const at::Tensor& mask, double smoothing,
                            const at::Tensor& long_range = {});

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_LOSS_H_
