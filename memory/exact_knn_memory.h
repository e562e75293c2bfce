// File: memory/exact_knn_memory.h
//
// `ExactKnnMemory`: the backends `exact` and `exact_bf16` (memory/knn_memory.h;
// the name was LocalKnnMemory). Exact search (one matmul on the device the entries live on, then
// the k best per query: topk on a GPU, a block-pruned selection on the CPU; ties oldest first;
// NaN scores are an error) over a fixed-capacity ring buffer per stream: once full, each add
// overwrites the oldest entries (FIFO). Unlike a FAISS index nothing needs rebuilding on eviction
// (ATTENTION.md §7(d)).
//
//   ExactKnnMemory memory(ExactKnnMemoryOptions(8192));
//   MEMTRAIN_RETURN_IF_ERROR(memory.add(0, keys, values));
//
// A stream's buffers ([G, capacity, dk] and [G, capacity, dv], on the device
// of its first add, in `storage_dtype` or else the dtype of its first add) are
// allocated at its first add and freed by clear. Scores are the inner
// products of the queries with the stored keys computed in float32 (float64
// for float64 entries), whatever the storage; bf16 storage halves the memory.
//
// Search is exact either way. On a CPU with native bf16 dot products
// (AVX512-BF16) a large memory is searched in two passes: a bf16 matmul ranks
// every entry coarsely (4-5x the float32 matmul's speed there), and the
// entries that can still be among the k best, given a proven bound on the
// bf16 rounding error (per entry, from its key's norm), are rescored in
// float32. When too many entries stay in doubt for that to pay, the search
// falls back to the float32 matmul over every entry. float32 storage keeps a
// bf16 copy of the keys and their norms for the coarse pass (+53 % key
// memory; docs/KNN_MEMORY.md).
#ifndef MEMTRAIN_MEMORY_EXACT_KNN_MEMORY_H_
#define MEMTRAIN_MEMORY_EXACT_KNN_MEMORY_H_

#include <c10/util/Optional.h>
#include <torch/arg.h>

#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "memory/knn_memory.h"

namespace memtrain::memory {

struct ExactKnnMemoryOptions {
  explicit ExactKnnMemoryOptions(int64_t capacity) : capacity_(capacity) {}
  /// Entries kept per stream (per group); the paper's |M|, 1,536 to 262,144.
  TORCH_ARG(int64_t, capacity);
  /// The dtype entries are stored and searched in (e.g. at::kBFloat16);
  /// unset: the dtype of the stream's first add.
  TORCH_ARG(c10::optional<at::ScalarType>, storage_dtype) = c10::nullopt;
  /// Whether a large memory on a CPU with bf16 dot products is searched in
  /// two passes (and, for float32 storage, keeps the bf16 copy of its keys
  /// that needs). Off for FaissKnnMemory's entry store, which it never searches.
  TORCH_ARG(bool, coarse_pass) = true;
};

class ExactKnnMemory final : public KnnMemory {
 public:
  /// Throws (TORCH_CHECK) for a capacity < 1.
  explicit ExactKnnMemory(const ExactKnnMemoryOptions& options);

  absl::Status add(int64_t stream, const at::Tensor& keys, const at::Tensor& values) override;
  absl::StatusOr<KnnResult> search(int64_t stream, const at::Tensor& queries,
                                   int64_t k) const override;
  void clear(int64_t stream) override;
  int64_t size(int64_t stream) const override;
  /// Per stream s with entries: "<s>.keys" and "<s>.values" (oldest first,
  /// in the storage dtype) and "<s>.added" (int64 scalar: entries ever added
  /// since the last clear, which fixes the insertion ids and so the slots and
  /// the tie order). A memory of smaller capacity loads the newest entries.
  absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const override;
  absl::Status LoadState(const std::map<std::string, at::Tensor>& state) override;

  /// Everything stored for `stream`, oldest first: keys [G, size, dk] and
  /// values [G, size, dv] (undefined when empty). For checkpoints and for
  /// reference computations in tests.
  std::pair<at::Tensor, at::Tensor> Contents(int64_t stream) const;
  /// The stored entries with insertion ids `ids` [G, q, k] (KnnResult::ids;
  /// group g's ids index group g): keys [G, q, k, dk], values [G, q, k, dv].
  /// For indexes that keep ids only (FaissKnnMemory). Throws for an unknown
  /// stream; ids no longer stored give whatever replaced them.
  std::pair<at::Tensor, at::Tensor> EntriesById(int64_t stream, const at::Tensor& ids) const;
  /// Entries added to `stream` since it was cleared: the next insertion id.
  int64_t added(int64_t stream) const;
  /// {G, dk} of `stream`'s keys; {0, 0} when it holds nothing.
  std::pair<int64_t, int64_t> KeyShape(int64_t stream) const;

  /// Whether this machine's CPU has the native bf16 dot products the coarse
  /// pass needs (AVX512-BF16 or AMX-BF16).
  static bool CoarsePassAvailable();
  /// How this memory's searches went so far: answered by the coarse pass and
  /// float32 rescoring, or by the float32 matmul over every entry (small
  /// memories, no coarse pass here, or too many entries in doubt:
  /// `coarse_fallbacks` of those). For benchmarks and tests.
  struct SearchCounts {
    int64_t coarse = 0;
    int64_t full = 0;
    int64_t coarse_fallbacks = 0;
  };
  SearchCounts search_counts() const { return counts_; }

 private:
  struct Ring {
    at::Tensor keys, values;  // [G, capacity, dk|dv], no autograd history
    // bf16 keys of the coarse pass (`keys` itself for bf16 storage);
    // undefined where the coarse pass is not used.
    at::Tensor coarse_keys;
    at::Tensor key_norms;  // [G, capacity] float32 norms of the keys, with coarse_keys
    int64_t next = 0;      // slot the next entry goes to
    int64_t count = 0;     // valid entries: slots [0, count) until full
    int64_t added = 0;     // entries added since the stream was cleared
    // Insertion id (KnnResult::ids) of the entry in each slot [count].
    at::Tensor SlotIds(int64_t capacity) const;
  };
  // The coarse bf16 pass, then float32 rescoring of the entries it cannot
  // rule out; nullopt when the error bound does not separate them.
  std::optional<KnnResult> CoarseThenExactSearch(int64_t stream, const Ring& ring,
                                                 const at::Tensor& queries, int64_t hits) const;

  const ExactKnnMemoryOptions options_;
  std::unordered_map<int64_t, Ring> streams_;
  mutable SearchCounts counts_;  // search() is const; one thread at a time (knn_memory.h)
};

}  // namespace memtrain::memory

#endif  // MEMTRAIN_MEMORY_EXACT_KNN_MEMORY_H_
