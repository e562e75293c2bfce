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

ABSL_FLAG(int, collective_timeout,
          absl::ToInt64Seconds(memtrain::parallel::CommunicatorOptions{}.collective_timeout),
          "Seconds a collective may take before the job aborts with a report naming it.");

namespace memtrain::launch {

absl::Duration CollectiveTimeoutFromFlags() {
  return absl::Seconds(absl::GetFlag(FLAGS_collective_timeout));
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
  options.communicator.collective_timeout = CollectiveTimeoutFromFlags();
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
