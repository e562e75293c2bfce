#include "model/dropout.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/PhiloxRNGEngine.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>

namespace memtrain::model {
namespace {

// The layout documented in dropout.h, drawn with ATen's own Philox engine:
// element e is word (e mod 64) / 16 of block 16 (e / 64) + e mod 16.
TEST(DropoutTest, ScalesAreAtenPhiloxWordsAgainstTheKeepThreshold) {
  const uint64_t key = 0x0123456789abcdefULL;
  const double p = 0.3;
  const int64_t numel = 64 * 40 + 37;  // a partial last group
  const at::Tensor scales = DropoutScales(numel, p, key);
  const auto keep_below = static_cast<uint64_t>(std::nearbyint(0.7 * 4294967296.0));
  const float scale = static_cast<float>(1.0 / 0.7);
  for (int64_t e = 0; e < numel; ++e) {
    const uint64_t block = 16 * (e / 64) + e % 16;
    at::philox_engine engine(key, /*subsequence=*/0, /*offset=*/block);
    uint32_t word = 0;
    for (int64_t w = 0; w <= (e % 64) / 16; ++w) word = engine();
    ASSERT_EQ(scales[e].item<float>(), word < keep_below ? scale : 0.0f) << "element " << e;
  }
}

TEST(DropoutTest, KeepsOneMinusPOfTheElementsScaledByItsInverse) {
  at::manual_seed(3);
  const int64_t numel = 1 << 22;
  for (const double p : {0.1, 0.5, 0.9}) {
    const at::Tensor x = at::rand({numel}) + 1.0;  // never 0
    const at::Tensor y = Dropout(x, p, /*training=*/true);
    const at::Tensor kept = y.ne(0);
    const double rate = kept.to(at::kDouble).mean().item<double>();
    const double sigma = std::sqrt(p * (1 - p) / static_cast<double>(numel));
    EXPECT_NEAR(rate, 1 - p, 5 * sigma) << "p = " << p;
    EXPECT_TRUE(at::allclose(y.masked_select(kept), x.masked_select(kept) / (1 - p), 1e-6, 0))
        << "p = " << p;
    // Neighbouring elements are not correlated (a layout bug would repeat words).
    const at::Tensor a = kept.narrow(0, 0, numel - 1).to(at::kDouble);
    const at::Tensor b = kept.narrow(0, 1, numel - 1).to(at::kDouble);
    const double covariance = ((a - a.mean()) * (b - b.mean())).mean().item<double>();
    EXPECT_NEAR(covariance, 0.0, 5 * p * (1 - p) / std::sqrt(static_cast<double>(numel)));
  }
}

TEST(DropoutTest, TheGeneratorStateDecidesTheMaskNotTheThreadCount) {
  const at::Tensor x = at::ones({3, 1000, 7});
  const int threads = at::get_num_threads();
  at::manual_seed(11);
  at::set_num_threads(1);
  const at::Tensor one_thread = Dropout(x, 0.25, true);
  const at::Tensor next = Dropout(x, 0.25, true);
  at::manual_seed(11);
  at::set_num_threads(2);
  const at::Tensor two_threads = Dropout(x, 0.25, true);
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(one_thread, two_threads));
  EXPECT_FALSE(at::equal(one_thread, next));  // each call draws a new key
}

TEST(DropoutTest, TheGradientIsScaledByTheSameMask) {
  at::manual_seed(5);
  const at::Tensor x = at::randn({4, 300}).requires_grad_(true);
  const at::Tensor y = Dropout(x, 0.2, true);
  const at::Tensor upstream = at::randn({4, 300});
  y.backward(upstream);
  const at::Tensor scales = (y / x).detach();
  EXPECT_TRUE(at::allclose(x.grad(), upstream * scales, 1e-6, 1e-7));
}

TEST(DropoutTest, TheAtenSamplerIsAtDropout) {
  const at::Tensor x = at::randn({6, 50});
  at::manual_seed(9);
  const at::Tensor expected = at::dropout(x, 0.3, true);
  at::manual_seed(9);
  EXPECT_TRUE(at::equal(Dropout(x, 0.3, true, DropoutSampler::kAten), expected));
  at::manual_seed(9);
  EXPECT_FALSE(at::equal(Dropout(x, 0.3, true, DropoutSampler::kPhilox), expected));
}

// Rows 0, 2, 3, 6 of 7, given alone, get the masks Dropout gives them in the
// whole tensor, and the generator ends where Dropout of the whole leaves it:
// rows of 128 elements (whole Philox groups), of 37 (groups shared between
// rows) and through the aten sampler.
TEST(DropoutTest, RowsGetTheMasksTheyHaveInTheWholeTensor) {
  const at::Tensor rows = at::tensor({0, 2, 3, 6}, at::kLong);
  for (const int64_t width : {128, 37}) {
    for (const DropoutSampler sampler : {DropoutSampler::kPhilox, DropoutSampler::kAten}) {
      const at::Tensor whole = at::randn({7, 2, width});
      at::manual_seed(13);
      const at::Tensor expected = Dropout(whole, 0.3, true, sampler).index_select(0, rows);
      const at::Tensor after_whole = at::rand({3});
      at::manual_seed(13);
      const at::Tensor picked =
          DropoutRows(whole.index_select(0, rows), rows, 7, 0.3, true, sampler);
      EXPECT_TRUE(at::equal(picked, expected)) << width << " " << AbslUnparseFlag(sampler);
      EXPECT_TRUE(at::equal(at::rand({3}), after_whole))
          << width << " " << AbslUnparseFlag(sampler);
    }
  }
  const at::Tensor x = at::randn({4, 64});
  EXPECT_TRUE(DropoutRows(x, rows, 7, 0.3, /*training=*/false).is_same(x));
  EXPECT_THROW(DropoutRows(x, rows.narrow(0, 0, 3), 7, 0.3, true), c10::Error);
  EXPECT_THROW(DropoutScalesOfRows(at::tensor({7}, at::kLong), 7, 64, 0.3, 1), c10::Error)
      << "a row outside the tensor";
}

// On a GPU rows take at::dropout's mask of the whole tensor (both samplers
// use at::dropout there). Skips without a GPU (scripts/gpu-check runs it).
TEST(DropoutTest, RowsOnTheGpuGetTheMasksOfTheWholeTensor_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  const at::Tensor whole = at::randn({7, 3, 64}, at::kCUDA);
  const at::Tensor rows = at::tensor({0, 2, 3, 6}, at::kLong).cuda();
  at::manual_seed(13);
  const at::Tensor expected = Dropout(whole, 0.3, true).index_select(0, rows);
  at::manual_seed(13);
  EXPECT_TRUE(at::equal(DropoutRows(whole.index_select(0, rows), rows, 7, 0.3, true), expected));
}

TEST(DropoutTest, EvaluationAndZeroPAreTheIdentity) {
  const at::Tensor x = at::randn({5, 6});
  EXPECT_TRUE(Dropout(x, 0.5, /*training=*/false).is_same(x));
  EXPECT_TRUE(Dropout(x, 0.0, /*training=*/true).is_same(x));
  EXPECT_TRUE(at::equal(Dropout(x, 1.0, true), at::zeros_like(x)));
}

}  // namespace
}  // namespace memtrain::model
