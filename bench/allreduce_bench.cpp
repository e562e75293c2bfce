// bench-allreduce: bus bandwidth of Communicator::allreduce against raw
// MPI_Allreduce on the same buffers, in the same run, from 1 KiB to 256 MiB.
//
//   mpirun -np 2 --bind-to none build/bin/bench-allreduce [--json FILE] [--warmup 3 --repeats 50]
//
// Numbers (nccl-tests' definitions, doc/PERFORMANCE.md there; docs/BENCHMARKS.md):
//   time   median over iterations of the slowest rank's time for one call:
//          --repeats iterations per size and method (at least 3, fewer for big
//          sizes: --bytes_per_size) after --warmup untimed ones
//   algbw  bytes / time
//   busbw  algbw * 2(n-1)/n: the per-link traffic of a ring all-reduce, so
//          numbers compare across rank counts (0 for one rank)
//   ratio  busbw(Communicator) / busbw(raw MPI) = time(raw) / time(Communicator)
//   wrong  elements that differed from the exact expected sum, both methods
// Each iteration fills the buffer with rank+1 (untimed), times the call, and
// checks every element against n(n+1)/2 (untimed). The two methods alternate
// which goes first, so drift on a noisy machine hits both alike.
#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "bench/bench_support.h"
#include "common/binary.h"
#include "glog/logging.h"
#include "launch/rank_context.h"
#include "nlohmann/json.hpp"
#include "parallel/mpi_runtime.h"

ABSL_FLAG(int64_t, min_bytes, 1024, "Smallest message, bytes.");
ABSL_FLAG(int64_t, max_bytes, int64_t{256} << 20, "Largest message, bytes.");
ABSL_FLAG(int, step_factor, 2, "Each size is the previous one times this.");
ABSL_FLAG(int64_t, bytes_per_size, int64_t{2} << 30,
          "Caps --repeats so each size moves at most about this many bytes per method.");
ABSL_FLAG(double, min_ratio, 0.0,
          "Exit non-zero if a size of 1 MiB or more has ratio below this (0 = report only).");

namespace memtrain {
namespace {

using parallel::MpiCommunicator;

struct Measurement {
  double seconds = 0;  // median of the slowest rank's per-call time
  int64_t wrong = 0;   // summed over iterations and ranks
};

struct Row {
  int64_t bytes;
  Measurement communicator, raw;
};

class Bench {
 public:
  explicit Bench(MpiCommunicator& world) : world_(world) {}

  Row Run(int64_t bytes) {
    const int64_t count = bytes / static_cast<int64_t>(sizeof(float));
    at::Tensor buffer = at::empty({count}, at::kFloat);
    const int iters = static_cast<int>(std::max<int64_t>(
        3, std::min<int64_t>(bench::Repeats(),
                             absl::GetFlag(FLAGS_bytes_per_size) / std::max<int64_t>(bytes, 1))));
    for (int i = 0; i < bench::Warmup(); ++i) {
      Once(buffer, /*use_communicator=*/true);
      Once(buffer, /*use_communicator=*/false);
    }
    std::vector<double> times[2];
    int64_t wrong[2] = {0, 0};
    for (int i = 0; i < iters; ++i) {
      for (int k = 0; k < 2; ++k) {
        const bool use_communicator = (i + k) % 2 == 0;
        double seconds = 0;
        wrong[use_communicator ? 0 : 1] += Once(buffer, use_communicator, &seconds);
        times[use_communicator ? 0 : 1].push_back(seconds);
      }
    }
    Row row{bytes, {}, {}};
    Measurement* out[2] = {&row.communicator, &row.raw};
    for (int m = 0; m < 2; ++m) {
      // The slowest rank's time per iteration, then the median over iterations.
      MPI_Allreduce(MPI_IN_PLACE, times[m].data(), static_cast<int>(times[m].size()), MPI_DOUBLE,
                    MPI_MAX, world_.comm());
      MPI_Allreduce(MPI_IN_PLACE, &wrong[m], 1, MPI_INT64_T, MPI_SUM, world_.comm());
      out[m]->seconds = bench::Median(times[m]);
      out[m]->wrong = wrong[m];
    }
    return row;
  }

 private:
  // One verified call; returns the number of wrong elements.
  int64_t Once(at::Tensor& buffer, bool use_communicator, double* seconds = nullptr) {
    buffer.fill_(static_cast<float>(world_.rank() + 1));
    MPI_Barrier(world_.comm());
    const double start = MPI_Wtime();
    if (use_communicator) {
      const absl::Status status = world_.allreduce(buffer, parallel::ReduceOp::kSum);
      CHECK(status.ok()) << status;
    } else {
      MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(), static_cast<int>(buffer.numel()), MPI_FLOAT,
                    MPI_SUM, world_.comm());
    }
    if (seconds != nullptr) *seconds = MPI_Wtime() - start;
    const int n = world_.size();
    return buffer.ne(static_cast<float>(n * (n + 1) / 2)).sum().item<int64_t>();
  }

