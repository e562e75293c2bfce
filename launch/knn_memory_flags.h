// File: launch/knn_memory_flags.h
//
// The flags that choose the knn layers' memories, shared by memtrain-train,
// memtrain-eval and memtrain-build-memory (docs/KNN_MEMORY.md, "Words" says
// what backend, sharded and scope mean):
//   --knn_backend=exact|exact_bf16|faiss_flat|faiss_hnsw   how a memory stores and searches
//   --knn_sharded      each memory partitioned over the ranks (--knn_memory_size per rank)
//   --knn_scope=stream|shared                             who writes a memory, what clears it
#ifndef MEMTRAIN_LAUNCH_KNN_MEMORY_FLAGS_H_
#define MEMTRAIN_LAUNCH_KNN_MEMORY_FLAGS_H_

#include "absl/status/statusor.h"
#include "memory/knn_memory_setup.h"

namespace memtrain::launch {

/// The three flags; kInvalidArgument naming the flag for an unknown backend or scope.
absl::StatusOr<memory::KnnMemorySetup> KnnMemorySetupFromFlags();

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_KNN_MEMORY_FLAGS_H_
