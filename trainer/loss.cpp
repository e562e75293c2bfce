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
  TORCH_CHECK(logits.dim() == 3 && targets.sizes() == logits.sizes().slice(0, 2) &&
                  mask.sizes() == targets.sizes(),
              "LabelSmoothedLoss: logits [B, n, V], targets and mask [B, n]; got ", logits.sizes(),
              ", ", targets.sizes(), ", ", mask.sizes());
  TORCH_CHECK(smoothing >= 0 && smoothing < 1,
              "LabelSmoothedLoss: smoothing must be in [0, 1), got ", smoothing);
  const int64_t vocab = logits.size(2);
  const at::ScalarType compute = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor log_probs = logits.to(compute).log_softmax(-1);
  const at::Tensor weight = mask.to(compute);
  const at::Tensor nll =
      -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * weight;  // [B, n]
  at::Tensor smoothed = nll.sum();
  if (smoothing > 0 && vocab > 1) {
    const double other = smoothing / static_cast<double>(vocab - 1);
    const at::Tensor uniform = -log_probs.sum(-1) * weight;
    smoothed = (1.0 - smoothing - other) * smoothed + other * uniform.sum();
  }
  TokenLoss loss;
  loss.smoothed = smoothed;
  const at::Tensor detached = nll.detach();
  loss.totals.nll_sum = detached.sum().item<double>();
  loss.totals.tokens = weight.sum().item<double>();
  if (long_range.defined()) {
    const at::Tensor far = long_range.logical_and(mask).to(compute);
    loss.totals.long_range_nll = (detached * far).sum().item<double>();
    loss.totals.long_range_tokens = far.sum().item<double>();
  }
  return loss;
}

}  // namespace memtrain::trainer
