#include "memory/faiss_knn_memory.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "memory/exact_knn_memory.h"

namespace memtrain::memory {
namespace {

at::Tensor UnitRows(std::vector<int64_t> shape) {
  const at::Tensor x = at::randn(shape);
  return x / x.norm(2, -1, /*keepdim=*/true);
}

// Fraction of the exact top-k ids that `found` also returned.
double Recall(const at::Tensor& found, const at::Tensor& exact) {
  const int64_t k = exact.size(-1);
  const at::Tensor hit = found.unsqueeze(-1).eq(exact.unsqueeze(-2)).any(-2);  // [.., k]
  return hit.sum().item<double>() / static_cast<double>(exact.numel() / k * k);
}

TEST(FaissKnnMemoryTest, FlatIndexEqualsLocalIncludingEviction) {
  at::manual_seed(3);
  FaissKnnMemory faiss_memory(FaissKnnMemoryOptions(50).kind(FaissIndexKind::kFlat));
  ExactKnnMemory local(ExactKnnMemoryOptions(50));
  for (int round = 0; round < 4; ++round) {  // 80 entries: evicts, then rebuilds
    // No exact ties: FAISS may keep a newer of two equal scores at the k-th place.
    const at::Tensor keys = UnitRows({2, 20, 16}), values = at::randn({2, 20, 4});
    ASSERT_TRUE(faiss_memory.add(7, keys, values).ok());
    ASSERT_TRUE(local.add(7, keys, values).ok());
    const at::Tensor queries = UnitRows({2, 5, 16});
    auto expected = local.search(7, queries, 6);
    auto actual = faiss_memory.search(7, queries, 6);
    ASSERT_TRUE(actual.ok()) << actual.status();
    EXPECT_TRUE(at::equal(actual->ids, expected->ids)) << round;
    EXPECT_TRUE(at::equal(actual->keys, expected->keys));
    EXPECT_TRUE(at::equal(actual->values, expected->values));
    EXPECT_TRUE(at::allclose(actual->scores, expected->scores, 1e-5, 1e-5));
  }
  EXPECT_EQ(faiss_memory.size(7), 50);
  faiss_memory.clear(7);
  EXPECT_EQ(faiss_memory.search(7, UnitRows({2, 1, 16}), 3)->keys.size(2), 0);
}

TEST(FaissKnnMemoryTest, HnswRecallIsAtLeastNinetyPercentAtTheDefaults) {
  at::manual_seed(4);
  constexpr int64_t kEntries = 20000, kDim = 64, kQueries = 200, kTop = 32;
  FaissKnnMemory approximate((FaissKnnMemoryOptions(kEntries)));
  ExactKnnMemory exact{ExactKnnMemoryOptions(kEntries)};
  const at::Tensor keys = UnitRows({1, kEntries, kDim}), values = at::randn({1, kEntries, 2});
  ASSERT_TRUE(approximate.add(0, keys, values).ok());
  ASSERT_TRUE(exact.add(0, keys, values).ok());
  const at::Tensor queries = UnitRows({1, kQueries, kDim});
  auto found = approximate.search(0, queries, kTop);
  ASSERT_TRUE(found.ok()) << found.status();
  const double recall = Recall(found->ids, exact.search(0, queries, kTop)->ids);
  RecordProperty("recall", std::to_string(recall));
  EXPECT_GE(recall, 0.9);
  // Whatever it finds is reported truthfully: the keys are the ids' keys.
  EXPECT_TRUE(at::equal(found->keys[0][0][0], keys[0][found->ids[0][0][0].item<int64_t>()]));
}

TEST(FaissKnnMemoryTest, StateRoundTripsAndTheIndexIsRebuilt) {
  at::manual_seed(5);
  FaissKnnMemory memory(FaissKnnMemoryOptions(30).kind(FaissIndexKind::kFlat));
  ASSERT_TRUE(memory.add(1, UnitRows({1, 40, 8}), at::randn({1, 40, 3})).ok());
  const std::string path = ::testing::TempDir() + "/faiss_knn_memory.pt";
  ASSERT_TRUE(SaveKnnMemory(memory, path).ok());
  FaissKnnMemory loaded(FaissKnnMemoryOptions(30).kind(FaissIndexKind::kFlat));
  ASSERT_TRUE(LoadKnnMemory(loaded, path).ok());
  const at::Tensor queries = UnitRows({1, 4, 8});
  EXPECT_TRUE(at::equal(loaded.search(1, queries, 5)->ids, memory.search(1, queries, 5)->ids));
}

}  // namespace
}  // namespace memtrain::memory
