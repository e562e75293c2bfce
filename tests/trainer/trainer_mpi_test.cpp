// The training loop under real mpirun (2 ranks): data parallelism is exact
// (2 ranks x b rows == 1 rank x 2b rows, step by step), accumulation is exact
// (2 micro-batches == their concatenation), and training learns.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <numeric>

#include "data/batch_source.h"
#include "tests/mpi_test_support.h"
#include "tests/trainer/trainer_test_support.h"
#include "trainer/trainer.h"

namespace memtrain::trainer {
namespace {

using testing::Losses;
using testing::SharedToyLm;
using testing::TinyModel;
using testing::TinyTraining;

constexpr int kSteps = 40;

TEST(TrainerMpiTest, TwoRanksOfBRowsEqualOneRankOf2BRowsAndLossFalls) {
  auto world = memtrain::testing::NewWorld();
  if (world->size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  const std::string path = SharedToyLm(*world);
  auto parallel_run = Trainer::Create(TinyTraining(path, 2), TinyModel(), *world, at::kCPU);
  ASSERT_TRUE(parallel_run.ok()) << parallel_run.status();
  const std::vector<double> two_ranks = Losses(**parallel_run, kSteps);

  // The same job on one rank with twice the rows: each rank runs it alone.
  auto alone = world->split(world->rank(), 0);
  ASSERT_TRUE(alone.ok()) << alone.status();
  auto single_run = Trainer::Create(TinyTraining(path, 4), TinyModel(), **alone, at::kCPU);
  ASSERT_TRUE(single_run.ok()) << single_run.status();
  const std::vector<double> one_rank = Losses(**single_run, kSteps);

  ASSERT_EQ(two_ranks.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(one_rank.size(), static_cast<size_t>(kSteps));
  for (size_t i = 0; i < two_ranks.size(); ++i) {
    EXPECT_NEAR(two_ranks[i], one_rank[i], 1e-5) << "step " << i + 1;
  }
  const auto mean = [](auto first, auto last) {
    return std::accumulate(first, last, 0.0) / (last - first);
  };
  EXPECT_LT(mean(two_ranks.end() - 5, two_ranks.end()),
            mean(two_ranks.begin(), two_ranks.begin() + 5) - 0.3)
      << "training on repeating patterns must learn";
  // And the ranks hold the same parameters afterwards.
  for (const at::Tensor& p : (*parallel_run)->model().parameters()) {
    auto gathered = world->allgather(p.detach().contiguous());
    ASSERT_TRUE(gathered.ok());
    EXPECT_TRUE(at::equal((*gathered)[0], (*gathered)[1]));
  }
}

TEST(TrainerMpiTest, TwoMicroBatchesEqualTheirConcatenation) {
  auto world = memtrain::testing::NewWorld();
  const std::string path = SharedToyLm(*world);
  auto alone = world->split(world->rank(), 0);
  ASSERT_TRUE(alone.ok()) << alone.status();
  TrainerOptions options = TinyTraining(path, 2);
  options.use_memory = false;  // rows of a concatenated batch would be other streams
  auto accumulating = Trainer::Create(options, TinyModel(), **alone, at::kCPU);
  auto concatenated = Trainer::Create(options, TinyModel(), **alone, at::kCPU);
  ASSERT_TRUE(accumulating.ok() && concatenated.ok());

  data::BatchSourceOptions source_options;
  source_options.streams = 2;
  source_options.segment_length = 8;
  auto source = data::OpenBatchSource(path, source_options);
  ASSERT_TRUE(source.ok()) << source.status();
  for (int step = 0; step < 10; ++step) {
    auto first = (*source)->Next(), second = (*source)->Next();
    ASSERT_TRUE(first.ok() && second.ok() && first->has_value() && second->has_value());
    const data::Batch& a = **first;
    const data::Batch& b = **second;
    data::Batch both = a;
    both.inputs = at::cat({a.inputs, b.inputs});
    both.targets = at::cat({a.targets, b.targets});
    both.loss_mask = at::cat({a.loss_mask, b.loss_mask});
    both.long_range = at::cat({a.long_range, b.long_range});
    both.new_document = at::cat({a.new_document, b.new_document});
    auto split_step = (*accumulating)->StepOn({a, b});
    auto joined_step = (*concatenated)->StepOn({both});
    ASSERT_TRUE(split_step.ok()) << split_step.status();
    ASSERT_TRUE(joined_step.ok()) << joined_step.status();
    EXPECT_NEAR(split_step->loss, joined_step->loss, 1e-6) << "step " << step;
    EXPECT_NEAR(split_step->grad_norm, joined_step->grad_norm, 1e-5) << "step " << step;
  }
  // Parameters are not compared directly: a key bias has an identically zero
  // gradient under softmax (a constant shift of every logit), so Adam turns
  // rounding noise of 1e-10 into full-size steps of random sign there. The
  // losses after each update are the check that matters.
}

}  // namespace
}  // namespace memtrain::trainer
