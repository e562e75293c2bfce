// File: memory/knn_memory.h
//
// `KnnMemory`: the external memory of the Memorizing Transformer layer
// (ATTENTION.md §7; docs/KNN_MEMORY.md, whose "Words" section says what
// backend, sharded, scope, stream and prebuilt mean): per stream, a store of
// (key, value) pairs searched by inner product. Implementations (backends):
// ExactKnnMemory (exact_knn_memory.h), FaissKnnMemory (faiss_knn_memory.h),
// and ShardedKnnMemory (sharded_knn_memory.h), which spreads any backend over
// the ranks of a group. memory/knn_memory_factory.h makes one by name.
//
//   ExactKnnMemory memory(ExactKnnMemoryOptions(/*capacity=*/8192));
//   MEMTRAIN_RETURN_IF_ERROR(memory.add(stream, keys, values));   // [G, n, dk], [G, n, dv]
//   MEMTRAIN_ASSIGN_OR_RETURN(KnnResult hits, memory.search(stream, queries, 32));
//
// Contract (every implementation; tests/memory/knn_memory_conformance_test.cpp
// checks it for every registered backend, unsharded and sharded):
//   - Entries are grouped: keys [G, n, dk] and values [G, n, dv], where G is
//     the number of independent groups (the attention heads); group g is only
//     ever searched by queries of group g. G, dk and dv are fixed per stream by
//     its first `add`.
//   - `search(stream, queries [G, q, dk], k)` returns, for each query, the
//     min(k, size(stream)) stored entries of its group with the largest inner
//     product, best first: keys [G, q, k', dk], values [G, q, k', dv], scores
//     [G, q, k']. An empty (or unknown) stream gives k' = 0.
//   - Ties are broken deterministically: equal scores come oldest entry first
//     (the lower insertion id, KnnResult::ids), so every implementation that
//     holds the same entries returns the same neighbours in the same order.
//   - Nothing stored or returned carries autograd history: the memory keeps
//     detached copies, so no gradient ever reaches it.
//   - Streams are independent: add/clear on one never changes another.
//   - Bad arguments come back as kInvalidArgument; the memory is unchanged.
//     (A sharded memory also fails the other ranks' part of the call, with
//     kAborted when their own arguments were good.)
//   - Not thread-safe: one thread at a time per memory.
//   - State: SaveState() returns the whole contents (for a sharded memory,
//     this rank's shard) as named CPU tensors; LoadState() on a memory built
//     with the same options restores it so that every later search returns
//     bitwise the same result, and leaves the memory unchanged when the state
//     does not fit. Checkpoints store these tensors; SaveKnnMemory and
//     LoadKnnMemory put them in a file of their own.
#ifndef MEMTRAIN_MEMORY_KNN_MEMORY_H_
#define MEMTRAIN_MEMORY_KNN_MEMORY_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace memtrain::memory {

/// The order of a search's results (the contract above): whether the entry
/// (score, id) comes before (other_score, other_id), i.e. scores more or,
/// scoring the same, is older. For the implementations' own selection and
/// merge loops; `Id` may be a float type holding an integer id.
template <typename Score, typename Id>
bool ComesFirst(Score score, Id id, Score other_score, Id other_id) {
  return score > other_score || (score == other_score && id < other_id);
}

/// The neighbours of a batch of queries (shapes in the contract above).
struct KnnResult {
  at::Tensor keys;    ///< [G, q, k', dk]
  at::Tensor values;  ///< [G, q, k', dv]
  at::Tensor scores;  ///< [G, q, k'], inner products, descending along the last dim
  /// [G, q, k'] int64: each hit's insertion id, the number of entries added
  /// to its stream (all groups alike) before it since the stream was last
  /// cleared. Breaks ties and lets a sharded memory merge its shards' hits.
  at::Tensor ids;
};

class KnnMemory {
 public:
  virtual ~KnnMemory() = default;
  /// Appends `keys` [G, n, dk] / `values` [G, n, dv] to `stream`, evicting
  /// the oldest entries beyond the capacity.
  virtual absl::Status add(int64_t stream, const at::Tensor& keys, const at::Tensor& values) = 0;
  /// The top-`k` entries of `stream` for each query [G, q, dk].
  virtual absl::StatusOr<KnnResult> search(int64_t stream, const at::Tensor& queries,
                                           int64_t k) const = 0;
  /// Forgets everything stored for `stream` (a new document starts).
  virtual void clear(int64_t stream) = 0;
  /// Entries stored for `stream` (per group).
  virtual int64_t size(int64_t stream) const = 0;

  /// Named tensors (CPU) from which LoadState rebuilds this memory exactly.
  virtual absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const = 0;
  /// Replaces the whole contents with `state` (from SaveState of a memory
  /// with the same options). kInvalidArgument for a state that does not fit;
  /// the memory is then unchanged.
  virtual absl::Status LoadState(const std::map<std::string, at::Tensor>& state) = 0;
};

/// SaveState into the file `path` (a LibTorch archive); kInternal when it cannot be written.
absl::Status SaveKnnMemory(const KnnMemory& memory, const std::string& path);
/// LoadState from the file `path`; kInvalidArgument for a missing file or
/// one that does not fit `memory` (which is then unchanged).
absl::Status LoadKnnMemory(KnnMemory& memory, const std::string& path);

}  // namespace memtrain::memory

#endif  // MEMTRAIN_MEMORY_KNN_MEMORY_H_
