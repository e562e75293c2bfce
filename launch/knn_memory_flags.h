// File: launch/knn_memory_flags.h
//
// The flags that choose the knn layers' memories, shared by memtrain-train,
// memtrain-eval and memtrain-build-memory (docs/KNN_MEMORY.md):
//   --knn_backend=exact|exact_bf16|faiss_flat|faiss_hnsw
//   --knn_sharded      spread each memory over the ranks (--knn_memory_size per rank)
//   --knn_scope=stream|shared
#ifndef MEMTRAIN_LAUNCH_KNN_MEMORY_FLAGS_H_
#define MEMTRAIN_LAUNCH_KNN_MEMORY_FLAGS_H_

#include "absl/status/statusor.h"
#include "trainer/knn_memory_setup.h"

namespace memtrain::launch {

/// The three flags; kInvalidArgument naming the flag for an unknown backend or scope.
absl::StatusOr<trainer::KnnMemorySetup> KnnMemorySetupFromFlags();

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_KNN_MEMORY_FLAGS_H_
