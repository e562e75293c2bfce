// bench-knn: the kNN memories' search speed, and what a knn layer's memory adds
// to a training step (docs/BENCHMARKS.md, docs/KNN_MEMORY.md).
//
//   build/bin/bench-knn [--json FILE] [--warmup 1 --repeats 5]             # one rank
//   mpirun -np 2 --bind-to none --allow-run-as-root build/bin/bench-knn    # ShardedKnnMemory
//
// Threads: each rank gets the host's cores divided among the ranks on it, as
// memtrain-train does (launch/device.h): 1 per rank with 2 ranks on 2 cores.
//
// One rank, for each capacity: 512 unit-norm queries, top-32, d = 128, one
// group: queries/s of ExactKnnMemory (fp32 and bf16 storage) against FAISS
// IndexFlatIP on the same entries in the same run (the ratio), and FAISS
// HNSW's build time, speed and recall against the exact answer. Then the
// knn step overhead: forward + backward of one segment of a small decoder-only
// LM whose knn layer searches a full ExactKnnMemory of each --step_capacities
// per stream and head (ForwardSegment, its memory writes included), against
// the same model and tokens without memory (ForwardLm: the knn layer is then
// local attention only), alternating step by step. Every search and step time
// is the median of --repeats after --warmup untimed.
//
// R ranks, a ShardedKnnMemory of each capacity per rank (R x capacity in all):
//   split       one 512-query batch, 512/R queries from each rank: its latency
//               against an ExactKnnMemory of the same capacity per rank searching
//               all 512 on rank 0 alone, at the same threads (target <= 1.5x);
//   throughput  every rank brings its own 512 queries: queries/s over all ranks.
#include <ATen/ATen.h>
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/bench_support.h"
#include "common/binary.h"
#include "glog/logging.h"
#include "launch/rank_context.h"
#include "memory/exact_knn_memory.h"
#include "memory/sharded_knn_memory.h"
#include "model/transformer.h"
#include "nlohmann/json.hpp"
#ifdef MEMTRAIN_WITH_FAISS
#include "memory/faiss_knn_memory.h"
#endif

ABSL_FLAG(std::string, capacities, "8192,65536,262144",
          "Entries per memory (per rank when sharded).");
ABSL_FLAG(int64_t, queries, 512,
          "Queries per search (the split row divides them evenly over the ranks).");
ABSL_FLAG(int64_t, top, 32, "Neighbours per query.");
ABSL_FLAG(int64_t, dim, 128, "Key width.");
ABSL_FLAG(int64_t, hnsw_max, 65536,
          "Largest capacity to build an HNSW index for (its build is slow).");
ABSL_FLAG(bool, step, true, "Measure the knn step overhead (one-rank runs only).");
ABSL_FLAG(std::string, step_capacities, "8192,65536",
          "Memory sizes of the step-overhead model's knn layer (entries per stream and head).");
ABSL_FLAG(int64_t, step_batch, 2, "Rows (document streams) per step of the step-overhead model.");
ABSL_FLAG(int64_t, step_segment, 512, "Tokens per row and step of the step-overhead model.");

namespace memtrain {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<int64_t> ParseList(const std::string& text, const char* flag) {
  std::vector<int64_t> values;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t value = 0;
    CHECK(absl::SimpleAtoi(part, &value) && value > 0) << "bad --" << flag << ": " << text;
    values.push_back(value);
  }
  return values;
}

// The rank's device (--device, launch/device.h): every memory, query and
// model of this benchmark lives there; FAISS copies to the CPU itself.
c10::Device measured_device = c10::kCPU;

at::Tensor UnitRows(std::vector<int64_t> shape) {
  const at::Tensor x = at::randn(shape, at::TensorOptions().device(measured_device));
  return x / x.norm(2, -1, /*keepdim=*/true);
}

// The clock, read after the device's queued work has run.
Clock::time_point Now() {
  launch::WaitForDevice(measured_device);
  return Clock::now();
}

