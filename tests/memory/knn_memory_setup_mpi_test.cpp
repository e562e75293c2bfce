// The knn layers' memories as the trainer and the tools use them
// (memory/knn_memory_setup.h, memory/knn_memory_store.h), under real mpirun
// (2 ranks): a sharded memory of scope stream trains exactly like an unsharded
// one of ranks x the capacity; a memory of scope shared built over a corpus is
// saved as a directory, read back equal, and searched as a prebuilt memory by
// evaluation (never written); the directory refuses another model, other
// layers and another group size.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "memory/knn_memory_setup.h"
#include "memory/knn_memory_store.h"
#include "memory/sharded_knn_memory.h"
#include "tests/trainer/trainer_test_support.h"
#include "trainer/evaluate.h"

namespace memtrain::memory {
namespace {

using trainer::testing::Losses;
using trainer::testing::SharedToyLm;
using trainer::testing::TinyModel;
using trainer::testing::TinyTraining;

constexpr int kSteps = 30;

TEST(KnnMemoryMpiTest, ShardedStreamMemoryTrainsLikeALocalMemoryOfRanksTimesTheCapacity) {
  auto world = memtrain::testing::NewWorld();
  if (world->size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  const std::string path = SharedToyLm(*world);
  // 30 segments of 8 tokens per stream: both memories evict long before the end.
  model::TransformerOptions sharded_model = TinyModel(), local_model = TinyModel();
  sharded_model.attention_options.knn.memory_size = 24;
  local_model.attention_options.knn.memory_size = 48;
  trainer::TrainerOptions sharded_options = TinyTraining(path, 2);
  sharded_options.knn_memory.sharded = true;
  auto sharded = trainer::Trainer::Create(sharded_options, sharded_model, *world, at::kCPU);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  const std::vector<double> sharded_losses = Losses(**sharded, kSteps);
  auto local = trainer::Trainer::Create(TinyTraining(path, 2), local_model, *world, at::kCPU);
  ASSERT_TRUE(local.ok()) << local.status();
  const std::vector<double> local_losses = Losses(**local, kSteps);
  ASSERT_EQ(sharded_losses.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(local_losses.size(), static_cast<size_t>(kSteps));
  for (int i = 0; i < kSteps; ++i)
    EXPECT_NEAR(sharded_losses[i], local_losses[i], 1e-5) << "step " << i + 1;
  // The memory was searched: without it the losses differ.
  trainer::TrainerOptions no_memory = TinyTraining(path, 2);
  no_memory.use_memory = false;
  auto forgetful = trainer::Trainer::Create(no_memory, local_model, *world, at::kCPU);
  ASSERT_TRUE(forgetful.ok()) << forgetful.status();
  const std::vector<double> forgetful_losses = Losses(**forgetful, kSteps);
  EXPECT_GT(std::abs(forgetful_losses.back() - local_losses.back()), 1e-4);
}

// The lm task's loss totals over the whole toy corpus with `memories` (null:
// memory off), using `model` in eval mode.
trainer::LossTotals EvaluateWith(model::TransformerImpl& model, const std::string& path,
                                 parallel::Communicator& world, const KnnLayerMemories& memories,
                                 bool use_memory = true) {
  trainer::TaskOptions task_options;
  task_options.use_memory = use_memory;
  task_options.knn_memory = memories;
  auto task = trainer::MakeTask("lm", task_options);
  EXPECT_TRUE(task.ok()) << task.status();
  data::BatchSourceOptions source_options;
  source_options.rank = world.rank();
  source_options.world_size = world.size();
  source_options.streams = 2;
  source_options.segment_length = 8;
  auto source = data::OpenBatchSource(path, source_options);
  EXPECT_TRUE(source.ok()) << source.status();
  auto totals = trainer::Evaluate(model, **task, **source, world, at::kCPU, 0);
  EXPECT_TRUE(totals.ok()) << totals.status();
  return totals.ok() ? *totals : trainer::LossTotals{};
}

TEST(KnnMemoryMpiTest, ASharedMemoryBuiltOverACorpusIsSavedReadBackAndSearchedReadOnly) {
  auto world = memtrain::testing::NewWorld();
  if (world->size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  const std::string path = SharedToyLm(*world);
  at::manual_seed(3);
  model::TransformerOptions options = TinyModel();
  options.attention_options.knn.memory_size = 4096;  // per rank: the whole corpus
  auto model = model::MakeTransformer(options);
  ASSERT_TRUE(model.ok()) << model.status();

  // Build: every row of every rank writes stream 0 of one sharded memory.
  KnnMemorySetup setup;
  setup.scope = "shared";
  setup.sharded = true;
  auto shared = MakeKnnLayerMemories(setup, options.attention_options.knn.memory_size, *world);
  ASSERT_TRUE(shared.ok()) << shared.status();
  std::map<int64_t, std::shared_ptr<KnnMemory>> built;
  const trainer::LossTotals building =
      EvaluateWith(**model, path, *world, [&](int64_t layer, int64_t rows) {
        KnnLayerMemory layer_memory = (*shared)(layer, rows);
        built[layer] = layer_memory.memory;
        return layer_memory;
      });
  ASSERT_EQ(built.size(), 1u);
  ASSERT_TRUE(dynamic_cast<ShardedKnnMemory*>(built.at(1).get()) != nullptr);
  // Every target token's position was written once, on every rank's view.
  EXPECT_EQ(built.at(1)->size(0), static_cast<int64_t>(building.tokens));

  const std::string dir =
      memtrain::testing::BroadcastString(*world, trainer::testing::ToyPath("memory"));
  KnnMemoryStoreInfo info;
  info.model_sha256 = "model-a";
  info.corpus = path;
  info.corpus_tokens = static_cast<int64_t>(building.tokens);
  info.ranks = world->size();
  info.memory.capacity = options.attention_options.knn.memory_size;
  info.memory.sharded = true;
  info.entries[1] = built.at(1)->size(0);
  ASSERT_TRUE(WriteKnnMemoryStore(dir, info, built, *world).ok());
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(dir) / "memory.json"));
  EXPECT_FALSE(std::filesystem::exists(dir + ".partial"));
  EXPECT_EQ(WriteKnnMemoryStore(dir, info, built, *world).code(), absl::StatusCode::kAlreadyExists);

  // Read back: the same neighbours for the same queries, bitwise.
  auto loaded = ReadKnnMemoryStore(dir, "model-a", {1}, *world);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const at::Tensor queries = at::randn({2, 5, 8});  // heads, queries, head width
  EXPECT_EQ(loaded->info.entries, info.entries);
  auto expected = built.at(1)->search(0, queries, 4);
  auto actual = loaded->memories.at(1)->search(0, queries, 4);
  ASSERT_TRUE(expected.ok() && actual.ok());
  EXPECT_TRUE(at::equal(actual->ids, expected->ids));
  EXPECT_TRUE(at::equal(actual->keys, expected->keys));
  EXPECT_TRUE(at::equal(actual->values, expected->values));

  // Evaluation searches it read-only: twice the same perplexity, the memory
  // unchanged, and not the perplexity without memory.
  KnnMemorySetup prebuilt;
  prebuilt.prebuilt = loaded->memories;
  auto reader = MakeKnnLayerMemories(prebuilt, options.attention_options.knn.memory_size, *world);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const double first = EvaluateWith(**model, path, *world, *reader).perplexity();
  const double second = EvaluateWith(**model, path, *world, *reader).perplexity();
  EXPECT_EQ(first, second);
  EXPECT_EQ(loaded->memories.at(1)->size(0), info.entries[1]);
  const double without =
      EvaluateWith(**model, path, *world, nullptr, /*use_memory=*/false).perplexity();
  EXPECT_GT(std::abs(first - without), 1e-6 * without);

  // Refusals, named.
  EXPECT_EQ(ReadKnnMemoryStore(dir, "model-b", {1}, *world).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadKnnMemoryStore(dir, "model-a", {0, 1}, *world).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto alone = world->split(world->rank(), 0);
  ASSERT_TRUE(alone.ok());
  const absl::Status one_rank = ReadKnnMemoryStore(dir, "model-a", {1}, **alone).status();
  EXPECT_EQ(one_rank.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(one_rank.message().find("2 ranks"), std::string::npos) << one_rank;
}

}  // namespace
}  // namespace memtrain::memory
