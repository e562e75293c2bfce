// File: memory/faiss_knn_memory.h
//
// `FaissKnnMemory`: a KnnMemory (memory/knn_memory.h) searched by a FAISS
// index on the CPU: IndexFlatIP (exact) or IndexHNSWFlat (approximate, for
// large memories). Built only where FAISS is found (MEMTRAIN_WITH_FAISS).
//
//   FaissKnnMemory memory(FaissKnnMemoryOptions(262144).kind(FaissIndexKind::kHnsw));
//
// The entries themselves live in an ExactKnnMemory (fp32, CPU; ring buffer,
// ids, state); FAISS holds one index per stream and group whose labels are
// the insertion ids. Eviction: FAISS indexes have no cheap removal (HNSW
// none at all), so an add that evicts marks the stream's index stale and the
// next search rebuilds it from the live entries; adds that evict nothing are
// appended at the next search. So approximate search suits memories that
// are built once and searched many times (the shared scope); the per-stream
// ring of the paper, which evicts every segment once full, is
// ExactKnnMemory's job. Hits are ordered by score, then id (ties oldest
// first), but FAISS picks among scores tied at the k-th place arbitrarily,
// so unlike ExactKnnMemory a newer tied entry may be kept there. With HNSW
// the hits are approximate (docs/KNN_MEMORY.md: recall).
#ifndef MEMTRAIN_MEMORY_FAISS_KNN_MEMORY_H_
#define MEMTRAIN_MEMORY_FAISS_KNN_MEMORY_H_

#include <torch/arg.h>

#include <memory>
#include <unordered_map>
#include <vector>

#include "memory/exact_knn_memory.h"

namespace faiss {
struct Index;
}

namespace memtrain::memory {

enum class FaissIndexKind { kFlat, kHnsw };

struct FaissKnnMemoryOptions {
  explicit FaissKnnMemoryOptions(int64_t capacity) : capacity_(capacity) {}
  TORCH_ARG(int64_t, capacity);
  TORCH_ARG(FaissIndexKind, kind) = FaissIndexKind::kHnsw;
  /// HNSW: neighbours per node (M), and the candidate lists of construction
  /// and search (efConstruction, efSearch; search uses at least k).
  TORCH_ARG(int, hnsw_neighbors) = 32;
  TORCH_ARG(int, hnsw_ef_construction) = 80;
  TORCH_ARG(int, hnsw_ef_search) = 128;
};

class FaissKnnMemory final : public KnnMemory {
 public:
  explicit FaissKnnMemory(const FaissKnnMemoryOptions& options);
  ~FaissKnnMemory() override;

  absl::Status add(int64_t stream, const at::Tensor& keys, const at::Tensor& values) override;
  /// Updates the stream's index first (logically const).
  absl::StatusOr<KnnResult> search(int64_t stream, const at::Tensor& queries,
                                   int64_t k) const override;
  void clear(int64_t stream) override;
  int64_t size(int64_t stream) const override { return entries_.size(stream); }
  /// The entries only; indexes are rebuilt at the first search.
  absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const override;
  absl::Status LoadState(const std::map<std::string, at::Tensor>& state) override;

 private:
  struct StreamIndex {
    std::vector<std::unique_ptr<faiss::Index>> groups;
    int64_t first_id = 0, next_id = 0;  // ids [first_id, next_id) are indexed
  };
  std::unique_ptr<faiss::Index> NewIndex(int64_t dim) const;
  // Brings the stream's index up to the stored entries.
  void Update(int64_t stream, StreamIndex& index) const;

  const FaissKnnMemoryOptions options_;
  ExactKnnMemory entries_;
  mutable std::unordered_map<int64_t, StreamIndex> indexes_;
};

}  // namespace memtrain::memory

#endif  // MEMTRAIN_MEMORY_FAISS_KNN_MEMORY_H_
