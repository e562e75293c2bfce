// The trainer over the hybrid world (parallel/world.h) with PyTorch's Gloo,
// through the c10d adapter, as its device channel: the code path a GPU job
// takes with NCCL, run for real on the CPU under mpirun (2 and 4 ranks). It
// must train exactly like the MPI-only world, step by step, with a sharded
// kNN memory (whose searches cross ranks), validation and a checkpoint.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "parallel/world.h"
#include "tests/mpi_test_support.h"
#include "tests/trainer/trainer_test_support.h"
#include "trainer/trainer.h"

namespace memtrain::trainer {
namespace {

using testing::Losses;
using testing::SharedToyLm;
using testing::TinyModel;
using testing::TinyTraining;

constexpr int kSteps = 25;

struct TrainingRun {
  std::vector<double> losses;
  double validation_perplexity = 0;
  std::vector<std::pair<std::string, at::Tensor>> parameters;
};

TrainingRun TrainOn(parallel::Communicator& world, const std::string& corpus,
                    const std::string& checkpoints) {
  TrainerOptions options = TinyTraining(corpus, 2);
  options.knn_memory.sharded = true;
  options.valid_data = corpus;
  options.valid_steps = 4;
  options.checkpoint.dir = checkpoints;
  TrainingRun run;
  auto trainer = Trainer::Create(options, TinyModel(), world, at::kCPU);
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  if (!trainer.ok()) return run;
  run.losses = Losses(**trainer, kSteps);
  auto validation = (*trainer)->Validate();
  EXPECT_TRUE(validation.ok()) << validation.status();
  if (validation.ok()) run.validation_perplexity = validation->perplexity();
  auto saved = (*trainer)->SaveCheckpoint();
  EXPECT_TRUE(saved.ok()) << saved.status();
  for (const auto& p : (*trainer)->model().named_parameters())
    run.parameters.emplace_back(p.key(), p.value().detach().clone());
  return run;
}

TEST(TrainerWorldTest, GlooWorldTrainsLikeTheMpiWorld) {
  auto mpi_world = memtrain::testing::NewWorld();
  const std::string corpus = SharedToyLm(*mpi_world);
  const std::string dir = memtrain::testing::BroadcastString(
      *mpi_world,
      (std::filesystem::temp_directory_path() / ("memtrain_world_test_" + std::to_string(getpid())))
          .string());
  const TrainingRun over_mpi = TrainOn(*mpi_world, corpus, dir + "/mpi");

  parallel::WorldOptions options;
  options.communicator = memtrain::testing::TestCommunicatorOptions();
  options.collectives = "gloo";
  auto gloo_world = parallel::CreateWorld(memtrain::testing::Runtime(), options);
  ASSERT_TRUE(gloo_world.ok()) << gloo_world.status();
  auto& hybrid = dynamic_cast<parallel::HybridCommunicator&>(**gloo_world);
  const TrainingRun over_gloo = TrainOn(hybrid, corpus, dir + "/gloo");
  EXPECT_GT(hybrid.device_channel().sequence_number(), static_cast<uint64_t>(kSteps))
      << "the gradients went over Gloo";

  ASSERT_EQ(over_mpi.losses.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(over_gloo.losses.size(), static_cast<size_t>(kSteps));
  // Gloo and MPI may add the ranks' floats in different orders.
  for (int i = 0; i < kSteps; ++i)
    EXPECT_NEAR(over_gloo.losses[i], over_mpi.losses[i], 1e-5) << "step " << i + 1;
  EXPECT_NEAR(over_gloo.validation_perplexity, over_mpi.validation_perplexity, 1e-4);
  ASSERT_EQ(over_gloo.parameters.size(), over_mpi.parameters.size());
  for (size_t i = 0; i < over_mpi.parameters.size(); ++i) {
    const auto& [name, expected] = over_mpi.parameters[i];
    // A key bias adds q.b to every score of a query, which softmax ignores:
    // its gradient is zero but for rounding noise, which Adam scales up to
    // lr-sized steps, so it follows the order in which ranks' floats are added.
    if (absl::EndsWith(name, ".key.bias")) continue;
    EXPECT_TRUE(at::allclose(over_gloo.parameters[i].second, expected, 1e-4, 1e-6))
        << name << ": max difference "
        << (over_gloo.parameters[i].second - expected).abs().max().item<float>();
  }
  EXPECT_FALSE(std::filesystem::is_empty(dir + "/gloo"))
      << "a checkpoint written over the Gloo world";
  ASSERT_TRUE(mpi_world->barrier().ok());
  if (mpi_world->rank() == 0) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memtrain::trainer
