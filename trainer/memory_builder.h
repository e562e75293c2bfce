// File: trainer/memory_builder.h
//
// Builds a prebuilt kNN memory (docs/KNN_MEMORY.md, "prebuilt"): a saved lm
// model reads a corpus once, its knn layers writing every segment's keys and
// values into one shared memory per layer, sharded over `world`; the
// memories are then stored as a directory (memory/knn_memory_store.h) that
// memtrain-eval --knn_memory_dir searches. memtrain-build-memory is this plus
// flags and printing.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(BuiltMemory built,
//                             BuildKnnMemory(loaded, corpus, source_options, options, world,
//                             device));
#ifndef MEMTRAIN_TRAINER_MEMORY_BUILDER_H_
#define MEMTRAIN_TRAINER_MEMORY_BUILDER_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "checkpoints/model_file.h"
#include "common/progress.h"
#include "data/batch_source.h"
#include "memory/knn_memory_store.h"
#include "parallel/communicator.h"
#include "trainer/loss.h"

namespace memtrain::trainer {

struct BuildMemoryOptions {
  std::string out;                ///< the directory to create; must not exist
  std::string backend = "exact";  ///< memory/knn_memory_factory.h
  /// Entries each rank keeps per layer (the oldest evicted beyond it); 0:
  /// room for every token of the steps read.
  int64_t capacity_per_rank = 0;
  int64_t max_steps = 0;  ///< batches per rank; 0: the whole corpus
};

struct BuiltMemory {
  memory::KnnMemoryStoreInfo info;  ///< as written to `out`
  LossTotals totals;                ///< the model's loss on the corpus while building
};

/// Collective. kFailedPrecondition for a model that is not an lm or has no
/// knn layer, kAlreadyExists when `options.out` exists; otherwise reads
/// `corpus` in batches of `source_options`' shape (this rank's share of it)
/// and writes the store.
/// With `report_progress` (rank 0) a progress line with the ETA.
absl::StatusOr<BuiltMemory> BuildKnnMemory(checkpoints::LoadedModel& model,
                                           const std::string& corpus,
                                           data::BatchSourceOptions source_options,
                                           const BuildMemoryOptions& options,
                                           parallel::Communicator& world, const c10::Device& device,
                                           bool report_progress = false);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_MEMORY_BUILDER_H_
