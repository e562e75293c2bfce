// ShardedKnnMemory under real mpirun (2 and 4 ranks): every rank checks that
// the sharded memory answers exactly what one ExactKnnMemory of the total
// capacity, fed the union of all ranks' entries in rank order, answers.
#include "memory/sharded_knn_memory.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <vector>

#include "memory/exact_knn_memory.h"
#include "tests/mpi_test_support.h"

namespace memtrain::memory {
namespace {

constexpr int64_t kGroups = 2, kKeyDim = 6, kValueDim = 3;

std::unique_ptr<ShardedKnnMemory> NewSharded(parallel::Communicator& group,
                                             int64_t shard_capacity) {
  return std::make_unique<ShardedKnnMemory>(
      group, std::make_unique<ExactKnnMemory>(ExactKnnMemoryOptions(shard_capacity)),
      shard_capacity);
}

void ExpectSame(const KnnResult& sharded, const KnnResult& local) {
  ASSERT_EQ(sharded.ids.sizes(), local.ids.sizes());
  EXPECT_TRUE(at::equal(sharded.ids.cpu(), local.ids));
  // A matmul over a shard (or on a GPU) may round differently from one over the union.
  EXPECT_TRUE(at::allclose(sharded.scores.cpu(), local.scores, /*rtol=*/1e-5, /*atol=*/1e-5));
  EXPECT_TRUE(at::equal(sharded.keys.cpu(), local.keys));
  EXPECT_TRUE(at::equal(sharded.values.cpu(), local.values));
}

// One round: every rank adds `counts[r]` entries to `streams[r]` (the same
// random entries are drawn on every rank, so each knows the union), then
// searches its stream with its own queries; the reference sees the union.
void AddAndCompare(parallel::Communicator& world, ShardedKnnMemory& sharded,
                   ExactKnnMemory& reference, const std::vector<int64_t>& streams,
                   const std::vector<int64_t>& counts, int64_t k,
                   const c10::Device& device = c10::kCPU) {
  const int me = world.rank();
  at::Tensor my_keys, my_values;
  for (int r = 0; r < world.size(); ++r) {
    // Half the keys are duplicates of another, so scores tie.
    const at::Tensor half = at::randn({kGroups, (counts[r] + 1) / 2, kKeyDim});
    const at::Tensor keys = at::cat({half, half}, 1).narrow(1, 0, counts[r]);
    const at::Tensor values = at::randn({kGroups, counts[r], kValueDim});
    ASSERT_TRUE(reference.add(streams[r], keys, values).ok());
    if (r == me) my_keys = keys, my_values = values;
  }
  ASSERT_TRUE(sharded.add(streams[me], my_keys.to(device), my_values.to(device)).ok());
  at::Tensor my_queries;
  for (int r = 0; r < world.size(); ++r) {
    const at::Tensor queries = at::randn({kGroups, 3 + r, kKeyDim});
    if (r == me) my_queries = queries;
  }
  auto found = sharded.search(streams[me], my_queries.to(device), k);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->keys.device(), device);
  ExpectSame(*found, *reference.search(streams[me], my_queries, k));
  EXPECT_EQ(sharded.size(streams[me]), reference.size(streams[me]));
}

TEST(ShardedKnnMemoryTest, OneSharedStreamEqualsLocalOnTheUnion) {
  auto world = testing::NewWorld();
  const int ranks = world->size();
  constexpr int64_t kShardCapacity = 16;
  auto sharded = NewSharded(*world, kShardCapacity);
  ExactKnnMemory reference(ExactKnnMemoryOptions(kShardCapacity * ranks));
  EXPECT_EQ(sharded->capacity(), kShardCapacity * ranks);
  at::manual_seed(11);
  const std::vector<int64_t> streams(static_cast<size_t>(ranks), 0);
  std::vector<int64_t> counts;
  for (int r = 0; r < ranks; ++r) counts.push_back(1 + 3 * r);  // unequal shares
  for (int round = 0; round < 8; ++round) {                     // enough to wrap every ring
    AddAndCompare(*world, *sharded, reference, streams, counts, /*k=*/5);
  }
  EXPECT_EQ(sharded->size(0), kShardCapacity * ranks);  // capacity grows with the ranks
  // More than k entries tie exactly: the oldest win, as in the reference.
  const at::Tensor zeros = at::zeros({kGroups, 2, kKeyDim});
  ExpectSame(*sharded->search(0, zeros, 7), *reference.search(0, zeros, 7));
}

TEST(ShardedKnnMemoryTest, PerRankStreamsWithClearsEqualLocal) {
  auto world = testing::NewWorld();
  const int ranks = world->size(), me = world->rank();
  auto sharded = NewSharded(*world, 8);
  ExactKnnMemory reference(ExactKnnMemoryOptions(8 * ranks));
  at::manual_seed(12);
  std::vector<int64_t> streams, counts;
  for (int r = 0; r < ranks; ++r) streams.push_back(100 + r), counts.push_back(5);
  for (int round = 0; round < 6; ++round) {
    if (round == 3) {
      // Rank 0's document ends: its stream is cleared everywhere by the next call.
      if (me == 0) sharded->clear(streams[0]);
      reference.clear(streams[0]);
      EXPECT_EQ(sharded->size(streams[me]), reference.size(streams[me]));
    }
    AddAndCompare(*world, *sharded, reference, streams, counts, /*k=*/4);
  }
  // A stream no rank added to is empty everywhere.
  auto empty = sharded->search(999, at::randn({kGroups, 2, kKeyDim}), 3);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->keys.size(2), 0);
}

