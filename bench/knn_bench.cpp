// bench-knn: the kNN memories' search speed (docs/BENCHMARKS.md, docs/KNN_MEMORY.md).
//
//   build/bin/bench-knn [--json FILE]                      # LocalKnnMemory vs FAISS
//   mpirun -np 2 --bind-to none build/bin/bench-knn        # + ShardedKnnMemory
//
// One rank: for each capacity, 512 unit-norm queries, top-32, d = 128, one
// group: queries/s of LocalKnnMemory (fp32 and bf16 storage) against FAISS
// IndexFlatIP on the same entries in the same run (the ratio), and FAISS
// HNSW's build time, speed and recall against the exact answer.
// Several ranks: ShardedKnnMemory with each capacity per rank: total
// capacity, and search latency against LocalKnnMemory of the same capacity
// per rank measured on rank 0 in the same run (target <= 1.5x).
#include <ATen/ATen.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/binary.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"
#include "parallel/local_knn_memory.h"
#include "parallel/mpi_runtime.h"
#include "parallel/sharded_knn_memory.h"
#ifdef MEMTRAIN_WITH_FAISS
#include "parallel/faiss_knn_memory.h"
#endif

ABSL_FLAG(std::string, capacities, "8192,65536,262144", "Entries per memory (per rank when sharded).");
ABSL_FLAG(int64_t, queries, 512, "Queries per search.");
ABSL_FLAG(int64_t, top, 32, "Neighbours per query.");
ABSL_FLAG(int64_t, dim, 128, "Key width.");
ABSL_FLAG(int, reps, 5, "Timed searches per measurement (after one untimed).");
ABSL_FLAG(int64_t, hnsw_max, 65536, "Largest capacity to build an HNSW index for (its build is slow).");
ABSL_FLAG(std::string, json, "", "Also write the results to this JSON file (rank 0).");

