// File: trainer/evaluate.h
//
// Perplexity of a model on a corpus, over every rank of a communicator: each
// rank evaluates its shard (BatchSource), and the sums are all-reduced, so
// every rank returns the same totals. LM memory layers start empty and keep
// their streams' memories across the corpus (the task's use_memory decides).
//
//   MEMTRAIN_ASSIGN_OR_RETURN(LossTotals totals, Evaluate(*model, *task, *source, *world, device,
//   0)); LOG(INFO) << "valid ppl " << totals.perplexity();
#ifndef MEMTRAIN_TRAINER_EVALUATE_H_
#define MEMTRAIN_TRAINER_EVALUATE_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/progress.h"
#include "data/batch_source.h"
#include "memory/knn_layer_memory.h"
#include "model/transformer.h"
#include "parallel/communicator.h"
#include "trainer/loss.h"
#include "trainer/task.h"

namespace memtrain::trainer {

/// The sums of `totals` over every rank of `comm` (one collective).
absl::StatusOr<LossTotals> AllReduceTotals(parallel::Communicator& comm, const LossTotals& totals);

/// Runs `source` from the start of its epoch 0 to its end, or for
/// `max_steps` steps (0 = all), in eval mode without gradients, and
/// all-reduces the totals. Collective: every rank runs the same number of
/// steps (BatchSource guarantees it). `progress` (optional) is told the
/// steps done against the steps to run.
absl::StatusOr<LossTotals> Evaluate(model::TransformerImpl& model, Task& task,
                                    data::BatchSource& source, parallel::Communicator& comm,
                                    const c10::Device& device, int64_t max_steps,
                                    ProgressReporter* progress = nullptr);

/// The perplexity of `task` with its memory layers' memories kept across
/// segments (true) or not (false), once per entry of `use_memory`, each pass
/// from the start of `source`. Collective, like Evaluate. `knn_memory` gives
/// the knn layers their memories (memory/knn_memory_setup.h).
absl::StatusOr<std::vector<LossTotals>> EvaluateMemorySettings(
    model::TransformerImpl& model, const std::string& task,
    const memory::KnnLayerMemories& knn_memory, const std::vector<bool>& use_memory,
    data::BatchSource& source, parallel::Communicator& comm, const c10::Device& device,
    int64_t max_steps);

/// "long-range ppl X without -> Y with (Z% lower); overall ppl A -> B": what
/// the memories bought, for a report.
std::string DescribeMemoryGain(const LossTotals& with, const LossTotals& without);

/// The steps Evaluate runs on `source` for `max_steps` (0 = all).
int64_t EvaluationSteps(const data::BatchSource& source, int64_t max_steps);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_EVALUATE_H_
