#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <signal.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "checkpoints/model_file.h"
#include "checkpoints/training_checkpoint.h"
#include "common/status_macros.h"
#include "data/corpus_file.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"
#include "parallel/collective_phase.h"
#include "trainer/evaluate.h"
#include "trainer/fused_adam.h"

namespace memtrain::trainer {
namespace {

data::BatchSourceOptions SourceOptions(const TrainerOptions& o,
                                       const model::TransformerOptions& model,
                                       const parallel::Communicator& world) {
  data::BatchSourceOptions s = o.batch;
  s.prefix_lm = model.encoder_layers == 0;
  s.rank = world.rank();
  s.world_size = world.size();
  s.seed = o.seed;
  return s;
}

// The seed of `rank`'s generators (dropout) from `step` on: the run's seed
// at step 0; at a resume on another world size, where the saved generators
// belong to the old ranks, that of the resume step.
uint64_t RankSeed(uint64_t seed, int rank, int64_t step) {
  return seed + 1000003ULL * static_cast<uint64_t>(rank + 1) +
         998244353ULL * static_cast<uint64_t>(step);
}

std::string Duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

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
  const std::string& on_resize = options.checkpoint.knn_memory_on_resize;
  if (!on_resize.empty() && on_resize != "drop") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--knn_memory_on_resize: '", on_resize, "' is not drop or empty",
        on_resize == "reshard" ? " (resharding the memories is not implemented)" : ""));
  }
  // The run-identity fields a resume may find changed: the safe options
  // inside the identity and the job's.
  std::set<std::string> nameable = OptionsSafeToChange();
  for (const std::string& outside : OptionsOutsideRunIdentity()) nameable.erase(outside);
  nameable.insert(kSlurmArrayTaskField);
  for (const std::string& name : options.checkpoint.resume_changed) {
    if (nameable.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--resume_changed: '", name,
                                                     "' is not a run-identity field a resume may "
                                                     "find changed (",
                                                     absl::StrJoin(nameable, ", "), ")"));
    }
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
  MEMTRAIN_ASSIGN_OR_RETURN(const data::TaskInfo* task, data::FindTask(t->task_name_));
  if (train_file->is_seq2seq() != task->seq2seq) {
    return absl::FailedPreconditionError(absl::StrCat("task ", t->task_name_, " cannot train on ",
                                                      options.train_data, ", a ",
                                                      train_file->header().task, " corpus"));
  }

  // Same seed on every rank, so each builds the same model; the broadcast
  // below makes that a guarantee rather than a hope.
  at::manual_seed(options.seed);
  model_options.vocab_size = train_file->tokenizer().vocab_size;
  model_options.pad_id = train_file->tokenizer().pad_id;
  MEMTRAIN_ASSIGN_OR_RETURN(t->model_, model::MakeTransformer(model_options));
  t->model_->to(device);
  model_options = t->model_->options();  // resolved (positions)
  if (!options.init_from.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(checkpoints::LoadedModel loaded,
                              checkpoints::LoadModel(options.init_from, device));
    if (loaded.info.tokenizer_sha256 != t->tokenizer_sha256_) {
      return absl::FailedPreconditionError(
          absl::StrCat("--init_from=", options.init_from, " was trained with tokenizer ",
                       loaded.info.tokenizer_sha256, " but ", options.train_data, " uses ",
                       t->tokenizer_sha256_, "; prepare the data with its tokenizer"));
    }
    absl::StatusOr<std::vector<std::string>> changes =
        checkpoints::InitializeFrom(*t->model_, loaded);
    if (!changes.ok()) {
      return absl::Status(changes.status().code(), absl::StrCat("--init_from=", options.init_from,
                                                                ": ", changes.status().message()));
    }
    LOG_IF(INFO, world.rank() == 0)
        << "[train] initialised from " << options.init_from << " (a " << loaded.info.task
        << " model after " << loaded.info.step << " steps)";
    for (const std::string& change : *changes) {
      LOG_IF(INFO, world.rank() == 0) << "[train] --init_from changed: " << change;
    }
  }
  MEMTRAIN_ASSIGN_OR_RETURN(
      t->knn_memory_,
      memory::MakeKnnLayerMemories(options.knn_memory,
                                   model_options.attention_options.knn.memory_size, world));
  MEMTRAIN_ASSIGN_OR_RETURN(t->task_,
                            MakeTask(t->task_name_, t->TaskOptionsFor(options.label_smoothing)));
  MEMTRAIN_RETURN_IF_ERROR(t->task_->CheckModel(model_options));
  train_file.reset();
  // Dropout differs per rank from here on, as data does.
  at::manual_seed(RankSeed(options.seed, world.rank(), 0));

  MEMTRAIN_ASSIGN_OR_RETURN(parallel::ModuleFingerprint fingerprint,
                            parallel::BroadcastModule(world, *t->model_));
  parallel::GradientReducerOptions reducer;
  reducer.bucket_bytes = std::llround(options.bucket_mb * (1 << 20));
  reducer.first_bucket_bytes = std::llround(options.first_bucket_mb * (1 << 20));
  reducer.unused_parameters = options.unused_parameters;
  reducer.op = parallel::ReduceOp::kSum;  // divided by the global token count in Step()
  MEMTRAIN_ASSIGN_OR_RETURN(t->reducer_,
                            parallel::GradientReducer::Create(world, *t->model_, reducer));
  MEMTRAIN_ASSIGN_OR_RETURN(t->optimizer_,
                            MakeOptimizer(options.optimizer, t->model_->parameters(),
                                          {options.lr.lr, options.adam_beta1, options.adam_beta2,
                                           options.adam_eps, options.weight_decay}));
  LrScheduleOptions lr = options.lr;
  if (lr.total_steps == 0) lr.total_steps = options.steps;
  MEMTRAIN_ASSIGN_OR_RETURN(t->schedule_, MakeLrSchedule(options.lr_schedule, lr));

  MEMTRAIN_ASSIGN_OR_RETURN(
      auto train,
      data::OpenBatchSource(options.train_data, SourceOptions(options, model_options, world)));
  t->train_ = data::Prefetch(std::move(train));
  if (!options.valid_data.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(
        t->valid_,
        data::OpenBatchSource(options.valid_data, SourceOptions(options, model_options, world)));
  }
  if (!options.record_batches.empty()) {
    const std::string path = absl::StrCat(options.record_batches, ".rank", world.rank(), ".jsonl");
    t->batch_record_ = std::make_unique<std::ofstream>(path, std::ios::app);
    if (!*t->batch_record_) return absl::InternalError("cannot open " + path + " to append");
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
  if (batch_record_) MEMTRAIN_RETURN_IF_ERROR(RecordBatches(batches));
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

absl::Status Trainer::RecordBatches(const std::vector<data::Batch>& micro_batches) {
  for (const data::Batch& batch : micro_batches) {
    nlohmann::json rows = nlohmann::json::array();
    const at::Tensor tokens = batch.loss_mask.sum(1);
    for (size_t row = 0; row < batch.records.size(); ++row) {
      if (batch.records[row] < 0) continue;
      rows.push_back({batch.records[row], batch.positions.empty() ? 0 : batch.positions[row],
                      tokens[static_cast<int64_t>(row)].item<int64_t>()});
    }
    *batch_record_ << nlohmann::json{{"step", step_},
                                     {"epoch", train_->epoch()},
                                     {"rank", world_.rank()},
                                     {"rows", rows}}
                          .dump()
                   << std::endl;  // flushed: a killed run keeps its lines
  }
  if (!*batch_record_) return absl::InternalError("--record_batches: write failed");
  return absl::OkStatus();
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
  // Validation and checkpoints below enter their own phases.
  const parallel::ScopedCollectivePhase phase(parallel::CollectivePhase::kStep);
  const checkpoints::CheckpointOptions& c = options_.checkpoint;
  const bool checkpointing = !c.dir.empty();
  // A marker of an earlier run that stopped early is stale once this one
  // trains. Only a warning when it stays: failing rank 0 alone would leave
  // the others waiting in the first collective.
  if (checkpointing && world_.rank() == 0) {
    const absl::Status removed = checkpoints::RemovePreemptedMarker(c.dir);
    LOG_IF(WARNING, !removed.ok()) << "[ckpt] " << removed.message();
  }
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
    const int stop_signal = options_.stop_requested ? options_.stop_requested() : 0;
    const bool time_due = world_.rank() == 0 && c.save_every_minutes > 0 &&
                          absl::Now() - last_save >= absl::Seconds(60 * c.save_every_minutes);
    at::Tensor flags = at::tensor({stop_signal, time_due ? 1 : 0}, at::kInt);
    MEMTRAIN_RETURN_IF_ERROR(world_.allreduce(flags, parallel::ReduceOp::kMax));
    const int stop = flags[0].item<int>();  // the highest signal number when ranks differ
    const bool steps_due = c.save_every_steps > 0 && step_ % c.save_every_steps == 0;
    absl::Duration save_time;
    if (checkpointing && (stop != 0 || flags[1].item<int>() == 1 || steps_due) &&
        step_ < options_.steps) {
      const absl::Time save_start = absl::Now();
      MEMTRAIN_RETURN_IF_ERROR(SaveCheckpoint().status());
      last_save = absl::Now();
      save_time = last_save - save_start;
    }
    if (stop != 0 && step_ < options_.steps) {
      if (world_.rank() == 0) {
        LOG(WARNING) << "[ckpt] stop requested (signal " << stop << "): stopped at step " << step_
                     << (checkpointing ? absl::StrFormat(" after saving a checkpoint in %.2f s",
                                                         absl::ToDoubleSeconds(save_time))
                                       : " without a checkpoint (no --checkpoint_dir)");
        if (checkpointing) {
          MEMTRAIN_RETURN_IF_ERROR(checkpoints::WritePreemptedMarker(
              c.dir, {step_, stop, absl::ToDoubleSeconds(save_time), metrics.step_seconds}));
        }
      }
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
    const parallel::ScopedCollectivePhase saving(parallel::CollectivePhase::kCheckpoint);
    absl::Status saved = absl::OkStatus();
    if (world_.rank() == 0) {
      checkpoints::ModelInfo info;
      info.options = model_->options();
      info.tokenizer_sha256 = tokenizer_sha256_;
      info.task = task_name_;
      info.step = step_;
      saved = checkpoints::SaveModel(options_.save_dir, *model_, info);
      // The tokenizer goes with the weights: text in and out without the corpus.
      if (saved.ok()) {
        absl::StatusOr<std::unique_ptr<data::CorpusFile>> train_file =
            data::CorpusFile::Open(options_.train_data, {});
        saved = train_file.ok()
                    ? data::WriteTokenizerCorpus(
                          **train_file, options_.save_dir + "/" + checkpoints::kSavedTokenizerFile)
                    : train_file.status();
      }
      LOG_IF(INFO, saved.ok()) << "[train] model and its tokenizer saved to " << options_.save_dir;
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
  checkpoints::TrainingCheckpoint mine;
  mine.model = model_.get();
  mine.model_info = {model_->options(), tokenizer_sha256_, task_name_, step_};
  mine.optimizer = optimizer_.get();
  checkpoints::TrainerState& state = mine.state;
  state.step = step_;
  state.tokens_seen = tokens_seen_;
  state.world_size = world_.size();
  state.task = task_name_;
  state.tokenizer_sha256 = tokenizer_sha256_;
  state.knn_memory_saved = options_.checkpoint.save_knn_memory && options_.use_memory;
  state.options = TrainerOptionsJson(options_);
  state.bucket_plan = reducer_->bucket_plan();
  state.data_state = train_->SaveState();
  state.job = options_.job;
  mine.rank = checkpoints::CaptureRandomState(device_);
  if (state.knn_memory_saved) {
    MEMTRAIN_ASSIGN_OR_RETURN(mine.rank.task_state, task_->SaveState());
    mine.rank.task_state_saved = true;
  }
  if (world_.rank() == options_.kill_rank_during_save && step_ == options_.kill_during_save_step) {
    mine.after_rank_file = [rank = world_.rank()](const std::string& rank_file) {
      LOG(WARNING) << "[ckpt] rank " << rank << ": test seam: truncating " << rank_file
                   << " and dying";
      std::filesystem::resize_file(rank_file, std::filesystem::file_size(rank_file) / 2);
      raise(SIGKILL);
    };
  }
  if (world_.rank() == 0 && options_.slow_save_seconds > 0) {
    mine.after_rank_file = [seconds = options_.slow_save_seconds](const std::string& rank_file) {
      LOG(WARNING) << "[ckpt] rank 0: test seam: a slow save, sleeping " << seconds << " s after "
                   << rank_file;
      absl::SleepFor(absl::Seconds(seconds));
    };
  }
  if (world_.rank() == 0 && !options_.corrupt_during_save.empty()) {
    mine.before_verification = [file = options_.corrupt_during_save](const std::string& partial) {
      const std::string path = (std::filesystem::path(partial) / file).string();
      LOG(WARNING) << "[ckpt] rank 0: test seam: flipping a byte of " << path;
      std::fstream bytes(path, std::ios::in | std::ios::out | std::ios::binary);
      bytes.seekg(0);
      const char first = static_cast<char>(bytes.get());
      bytes.seekp(0);
      bytes.put(static_cast<char>(first ^ 0x01));
    };
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::string path,
                            checkpoints::SaveTrainingCheckpoint(world_, options_.checkpoint, mine));
  last_checkpoint_step_ = step_;
  return path;
}

absl::Status Trainer::Resume() {
  // Every rank verifies and loads the checkpoint: as long as a save.
  const parallel::ScopedCollectivePhase phase(parallel::CollectivePhase::kCheckpoint);
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string path,
                            checkpoints::ChooseResumeCheckpoint(world_, options_.checkpoint));
  if (path.empty()) {
    LOG_IF(INFO, world_.rank() == 0)
        << "[ckpt] no complete checkpoint in " << options_.checkpoint.dir << "; starting at step 0";
    return absl::OkStatus();
  }
  checkpoints::ResumeTarget target;
  target.rank = world_.rank();
  target.world_size = world_.size();
  target.automatic = options_.checkpoint.resume == "auto";
  target.accepted_changes = {options_.checkpoint.resume_changed.begin(),
                             options_.checkpoint.resume_changed.end()};
  target.job = options_.job;
  target.drop_memory_on_resize = options_.checkpoint.knn_memory_on_resize == "drop";
  target.task = task_name_;
  target.tokenizer_sha256 = tokenizer_sha256_;
  target.options = TrainerOptionsJson(options_);
  target.default_options = TrainerOptionsJson(TrainerOptions{});
  target.safe_to_change = OptionsSafeToChange();
  target.outside_identity = OptionsOutsideRunIdentity();
  target.bucket_plan = reducer_->bucket_plan();
  target.model = model_.get();
  target.optimizer = optimizer_.get();
  target.device = device_;
  auto load = [&]() -> absl::Status {
    MEMTRAIN_ASSIGN_OR_RETURN(checkpoints::ResumedState resumed,
                              checkpoints::LoadTrainingCheckpoint(path, target));
    MEMTRAIN_RETURN_IF_ERROR(train_->LoadState(resumed.state.data_state));
    step_ = resumed.state.step;
    tokens_seen_ = resumed.state.tokens_seen;
    last_checkpoint_step_ = step_;
    if (resumed.resized) {
      // The saved generators and memories belong to the old ranks.
      at::manual_seed(RankSeed(options_.seed, world_.rank(), step_));
      LOG_IF(WARNING, world_.rank() == 0)
          << "[ckpt] resumed from " << path << " at step " << step_ << ", written by "
          << resumed.state.world_size << " ranks, on " << world_.size()
          << ": the data continues where it stopped (no example of the epoch repeated or "
             "skipped), each rank's generators are seeded from (seed, rank, step)"
          << (resumed.state.knn_memory_saved
                  ? ", every stream's memory starts empty (--knn_memory_on_resize=drop)"
                  : "")
          << "; the run is bitwise equal to an uninterrupted one only at an equal world size";
      return absl::OkStatus();
    }
    MEMTRAIN_RETURN_IF_ERROR(task_->LoadState(*model_, resumed.rank.task_state));
    if (world_.rank() == 0) {
      LOG(INFO) << "[ckpt] resumed from " << path << " at step " << step_;
      LOG_IF(WARNING, options_.use_memory && !resumed.state.knn_memory_saved)
          << "[ckpt] " << path
          << " holds no memory states (saved without --save_knn_memory): every stream's "
          << "memory restarts empty, so this run will not match an uninterrupted one exactly";
    }
    return absl::OkStatus();
  };
  return parallel::AllRanksOk(world_, load(), "loading " + path);
}

}  // namespace memtrain::trainer
