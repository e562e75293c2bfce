// bench-train: training throughput of memtrain-train's loop against a PyTorch
// (Python, eager) loop of the same model, data and batch, measured in the same
// run; data-parallel efficiency from 1 to 2 ranks; the gradient reducer's
// overhead at one rank.
//
//   source scripts/env.sh && build/bin/bench-train [--json FILE] [--rounds 3] [--warmup 3 --repeats
//   8]
//
// Every measurement runs in a child process of its own, so the ranks, thread
// counts and allocators never share a process (docs/BENCHMARKS.md defines
// every number):
//   single  memtrain, 1 rank: trainer::Trainer::StepOn (the step memtrain-train
//           runs, reducer included) and a plain loop (the same model, task,
//           loss, norm and fused Adam with the division by the tokens, no reducer), step by step
//           alternately in one process
//   python  bench/pytorch_train_reference.py on the same batches, at the same
//           thread counts
//   ranks   memtrain, `mpirun -np 2`, one thread per rank (launch/device.h)
// The parent writes a synthetic lm corpus with CorpusWriter (no SentencePiece),
// dumps the batches a BatchSource makes of it to one raw int64 file that
// every child reads, measures the fp32 matmul peak, and repeats the children
// --rounds times alternately (the machine is shared and noisy: medians). Each
// child runs --warmup untimed and --repeats timed steps.
#include <ATen/ATen.h>
#include <torch/nn/utils/clip_grad.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/bench_support.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "data/batch_source.h"
#include "data/corpus_file.h"
#include "glog/logging.h"
#include "launch/device.h"
#include "nlohmann/json.hpp"
#include "parallel/mpi_runtime.h"
#include "trainer/fused_adam.h"
#include "trainer/task.h"
#include "trainer/trainer.h"

ABSL_FLAG(int64_t, dim, 256, "Model width D.");
ABSL_FLAG(int64_t, layers, 4, "Decoder layers L.");
ABSL_FLAG(int64_t, heads, 4, "Attention heads.");
ABSL_FLAG(int64_t, ffn_dim, 1024, "Feed-forward width.");
ABSL_FLAG(int32_t, vocab, 8000, "Vocabulary of the synthetic corpus (ids 5 .. vocab-1 are words).");
ABSL_FLAG(int, streams, 8, "Rows per step and rank.");
ABSL_FLAG(int, segment_length, 256, "Tokens per row and step (n).");
ABSL_FLAG(bool, padding, true,
          "Documents of 1000..3000 tokens, so a row pads from a document's end to the segment's "
          "(8 % of the positions at the defaults); false: documents of whole segments (4..12 "
          "segment lengths), so no row pads and skipping the padding buys memtrain nothing.");
ABSL_FLAG(int, rounds, 3, "Repetitions of every measurement, alternating (median of the rounds).");
ABSL_FLAG(int, ranks, 2, "Ranks of the data-parallel measurement (0: skip it).");
ABSL_FLAG(std::string, mpirun, "mpirun", "mpirun of the MPI memtrain is built with.");
ABSL_FLAG(std::string, python, MEMTRAIN_PYTHON_PATH,
          "Python with torch, for the PyTorch baseline.");
ABSL_FLAG(std::string, reference_script, MEMTRAIN_TRAIN_REFERENCE_SCRIPT, "The PyTorch baseline.");
ABSL_FLAG(std::string, measure, "", "Internal: run one child measurement (single or ranks).");
ABSL_FLAG(int, threads, 0, "Internal: intra-op threads of a single measurement.");
ABSL_FLAG(std::string, corpus, "", "Internal: the corpus the parent wrote.");
ABSL_FLAG(std::string, batches, "", "Internal: the batches the parent dumped.");

