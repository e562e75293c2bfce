// memtrain-train: trains a model on a memtrain corpus, on one process or on
// every rank of an mpirun / srun job (data parallel; see trainer/trainer.h).
//
//   memtrain-train --train_data=demo.train.h5 --valid_data=demo.valid.h5 --steps=200
//   mpirun -np 2 memtrain-train --flagfile=configs/lm-demo.flags
//   srun --mpi=pmix -n 8 memtrain-train --flagfile=configs/wmt16.flags
#include <filesystem>
#include <iostream>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/knn_memory_flags.h"
#include "launch/model_flags.h"
#include "launch/rank_context.h"
#include "launch/signals.h"
#include "trainer/trainer.h"

namespace {
const memtrain::trainer::TrainerOptions kDefaults;
}  // namespace

ABSL_FLAG(std::string, train_data, "", "Training corpus (memtrain-prepare output). Required.");
ABSL_FLAG(std::string, valid_data, "", "Validation corpus (same tokenizer); empty: no validation.");
ABSL_FLAG(std::string, task, "", "lm, translation, summarization or qa; empty: the corpus's task.");
ABSL_FLAG(int64_t, steps, kDefaults.steps, "Optimizer steps.");
ABSL_FLAG(int64_t, accumulate, kDefaults.accumulate, "Micro-batches per optimizer step.");
ABSL_FLAG(uint64_t, seed, kDefaults.seed, "Seed of the model initialisation and the data order.");
ABSL_FLAG(int, streams, kDefaults.streams, "lm: document streams (batch rows) per rank.");
ABSL_FLAG(int, segment_length, kDefaults.segment_length, "lm: tokens per stream and step.");
ABSL_FLAG(int64_t, max_tokens, kDefaults.max_tokens,
          "seq2seq: padded tokens per micro-batch and rank.");
ABSL_FLAG(int64_t, max_source_length, kDefaults.max_source_length,
          "seq2seq: longer sources are truncated.");
ABSL_FLAG(int64_t, max_target_length, kDefaults.max_target_length,
          "seq2seq: longer targets are truncated.");
ABSL_FLAG(std::string, optimizer, kDefaults.optimizer, "adam or adamw.");
ABSL_FLAG(double, adam_beta1, kDefaults.adam_beta1, "Adam beta1.");
ABSL_FLAG(double, adam_beta2, kDefaults.adam_beta2, "Adam beta2.");
ABSL_FLAG(double, adam_eps, kDefaults.adam_eps, "Adam epsilon.");
ABSL_FLAG(double, weight_decay, kDefaults.weight_decay, "Weight decay (decoupled with adamw).");
ABSL_FLAG(std::string, lr_schedule, kDefaults.lr_schedule, "constant, inverse_sqrt or cosine.");
ABSL_FLAG(double, lr, kDefaults.lr.lr, "Peak learning rate.");
ABSL_FLAG(int64_t, warmup_steps, kDefaults.lr.warmup_steps, "Linear warm-up steps.");
ABSL_FLAG(double, min_lr, kDefaults.lr.min_lr, "cosine: final learning rate.");
ABSL_FLAG(double, label_smoothing, kDefaults.label_smoothing, "Label smoothing epsilon.");
ABSL_FLAG(double, clip_norm, kDefaults.clip_norm, "Gradient norm clip; 0: none.");
ABSL_FLAG(bool, use_memory, kDefaults.use_memory,
          "lm: memory layers (knn, infinite) keep each stream's memory across steps.");
ABSL_FLAG(bool, bf16, kDefaults.bf16_autocast,
          "GPU only: bf16 autocast in the forward pass (CPU: fp32).");
ABSL_FLAG(int64_t, bucket_mb, kDefaults.reducer.bucket_bytes >> 20, "Gradient bucket size, MiB.");
ABSL_FLAG(std::string, unused_parameters, "error",
          "Parameters that get no gradient on any rank: error (name them) or zero.");
ABSL_FLAG(int64_t, log_every, kDefaults.log_every, "Progress line every N steps (rank 0).");
ABSL_FLAG(int64_t, valid_every, kDefaults.valid_every,
          "Validate every N steps; 0: only at the end.");
