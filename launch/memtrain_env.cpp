// memtrain-env: prints, for every rank, where it sits in the job and what it
// would run on, so a launch can be checked before a long job:
//
//   mpirun -np 2 build/bin/memtrain-env
//   srun --mpi=pmix -n 2 build/bin/memtrain-env
//   build/bin/memtrain-env                      # a single process
//
// Rank 0 prints one line per rank, in rank order. memtrain-env links what
// memtrain-train links (the kNN backends, FAISS among them), so the BLAS and
// OpenMP runtime it reports are the ones a training process runs.
#include <ATen/ATen.h>
#include <H5public.h>
#include <torch/version.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/binary.h"
#include "common/native_libraries.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/device.h"
#include "launch/environment.h"
#include "launch/rank_context.h"
#include "launch/signals.h"
#include "memory/knn_memory_factory.h"
#include "parallel/c10d_communicator.h"
#include "parallel/mpi_runtime.h"

namespace memtrain {
namespace {

std::string Hdf5Version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return absl::StrCat("HDF5 ", major, ".", minor, ".", release);
}

absl::Status Run(int argc, char** argv) {
  MEMTRAIN_ASSIGN_OR_RETURN(launch::LaunchEnvironment env,
                            launch::DiscoverLaunchEnvironment(launch::SystemEnvironment()));
  MEMTRAIN_ASSIGN_OR_RETURN(auto runtime, parallel::MpiRuntime::Initialize(&argc, &argv, {}));
  launch::InstallTerminationReport(runtime->world_rank());
  parallel::CommunicatorOptions options;
  options.timeouts = launch::PhaseTimeoutsFromFlags();
  MEMTRAIN_ASSIGN_OR_RETURN(auto world, runtime->CreateWorld(options));
  for (const std::string& warning : env.warnings) LOG(WARNING) << "[launch] " << warning;
  if (env.rank != world->rank() || env.world_size != world->size()) {
    LOG(WARNING) << "[launch] the launcher says rank " << env.rank << "/" << env.world_size
                 << " but MPI says " << world->rank() << "/" << world->size()
                 << "; MPI wins (is the binary started by the launcher it thinks?)";
  }
  MEMTRAIN_ASSIGN_OR_RETURN(
      launch::DeviceChoice device,
      launch::ChooseDeviceForThisMachine("auto", world->local_rank(), world->local_size()));
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  const std::string line = absl::StrCat(
      "rank ", world->rank(), "/", world->size(), " local ", world->local_rank(), "/",
      world->local_size(), " host ", host, " pid ", getpid(), " launcher ",
      launch::LauncherName(env.launcher), " | LibTorch ", TORCH_VERSION, " | ",
      parallel::MpiRuntime::LibraryVersion(), ", MPI_THREAD_MULTIPLE | ",
      parallel::NcclDescription(), " | c10d backends ",
      absl::StrJoin(parallel::C10dBackendNames(), ","), " | ", Hdf5Version(), " | device ",
      device.description, " | ", DescribeNativeLibraries(FindNativeLibraries()), " | kNN backends ",
      absl::StrJoin(memory::KnnBackendNames(), ","));

  at::Tensor bytes = at::empty({static_cast<int64_t>(line.size())}, at::kByte);
  std::memcpy(bytes.data_ptr(), line.data(), line.size());
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<at::Tensor> lines, world->allgatherv(bytes));
  if (world->rank() == 0) {
    for (const at::Tensor& piece : lines) {
      std::cout << std::string(static_cast<const char*>(piece.data_ptr()),
                               static_cast<size_t>(piece.numel()))
                << "\n";
    }
    std::cout.flush();
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(
      argc, argv,
      "Prints each rank's place in the job (rank, local rank, host, launcher), the library "
      "versions (LibTorch, MPI, NCCL, HDF5), the device it would use, the BLAS LibTorch's matrix "
      "products run on, the OpenMP runtime, and the kNN memory backends.\n"
      "  mpirun -np 2 memtrain-env | srun --mpi=pmix -n 2 memtrain-env | memtrain-env");
  return memtrain::RunBinary("[launch] memtrain-env:", [&] { return memtrain::Run(argc, argv); });
}
