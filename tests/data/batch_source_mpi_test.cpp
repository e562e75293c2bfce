// BatchSource under real mpirun: each rank reads its own shard of one file,
// and the ranks' shards are disjoint and cover the epoch (checked by
// all-gathering what every rank saw).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <set>

#include "data/batch_source.h"
#include "tests/data/synthetic_corpus.h"
#include "tests/mpi_test_support.h"

namespace memtrain::data {
namespace {

// Rank 0 writes the corpus; everyone learns its path.
std::string SharedCorpus(parallel::Communicator& world, bool seq2seq) {
  std::string path;
  if (world.rank() == 0) {
    path = testing::TempPath(seq2seq ? "mpi_s2s.h5" : "mpi_lm.h5");
    std::vector<int64_t> lengths, targets;
    for (int i = 0; i < 120; ++i) {
      lengths.push_back(2 + (i * 31) % 90);
      targets.push_back(2 + (i * 11) % 40);
    }
    if (seq2seq) {
      testing::WriteSeq2SeqCorpus(path, lengths, targets);
    } else {
      testing::WriteLmCorpus(path, lengths);
    }
  }
  return memtrain::testing::BroadcastString(world, path);
}

TEST(BatchSourceMpiTest, LmShardsAreDisjointAndCoverTheEpoch) {
  auto world = memtrain::testing::NewWorld();
  const std::string path = SharedCorpus(*world, /*seq2seq=*/false);
  BatchSourceOptions options;
  options.rank = world->rank();
  options.world_size = world->size();
  options.streams = 2;
  options.segment_length = 8;
  auto source = OpenBatchSource(path, options);
  ASSERT_TRUE(source.ok()) << source.status();
  auto prefetched = Prefetch(*std::move(source));
  std::vector<int64_t> positions;
  int64_t steps = 0;
  while (true) {
    auto batch = prefetched->Next();
    ASSERT_TRUE(batch.ok()) << batch.status();
    if (!batch->has_value()) break;
    ++steps;
    const at::Tensor targets = (*batch)->targets.masked_select((*batch)->loss_mask);
    for (int64_t i = 0; i < targets.numel(); ++i) {
      positions.push_back(targets[i].item<int64_t>() - testing::kFirstId);
    }
  }
  // Same number of steps everywhere.
  at::Tensor step_count = at::full({1}, steps, at::kLong);
  at::Tensor max_steps = step_count.clone();
  ASSERT_TRUE(world->allreduce(max_steps, parallel::ReduceOp::kMax).ok());
  EXPECT_EQ(steps, max_steps.item<int64_t>());

  auto all = world->allgatherv(at::tensor(positions, at::kLong));
  ASSERT_TRUE(all.ok());
  std::multiset<int64_t> seen;
  for (const at::Tensor& piece : *all) {
    for (int64_t i = 0; i < piece.numel(); ++i) seen.insert(piece[i].item<int64_t>());
  }
  std::multiset<int64_t> expected;
  int64_t start = 0;
  for (int i = 0; i < 120; ++i) {
    const int64_t length = 2 + (i * 31) % 90;
    for (int64_t t = 1; t < length; ++t) expected.insert(start + t);
    start += length;
  }
  EXPECT_EQ(seen, expected);
}

TEST(BatchSourceMpiTest, Seq2SeqShardsAreDisjointAndCoverTheEpoch) {
  auto world = memtrain::testing::NewWorld();
  const std::string path = SharedCorpus(*world, /*seq2seq=*/true);
  BatchSourceOptions options;
  options.rank = world->rank();
  options.world_size = world->size();
  options.max_tokens = 200;
  options.max_source_length = 100;
  options.max_target_length = 100;
  auto source = OpenBatchSource(path, options);
  ASSERT_TRUE(source.ok()) << source.status();
  std::vector<int64_t> records;
  while (true) {
    auto batch = (*source)->Next();
    ASSERT_TRUE(batch.ok());
    if (!batch->has_value()) break;
    records.insert(records.end(), (*batch)->records.begin(), (*batch)->records.end());
  }
  auto all = world->allgatherv(at::tensor(records, at::kLong));
  ASSERT_TRUE(all.ok());
  std::multiset<int64_t> seen;
  for (const at::Tensor& piece : *all) {
    for (int64_t i = 0; i < piece.numel(); ++i) seen.insert(piece[i].item<int64_t>());
  }
  std::multiset<int64_t> expected;
  for (int64_t r = 0; r < 120; ++r) expected.insert(r);
  EXPECT_EQ(seen, expected);
}

}  // namespace
}  // namespace memtrain::data
