// File: parallel/local_knn_memory.h
//
// `LocalKnnMemory`: the single-process KnnMemory (parallel/knn_memory.h).
// Exact search (one matmul + topk on the device the entries live on) over a
// fixed-capacity ring buffer per stream: once full, each add overwrites the
// oldest entries (FIFO). Unlike a FAISS index nothing needs rebuilding on
// eviction (ATTENTION.md §7(d)).
//
//   LocalKnnMemory memory(LocalKnnMemoryOptions(8192));
//   MEMTRAIN_RETURN_IF_ERROR(memory.add(0, keys, values));
//
// A stream's buffers ([G, capacity, dk] and [G, capacity, dv], on the device
// of its first add, in `storage_dtype` or else the dtype of its first add) are
// allocated at its first add and freed by clear. bf16 storage halves the
// memory and the search's matmul cost; its rounded scores may reorder
// near-ties (docs/KNN_MEMORY.md).
#ifndef MEMTRAIN_PARALLEL_LOCAL_KNN_MEMORY_H_
#define MEMTRAIN_PARALLEL_LOCAL_KNN_MEMORY_H_

#include <c10/util/Optional.h>
#include <torch/arg.h>

#include <string>
#include <unordered_map>
#include <utility>

#include "parallel/knn_memory.h"

namespace memtrain::parallel {

struct LocalKnnMemoryOptions {
  explicit LocalKnnMemoryOptions(int64_t capacity) : capacity_(capacity) {}
  /// Entries kept per stream (per group); the paper's |M|, 1,536 to 262,144.
  TORCH_ARG(int64_t, capacity);
  /// The dtype entries are stored and searched in (e.g. at::kBFloat16);
  /// unset: the dtype of the stream's first add.
  TORCH_ARG(c10::optional<at::ScalarType>, storage_dtype) = c10::nullopt;
};

class LocalKnnMemory final : public KnnMemory {
 public:
  /// Throws (TORCH_CHECK) for a capacity < 1.
  explicit LocalKnnMemory(const LocalKnnMemoryOptions& options);

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

 private:
  struct Ring {
    at::Tensor keys, values;  // [G, capacity, dk|dv], no autograd history
    int64_t next = 0;         // slot the next entry goes to
    int64_t count = 0;        // valid entries: slots [0, count) until full
    int64_t added = 0;        // entries added since the stream was cleared
    // Insertion id (KnnResult::ids) of the entry in each slot [count].
    at::Tensor SlotIds(int64_t capacity) const;
  };
  const LocalKnnMemoryOptions options_;
  std::unordered_map<int64_t, Ring> streams_;
};

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_LOCAL_KNN_MEMORY_H_
