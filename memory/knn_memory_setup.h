// File: memory/knn_memory_setup.h
//
// Which memory each `knn` layer of an lm run gets (docs/KNN_MEMORY.md,
// "Scopes"): memtrain-train, memtrain-eval and memtrain-build-memory turn
// their flags into a KnnMemorySetup (launch/knn_memory_flags.h), and the lm
// task hands the KnnLayerMemories made from it to
// TransformerImpl::NewSegmentStates.
//
//   KnnMemorySetup setup;  setup.sharded = true;  setup.scope = "shared";
//   MEMTRAIN_ASSIGN_OR_RETURN(KnnLayerMemories memories,
//                             MakeKnnLayerMemories(setup, /*capacity=*/8192, *world));
//   trainer::TaskOptions task_options;  task_options.knn_memory = memories;
//
// Scopes (memory/knn_layer_memory.h, KnnScope):
//   stream    the paper: each row is a document stream with its own memory,
//             cleared when its document starts. Sharded, rank r's row b is
//             stream r x rows + b of one memory spread over the ranks.
//   shared    one memory per layer for every row (and, sharded, every rank):
//             all rows write stream 0 and no document clears it (a cache of
//             the whole corpus; memtrain-build-memory builds one to keep).
//   prebuilt  set by `prebuilt` (memtrain-eval --knn_memory_dir), whatever
//             `scope` says: a memory read from a memtrain-build-memory
//             directory (memory/knn_memory_store.h), searched by every row as
//             stream 0 and never written or cleared.
#ifndef MEMTRAIN_MEMORY_KNN_MEMORY_SETUP_H_
#define MEMTRAIN_MEMORY_KNN_MEMORY_SETUP_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "memory/knn_layer_memory.h"
#include "memory/knn_memory.h"
#include "memory/knn_memory_factory.h"
#include "parallel/communicator.h"

namespace memtrain::memory {

/// The options of KnnMemorySetup a user sets, as X(name, member, help): the
/// flags of that name (launch/knn_memory_flags.cpp) and the names
/// memtrain-train's checkpoints record them under (trainer/trainer_options.h).
// clang-format off
#define MEMTRAIN_KNN_MEMORY_OPTIONS(X)                                                           \
  X(knn_backend, backend,                                                                       \
    absl::StrCat("knn layers: the memory's backend, how it stores and searches its entries: ",  \
                 absl::StrJoin(::memtrain::memory::KnnBackendNames(), ", "),                     \
                 " (docs/KNN_MEMORY.md; exact: matmul + top-k in fp32; exact_bf16: bf16 "        \
                 "storage; faiss_flat: exact, CPU; faiss_hnsw: approximate, CPU, for memories " \
                 "searched more often than they change; FAISS ones only in builds with FAISS)."))\
  X(knn_sharded, sharded,                                                                       \
    "knn layers: shard each memory, i.e. partition its entries over the ranks "                 \
    "(--knn_memory_size entries per stream on each rank, so a stream holds that x ranks); "     \
    "searches and writes become collective. Unsharded, each rank has memories of its own.")     \
  X(knn_scope, scope,                                                                           \
    absl::StrCat("knn layers: the memory's scope, who writes it and what clears it: ",          \
                 absl::StrJoin(::memtrain::memory::KnnScopeNames(), ", "),                       \
                 " (stream, the paper: each row's document stream has its own memory, cleared " \
                 "when its document starts; shared: one memory for all rows, and all ranks "    \
                 "when sharded, never cleared). memtrain-eval --knn_memory_dir makes it "       \
                 "prebuilt (searched, never written)."))
// clang-format on

struct KnnMemorySetup {
  std::string backend = "exact";  ///< memory/knn_memory_factory.h (--knn_backend)
  /// Spread each layer's memory over the group (--knn_sharded): `capacity`
  /// entries per stream on every rank, so a stream holds that x ranks.
  bool sharded = false;
  std::string scope = "stream";  ///< stream or shared (--knn_scope)
  /// Decoder layer -> its prebuilt memory (ReadKnnMemoryStore); when not
  /// empty, every knn layer's scope is prebuilt. Empty: every memory starts
  /// empty.
  std::map<int64_t, std::shared_ptr<KnnMemory>> prebuilt;
};

/// The scopes --knn_scope accepts, in the order above (prebuilt is not one:
/// `prebuilt` chooses it).
std::vector<std::string> KnnScopeNames();

/// The memories for `setup` over `group` (which must outlive them), with
/// `capacity` entries per stream (per rank when sharded; the model's
/// knn.memory_size). Everything that can fail is checked here (backend,
/// capacity, scope): the memories themselves cannot. kInvalidArgument naming
/// the bad value. Every rank must ask for the same layers in the same order
/// (sharded memories are collective); TransformerImpl::NewSegmentStates does.
absl::StatusOr<KnnLayerMemories> MakeKnnLayerMemories(const KnnMemorySetup& setup, int64_t capacity,
                                                      parallel::Communicator& group);

}  // namespace memtrain::memory

#endif  // MEMTRAIN_MEMORY_KNN_MEMORY_SETUP_H_