namespace memtrain {
namespace {

constexpr int32_t kFirstWord = 5;  // after pad, unk, bos, eos, sep (data/corpus_file.h)
constexpr int32_t kEos = 3;

using bench::Median;

int TotalSteps() { return bench::Warmup() + bench::Repeats(); }

model::TransformerOptions ModelOptions() {
  model::TransformerOptions o;
  o.vocab_size = absl::GetFlag(FLAGS_vocab);
  o.pad_id = 0;
  o.model_dim = absl::GetFlag(FLAGS_dim);
  o.heads = absl::GetFlag(FLAGS_heads);
  o.ffn_dim = absl::GetFlag(FLAGS_ffn_dim);
  o.encoder_layers = 0;
  o.decoder_layers = absl::GetFlag(FLAGS_layers);
  o.attention = "softmax";
  return o;  // dropout 0.1, no attention dropout, tied embeddings: the defaults
}

// memtrain-train's defaults for lm except the schedule: a constant rate, so
// that the PyTorch loop's fixed rate is the same one.
trainer::TrainerOptions TrainerOptionsFor(const std::string& corpus) {
  trainer::TrainerOptions o;
  o.train_data = corpus;
  o.steps = TotalSteps();
  o.batch.streams = absl::GetFlag(FLAGS_streams);
  o.batch.segment_length = absl::GetFlag(FLAGS_segment_length);
  o.lr_schedule = "constant";
  o.lr.warmup_steps = 0;
  o.log_every = std::numeric_limits<int64_t>::max();
  return o;
}

// ---- inputs -------------------------------------------------------------------------

// Documents of 1000..3000 tokens (a row pads from its document's end to the
// segment's, so short documents would waste positions), or with --padding=false
// of whole segments (a document of w words and its eos gives w input/target
// pairs); each word followed by a fixed successor with probability 0.9 (so the
// loss falls); `tokens` in all.
absl::Status WriteCorpus(const std::string& path, int64_t tokens) {
  const int32_t vocab = absl::GetFlag(FLAGS_vocab);
  data::TokenizerInfo tokenizer;
  tokenizer.model_bytes = absl::StrCat("bench-train synthetic vocabulary of ", vocab);
  tokenizer.sha256 = data::Sha256Hex(tokenizer.model_bytes);
  tokenizer.model_type = "synthetic";
  tokenizer.vocab_size = vocab;
  for (int32_t id = 0; id < vocab; ++id) tokenizer.pieces.push_back(absl::StrCat("\u2581w", id));
  MEMTRAIN_ASSIGN_OR_RETURN(auto writer, data::CorpusWriter::Create(path, "lm", tokenizer));
  std::mt19937_64 random(1);
  std::uniform_int_distribution<int32_t> word(kFirstWord, vocab - 1);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  const int32_t words = vocab - kFirstWord;
  for (int64_t written = 0; written < tokens;) {
    const int64_t segment = absl::GetFlag(FLAGS_segment_length);
    std::vector<int32_t> document(absl::GetFlag(FLAGS_padding) ? 1000 + random() % 2001
                                                               : segment * (4 + random() % 9));
    document[0] = word(random);
    for (size_t i = 1; i < document.size(); ++i) {
      const int32_t successor = kFirstWord + ((document[i - 1] - kFirstWord) * 7 + 3) % words;
      document[i] = coin(random) < 0.9 ? successor : word(random);
    }
    document.push_back(kEos);
    written += static_cast<int64_t>(document.size());
    MEMTRAIN_RETURN_IF_ERROR(writer->Append(document, {}, {}, ""));
  }
  data::CorpusHeader header;
  header.corpus = "demo";
  header.split = "train";
  header.task = "lm";
  return writer->Finish(header);
}

// The first TotalSteps() batches of rank 0 of 1, as int64
// [step][inputs, targets, loss_mask][streams][segment_length].
absl::Status DumpBatches(const std::string& corpus, const std::string& path) {
  data::BatchSourceOptions options;
  options.streams = absl::GetFlag(FLAGS_streams);
  options.segment_length = absl::GetFlag(FLAGS_segment_length);
  MEMTRAIN_ASSIGN_OR_RETURN(auto source, data::OpenBatchSource(corpus, options));
  std::ofstream out(path, std::ios::binary);
  for (int step = 0; step < TotalSteps(); ++step) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, source->Next());
    if (!batch || batch->inputs.size(0) != options.streams ||
        batch->inputs.size(1) != options.segment_length) {
      return absl::InternalError(absl::StrCat(corpus, " gave no full batch at step ", step));
    }
    const at::Tensor packed = at::stack({batch->inputs.to(at::kLong), batch->targets.to(at::kLong),
                                         batch->loss_mask.to(at::kLong)})
                                  .contiguous();
    out.write(static_cast<const char*>(packed.data_ptr()),
              static_cast<std::streamsize>(packed.nbytes()));
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::vector<data::Batch> ReadBatches(const std::string& path) {
  const int64_t streams = absl::GetFlag(FLAGS_streams),
                length = absl::GetFlag(FLAGS_segment_length);
  const at::Tensor all = at::empty({TotalSteps(), 3, streams, length}, at::kLong);
  std::ifstream in(path, std::ios::binary);
  in.read(static_cast<char*>(all.data_ptr()), static_cast<std::streamsize>(all.nbytes()));
  CHECK(in) << "cannot read " << all.nbytes() << " bytes of batches from " << path;
  std::vector<data::Batch> batches;
  for (int step = 0; step < TotalSteps(); ++step) {
    data::Batch batch;
    batch.inputs = all[step][0].clone();
    batch.targets = all[step][1].clone();
    batch.loss_mask = all[step][2].to(at::kBool);
    batch.new_document = at::zeros({streams}, at::kBool);
    batch.loss_tokens = batch.loss_mask.sum().item<int64_t>();
    batches.push_back(std::move(batch));
  }
  return batches;
}

// ---- the matmul peak ------------------------------------------------------------------

// Best fp32 FLOP/s of a square at::mm at `threads` threads (checked against
// matrix-vector products of the same inputs).
double MatmulPeak(int threads) {
  constexpr int64_t kSize = 2048;
  at::set_num_threads(threads);
  const at::Tensor a = at::randn({kSize, kSize}), b = at::randn({kSize, kSize});
  at::Tensor c = at::mm(a, b);
  double best = 0;
  for (int repeat = 0; repeat < 8; ++repeat) {
    const absl::Time start = absl::Now();
    at::mm_out(c, a, b);
    best = std::max(best, 2.0 * kSize * kSize * kSize / absl::ToDoubleSeconds(absl::Now() - start));
  }
  CHECK(at::allclose(c.select(1, 7), at::mv(a, b.select(1, 7)), 1e-3, 1e-3))
      << "at::mm gave a wrong product";
  return best;
}

// ---- children ---------------------------------------------------------------------

// Runs `command` and returns the JSON object its last line prints.
absl::StatusOr<nlohmann::json> RunJsonChild(const bench::ChildCommand& command) {
  MEMTRAIN_ASSIGN_OR_RETURN(const bench::ChildResult child, bench::RunChild(command));
  return child.LastLineJson();
}

std::vector<std::string> ShapeFlags() {
  return {absl::StrCat("--dim=", absl::GetFlag(FLAGS_dim)),
          absl::StrCat("--layers=", absl::GetFlag(FLAGS_layers)),
          absl::StrCat("--heads=", absl::GetFlag(FLAGS_heads)),
          absl::StrCat("--ffn_dim=", absl::GetFlag(FLAGS_ffn_dim)),
          absl::StrCat("--vocab=", absl::GetFlag(FLAGS_vocab)),
          absl::StrCat("--streams=", absl::GetFlag(FLAGS_streams)),
          absl::StrCat("--warmup=", bench::Warmup()),
          absl::StrCat("--repeats=", bench::Repeats())};
}

bench::ChildCommand MemtrainChild(const std::string& self, const std::string& measure, int threads,
                                  const std::string& corpus, const std::string& batches) {
  bench::ChildCommand child;
  if (measure == "ranks") {
    child.argv = {absl::GetFlag(FLAGS_mpirun), "-np", std::to_string(absl::GetFlag(FLAGS_ranks)),
                  "--bind-to", "none"};
  }
  for (std::string arg : {self, "--measure=" + measure, absl::StrCat("--threads=", threads),
                          "--corpus=" + corpus, "--batches=" + batches,
                          absl::StrCat("--segment_length=", absl::GetFlag(FLAGS_segment_length))}) {
    child.argv.push_back(std::move(arg));
  }
  for (std::string& flag : ShapeFlags()) child.argv.push_back(std::move(flag));
  return child;
}

bench::ChildCommand PythonChild(int threads, const std::string& batches) {
  bench::ChildCommand child;
  child.argv = {absl::GetFlag(FLAGS_python), absl::GetFlag(FLAGS_reference_script),
                "--batches=" + batches, absl::StrCat("--threads=", threads),
                absl::StrCat("--length=", absl::GetFlag(FLAGS_segment_length))};
  for (std::string& flag : ShapeFlags()) child.argv.push_back(std::move(flag));
  // The malloc thresholds memtrain sets for itself (common/process.h); without
  // them every large tensor is faulted in again (TOOLCHAIN.md).
  child.extra_environment = {"MALLOC_MMAP_THRESHOLD_=4294967296",
                             "MALLOC_TRIM_THRESHOLD_=4294967296",
                             absl::StrCat("OMP_NUM_THREADS=", threads)};
  return child;
}

// Child "single": one rank, --threads threads; Trainer steps and plain-loop
// steps alternately on the dumped batches. Prints their step seconds.
absl::Status MeasureSingle(int argc, char** argv) {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  MEMTRAIN_ASSIGN_OR_RETURN(auto runtime, parallel::MpiRuntime::Initialize(&argc, &argv, {}));
  MEMTRAIN_ASSIGN_OR_RETURN(auto world, runtime->CreateWorld({}));
  const trainer::TrainerOptions options = TrainerOptionsFor(absl::GetFlag(FLAGS_corpus));
  const std::vector<data::Batch> batches = ReadBatches(absl::GetFlag(FLAGS_batches));
  MEMTRAIN_ASSIGN_OR_RETURN(
      auto trainer_loop,
      trainer::Trainer::Create(options, ModelOptions(), *world, c10::Device(c10::kCPU)));

  // The plain loop: Trainer::StepOn for one rank and one micro-batch, without
  // the GradientReducer and the all-reduce of the loss totals.
  at::manual_seed(options.seed);
  MEMTRAIN_ASSIGN_OR_RETURN(model::Transformer plain, model::MakeTransformer(ModelOptions()));
  trainer::TaskOptions task_options;
  task_options.label_smoothing = options.label_smoothing;
  MEMTRAIN_ASSIGN_OR_RETURN(auto task, trainer::MakeTask("lm", task_options));
  trainer::FusedAdam adam(plain->parameters(), torch::optim::AdamOptions(options.lr.lr)
                                                   .betas({options.adam_beta1, options.adam_beta2})
                                                   .eps(options.adam_eps));
  auto plain_step = [&](const data::Batch& batch) {
    plain->train();
    trainer::TokenLoss loss = task->Forward(*plain, batch);
    loss.smoothed.backward();
    // As Trainer::StepOn: the norm of the summed gradients, the division by
    // the tokens inside the optimizer's kernel.
    torch::nn::utils::clip_grad_norm_(plain->parameters(), std::numeric_limits<double>::infinity());
    adam.StepWithGradScale(loss.totals.tokens);
    adam.zero_grad();
  };

  std::vector<double> trainer_seconds, plain_seconds, trainer_losses;
  double tokens = 0, unpadded = 0;
  for (int step = 0; step < TotalSteps(); ++step) {
    absl::Time start = absl::Now();
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::StepMetrics metrics, trainer_loop->StepOn({batches[step]}));
    const double trainer_step = absl::ToDoubleSeconds(absl::Now() - start);
    start = absl::Now();
    plain_step(batches[step]);
    const double plain_step_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    trainer_losses.push_back(metrics.loss);
    if (step < bench::Warmup()) continue;
    trainer_seconds.push_back(trainer_step);
    plain_seconds.push_back(plain_step_seconds);
    tokens += metrics.tokens;
    unpadded +=
        static_cast<double>(batches[step].inputs.ne(ModelOptions().pad_id).sum().item<int64_t>());
  }
  int64_t parameters = 0;
  for (const at::Tensor& p : trainer_loop->model().parameters()) parameters += p.numel();
  const nlohmann::json result = {
      {"parameters", parameters},
      {"threads", at::get_num_threads()},
      {"tokens_per_step", tokens / static_cast<double>(trainer_seconds.size())},
      {"unpadded_positions_per_step", unpadded / static_cast<double>(trainer_seconds.size())},
      {"trainer_step_seconds", trainer_seconds},
      {"plain_step_seconds", plain_seconds},
      {"trainer_loss", trainer_losses}};
  std::printf("%s\n", result.dump().c_str());
  return absl::OkStatus();
}

// Child "ranks" (under mpirun): every rank trains on the dumped batches
// rotated by its rank, one thread each (launch/device.h). Rank 0 prints the
// per-rank tokens and the slowest rank's step seconds.
absl::Status MeasureRanks(int argc, char** argv) {
  MEMTRAIN_ASSIGN_OR_RETURN(auto runtime, parallel::MpiRuntime::Initialize(&argc, &argv, {}));
  MEMTRAIN_ASSIGN_OR_RETURN(auto world, runtime->CreateWorld({}));
  MEMTRAIN_ASSIGN_OR_RETURN(
      launch::DeviceChoice device,
      launch::ChooseDeviceForThisMachine(absl::GetFlag(FLAGS_device), world->local_rank(),
                                         world->local_size()));
  launch::ApplyDeviceChoice(device);
  const std::vector<data::Batch> batches = ReadBatches(absl::GetFlag(FLAGS_batches));
  MEMTRAIN_ASSIGN_OR_RETURN(auto trainer_loop,
                            trainer::Trainer::Create(TrainerOptionsFor(absl::GetFlag(FLAGS_corpus)),
                                                     ModelOptions(), *world, device.device));
  std::vector<double> seconds, overlap;
  double tokens = 0;
  for (int step = 0; step < TotalSteps(); ++step) {
    const data::Batch& batch = batches[(step + world->rank()) % batches.size()];
    const absl::Time start = absl::Now();
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::StepMetrics metrics, trainer_loop->StepOn({batch}));
    at::Tensor slowest = at::full({1}, absl::ToDoubleSeconds(absl::Now() - start), at::kDouble);
    MEMTRAIN_RETURN_IF_ERROR(world->allreduce(slowest, parallel::ReduceOp::kMax));
    if (step < bench::Warmup()) continue;
    seconds.push_back(slowest.item<double>());
    overlap.push_back(metrics.overlap_fraction);
    tokens += metrics.tokens;
  }
  if (world->rank() == 0) {
    const nlohmann::json result = {
        {"ranks", world->size()},
        {"threads_per_rank", at::get_num_threads()},
        {"tokens_per_step_per_rank", tokens / static_cast<double>(seconds.size() * world->size())},
        {"step_seconds", seconds},
        {"overlap_fraction", overlap}};
    std::printf("%s\n", result.dump().c_str());
  }
  return absl::OkStatus();
}

