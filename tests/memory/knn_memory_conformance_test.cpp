// One harness for every registered kNN memory backend (memory/knn_memory_factory.cpp),
// unsharded and sharded, as tests/model/attention_test.cpp is for the attention kinds: each test
// checks clauses of the contract in memory/knn_memory.h. A new backend gets every check by
// registering, and states in Promises() below how exact its search is.
//
// Under real mpirun: with 1 rank, every backend unsharded and sharded over the 1-rank world;
// with 2 ranks, every backend sharded over both (the unsharded ones skip: their memory is one
// process's, and the 1-rank run checks it). Each rank names streams of its own, so through a
// sharded memory each rank must see exactly what one memory of the total capacity holding only
// its own entries would. Every rank checks its own answers.
//
// Expected answers come from Reference, a brute force over the entries the test added. Entries
// and queries are small integers: exact in bf16 and float32, so every score is exact and an
// exact backend must return exactly the brute force's neighbours, ties included.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "memory/knn_memory.h"
#include "memory/knn_memory_factory.h"
#include "tests/mpi_test_support.h"

namespace memtrain::memory {
namespace {

// How exact a backend's search is (the backends' headers say why).
enum class Exactness {
  /// The top-k of the brute force, ties oldest first even at the k-th place.
  kExact,
  /// The top-k scores, but among entries tied at the k-th place any may be kept
  /// (faiss_knn_memory.h: FAISS chooses arbitrarily there).
  kTiesAtKArbitrary,
  /// Neighbours found by a graph walk, not the top-k (HNSW; faiss_knn_memory_test measures its
  /// recall). Exempt from the top-k and tie checks; what it returns must still be true.
  kApproximate,
};

const std::map<std::string, Exactness>& Promises() {
  static const auto* promises = new std::map<std::string, Exactness>{
      {"exact", Exactness::kExact},
      {"exact_bf16", Exactness::kExact},
      {"faiss_flat", Exactness::kTiesAtKArbitrary},
      {"faiss_hnsw", Exactness::kApproximate},
  };
  return *promises;
}

struct Backend {
  std::string name;
  bool sharded = false;
};

std::vector<Backend> Backends() {
  std::vector<Backend> backends;
  for (const std::string& name : KnnBackendNames()) {
    backends.push_back({name, false});
    backends.push_back({name, true});
  }
  return backends;
}

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param.name + (info.param.sharded ? "_sharded" : "");
}

// Integers in [-4, 4]: exact in bf16, and so are their inner products in float32.
at::Tensor Integers(std::vector<int64_t> shape) { return at::randint(-4, 5, shape, at::kFloat); }

// The brute-force model of one memory: every entry added to each stream since
// it was cleared, in order (an entry's index is its insertion id), of which the
// newest `capacity` are stored.
class Reference {
 public:
  explicit Reference(int64_t capacity) : capacity_(capacity) {}

  void Add(int64_t stream, const at::Tensor& keys, const at::Tensor& values) {
    Entries& entries = streams_[stream];
    const at::Tensor k = keys.detach().to(at::kDouble), v = values.detach().to(at::kDouble);
    entries.keys = entries.keys.defined() ? at::cat({entries.keys, k}, 1) : k.clone();
    entries.values = entries.values.defined() ? at::cat({entries.values, v}, 1) : v.clone();
  }
  void Clear(int64_t stream) { streams_.erase(stream); }
  /// Entries added since the last clear: the next insertion id.
  int64_t Added(int64_t stream) const {
    auto found = streams_.find(stream);
    return found == streams_.end() ? 0 : found->second.keys.size(1);
  }
  int64_t Size(int64_t stream) const { return std::min(Added(stream), capacity_); }
  /// Every entry since the last clear, by insertion id: [G, added, dk|dv], float64.
  const at::Tensor& Keys(int64_t stream) const { return streams_.at(stream).keys; }
  const at::Tensor& Values(int64_t stream) const { return streams_.at(stream).values; }

