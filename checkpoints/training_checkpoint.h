// File: checkpoints/training_checkpoint.h
//
// What a training checkpoint holds, how the ranks save it together, how they
// agree which one to resume from, and which differences between the saved
// run and this one a resume accepts: the one home of the format
// (docs/CHECKPOINTS.md). checkpoint.h is the directory protocol underneath
// (staging, manifest, commit, `latest`); this header decides the files:
//
//   step-<N>/model.pt, model.json    the model (model_file.h)            rank 0
//            optimizer.pt            the optimizer's state (LibTorch)    rank 0
//            trainer.json            TrainerState                        rank 0
//            rank-<r>.safetensors    RankState of rank r                 every rank
//            MANIFEST.json           sizes and sha256 (checkpoint.h)     rank 0
//
// The trainer only gathers its state into a TrainingCheckpoint and hands it
// over; on resume it gets the states back after the checks passed:
//
//   MEMTRAIN_ASSIGN_OR_RETURN(std::string path, SaveTrainingCheckpoint(world, options, mine));
//   MEMTRAIN_ASSIGN_OR_RETURN(std::string from, ChooseResumeCheckpoint(world, options));
//   MEMTRAIN_ASSIGN_OR_RETURN(ResumedState resumed, LoadTrainingCheckpoint(from, target));
//
// trainer.json carries "format_version" (files without one are version 1).
// This build writes kTrainerStateVersion and reads every version from 1 on:
// an option missing from an older file compares as that option's default
// (the behaviour the older memtrain had), and a newer file is refused with
// both versions named. Version history: 1, no version field; 2 added it;
// 3 names every recorded option after its flag (trainer/trainer_options.h):
// metrics_path became metrics, bucket_bytes and first_bucket_bytes became
// bucket_mb and first_bucket_mb, unused_parameters a name instead of 0/1, and
// lr_total_steps (never a flag) is gone; 4 added the run identity (`job`) and
// moved the data cursor, which is global (every rank computes the same plan),
// from each rank file into `data_state`, so a run of another world size can
// continue it. Older files are read as version 4 without a run identity and
// with the cursor taken from the rank file. Reading never throws:
// every problem is a Status that names the file. tests/checkpoints/fixtures/format1 and
// format3 hold checkpoints of versions 1 and 3 that must keep resuming bitwise.
#ifndef MEMTRAIN_CHECKPOINTS_TRAINING_CHECKPOINT_H_
#define MEMTRAIN_CHECKPOINTS_TRAINING_CHECKPOINT_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/model_file.h"
#include "nlohmann/json.hpp"
#include "parallel/communicator.h"

