#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <signal.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/durable_file.h"
#include "checkpoints/model_file.h"
#include "checkpoints/safetensors.h"
#include "common/status_macros.h"
#include "data/corpus_file.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"
#include "trainer/evaluate.h"
#include "trainer/fused_adam.h"

namespace memtrain::trainer {
namespace {

absl::StatusOr<std::unique_ptr<torch::optim::Optimizer>> MakeOptimizer(
    const TrainerOptions& o, std::vector<at::Tensor> parameters) {
  if (o.optimizer == "adam") {
    return std::unique_ptr<torch::optim::Optimizer>(
        new FusedAdam(std::move(parameters), torch::optim::AdamOptions(o.lr.lr)
                                                 .betas({o.adam_beta1, o.adam_beta2})
                                                 .eps(o.adam_eps)
                                                 .weight_decay(o.weight_decay)));
  }
  if (o.optimizer == "adamw") {
    return std::unique_ptr<torch::optim::Optimizer>(
        new FusedAdamW(std::move(parameters), torch::optim::AdamWOptions(o.lr.lr)
                                                  .betas({o.adam_beta1, o.adam_beta2})
                                                  .eps(o.adam_eps)
                                                  .weight_decay(o.weight_decay)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--optimizer: '", o.optimizer, "' is not adam or adamw"));
}

data::BatchSourceOptions SourceOptions(const TrainerOptions& o,
                                       const parallel::Communicator& world) {
  data::BatchSourceOptions s;
  s.rank = world.rank();
  s.world_size = world.size();
  s.seed = o.seed;
  s.streams = o.streams;
  s.segment_length = o.segment_length;
  s.max_tokens = o.max_tokens;
  s.max_source_length = o.max_source_length;
  s.max_target_length = o.max_target_length;
  return s;
}

std::string Duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

// The options that shape the trajectory, as compared on resume.
nlohmann::json OptionsJson(const TrainerOptions& o) {
  return {{"train_data", o.train_data},
          {"valid_data", o.valid_data},
          {"task", o.task},
          {"steps", o.steps},
          {"accumulate", o.accumulate},
          {"seed", o.seed},
          {"streams", o.streams},
          {"segment_length", o.segment_length},
          {"max_tokens", o.max_tokens},
          {"max_source_length", o.max_source_length},
          {"max_target_length", o.max_target_length},
          {"optimizer", o.optimizer},
          {"adam_beta1", o.adam_beta1},
          {"adam_beta2", o.adam_beta2},
          {"adam_eps", o.adam_eps},
          {"weight_decay", o.weight_decay},
          {"lr_schedule", o.lr_schedule},
          {"lr", o.lr.lr},
          {"warmup_steps", o.lr.warmup_steps},
          {"min_lr", o.lr.min_lr},
          {"lr_total_steps", o.lr.total_steps},
          {"label_smoothing", o.label_smoothing},
          {"clip_norm", o.clip_norm},
          {"use_memory", o.use_memory},
          {"knn_backend", o.knn_memory.backend},
          {"knn_sharded", o.knn_memory.sharded},
          {"knn_scope", o.knn_memory.scope},
          {"bucket_bytes", o.reducer.bucket_bytes},
          {"first_bucket_bytes", o.reducer.first_bucket_bytes},
          {"unused_parameters", static_cast<int>(o.reducer.unused_parameters)},
          {"log_every", o.log_every},
          {"valid_every", o.valid_every},
          {"valid_steps", o.valid_steps},
          {"metrics_path", o.metrics_path},
          {"save_dir", o.save_dir},
          {"init_from", o.init_from},
          {"save_knn_memory", o.checkpoint.save_knn_memory}};
}

// Options a resumed run may change (docs/CHECKPOINTS.md, "Safe changes"):
// the learning-rate schedule's numbers and the run's length (the schedule is
// a pure function of the step, so they change the future, not the state),
// reporting, where files go, and whether later checkpoints hold the memory.
// init_from only matters for a fresh start. Everything else shapes the state
// or the data order and is refused.
const std::set<std::string>& SafeToChange() {
  static const auto* safe = new std::set<std::string>{
      "steps",        "lr",        "warmup_steps", "min_lr",         "lr_total_steps",
      "clip_norm",    "log_every", "valid_every",  "valid_steps",    "valid_data",
      "metrics_path", "save_dir",  "init_from",    "save_knn_memory"};
  return *safe;
}

// "key: checkpoint X, now Y" for each difference outside `safe`.
std::vector<std::string> Differences(const nlohmann::json& saved, const nlohmann::json& now,
                                     const std::set<std::string>& safe) {
  std::vector<std::string> differences;
  std::set<std::string> keys;
  for (const auto& item : saved.items()) keys.insert(item.key());
  for (const auto& item : now.items()) keys.insert(item.key());
  for (const std::string& key : keys) {
    const nlohmann::json a = saved.contains(key) ? saved.at(key) : nlohmann::json(),
                         b = now.contains(key) ? now.at(key) : nlohmann::json();
    if (a != b && safe.count(key) == 0)
      differences.push_back(absl::StrCat(key, ": checkpoint ", a.dump(), ", now ", b.dump()));
  }
  return differences;
}

bool IsRankFile(const std::string& file) { return absl::StartsWith(file, "rank-"); }

}  // namespace

Trainer::Trainer(const TrainerOptions& options, parallel::Communicator& world,
                 const c10::Device& device)
    : options_(options), world_(world), device_(device) {}

Trainer::~Trainer() = default;

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& options,
                                                         model::TransformerOptions model_options,
                                                         parallel::Communicator& world,
                                                         const c10::Device& device) {
  if (options.checkpoint.resume == "auto" && options.checkpoint.dir.empty()) {
    return absl::InvalidArgumentError("--resume=auto needs --checkpoint_dir");
  }
  if (options.steps < 0 || options.accumulate < 1) {
    return absl::InvalidArgumentError(absl::StrCat("steps must be >= 0 and accumulate >= 1; got ",
                                                   options.steps, " and ", options.accumulate));
  }
  std::unique_ptr<Trainer> t(new Trainer(options, world, device));
  // The corpus decides the vocabulary, the padding id and (by default) the task.
  MEMTRAIN_ASSIGN_OR_RETURN(auto train_file, data::CorpusFile::Open(options.train_data, {}));
  t->task_name_ = options.task.empty() ? train_file->header().task : options.task;
  t->tokenizer_sha256_ = train_file->tokenizer().sha256;
  if (!options.valid_data.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(auto valid_file, data::CorpusFile::Open(options.valid_data, {}));
    MEMTRAIN_RETURN_IF_ERROR(data::CheckSameTokenizer(*train_file, *valid_file));
  }
  // An unknown --task is reported with the known ones, before the corpus check.
  MEMTRAIN_RETURN_IF_ERROR(MakeTask(t->task_name_, TaskOptions{}).status());
  const bool corpus_seq2seq = train_file->is_seq2seq();
  if (corpus_seq2seq != (t->task_name_ != "lm")) {
    return absl::FailedPreconditionError(absl::StrCat("task ", t->task_name_, " cannot train on ",
                                                      options.train_data, ", a ",
                                                      train_file->header().task, " corpus"));
  }

  // Same seed on every rank, so each builds the same model; the broadcast
  // below makes that a guarantee rather than a hope.
  at::manual_seed(options.seed);
  if (!options.init_from.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(checkpoints::LoadedModel loaded,
                              checkpoints::LoadModel(options.init_from, device));
    if (loaded.info.tokenizer_sha256 != t->tokenizer_sha256_) {
      return absl::FailedPreconditionError(
          absl::StrCat("--init_from=", options.init_from, " was trained with tokenizer ",
                       loaded.info.tokenizer_sha256, " but ", options.train_data, " uses ",
                       t->tokenizer_sha256_, "; prepare the data with its tokenizer"));
    }
    t->model_ = loaded.model;
    model_options = loaded.info.options;
    LOG_IF(INFO, world.rank() == 0)
        << "[train] initialised from " << options.init_from << " (a " << loaded.info.task
        << " model after " << loaded.info.step << " steps)";
  } else {
    model_options.vocab_size = train_file->tokenizer().vocab_size;
    model_options.pad_id = train_file->tokenizer().pad_id;
    MEMTRAIN_ASSIGN_OR_RETURN(t->model_, model::MakeTransformer(model_options));
    t->model_->to(device);
  }
  MEMTRAIN_ASSIGN_OR_RETURN(t->knn_memory_,
                            MakeKnnMemoryFactory(options.knn_memory, model_options, world));
  MEMTRAIN_ASSIGN_OR_RETURN(t->task_,
                            MakeTask(t->task_name_, t->TaskOptionsFor(options.label_smoothing)));
  MEMTRAIN_RETURN_IF_ERROR(t->task_->CheckModel(model_options));
  train_file.reset();
  // Dropout differs per rank from here on, as data does.
  at::manual_seed(options.seed + 1000003ULL * static_cast<uint64_t>(world.rank() + 1));

  MEMTRAIN_ASSIGN_OR_RETURN(parallel::ModuleFingerprint fingerprint,
                            parallel::BroadcastModule(world, *t->model_));
  parallel::GradientReducerOptions reducer = options.reducer;
  reducer.op = parallel::ReduceOp::kSum;  // divided by the global token count in Step()
  MEMTRAIN_ASSIGN_OR_RETURN(t->reducer_,
                            parallel::GradientReducer::Create(world, *t->model_, reducer));
  MEMTRAIN_ASSIGN_OR_RETURN(t->optimizer_, MakeOptimizer(options, t->model_->parameters()));
  LrScheduleOptions lr = options.lr;
  if (lr.total_steps == 0) lr.total_steps = options.steps;
  MEMTRAIN_ASSIGN_OR_RETURN(t->schedule_, MakeLrSchedule(options.lr_schedule, lr));

  MEMTRAIN_ASSIGN_OR_RETURN(
      auto train, data::OpenBatchSource(options.train_data, SourceOptions(options, world)));
  t->train_ = data::Prefetch(std::move(train));
  if (!options.valid_data.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(
        t->valid_, data::OpenBatchSource(options.valid_data, SourceOptions(options, world)));
  }
  if (world.rank() == 0) {
    if (!options.metrics_path.empty()) {
      MEMTRAIN_ASSIGN_OR_RETURN(t->metrics_, MetricsLog::Open(options.metrics_path));
    }
    LOG(INFO) << "[train] task " << t->task_name_ << " on " << options.train_data << ", "
              << world.size() << " rank(s), device " << device.str() << "; model:\n"
              << t->model_->ParameterReport();
    LOG(INFO) << absl::StrFormat(
        "[train] parameters broadcast from rank 0 (structure %016x, values %016x); "
        "%d gradient buckets; %d steps of %d micro-batch(es), %d steps per epoch",
        fingerprint.structure, fingerprint.values, t->reducer_->bucket_plan().size(), options.steps,
        options.accumulate, t->train_->steps_in_epoch());
  }
  if (options.checkpoint.resume != "none") MEMTRAIN_RETURN_IF_ERROR(t->Resume());
  return t;
}

TaskOptions Trainer::TaskOptionsFor(double label_smoothing) const {
  TaskOptions task;
  task.label_smoothing = label_smoothing;
  task.use_memory = options_.use_memory;
  task.knn_memory = knn_memory_;
  return task;
}

absl::StatusOr<data::Batch> Trainer::NextTrainBatch() {
  for (int attempt = 0; attempt < 2; ++attempt) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, train_->Next());
    if (batch) return *std::move(batch);
    LOG_IF(INFO, world_.rank() == 0)
        << "[train] epoch " << train_->epoch() << " done at step " << step_;
    MEMTRAIN_RETURN_IF_ERROR(train_->StartEpoch(train_->epoch() + 1));
  }
  return absl::FailedPreconditionError(
      absl::StrCat(options_.train_data, " yields no batch for rank ", world_.rank(),
                   " (too small a corpus for ", world_.size(), " ranks?)"));
}

absl::StatusOr<StepMetrics> Trainer::Step() {
  std::vector<data::Batch> batches;
  const absl::Time before = absl::Now();
  for (int64_t micro = 0; micro < options_.accumulate; ++micro) {
    MEMTRAIN_ASSIGN_OR_RETURN(data::Batch batch, NextTrainBatch());
    batches.push_back(std::move(batch));
  }
  const absl::Duration wait =
      absl::Now() - before;  // the prefetch thread reads ahead: this is waiting
  MEMTRAIN_ASSIGN_OR_RETURN(StepMetrics metrics, StepOn(batches));
  metrics.data_wait_seconds = absl::ToDoubleSeconds(wait);
  metrics.step_seconds += metrics.data_wait_seconds;
  metrics.tokens_per_second = metrics.tokens / metrics.step_seconds;
  return metrics;
}

namespace {

// bf16 autocast for CUDA ops while in scope. Never run: no GPU was available
// where this was written (docs/TRAINING.md).
class CudaBf16Autocast {
 public:
  explicit CudaBf16Autocast(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
  ~CudaBf16Autocast() {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }

 private:
  const bool enabled_;
};

}  // namespace

absl::StatusOr<StepMetrics> Trainer::StepOn(const std::vector<data::Batch>& micro_batches) {
  const absl::Time start = absl::Now();
  model_->train();
  LossTotals local;
  for (size_t micro = 0; micro < micro_batches.size(); ++micro) {
    std::optional<parallel::GradientReducer::NoSync> no_sync;
    if (micro + 1 < micro_batches.size()) no_sync.emplace(*reducer_);
    TokenLoss loss;
    {
      CudaBf16Autocast autocast(options_.bf16_autocast && device_.is_cuda());
      loss = task_->Forward(*model_, ToDevice(micro_batches[micro], device_));
    }
    loss.smoothed.backward();
    local += loss.totals;
  }
  if (absl::Status reduced = reducer_->FinishBackward(); !reduced.ok()) {
    return absl::Status(reduced.code(),
                        absl::StrCat("step ", step_ + 1, ": ", reduced.message(),
                                     " (memtrain-train: --unused_parameters=zero)"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(LossTotals global, AllReduceTotals(world_, local));
  if (global.tokens <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("step ", step_ + 1, ": no target tokens on any rank"));
  }
  // The gradients hold sums over the step's tokens. Dividing by the token
  // count and clipping are one factor that the fused optimizer applies inside
  // its kernel, rather than two more passes over every gradient.
  StepMetrics m;
  m.grad_norm = torch::nn::utils::clip_grad_norm_(model_->parameters(),
                                                  std::numeric_limits<double>::infinity()) /
                global.tokens;
  double grad_scale = global.tokens;
  if (options_.clip_norm > 0 && options_.clip_norm / (m.grad_norm + 1e-6) < 1) {
    grad_scale *= (m.grad_norm + 1e-6) / options_.clip_norm;  // torch's clip_grad_norm_ factor
  }
  m.lr = schedule_(step_ + 1);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(m.lr);
  dynamic_cast<GradScaledStep&>(*optimizer_).StepWithGradScale(grad_scale);
  optimizer_->zero_grad();
  ++step_;
  tokens_seen_ += global.tokens;
  m.step = step_;
  m.epoch = train_->epoch();
  m.loss = global.nll_sum / global.tokens;
  m.perplexity = global.perplexity();
  m.step_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  m.tokens = global.tokens;
  m.tokens_per_second = global.tokens / m.step_seconds;
  m.overlap_fraction = reducer_->stats().overlap_fraction;
  return m;
}

absl::StatusOr<LossTotals> Trainer::Validate() {
  if (!valid_) return absl::FailedPreconditionError("no validation data (--valid_data)");
  MEMTRAIN_ASSIGN_OR_RETURN(auto task,
                            MakeTask(task_name_, TaskOptionsFor(0.0)));  // fresh memories
  return Evaluate(*model_, *task, *valid_, world_, device_, options_.valid_steps);
}

void Trainer::Report(const StepMetrics& m) {
  if (world_.rank() != 0) return;
  if (metrics_) {
    const absl::Status written = metrics_->Write("train", {{"step", m.step},
                                                           {"epoch", m.epoch},
                                                           {"loss", m.loss},
                                                           {"ppl", m.perplexity},
                                                           {"tokens_per_s", m.tokens_per_second},
                                                           {"grad_norm", m.grad_norm},
                                                           {"lr", m.lr},
                                                           {"data_wait_s", m.data_wait_seconds},
                                                           {"comm_overlap", m.overlap_fraction},
                                                           {"step_s", m.step_seconds},
                                                           {"tokens", tokens_seen_}});
    LOG_IF(WARNING, !written.ok()) << "[train] " << written.message();
  }
  if (m.step % options_.log_every == 0 || m.step == options_.steps) {
    const double eta = m.step_seconds * static_cast<double>(options_.steps - m.step);
    LOG(INFO) << absl::StrFormat(
        "[train] step %d/%d (%.0f%%) | loss %.4f ppl %.2f | %.0f tok/s | lr %.2e | |g| %.3f | "
        "overlap %.2f | data wait %.1f ms | ETA %s",
        m.step, options_.steps,
        100.0 * static_cast<double>(m.step) / static_cast<double>(options_.steps), m.loss,
        m.perplexity, m.tokens_per_second, m.lr, m.grad_norm, m.overlap_fraction,
        1e3 * m.data_wait_seconds, Duration(eta));
  }
}

absl::Status Trainer::Run() {
  auto validate = [&]() -> absl::Status {
    if (!valid_) return absl::OkStatus();
    MEMTRAIN_ASSIGN_OR_RETURN(LossTotals totals, Validate());
    if (world_.rank() != 0) return absl::OkStatus();
    LOG(INFO) << absl::StrFormat(
        "[valid] step %d | loss %.4f ppl %.2f%s", step_, totals.nll_sum / totals.tokens,
        totals.perplexity(),
        totals.long_range_tokens > 0
            ? absl::StrFormat(" | long-range ppl %.2f (%.0f tokens)",
                              totals.long_range_perplexity(), totals.long_range_tokens)
            : "");
    if (metrics_) {
      return metrics_->Write("valid", {{"step", step_},
                                       {"loss", totals.nll_sum / totals.tokens},
                                       {"ppl", totals.perplexity()},
                                       {"long_range_ppl", totals.long_range_perplexity()},
                                       {"tokens", totals.tokens}});
    }
    return absl::OkStatus();
  };
  const checkpoints::CheckpointOptions& c = options_.checkpoint;
  const bool checkpointing = !c.dir.empty();
  absl::Time last_save = absl::Now();
  while (step_ < options_.steps) {
    MEMTRAIN_ASSIGN_OR_RETURN(StepMetrics metrics, Step());
    Report(metrics);
    if (options_.valid_every > 0 && step_ % options_.valid_every == 0 && step_ < options_.steps) {
      MEMTRAIN_RETURN_IF_ERROR(validate());
    }
    if (!checkpointing && !options_.stop_requested) continue;
    // Signals and clocks are per process: the ranks agree (MAX) before
    // anyone acts, so all save the same step or none does. Rank 0's clock
    // decides the time-based saves.
    const bool stop_here = options_.stop_requested && options_.stop_requested();
    const bool time_due = world_.rank() == 0 && c.save_every_minutes > 0 &&
                          absl::Now() - last_save >= absl::Seconds(60 * c.save_every_minutes);
    at::Tensor flags = at::tensor({stop_here ? 1 : 0, time_due ? 1 : 0}, at::kInt);
    MEMTRAIN_RETURN_IF_ERROR(world_.allreduce(flags, parallel::ReduceOp::kMax));
    const bool stop = flags[0].item<int>() == 1;
    const bool steps_due = c.save_every_steps > 0 && step_ % c.save_every_steps == 0;
    if (checkpointing && (stop || flags[1].item<int>() == 1 || steps_due) &&
        step_ < options_.steps) {
      MEMTRAIN_RETURN_IF_ERROR(SaveCheckpoint().status());
      last_save = absl::Now();
    }
    if (stop && step_ < options_.steps) {
      LOG_IF(WARNING, world_.rank() == 0)
          << "[ckpt] stop requested (signal): stopped at step " << step_
          << (checkpointing ? " after saving a checkpoint"
                            : " without a checkpoint (no --checkpoint_dir)");
      preempted_ = true;
      return absl::OkStatus();
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(validate());
  if (checkpointing && last_checkpoint_step_ != step_)
    MEMTRAIN_RETURN_IF_ERROR(SaveCheckpoint().status());
  if (!options_.save_dir.empty()) {
    // Rank 0 writes; every rank learns whether it worked, so none is left
    // waiting in a collective when the disk is full.
    absl::Status saved = absl::OkStatus();
    if (world_.rank() == 0) {
      checkpoints::ModelInfo info;
      info.options = model_->options();
      info.tokenizer_sha256 = tokenizer_sha256_;
      info.task = task_name_;
      info.step = step_;
      saved = checkpoints::SaveModel(options_.save_dir, *model_, info);
      LOG_IF(INFO, saved.ok()) << "[train] model saved to " << options_.save_dir;
    }
    at::Tensor ok = at::full({1}, saved.ok() ? 1 : 0, at::kInt);
    MEMTRAIN_RETURN_IF_ERROR(world_.broadcast(ok, 0));
    if (!saved.ok()) return saved;
    if (ok.item<int>() == 0)
      return absl::InternalError("rank 0 could not save the model (see its log)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Trainer::SaveCheckpoint() {
  const checkpoints::CheckpointOptions& c = options_.checkpoint;
  if (c.dir.empty())
    return absl::FailedPreconditionError("no checkpoint directory (--checkpoint_dir)");
  const absl::Time start = absl::Now();
  // 1. Rank 0 makes the empty partial directory; the others wait for it.
  absl::StatusOr<std::string> partial = checkpoints::PartialCheckpointPath(c.dir, step_);
  if (world_.rank() == 0) partial = checkpoints::CreatePartialCheckpoint(c.dir, step_);
  MEMTRAIN_RETURN_IF_ERROR(
      parallel::AllRanksOk(world_, partial.status(), "creating the checkpoint directory"));
  // 2. Every rank writes its part; rank 0 also the replicated state.
  auto write = [&]() -> absl::Status {
    const std::filesystem::path dir(*partial);
    std::map<std::string, at::Tensor> tensors;
    {
      auto generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      tensors["rng.cpu"] = generator.get_state();
    }
    if (device_.is_cuda()) {  // untested here: no GPU on the development machine
      auto generator = at::globalContext().defaultGenerator(device_);
      std::lock_guard<std::mutex> lock(generator.mutex());
      tensors["rng.cuda"] = generator.get_state();
    }
    const bool memory = c.save_knn_memory && options_.use_memory;
    if (memory) {
      MEMTRAIN_ASSIGN_OR_RETURN(auto task_state, task_->SaveState());
      for (auto& [name, tensor] : task_state) tensors["task." + name] = std::move(tensor);
    }
    const std::string rank_file = (dir / checkpoints::RankFileName(world_.rank())).string();
    MEMTRAIN_RETURN_IF_ERROR(
        checkpoints::WriteSafetensors(rank_file, tensors,
                                      {{"rank", std::to_string(world_.rank())},
                                       {"data_state", train_->SaveState()},
                                       {"task_state_saved", memory ? "1" : "0"}}));
    if (world_.rank() == options_.kill_rank_during_save &&
        step_ == options_.kill_during_save_step) {
      LOG(WARNING) << "[ckpt] rank " << world_.rank() << ": test seam: truncating " << rank_file
                   << " and dying";
      std::filesystem::resize_file(rank_file, std::filesystem::file_size(rank_file) / 2);
      raise(SIGKILL);
    }
    if (world_.rank() != 0) return absl::OkStatus();
    checkpoints::ModelInfo info;
    info.options = model_->options();
    info.tokenizer_sha256 = tokenizer_sha256_;
    info.task = task_name_;
    info.step = step_;
    MEMTRAIN_RETURN_IF_ERROR(checkpoints::WriteModelFiles(dir.string(), *model_, info));
    const std::string optimizer_file = (dir / checkpoints::kOptimizerName).string();
    try {
      torch::serialize::OutputArchive archive;
      optimizer_->save(archive);
      archive.save_to(optimizer_file);
    } catch (const c10::Error& e) {
      return absl::InternalError(
          absl::StrCat("writing ", optimizer_file, ": ", e.what_without_backtrace()));
    }
    MEMTRAIN_RETURN_IF_ERROR(checkpoints::Fsync(optimizer_file));
    const nlohmann::json state = {{"format_version", checkpoints::kTrainerStateVersion},
                                  {"step", step_},
                                  {"tokens_seen", tokens_seen_},
                                  {"world_size", world_.size()},
                                  {"task", task_name_},
                                  {"tokenizer_sha256", tokenizer_sha256_},
                                  {"knn_memory_saved", memory},
                                  {"options", OptionsJson(options_)},
                                  {"bucket_plan", reducer_->bucket_plan()}};
    return checkpoints::WriteFileDurably((dir / checkpoints::kTrainerStateName).string(),
                                         state.dump(2) + "\n");
  };
  MEMTRAIN_RETURN_IF_ERROR(
      parallel::AllRanksOk(world_, write(), absl::StrCat("writing checkpoint ", *partial)));
  // 3. Every rank's files are on disk: rank 0 commits.
  absl::StatusOr<std::string> committed = checkpoints::PartialCheckpointPath(c.dir, step_);
  if (world_.rank() == 0) committed = checkpoints::CommitCheckpoint(c.dir, step_, c.keep_last);
  MEMTRAIN_RETURN_IF_ERROR(
      parallel::AllRanksOk(world_, committed.status(), "committing the checkpoint"));
  last_checkpoint_step_ = step_;
  LOG_IF(INFO, world_.rank() == 0)
      << absl::StrFormat("[ckpt] step %d saved to %s in %.2f s", step_, *committed,
                         absl::ToDoubleSeconds(absl::Now() - start));
  return checkpoints::CheckpointPath(c.dir, step_);
}

absl::Status Trainer::Resume() {
  const checkpoints::CheckpointOptions& c = options_.checkpoint;
  // Each rank reads the shared files and its own.
  const std::string own = checkpoints::RankFileName(world_.rank());
  auto wanted = [&](const std::string& file) { return !IsRankFile(file) || file == own; };
  std::string path = c.resume;
  if (c.resume == "auto") {
    // The ranks agree on a step every one of them can load: the minimum of
    // their newest verified steps, lowered until all find that same one.
    int64_t bound = std::numeric_limits<int64_t>::max(), agreed = -1;
    while (true) {
      std::vector<std::string> skipped;
      absl::StatusOr<checkpoints::CheckpointRef> found =
          checkpoints::FindNewestValid(c.dir, bound, wanted, &skipped);
      for (const std::string& reason : skipped) {
        LOG(WARNING) << "[ckpt] rank " << world_.rank()
                     << ": damaged checkpoint skipped, using an older one: " << reason;
      }
      const int64_t mine = found.ok() ? found->step : -1;
      at::Tensor step = at::full({1}, mine, at::kLong);
      MEMTRAIN_RETURN_IF_ERROR(world_.allreduce(step, parallel::ReduceOp::kMin));
      agreed = step.item<int64_t>();
      at::Tensor same = at::full({1}, mine == agreed ? 1 : 0, at::kInt);
      MEMTRAIN_RETURN_IF_ERROR(world_.allreduce(same, parallel::ReduceOp::kMin));
      if (same.item<int>() == 1) break;
      bound = agreed;
    }
    if (agreed < 0) {
      LOG_IF(INFO, world_.rank() == 0)
          << "[ckpt] no complete checkpoint in " << c.dir << "; starting at step 0";
      return absl::OkStatus();
    }
    path = checkpoints::CheckpointPath(c.dir, agreed);
  } else {
    MEMTRAIN_RETURN_IF_ERROR(parallel::AllRanksOk(
        world_, checkpoints::VerifyCheckpoint(path, wanted), "verifying --resume=" + path));
  }
  return parallel::AllRanksOk(world_, LoadCheckpoint(path), "loading " + path);
}

absl::Status Trainer::LoadCheckpoint(const std::string& path) {
  const std::filesystem::path dir(path);
  const std::string state_file = (dir / checkpoints::kTrainerStateName).string();
  nlohmann::json state;
  try {
    std::ifstream in(state_file);
    state = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(state_file, ": ", e.what()));
  }
  const int version = state.value("format_version", 1);
  if (version < 1 || version > checkpoints::kTrainerStateVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        state_file, " has format version ", version, "; this memtrain reads versions 1 to ",
        checkpoints::kTrainerStateVersion, " (a newer memtrain wrote it: upgrade to resume it)"));
  }
  // A field missing or of the wrong type is a damaged file, reported as such.
  try {
    return ApplyCheckpoint(path, state);
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(state_file, ": ", e.what()));
  }
}

absl::Status Trainer::ApplyCheckpoint(const std::string& path, const nlohmann::json& state) {
  const std::filesystem::path dir(path);
  if (state.at("world_size").get<int>() != world_.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " was written by ", state.at("world_size").get<int>(),
                     " ranks; this run has ", world_.size(),
                     " (each rank's data cursor and RNG are in the checkpoint: resume with the "
                     "same number of ranks)"));
  }
  if (state.at("task").get<std::string>() != task_name_ ||
      state.at("tokenizer_sha256").get<std::string>() != tokenizer_sha256_) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is a ", state.at("task").get<std::string>(),
                     " checkpoint with tokenizer ", state.at("tokenizer_sha256").get<std::string>(),
                     "; this run is ", task_name_, " with tokenizer ", tokenizer_sha256_));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(checkpoints::LoadedModel loaded, checkpoints::LoadModel(path, device_));
  // Options the checkpoint's memtrain did not have yet: it ran with their defaults.
  nlohmann::json saved_options = OptionsJson(TrainerOptions{});
  saved_options.update(state.at("options"));
  std::vector<std::string> differences =
      Differences(saved_options, OptionsJson(options_), SafeToChange());
  for (const std::string& d :
       Differences(nlohmann::json::parse(model::TransformerOptionsToJson(loaded.info.options)),
                   nlohmann::json::parse(model::TransformerOptionsToJson(model_->options())), {})) {
    differences.push_back("model." + d);
  }
  if (!differences.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot resume from ", path, " with a different configuration:\n  ",
        absl::StrJoin(differences, "\n  "),
        "\n(safe to change: ", absl::StrJoin(SafeToChange(), ", "), "; see docs/CHECKPOINTS.md)"));
  }
  if (state.at("bucket_plan").get<std::vector<std::vector<std::string>>>() !=
      reducer_->bucket_plan()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path,
                     ": the gradient bucket plan differs from this run's "
                     "(same options, different model code?); the reduction order "
                     "would change"));
  }
  {
    at::NoGradGuard no_grad;
    auto loaded_parameters = loaded.model->named_parameters();
    for (auto& item : model_->named_parameters()) item.value().copy_(loaded_parameters[item.key()]);
    auto loaded_buffers = loaded.model->named_buffers();
    for (auto& item : model_->named_buffers()) item.value().copy_(loaded_buffers[item.key()]);
  }
  const std::string optimizer_file = (dir / checkpoints::kOptimizerName).string();
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(optimizer_file, device_);
    optimizer_->load(archive);
  } catch (const c10::Error& e) {
    return absl::DataLossError(absl::StrCat(optimizer_file, ": ", e.what_without_backtrace()));
  }
  const std::string rank_file = (dir / checkpoints::RankFileName(world_.rank())).string();
  MEMTRAIN_ASSIGN_OR_RETURN(checkpoints::Safetensors mine, checkpoints::ReadSafetensors(rank_file));
  auto tensor = [&](const std::string& name) -> absl::StatusOr<at::Tensor> {
    auto found = mine.tensors.find(name);
    if (found == mine.tensors.end())
      return absl::DataLossError(absl::StrCat(rank_file, " has no ", name));
    return found->second;
  };
  {
    MEMTRAIN_ASSIGN_OR_RETURN(at::Tensor rng, tensor("rng.cpu"));
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng);
  }
  if (device_.is_cuda()) {  // untested here: no GPU on the development machine
    MEMTRAIN_ASSIGN_OR_RETURN(at::Tensor rng, tensor("rng.cuda"));
    auto generator = at::globalContext().defaultGenerator(device_);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng);
  }
  MEMTRAIN_RETURN_IF_ERROR(train_->LoadState(mine.metadata["data_state"]));
  std::map<std::string, at::Tensor> task_state;
  for (const auto& [name, t] : mine.tensors) {
    if (absl::StartsWith(name, "task.")) task_state[name.substr(5)] = t;
  }
  MEMTRAIN_RETURN_IF_ERROR(task_->LoadState(*model_, task_state));
  step_ = state.at("step").get<int64_t>();
  tokens_seen_ = state.at("tokens_seen").get<double>();
  last_checkpoint_step_ = step_;
  if (world_.rank() == 0) {
    LOG(INFO) << "[ckpt] resumed from " << path << " at step " << step_;
    LOG_IF(WARNING, options_.use_memory && !state.at("knn_memory_saved").get<bool>())
        << "[ckpt] " << path
        << " holds no memory states (saved without --save_knn_memory): every stream's "
        << "memory restarts empty, so this run will not match an uninterrupted one exactly";
  }
  return absl::OkStatus();
}

}  // namespace memtrain::trainer