// Median seconds of one search of stream 0; `found` gets the result.
double TimeSearch(const memory::KnnMemory& memory, const at::Tensor& queries, int64_t k,
                  memory::KnnResult* found = nullptr) {
  auto once = [&] {
    auto result = memory.search(0, queries, k);
    CHECK(result.ok()) << result.status();
    if (found != nullptr) *found = *std::move(result);
  };
  for (int i = 0; i < bench::Warmup(); ++i) once();
  std::vector<double> seconds;
  for (int i = 0; i < bench::Repeats(); ++i) {
    const auto start = Now();
    once();
    launch::WaitForDevice(measured_device);
    seconds.push_back(Seconds(start));
  }
  return bench::Median(seconds);
}

double Recall(const at::Tensor& found, const at::Tensor& exact) {
  const at::Tensor hit = found.cpu().unsqueeze(-1).eq(exact.cpu().unsqueeze(-2)).any(-2);
  return hit.sum().item<double>() / static_cast<double>(exact.numel());
}

double SlowestRank(parallel::Communicator& comm, double seconds) {
  at::Tensor value = at::full({1}, seconds, at::kDouble);
  CHECK(comm.allreduce(value, parallel::ReduceOp::kMax).ok());
  return value.item<double>();
}

// Runs `work` on rank 0 while the other ranks sleep. They do not wait in a
// barrier: Open MPI's barrier polls, and a polling rank holds a core, which
// `work` needs when the ranks outnumber the cores. MPI_COMM_WORLD carries
// nothing else: memtrain's communicators and the watchdog use duplicates of it.
void OnRootAlone(parallel::Communicator& comm, const std::function<void()>& work) {
  constexpr int kDoneTag = 1;
  CHECK(comm.barrier().ok());
  if (comm.rank() == 0) {
    work();
    for (int rank = 1; rank < comm.size(); ++rank) {
      CHECK_EQ(MPI_Send(nullptr, 0, MPI_BYTE, rank, kDoneTag, MPI_COMM_WORLD), MPI_SUCCESS);
    }
    return;
  }
  MPI_Request done_request;
  CHECK_EQ(MPI_Irecv(nullptr, 0, MPI_BYTE, 0, kDoneTag, MPI_COMM_WORLD, &done_request),
           MPI_SUCCESS);
  for (int done = 0; done == 0;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK_EQ(MPI_Test(&done_request, &done, MPI_STATUS_IGNORE), MPI_SUCCESS);
  }
}

// One process: ExactKnnMemory fp32 / bf16, FAISS flat and HNSW on the same entries.
nlohmann::json OneRankRow(int64_t capacity, const at::Tensor& keys, const at::Tensor& values,
                          int64_t k) {
  const at::Tensor queries = UnitRows({1, absl::GetFlag(FLAGS_queries), keys.size(2)});
  const double q = static_cast<double>(queries.size(1));
  nlohmann::json row = {{"capacity", capacity}};
  memory::ExactKnnMemory fp32{memory::ExactKnnMemoryOptions(capacity)};
  CHECK(fp32.add(0, keys, values).ok());
  memory::KnnResult exact;
  row["local_fp32_qps"] = q / TimeSearch(fp32, queries, k, &exact);
  memory::ExactKnnMemory bf16(memory::ExactKnnMemoryOptions(capacity).storage_dtype(at::kBFloat16));
  CHECK(bf16.add(0, keys, values).ok());
  row["local_bf16_qps"] = q / TimeSearch(bf16, queries, k);
  std::printf("capacity %7ld: local fp32 %8.0f q/s, bf16 %8.0f q/s", capacity,
              row["local_fp32_qps"].get<double>(), row["local_bf16_qps"].get<double>());
#ifdef MEMTRAIN_WITH_FAISS
  memory::FaissKnnMemory flat(
      memory::FaissKnnMemoryOptions(capacity).kind(memory::FaissIndexKind::kFlat));
  CHECK(flat.add(0, keys, values).ok());
  row["faiss_flat_qps"] = q / TimeSearch(flat, queries, k);
  row["local_vs_faiss_flat"] =
      row["local_fp32_qps"].get<double>() / row["faiss_flat_qps"].get<double>();
  std::printf(" | FAISS flat %8.0f q/s (local/FAISS %.2fx)", row["faiss_flat_qps"].get<double>(),
              row["local_vs_faiss_flat"].get<double>());
  if (capacity <= absl::GetFlag(FLAGS_hnsw_max)) {
    memory::FaissKnnMemory hnsw((memory::FaissKnnMemoryOptions(capacity)));
    CHECK(hnsw.add(0, keys, values).ok());
    const auto start = Now();
    CHECK(hnsw.search(0, queries.narrow(1, 0, 1), 1).ok());  // builds the index
    row["faiss_hnsw_build_s"] = Seconds(start);
    memory::KnnResult approximate;
    row["faiss_hnsw_qps"] = q / TimeSearch(hnsw, queries, k, &approximate);
    row["faiss_hnsw_recall"] = Recall(approximate.ids, exact.ids);
    std::printf(" | HNSW %8.0f q/s, recall %.3f, build %.1f s", row["faiss_hnsw_qps"].get<double>(),
                row["faiss_hnsw_recall"].get<double>(), row["faiss_hnsw_build_s"].get<double>());
  }
#endif
  std::printf("\n");
  std::fflush(stdout);
  return row;
}