  /// The top-k of the stored entries for `queries`: scores (float64) and ids,
  /// best first and equal scores oldest first.
  std::pair<at::Tensor, at::Tensor> Best(int64_t stream, const at::Tensor& queries,
                                         int64_t k) const {
    const int64_t first = Added(stream) - Size(stream);
    const at::Tensor stored = Keys(stream).narrow(1, first, Size(stream));
    const at::Tensor scores = at::matmul(queries.to(at::kDouble), stored.transpose(1, 2));
    // A stable sort keeps equal scores in column order, which is insertion order.
    auto [sorted, columns] = scores.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/true);
    const int64_t hits = std::min(k, Size(stream));
    return {sorted.narrow(-1, 0, hits), columns.narrow(-1, 0, hits) + first};
  }

 private:
  struct Entries {
    at::Tensor keys, values;
  };
  const int64_t capacity_;
  std::map<int64_t, Entries> streams_;
};

// Checks a search's answer against the reference, as far as `exactness` promises.
void ExpectHits(const absl::StatusOr<KnnResult>& result, const Reference& reference, int64_t stream,
                const at::Tensor& queries, int64_t k, Exactness exactness) {
  ASSERT_TRUE(result.ok()) << result.status();
  const KnnResult& found = *result;
  const int64_t groups = queries.size(0), count = queries.size(1), key_dim = queries.size(2);
  const int64_t hits = std::min(k, reference.Size(stream));
  // Grouped shapes: min(k, size) hits per query.
  ASSERT_EQ(found.keys.sizes(), at::IntArrayRef({groups, count, hits, key_dim}));
  ASSERT_EQ(found.scores.sizes(), at::IntArrayRef({groups, count, hits}));
  ASSERT_EQ(found.ids.sizes(), at::IntArrayRef({groups, count, hits}));
  ASSERT_EQ(found.ids.scalar_type(), at::kLong);
  if (hits == 0) return;
  const int64_t value_dim = reference.Values(stream).size(2);
  ASSERT_EQ(found.values.sizes(), at::IntArrayRef({groups, count, hits, value_dim}));

  // Every hit is a stored entry of the stream, and none comes twice for one query.
  const at::Tensor ids = found.ids.cpu();
  const int64_t added = reference.Added(stream), first = added - reference.Size(stream);
  ASSERT_TRUE(ids.ge(first).logical_and(ids.lt(added)).all().item<bool>())
      << "hits outside the stored ids [" << first << ", " << added << "): " << ids;
  const at::Tensor by_id = std::get<0>(ids.sort(-1));
  EXPECT_FALSE(by_id.narrow(-1, 1, hits - 1).eq(by_id.narrow(-1, 0, hits - 1)).any().item<bool>())
      << "an entry found twice for one query: " << ids;

  // The keys and values are those of the ids, in the query's own group, and
  // each score is the query's inner product with its hit's key.
  std::vector<at::Tensor> named_keys, named_values;
  for (int64_t g = 0; g < groups; ++g) {
    const at::Tensor index = ids[g].reshape(-1);
    named_keys.push_back(reference.Keys(stream)[g].index_select(0, index).view({count, hits, -1}));
    named_values.push_back(
        reference.Values(stream)[g].index_select(0, index).view({count, hits, -1}));
  }
  const at::Tensor keys = at::stack(named_keys), values = at::stack(named_values);
  EXPECT_TRUE(at::equal(found.keys.cpu().to(at::kDouble), keys)) << "keys are not the ids' keys";
  EXPECT_TRUE(at::equal(found.values.cpu().to(at::kDouble), values))
      << "values are not the ids' values";
  const at::Tensor scores = found.scores.cpu().to(at::kDouble);
  EXPECT_TRUE(at::equal(scores, (queries.to(at::kDouble).unsqueeze(2) * keys).sum(-1)))
      << "scores are not the inner products of the queries with the hits";

  // Best first; equal scores oldest first.
  if (hits > 1) {
    const at::Tensor higher = scores.narrow(-1, 0, hits - 1),
                     lower = scores.narrow(-1, 1, hits - 1);
    EXPECT_TRUE(higher.ge(lower).all().item<bool>()) << "not best first: " << scores;
    const at::Tensor older = ids.narrow(-1, 0, hits - 1).lt(ids.narrow(-1, 1, hits - 1));
    EXPECT_TRUE(higher.gt(lower).logical_or(older).all().item<bool>())
        << "equal scores not oldest first: " << ids;
  }
  if (exactness == Exactness::kApproximate) return;
  const auto [best_scores, best_ids] = reference.Best(stream, queries, k);
  EXPECT_TRUE(at::equal(scores, best_scores)) << "not the top-k scores: " << scores - best_scores;
  if (exactness == Exactness::kTiesAtKArbitrary) return;
  EXPECT_TRUE(at::equal(ids, best_ids)) << "not the top-k ids:\n"
                                        << ids << "\nexpected\n"
                                        << best_ids;
}

