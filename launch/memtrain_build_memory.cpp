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
#include "trainer/evaluate.h"

ABSL_FLAG(std::string, out, "", "Directory to create for the memory (must not exist). Required.");
ABSL_FLAG(int64_t, capacity_per_rank, 0,
          "Entries each rank keeps per knn layer (the oldest are evicted beyond it); 0: room for "
          "the whole "
          "corpus (or --steps of it).");
ABSL_FLAG(int64_t, steps, 0, "Batches per rank to read; 0: the whole corpus.");

namespace memtrain {
namespace {

absl::Status Run(int argc, char** argv) {
  MEMTRAIN_ASSIGN_OR_RETURN(launch::RankContext rank,
                            launch::StartRank(&argc, &argv, "[build-memory]"));
  parallel::Communicator& world = *rank.world;
  const bool lead = world.rank() == 0;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return absl::InvalidArgumentError("--out is required");
  if (std::filesystem::exists(out)) {
    return absl::AlreadyExistsError(
        absl::StrCat("--out=", out, " exists; choose another or remove it"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(launch::ModelAndData opened,
                            launch::OpenModelAndDataFromFlags(rank.device.device));
  checkpoints::LoadedModel& loaded = opened.model;
  if (loaded.info.task != "lm") {
    return absl::FailedPreconditionError(absl::StrCat(
        "--model is a ", loaded.info.task, " model; kNN memories are built by lm models"));
  }
  const std::vector<int64_t> layers = model::KnnLayers(loaded.info.options);
  if (layers.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--model=", opened.model_dir, " has no knn layer (memtrain-train --knn_layers)"));
  }
  data::BatchSourceOptions source_options;
  source_options.rank = world.rank();
  source_options.world_size = world.size();
  MEMTRAIN_RETURN_IF_ERROR(launch::ApplyBatchShapeFlags(&source_options));
  MEMTRAIN_ASSIGN_OR_RETURN(auto source, data::OpenBatchSource(opened.data_path, source_options));
  const int64_t steps = trainer::EvaluationSteps(*source, absl::GetFlag(FLAGS_steps));

  // One shared memory per knn layer, sharded over the world; the model's
  // per-stream size gives way to the capacity asked for.
  MEMTRAIN_ASSIGN_OR_RETURN(memory::KnnMemorySetup setup, launch::KnnMemorySetupFromFlags());
  setup.scope = "shared";
  setup.sharded = true;
  int64_t capacity = absl::GetFlag(FLAGS_capacity_per_rank);
  if (capacity == 0)
    capacity = std::max<int64_t>(1, steps * source_options.streams * source_options.segment_length);
  MEMTRAIN_ASSIGN_OR_RETURN(const memory::KnnLayerMemories shared,
                            memory::MakeKnnLayerMemories(setup, capacity, world));
  std::map<int64_t, std::shared_ptr<memory::KnnMemory>> memories;
  trainer::TaskOptions task_options;
  task_options.knn_memory = [&](int64_t layer, int64_t rows) {
    memory::KnnLayerMemory layer_memory = shared(layer, rows);
    memories[layer] = layer_memory.memory;
    return layer_memory;
  };
  MEMTRAIN_ASSIGN_OR_RETURN(auto task, trainer::MakeTask("lm", task_options));
  LOG_IF(INFO, lead) << absl::StrFormat(
      "[build-memory] %s over %s: %d step(s) of %d x %d tokens per rank, %d rank(s), knn layers "
      "%s, "
      "backend %s, %d entries per rank and layer",
      opened.model_dir, opened.data_path, steps, source_options.streams,
      source_options.segment_length, world.size(), absl::StrJoin(layers, ","), setup.backend,
      capacity);
  std::unique_ptr<ProgressReporter> progress;
  if (lead)
    progress = std::make_unique<ProgressReporter>("[build-memory] segments", steps,
                                                  ProgressReporter::Unit::kItems);
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::LossTotals totals,
                            trainer::Evaluate(*loaded.model, *task, *source, world,
                                              rank.device.device, steps, progress.get()));

  memory::KnnMemoryStoreInfo info;
  info.model_sha256 = loaded.weights_sha256;
  info.corpus = opened.data_path;
  info.corpus_tokens = static_cast<int64_t>(totals.tokens);
  info.ranks = world.size();
  info.memory.backend = setup.backend;
  info.memory.capacity = capacity;
  info.memory.sharded = true;
  for (const auto& [layer, memory] : memories) info.entries[layer] = memory->size(0);
  MEMTRAIN_RETURN_IF_ERROR(memory::WriteKnnMemoryStore(out, info, memories, world));
  if (lead) {
    for (const auto& [layer, entries] : info.entries) {
      std::cout << absl::StrFormat(
                       "[build-memory] decoder.%d: %d entries (of %d tokens; capacity %d over %d "
                       "rank(s))",
                       layer, entries, info.corpus_tokens, capacity * world.size(), world.size())
                << std::endl;
    }
    std::cout << absl::StrFormat("[build-memory] wrote %s; corpus ppl while building %.3f", out,
                                 totals.perplexity())
              << std::endl;
  }
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
