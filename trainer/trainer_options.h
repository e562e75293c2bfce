// File: trainer/trainer_options.h
//
// Every option of memtrain-train, declared once. MEMTRAIN_TRAINER_OPTIONS
// lists each as X(name, member, on_resume, help): `name` is the flag
// (--name), the key in a checkpoint's trainer.json and the name in resume
// errors; `member` is where it lives in TrainerOptions (whose initializer is
// its default); `on_resume` says whether a resumed run must keep it; `help`
// is the flag's help text. launch/memtrain_train.cpp expands the list into
// flags, TrainerOptionsJson() into what checkpoints record, and
// OptionsSafeToChange() into what a resume accepts. The batch-shape options
// (data/batch_source.h) and the kNN memory's (memory/knn_memory_setup.h) are
// declared by their own modules, as flags shared by every binary that reads
// batches or searches memories, and recorded here as kMustMatch.
//
// Adding a trainer option: a member with its default below, one row in the
// list. Nothing else (docs/EXTENDING.md).
#ifndef MEMTRAIN_TRAINER_TRAINER_OPTIONS_H_
#define MEMTRAIN_TRAINER_TRAINER_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoints/checkpoint.h"
#include "data/batch_source.h"
#include "data/task.h"
#include "memory/knn_memory_setup.h"
#include "nlohmann/json_fwd.hpp"
#include "parallel/gradient_reducer.h"
#include "trainer/fused_adam.h"
#include "trainer/lr_schedule.h"
#include "trainer/task.h"