// R ranks: the split and throughput rows of a ShardedKnnMemory of `capacity`
// per rank, each rank adding its own `keys`, against an ExactKnnMemory of
// `capacity` (rank 0's entries) on rank 0 alone.
nlohmann::json ShardedRow(parallel::Communicator& comm, int64_t capacity, const at::Tensor& keys,
                          const at::Tensor& values, int64_t k) {
  const int ranks = comm.size();
  const int64_t q = absl::GetFlag(FLAGS_queries), share = q / ranks;
  CHECK_EQ(q % ranks, 0) << "--queries must split evenly over the ranks";
  at::Tensor batch = UnitRows({1, q, keys.size(2)});
  CHECK(comm.broadcast(batch, 0).ok());  // the split row's batch is rank 0's, as the baseline's
  double local_s = 0;
  memory::KnnResult local_found;
  OnRootAlone(comm, [&] {
    memory::ExactKnnMemory local{memory::ExactKnnMemoryOptions(capacity)};
    CHECK(local.add(0, keys, values).ok());
    local_s = TimeSearch(local, batch, k, &local_found);
  });
  local_s = SlowestRank(comm, local_s);  // rank 0's, on every rank

  memory::ShardedKnnMemory sharded(
      comm, std::make_unique<memory::ExactKnnMemory>(memory::ExactKnnMemoryOptions(capacity)),
      capacity);
  CHECK(sharded.add(0, keys, values).ok());
  memory::KnnResult split_found;
  const double split_s = SlowestRank(
      comm, TimeSearch(sharded, batch.narrow(1, comm.rank() * share, share), k, &split_found));
  if (comm.rank() == 0) {
    // The sharded memory holds rank 0's entries and more: its k-th best can only be better.
    const at::Tensor kth = split_found.scores.select(-1, k - 1);
    const at::Tensor local_kth = local_found.scores.narrow(1, 0, share).select(-1, k - 1);
    CHECK(kth.ge(local_kth - 1e-5).all().item<bool>()) << "sharded search lost entries";
  }
  const double throughput_s =
      SlowestRank(comm, TimeSearch(sharded, UnitRows(batch.sizes().vec()), k));

  nlohmann::json row = {{"capacity_per_rank", capacity},
                        {"ranks", ranks},
                        {"sharded_capacity", sharded.size(0)},
                        {"local_alone_qps", q / local_s},
                        {"split_queries_per_rank", share},
                        {"split_qps", q / split_s},
                        {"split_latency_vs_local", split_s / local_s},
                        {"throughput_qps_per_rank", q / throughput_s},
                        {"throughput_qps_total", q * ranks / throughput_s},
                        {"throughput_latency_vs_local", throughput_s / local_s}};
  if (comm.rank() == 0) {
    std::printf(
        "capacity %7ld/rank: sharded holds %8ld; local memory of %ld on rank 0 alone: %8.0f q/s\n"
        "  split      (one %ld-query batch, %ld per rank): %8.0f q/s, latency %.2fx local "
        "(target <= 1.5x)\n"
        "  throughput (%ld queries from every rank): %8.0f q/s per rank, %8.0f q/s all ranks, "
        "latency %.2fx local\n",
        capacity, sharded.size(0), capacity, q / local_s, q, share, q / split_s, split_s / local_s,
        q, q / throughput_s, q * ranks / throughput_s, throughput_s / local_s);
    std::fflush(stdout);
  }
  return row;
}