// Two searches' answers are bitwise the same.
void ExpectSame(const absl::StatusOr<KnnResult>& a, const absl::StatusOr<KnnResult>& b) {
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(at::equal(a->ids, b->ids));
  EXPECT_TRUE(at::equal(a->scores, b->scores));
  EXPECT_TRUE(at::equal(a->keys, b->keys));
  EXPECT_TRUE(at::equal(a->values, b->values));
}

void ExpectSameState(const absl::StatusOr<std::map<std::string, at::Tensor>>& a,
                     const absl::StatusOr<std::map<std::string, at::Tensor>>& b) {
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->size(), b->size());
  for (const auto& [name, tensor] : *a) {
    auto other = b->find(name);
    ASSERT_NE(other, b->end()) << name;
    EXPECT_EQ(tensor.scalar_type(), other->second.scalar_type()) << name;
    EXPECT_TRUE(at::equal(tensor, other->second)) << name;
  }
}

class KnnMemoryConformanceTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    auto promise = Promises().find(GetParam().name);
    ASSERT_NE(promise, Promises().end())
        << GetParam().name << " is registered but Promises() does not say how exact it is";
    exactness_ = promise->second;
    if (GetParam().sharded) {
      world_ = memtrain::testing::NewWorld();  // collective: every rank runs the same tests
      rank_ = world_->rank();
      ranks_ = world_->size();
    } else if (memtrain::testing::Runtime().world_size() > 1) {
      GTEST_SKIP() << "unsharded: a memory of one process, checked by the 1-rank run";
    }
    at::manual_seed(17 + rank_);
  }

  // A new, empty memory holding `capacity` entries per stream in all (sharded:
  // capacity / ranks per rank, so it must divide).
  std::shared_ptr<KnnMemory> Make(int64_t capacity) {
    KnnMemorySpec spec;
    spec.backend = GetParam().name;
    spec.sharded = GetParam().sharded;
    TORCH_INTERNAL_ASSERT(capacity % ranks_ == 0, "capacity ", capacity, " over ", ranks_);
    spec.capacity = capacity / ranks_;
    auto memory = MakeKnnMemory(spec, world_.get());
    TORCH_INTERNAL_ASSERT(memory.ok(), memory.status().ToString());
    return *memory;
  }

  // This rank's stream number `s`: every rank's streams are its own.
  int64_t Stream(int64_t s) const { return 64 * s + rank_; }

  // Adds to the memory and the reference.
  void Add(KnnMemory& memory, Reference& reference, int64_t stream, const at::Tensor& keys,
           const at::Tensor& values) {
    const absl::Status added = memory.add(stream, keys, values);
    ASSERT_TRUE(added.ok()) << added;
    reference.Add(stream, keys, values);
    EXPECT_EQ(memory.size(stream), reference.Size(stream));
  }

  Exactness exactness_ = Exactness::kExact;
  std::unique_ptr<parallel::MpiCommunicator> world_;  // sharded only
  int rank_ = 0, ranks_ = 1;
};

