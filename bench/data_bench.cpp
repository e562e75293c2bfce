// bench-data: how fast memtrain prepares and reads corpora, against baselines
// measured in the same run.
//
//   mpirun -np 2 --bind-to none build/bin/bench-data [--json FILE] [--warmup 1 --repeats 4]
//
// Numbers (docs/BENCHMARKS.md):
//   prepare MB/s      raw demo text per second through memtrain-prepare (a child
//                     process: it links SentencePiece, this one LibTorch), with
//                     and without tokenizer training
//   raw read tok/s    CorpusFile::ReadTokens of the whole file in 1M-token blocks:
//                     what HDF5 + deflate deliver, the ceiling for BatchSource
//   read tok/s/rank   loss tokens per second per rank from a prefetching lm
//                     BatchSource, alone (1 rank) and with every rank reading
//   train tok/s       tokens per second of a small Transformer LM training step
//                     (2 layers, d=256, same batch shape) on this rank's cores:
//                     the median of --repeats steps after --warmup
//   reading/training  read tok/s/rank over train tok/s (target >= 100)
//   RSS               resident memory a rank-0 BatchSource epoch added, for the
//                     1x and the 10x corpus (target: flat; measured first, in
//                     a fresh process, since freed memory stays in the heap)
// Rank 0 prepares the corpora in --work_dir; every rank reads them there.
#include <ATen/ATen.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/bench_support.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "data/batch_source.h"
#include "data/corpus_file.h"
#include "glog/logging.h"
#include "launch/batch_flags.h"
#include "launch/rank_context.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(int64_t, demo_documents, 2000, "Documents of the 1x corpus (the demo default).");
ABSL_FLAG(int, scale, 10, "The large corpus is this many times the 1x one.");

namespace memtrain {
namespace {

using Clock = absl::Time;

double Seconds(Clock start) { return absl::ToDoubleSeconds(absl::Now() - start); }

int64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

// Runs memtrain-prepare (next to this binary) and returns its stats.
absl::StatusOr<nlohmann::json> RunPrepare(const std::string& output, int64_t documents,
                                          const std::string& tokenizer_from) {
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string prepare,
                            bench::SiblingExecutable("memtrain-prepare"));
  const std::string stats = output + ".stats.json";
  bench::ChildCommand command;
  command.argv = {prepare,
                  "--corpus=demo",
                  "--progress=false",
                  absl::StrCat("--demo_documents=", documents),
                  "--output=" + output,
                  "--stats_json=" + stats};
  if (!tokenizer_from.empty()) command.argv.push_back("--tokenizer_from=" + tokenizer_from);
  command.capture_stdout = false;  // it prints nothing there; its errors go to stderr
  MEMTRAIN_RETURN_IF_ERROR(bench::RunChild(command).status());
  std::ifstream in(stats);
  nlohmann::json parsed = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    return absl::InternalError(absl::StrCat("memtrain-prepare wrote no JSON to ", stats));
  return parsed;
}

// Rank 0's `text` on every rank.
absl::StatusOr<std::string> BroadcastText(parallel::Communicator& comm, const std::string& text) {
  at::Tensor length = at::tensor({static_cast<int64_t>(text.size())}, at::kLong);
  MEMTRAIN_RETURN_IF_ERROR(comm.broadcast(length, 0));
  at::Tensor bytes = at::zeros({length.item<int64_t>()}, at::kByte);
  if (comm.rank() == 0) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  MEMTRAIN_RETURN_IF_ERROR(comm.broadcast(bytes, 0));
  return std::string(static_cast<const char*>(bytes.data_ptr()),
                     static_cast<size_t>(bytes.numel()));
}

double RawReadTokensPerSecond(const std::string& path) {
  auto file = data::CorpusFile::Open(path, {});
  CHECK(file.ok()) << file.status();
  const int64_t total = (*file)->header().num_source_tokens;
  const absl::Time start = absl::Now();
  int64_t checksum = 0;
  for (int64_t offset = 0; offset < total; offset += 1 << 20) {
    auto tokens = (*file)->ReadTokens(data::Field::kSource, offset,
                                      std::min<int64_t>(1 << 20, total - offset));
    CHECK(tokens.ok()) << tokens.status();
    checksum += (*tokens)[0];
  }
  CHECK_GE(checksum, 0);
  return total / Seconds(start);
}

// Reads a whole epoch; returns loss tokens per second.
double ReadEpoch(const std::string& path, int rank, int world) {
  data::BatchSourceOptions options;
  options.rank = rank;
  options.world_size = world;
  options.streams = absl::GetFlag(FLAGS_streams);
  options.segment_length = absl::GetFlag(FLAGS_segment_length);
  auto source = data::OpenBatchSource(path, options);
  CHECK(source.ok()) << source.status();
  auto prefetched = data::Prefetch(*std::move(source));
  const absl::Time start = absl::Now();
  int64_t tokens = 0;
  while (true) {
    auto batch = prefetched->Next();
    CHECK(batch.ok()) << batch.status();
    if (!batch->has_value()) break;
    tokens += (*batch)->loss_tokens;
  }
  return tokens / Seconds(start);
}

// Tokens per second of a small Transformer LM's training step: what a
// training loop would consume from the reader on this machine.
double TrainingTokensPerSecond(int64_t vocabulary) {
  const int64_t rows = absl::GetFlag(FLAGS_streams), length = absl::GetFlag(FLAGS_segment_length);
  const int64_t width = 256;
  torch::nn::Embedding embedding(vocabulary, width);
  torch::nn::TransformerEncoder encoder(torch::nn::TransformerEncoderOptions(
      torch::nn::TransformerEncoderLayerOptions(width, 4).dim_feedforward(1024).dropout(0.0), 2));
  torch::nn::Linear output(width, vocabulary);
  std::vector<torch::Tensor> parameters;
  for (auto* module :
       std::vector<torch::nn::Module*>{embedding.get(), encoder.get(), output.get()}) {
    for (const auto& p : module->parameters()) parameters.push_back(p);
  }
  torch::optim::Adam optimizer(parameters, 1e-4);
  const torch::Tensor mask =
      torch::triu(torch::full({length, length}, -std::numeric_limits<float>::infinity()), 1);
  const torch::Tensor inputs = torch::randint(vocabulary, {rows, length}, torch::kLong);
  const torch::Tensor targets = torch::randint(vocabulary, {rows, length}, torch::kLong);
  auto step = [&] {
    optimizer.zero_grad();
    torch::Tensor hidden = encoder(embedding(inputs).transpose(0, 1), mask);
    torch::Tensor logits = output(hidden.transpose(0, 1));
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({-1, vocabulary}),
                                                              targets.reshape({-1}));
    loss.backward();
    optimizer.step();
  };
  for (int i = 0; i < bench::Warmup(); ++i) step();
  std::vector<double> seconds;
  for (int i = 0; i < bench::Repeats(); ++i) {
    const absl::Time start = absl::Now();
    step();
    seconds.push_back(Seconds(start));
  }
  return rows * length / bench::Median(seconds);
}