namespace memtrain {
namespace {

using Clock = std::chrono::steady_clock;

at::Tensor UnitRows(std::vector<int64_t> shape) {
  const at::Tensor x = at::randn(shape);
  return x / x.norm(2, -1, /*keepdim=*/true);
}

// Mean seconds of one search (after one untimed).
double TimeSearch(const parallel::KnnMemory& memory, const at::Tensor& queries, int64_t k,
                  at::Tensor* ids = nullptr) {
  auto once = [&] {
    auto found = memory.search(0, queries, k);
    CHECK(found.ok()) << found.status();
    if (ids != nullptr) *ids = found->ids;
  };
  once();
  const auto start = Clock::now();
  for (int i = 0; i < absl::GetFlag(FLAGS_reps); ++i) once();
  return std::chrono::duration<double>(Clock::now() - start).count() / absl::GetFlag(FLAGS_reps);
}

double Recall(const at::Tensor& found, const at::Tensor& exact) {
  const at::Tensor hit = found.unsqueeze(-1).eq(exact.unsqueeze(-2)).any(-2);
  return hit.sum().item<double>() / static_cast<double>(exact.numel());
}

int Main(int argc, char** argv) {
  auto runtime = parallel::MpiRuntime::Initialize(&argc, &argv, {});
  CHECK(runtime.ok()) << runtime.status();
  auto world = (*runtime)->CreateWorld(parallel::CommunicatorOptions{});
  CHECK(world.ok()) << world.status();
  parallel::Communicator& comm = **world;
  const bool root = comm.rank() == 0;
  const int64_t q = absl::GetFlag(FLAGS_queries), k = absl::GetFlag(FLAGS_top),
                d = absl::GetFlag(FLAGS_dim);
  std::vector<int64_t> capacities;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_capacities), ',')) {
    int64_t value = 0;
    CHECK(absl::SimpleAtoi(part, &value)) << "bad --capacities";
    capacities.push_back(value);
  }
  nlohmann::json results = nlohmann::json::array();
  if (root) {
    std::printf("bench-knn: %ld queries, top-%ld, d = %ld, torch threads %d, ranks %d\n", q, k, d,
                at::get_num_threads(), comm.size());
  }
  at::manual_seed(1 + comm.rank());
  for (const int64_t capacity : capacities) {
    const at::Tensor keys = UnitRows({1, capacity, d}), values = at::randn({1, capacity, 1});
    const at::Tensor queries = UnitRows({1, q, d});
    nlohmann::json row = {{"capacity_per_rank", capacity}, {"ranks", comm.size()}};
    parallel::LocalKnnMemory local{parallel::LocalKnnMemoryOptions(capacity)};
    CHECK(local.add(0, keys, values).ok());
    at::Tensor exact_ids;
    const double local_s = TimeSearch(local, queries, k, &exact_ids);
    row["local_fp32_qps"] = q / local_s;
    if (comm.size() == 1) {
      parallel::LocalKnnMemory bf16(
          parallel::LocalKnnMemoryOptions(capacity).storage_dtype(at::kBFloat16));
      CHECK(bf16.add(0, keys, values).ok());
      row["local_bf16_qps"] = q / TimeSearch(bf16, queries, k);
#ifdef MEMTRAIN_WITH_FAISS
      parallel::FaissKnnMemory flat(
          parallel::FaissKnnMemoryOptions(capacity).kind(parallel::FaissIndexKind::kFlat));
      CHECK(flat.add(0, keys, values).ok());
      row["faiss_flat_qps"] = q / TimeSearch(flat, queries, k);
      row["local_vs_faiss_flat"] = row["local_fp32_qps"].get<double>() / row["faiss_flat_qps"].get<double>();
      if (capacity <= absl::GetFlag(FLAGS_hnsw_max)) {
        parallel::FaissKnnMemory hnsw((parallel::FaissKnnMemoryOptions(capacity)));
        CHECK(hnsw.add(0, keys, values).ok());
        const auto start = Clock::now();
        CHECK(hnsw.search(0, queries.narrow(1, 0, 1), 1).ok());  // builds the index
        row["faiss_hnsw_build_s"] = std::chrono::duration<double>(Clock::now() - start).count();
        at::Tensor ids;
        row["faiss_hnsw_qps"] = q / TimeSearch(hnsw, queries, k, &ids);
        row["faiss_hnsw_recall"] = Recall(ids, exact_ids);
      }
#endif
      std::printf("capacity %7ld: local fp32 %8.0f q/s, bf16 %8.0f q/s", capacity,
                  row["local_fp32_qps"].get<double>(), row["local_bf16_qps"].get<double>());
      if (row.contains("faiss_flat_qps")) {
        std::printf(" | FAISS flat %8.0f q/s (local/FAISS %.2fx)", row["faiss_flat_qps"].get<double>(),
                    row["local_vs_faiss_flat"].get<double>());
      }
      if (row.contains("faiss_hnsw_qps")) {
        std::printf(" | HNSW %8.0f q/s, recall %.3f, build %.1f s",
                    row["faiss_hnsw_qps"].get<double>(), row["faiss_hnsw_recall"].get<double>(),
                    row["faiss_hnsw_build_s"].get<double>());
      }
      std::printf("\n");
      std::fflush(stdout);
    } else {
      // Every rank adds its own entries: the shared memory holds them all.
      parallel::ShardedKnnMemory sharded(
          comm, std::make_unique<parallel::LocalKnnMemory>(parallel::LocalKnnMemoryOptions(capacity)),
          capacity);
      CHECK(sharded.add(0, keys, values).ok());
      CHECK(comm.barrier().ok());
      const double sharded_s = TimeSearch(sharded, queries, k);
      row["sharded_capacity"] = sharded.size(0);
      row["sharded_qps_per_rank"] = q / sharded_s;
      row["sharded_qps_total"] = q * comm.size() / sharded_s;
      row["sharded_latency_vs_local"] = sharded_s / local_s;
      if (root) {
        std::printf(
            "capacity %7ld/rank: sharded holds %8ld, %8.0f q/s per rank (%8.0f all ranks); "
            "latency %.2fx one local memory of %ld\n",
            capacity, sharded.size(0), q / sharded_s, q * comm.size() / sharded_s,
            sharded_s / local_s, capacity);
      }
    }
    results.push_back(row);
  }
  if (root && !absl::GetFlag(FLAGS_json).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_json)) << nlohmann::json{{"benchmark", "knn"}, {"results", results}}.dump(2) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(argc, argv,
                       "Search speed of the kNN memories: LocalKnnMemory vs FAISS (one rank), "
                       "ShardedKnnMemory (under mpirun).\n"
                       "  [mpirun -np 2 --bind-to none] bench-knn [--capacities=8192,65536,262144] "
                       "[--json FILE]");
  return memtrain::Main(argc, argv);
}
