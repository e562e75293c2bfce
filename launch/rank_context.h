// File: launch/rank_context.h
//
// What every multi-rank memtrain binary sets up first: the launch
// environment (mpirun, srun or a single process), MPI, the termination
// report, the world communicator, and this rank's device and thread count.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(RankContext rank, StartRank(&argc, &argv, absl::Seconds(600), "[train]"));
//   ... rank.world->allreduce(...); model->to(rank.device.device);
#ifndef MEMTRAIN_LAUNCH_RANK_CONTEXT_H_
#define MEMTRAIN_LAUNCH_RANK_CONTEXT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "launch/device.h"
#include "launch/environment.h"
#include "parallel/mpi_runtime.h"

namespace memtrain::launch {

struct RankContext {
  LaunchEnvironment environment;
  std::unique_ptr<parallel::MpiRuntime> runtime;
  std::unique_ptr<parallel::MpiCommunicator> world;
  DeviceChoice device;
};

/// Collective over every process of the job. Applies the device choice
/// (threads, current GPU) and logs it on rank 0, prefixed by `log_tag`.
absl::StatusOr<RankContext> StartRank(int* argc, char*** argv, absl::Duration collective_timeout,
                                      const std::string& log_tag);

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_RANK_CONTEXT_H_
