// memtrain-train: trains a model on a memtrain corpus, on one process or on
// every rank of an mpirun / srun job (data parallel; see trainer/trainer.h).
//
//   memtrain-train --train_data=demo.train.h5 --valid_data=demo.valid.h5 --steps=200
//   mpirun -np 2 memtrain-train --flagfile=configs/quickstart.flags --train_data=...
//   srun --mpi=pmix -n 8 memtrain-train --flagfile=configs/wmt16.flags
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <type_traits>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/batch_flags.h"
#include "launch/knn_memory_flags.h"
#include "launch/model_flags.h"
#include "launch/rank_context.h"
#include "launch/signals.h"
#include "trainer/trainer.h"

namespace {
const memtrain::trainer::TrainerOptions kDefaults;
}  // namespace

// Every trainer option as a flag of its name, default and help
// (trainer/trainer_options.h).
#define MEMTRAIN_TRAINER_FLAG(name, member, on_resume, help)                         \
  ABSL_FLAG(std::decay_t<decltype(memtrain::trainer::TrainerOptions::member)>, name, \
            kDefaults.member, help);
MEMTRAIN_TRAINER_OPTIONS(MEMTRAIN_TRAINER_FLAG)
#undef MEMTRAIN_TRAINER_FLAG
ABSL_FLAG(std::string, testing_kill_during_save, "",
          "Tests only: RANK:STEP makes that rank truncate its file of the checkpoint of STEP and "
          "SIGKILL itself.");
ABSL_FLAG(double, testing_slow_save, 0,
          "Tests only: rank 0 sleeps this many seconds in every checkpoint save after writing its "
          "rank file.");
ABSL_FLAG(std::string, testing_corrupt_during_save, "",
          "Tests only: rank 0 flips the first byte of this file (e.g. optimizer.pt) of every "
          "checkpoint after writing it, before the other ranks verify it.");

namespace memtrain {
namespace {

absl::StatusOr<trainer::TrainerOptions> TrainerOptionsFromFlags() {
  trainer::TrainerOptions o;
#define MEMTRAIN_TRAINER_OPTION_FROM_FLAG(name, member, on_resume, help) \
  o.member = absl::GetFlag(FLAGS_##name);
  MEMTRAIN_TRAINER_OPTIONS(MEMTRAIN_TRAINER_OPTION_FROM_FLAG)
#undef MEMTRAIN_TRAINER_OPTION_FROM_FLAG
  if (o.train_data.empty()) return absl::InvalidArgumentError("--train_data is required");
  MEMTRAIN_RETURN_IF_ERROR(launch::ApplyBatchShapeFlags(&o.batch));
  MEMTRAIN_ASSIGN_OR_RETURN(o.knn_memory, launch::KnnMemorySetupFromFlags());
  // A job array's tasks are separate runs, however alike their flags; the job
  // id is not part of the identity, so that a resubmitted job resumes.
  if (const char* task = std::getenv("SLURM_ARRAY_TASK_ID"); task != nullptr && *task != '\0')
    o.job[trainer::kSlurmArrayTaskField] = task;
  o.log_every = std::max<int64_t>(1, o.log_every);
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
  o.slow_save_seconds = absl::GetFlag(FLAGS_testing_slow_save);
  o.corrupt_during_save = absl::GetFlag(FLAGS_testing_corrupt_during_save);
  return o;
}

// The process exit status: 0, or kRequeueExitCode after a preemption checkpoint.
absl::StatusOr<int> Run(int argc, char** argv) {
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::TrainerOptions options, TrainerOptionsFromFlags());
  MEMTRAIN_ASSIGN_OR_RETURN(model::TransformerOptions model_options,
                            launch::ModelOptionsFromFlags());
  MEMTRAIN_ASSIGN_OR_RETURN(launch::RankContext rank, launch::StartRank(&argc, &argv, "[train]"));
  if (!options.checkpoint.dir.empty()) {
    launch::InstallPreemptionRequest();
    options.stop_requested = &launch::PreemptionSignal;
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
      "step boundary, write PREEMPTED.json into it and exit with status 75 (EX_TEMPFAIL: requeue "
      "me); --resume=auto continues. "
      "Exit status: 0 done, 1 error, 75 stopped by a signal after a checkpoint "
      "(docs/CHECKPOINTS.md).");
  return memtrain::RunBinaryWithExitCode("[train]", [&] { return memtrain::Run(argc, argv); });
}