namespace memtrain::trainer {

/// What a resumed run may do with an option (docs/CHECKPOINTS.md, "Safe changes").
enum class OnResume {
  kMustMatch,  ///< shapes the state or the data order: a change is refused
  /// Changes the future, not the state (the schedule is a function of the
  /// step); part of the run identity, so --resume=auto accepts a change only
  /// when --resume_changed names it.
  kMayChange,
  /// Changes neither the state nor what the run computes (what it reports
  /// or writes; init_from, used by a fresh start only): not part of the run
  /// identity either, so --resume=auto accepts a change.
  kMayChangeFreely,
  kNotRecorded,  ///< how and where the run checkpoints: not part of the run
};

struct TrainerOptions {
  std::string train_data;  ///< memtrain HDF5 corpus
  std::string valid_data;  ///< optional
  std::string task;        ///< empty: the training corpus's task
  int64_t steps = 1000;    ///< optimizer steps
  int64_t accumulate = 1;  ///< micro-batches per step
  uint64_t seed = 1;
  /// The batch shape (streams, segment_length, max_tokens, ...); the trainer
  /// sets rank, world size and seed.
  data::BatchSourceOptions batch;
  // optimization
  std::string optimizer = "adam";  ///< OptimizerNames()
  double adam_beta1 = 0.9, adam_beta2 = 0.98, adam_eps = 1e-8;
  double weight_decay = 0.0;
  std::string lr_schedule = "inverse_sqrt";
  LrScheduleOptions lr;  ///< total_steps 0: the run's steps
  double label_smoothing = 0.1;
  double clip_norm = 0.0;             ///< 0: no clipping (the norm is still reported)
  bool use_memory = true;             ///< lm: memory layers keep their streams across steps
  memory::KnnMemorySetup knn_memory;  ///< lm: the knn layers' memories (backend, sharded, scope)
  /// GPU only: forward passes under bf16 autocast (matmuls and attention in
  /// bf16, softmax, norms and the loss in fp32, as autocast's op lists
  /// decide); backward and the optimizer stay fp32. Ignored on CPU.
  bool bf16_autocast = true;
  // the gradient reducer (parallel/gradient_reducer.h)
  double bucket_mb = 25;       ///< bucket cap, MiB (DDP's bucket_cap_mb)
  double first_bucket_mb = 1;  ///< the first bucket's cap, MiB (DDP: 1)
  parallel::UnusedParameters unused_parameters = parallel::UnusedParameters::kError;
  // reporting
  int64_t log_every = 10;
  int64_t valid_every = 0;   ///< 0: only at the end
  int64_t valid_steps = 0;   ///< batches per validation; 0: the whole set
  std::string metrics_path;  ///< JSON lines (rank 0); empty: none
  std::string save_dir;      ///< the final model (checkpoints/model_file.h); empty: not saved
  std::string init_from;     ///< start from this saved model (same tokenizer)
  checkpoints::CheckpointOptions checkpoint;
  /// The batch job this run is, part of its identity in checkpoints
  /// (checkpoints::TrainerState::job); memtrain-train sets it from SLURM's
  /// environment (kSlurmArrayTaskField).
  std::map<std::string, std::string> job;
  /// Debugging: each rank appends a JSON line per batch it trains on to
  /// "<record_batches>.rank<r>.jsonl". Empty: none.
  std::string record_batches;
  /// Polled at every step boundary of Run: the signal that asks to stop
  /// (launch/signals.h), or 0. Nonzero on any rank stops the run with a
  /// checkpoint and checkpoints::kPreemptedMarkerName. Empty: never.
  std::function<int()> stop_requested;
  /// Test seam of the crash tests: rank `kill_rank_during_save` truncates its
  /// file of the checkpoint of step `kill_during_save_step` and SIGKILLs
  /// itself before the checkpoint commits. -1: never.
  int kill_rank_during_save = -1;
  int64_t kill_during_save_step = -1;
  /// Test seam of the timeout tests: rank 0 sleeps this long in every save
  /// after writing its rank file (a slow filesystem). 0: never.
  double slow_save_seconds = 0;
  /// Test seam of the verification tests: rank 0 flips the first byte of
  /// this file of every checkpoint after it was read back by its writer and
  /// before the other ranks verify it. Empty: never.
  std::string corrupt_during_save;
};

// clang-format off
#define MEMTRAIN_TRAINER_OPTIONS(X)                                                              \
  X(train_data, train_data, kMustMatch, "Training corpus (memtrain-prepare output). Required.") \
  X(valid_data, valid_data, kMayChangeFreely, "Validation corpus (same tokenizer); empty: none.")\
  X(task, task, kMustMatch,                                                                     \
    absl::StrCat(absl::StrJoin(::memtrain::data::TaskNames(), ", "),                         \
                 "; empty: the training corpus's task."))                                       \
  X(steps, steps, kMayChange, "Optimizer steps.")                                               \
  X(accumulate, accumulate, kMustMatch, "Micro-batches per optimizer step.")                    \
  X(seed, seed, kMustMatch, "Seed of the model initialisation and the data order.")             \
  X(optimizer, optimizer, kMustMatch,                                                           \
    absl::StrJoin(::memtrain::trainer::OptimizerNames(), " or "))                               \
  X(adam_beta1, adam_beta1, kMustMatch, "Adam beta1.")                                          \
  X(adam_beta2, adam_beta2, kMustMatch, "Adam beta2.")                                          \
  X(adam_eps, adam_eps, kMustMatch, "Adam epsilon.")                                            \
  X(weight_decay, weight_decay, kMustMatch, "Weight decay (decoupled with adamw).")             \
  X(lr_schedule, lr_schedule, kMustMatch,                                                       \
    absl::StrJoin(::memtrain::trainer::LrScheduleNames(), ", "))                                \
  X(lr, lr.lr, kMayChange, "Peak learning rate.")                                               \
  X(warmup_steps, lr.warmup_steps, kMayChange, "Linear warm-up steps.")                         \
  X(min_lr, lr.min_lr, kMayChange, "cosine: final learning rate.")                              \
  X(label_smoothing, label_smoothing, kMustMatch, "Label smoothing epsilon.")                   \
  X(clip_norm, clip_norm, kMayChange, "Gradient norm clip; 0: none.")                           \
  X(use_memory, use_memory, kMustMatch,                                                         \
    "lm: memory layers (knn, infinite) keep each stream's memory across steps; false: no "      \
    "memory (an --xl_cache is kept).")                                                           \
  X(bf16, bf16_autocast, kMayChange, "GPU only: bf16 autocast in the forward pass (CPU: fp32).") \
  X(bucket_mb, bucket_mb, kMustMatch, "Gradient bucket size, MiB.")                             \
  X(first_bucket_mb, first_bucket_mb, kMustMatch,                                               \
    "The first gradient bucket's size, MiB (small, so the all-reduce starts early).")          \
  X(unused_parameters, unused_parameters, kMustMatch,                                           \
    absl::StrCat("Parameters that get no gradient on any rank: ",                               \
                 absl::StrJoin(::memtrain::parallel::UnusedParametersNames(), " or "),          \
                 " (error names them; zero gives them a zero gradient)."))                      \
  X(log_every, log_every, kMayChangeFreely, "Progress line every N steps (rank 0).")            \
  X(valid_every, valid_every, kMayChangeFreely, "Validate every N steps; 0: only at the end.")  \
  X(valid_steps, valid_steps, kMayChangeFreely, "Batches per validation; 0: the whole set.")    \
  X(metrics, metrics_path, kMayChangeFreely, "Metrics as JSON lines (rank 0); empty: none.")    \
  X(save_dir, save_dir, kMayChangeFreely, "Save the final model here (model.pt + model.json).") \
  X(init_from, init_from, kMayChangeFreely,                                                     \
    "Start from this saved model (same tokenizer; e.g. qa fine-tuning).")                       \
  X(checkpoint_dir, checkpoint.dir, kNotRecorded,                                               \
    "Checkpoints go here (docs/CHECKPOINTS.md); empty: none. Must be visible to every rank.")   \
  X(save_every_steps, checkpoint.save_every_steps, kNotRecorded,                                \
    "Checkpoint every N steps; 0: not by steps. One is always saved at the end.")               \
  X(save_every_minutes, checkpoint.save_every_minutes, kNotRecorded,                            \
    "Checkpoint every N minutes (rank 0's clock); 0: not by time.")                             \
  X(keep_last, checkpoint.keep_last, kNotRecorded,                                              \
    "Complete checkpoints kept (older ones are deleted); >= 1.")                                \
  X(resume, checkpoint.resume, kNotRecorded,                                                    \
    "none; auto (the newest complete checkpoint in --checkpoint_dir, else start fresh); or a "  \
    "checkpoint directory.")                                                                    \
  X(save_knn_memory, checkpoint.save_knn_memory, kMayChangeFreely,                              \
    "lm: checkpoints hold every stream's kNN/infinite memory (needed for an exact resume; "     \
    "large).")                                                                                  \
  X(resume_changed, checkpoint.resume_changed, kNotRecorded,                                    \
    "Comma-separated safe options (e.g. lr,steps) that --resume=auto may find changed: the "    \
    "checkpoint's run identity must otherwise equal this run's (docs/CHECKPOINTS.md).")         \
  X(knn_memory_on_resize, checkpoint.knn_memory_on_resize, kNotRecorded,                        \
    "Resuming at another world size a checkpoint that holds memory states: drop (start every "  \
    "stream's memory empty); empty: refuse. Resharding them is not implemented.")               \
  X(record_batches, record_batches, kNotRecorded,                                               \
    "Debugging: each rank appends, per batch trained on, a JSON line (step, epoch, rank, rows " \
    "as [record, first token, tokens]) to PATH.rank<r>.jsonl; empty: none.")
// clang-format on

/// TrainerOptions::job's field for SLURM_ARRAY_TASK_ID: a job array's tasks
/// are separate runs, however alike their flags.
inline constexpr char kSlurmArrayTaskField[] = "slurm_array_task_id";

/// The recorded options (all but kNotRecorded, the batch shape and the kNN
/// memory's) by name, as a checkpoint's trainer.json holds them.
nlohmann::json TrainerOptionsJson(const TrainerOptions& options);
/// The names of the kMayChange and kMayChangeFreely options.
std::set<std::string> OptionsSafeToChange();
/// The names of the kMayChangeFreely options: recorded, outside the run identity.
std::set<std::string> OptionsOutsideRunIdentity();

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_TRAINER_OPTIONS_H_
