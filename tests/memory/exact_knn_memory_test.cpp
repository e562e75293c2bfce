#include "memory/exact_knn_memory.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

namespace memtrain::memory {
namespace {

at::Tensor Random(std::vector<int64_t> shape) { return at::randn(shape, at::kDouble); }

// The ids of the entries a result holds: values are [id] per entry.
std::vector<int64_t> Ids(const at::Tensor& values) {
  const at::Tensor flat = values.reshape({-1}).to(at::kLong);
  std::vector<int64_t> ids(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(ExactKnnMemoryTest, SearchIsTheExactTopKOfBruteForce) {
  at::manual_seed(7);
  ExactKnnMemory memory(ExactKnnMemoryOptions(100));
  const at::Tensor keys = Random({3, 40, 8}), values = Random({3, 40, 5});
  ASSERT_TRUE(memory.add(4, keys.slice(1, 0, 25), values.slice(1, 0, 25)).ok());
  ASSERT_TRUE(memory.add(4, keys.slice(1, 25), values.slice(1, 25)).ok());
  const at::Tensor queries = Random({3, 6, 8});
  auto result = memory.search(4, queries, 7);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->keys.sizes(), at::IntArrayRef({3, 6, 7, 8}));
  ASSERT_EQ(result->values.sizes(), at::IntArrayRef({3, 6, 7, 5}));
  for (int64_t g = 0; g < 3; ++g) {
    for (int64_t i = 0; i < 6; ++i) {
      // Brute force: every score, sorted by hand.
      std::vector<std::pair<double, int64_t>> all;
      for (int64_t j = 0; j < 40; ++j) {
        all.emplace_back(at::dot(queries[g][i], keys[g][j]).item<double>(), j);
      }
      std::sort(all.rbegin(), all.rend());
      for (int64_t r = 0; r < 7; ++r) {
        const int64_t j = all[static_cast<size_t>(r)].second;
        EXPECT_NEAR(result->scores[g][i][r].item<double>(), all[static_cast<size_t>(r)].first,
                    1e-12);
        EXPECT_TRUE(at::equal(result->keys[g][i][r], keys[g][j])) << g << " " << i << " " << r;
        EXPECT_TRUE(at::equal(result->values[g][i][r], values[g][j]));
      }
    }
  }
}

TEST(ExactKnnMemoryTest, FewerEntriesThanKReturnsAllOfThem) {
  ExactKnnMemory memory(ExactKnnMemoryOptions(10));
  ASSERT_TRUE(memory.add(0, Random({1, 3, 4}), Random({1, 3, 2})).ok());
  auto result = memory.search(0, Random({1, 2, 4}), 32);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->keys.size(2), 3);
  auto empty = memory.search(1, Random({1, 2, 4}), 32);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->keys.size(2), 0);
}

TEST(ExactKnnMemoryTest, RingBufferEvictsTheOldestFirst) {
  ExactKnnMemory memory(ExactKnnMemoryOptions(4));
  // Entry i has value i, so the ids that survive are visible.
  auto add = [&](int64_t first, int64_t n) {
    const at::Tensor ids = at::arange(first, first + n, at::kDouble).view({1, n, 1});
    ASSERT_TRUE(memory.add(0, Random({1, n, 3}), ids).ok());
  };
  add(0, 3);
  EXPECT_EQ(memory.size(0), 3);
  add(3, 3);  // wraps: 0 and 1 evicted
  EXPECT_EQ(memory.size(0), 4);
  EXPECT_EQ(Ids(memory.search(0, Random({1, 1, 3}), 10)->values),
            (std::vector<int64_t>{2, 3, 4, 5}));
  auto [keys, values] = memory.Contents(0);
  EXPECT_TRUE(at::equal(values.view(-1), at::arange(2, 6, at::kDouble)));  // oldest first
  add(6, 9);  // more than the capacity in one add: only the newest 4 stay
  EXPECT_EQ(Ids(memory.search(0, Random({1, 1, 3}), 10)->values),
            (std::vector<int64_t>{11, 12, 13, 14}));
  EXPECT_TRUE(at::equal(memory.Contents(0).second.view(-1), at::arange(11, 15, at::kDouble)));
}

TEST(ExactKnnMemoryTest, ClearForgetsOneStreamOnly) {
  ExactKnnMemory memory(ExactKnnMemoryOptions(8));
  const at::Tensor keys = Random({2, 5, 4}), values = Random({2, 5, 3});
  ASSERT_TRUE(memory.add(0, keys, values).ok());
  ASSERT_TRUE(memory.add(1, keys * 2, values).ok());
  const at::Tensor queries = Random({2, 3, 4});
  const KnnResult before = *memory.search(1, queries, 2);
  memory.clear(0);
  EXPECT_EQ(memory.size(0), 0);
  EXPECT_EQ(memory.size(1), 5);
  EXPECT_EQ(memory.search(0, queries, 2)->keys.size(2), 0);
  const KnnResult after = *memory.search(1, queries, 2);
  EXPECT_TRUE(at::equal(before.keys, after.keys));
  EXPECT_TRUE(at::equal(before.scores, after.scores));
}

TEST(ExactKnnMemoryTest, NoGradientReachesTheMemory) {
  ExactKnnMemory memory(ExactKnnMemoryOptions(8));
  const at::Tensor keys = Random({1, 4, 3}).requires_grad_(true);
  const at::Tensor values = Random({1, 4, 2}).requires_grad_(true);
  ASSERT_TRUE(memory.add(0, keys * 1.0, values * 1.0).ok());
  const at::Tensor queries = Random({1, 2, 3}).requires_grad_(true);
  const KnnResult result = *memory.search(0, queries, 3);
  EXPECT_FALSE(result.keys.requires_grad());
  EXPECT_FALSE(result.values.requires_grad());
  EXPECT_FALSE(result.scores.requires_grad());
  EXPECT_FALSE(memory.Contents(0).first.requires_grad());
  // The stored copy is a copy: changing the source later changes nothing.
  const at::Tensor stored = memory.Contents(0).first.clone();
  {
    at::NoGradGuard no_grad;
    keys.add_(1.0);
  }
  EXPECT_TRUE(at::equal(memory.Contents(0).first, stored));
}

TEST(ExactKnnMemoryTest, BadShapesAreRefused) {
  ExactKnnMemory memory(ExactKnnMemoryOptions(8));
  EXPECT_EQ(memory.add(0, Random({1, 4, 3}), Random({1, 5, 2})).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(memory.add(0, Random({1, 4, 3}), Random({1, 4, 2})).ok());
  EXPECT_EQ(memory.add(0, Random({2, 4, 3}), Random({2, 4, 2})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(memory.search(0, Random({1, 2, 5}), 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(memory.search(0, Random({1, 2, 3}), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(memory.size(0), 4);
}

TEST(ExactKnnMemoryTest, TiesComeOldestFirstAndIdsCountInsertions) {
  ExactKnnMemory memory(ExactKnnMemoryOptions(6));
  // Keys 0..9 along one axis, the value of entry i is i; entries 0..3 are
  // evicted. Keys i and i + 5 are equal, so every score ties in pairs.
  const at::Tensor keys = at::cat({at::ones({1, 5, 1}), at::ones({1, 5, 1})}, 1) *
                          at::arange(5, at::kDouble).repeat({2}).view({1, 10, 1});
  const at::Tensor values = at::arange(10, at::kDouble).view({1, 10, 1});
  ASSERT_TRUE(memory.add(0, keys.slice(1, 0, 7), values.slice(1, 0, 7)).ok());
  ASSERT_TRUE(memory.add(0, keys.slice(1, 7), values.slice(1, 7)).ok());
  // Stored: entries 4..9 with keys 4, 0, 1, 2, 3, 4. Top-3 for query +1: the
  // two 4s (entry 4 before entry 9), then 3 (entry 8).
  const KnnResult result = *memory.search(0, at::ones({1, 1, 1}, at::kDouble), 3);
  EXPECT_TRUE(at::equal(result.values.view(-1), at::tensor({4.0, 9.0, 8.0}, at::kDouble)));
  EXPECT_TRUE(at::equal(result.ids.view(-1), at::tensor({4, 9, 8}, at::kLong)));
  // Query 0: all six scores tie, so the two oldest stored entries win (the
  // ring has wrapped: they sit in slots 4 and 5, not 0 and 1).
  const KnnResult all_tie = *memory.search(0, at::zeros({1, 1, 1}, at::kDouble), 2);
  EXPECT_TRUE(at::equal(all_tie.ids.view(-1), at::tensor({4, 5}, at::kLong)));
}

// The full search's selection reads only the blocks of 32 slots that can
// hold a hit. Against an exhaustive sort (score descending, then id
// ascending) for a wrapped ring with a partial last block (5,000 slots) and
// keys of small integers, so that scores tie within and across blocks and at
// the k-th place, in float32 and float64.
TEST(ExactKnnMemoryTest, FullSearchEqualsAnExhaustiveSortWithTies) {
  at::manual_seed(3);
  const int64_t capacity = 5000, added = 7300, groups = 2, k = 40;
  for (const at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    ExactKnnMemory memory{ExactKnnMemoryOptions(capacity)};
    const at::Tensor keys = at::randint(-2, 3, {groups, added, 4}, at::TensorOptions(dtype));
    ASSERT_TRUE(memory.add(0, keys.narrow(1, 0, 3000), at::zeros({groups, 3000, 1}, dtype)).ok());
    ASSERT_TRUE(
        memory
            .add(0, keys.narrow(1, 3000, added - 3000), at::zeros({groups, added - 3000, 1}, dtype))
            .ok());
    const at::Tensor queries = at::randint(-2, 3, {groups, 24, 4}, at::TensorOptions(dtype));
    const KnnResult found = *memory.search(0, queries, k);
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t i = 0; i < 24; ++i) {
        std::vector<std::pair<double, int64_t>> all;  // (-score, id): ascending is the order
        for (int64_t id = added - capacity; id < added; ++id) {
          all.emplace_back(-at::dot(queries[g][i], keys[g][id]).item<double>(), id);
        }
        std::sort(all.begin(), all.end());
        for (int64_t h = 0; h < k; ++h) {
          ASSERT_EQ(found.ids[g][i][h].item<int64_t>(), all[h].second)
              << "dtype " << dtype << ", group " << g << ", query " << i << ", hit " << h;
          ASSERT_EQ(found.scores[g][i][h].item<double>(), -all[h].first);
        }
      }
    }
  }
}

// float64 scores that float32 cannot hold: the k-th best is often the
// maximum of its own block, and the selection must not lose it to rounding.
TEST(ExactKnnMemoryTest, FullSearchOfFloat64ScoresEqualsAnExhaustiveSort) {
  at::manual_seed(8);
  const int64_t capacity = 4000, k = 4;  // few hits: each the maximum of its block
  ExactKnnMemory memory{ExactKnnMemoryOptions(capacity)};
  const at::Tensor keys = at::randn({1, capacity, 8}, at::kDouble);
  ASSERT_TRUE(memory.add(0, keys, at::zeros({1, capacity, 1}, at::kDouble)).ok());
  const at::Tensor queries = at::randn({1, 64, 8}, at::kDouble);
  const absl::StatusOr<KnnResult> found = memory.search(0, queries, k);
  ASSERT_TRUE(found.ok()) << found.status();
  const auto [best, index] = at::matmul(queries, keys.transpose(1, 2)).topk(k, -1);
  EXPECT_TRUE(at::equal(found->scores, best));
  EXPECT_TRUE(at::equal(found->ids, index));
}

TEST(ExactKnnMemoryTest, NanScoresAreAnErrorNotAnAnswer) {
  ExactKnnMemory memory{ExactKnnMemoryOptions(100)};
  at::Tensor keys = at::randn({1, 100, 4});
  keys[0][17][2] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(memory.add(0, keys, at::zeros({1, 100, 1})).ok());
  const absl::StatusOr<KnnResult> found = memory.search(0, at::randn({1, 3, 4}), 100);
  ASSERT_FALSE(found.ok());
  EXPECT_NE(found.status().message().find("NaN"), std::string::npos) << found.status();
}

TEST(ExactKnnMemoryTest, Bf16StorageHalvesTheEntries) {
  ExactKnnMemory memory(ExactKnnMemoryOptions(16).storage_dtype(at::kBFloat16));
  const at::Tensor keys = at::randn({2, 10, 8}), values = at::randn({2, 10, 4});
  ASSERT_TRUE(memory.add(0, keys, values).ok());
  const auto [stored_keys, stored_values] = memory.Contents(0);
  EXPECT_EQ(stored_keys.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(stored_values, values.to(at::kBFloat16)));
  const at::Tensor queries = at::randn({2, 3, 8});
  const KnnResult result = *memory.search(0, queries, 4);
  // The scores are the bf16 entries' inner products with the float32
  // queries, computed in float32.
  EXPECT_EQ(result.scores.scalar_type(), at::kFloat);
  const at::Tensor expected =
      std::get<0>(at::matmul(queries, stored_keys.to(at::kFloat).transpose(1, 2)).topk(4, -1));
  EXPECT_TRUE(at::allclose(result.scores, expected));
}

// The brute-force answer: float32 scores of every stored key, top k.
std::pair<at::Tensor, at::Tensor> BruteForce(const ExactKnnMemory& memory,
                                             const at::Tensor& queries, int64_t k) {
  const at::Tensor keys = memory.Contents(0).first.to(at::kFloat);
  return [&] {
    auto [best, index] = at::matmul(queries, keys.transpose(1, 2)).topk(k, -1);
    return std::make_pair(best, index);
  }();
}

// Large memories on a CPU with bf16 dot products: the coarse bf16 pass and
// float32 rescoring give the exact answer, for keys of unequal norms, in
// float32 and bf16 storage, and they are the path taken.
TEST(ExactKnnMemoryTest, CoarsePassGivesTheExactTopK) {
  if (!ExactKnnMemory::CoarsePassAvailable()) GTEST_SKIP() << "no AVX512-BF16/AMX-BF16 on this CPU";
  at::manual_seed(11);
  for (const at::ScalarType storage : {at::kFloat, at::kBFloat16}) {
    ExactKnnMemory memory(
        ExactKnnMemoryOptions(20000).storage_dtype(storage));  // > kCoarseMinEntries
    // Norms from 0.2 to 5: the error bound must hold for the largest.
    const at::Tensor keys = at::randn({2, 20000, 64}) * at::rand({2, 20000, 1}).mul(4.8).add(0.2);
    ASSERT_TRUE(memory.add(0, keys, at::randn({2, 20000, 3})).ok());
    const at::Tensor queries = at::randn({2, 300, 64});
    const KnnResult result = *memory.search(0, queries, 32);
    EXPECT_EQ(memory.search_counts().coarse, 1) << "the coarse pass was not taken";
    const auto [best, index] = BruteForce(memory, queries, 32);
    // The same scores; the entries are the ones the ids name; and each
    // returned entry really has its score.
    EXPECT_TRUE(at::allclose(result.scores, best, 1e-5, 1e-5));
    const auto [id_keys, id_values] = memory.EntriesById(0, result.ids);
    EXPECT_TRUE(at::equal(id_keys, result.keys));
    EXPECT_TRUE(at::equal(id_values, result.values));
    const at::Tensor rescored =
        at::matmul(queries.unsqueeze(2), result.keys.to(at::kFloat).transpose(2, 3)).squeeze(2);
    EXPECT_TRUE(at::allclose(rescored, result.scores, 1e-5, 1e-5));
    // Well separated ranks must agree id for id.
    const at::Tensor separated = (best.narrow(-1, 0, 31) - best.narrow(-1, 1, 31)).gt(1e-4);
    EXPECT_TRUE(at::equal(result.ids.narrow(-1, 0, 31).masked_select(separated),
                          index.narrow(-1, 0, 31).masked_select(separated)));
  }
}

// Near-ties that bf16 cannot order: in each of 16 groups, 100 keys (one in
// every 160 slots) whose exact scores spread over a few bf16 steps
// (1 +- 0.03), so that rounding reorders them coarsely; the answer is still
// the exact one. (bf16's wide steps make the candidate set generous: this
// data passed even with a bound 60x too narrow, so it checks exactness, not
// the tightness of the bound, which the proof in exact_knn_memory.cpp carries.)
TEST(ExactKnnMemoryTest, CoarsePassResolvesNearTiesBelowBf16Resolution) {
  if (!ExactKnnMemory::CoarsePassAvailable()) GTEST_SKIP() << "no AVX512-BF16/AMX-BF16 on this CPU";
  at::manual_seed(5);
  const int64_t groups = 16, capacity = 16384, near_count = 100;
  const at::Tensor query = at::randn({groups, 1, 64});
  const at::Tensor unit = query / query.norm(2, -1, /*keepdim=*/true);
  const at::Tensor near = unit + 0.08 * at::randn({groups, near_count, 64}) / 8.0;
  const at::Tensor near_slots = at::arange(near_count, at::kLong) * 160;
  const at::Tensor keys =
      (at::randn({groups, capacity, 64}) / 8.0).index_copy_(1, near_slots, near);
  ExactKnnMemory memory{ExactKnnMemoryOptions(capacity)};
  ASSERT_TRUE(memory.add(0, keys, at::zeros({groups, capacity, 1})).ok());
  const KnnResult found = *memory.search(0, unit, 32);
  EXPECT_EQ(memory.search_counts().coarse, 1);
  const at::Tensor exact = at::matmul(unit, near.transpose(1, 2)).squeeze(1);  // [G, near]
  const at::Tensor expected =
      near_slots.index_select(0, std::get<1>(exact.topk(32)).reshape(-1)).view({groups, 32});
  EXPECT_TRUE(at::equal(found.ids.squeeze(1), expected)) << found.ids.squeeze(1) - expected;
}

// Exact ties at the k-th place (duplicated keys) still come oldest first
// through the coarse pass.
TEST(ExactKnnMemoryTest, CoarsePassKeepsTheOrderOfTies) {
  if (!ExactKnnMemory::CoarsePassAvailable()) GTEST_SKIP() << "no AVX512-BF16/AMX-BF16 on this CPU";
  ExactKnnMemory memory(ExactKnnMemoryOptions(32768));
  // 32768 entries: 1024 distinct unit keys, each written 32 times (ids j,
  // j + 1024, ...). Key 5 as the query: its 32 copies tie at score 1, and
  // every other key scores less.
  const at::Tensor distinct = at::randn({1, 1024, 16});
  const at::Tensor unit = distinct / distinct.norm(2, -1, /*keepdim=*/true);
  ASSERT_TRUE(memory.add(0, unit.repeat({1, 32, 1}), at::zeros({1, 32768, 1})).ok());
  const KnnResult result = *memory.search(0, unit.narrow(1, 5, 1), 8);
  EXPECT_EQ(memory.search_counts().coarse, 1);
  EXPECT_TRUE(at::equal(result.ids.view(-1), at::arange(8, at::kLong) * 1024 + 5)) << result.ids;

  // Keys of unequal norms, duplicated: every query's answer is the brute
  // force's, ties oldest first (score descending, then id ascending).
  ExactKnnMemory unequal(ExactKnnMemoryOptions(32768));
  const at::Tensor scaled = distinct * at::rand({1, 1024, 1}).mul(3).add(0.5);
  ASSERT_TRUE(unequal.add(0, scaled.repeat({1, 32, 1}), at::zeros({1, 32768, 1})).ok());
  const at::Tensor queries = at::randn({1, 64, 16});
  const KnnResult found = *unequal.search(0, queries, 40);
  // The coarse pass is tried; whether it keeps few enough blocks to finish
  // (or falls back to the full pass) depends on how close the rows' runner-up
  // keys score, and on bf16 rounding that changes with the thread count: seen
  // to flip under load. Either way the answer must be the brute force's.
  EXPECT_EQ(unequal.search_counts().coarse + unequal.search_counts().coarse_fallbacks, 1);
  const at::Tensor scores = at::matmul(queries, scaled.transpose(1, 2)).squeeze(0);  // [64, 1024]
  for (int64_t i = 0; i < 64; ++i) {
    // The best distinct key takes the first 32 places (its copies, oldest
    // first), the second best the next 8.
    const at::Tensor order = std::get<1>(scores[i].topk(2));
    const at::Tensor expected =
        at::cat({at::arange(32, at::kLong) * 1024 + order[0].item<int64_t>(),
                 at::arange(8, at::kLong) * 1024 + order[1].item<int64_t>()});
    EXPECT_TRUE(at::equal(found.ids[0][i], expected)) << "query " << i << ": " << found.ids[0][i];
  }
}

TEST(ExactKnnMemoryTest, SaveStateRoundTrips) {
  ExactKnnMemory memory(ExactKnnMemoryOptions(5));
  ASSERT_TRUE(memory.add(3, Random({2, 7, 4}), Random({2, 7, 3})).ok());  // wrapped
  ASSERT_TRUE(memory.add(8, Random({2, 2, 4}), Random({2, 2, 3})).ok());
  const std::string path = ::testing::TempDir() + "/local_knn_memory.pt";
  ASSERT_TRUE(SaveKnnMemory(memory, path).ok());
  ExactKnnMemory loaded(ExactKnnMemoryOptions(5));
  ASSERT_TRUE(loaded.add(99, Random({1, 1, 1}), Random({1, 1, 1})).ok());  // replaced
  ASSERT_TRUE(LoadKnnMemory(loaded, path).ok());
  EXPECT_EQ(loaded.size(99), 0);
  for (int64_t stream : {3, 8}) {
    EXPECT_EQ(loaded.size(stream), memory.size(stream));
    EXPECT_TRUE(at::equal(loaded.Contents(stream).first, memory.Contents(stream).first));
    EXPECT_TRUE(at::equal(loaded.Contents(stream).second, memory.Contents(stream).second));
    const at::Tensor queries = Random({2, 3, 4});
    EXPECT_TRUE(
        at::equal(loaded.search(stream, queries, 4)->ids, memory.search(stream, queries, 4)->ids));
    EXPECT_TRUE(at::equal(loaded.search(stream, queries, 4)->keys,
                          memory.search(stream, queries, 4)->keys));
  }
  EXPECT_EQ(LoadKnnMemory(loaded, path + ".missing").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memtrain::memory
