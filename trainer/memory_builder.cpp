#include "trainer/memory_builder.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "memory/knn_memory_setup.h"
#include "trainer/evaluate.h"
#include "trainer/task.h"

namespace memtrain::trainer {

absl::StatusOr<BuiltMemory> BuildKnnMemory(checkpoints::LoadedModel& model,
                                           const std::string& corpus,
                                           data::BatchSourceOptions source_options,
                                           const BuildMemoryOptions& options,
                                           parallel::Communicator& world, const c10::Device& device,
                                           bool report_progress) {
  if (model.info.task != "lm") {
    return absl::FailedPreconditionError(absl::StrCat(
        "the model is a ", model.info.task, " model; kNN memories are built by lm models"));
  }
  if (model::KnnLayers(model.info.options).empty())
    return absl::FailedPreconditionError(
        "the model has no knn layer (memtrain-train --knn_layers)");
  if (std::filesystem::exists(options.out)) {
    return absl::AlreadyExistsError(
        absl::StrCat(options.out, " exists; choose another directory or remove it"));
  }
  source_options.rank = world.rank();
  source_options.world_size = world.size();
  MEMTRAIN_ASSIGN_OR_RETURN(auto source, data::OpenBatchSource(corpus, source_options));
  const int64_t steps = EvaluationSteps(*source, options.max_steps);
  // One shared memory per knn layer, sharded over the world; the model's
  // per-stream size gives way to the capacity asked for.
  memory::KnnMemorySetup setup;
  setup.backend = options.backend;
  setup.scope = "shared";
  setup.sharded = true;
  const int64_t capacity =
      options.capacity_per_rank > 0
          ? options.capacity_per_rank
          : std::max<int64_t>(1, steps * source_options.streams * source_options.segment_length);
  MEMTRAIN_ASSIGN_OR_RETURN(const memory::KnnLayerMemories shared,
                            memory::MakeKnnLayerMemories(setup, capacity, world));
  std::map<int64_t, std::shared_ptr<memory::KnnMemory>> memories;
  TaskOptions task_options;
  task_options.knn_memory = [&](int64_t layer, int64_t rows) {
    memory::KnnLayerMemory layer_memory = shared(layer, rows);
    memories[layer] = layer_memory.memory;
    return layer_memory;
  };
  MEMTRAIN_ASSIGN_OR_RETURN(auto task, MakeTask("lm", task_options));
  std::unique_ptr<ProgressReporter> progress;
  if (report_progress) {
    progress = std::make_unique<ProgressReporter>("[build-memory] segments", steps,
                                                  ProgressReporter::Unit::kItems);
  }
  BuiltMemory built;
  MEMTRAIN_ASSIGN_OR_RETURN(
      built.totals, Evaluate(*model.model, *task, *source, world, device, steps, progress.get()));
  memory::KnnMemoryStoreInfo& info = built.info;
  info.model_sha256 = model.weights_sha256;
  info.corpus = corpus;
  info.corpus_tokens = static_cast<int64_t>(built.totals.tokens);
  info.ranks = world.size();
  info.memory.backend = setup.backend;
  info.memory.capacity = capacity;
  info.memory.sharded = true;
  for (const auto& [layer, memory] : memories) info.entries[layer] = memory->size(0);
  MEMTRAIN_RETURN_IF_ERROR(memory::WriteKnnMemoryStore(options.out, info, memories, world));
  return built;
}

}  // namespace memtrain::trainer