// The step-overhead model: decoder-only, its knn layer in the middle.
model::TransformerOptions StepModelOptions(int64_t top_k) {
  model::TransformerOptions options;
  options.vocab_size = 1000;
  options.model_dim = 256;
  options.heads = 4;
  options.ffn_dim = 1024;
  options.encoder_layers = 0;
  options.decoder_layers = 4;
  options.layer_attention = {{2, "knn"}};
  options.attention_options.knn.top_k = top_k;
  return options;
}

// For each capacity: the median seconds of a training step (forward and
// backward of the loss) with the knn layer's memory full, against the same
// without memory, and their ratio.
nlohmann::json StepOverhead(int64_t top_k) {
  const model::TransformerOptions options = StepModelOptions(top_k);
  model::Transformer lm(options);
  lm->to(measured_device);
  const int64_t batch = absl::GetFlag(FLAGS_step_batch), length = absl::GetFlag(FLAGS_step_segment);
  const int64_t head_dim = options.model_dim / options.heads;
  const auto on_device = at::TensorOptions().dtype(at::kLong).device(measured_device);
  const at::Tensor tokens = at::randint(1, options.vocab_size, {batch, length}, on_device);
  const at::Tensor targets = at::randint(1, options.vocab_size, {batch * length}, on_device);
  const auto step_seconds = [&](const std::function<at::Tensor()>& forward) {
    const auto start = Now();
    lm->zero_grad();
    at::cross_entropy_loss(forward().view({batch * length, options.vocab_size}), targets)
        .backward();
    launch::WaitForDevice(measured_device);
    return Seconds(start);
  };
  std::printf(
      "knn step overhead: LM of %ld layers, D = %ld, %ld heads, knn at layer %ld (top-%ld), "
      "%ld x %ld tokens, forward + backward, median of %d\n",
      options.decoder_layers, options.model_dim, options.heads,
      options.layer_attention.begin()->first, top_k, batch, length, bench::Repeats());
  nlohmann::json rows = nlohmann::json::array();
  for (const int64_t capacity :
       ParseList(absl::GetFlag(FLAGS_step_capacities), "step_capacities")) {
    // Every stream starts full, as deep into a long document: what it holds
    // does not change the cost of an exact search.
    std::shared_ptr<memory::ExactKnnMemory> memory;
    model::TransformerDecodeStates states = lm->NewSegmentStates(batch, [&](int64_t, int64_t rows) {
      memory = std::make_shared<memory::ExactKnnMemory>(memory::ExactKnnMemoryOptions(capacity));
      std::vector<int64_t> streams;
      for (int64_t row = 0; row < rows; ++row) {
        CHECK(memory
                  ->add(row, UnitRows({options.heads, capacity, head_dim}),
                        at::randn({options.heads, capacity, head_dim},
                                  at::TensorOptions().device(measured_device)))
                  .ok());
        streams.push_back(row);
      }
      return memory::KnnLayerMemory{memory, std::move(streams)};
    });
    std::vector<double> with_memory, without;
    for (int rep = 0; rep < bench::Warmup() + bench::Repeats(); ++rep) {
      without.push_back(step_seconds([&] { return lm->ForwardLm(tokens); }));
      with_memory.push_back(step_seconds([&] { return lm->ForwardSegment(tokens, states); }));
    }
    // Every segment was written: the rings stayed full, each past `capacity` by the segments.
    CHECK_EQ(memory->size(0), capacity);
    CHECK_EQ(memory->added(0), capacity + static_cast<int64_t>(with_memory.size()) * length);
    with_memory.erase(with_memory.begin(), with_memory.begin() + bench::Warmup());  // untimed
    without.erase(without.begin(), without.begin() + bench::Warmup());
    const double with_s = bench::Median(with_memory), without_s = bench::Median(without);
    rows.push_back({{"memory", capacity},
                    {"step_s_with_memory", with_s},
                    {"step_s_without_memory", without_s},
                    {"ratio", with_s / without_s}});
    std::printf("  memory %7ld: %.3f s per step, without memory %.3f s: %.2fx\n", capacity, with_s,
                without_s, with_s / without_s);
    std::fflush(stdout);
  }
  return rows;
}

