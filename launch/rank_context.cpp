#include "launch/rank_context.h"

#include "common/native_libraries.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/signals.h"

namespace memtrain::launch {

absl::StatusOr<RankContext> StartRank(int* argc, char*** argv, absl::Duration collective_timeout,
                                      const std::string& log_tag) {
  RankContext rank;
  MEMTRAIN_ASSIGN_OR_RETURN(rank.environment, DiscoverLaunchEnvironment(SystemEnvironment()));
  MEMTRAIN_ASSIGN_OR_RETURN(rank.runtime, parallel::MpiRuntime::Initialize(argc, argv, {}));
  InstallTerminationReport(rank.runtime->world_rank());
  parallel::CommunicatorOptions options;
  options.collective_timeout = collective_timeout;
  MEMTRAIN_ASSIGN_OR_RETURN(rank.world, rank.runtime->CreateWorld(options));
  for (const std::string& warning : rank.environment.warnings) LOG(WARNING) << "[launch] " << warning;
  MEMTRAIN_ASSIGN_OR_RETURN(rank.device,
                            ChooseDeviceForThisMachine(rank.world->local_rank(), rank.world->local_size()));
  ApplyDeviceChoice(rank.device);
  LOG_IF(INFO, rank.world->rank() == 0) << log_tag << " " << rank.world->size() << " rank(s) via "
                                        << LauncherName(rank.environment.launcher) << "; rank 0 on "
                                        << rank.device.description << "; "
                                        << DescribeNativeLibraries(FindNativeLibraries());
  return rank;
}

}  // namespace memtrain::launch
