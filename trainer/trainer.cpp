#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "checkpoints/model_file.h"
#include "common/status_macros.h"
#include "data/corpus_file.h"
#include "glog/logging.h"
#include "trainer/evaluate.h"

namespace memtrain::trainer {
namespace {

absl::StatusOr<std::unique_ptr<torch::optim::Optimizer>> MakeOptimizer(const TrainerOptions& o,
                                                                       std::vector<at::Tensor> parameters) {
  if (o.optimizer == "adam") {
    return std::unique_ptr<torch::optim::Optimizer>(new torch::optim::Adam(
        std::move(parameters), torch::optim::AdamOptions(o.lr.lr)
                                   .betas({o.adam_beta1, o.adam_beta2})
                                   .eps(o.adam_eps)
                                   .weight_decay(o.weight_decay)));
  }
  if (o.optimizer == "adamw") {
    return std::unique_ptr<torch::optim::Optimizer>(new torch::optim::AdamW(
        std::move(parameters), torch::optim::AdamWOptions(o.lr.lr)
                                   .betas({o.adam_beta1, o.adam_beta2})
                                   .eps(o.adam_eps)
                                   .weight_decay(o.weight_decay)));
  }
  return absl::InvalidArgumentError(absl::StrCat("--optimizer: '", o.optimizer, "' is not adam or adamw"));
}

data::BatchSourceOptions SourceOptions(const TrainerOptions& o, const parallel::Communicator& world) {
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

}  // namespace

Trainer::Trainer(const TrainerOptions& options, parallel::Communicator& world, const c10::Device& device)
    : options_(options), world_(world), device_(device) {}

Trainer::~Trainer() = default;

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& options,
                                                         model::TransformerOptions model_options,
                                                         parallel::Communicator& world,
                                                         const c10::Device& device) {
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
  const bool corpus_seq2seq = train_file->is_seq2seq();
  if (corpus_seq2seq != (t->task_name_ != "lm")) {
    return absl::FailedPreconditionError(absl::StrCat("task ", t->task_name_, " cannot train on ",
                                                      options.train_data, ", a ", train_file->header().task,
                                                      " corpus"));
  }
  TaskOptions task_options;
  task_options.label_smoothing = options.label_smoothing;
  task_options.use_memory = options.use_memory;
  MEMTRAIN_ASSIGN_OR_RETURN(t->task_, MakeTask(t->task_name_, task_options));

  // Same seed on every rank, so each builds the same model; the broadcast
  // below makes that a guarantee rather than a hope.
  at::manual_seed(options.seed);
  if (!options.init_from.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(checkpoints::LoadedModel loaded, checkpoints::LoadModel(options.init_from, device));
    if (loaded.info.tokenizer_sha256 != t->tokenizer_sha256_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--init_from=", options.init_from, " was trained with tokenizer ", loaded.info.tokenizer_sha256,
          " but ", options.train_data, " uses ", t->tokenizer_sha256_, "; prepare the data with its tokenizer"));
    }
    t->model_ = loaded.model;
    model_options = loaded.info.options;
    LOG_IF(INFO, world.rank() == 0) << "[train] initialised from " << options.init_from << " (a "
                                    << loaded.info.task << " model after " << loaded.info.step << " steps)";
  } else {
    model_options.vocab_size = train_file->tokenizer().vocab_size;
    model_options.pad_id = train_file->tokenizer().pad_id;
    MEMTRAIN_ASSIGN_OR_RETURN(t->model_, model::MakeTransformer(model_options));
    t->model_->to(device);
  }
  MEMTRAIN_RETURN_IF_ERROR(t->task_->CheckModel(model_options));
  train_file.reset();
  // Dropout differs per rank from here on, as data does.
  at::manual_seed(options.seed + 1000003ULL * static_cast<uint64_t>(world.rank() + 1));

  MEMTRAIN_ASSIGN_OR_RETURN(parallel::ModuleFingerprint fingerprint, parallel::BroadcastModule(world, *t->model_));
  parallel::GradientReducerOptions reducer = options.reducer;
  reducer.op = parallel::ReduceOp::kSum;  // divided by the global token count in Step()
  MEMTRAIN_ASSIGN_OR_RETURN(t->reducer_, parallel::GradientReducer::Create(world, *t->model_, reducer));
  MEMTRAIN_ASSIGN_OR_RETURN(t->optimizer_, MakeOptimizer(options, t->model_->parameters()));
  LrScheduleOptions lr = options.lr;
  if (lr.total_steps == 0) lr.total_steps = options.steps;
  MEMTRAIN_ASSIGN_OR_RETURN(t->schedule_, MakeLrSchedule(options.lr_schedule, lr));

  MEMTRAIN_ASSIGN_OR_RETURN(auto train, data::OpenBatchSource(options.train_data, SourceOptions(options, world)));
  t->train_ = data::Prefetch(std::move(train));
  if (!options.valid_data.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(t->valid_, data::OpenBatchSource(options.valid_data, SourceOptions(options, world)));
  }
  if (world.rank() == 0) {
    if (!options.metrics_path.empty()) {
      MEMTRAIN_ASSIGN_OR_RETURN(t->metrics_, MetricsLog::Open(options.metrics_path));
    }
    LOG(INFO) << "[train] task " << t->task_name_ << " on " << options.train_data << ", " << world.size()
              << " rank(s), device " << device.str() << "; model:\n"
              << t->model_->ParameterReport();
    LOG(INFO) << absl::StrFormat("[train] parameters broadcast from rank 0 (structure %016x, values %016x); "
                                 "%d gradient buckets; %d steps of %d micro-batch(es), %d steps per epoch",
                                 fingerprint.structure, fingerprint.values, t->reducer_->bucket_plan().size(),
                                 options.steps, options.accumulate, t->train_->steps_in_epoch());
  }
  return t;
}