TEST(ShardedKnnMemoryTest, BadArgumentsOnOneRankFailTheCallOnAll) {
  auto world = testing::NewWorld();
  auto sharded = NewSharded(*world, 8);
  ASSERT_TRUE(
      sharded->add(0, at::randn({kGroups, 2, kKeyDim}), at::randn({kGroups, 2, kValueDim})).ok());
  const int64_t dim = world->rank() == 1 ? kKeyDim + 1 : kKeyDim;  // rank 1 is wrong
  const absl::Status status =
      sharded->add(0, at::randn({kGroups, 2, dim}), at::randn({kGroups, 2, kValueDim}));
  EXPECT_EQ(status.code(),
            world->rank() == 1 ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kAborted)
      << status;
  EXPECT_EQ(sharded->size(0), 2 * world->size());  // unchanged
  auto found = sharded->search(0, at::randn({kGroups, 1, kKeyDim}), world->rank() == 0 ? 0 : 2);
  EXPECT_EQ(found.status().code(),
            world->rank() == 0 ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kAborted);
  EXPECT_TRUE(sharded->search(0, at::randn({kGroups, 1, kKeyDim}), 2).ok());  // still in step
}

TEST(ShardedKnnMemoryTest, EachRankSavesAndLoadsItsShard) {
  auto world = testing::NewWorld();
  at::manual_seed(13 + world->rank());
  auto sharded = NewSharded(*world, 8);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        sharded->add(0, at::randn({kGroups, 7, kKeyDim}), at::randn({kGroups, 7, kValueDim})).ok());
  }
  const std::string path = ::testing::TempDir() + "/sharded_knn." + std::to_string(world->size()) +
                           ".rank" + std::to_string(world->rank()) + ".pt";
  ASSERT_TRUE(SaveKnnMemory(*sharded, path).ok());
  auto loaded = NewSharded(*world, 8);
  ASSERT_TRUE(LoadKnnMemory(*loaded, path).ok());
  EXPECT_EQ(loaded->size(0), sharded->size(0));
  const at::Tensor queries = at::randn({kGroups, 4, kKeyDim});
  auto expected = sharded->search(0, queries, 6);
  auto actual = loaded->search(0, queries, 6);
  ASSERT_TRUE(expected.ok() && actual.ok());
  ExpectSame(*actual, *expected);
  // Adding continues the insertion ids where the saved memory left them.
  const at::Tensor keys = at::randn({kGroups, 3, kKeyDim}),
                   values = at::randn({kGroups, 3, kValueDim});
  ASSERT_TRUE(sharded->add(0, keys, values).ok());
  ASSERT_TRUE(loaded->add(0, keys, values).ok());
  ExpectSame(*loaded->search(0, queries, 6), *sharded->search(0, queries, 6));
  // Another shard capacity does not fit.
  auto other = NewSharded(*world, 9);
  EXPECT_EQ(LoadKnnMemory(*other, path).code(), absl::StatusCode::kInvalidArgument);
}

// CUDA keys and queries over the NCCL world (parallel/world.h): the same
// answers as the CPU reference, results left on the GPU. Skips without a GPU
// (scripts/gpu-check runs it).
TEST(ShardedKnnMemoryTest, CudaEntriesOverNcclEqualLocalOnTheUnion_CUDA) {
  if (const std::string reason = testing::NoGpuPerRankReason(); !reason.empty())
    GTEST_SKIP() << reason;
  c10::Device gpu = c10::kCUDA;
  auto world = testing::NewGpuWorld(&gpu);
  const int ranks = world->size();
  constexpr int64_t kShardCapacity = 16;
  auto sharded = NewSharded(*world, kShardCapacity);
  ExactKnnMemory reference(ExactKnnMemoryOptions(kShardCapacity * ranks));
  at::manual_seed(11);
  const std::vector<int64_t> streams(static_cast<size_t>(ranks), 0);
  std::vector<int64_t> counts;
  for (int r = 0; r < ranks; ++r) counts.push_back(1 + 3 * r);
  for (int round = 0; round < 8; ++round) {
    AddAndCompare(*world, *sharded, reference, streams, counts, /*k=*/5, gpu);
  }
}

}  // namespace
}  // namespace memtrain::memory
