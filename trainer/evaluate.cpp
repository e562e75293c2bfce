#include "trainer/evaluate.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "parallel/collective_phase.h"

namespace memtrain::trainer {

absl::StatusOr<LossTotals> AllReduceTotals(parallel::Communicator& comm, const LossTotals& totals) {
  at::Tensor sums =
      at::tensor({totals.nll_sum, totals.tokens, totals.long_range_nll, totals.long_range_tokens},
                 at::kDouble);
  MEMTRAIN_RETURN_IF_ERROR(comm.allreduce(sums, parallel::ReduceOp::kSum));
  auto at = sums.accessor<double, 1>();
  LossTotals global;
  global.nll_sum = at[0];
  global.tokens = at[1];
  global.long_range_nll = at[2];
  global.long_range_tokens = at[3];
  return global;
}

int64_t EvaluationSteps(const data::BatchSource& source, int64_t max_steps) {
  return max_steps > 0 ? std::min(max_steps, source.steps_in_epoch()) : source.steps_in_epoch();
}

absl::StatusOr<LossTotals> Evaluate(model::TransformerImpl& model, Task& task,
                                    data::BatchSource& source, parallel::Communicator& comm,
                                    const c10::Device& device, int64_t max_steps,
                                    ProgressReporter* progress) {
  const parallel::ScopedCollectivePhase phase(parallel::CollectivePhase::kEvaluation);
  at::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  MEMTRAIN_RETURN_IF_ERROR(source.StartEpoch(0));
  const int64_t steps = EvaluationSteps(source, max_steps);
  LossTotals local;
  for (int64_t step = 0; step < steps; ++step) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, source.Next());
    if (!batch) {
      return absl::InternalError(absl::StrCat("evaluation data ended after ", step, " of ", steps,
                                              " steps; the BatchSource broke its step count"));
    }
    if (batch->inputs.size(0) > 0) local += task.Forward(model, ToDevice(*batch, device)).totals;
    if (progress != nullptr) progress->Update(step + 1);
  }
  if (progress != nullptr) progress->Finish();
  if (was_training) model.train();
  return AllReduceTotals(comm, local);
}

absl::StatusOr<std::vector<LossTotals>> EvaluateMemorySettings(
    model::TransformerImpl& model, const std::string& task,
    const memory::KnnLayerMemories& knn_memory, const std::vector<bool>& use_memory,
    data::BatchSource& source, parallel::Communicator& comm, const c10::Device& device,
    int64_t max_steps) {
  std::vector<LossTotals> results;
  for (const bool use : use_memory) {
    TaskOptions options;
    options.use_memory = use;
    options.knn_memory = knn_memory;
    MEMTRAIN_ASSIGN_OR_RETURN(auto made, MakeTask(task, options));
    MEMTRAIN_ASSIGN_OR_RETURN(LossTotals totals,
                              Evaluate(model, *made, source, comm, device, max_steps));
    results.push_back(totals);
  }
  return results;
}

std::string DescribeMemoryGain(const LossTotals& with, const LossTotals& without) {
  const double before = without.long_range_perplexity(), after = with.long_range_perplexity();
  return absl::StrFormat(
      "long-range ppl %.3f without -> %.3f with (%.1f%% %s); overall ppl %.3f -> %.3f", before,
      after, 100.0 * std::abs(1.0 - after / before), after <= before ? "lower" : "higher",
      without.perplexity(), with.perplexity());
}

}  // namespace memtrain::trainer
