// memtrain-build-memory: runs a saved model over a corpus and keeps what its
// knn layers remember, as one shared memory per knn layer (every stream of
// every rank writes into it, nothing clears it) sharded over the ranks, and
// saves it as a directory that memtrain-eval --knn_memory_dir searches
// read-only (docs/KNN_MEMORY.md, "Prebuilt memories").
//
//   mpirun -np 2 memtrain-build-memory --model=runs/quickstart/model \
//       --data=runs/quickstart/data/demo.train.h5 --out=runs/quickstart/memory
//   mpirun -np 2 memtrain-eval --model=runs/quickstart/model \
//       --data=runs/quickstart/data/demo.valid.h5 --knn_memory_dir=runs/quickstart/memory
#include <filesystem>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/binary.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/batch_flags.h"
#include "launch/knn_memory_flags.h"
#include "launch/rank_context.h"
#include "launch/saved_model_flags.h"
#include "memory/knn_memory_store.h"
#include "trainer/memory_builder.h"

ABSL_FLAG(std::string, out, "", "Directory to create for the memory (must not exist). Required.");
ABSL_FLAG(int64_t, capacity_per_rank, 0,
          "Entries each rank keeps per knn layer (the oldest are evicted beyond it); 0: room for "
          "the whole "
          "corpus (or --steps of it).");
ABSL_FLAG(int64_t, steps, 0, "Batches per rank to read; 0: the whole corpus.");

namespace memtrain {
namespace {

absl::Status Run(int argc, char** argv) {
  trainer::BuildMemoryOptions options;
  options.out = absl::GetFlag(FLAGS_out);
  if (options.out.empty()) return absl::InvalidArgumentError("--out is required");
  options.capacity_per_rank = absl::GetFlag(FLAGS_capacity_per_rank);
  options.max_steps = absl::GetFlag(FLAGS_steps);
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("capacity_per_rank", options.capacity_per_rank, 0));
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("steps", options.max_steps, 0));
  MEMTRAIN_ASSIGN_OR_RETURN(const memory::KnnMemorySetup setup, launch::KnnMemorySetupFromFlags());
  options.backend = setup.backend;
  data::BatchSourceOptions source_options;
  MEMTRAIN_RETURN_IF_ERROR(launch::ApplyBatchShapeFlags(&source_options));
  MEMTRAIN_ASSIGN_OR_RETURN(launch::RankContext rank,
                            launch::StartRank(&argc, &argv, "[build-memory]"));
  const bool lead = rank.world->rank() == 0;
  MEMTRAIN_ASSIGN_OR_RETURN(launch::ModelAndData opened,
                            launch::OpenModelAndDataFromFlags(rank.device.device));
  LOG_IF(INFO, lead) << absl::StrFormat(
      "[build-memory] %s over %s: %d x %d tokens per step and rank, %d rank(s), knn layers %s, "
      "backend %s",
      opened.model_dir, opened.data_path, source_options.streams, source_options.segment_length,
      rank.world->size(), absl::StrJoin(model::KnnLayers(opened.model.info.options), ","),
      options.backend);
  MEMTRAIN_ASSIGN_OR_RETURN(
      const trainer::BuiltMemory built,
      trainer::BuildKnnMemory(opened.model, opened.data_path, source_options, options, *rank.world,
                              rank.device.device, /*report_progress=*/lead));
  if (!lead) return absl::OkStatus();
  const int64_t capacity = built.info.memory.capacity * built.info.ranks;
  for (const auto& [layer, entries] : built.info.entries) {
    std::cout << absl::StrFormat(
                     "[build-memory] decoder.%d: %d entries (of %d tokens; capacity %d over %d "
                     "rank(s))",
                     layer, entries, built.info.corpus_tokens, capacity, built.info.ranks)
              << std::endl;
  }
  std::cout << absl::StrFormat("[build-memory] wrote %s; corpus ppl while building %.3f",
                               options.out, built.totals.perplexity())
            << std::endl;
  return absl::OkStatus();
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(
      argc, argv,
      "Builds a shared kNN memory from a corpus with a saved lm model (one per knn layer, "
      "sharded over the ranks) for memtrain-eval --knn_memory_dir.\n"
      "  mpirun -np 2 memtrain-build-memory --model=runs/quickstart/model "
      "--data=demo.train.h5 --out=runs/quickstart/memory [--knn_backend=faiss_hnsw]\n"
      "The memory is always shared and sharded over the job's ranks: --knn_scope and "
      "--knn_sharded do not apply; read it with as many ranks.");
  return memtrain::RunBinary("[build-memory]", [&] { return memtrain::Run(argc, argv); });
}
