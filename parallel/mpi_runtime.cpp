#include "parallel/mpi_runtime.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "glog/logging.h"

namespace memtrain::parallel {

absl::StatusOr<std::unique_ptr<MpiRuntime>> MpiRuntime::Initialize(int* argc, char*** argv,
                                                                   MpiRuntimeOptions options) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    return absl::FailedPreconditionError(
        "MPI is already initialized; create exactly one MpiRuntime per process, in main()");
  }
  int provided = MPI_THREAD_SINGLE;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
    return absl::UnavailableError("MPI_Init_thread failed");
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    MPI_Finalize();
    return absl::FailedPreconditionError(absl::StrCat(
        "MPI provides thread level ", provided,
        " but memtrain needs MPI_THREAD_MULTIPLE: the collective watchdog answers peers while "
        "another thread is inside MPI. Use an MPI built with thread support (Debian's Open MPI "
        "is)."));
  }
  std::unique_ptr<MpiRuntime> runtime(new MpiRuntime());
  MPI_Comm_rank(MPI_COMM_WORLD, &runtime->world_rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &runtime->world_size_);
  runtime->watchdog_ = std::make_unique<CollectiveWatchdog>(MPI_COMM_WORLD, options.watchdog);
  return runtime;
}

MpiRuntime::~MpiRuntime() {
  watchdog_.reset();
  MPI_Finalize();
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiRuntime::CreateWorld(
    CommunicatorOptions options) {
  MPI_Comm world;
  MPI_Comm_dup(MPI_COMM_WORLD, &world);
  return MpiCommunicator::Adopt(world, "world", watchdog_.get(), options);
}

std::string MpiRuntime::LibraryVersion() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::vector<std::string> lines =
      absl::StrSplit(std::string(text, static_cast<size_t>(length)), '\n');
  int major = 0, minor = 0;
  MPI_Get_version(&major, &minor);
  // "Open MPI v4.1.4, package: ..., ident: ..." -> "Open MPI v4.1.4".
  const std::string name =
      lines.empty() ? std::string("unknown MPI") : lines.front().substr(0, lines.front().find(','));
  return absl::StrCat(name, " (MPI ", major, ".", minor, ")");
}

}  // namespace memtrain::parallel
