#include "launch/rank_context.h"

#include "absl/flags/flag.h"
#include "common/native_libraries.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/signals.h"

ABSL_FLAG(std::string, collectives, "auto",
          "How the model's tensors cross ranks: auto (nccl on a GPU, mpi on the CPU), mpi, gloo "
          "(PyTorch's Gloo, CPU), nccl (PyTorch's ProcessGroupNCCL, GPU). Host-side tensors always "
          "go over MPI.");

namespace {
const memtrain::parallel::PhaseTimeouts kDefaultTimeouts;
int64_t Seconds(absl::Duration d) { return absl::ToInt64Seconds(d); }
}  // namespace

// One per phase (parallel/collective_phase.h): a checkpoint save or an
// evaluation may take far longer than a step, and must not share its timeout.
ABSL_FLAG(int64_t, startup_timeout, Seconds(kDefaultTimeouts.startup),
          "Seconds a collective may take during start-up (rendezvous, the first collectives, "
          "opening the corpus, the parameter broadcast) before the job aborts with a report "
          "naming it.");
ABSL_FLAG(int64_t, step_timeout, Seconds(kDefaultTimeouts.step),
          "Seconds a collective may take within a training step (gradient buckets, the loss "
          "all-reduce, the stop and save flags) before the job aborts with a report naming it.");
ABSL_FLAG(int64_t, checkpoint_timeout, Seconds(kDefaultTimeouts.checkpoint),
          "Seconds a collective may take while a checkpoint or the final model is written, "
          "verified and committed (the other ranks wait while rank 0 writes the model), or the "
          "checkpoint to resume is chosen and loaded, before the job aborts with a report naming "
          "it.");
ABSL_FLAG(int64_t, eval_timeout, Seconds(kDefaultTimeouts.evaluation),
          "Seconds a collective may take during evaluation (validation, memtrain-eval, "
          "memtrain-build-memory) before the job aborts with a report naming it.");

namespace memtrain::launch {

parallel::PhaseTimeouts PhaseTimeoutsFromFlags() {
  parallel::PhaseTimeouts timeouts;
  timeouts.startup = absl::Seconds(absl::GetFlag(FLAGS_startup_timeout));
  timeouts.step = absl::Seconds(absl::GetFlag(FLAGS_step_timeout));
  timeouts.checkpoint = absl::Seconds(absl::GetFlag(FLAGS_checkpoint_timeout));
  timeouts.evaluation = absl::Seconds(absl::GetFlag(FLAGS_eval_timeout));
  return timeouts;
}

absl::StatusOr<RankContext> StartRank(int* argc, char*** argv, const std::string& log_tag) {
  RankContext rank;
  MEMTRAIN_ASSIGN_OR_RETURN(rank.environment, DiscoverLaunchEnvironment(SystemEnvironment()));
  MEMTRAIN_ASSIGN_OR_RETURN(rank.runtime, parallel::MpiRuntime::Initialize(argc, argv, {}));
  InstallTerminationReport(rank.runtime->world_rank());
  for (const std::string& warning : rank.environment.warnings)
    LOG(WARNING) << "[launch] " << warning;
  MEMTRAIN_ASSIGN_OR_RETURN(rank.device, ChooseDeviceForThisMachine(absl::GetFlag(FLAGS_device),
                                                                    rank.environment.local_rank,
                                                                    rank.environment.local_size));
  ApplyDeviceChoice(rank.device);
  parallel::WorldOptions options;
  options.communicator.timeouts = PhaseTimeoutsFromFlags();
  options.device = rank.device.device;
  options.collectives = absl::GetFlag(FLAGS_collectives);
  MEMTRAIN_ASSIGN_OR_RETURN(rank.world, parallel::CreateWorld(*rank.runtime, options));
  LOG_IF(INFO, rank.world->rank() == 0)
      << log_tag << " " << rank.world->size() << " rank(s) via "
      << LauncherName(rank.environment.launcher) << "; rank 0 on " << rank.device.description
      << "; collectives " << parallel::ResolvedCollectives(options) << "; "
      << DescribeNativeLibraries(FindNativeLibraries()) << "; " << ProcessSettingsSummary();
  return rank;
}

}  // namespace memtrain::launch