// The corpora in the work directory: 1x and --scale x.
constexpr char kSmallCorpus[] = "/demo_1x.h5";
constexpr char kLargeCorpus[] = "/demo_10x.h5";

// Rank 0: the large corpus in `dir` (training the tokenizer), then the small
// one (reusing it); prints the prepare line and returns its numbers.
absl::StatusOr<nlohmann::json> PrepareCorpora(const std::string& dir, int ranks) {
  const int64_t documents = absl::GetFlag(FLAGS_demo_documents);
  const int scale = absl::GetFlag(FLAGS_scale);
  MEMTRAIN_ASSIGN_OR_RETURN(const nlohmann::json with_training,
                            RunPrepare(dir + kLargeCorpus, documents * scale, ""));
  MEMTRAIN_ASSIGN_OR_RETURN(const nlohmann::json reuse,
                            RunPrepare(dir + kSmallCorpus, documents, dir + kLargeCorpus));
  const double bytes = with_training["input_bytes"].get<double>();
  const double seconds = with_training["seconds"].get<double>();
  const double train = with_training["tokenizer_training_seconds"].get<double>();
  std::printf("# bench-data: %d rank(s), demo corpus 1x = %lld documents, %dx = %lld\n", ranks,
              static_cast<long long>(documents), scale, static_cast<long long>(documents * scale));
  std::printf(
      "prepare %dx: %.1f MB of text, %.2f MB/s with tokenizer training, %.2f MB/s encoding only\n",
      scale, bytes / 1e6, bytes / 1e6 / seconds, bytes / 1e6 / (seconds - train));
  return nlohmann::json{{"documents", documents * scale},
                        {"input_MB", bytes / 1e6},
                        {"MBps_total", bytes / 1e6 / seconds},
                        {"MBps_encode_only", bytes / 1e6 / (seconds - train)},
                        {"tokens", with_training["source_tokens"]},
                        {"MBps_1x_reused_tokenizer", reuse["input_bytes"].get<double>() / 1e6 /
                                                         reuse["seconds"].get<double>()}};
}

