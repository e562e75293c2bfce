// Checkpoints under real mpirun (2 ranks): a run stopped at step k and
// resumed from its checkpoint gives, bitwise, the losses of the uninterrupted
// run at every later step (lm with the kNN memory checkpointed; translation),
// dropout on, so the RNG states must come back too. A damaged newest
// checkpoint is skipped for the previous one; a changed config is refused
// with a diff unless the change is on the safe list, and --resume=auto also
// refuses safe changes (another run's checkpoint) unless they are named.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "checkpoints/checkpoint.h"
#include "checkpoints/training_checkpoint.h"
#include "tests/mpi_test_support.h"
#include "tests/trainer/toy_corpus.h"
#include "tests/trainer/trainer_test_support.h"
#include "trainer/trainer.h"

namespace memtrain::trainer {
namespace {

using testing::Losses;

namespace fs = std::filesystem;

// Rank 0 makes a fresh directory (and a corpus in it); every rank learns it.
std::string SharedPath(parallel::Communicator& world, const std::string& name, bool lm) {
  std::string path;
  if (world.rank() == 0) {
    path = testing::ToyPath(name);
    if (lm) {
      testing::WriteToyLm(path, 40, /*seed=*/5);
    } else if (name.find(".h5") != std::string::npos) {
      testing::WriteToyReversal(path, 120, /*seed=*/6);
    } else {
      fs::remove_all(path);
    }
  }
  return memtrain::testing::BroadcastString(world, path);
}

model::TransformerOptions LmModel() {
  model::TransformerOptions o = testing::TinyModel();
  o.dropout = 0.1;  // draws from the CPU generator: its state must be restored
  o.attention_options.knn.memory_size = 24;  // the rings wrap within the run
  return o;
}

model::TransformerOptions TranslationModel() {
  model::TransformerOptions o = LmModel();
  o.encoder_layers = 1;
  o.decoder_layers = 1;
  o.layer_attention = {};
  return o;
}

TrainerOptions Training(const std::string& corpus, const std::string& checkpoints) {
  TrainerOptions o;
  o.train_data = corpus;
  o.steps = 14;
  o.batch.streams = 2;
  o.batch.segment_length = 8;
  o.batch.max_tokens = 64;
  o.batch.max_source_length = 16;
  o.batch.max_target_length = 16;
  o.lr_schedule = "inverse_sqrt";
  o.lr.lr = 1e-2;
  o.lr.warmup_steps = 4;
  o.clip_norm = 1.0;
  o.log_every = 100;
  o.bucket_mb = 4096.0 / (1 << 20);
  o.first_bucket_mb = 1024.0 / (1 << 20);
  o.unused_parameters = parallel::UnusedParameters::kZeroFill;
  o.checkpoint.dir = checkpoints;
  o.checkpoint.save_knn_memory = true;
  o.checkpoint.keep_last = 5;
  return o;
}

constexpr int kStop = 5;

// The losses of steps kStop+1..steps after stopping at kStop and resuming.
std::vector<double> ResumedLosses(parallel::Communicator& world, TrainerOptions options,
                                  const model::TransformerOptions& model) {
  {
    auto first = Trainer::Create(options, model, world, at::kCPU);
    EXPECT_TRUE(first.ok()) << first.status();
    if (!first.ok()) return {};
    Losses(**first, kStop);
    auto saved = (*first)->SaveCheckpoint();
    EXPECT_TRUE(saved.ok()) << saved.status();
  }
  options.checkpoint.resume = "auto";
  auto resumed = Trainer::Create(options, model, world, at::kCPU);
  EXPECT_TRUE(resumed.ok()) << resumed.status();
  if (!resumed.ok()) return {};
  EXPECT_EQ((*resumed)->step(), kStop);
  return Losses(**resumed, static_cast<int>(options.steps) - kStop);
}

void ExpectResumeIsBitwise(parallel::Communicator& world, const std::string& corpus,
                           const model::TransformerOptions& model) {
  TrainerOptions options = Training(corpus, SharedPath(world, "ckpt_uninterrupted", false));
  auto whole = Trainer::Create(options, model, world, at::kCPU);
  ASSERT_TRUE(whole.ok()) << whole.status();
  const std::vector<double> expected = Losses(**whole, static_cast<int>(options.steps));
  whole->reset();
  options.checkpoint.dir = SharedPath(world, "ckpt_resumed", false);
  const std::vector<double> resumed = ResumedLosses(world, options, model);
  ASSERT_EQ(resumed.size(), expected.size() - kStop);
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i], expected[kStop + i])
        << "step " << kStop + i + 1 << " on rank " << world.rank();
  }
}

