// Label-smoothed cross-entropy against LibTorch's own cross_entropy (which
// implements the same smoothing, spread over all V classes, so the two are
// compared through fairseq's formula written out in fp64).
#include "trainer/loss.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

namespace memtrain::trainer {
namespace {

TEST(LossTest, WithoutSmoothingItIsTheMaskedNllSum) {
  at::manual_seed(3);
  const at::Tensor logits = at::randn({2, 5, 7}, at::kDouble);
  const at::Tensor targets = at::randint(0, 7, {2, 5}, at::kLong);
  const at::Tensor mask = at::rand({2, 5}, at::kDouble) > 0.3;
  const TokenLoss loss = LabelSmoothedLoss(logits, targets, mask, 0.0);
  const at::Tensor all =
      at::cross_entropy_loss(logits.view({10, 7}), targets.view({10}), {}, at::Reduction::None);
  const double expected = (all * mask.view({10}).to(at::kDouble)).sum().item<double>();
  EXPECT_NEAR(loss.smoothed.item<double>(), expected, 1e-12);
  EXPECT_NEAR(loss.totals.nll_sum, expected, 1e-12);
  EXPECT_EQ(loss.totals.tokens, mask.sum().item<double>());
  EXPECT_NEAR(loss.totals.perplexity(), std::exp(expected / loss.totals.tokens), 1e-9);
}

TEST(LossTest, SmoothingFollowsFairseqAndTheNllStaysUnsmoothed) {
  at::manual_seed(4);
  const double eps = 0.1;
  const at::Tensor logits = at::randn({1, 3, 5}, at::kDouble);
  const at::Tensor targets = at::tensor({1, 4, 0}, at::kLong).view({1, 3});
  const at::Tensor mask = at::ones({1, 3}, at::kBool);
  const TokenLoss loss = LabelSmoothedLoss(logits, targets, mask, eps);
  const at::Tensor logp = logits.log_softmax(-1)[0];
  double expected = 0, nll = 0;
  for (int i = 0; i < 3; ++i) {
    const int64_t t = targets[0][i].item<int64_t>();
    for (int v = 0; v < 5; ++v) {
      const double weight = v == t ? 1 - eps : eps / 4;  // fairseq: eps spread over the other V-1
      expected -= weight * logp[i][v].item<double>();
    }
    nll -= logp[i][t].item<double>();
  }
  EXPECT_NEAR(loss.smoothed.item<double>(), expected, 1e-12);
  EXPECT_NEAR(loss.totals.nll_sum, nll, 1e-12);
}

TEST(LossTest, TheCountedRowsAloneGiveTheSameLossAndGradientBitwise) {
  at::manual_seed(5);
  const at::Tensor every = at::randn({3, 7, 11}, at::kFloat).requires_grad_();
  const at::Tensor targets = at::randint(0, 11, {3, 7}, at::kLong);
  const at::Tensor mask = at::rand({3, 7}) > 0.4;
  const at::Tensor far = at::rand({3, 7}) > 0.5;
  const TokenLoss from_every = LabelSmoothedLoss(every, targets, mask, 0.1, far);
  from_every.smoothed.backward();

  const at::Tensor rows = every.detach().index({mask}).requires_grad_();  // [T, V]
  const TokenLoss from_rows = LabelSmoothedLoss(rows, targets, mask, 0.1, far);
  from_rows.smoothed.backward();

  EXPECT_TRUE(at::equal(from_rows.smoothed, from_every.smoothed));
  EXPECT_EQ(from_rows.totals.nll_sum, from_every.totals.nll_sum);
  EXPECT_EQ(from_rows.totals.tokens, from_every.totals.tokens);
  EXPECT_EQ(from_rows.totals.long_range_nll, from_every.totals.long_range_nll);
  EXPECT_EQ(from_rows.totals.long_range_tokens, from_every.totals.long_range_tokens);
  EXPECT_TRUE(at::equal(rows.grad(), every.grad().index({mask})));
  EXPECT_EQ(every.grad().index({mask.logical_not()}).abs().sum().item<float>(), 0.0f)
      << "positions that do not count get no gradient";
}

TEST(LossTest, RowsThatDoNotMatchTheMaskAreRefused) {
  const at::Tensor mask = at::tensor({1, 0, 1}).to(at::kBool).view({1, 3});
  const at::Tensor targets = at::zeros({1, 3}, at::kLong);
  EXPECT_THROW(LabelSmoothedLoss(at::zeros({3, 4}), targets, mask, 0.1), c10::Error);
  EXPECT_NO_THROW(LabelSmoothedLoss(at::zeros({2, 4}), targets, mask, 0.1));
}

TEST(LossTest, LongRangeTokensAreCountedApart) {
  const at::Tensor logits = at::zeros({1, 4, 8}, at::kFloat);  // uniform: nll = log 8 each
  const at::Tensor targets = at::zeros({1, 4}, at::kLong);
  const at::Tensor mask = at::tensor({1, 1, 1, 0}).to(at::kBool).view({1, 4});
  const at::Tensor far =
      at::tensor({0, 1, 0, 1}).to(at::kBool).view({1, 4});  // the last is masked out
  const TokenLoss loss = LabelSmoothedLoss(logits, targets, mask, 0.0, far);
  EXPECT_EQ(loss.totals.tokens, 3);
  EXPECT_EQ(loss.totals.long_range_tokens, 1);
  EXPECT_NEAR(loss.totals.long_range_perplexity(), 8.0, 1e-5);
  EXPECT_TRUE(std::isnan(LossTotals{}.perplexity()))
      << "nothing measured must not read as perplexity 1";
}

}  // namespace
}  // namespace memtrain::trainer