  MpiCommunicator& world_;
};

std::string HumanBytes(int64_t bytes) {
  if (bytes >= (int64_t{1} << 20)) return absl::StrFormat("%d MiB", bytes >> 20);
  if (bytes >= 1024) return absl::StrFormat("%d KiB", bytes >> 10);
  return absl::StrFormat("%d B", bytes);
}

int Main(int argc, char** argv) {
  const absl::Status repetitions = bench::SetRepetitionDefaults(/*warmup=*/3, /*repeats=*/50);
  if (!repetitions.ok()) return ExitStatus(repetitions, "[bench-allreduce]");
  auto runtime = parallel::MpiRuntime::Initialize(&argc, &argv, {});
  if (!runtime.ok()) {
    LOG(ERROR) << runtime.status();
    return 1;
  }
  parallel::CommunicatorOptions options;
  options.timeouts = launch::PhaseTimeoutsFromFlags();
  auto world = (*runtime)->CreateWorld(options);
  CHECK(world.ok()) << world.status();
  MpiCommunicator& comm = **world;
  const int n = comm.size();
  const double bus_factor = n > 1 ? 2.0 * (n - 1) / n : 0.0;
  const bool root = comm.rank() == 0;
  if (root) {
    std::printf("# bench-allreduce: %d rank(s), float32 sum, in place; %s\n", n,
                parallel::MpiRuntime::LibraryVersion().c_str());
    std::printf("# busbw = algbw * 2(n-1)/n (GB/s = 1e9 B/s); ratio = Communicator / raw MPI\n");
    std::printf("%10s %12s | %10s %8s %8s | %10s %8s %8s | %6s %6s\n", "size", "count", "comm us",
                "algbw", "busbw", "raw us", "algbw", "busbw", "ratio", "#wrong");
  }
  Bench bench(comm);
  nlohmann::json results = nlohmann::json::array();
  int64_t total_wrong = 0;
  bool json_failed = false;
  bool below_floor = false;
  for (int64_t bytes = absl::GetFlag(FLAGS_min_bytes); bytes <= absl::GetFlag(FLAGS_max_bytes);
       bytes *= absl::GetFlag(FLAGS_step_factor)) {
    const Row row = bench.Run(bytes);
    const double comm_algbw = bytes / row.communicator.seconds / 1e9;
    const double raw_algbw = bytes / row.raw.seconds / 1e9;
    const double ratio = row.raw.seconds / row.communicator.seconds;
    const int64_t wrong = row.communicator.wrong + row.raw.wrong;
    total_wrong += wrong;
    if (bytes >= (int64_t{1} << 20) && ratio < absl::GetFlag(FLAGS_min_ratio)) below_floor = true;
    if (root) {
      std::printf("%10s %12lld | %10.1f %8.3f %8.3f | %10.1f %8.3f %8.3f | %6.3f %6lld\n",
                  HumanBytes(bytes).c_str(), static_cast<long long>(bytes / 4),
                  row.communicator.seconds * 1e6, comm_algbw, comm_algbw * bus_factor,
                  row.raw.seconds * 1e6, raw_algbw, raw_algbw * bus_factor, ratio,
                  static_cast<long long>(wrong));
      std::fflush(stdout);
    }
    results.push_back({{"bytes", bytes},
                       {"communicator",
                        {{"seconds", row.communicator.seconds},
                         {"algbw_GBps", comm_algbw},
                         {"busbw_GBps", comm_algbw * bus_factor},
                         {"wrong", row.communicator.wrong}}},
                       {"raw_mpi",
                        {{"seconds", row.raw.seconds},
                         {"algbw_GBps", raw_algbw},
                         {"busbw_GBps", raw_algbw * bus_factor},
                         {"wrong", row.raw.wrong}}},
                       {"ratio", ratio}});
  }
  if (root) {
    std::printf("# %s: %lld wrong element(s)\n", total_wrong == 0 ? "OK" : "FAILED",
                static_cast<long long>(total_wrong));
    const nlohmann::json report = {{"benchmark", "allreduce"},
                                   {"ranks", n},
                                   {"dtype", "float32"},
                                   {"mpi", parallel::MpiRuntime::LibraryVersion()},
                                   {"busbw_definition", "algbw * 2(n-1)/n"},
                                   {"results", results}};
    json_failed = ExitStatus(bench::WriteJsonIfRequested(report), "[bench-allreduce]") != 0;
  }
  world->reset();
  if (total_wrong > 0 || json_failed) return 1;
  if (below_floor) {
    if (root)
      std::printf("# ratio below --min_ratio=%.2f from 1 MiB up\n", absl::GetFlag(FLAGS_min_ratio));
    return 2;
  }
  return 0;
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(argc, argv,
                       "Bus bandwidth of Communicator::allreduce vs raw MPI_Allreduce.\n"
                       "  mpirun -np 2 --bind-to none bench-allreduce [--json FILE] [--warmup 3 "
                       "--repeats 50]");
  return memtrain::Main(argc, argv);
}
