// File: trainer/knn_memory_setup.h
//
// Which memories the `knn` layers of an lm run search, and how its rows use
// them (docs/KNN_MEMORY.md, "Scopes"). The trainer, memtrain-eval and
// memtrain-build-memory turn their flags into a KnnMemorySetup; the lm task
// hands the factory to TransformerImpl::NewSegmentStates.
//
//   KnnMemorySetup setup;  setup.sharded = true;  setup.scope = "shared";
//   MEMTRAIN_ASSIGN_OR_RETURN(model::KnnMemoryFactory factory,
//                             MakeKnnMemoryFactory(setup, model->options(), *world));
//   TaskOptions task_options;  task_options.knn_memory = factory;
//
// Scopes:
//   stream  the paper: each row is a document stream with its own memory,
//           cleared when its document starts. Sharded, rank r's row b is
//           stream r x rows + b of one memory spread over the ranks.
//   shared  one memory per layer for every row (and, sharded, every rank):
//           all rows write stream 0 and no document clears it (a cache of
//           the whole corpus; memtrain-build-memory builds one to keep).
// A prebuilt memory (read from a memtrain-build-memory directory) is
// searched read-only by every row, whatever the scope.
#ifndef MEMTRAIN_TRAINER_KNN_MEMORY_SETUP_H_
#define MEMTRAIN_TRAINER_KNN_MEMORY_SETUP_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/transformer.h"
#include "parallel/communicator.h"
#include "parallel/knn_memory_factory.h"

namespace memtrain::trainer {

struct KnnMemorySetup {
  std::string backend = "exact";  ///< parallel/knn_memory_factory.h
  /// Spread each layer's memory over the group: the model's knn.memory_size
  /// entries per stream on every rank, so a stream holds that x ranks.
  bool sharded = false;
  std::string scope = "stream";  ///< stream or shared
  /// Decoder layer -> a prebuilt memory to search read-only (ReadKnnMemoryStore).
  /// Empty: every memory starts empty.
  std::map<int64_t, std::shared_ptr<parallel::KnnMemory>> prebuilt;
};

/// The scopes, in the order above.
std::vector<std::string> KnnScopeNames();

/// The factory for `setup` over `group` (which must outlive it), with
/// `model`'s knn.memory_size entries per stream (per rank when sharded).
/// Everything that can fail is checked here (backend, capacity, scope): the
/// factory itself cannot. kInvalidArgument naming the bad value. Every rank must ask
/// the factory for the same layers in the same order (sharded memories are
/// collective); TransformerImpl::NewSegmentStates does.
absl::StatusOr<model::KnnMemoryFactory> MakeKnnMemoryFactory(const KnnMemorySetup& setup,
                                                             const model::TransformerOptions& model,
                                                             parallel::Communicator& group);

/// The decoder layers of `options` whose self-attention is knn.
std::vector<int64_t> KnnLayers(const model::TransformerOptions& options);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_KNN_MEMORY_SETUP_H_
