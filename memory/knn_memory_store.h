// File: memory/knn_memory_store.h
//
// A prebuilt kNN memory on disk (its scope is prebuilt: searched, never
// written): memtrain-build-memory writes one from a corpus and a saved model;
// memtrain-eval --knn_memory_dir searches it (docs/KNN_MEMORY.md, "Prebuilt
// memories"). The format is memtrain-knn-memory-1, unchanged since it left
// trainer/.
//
//   DIR/memory.json               what it holds (KnnMemoryStoreInfo)
//   DIR/layer-<i>.rank-<r>.pt     rank r's shard of knn layer i's memory (SaveKnnMemory)
//
// The memory of each layer is a ShardedKnnMemory over the writers' group, so
// a store is read by a group of the same size (each rank its own shards).
// Writing is collective and atomic (common/atomic_file.h): every rank writes
// into DIR.partial, and rank 0 adds memory.json and renames it to DIR once
// every rank's files are durable. A DIR that exists is complete; an existing
// DIR is never replaced.
#ifndef MEMTRAIN_MEMORY_KNN_MEMORY_STORE_H_
#define MEMTRAIN_MEMORY_KNN_MEMORY_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "memory/knn_memory.h"
#include "memory/knn_memory_factory.h"
#include "parallel/communicator.h"

namespace memtrain::memory {

struct KnnMemoryStoreInfo {
  std::string model_sha256;  ///< of the weights of the model that computed the keys
  std::string corpus;        ///< the corpus the entries come from
  int64_t corpus_tokens = 0;
  int ranks = 1;                       ///< the group the memory is sharded over
  KnnMemorySpec memory;                ///< backend and capacity per rank (sharded)
  std::map<int64_t, int64_t> entries;  ///< decoder layer -> entries stored
};

/// Collective over `group`: writes `memories` (decoder layer -> the layer's
/// ShardedKnnMemory over `group`) and `info` as DIR. kAlreadyExists when DIR
/// exists; any rank's failure fails every rank and leaves no DIR.
absl::Status WriteKnnMemoryStore(const std::string& dir, const KnnMemoryStoreInfo& info,
                                 const std::map<int64_t, std::shared_ptr<KnnMemory>>& memories,
                                 parallel::Communicator& group);

/// DIR/memory.json. kNotFound without it, kDataLoss when it is malformed.
absl::StatusOr<KnnMemoryStoreInfo> ReadKnnMemoryStoreInfo(const std::string& dir);

struct KnnMemoryStore {
  KnnMemoryStoreInfo info;
  std::map<int64_t, std::shared_ptr<KnnMemory>> memories;  ///< decoder layer -> memory
};

/// Collective over `group`: DIR's description and memories for the model
/// whose weights have `model_sha256` and whose knn layers are `layers`, one
/// ShardedKnnMemory per layer with this rank's shards loaded.
/// kFailedPrecondition when DIR was built by another model, for other
/// layers, or by a group of another size; kDataLoss naming a shard file that
/// is missing or does not fit.
absl::StatusOr<KnnMemoryStore> ReadKnnMemoryStore(const std::string& dir,
                                                  const std::string& model_sha256,
                                                  const std::vector<int64_t>& layers,
                                                  parallel::Communicator& group);

}  // namespace memtrain::memory

#endif  // MEMTRAIN_MEMORY_KNN_MEMORY_STORE_H_