absl::StatusOr<data::Batch> Trainer::NextTrainBatch() {
  for (int attempt = 0; attempt < 2; ++attempt) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, train_->Next());
    if (batch) return *std::move(batch);
    LOG_IF(INFO, world_.rank() == 0) << "[train] epoch " << train_->epoch() << " done at step " << step_;
    MEMTRAIN_RETURN_IF_ERROR(train_->StartEpoch(train_->epoch() + 1));
  }
  return absl::FailedPreconditionError(
      absl::StrCat(options_.train_data, " yields no batch for rank ", world_.rank(), " (too small a corpus for ",
                   world_.size(), " ranks?)"));
}

absl::StatusOr<StepMetrics> Trainer::Step() {
  std::vector<data::Batch> batches;
  const absl::Time before = absl::Now();
  for (int64_t micro = 0; micro < options_.accumulate; ++micro) {
    MEMTRAIN_ASSIGN_OR_RETURN(data::Batch batch, NextTrainBatch());
    batches.push_back(std::move(batch));
  }
  const absl::Duration wait = absl::Now() - before;  // the prefetch thread reads ahead: this is waiting
  MEMTRAIN_ASSIGN_OR_RETURN(StepMetrics metrics, StepOn(batches));
  metrics.data_wait_seconds = absl::ToDoubleSeconds(wait);
  metrics.step_seconds += metrics.data_wait_seconds;
  metrics.tokens_per_second = metrics.tokens / metrics.step_seconds;
  return metrics;
}

absl::StatusOr<StepMetrics> Trainer::StepOn(const std::vector<data::Batch>& micro_batches) {
  const absl::Time start = absl::Now();
  model_->train();
  LossTotals local;
  for (size_t micro = 0; micro < micro_batches.size(); ++micro) {
    std::optional<parallel::GradientReducer::NoSync> no_sync;
    if (micro + 1 < micro_batches.size()) no_sync.emplace(*reducer_);
    TokenLoss loss = task_->Forward(*model_, ToDevice(micro_batches[micro], device_));
    loss.smoothed.backward();
    local += loss.totals;
  }
  if (absl::Status reduced = reducer_->FinishBackward(); !reduced.ok()) {
    return absl::Status(reduced.code(), absl::StrCat("step ", step_ + 1, ": ", reduced.message(),
                                                     " (memtrain-train: --unused_parameters=zero)"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(LossTotals global, AllReduceTotals(world_, local));
  if (global.tokens <= 0) {
    return absl::FailedPreconditionError(absl::StrCat("step ", step_ + 1, ": no target tokens on any rank"));
  }
  std::vector<at::Tensor> parameters = model_->parameters();
  {
    at::NoGradGuard no_grad;
    for (at::Tensor& p : parameters) {
      if (p.grad().defined()) p.mutable_grad().div_(global.tokens);
    }
  }
  const double max_norm = options_.clip_norm > 0 ? options_.clip_norm : std::numeric_limits<double>::infinity();
  StepMetrics m;
  m.grad_norm = torch::nn::utils::clip_grad_norm_(parameters, max_norm);
  m.lr = schedule_(step_ + 1);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(m.lr);
  optimizer_->step();
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
  TaskOptions options;
  options.use_memory = options_.use_memory;
  MEMTRAIN_ASSIGN_OR_RETURN(auto task, MakeTask(task_name_, options));  // fresh memories
  return Evaluate(*model_, *task, *valid_, world_, device_, options_.valid_steps);
}

void Trainer::Report(const StepMetrics& m) {
  if (world_.rank() != 0) return;
  if (metrics_) {
    const absl::Status written =
        metrics_->Write("train", {{"step", m.step},
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
        m.step, options_.steps, 100.0 * static_cast<double>(m.step) / static_cast<double>(options_.steps),
        m.loss, m.perplexity, m.tokens_per_second, m.lr, m.grad_norm, m.overlap_fraction,
        1e3 * m.data_wait_seconds, Duration(eta));
  }
}

absl::Status Trainer::Run() {
  auto validate = [&]() -> absl::Status {
    if (!valid_) return absl::OkStatus();
    MEMTRAIN_ASSIGN_OR_RETURN(LossTotals totals, Validate());
    if (world_.rank() != 0) return absl::OkStatus();
    LOG(INFO) << absl::StrFormat("[valid] step %d | loss %.4f ppl %.2f%s", step_, totals.nll_sum / totals.tokens,
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
  while (step_ < options_.steps) {
    MEMTRAIN_ASSIGN_OR_RETURN(StepMetrics metrics, Step());
    Report(metrics);
    if (options_.valid_every > 0 && step_ % options_.valid_every == 0 && step_ < options_.steps) {
      MEMTRAIN_RETURN_IF_ERROR(validate());
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(validate());
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
    if (ok.item<int>() == 0) return absl::InternalError("rank 0 could not save the model (see its log)");
  }
  return absl::OkStatus();
}

}  // namespace memtrain::trainer
