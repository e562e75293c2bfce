// File: memory/knn_memory_factory.h
//
// A KnnMemory chosen by name (docs/KNN_MEMORY.md, "Choosing a memory"): a
// backend and whether the memory is sharded.
//
//   KnnMemorySpec spec;
//   spec.backend = "faiss_hnsw";
//   spec.capacity = 262144;  // per stream; per rank when sharded
//   spec.sharded = true;
//   MEMTRAIN_ASSIGN_OR_RETURN(std::shared_ptr<KnnMemory> memory, MakeKnnMemory(spec, &world));
//
// Backends, one table in knn_memory_factory.cpp (KnnBackendNames lists those
// of this build):
//   exact        ExactKnnMemory, fp32: exact top-k by matmul on the entries' device
//   exact_bf16   ExactKnnMemory storing bf16 (half the bytes)
//   faiss_flat   FaissKnnMemory IndexFlatIP: exact, CPU         (builds with FAISS only)
//   faiss_hnsw   FaissKnnMemory IndexHNSWFlat: approximate, CPU (builds with FAISS only)
// Sharded: a ShardedKnnMemory over `group` whose shard on each rank is the
// backend with `capacity` entries per stream, so a stream holds capacity x
// ranks; every rank must make its memories in the same order (collective).
// Unsharded: the backend itself, one process's memory.
#ifndef MEMTRAIN_MEMORY_KNN_MEMORY_FACTORY_H_
#define MEMTRAIN_MEMORY_KNN_MEMORY_FACTORY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "memory/knn_memory.h"
#include "parallel/communicator.h"

namespace memtrain::memory {

struct KnnMemorySpec {
  std::string backend = "exact";
  /// Entries per stream; per rank when sharded.
  int64_t capacity = 8192;
  /// Spread each memory over the group's ranks.
  bool sharded = false;
};

/// kInvalidArgument for an unknown backend (listing the known ones), a
/// capacity < 1, or `sharded` without a group.
absl::Status CheckKnnMemorySpec(const KnnMemorySpec& spec, const parallel::Communicator* group);

/// A new, empty memory; errors as CheckKnnMemorySpec. `group` (sharded only)
/// must outlive the memory.
absl::StatusOr<std::shared_ptr<KnnMemory>> MakeKnnMemory(const KnnMemorySpec& spec,
                                                         parallel::Communicator* group);

/// The backends of this build, in the order above.
std::vector<std::string> KnnBackendNames();

}  // namespace memtrain::memory

#endif  // MEMTRAIN_MEMORY_KNN_MEMORY_FACTORY_H_