ABSL_FLAG(int64_t, valid_steps, kDefaults.valid_steps, "Batches per validation; 0: the whole set.");
ABSL_FLAG(std::string, metrics, "", "Metrics as JSON lines (rank 0); empty: none.");
ABSL_FLAG(std::string, save_dir, "", "Save the final model here (model.pt + model.json).");
ABSL_FLAG(std::string, init_from, "",
          "Start from this saved model (same tokenizer; e.g. qa fine-tuning).");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "Checkpoints go here (docs/CHECKPOINTS.md); empty: none. Must be visible to every rank.");
ABSL_FLAG(int64_t, save_every_steps, 0,
          "Checkpoint every N steps; 0: not by steps. One is always saved at the end.");
ABSL_FLAG(double, save_every_minutes, 0,
          "Checkpoint every N minutes (rank 0's clock); 0: not by time.");
ABSL_FLAG(int, keep_last, 3, "Complete checkpoints kept (older ones are deleted); >= 1.");
ABSL_FLAG(std::string, resume, "none",
          "none; auto (the newest complete checkpoint in --checkpoint_dir, else start fresh); or a "
          "checkpoint "
          "directory.");
ABSL_FLAG(
    bool, save_knn_memory, false,
    "lm: checkpoints hold every stream's kNN/infinite memory (needed for an exact resume; large).");
ABSL_FLAG(std::string, testing_kill_during_save, "",
          "Tests only: RANK:STEP makes that rank truncate its file of the checkpoint of STEP and "
          "SIGKILL itself.");
ABSL_FLAG(int, collective_timeout, 600,
          "Seconds a collective may take before the job aborts with a report.");

