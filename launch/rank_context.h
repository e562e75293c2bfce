// File: launch/rank_context.h
//
// What every multi-rank memtrain binary sets up first: the launch
// environment (mpirun, srun or a single process), MPI, the termination
// report, this rank's device and thread count, and the world communicator
// (parallel/world.h: NCCL for a GPU's tensors, MPI for the host's).
//
// Flags: --device (launch/device.h), and, declared here once for every
// binary that makes a communicator, --collectives=auto|mpi|gloo|nccl (how
// tensors on that device cross ranks) and the collective timeouts of each
// phase (parallel/collective_phase.h), in seconds: --startup_timeout,
// --step_timeout, --checkpoint_timeout, --eval_timeout.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(RankContext rank, StartRank(&argc, &argv, "[train]"));
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
#include "parallel/world.h"

namespace memtrain::launch {

struct RankContext {
  LaunchEnvironment environment;
  std::unique_ptr<parallel::MpiRuntime> runtime;
  std::unique_ptr<parallel::Communicator> world;
  DeviceChoice device;
};

/// Collective over every process of the job. Applies the device choice
/// (threads, current GPU) before the world is made (the first CUDA call), and
/// logs it on rank 0, prefixed by `log_tag`.
absl::StatusOr<RankContext> StartRank(int* argc, char*** argv, const std::string& log_tag);

/// The four phase timeouts, for binaries that make their communicators themselves.
parallel::PhaseTimeouts PhaseTimeoutsFromFlags();

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_RANK_CONTEXT_H_
