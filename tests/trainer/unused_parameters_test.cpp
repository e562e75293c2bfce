// Unused parameters in a real training run (2 ranks): the knn layer's gate
// gets no gradient while every stream's memory is empty (the first segment),
// so the default policy stops the step naming it, and zero-fill trains on.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "tests/mpi_test_support.h"
#include "tests/trainer/toy_corpus.h"
#include "tests/trainer/trainer_test_support.h"
#include "trainer/trainer.h"

namespace memtrain::trainer {
namespace {

using ::testing::HasSubstr;

TEST(UnusedParametersTest, TheKnnGateIsNamedUnderErrorAndZeroFilledOtherwise) {
  auto world = memtrain::testing::NewWorld();
  std::string path;
  if (world->rank() == 0) {
    path = testing::ToyPath("unused.h5");
    testing::WriteToyLm(path, 12, /*seed=*/9);
  }
  path = memtrain::testing::BroadcastString(*world, path);

  const model::TransformerOptions model = testing::TinyModel();  // knn at decoder layer 1
  TrainerOptions options;
  options.train_data = path;
  options.batch.streams = 2;
  options.batch.segment_length = 8;
  options.lr_schedule = "constant";
  options.lr.warmup_steps = 0;

  options.unused_parameters = parallel::UnusedParameters::kError;
  auto strict = Trainer::Create(options, model, *world, at::kCPU);
  ASSERT_TRUE(strict.ok()) << strict.status();
  auto refused = (*strict)->Step();
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("decoder.1.self_attention"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("--unused_parameters=zero"));

  options.unused_parameters = parallel::UnusedParameters::kZeroFill;
  auto lenient = Trainer::Create(options, model, *world, at::kCPU);
  ASSERT_TRUE(lenient.ok()) << lenient.status();
  for (int step = 0; step < 3; ++step) {
    auto metrics = (*lenient)->Step();
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    EXPECT_TRUE(std::isfinite(metrics->loss));
  }
}

}  // namespace
}  // namespace memtrain::trainer