TEST_P(KnnMemoryConformanceTest, SearchFindsTheBestEntriesOfTheQueriesGroupBestFirst) {
  auto memory = Make(64);
  Reference reference(64);
  Add(*memory, reference, Stream(0), Integers({3, 20, 4}), Integers({3, 20, 2}));
  Add(*memory, reference, Stream(0), Integers({3, 15, 4}), Integers({3, 15, 2}));
  const at::Tensor queries = Integers({3, 5, 4});
  ExpectHits(memory->search(Stream(0), queries, 6), reference, Stream(0), queries, 6, exactness_);
  // k beyond the size: every entry.
  ExpectHits(memory->search(Stream(0), queries, 100), reference, Stream(0), queries, 100,
             exactness_);
  // An unknown stream: no hits.
  ExpectHits(memory->search(Stream(7), queries, 6), reference, Stream(7), queries, 6, exactness_);
}

TEST_P(KnnMemoryConformanceTest, EqualScoresComeOldestFirst) {
  if (exactness_ == Exactness::kApproximate)
    GTEST_SKIP() << GetParam().name << " is approximate: which tied entries it finds is its own";
  auto memory = Make(6);
  Reference reference(6);
  // Entry i has key i mod 5 and value i: every key is written twice. Of the
  // ten entries the newest six stay (ids 4..9, keys 4, 0, 1, 2, 3, 4), and the
  // ring has wrapped, so the oldest is not in the first slot.
  const at::Tensor keys = at::arange(10, at::kFloat).remainder(5).view({1, 10, 1});
  const at::Tensor values = at::arange(10, at::kFloat).view({1, 10, 1});
  Add(*memory, reference, Stream(0), keys.narrow(1, 0, 7), values.narrow(1, 0, 7));
  Add(*memory, reference, Stream(0), keys.narrow(1, 7, 3), values.narrow(1, 7, 3));
  // Query +1, top 3: the two 4s, entry 4 before entry 9, then entry 8 (key 3).
  const at::Tensor up = at::ones({1, 1, 1});
  auto found = memory->search(Stream(0), up, 3);
  ExpectHits(found, reference, Stream(0), up, 3, exactness_);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_TRUE(at::equal(found->ids.view(-1).cpu(), at::tensor({4, 9, 8}, at::kLong)));
  // Query 0: all six tie; the two oldest stored entries win. (Not promised
  // by kTiesAtKArbitrary: the tie straddles the k-th place.)
  if (exactness_ == Exactness::kExact) {
    const at::Tensor zero = at::zeros({1, 1, 1});
    found = memory->search(Stream(0), zero, 2);
    ExpectHits(found, reference, Stream(0), zero, 2, exactness_);
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_TRUE(at::equal(found->ids.view(-1).cpu(), at::tensor({4, 5}, at::kLong)));
  }
}

TEST_P(KnnMemoryConformanceTest, AddEvictsTheOldestEntriesBeyondTheCapacity) {
  auto memory = Make(8);
  Reference reference(8);
  const at::Tensor queries = Integers({2, 3, 4});
  Add(*memory, reference, Stream(0), Integers({2, 5, 4}), Integers({2, 5, 3}));
  Add(*memory, reference, Stream(0), Integers({2, 6, 4}), Integers({2, 6, 3}));  // wraps
  EXPECT_EQ(memory->size(Stream(0)), 8);
  ExpectHits(memory->search(Stream(0), queries, 8), reference, Stream(0), queries, 8, exactness_);
  // More than the capacity in one add: only its newest 8 stay.
  Add(*memory, reference, Stream(0), Integers({2, 20, 4}), Integers({2, 20, 3}));
  EXPECT_EQ(memory->size(Stream(0)), 8);
  ExpectHits(memory->search(Stream(0), queries, 5), reference, Stream(0), queries, 5, exactness_);
}