TEST(CheckpointMpiTest, LmWithKnnMemoryResumesBitwise) {
  auto world = memtrain::testing::NewWorld();
  if (world->size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  ExpectResumeIsBitwise(*world, SharedPath(*world, "ckpt_lm.h5", true), LmModel());
}

TEST(CheckpointMpiTest, TranslationResumesBitwise) {
  auto world = memtrain::testing::NewWorld();
  if (world->size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  ExpectResumeIsBitwise(*world, SharedPath(*world, "ckpt_translation.h5", false),
                        TranslationModel());
}

// The memory is what makes the lm test above hard: without it the resumed
// run differs, so that test would catch a memory that is not restored.
TEST(CheckpointMpiTest, LmResumedWithoutItsMemoryDiffers) {
  auto world = memtrain::testing::NewWorld();
  if (world->size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  const std::string corpus = SharedPath(*world, "ckpt_lm_nomem.h5", true);
  TrainerOptions options = Training(corpus, SharedPath(*world, "ckpt_nomem_a", false));
  auto whole = Trainer::Create(options, LmModel(), *world, at::kCPU);
  ASSERT_TRUE(whole.ok()) << whole.status();
  const std::vector<double> expected = Losses(**whole, static_cast<int>(options.steps));
  whole->reset();
  options.checkpoint.dir = SharedPath(*world, "ckpt_nomem_b", false);
  options.checkpoint.save_knn_memory = false;
  const std::vector<double> resumed = ResumedLosses(*world, options, LmModel());
  ASSERT_FALSE(resumed.empty());
  EXPECT_NE(resumed[0], expected[kStop]);
}

TEST(CheckpointMpiTest, DamagedNewestCheckpointFallsBackToThePreviousOne) {
  auto world = memtrain::testing::NewWorld();
  if (world->size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  const std::string corpus = SharedPath(*world, "ckpt_fallback.h5", true);
  const std::string dir = SharedPath(*world, "ckpt_fallback", false);
  TrainerOptions options = Training(corpus, dir);
  {
    auto trainer = Trainer::Create(options, LmModel(), *world, at::kCPU);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    for (int save = 0; save < 3; ++save) {
      Losses(**trainer, 2);
      ASSERT_TRUE((*trainer)->SaveCheckpoint().ok());
    }
  }
  // Step 6: rank 1's file truncated (only rank 1 reads it: the ranks must
  // agree all the same). Step 4: one flipped byte in the shared weights.
  ASSERT_TRUE(world->barrier().ok());
  if (world->rank() == 0) {
    const std::string rank_file =
        checkpoints::CheckpointPath(dir, 6) + "/" + checkpoints::RankFileName(1);
    fs::resize_file(rank_file, fs::file_size(rank_file) - 10);
    std::fstream weights(checkpoints::CheckpointPath(dir, 4) + "/model.pt",
                         std::ios::in | std::ios::out | std::ios::binary);
    weights.seekp(100);
    weights.put('\x5a');
  }
  ASSERT_TRUE(world->barrier().ok());
  if (world->rank() == 1) {
    std::vector<std::string> skipped;
    auto found = checkpoints::FindNewestValid(dir, INT64_MAX, nullptr, &skipped);
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->step, 2);
    ASSERT_EQ(skipped.size(), 2u);
    EXPECT_NE(skipped[0].find(checkpoints::RankFileName(1)), std::string::npos) << skipped[0];
    EXPECT_NE(skipped[0].find("truncated"), std::string::npos) << skipped[0];
    EXPECT_NE(skipped[1].find("model.pt"), std::string::npos) << skipped[1];
    EXPECT_NE(skipped[1].find("corrupted"), std::string::npos) << skipped[1];
  }
  options.checkpoint.resume = "auto";
  auto resumed = Trainer::Create(options, LmModel(), *world, at::kCPU);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ((*resumed)->step(), 2);
}

TEST(CheckpointMpiTest, ConfigChangesAreRefusedWithADiffAndAutoRefusesAnotherRun) {
  auto world = memtrain::testing::NewWorld();
  if (world->size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  const std::string corpus = SharedPath(*world, "ckpt_config.h5", true);
  TrainerOptions options = Training(corpus, SharedPath(*world, "ckpt_config", false));
  {
    auto trainer = Trainer::Create(options, LmModel(), *world, at::kCPU);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    Losses(**trainer, 2);
    ASSERT_TRUE((*trainer)->SaveCheckpoint().ok());
  }
  options.checkpoint.resume = "auto";
  TrainerOptions changed = options;
  changed.seed = 7;
  model::TransformerOptions wider = LmModel();
  wider.ffn_dim = 48;
  auto refused = Trainer::Create(changed, wider, *world, at::kCPU);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("seed: checkpoint 1, now 7"), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("model.ffn_dim"), std::string::npos)
      << refused.status();
  // Safe changes under --resume=auto: another run (a sweep's task with
  // another lr sharing the directory) is refused, naming the fields and the path.
  TrainerOptions other_run = options;
  other_run.lr.lr = 5e-3;
  other_run.steps = 20;
  auto foreign = Trainer::Create(other_run, LmModel(), *world, at::kCPU);
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kFailedPrecondition);
  for (const char* expected :
       {"lr: checkpoint 0.01, now 0.005", "steps: checkpoint 14, now 20", "belongs to another run",
        "step-00000002", "--resume_changed=lr,steps"}) {
    EXPECT_NE(foreign.status().message().find(expected), std::string::npos)
        << expected << " not in " << foreign.status();
  }
  // Another task of a job array, with the same flags: refused as well.
  TrainerOptions other_task = options;
  other_task.job["slurm_array_task_id"] = "4";
  auto task = Trainer::Create(other_task, LmModel(), *world, at::kCPU);
  ASSERT_FALSE(task.ok());
  EXPECT_NE(task.status().message().find("slurm_array_task_id: checkpoint null, now \"4\""),
            std::string::npos)
      << task.status();
  // On purpose: the changed fields named, or the checkpoint named.
  TrainerOptions accepted_changes = other_run;
  accepted_changes.checkpoint.resume_changed = {"lr", "steps"};
  auto accepted = Trainer::Create(accepted_changes, LmModel(), *world, at::kCPU);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ((*accepted)->step(), 2);
  TrainerOptions named = other_run;
  named.checkpoint.resume = checkpoints::CheckpointPath(options.checkpoint.dir, 2);
  auto by_path = Trainer::Create(named, LmModel(), *world, at::kCPU);
  ASSERT_TRUE(by_path.ok()) << by_path.status();
  // The same command (a rerun, a requeue) resumes.
  auto same = Trainer::Create(options, LmModel(), *world, at::kCPU);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ((*same)->step(), 2);
  // Only safe options can be named.
  TrainerOptions bad_name = options;
  bad_name.checkpoint.resume_changed = {"seed"};
  EXPECT_EQ(Trainer::Create(bad_name, LmModel(), *world, at::kCPU).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memtrain::trainer