int Main(int argc, char** argv) {
  const absl::Status repetitions = bench::SetRepetitionDefaults(/*warmup=*/1, /*repeats=*/5);
  if (!repetitions.ok()) return ExitStatus(repetitions, "[bench-knn]");
  auto rank = launch::StartRank(&argc, &argv, "[bench-knn]");
  CHECK(rank.ok()) << rank.status();
  parallel::Communicator& comm = *rank->world;
  measured_device = rank->device.device;
  const bool root = comm.rank() == 0;
  const int64_t k = absl::GetFlag(FLAGS_top), d = absl::GetFlag(FLAGS_dim);
  nlohmann::json report = {{"benchmark", "knn"},
                           {"ranks", comm.size()},
                           {"threads_per_rank", at::get_num_threads()},
                           {"queries", absl::GetFlag(FLAGS_queries)},
                           {"top", k},
                           {"dim", d},
                           {"device", rank->device.device.str()}};
  if (root) {
    std::printf("bench-knn: %ld queries, top-%ld, d = %ld, ranks %d, each %s\n",
                absl::GetFlag(FLAGS_queries), k, d, comm.size(), rank->device.description.c_str());
    if (comm.size() > 1) {
      std::printf("local baseline: rank 0 alone at the same %d thread(s), the other ranks asleep\n",
                  at::get_num_threads());
    }
    std::fflush(stdout);
  }
  at::manual_seed(1 + comm.rank());
  nlohmann::json results = nlohmann::json::array();
  for (const int64_t capacity : ParseList(absl::GetFlag(FLAGS_capacities), "capacities")) {
    const at::Tensor keys = UnitRows({1, capacity, d}),
                     values =
                         at::randn({1, capacity, 1}, at::TensorOptions().device(measured_device));
    results.push_back(comm.size() == 1 ? OneRankRow(capacity, keys, values, k)
                                       : ShardedRow(comm, capacity, keys, values, k));
  }
  report["results"] = std::move(results);
  if (absl::GetFlag(FLAGS_step) && comm.size() == 1) {
    report["step_overhead"] = StepOverhead(k);
  } else if (absl::GetFlag(FLAGS_step) && root) {
    std::printf("knn step overhead: measured in one-rank runs only\n");
  }
  if (root) return ExitStatus(bench::WriteJsonIfRequested(report), "[bench-knn]");
  return 0;
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(
      argc, argv,
      "Search speed of the kNN memories. One rank: ExactKnnMemory (fp32, bf16) vs FAISS flat and "
      "HNSW. Under mpirun: ShardedKnnMemory, split (one batch over the ranks, latency vs a local "
      "memory of the same capacity per rank on rank 0 alone) and throughput (every rank's own "
      "batch). Threads per rank: the cores divided among the ranks. One rank only: the knn step "
      "overhead, a small LM's training step with a full memory vs without (--step=false skips it)."
      "\n"
      "  [mpirun -np 2 --bind-to none --allow-run-as-root] bench-knn "
      "[--capacities=8192,65536,262144] [--step_capacities=8192,65536] [--warmup 1 --repeats 5] "
      "[--json FILE]");
  return memtrain::Main(argc, argv);
}