TEST_P(KnnMemoryConformanceTest, NothingStoredOrReturnedCarriesAutogradHistory) {
  auto memory = Make(16);
  Reference reference(16);
  const at::Tensor keys = Integers({2, 6, 4}).requires_grad_(true);
  const at::Tensor values = Integers({2, 6, 3}).requires_grad_(true);
  Add(*memory, reference, Stream(0), keys, values);
  Add(*memory, reference, Stream(0), keys * 2, values * 2);  // with a grad_fn
  const at::Tensor queries = Integers({2, 3, 4}).requires_grad_(true);
  const auto before = memory->search(Stream(0), queries, 4);
  ASSERT_TRUE(before.ok()) << before.status();
  for (const at::Tensor& t : {before->keys, before->values, before->scores, before->ids}) {
    EXPECT_FALSE(t.requires_grad());
    EXPECT_EQ(t.grad_fn(), nullptr);
  }
  // What it stores is detached too (SaveState shows it).
  const auto state = memory->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  for (const auto& [name, tensor] : *state) {
    EXPECT_FALSE(tensor.requires_grad()) << name;
  }
  // The memory holds copies: changing the tensors it was given changes nothing.
  {
    at::NoGradGuard no_grad;
    keys.mul_(-1);
    values.add_(1);
  }
  ExpectSame(memory->search(Stream(0), queries, 4), before);
  ExpectHits(before, reference, Stream(0), queries, 4, exactness_);
}

TEST_P(KnnMemoryConformanceTest, StreamsAreIndependent) {
  auto memory = Make(16);
  Reference reference(16);
  // Each stream has its own G, dk and dv, fixed by its first add.
  Add(*memory, reference, Stream(0), Integers({2, 6, 4}), Integers({2, 6, 2}));
  Add(*memory, reference, Stream(1), Integers({1, 5, 3}), Integers({1, 5, 1}));
  const at::Tensor queries = Integers({1, 3, 3});
  const auto before = memory->search(Stream(1), queries, 3);
  ExpectHits(before, reference, Stream(1), queries, 3, exactness_);

  memory->clear(Stream(0));
  reference.Clear(Stream(0));
  EXPECT_EQ(memory->size(Stream(0)), 0);
  EXPECT_EQ(memory->size(Stream(1)), 5);
  const at::Tensor other_queries = Integers({2, 3, 4});
  ExpectHits(memory->search(Stream(0), other_queries, 3), reference, Stream(0), other_queries, 3,
             exactness_);
  ExpectSame(memory->search(Stream(1), queries, 3), before);

  // A cleared stream starts again: new shape, insertion ids from 0.
  Add(*memory, reference, Stream(0), Integers({3, 4, 2}), Integers({3, 4, 5}));
  const at::Tensor new_queries = Integers({3, 2, 2});
  ExpectHits(memory->search(Stream(0), new_queries, 3), reference, Stream(0), new_queries, 3,
             exactness_);
  ExpectSame(memory->search(Stream(1), queries, 3), before);
  EXPECT_EQ(memory->size(Stream(1)), 5);
}

TEST_P(KnnMemoryConformanceTest, BadArgumentsAreInvalidAndChangeNothing) {
  auto memory = Make(16);
  Reference reference(16);
  Add(*memory, reference, Stream(0), Integers({2, 5, 4}), Integers({2, 5, 3}));
  const at::Tensor queries = Integers({2, 3, 4});
  const auto before = memory->search(Stream(0), queries, 3);
  ExpectHits(before, reference, Stream(0), queries, 3, exactness_);

  const std::vector<std::pair<std::string, std::pair<at::Tensor, at::Tensor>>> bad_adds = {
      {"undefined", {at::Tensor(), at::Tensor()}},
      {"2-D keys", {Integers({5, 4}), Integers({2, 5, 3})}},
      {"n differs", {Integers({2, 5, 4}), Integers({2, 4, 3})}},
      {"G differs from the stream's", {Integers({1, 5, 4}), Integers({1, 5, 3})}},
      {"dk differs from the stream's", {Integers({2, 5, 5}), Integers({2, 5, 3})}},
      {"dv differs from the stream's", {Integers({2, 5, 4}), Integers({2, 5, 2})}},
  };
  for (const auto& [what, entries] : bad_adds) {
    EXPECT_EQ(memory->add(Stream(0), entries.first, entries.second).code(),
              absl::StatusCode::kInvalidArgument)
        << what;
  }
  const std::vector<std::pair<std::string, std::pair<at::Tensor, int64_t>>> bad_searches = {
      {"k = 0", {queries, 0}},
      {"undefined queries", {at::Tensor(), 3}},
      {"2-D queries", {Integers({3, 4}), 3}},
      {"dk differs from the stream's", {Integers({2, 3, 5}), 3}},
      {"G differs from the stream's", {Integers({3, 3, 4}), 3}},
  };
  for (const auto& [what, search] : bad_searches) {
    EXPECT_EQ(memory->search(Stream(0), search.first, search.second).status().code(),
              absl::StatusCode::kInvalidArgument)
        << what;
  }
  EXPECT_EQ(memory->size(Stream(0)), 5);
  ExpectSame(memory->search(Stream(0), queries, 3), before);
}