namespace memtrain::checkpoints {

inline constexpr char kTrainerStateName[] = "trainer.json";
inline constexpr char kOptimizerName[] = "optimizer.pt";
/// The trainer.json format this build writes ("format_version").
inline constexpr int kTrainerStateVersion = 4;

/// "rank-00003.safetensors": one rank's RankState.
std::string RankFileName(int rank);

/// trainer.json: what every rank shares.
struct TrainerState {
  int format_version = kTrainerStateVersion;  ///< of the file it was read from
  int64_t step = 0;
  double tokens_seen = 0;
  int world_size = 1;
  std::string task;
  std::string tokenizer_sha256;
  bool knn_memory_saved = false;  ///< the rank files hold every stream's memory
  /// The options that shape the trajectory, by name (trainer/trainer_options.h).
  nlohmann::json options = nlohmann::json::object();
  /// The gradient buckets, by parameter name: the reduction order.
  std::vector<std::vector<std::string>> bucket_plan;
  /// data::BatchSource::SaveState, the same on every rank (version 4 on;
  /// older files: empty, each rank file holds it).
  std::string data_state;
  /// With `options`, the run identity (version 4 on): the batch job this run
  /// is, e.g. {"slurm_array_task_id": "3"}; empty outside a job array.
  std::map<std::string, std::string> job;
};

/// rank-<r>.safetensors: what differs per rank.
struct RankState {
  at::Tensor cpu_rng;      ///< the default CPU generator's state
  at::Tensor cuda_rng;     ///< the device's generator's state; undefined on a CPU run
  std::string data_state;  ///< read from files before version 4 only (TrainerState::data_state)
  bool task_state_saved = false;
  std::map<std::string, at::Tensor> task_state;  ///< trainer::Task::SaveState (memories)
};

/// The generators' states of this process (`device`'s too when it is a GPU).
RankState CaptureRandomState(const c10::Device& device);
/// Sets the generators back to `state`'s; kDataLoss when a state is missing.
absl::Status RestoreRandomState(const RankState& state, const c10::Device& device);

/// Everything one rank hands over to be saved. Rank 0's model, optimizer
/// and state are written; the other ranks' are ignored (they are replicas).
struct TrainingCheckpoint {
  model::TransformerImpl* model = nullptr;
  ModelInfo model_info;
  torch::optim::Optimizer* optimizer = nullptr;
  TrainerState state;
  RankState rank;
  /// Test seam of the crash tests: called with this rank's file right after
  /// it is written, before any rank commits. Empty: nothing.
  std::function<void(const std::string& rank_file)> after_rank_file;
  /// Test seam of the verification tests: called with the staging directory
  /// after every writer described its files, before the ranks exchange those
  /// descriptions (so before any rank verifies another's files).
  std::function<void(const std::string& partial)> before_verification;
};

/// Collective, in the checkpoint phase (parallel/collective_phase.h): writes
/// the checkpoint of `checkpoint.state.step` into `options.dir`. Every rank
/// writes its file and reads it back for its size and sha256 (a rank file is
/// verified by its writer); rank 0 does the same for the shared files. The
/// ranks all-gather these entries, and each shared file is read back again
/// by another rank (ranks 1..N-1 share them, largest file first to the least
/// loaded; with one rank nobody else can) and checked against rank 0's
/// reading. Rank 0 commits the manifest of the gathered entries only when
/// every rank reported success (keep-last-N). Any rank's failure fails it on
/// every rank and leaves at most a staging directory. Returns the
/// checkpoint's path.
absl::StatusOr<std::string> SaveTrainingCheckpoint(parallel::Communicator& world,
                                                   const CheckpointOptions& options,
                                                   const TrainingCheckpoint& checkpoint);

/// Collective: the checkpoint `options.resume` names, verified by every rank
/// (each checks the shared files and its own). For "auto", the newest step
/// that every rank can verify (damaged ones are skipped with a warning naming
/// the file), or "" when `options.dir` holds none.
absl::StatusOr<std::string> ChooseResumeCheckpoint(parallel::Communicator& world,
                                                   const CheckpointOptions& options);

/// Reads trainer.json of any known format version. Never throws.
absl::StatusOr<TrainerState> ReadTrainerState(const std::string& checkpoint);
/// Reads rank `rank`'s file. Never throws.
absl::StatusOr<RankState> ReadRankState(const std::string& checkpoint, int rank);

/// The run that wants to resume, to check a checkpoint against and load it into.
struct ResumeTarget {
  int rank = 0;
  int world_size = 1;
  /// Found by --resume=auto rather than named: the checkpoint must also have
  /// this run's identity (options, safe ones included, and job), except for
  /// the names in `accepted_changes` (--resume_changed).
  bool automatic = false;
  std::set<std::string> accepted_changes;
  std::map<std::string, std::string> job;  ///< as TrainerState::job
  /// At another world size, resume without the saved memory states
  /// (--knn_memory_on_resize=drop) rather than refuse.
  bool drop_memory_on_resize = false;
  std::string task;
  std::string tokenizer_sha256;
  nlohmann::json options;  ///< as TrainerState::options
  /// The options' defaults: what an older file that lacks one of them ran with.
  nlohmann::json default_options;
  /// Options whose change a resume accepts (docs/CHECKPOINTS.md, "Safe changes").
  std::set<std::string> safe_to_change;
  /// Safe options that are not part of the run identity (reporting, outputs).
  std::set<std::string> outside_identity;
  std::vector<std::vector<std::string>> bucket_plan;
  model::TransformerImpl* model = nullptr;
  torch::optim::Optimizer* optimizer = nullptr;
  c10::Device device = c10::Device(c10::kCPU);
};

struct ResumedState {
  TrainerState state;  ///< data_state filled in from the rank file for older versions
  /// For the task (memory states). Same world size: the generators are
  /// already restored from it. Another world size (`resized`): empty; the
  /// caller derives each rank's generators and starts the memories empty.
  RankState rank;
  bool resized = false;
};

/// Checks `checkpoint` against `target` (task, tokenizer, every option
/// outside safe_to_change, the model's options, the bucket plan; all
/// differences listed in one kFailedPrecondition; with target.automatic the
/// run identity too), then loads the weights into target.model, the
/// optimizer's state into target.optimizer and, at the same world size, the
/// generators' states. Another world size is accepted from version 4 on,
/// and when memory states were saved only with drop_memory_on_resize
/// (docs/CHECKPOINTS.md, "Resuming at another world size"). Never throws.
absl::StatusOr<ResumedState> LoadTrainingCheckpoint(const std::string& checkpoint,
                                                    const ResumeTarget& target);

}  // namespace memtrain::checkpoints

#endif  // MEMTRAIN_CHECKPOINTS_TRAINING_CHECKPOINT_H_
