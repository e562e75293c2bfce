// Support for tests that run under mpirun (linked with tests/mpi_test_main.cpp).
#ifndef MEMTRAIN_TESTS_MPI_TEST_SUPPORT_H_
#define MEMTRAIN_TESTS_MPI_TEST_SUPPORT_H_

#include <memory>
#include <string>

#include "parallel/mpi_runtime.h"
#include "parallel/world.h"

namespace memtrain::testing {

/// The process's MPI runtime, initialized by main().
parallel::MpiRuntime& Runtime();

/// What tests' communicators use: a minute in every phase, so a rank that
/// fails an assertion and skips a collective ends the job quickly instead of
/// hanging it, and the agreement check before each collective.
parallel::CommunicatorOptions TestCommunicatorOptions();

/// A fresh world communicator (collective).
std::unique_ptr<parallel::MpiCommunicator> NewWorld(
    parallel::CommunicatorOptions options = TestCommunicatorOptions());

/// Why this job cannot give each rank of a host its own GPU ("" when it
/// can): no GPU visible, or fewer GPUs than ranks on the host (NCCL refuses
/// two ranks on one GPU). Collective; the *_CUDA tests skip with it.
std::string NoGpuPerRankReason();

/// The world a GPU job gets (parallel/world.h: NCCL for CUDA tensors, MPI
/// for CPU ones), on this rank's GPU (local rank modulo the visible devices,
/// returned in `device`). Collective; only where a GPU is visible.
std::unique_ptr<parallel::Communicator> NewGpuWorld(c10::Device* device);

/// Rank 0's `value` on every rank (e.g. the path of a file rank 0 wrote).
/// Collective; fails the test (and returns "") when the broadcast fails.
std::string BroadcastString(parallel::Communicator& world, const std::string& value);

}  // namespace memtrain::testing

#endif  // MEMTRAIN_TESTS_MPI_TEST_SUPPORT_H_