TEST_P(KnnMemoryConformanceTest, SaveStateAndLoadStateRestoreTheMemoryBitwise) {
  auto memory = Make(8);
  Reference reference(8);
  Add(*memory, reference, Stream(0), Integers({2, 6, 4}), Integers({2, 6, 3}));
  Add(*memory, reference, Stream(0), Integers({2, 7, 4}), Integers({2, 7, 3}));  // wrapped
  Add(*memory, reference, Stream(1), Integers({1, 3, 2}), Integers({1, 3, 1}));
  const std::string path = ::testing::TempDir() + "/knn_conformance." +
                           BackendName(::testing::TestParamInfo<Backend>(GetParam(), 0)) + "." +
                           std::to_string(ranks_) + ".rank" + std::to_string(rank_) + ".pt";
  ASSERT_TRUE(SaveKnnMemory(*memory, path).ok());

  // A memory of the same spec that holds something else: LoadState replaces it all.
  auto loaded = Make(8);
  ASSERT_TRUE(loaded->add(Stream(5), Integers({1, 2, 2}), Integers({1, 2, 2})).ok());
  const absl::Status status = LoadKnnMemory(*loaded, path);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(loaded->size(Stream(5)), 0);
  ExpectSameState(loaded->SaveState(), memory->SaveState());
  const at::Tensor queries0 = Integers({2, 4, 4}), queries1 = Integers({1, 4, 2});
  for (KnnMemory* m : {memory.get(), loaded.get()}) {
    EXPECT_EQ(m->size(Stream(0)), 8);
    EXPECT_EQ(m->size(Stream(1)), 3);
    ExpectHits(m->search(Stream(0), queries0, 5), reference, Stream(0), queries0, 5, exactness_);
    ExpectHits(m->search(Stream(1), queries1, 2), reference, Stream(1), queries1, 2, exactness_);
  }
  // Every later search is bitwise the same, adds included (the insertion ids
  // continue where they were). An HNSW index is rebuilt from the entries at
  // the first search, and FAISS builds HNSW graphs with threads in no fixed
  // order, so for it only the state itself is compared bitwise.
  const bool same_searches = exactness_ != Exactness::kApproximate;
  if (same_searches)
    ExpectSame(loaded->search(Stream(0), queries0, 5), memory->search(Stream(0), queries0, 5));
  const at::Tensor keys = Integers({2, 3, 4}), values = Integers({2, 3, 3});
  ASSERT_TRUE(memory->add(Stream(0), keys, values).ok());
  ASSERT_TRUE(loaded->add(Stream(0), keys, values).ok());
  reference.Add(Stream(0), keys, values);
  if (same_searches)
    ExpectSame(loaded->search(Stream(0), queries0, 5), memory->search(Stream(0), queries0, 5));
  ExpectHits(loaded->search(Stream(0), queries0, 5), reference, Stream(0), queries0, 5, exactness_);
  ExpectSameState(loaded->SaveState(), memory->SaveState());

  // A state that does not fit (keys of the wrong rank) is refused, and the
  // memory keeps what it held.
  auto state = memory->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  std::map<std::string, at::Tensor> damaged = *state;
  for (auto& [name, tensor] : damaged) {
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".keys") == 0) tensor = tensor.view(-1);
  }
  const auto kept = loaded->SaveState();
  EXPECT_EQ(loaded->LoadState(damaged).code(), absl::StatusCode::kInvalidArgument);
  ExpectSameState(loaded->SaveState(), kept);
}

INSTANTIATE_TEST_SUITE_P(Backends, KnnMemoryConformanceTest, ::testing::ValuesIn(Backends()),
                         BackendName);

}  // namespace
}  // namespace memtrain::memory