// ---- the parent ---------------------------------------------------------------------

struct Throughput {
  std::vector<double> per_round;  // tokens/s of each round
  double median() const { return Median(per_round); }
};

double TokensPerSecond(double tokens_per_step, const nlohmann::json& step_seconds) {
  return tokens_per_step / Median(step_seconds.get<std::vector<double>>());
}

absl::Status Parent() {
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string self, bench::ThisExecutable());
  MEMTRAIN_ASSIGN_OR_RETURN(const bench::WorkDir work_dir, bench::WorkDir::Create("bench_train"));
  const std::string corpus = work_dir.path() + "/synthetic.train.h5",
                    batches = work_dir.path() + "/batches.int64";
  const int64_t positions_per_step =
      int64_t{absl::GetFlag(FLAGS_streams)} * absl::GetFlag(FLAGS_segment_length);
  // Streams split the corpus into `streams` parts: four times what the steps need.
  MEMTRAIN_RETURN_IF_ERROR(WriteCorpus(corpus, 4 * positions_per_step * (TotalSteps() + 1)));
  MEMTRAIN_RETURN_IF_ERROR(DumpBatches(corpus, batches));

  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int ranks = absl::GetFlag(FLAGS_ranks);
  const int rank_threads = std::max(1, cores / std::max(ranks, 1));
  const double peak = MatmulPeak(cores);
  const double rank_peak = MatmulPeak(rank_threads);

  Throughput memtrain, plain, pytorch, memtrain_rank_threads, plain_rank_threads,
      pytorch_rank_threads, per_rank;
  std::vector<double> ratios, rank_thread_ratios, overheads, rank_thread_overheads, overlap;
  int64_t memtrain_parameters = 0, pytorch_parameters = 0;
  double target_tokens_per_step = 0, unpadded_positions_per_step = 0;
  double memtrain_loss = 0, pytorch_loss = 0;
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    MEMTRAIN_ASSIGN_OR_RETURN(nlohmann::json single,
                              RunJsonChild(MemtrainChild(self, "single", cores, corpus, batches)));
    MEMTRAIN_ASSIGN_OR_RETURN(nlohmann::json python, RunJsonChild(PythonChild(cores, batches)));
    const double tokens = single["tokens_per_step"].get<double>();
    target_tokens_per_step = tokens;
    unpadded_positions_per_step = single["unpadded_positions_per_step"].get<double>();
    memtrain.per_round.push_back(TokensPerSecond(tokens, single["trainer_step_seconds"]));
    plain.per_round.push_back(TokensPerSecond(tokens, single["plain_step_seconds"]));
    pytorch.per_round.push_back(
        TokensPerSecond(python["tokens_per_step"].get<double>(), python["step_seconds"]));
    ratios.push_back(memtrain.per_round.back() / pytorch.per_round.back());
    overheads.push_back(plain.per_round.back() / memtrain.per_round.back() - 1.0);
    memtrain_parameters = single["parameters"].get<int64_t>();
    pytorch_parameters = python["parameters"].get<int64_t>();
    memtrain_loss = single["trainer_loss"].back().get<double>();
    pytorch_loss = python["smoothed_loss_per_token"].back().get<double>();
    if (std::abs(python["tokens_per_step"].get<double>() - tokens) > 1) {
      return absl::InternalError(absl::StrCat("the PyTorch loop counted ",
                                              python["tokens_per_step"].dump(),
                                              " tokens per step, memtrain ", tokens));
    }
    if (ranks > 1) {
      MEMTRAIN_ASSIGN_OR_RETURN(
          nlohmann::json alone,
          RunJsonChild(MemtrainChild(self, "single", rank_threads, corpus, batches)));
      MEMTRAIN_ASSIGN_OR_RETURN(nlohmann::json python_alone,
                                RunJsonChild(PythonChild(rank_threads, batches)));
      MEMTRAIN_ASSIGN_OR_RETURN(
          nlohmann::json together,
          RunJsonChild(MemtrainChild(self, "ranks", rank_threads, corpus, batches)));
      memtrain_rank_threads.per_round.push_back(
          TokensPerSecond(tokens, alone["trainer_step_seconds"]));
      plain_rank_threads.per_round.push_back(TokensPerSecond(tokens, alone["plain_step_seconds"]));
      pytorch_rank_threads.per_round.push_back(
          TokensPerSecond(tokens, python_alone["step_seconds"]));
      rank_thread_ratios.push_back(memtrain_rank_threads.per_round.back() /
                                   pytorch_rank_threads.per_round.back());
      rank_thread_overheads.push_back(
          plain_rank_threads.per_round.back() / memtrain_rank_threads.per_round.back() - 1.0);
      per_rank.per_round.push_back(TokensPerSecond(
          together["tokens_per_step_per_rank"].get<double>(), together["step_seconds"]));
      overlap.push_back(Median(together["overlap_fraction"].get<std::vector<double>>()));
    }
    std::fprintf(stderr, "[bench-train] round %d: memtrain %.0f tok/s, PyTorch %.0f tok/s\n",
                 round + 1, memtrain.per_round.back(), pytorch.per_round.back());
  }
  if (memtrain_parameters != pytorch_parameters) {
    return absl::InternalError(absl::StrCat("not the same model: memtrain has ",
                                            memtrain_parameters, " parameters, the PyTorch loop ",
                                            pytorch_parameters));
  }

  // Model FLOPs per token (PaLM, Chowdhery et al. 2022, appendix B): 6 N for
  // the matmuls of forward and backward (N = every parameter; the tied
  // embedding counts once, as the output projection), plus 12 L D n for the
  // attention scores and values (the full n x n, causal masking not discounted).
  const double d = static_cast<double>(absl::GetFlag(FLAGS_dim)),
               n = absl::GetFlag(FLAGS_segment_length),
               layers = static_cast<double>(absl::GetFlag(FLAGS_layers));
  const double flops_per_token =
      6.0 * static_cast<double>(memtrain_parameters) + 12.0 * layers * d * n;
  // Per position that is not padding: the padding is no work the model needs
  // (memtrain skips its feed-forward and output projection, the PyTorch loop
  // computes them). tokens/s counts targets.
  auto mfu = [&](double tokens_per_second, double peak_flops) {
    return flops_per_token * tokens_per_second * unpadded_positions_per_step /
           target_tokens_per_step / peak_flops;
  };

  std::printf(
      "# bench-train: decoder-only LM, D=%lld, %lld layers, %lld heads, FFN %lld, vocab %d, "
      "%d x %d tokens per step and rank; %d warm-up + %d timed steps (median), %d rounds "
      "(median)\n",
      static_cast<long long>(d), static_cast<long long>(layers),
      static_cast<long long>(absl::GetFlag(FLAGS_heads)),
      static_cast<long long>(absl::GetFlag(FLAGS_ffn_dim)), absl::GetFlag(FLAGS_vocab),
      absl::GetFlag(FLAGS_streams), absl::GetFlag(FLAGS_segment_length), bench::Warmup(),
      bench::Repeats(), absl::GetFlag(FLAGS_rounds));
  std::printf(
      "# parameters: memtrain %lld, PyTorch %lld; model FLOPs per position 6N + 12LDn = %.4g; "
      "%.0f target tokens and %.0f unpadded positions of %lld per step (tokens/s counts targets, "
      "MFU unpadded positions)\n",
      static_cast<long long>(memtrain_parameters), static_cast<long long>(pytorch_parameters),
      flops_per_token, target_tokens_per_step, unpadded_positions_per_step,
      static_cast<long long>(positions_per_step));
  std::printf(
      "# fp32 matmul peak (2048^3 at::mm, best of 8): %.1f GFLOP/s at %d threads, %.1f GFLOP/s at "
      "%d\n",
      peak / 1e9, cores, rank_peak / 1e9, rank_threads);
  std::printf(
      "# last smoothed loss per token: memtrain %.3f, PyTorch %.3f (same data; different initial "
      "weights)\n\n",
      memtrain_loss, pytorch_loss);
  std::printf("%-36s %7s %10s %9s %6s\n", "loop", "threads", "tokens/s", "step ms", "MFU");
  auto row = [&](const char* name, int threads, const Throughput& t, double peak_flops) {
    std::printf("%-36s %7d %10.0f %9.1f %5.1f%%\n", name, threads, t.median(),
                1e3 * target_tokens_per_step / t.median(), 100 * mfu(t.median(), peak_flops));
  };
  row("memtrain Trainer::StepOn, 1 rank", cores, memtrain, peak);
  row("memtrain plain loop (no reducer)", cores, plain, peak);
  row("PyTorch eager (Python)", cores, pytorch, peak);
  std::printf(
      "\nmemtrain / PyTorch = %.2f (median of the rounds' ratios; target >= 1.1); plain loop / "
      "PyTorch = %.2f\n",
      Median(ratios), plain.median() / pytorch.median());
  std::printf(
      "reducer overhead at 1 rank (plain loop tok/s / Trainer tok/s - 1): %+.1f%% at %d threads\n",
      100 * Median(overheads), cores);

  nlohmann::json results = {
      {"model",
       {{"dim", d},
        {"layers", layers},
        {"heads", absl::GetFlag(FLAGS_heads)},
        {"ffn_dim", absl::GetFlag(FLAGS_ffn_dim)},
        {"vocab", absl::GetFlag(FLAGS_vocab)},
        {"streams", absl::GetFlag(FLAGS_streams)},
        {"segment_length", n},
        {"padding", absl::GetFlag(FLAGS_padding)},
        {"parameters_memtrain", memtrain_parameters},
        {"parameters_pytorch", pytorch_parameters}}},
      {"flops_per_position", flops_per_token},
      {"flops_formula",
       "6 * parameters + 12 * layers * dim * segment_length, per unpadded position"},
      {"target_tokens_per_step", target_tokens_per_step},
      {"unpadded_positions_per_step", unpadded_positions_per_step},
      {"positions_per_step", positions_per_step},
      {"matmul_peak_flops",
       {{std::to_string(cores), peak}, {std::to_string(rank_threads), rank_peak}}},
      {"warmup_steps", bench::Warmup()},
      {"timed_steps", bench::Repeats()},
      {"rounds", absl::GetFlag(FLAGS_rounds)},
      {"threads", cores},
      {"memtrain_tokens_per_s", memtrain.median()},
      {"memtrain_tokens_per_s_rounds", memtrain.per_round},
      {"memtrain_mfu", mfu(memtrain.median(), peak)},
      {"plain_loop_tokens_per_s", plain.median()},
      {"plain_loop_tokens_per_s_rounds", plain.per_round},
      {"plain_loop_mfu", mfu(plain.median(), peak)},
      {"pytorch_tokens_per_s", pytorch.median()},
      {"pytorch_tokens_per_s_rounds", pytorch.per_round},
      {"pytorch_mfu", mfu(pytorch.median(), peak)},
      {"memtrain_over_pytorch", Median(ratios)},
      {"memtrain_over_pytorch_rounds", ratios},
      {"reducer_overhead_1_rank", Median(overheads)},
      {"reducer_overhead_1_rank_rounds", overheads},
  };
  if (ranks > 1) {
    const double ddp = per_rank.median() / plain.median();
    const double same_threads = per_rank.median() / plain_rank_threads.median();
    std::printf(
        "\ndata parallel, %d ranks x %d thread(s), %d x %d tokens per rank and step (weak "
        "scaling):\n",
        ranks, rank_threads, absl::GetFlag(FLAGS_streams), absl::GetFlag(FLAGS_segment_length));
    row("memtrain, per rank", rank_threads, per_rank, rank_peak);
    row("memtrain Trainer::StepOn, 1 rank", rank_threads, memtrain_rank_threads, rank_peak);
    row("memtrain plain loop, 1 rank", rank_threads, plain_rank_threads, rank_peak);
    row("PyTorch eager (Python)", rank_threads, pytorch_rank_threads, rank_peak);
    std::printf("memtrain / PyTorch at %d thread(s) = %.2f (median of the rounds' ratios)\n",
                rank_threads, Median(rank_thread_ratios));
    std::printf(
        "efficiency (DDP: per-rank tok/s at %d ranks / 1 rank without reducer at %d threads) = "
        "%.2f; "
        "the %d ranks share the %d cores the 1 rank had, so %.2f is perfect here\n",
        ranks, cores, ddp, ranks, cores, static_cast<double>(rank_threads) / cores);
    std::printf(
        "efficiency (same threads per rank: / 1 rank without reducer at %d thread(s)) = %.2f\n",
        rank_threads, same_threads);
    std::printf(
        "total tok/s at %d ranks / at 1 rank (same %d cores) = %.2f; overlap of the all-reduce "
        "with backward %.2f\n",
        ranks, cores, ranks * ddp, Median(overlap));
    std::printf("reducer overhead at 1 rank: %+.1f%% at %d thread(s)\n",
                100 * Median(rank_thread_overheads), rank_threads);
    results["data_parallel"] = {{"ranks", ranks},
                                {"threads_per_rank", rank_threads},
                                {"per_rank_tokens_per_s", per_rank.median()},
                                {"per_rank_tokens_per_s_rounds", per_rank.per_round},
                                {"per_rank_mfu", mfu(per_rank.median(), rank_peak)},
                                {"one_rank_trainer_tokens_per_s", memtrain_rank_threads.median()},
                                {"one_rank_plain_tokens_per_s", plain_rank_threads.median()},
                                {"one_rank_pytorch_tokens_per_s", pytorch_rank_threads.median()},
                                {"memtrain_over_pytorch", Median(rank_thread_ratios)},
                                {"memtrain_over_pytorch_rounds", rank_thread_ratios},
                                {"efficiency_ddp", ddp},
                                {"efficiency_same_threads_per_rank", same_threads},
                                {"total_speedup_same_cores", ranks * ddp},
                                {"overlap_fraction", Median(overlap)},
                                {"reducer_overhead_1_rank", Median(rank_thread_overheads)}};
  }
  return bench::WriteJsonIfRequested(results);
}

absl::Status Main(int argc, char** argv) {
  MEMTRAIN_RETURN_IF_ERROR(bench::SetRepetitionDefaults(/*warmup=*/3, /*repeats=*/8));
  const std::string measure = absl::GetFlag(FLAGS_measure);
  if (measure.empty()) return Parent();
  if (measure == "single") return MeasureSingle(argc, argv);
  if (measure == "ranks") return MeasureRanks(argc, argv);
  return absl::InvalidArgumentError(
      absl::StrCat("--measure: '", measure, "' is not single or ranks"));
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(
      argc, argv,
      "Training tokens/s and MFU of memtrain against a PyTorch loop of the same model, data "
      "parallel efficiency 1 -> 2 ranks, reducer overhead.\n"
      "  source scripts/env.sh && bench-train [--json FILE] [--rounds 3] [--warmup 3 --repeats 8]");
  return memtrain::ExitStatus(memtrain::Main(argc, argv), "[bench-train]");
}