absl::Status Main(int argc, char** argv) {
  MEMTRAIN_RETURN_IF_ERROR(bench::SetRepetitionDefaults(/*warmup=*/1, /*repeats=*/4));
  MEMTRAIN_ASSIGN_OR_RETURN(launch::RankContext rank,
                            launch::StartRank(&argc, &argv, "[bench-data]"));
  parallel::Communicator& comm = *rank.world;
  const bool root = comm.rank() == 0;
  const int scale = absl::GetFlag(FLAGS_scale);

  // Rank 0 makes the work directory and the corpora in it, then tells every
  // rank where they are, or "" when it failed: then every rank stops, rather
  // than the others waiting for rank 0 in the next collective.
  std::optional<bench::WorkDir> work_dir;
  absl::StatusOr<nlohmann::json> prepared = nlohmann::json();
  if (root) {
    absl::StatusOr<bench::WorkDir> made = bench::WorkDir::Create("bench_data");
    if (made.ok()) {
      work_dir.emplace(*std::move(made));
      prepared = PrepareCorpora(work_dir->path(), comm.size());
    } else {
      prepared = made.status();
    }
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string dir,
                            BroadcastText(comm, root && prepared.ok() ? work_dir->path() : ""));
  if (!prepared.ok()) return prepared.status();
  if (dir.empty())
    return absl::AbortedError("rank 0 could not prepare the corpora (its error is above)");
  const std::string small = dir + kSmallCorpus, large = dir + kLargeCorpus;
  nlohmann::json results;
  if (root) results["prepare"] = *std::move(prepared);

  nlohmann::json reading = nlohmann::json::array();
  int64_t vocabulary = 0;
  for (const std::string& path : {small, large}) {
    // BatchSource first, so the RSS it adds is measured before anything else
    // (freed memory stays in the heap: common/process.h).
    double raw = 0, alone = 0;
    int64_t rss_before = ResidentBytes(), rss_after = rss_before;
    if (root) {
      alone = ReadEpoch(path, 0, 1);
      rss_after = ResidentBytes();
    }
    MEMTRAIN_RETURN_IF_ERROR(comm.barrier());
    const double together = ReadEpoch(path, comm.rank(), comm.size());
    at::Tensor slowest = at::full({1}, together, at::kDouble);
    MEMTRAIN_RETURN_IF_ERROR(comm.allreduce(slowest, parallel::ReduceOp::kMin));
    if (root) {
      raw = RawReadTokensPerSecond(path);
      auto file = data::CorpusFile::Open(path, {});
      vocabulary = (*file)->tokenizer().vocab_size;
      reading.push_back({{"file", path},
                         {"tokens", (*file)->header().num_source_tokens},
                         {"raw_read_tokens_per_s", raw},
                         {"batch_source_1_rank_tokens_per_s", alone},
                         {"batch_source_tokens_per_s_per_rank", slowest.item<double>()},
                         {"ranks", comm.size()},
                         {"rss_growth_while_reading_bytes", rss_after - rss_before}});
      std::printf(
          "read %-48s %9lld tokens | raw %.3g tok/s | BatchSource 1 rank %.3g tok/s (%.2fx raw) | "
          "%d ranks %.3g tok/s/rank | RSS +%.1f MB\n",
          path.c_str(), static_cast<long long>((*file)->header().num_source_tokens), raw, alone,
          alone / raw, comm.size(), slowest.item<double>(), (rss_after - rss_before) / 1e6);
    }
  }
  if (root) {
    const double training = TrainingTokensPerSecond(vocabulary);
    const double per_rank = reading.back()["batch_source_tokens_per_s_per_rank"].get<double>();
    const double rss_small = reading.front()["rss_growth_while_reading_bytes"].get<double>();
    const double rss_large = reading.back()["rss_growth_while_reading_bytes"].get<double>();
    results["reading"] = reading;
    results["training_tokens_per_s"] = training;
    results["reading_over_training"] = per_rank / training;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    results["peak_rss_bytes"] = static_cast<int64_t>(usage.ru_maxrss) * 1024;
    results["rss_growth_1x_bytes"] = rss_small;
    results["rss_growth_10x_bytes"] = rss_large;
    std::printf("train step (2-layer Transformer LM, d=256, %d x %d tokens): %.3g tok/s\n",
                absl::GetFlag(FLAGS_streams), absl::GetFlag(FLAGS_segment_length), training);
    std::printf(
        "reading / training = %.0fx (target >= 100x); RSS added by reading: 1x %.1f MB, %dx %.1f "
        "MB (target: flat); peak RSS of rank 0 %.0f MB (LibTorch and the training step included)\n",
        per_rank / training, rss_small / 1e6, scale, rss_large / 1e6,
        results["peak_rss_bytes"].get<double>() / 1e6);
    MEMTRAIN_RETURN_IF_ERROR(bench::WriteJsonIfRequested(results));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(
      argc, argv,
      "Prepare and read throughput of memtrain corpora, with baselines.\n"
      "  mpirun -np 2 --bind-to none bench-data [--json FILE] [--warmup 1 --repeats 4]");
  return memtrain::ExitStatus(memtrain::Main(argc, argv), "[bench-data]");
}
