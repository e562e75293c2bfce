#include "trainer/loss.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace memtrain::trainer {

LossTotals& LossTotals::operator+=(const LossTotals& other) {
  nll_sum += other.nll_sum;
  tokens += other.tokens;
  long_range_nll += other.long_range_nll;
  long_range_tokens += other.long_range_tokens;
  return *this;
}

namespace {
double Perplexity(double nll, double tokens) {
  return tokens > 0 ? std::exp(nll / tokens) : std::numeric_limits<double>::quiet_NaN();
}
}  // namespace

double LossTotals::perplexity() const { return Perplexity(nll_sum, tokens); }
double LossTotals::long_range_perplexity() const {
  return Perplexity(long_range_nll, long_range_tokens);
}

TokenLoss LabelSmoothedLoss(const at::Tensor& logits, const at::Tensor& targets,
                            const at::Tensor& mask, double smoothing,
                            const at::Tensor& long_range) {
  TORCH_CHECK(
      targets.dim() == 2 && mask.sizes() == targets.sizes() && mask.scalar_type() == at::kBool,
      "LabelSmoothedLoss: targets [B, n] and a bool mask [B, n]; got ", targets.sizes(), ", ",
      mask.scalar_type(), " ", mask.sizes());
  const bool every_position = logits.dim() == 3;
  const int64_t counted = mask.sum().item<int64_t>();
  if (every_position) {
    TORCH_CHECK(logits.sizes().slice(0, 2) == targets.sizes(),
                "LabelSmoothedLoss: logits [B, n, V] for targets [B, n]; got ", logits.sizes(),
                ", ", targets.sizes());
  } else {
    TORCH_CHECK(logits.dim() == 2 && logits.size(0) == counted,
                "LabelSmoothedLoss: logits [T, V] for the T counted positions of the mask; got ",
                logits.sizes(), " for ", counted, " counted positions");
  }
  TORCH_CHECK(smoothing >= 0 && smoothing < 1,
              "LabelSmoothedLoss: smoothing must be in [0, 1), got ", smoothing);
  const int64_t vocab = logits.size(-1);
  const at::ScalarType compute = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor log_probs = logits.to(compute).log_softmax(-1);
  const at::Tensor weight = mask.to(compute);
  // A per-position term in the [B, n] layout, zero where nothing counts:
  // summing that layout whichever logits came keeps both forms bitwise equal
  // (and equal to the losses older versions logged, which resumed runs replay).
  auto in_layout = [&](const at::Tensor& per_row) {
    return every_position ? per_row * weight : at::zeros_like(weight).masked_scatter(mask, per_row);
  };
  const at::Tensor row_targets = every_position ? targets : targets.masked_select(mask);
  const at::Tensor nll =
      in_layout(-log_probs.gather(-1, row_targets.unsqueeze(-1)).squeeze(-1));  // [B, n]
  at::Tensor smoothed = nll.sum();
  if (smoothing > 0 && vocab > 1) {
    const double other = smoothing / static_cast<double>(vocab - 1);
    const at::Tensor uniform = in_layout(-log_probs.sum(-1));
    smoothed = (1.0 - smoothing - other) * smoothed + other * uniform.sum();
  }
  TokenLoss loss;
  loss.smoothed = smoothed;
  const at::Tensor detached = nll.detach();
  loss.totals.nll_sum = detached.sum().item<double>();
  loss.totals.tokens = static_cast<double>(counted);
  if (long_range.defined()) {
    const at::Tensor far = long_range.logical_and(mask).to(compute);
    loss.totals.long_range_nll = (detached * far).sum().item<double>();
    loss.totals.long_range_tokens = far.sum().item<double>();
  }
  return loss;
}

}  // namespace memtrain::trainer
