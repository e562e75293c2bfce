// File: trainer/trainer.h
//
// The training loop of memtrain-train, for every task and any number of
// ranks (one process per rank; `world` spans them):
//
//   MEMTRAIN_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(options, model_options, *world,
//   device)); MEMTRAIN_RETURN_IF_ERROR(trainer->Run());
//
// One optimizer step = `accumulate` micro-batches (the reducer's NoSync on
// all but the last) -> gradients summed over every rank and micro-batch by
// the GradientReducer during the last backward -> divided by the global
// number of target tokens of the step (fairseq: the gradient does not depend
// on how tokens are split across ranks or micro-batches) -> clipped -> the
// learning rate of this step -> Adam/AdamW.
//
// Start: the model is built from `model_options` (vocabulary and padding from
// the corpus's tokenizer) or loaded from --init_from, broadcast from rank 0
// with a check that every rank built the same structure; the reducer's
// bucket plan is logged. Rank 0 writes metrics as JSON lines and prints a
// progress line; validation runs every `valid_every` steps and at the end.
//
// Checkpoints (options.checkpoint, docs/CHECKPOINTS.md): every N steps
// and/or minutes, at the end, and when `stop_requested` reports a signal on
// any rank (a preemption): then every rank saves at the step boundary, rank 0
// writes the marker that asks for a requeue (checkpoints/checkpoint.h,
// kPreemptedMarkerName; Run removes an earlier run's when it starts), and
// Run returns OK with preempted() true. With checkpoint.resume set, Create
// loads the chosen checkpoint after building everything, and the run goes on
// exactly as if it had never stopped (bitwise on CPU with the same world
// size; with the kNN memory only when it was saved).
#ifndef MEMTRAIN_TRAINER_TRAINER_H_
#define MEMTRAIN_TRAINER_TRAINER_H_

#include <c10/core/Device.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoints/checkpoint.h"
#include "data/batch_source.h"
#include "memory/knn_layer_memory.h"
#include "model/transformer.h"
#include "parallel/communicator.h"
#include "parallel/gradient_reducer.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics_log.h"
#include "trainer/task.h"
#include "trainer/trainer_options.h"

namespace memtrain::trainer {

/// Per-step record, as written to the metrics file.
struct StepMetrics {
  int64_t step = 0;
  int64_t epoch = 0;
  double loss = 0;  ///< nll per target token (nats), all ranks
  double perplexity = 0;
  double tokens = 0;             ///< target tokens of the step, all ranks
  double tokens_per_second = 0;  ///< target tokens, all ranks
  double grad_norm = 0;
  double lr = 0;
  double data_wait_seconds = 0;  ///< this rank, waiting for batches
  double overlap_fraction = 0;   ///< of the gradient all-reduce hidden behind backward
  double step_seconds = 0;
};

class Trainer {
 public:
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainerOptions& options,
                                                         model::TransformerOptions model_options,
                                                         parallel::Communicator& world,
                                                         const c10::Device& device);
  ~Trainer();

  /// Trains to options.steps, validating and logging as configured; saves the
  /// model at the end when save_dir is set. Collective.
  absl::Status Run();
  /// One optimizer step on the next `accumulate` training batches (Run's
  /// body). Collective.
  absl::StatusOr<StepMetrics> Step();
  /// One optimizer step on these micro-batches (this rank's; the other ranks
  /// pass theirs, the same number of them). Collective.
  absl::StatusOr<StepMetrics> StepOn(const std::vector<data::Batch>& micro_batches);
  /// Validation perplexity over options.valid_data (kFailedPrecondition without it).
  absl::StatusOr<LossTotals> Validate();
  /// Writes the checkpoint of the current step into options.checkpoint.dir
  /// (checkpoints/checkpoint.h protocol). Collective; returns its path.
  absl::StatusOr<std::string> SaveCheckpoint();
  /// Whether Run stopped early because stop_requested fired (a checkpoint
  /// was saved); the caller exits asking to be requeued.
  bool preempted() const { return preempted_; }

  model::TransformerImpl& model() { return *model_; }
  int64_t step() const { return step_; }

 private:
  Trainer(const TrainerOptions& options, parallel::Communicator& world, const c10::Device& device);
  absl::StatusOr<data::Batch> NextTrainBatch();
  /// The options of the tasks that train (with `label_smoothing`) and validate (0).
  TaskOptions TaskOptionsFor(double label_smoothing) const;
  /// Loads the checkpoint options.checkpoint.resume names
  /// (checkpoints/training_checkpoint.h); OK without loading when auto finds none.
  absl::Status Resume();
  void Report(const StepMetrics& metrics);
  /// --record_batches: this step's rows, as their records and tokens.
  absl::Status RecordBatches(const std::vector<data::Batch>& micro_batches);

  const TrainerOptions options_;
  parallel::Communicator& world_;
  const c10::Device device_;
  std::string task_name_;
  std::string tokenizer_sha256_;
  model::Transformer model_{nullptr};
  memory::KnnLayerMemories knn_memory_;  // for the training and validation tasks
  std::unique_ptr<Task> task_;
  std::unique_ptr<data::BatchSource> train_, valid_;
  std::unique_ptr<parallel::GradientReducer> reducer_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  LrSchedule schedule_;
  std::unique_ptr<MetricsLog> metrics_;          // rank 0 only
  std::unique_ptr<std::ofstream> batch_record_;  // --record_batches
  int64_t step_ = 0;
  double tokens_seen_ = 0;
  int64_t last_checkpoint_step_ = -1;
  bool preempted_ = false;
};

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_TRAINER_H_
