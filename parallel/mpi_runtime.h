// File: parallel/mpi_runtime.h
//
// `MpiRuntime`: MPI's lifetime in a memtrain process. Created once in main()
// (MPI can be initialized only once per process), it initializes MPI at
// MPI_THREAD_MULTIPLE, starts the collective watchdog, hands out the world
// communicator, and finalizes MPI when destroyed.
//
//   absl::StatusOr<std::unique_ptr<MpiRuntime>> runtime =
//       MpiRuntime::Initialize(&argc, &argv, {});
//   auto world = (*runtime)->CreateWorld(CommunicatorOptions{});
//
// Works under mpirun, under srun --mpi=pmix, and as a plain single process
// (an MPI "singleton" of size 1).
#ifndef MEMTRAIN_PARALLEL_MPI_RUNTIME_H_
#define MEMTRAIN_PARALLEL_MPI_RUNTIME_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/collective_watchdog.h"
#include "parallel/mpi_communicator.h"

namespace memtrain::parallel {

struct MpiRuntimeOptions {
  CollectiveWatchdog::Options watchdog;
};

class MpiRuntime {
 public:
  /// Fails with kFailedPrecondition if MPI is already initialized or cannot
  /// provide MPI_THREAD_MULTIPLE.
  static absl::StatusOr<std::unique_ptr<MpiRuntime>> Initialize(int* argc, char*** argv,
                                                                MpiRuntimeOptions options);
  /// Stops the watchdog, then MPI_Finalize. Every communicator must be
  /// destroyed first.
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  /// A new communicator over every process ("world"). Collective.
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> CreateWorld(CommunicatorOptions options);

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  CollectiveWatchdog& watchdog() { return *watchdog_; }

  /// "Open MPI v4.1.4, ..." (first line of MPI_Get_library_version) and the
  /// standard version, e.g. "MPI 3.1".
  static std::string LibraryVersion();

 private:
  MpiRuntime() = default;
  int world_rank_ = 0;
  int world_size_ = 1;
  std::unique_ptr<CollectiveWatchdog> watchdog_;
};

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_MPI_RUNTIME_H_