namespace memtrain {
namespace {

absl::StatusOr<trainer::TrainerOptions> TrainerOptionsFromFlags() {
  trainer::TrainerOptions o;
  o.train_data = absl::GetFlag(FLAGS_train_data);
  if (o.train_data.empty()) return absl::InvalidArgumentError("--train_data is required");
  o.valid_data = absl::GetFlag(FLAGS_valid_data);
  o.task = absl::GetFlag(FLAGS_task);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.accumulate = absl::GetFlag(FLAGS_accumulate);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.streams = absl::GetFlag(FLAGS_streams);
  o.segment_length = absl::GetFlag(FLAGS_segment_length);
  o.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  o.max_source_length = absl::GetFlag(FLAGS_max_source_length);
  o.max_target_length = absl::GetFlag(FLAGS_max_target_length);
  o.optimizer = absl::GetFlag(FLAGS_optimizer);
  o.adam_beta1 = absl::GetFlag(FLAGS_adam_beta1);
  o.adam_beta2 = absl::GetFlag(FLAGS_adam_beta2);
  o.adam_eps = absl::GetFlag(FLAGS_adam_eps);
  o.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  o.lr_schedule = absl::GetFlag(FLAGS_lr_schedule);
  o.lr.lr = absl::GetFlag(FLAGS_lr);
  o.lr.warmup_steps = absl::GetFlag(FLAGS_warmup_steps);
  o.lr.min_lr = absl::GetFlag(FLAGS_min_lr);
  o.label_smoothing = absl::GetFlag(FLAGS_label_smoothing);
  o.clip_norm = absl::GetFlag(FLAGS_clip_norm);
  o.use_memory = absl::GetFlag(FLAGS_use_memory);
  MEMTRAIN_ASSIGN_OR_RETURN(o.knn_memory, launch::KnnMemorySetupFromFlags());
  o.bf16_autocast = absl::GetFlag(FLAGS_bf16);
  o.reducer.bucket_bytes = absl::GetFlag(FLAGS_bucket_mb) << 20;
  const std::string unused = absl::GetFlag(FLAGS_unused_parameters);
  if (unused == "error") {
    o.reducer.unused_parameters = parallel::UnusedParameters::kError;
  } else if (unused == "zero") {
    o.reducer.unused_parameters = parallel::UnusedParameters::kZeroFill;
  } else {
    return absl::InvalidArgumentError("--unused_parameters: '" + unused + "' is not error or zero");
  }
  o.log_every = std::max<int64_t>(1, absl::GetFlag(FLAGS_log_every));
  o.valid_every = absl::GetFlag(FLAGS_valid_every);
  o.valid_steps = absl::GetFlag(FLAGS_valid_steps);
  o.metrics_path = absl::GetFlag(FLAGS_metrics);
  o.save_dir = absl::GetFlag(FLAGS_save_dir);
  o.init_from = absl::GetFlag(FLAGS_init_from);
  o.checkpoint.dir = absl::GetFlag(FLAGS_checkpoint_dir);
  o.checkpoint.save_every_steps = absl::GetFlag(FLAGS_save_every_steps);
  o.checkpoint.save_every_minutes = absl::GetFlag(FLAGS_save_every_minutes);
  o.checkpoint.keep_last = absl::GetFlag(FLAGS_keep_last);
  o.checkpoint.resume = absl::GetFlag(FLAGS_resume);
  o.checkpoint.save_knn_memory = absl::GetFlag(FLAGS_save_knn_memory);
  if (o.checkpoint.keep_last < 1) return absl::InvalidArgumentError("--keep_last must be >= 1");
  if (o.checkpoint.save_every_steps < 0 || o.checkpoint.save_every_minutes < 0) {
    return absl::InvalidArgumentError("--save_every_steps and --save_every_minutes must be >= 0");
  }
  if (o.checkpoint.resume != "none" && o.checkpoint.resume != "auto" &&
      !std::filesystem::is_directory(o.checkpoint.resume)) {
    return absl::InvalidArgumentError("--resume: '" + o.checkpoint.resume +
                                      "' is not none, auto or a checkpoint directory");
  }
  if (const std::string kill = absl::GetFlag(FLAGS_testing_kill_during_save); !kill.empty()) {
    std::pair<std::string, std::string> parts = absl::StrSplit(kill, ':');
    if (!absl::SimpleAtoi(parts.first, &o.kill_rank_during_save) ||
        !absl::SimpleAtoi(parts.second, &o.kill_during_save_step)) {
      return absl::InvalidArgumentError("--testing_kill_during_save: expected RANK:STEP, got '" +
                                        kill + "'");
    }
  }
  return o;
}

// The process exit status: 0, or kRequeueExitCode after a preemption checkpoint.
absl::StatusOr<int> Run(int argc, char** argv) {
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::TrainerOptions options, TrainerOptionsFromFlags());
  MEMTRAIN_ASSIGN_OR_RETURN(model::TransformerOptions model_options,
                            launch::ModelOptionsFromFlags());
  MEMTRAIN_ASSIGN_OR_RETURN(
      launch::RankContext rank,
      launch::StartRank(&argc, &argv, absl::Seconds(absl::GetFlag(FLAGS_collective_timeout)),
                        "[train]"));
  if (!options.checkpoint.dir.empty()) {
    launch::InstallPreemptionRequest();
    options.stop_requested = [] { return launch::PreemptionSignal() != 0; };
  }
  MEMTRAIN_ASSIGN_OR_RETURN(
      auto trainer,
      trainer::Trainer::Create(options, model_options, *rank.world, rank.device.device));
  MEMTRAIN_RETURN_IF_ERROR(trainer->Run());
  return trainer->preempted() ? launch::kRequeueExitCode : 0;
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(
      argc, argv,
      "Trains a Transformer on a memtrain corpus, on one process or every rank of an "
      "mpirun/srun job.\n"
      "  mpirun -np 2 memtrain-train --train_data=demo.train.h5 --valid_data=demo.valid.h5 "
      "--encoder_layers=0 --knn_layers=2 --steps=200\n"
      "With --checkpoint_dir, SIGUSR1, SIGUSR2 or SIGTERM make every rank checkpoint at the next "
      "step boundary and exit with status 75 (EX_TEMPFAIL: requeue me); --resume=auto continues. "
      "Exit status: 0 done, 1 error, 75 stopped by a signal after a checkpoint "
      "(docs/CHECKPOINTS.md).");
  return memtrain::RunBinaryWithExitCode("[train]", [&] { return memtrain::Run(argc, argv); });
}
