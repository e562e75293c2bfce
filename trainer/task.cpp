#include "trainer/task.h"

#include <ATen/ATen.h>

#include <functional>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "data/task.h"

namespace memtrain::trainer {
namespace {

// Zero times every parameter: an empty batch's loss still has a gradient
// path to each of them, so gradient hooks fire on every rank alike.
at::Tensor ZeroLossOver(model::TransformerImpl& model) {
  at::Tensor zero = at::zeros({}, model.parameters().front().options().dtype(at::kFloat));
  for (const at::Tensor& p : model.parameters()) {
    if (p.requires_grad()) zero = zero + p.sum().to(at::kFloat) * 0.0;
  }
  return zero;
}

class LmTask final : public Task {
 public:
  explicit LmTask(const TaskOptions& options) : options_(options) {}

  absl::Status CheckModel(const model::TransformerOptions& options) const override {
    if (options.encoder_layers != 0) {
      return absl::FailedPreconditionError(
          "task lm needs a decoder-only model: set --encoder_layers=0");
    }
    return absl::OkStatus();
  }

  TokenLoss Forward(model::TransformerImpl& model, const data::Batch& batch) override {
    // Segment states even without memories (use_memory false): an XL cache
    // is kept then (TransformerImpl::NewSegmentStates).
    const int64_t rows = batch.inputs.size(0);
    if (!states_ || states_->self.empty() || rows != rows_) {
      states_ = std::make_unique<model::TransformerDecodeStates>(
          model.NewSegmentStates(rows, options_.knn_memory, options_.use_memory));
      rows_ = rows;
    }
    model.StartDocuments(*states_, batch.new_document);
    // Logits of the counted positions only (TransformerImpl::ForwardLm).
    const at::Tensor logits = model.ForwardSegment(batch.inputs, *states_, batch.loss_mask);
    const at::Tensor auxiliary = states_->AuxiliaryLoss();
    TokenLoss loss = LabelSmoothedLoss(logits, batch.targets, batch.loss_mask,
                                       options_.label_smoothing, batch.long_range);
    // The memory layers' regularisers are sums like the token loss; the
    // totals (perplexity) stay the tokens' own.
    if (auxiliary.defined())
      loss.smoothed = loss.smoothed + auxiliary.to(loss.smoothed.scalar_type());
    return loss;
  }

  absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const override {
    std::map<std::string, at::Tensor> state;
    if (!states_) return state;
    state["rows"] = at::tensor({rows_}, at::kLong);
    for (size_t i = 0; i < states_->self.size(); ++i) {
      if (!states_->self[i]) continue;
      auto layer = static_cast<const model::SegmentMemoryState&>(*states_->self[i]).SaveState();
      if (!layer.ok())
        return absl::Status(layer.status().code(),
                            absl::StrCat("decoder.", i, ": ", layer.status().message()));
      for (auto& [name, tensor] : *layer)
        state[absl::StrCat("decoder.", i, ".", name)] = std::move(tensor);
    }
    return state;
  }

  absl::Status LoadState(model::TransformerImpl& model,
                         const std::map<std::string, at::Tensor>& state) override {
    states_.reset();
    rows_ = 0;
    if (state.empty()) return absl::OkStatus();
    auto rows = state.find("rows");
    if (rows == state.end()) return absl::InvalidArgumentError("lm task state without 'rows'");
    rows_ = rows->second.item<int64_t>();
    states_ = std::make_unique<model::TransformerDecodeStates>(
        model.NewSegmentStates(rows_, options_.knn_memory, options_.use_memory));
    const c10::Device device = model.parameters().front().device();
    for (size_t i = 0; i < states_->self.size(); ++i) {
      if (!states_->self[i]) continue;
      const std::string prefix = absl::StrCat("decoder.", i, ".");
      std::map<std::string, at::Tensor> layer;
      for (const auto& [name, tensor] : state) {
        if (absl::StartsWith(name, prefix)) layer[name.substr(prefix.size())] = tensor.to(device);
      }
      const absl::Status loaded =
          static_cast<model::SegmentMemoryState&>(*states_->self[i]).LoadState(layer);
      if (!loaded.ok())
        return absl::Status(loaded.code(), absl::StrCat(prefix, " ", loaded.message()));
    }
    return absl::OkStatus();
  }

 private:
  const TaskOptions options_;
  std::unique_ptr<model::TransformerDecodeStates> states_;  // one row per stream
  int64_t rows_ = 0;
};

class Seq2SeqTask final : public Task {
 public:
  explicit Seq2SeqTask(const TaskOptions& options) : options_(options) {}

  // Either shape: encoder-decoder, or decoder-only as a prefix LM (whose
  // attention kinds the model has already checked for causal use).
  absl::Status CheckModel(const model::TransformerOptions&) const override {
    return absl::OkStatus();
  }

  TokenLoss Forward(model::TransformerImpl& model, const data::Batch& batch) override {
    if (batch.inputs.size(0) == 0) {
      TokenLoss empty;
      empty.smoothed = ZeroLossOver(model);
      return empty;
    }
    const bool decoder_only = model.options().encoder_layers == 0;
    TORCH_CHECK(decoder_only != batch.source.defined(),
                "seq2seq: a decoder-only model takes prefix_lm batches, an encoder-decoder one "
                "the others (BatchSourceOptions::prefix_lm)");
    at::Tensor logits;
    if (decoder_only) {
      // Prefix-LM batches (data/batch_source.h): the source is context in
      // the inputs, and the loss mask keeps the target's tokens (the only
      // positions whose logits are computed).
      logits = model.ForwardLm(batch.inputs, 0, batch.loss_mask);
    } else {
      const at::Tensor memory = model.Encode(batch.source);
      logits = model.Decode(batch.inputs, memory, batch.source, batch.loss_mask);
    }
    return LabelSmoothedLoss(logits, batch.targets, batch.loss_mask, options_.label_smoothing);
  }

 private:
  const TaskOptions options_;
};

}  // namespace

absl::StatusOr<std::map<std::string, at::Tensor>> Task::SaveState() const {
  return std::map<std::string, at::Tensor>();
}

absl::Status Task::LoadState(model::TransformerImpl&,
                             const std::map<std::string, at::Tensor>& state) {
  if (state.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("this task carries no state between steps, but the checkpoint holds ",
                   state.size(), " tensors of task state (saved by another task?)"));
}

absl::StatusOr<std::unique_ptr<Task>> MakeTask(const std::string& name,
                                               const TaskOptions& options) {
  // The loss follows from the task table (data/task.h): documents train the
  // decoder-only LM loss, examples the encoder-decoder or prefix-LM one.
  MEMTRAIN_ASSIGN_OR_RETURN(const data::TaskInfo* task, data::FindTask(name));
  if (task->seq2seq) return std::make_unique<Seq2SeqTask>(options);
  return std::make_unique<LmTask>(options);
}

data::Batch ToDevice(const data::Batch& batch, const c10::Device& device) {
  data::Batch moved = batch;
  for (at::Tensor* t : {&moved.inputs, &moved.targets, &moved.loss_mask, &moved.long_range,
                        &moved.new_document, &moved.source, &moved.source_mask}) {
    if (t->defined()) *t = t->to(device, /*non_blocking=*/true);
  }
  return moved;
}

}  // namespace memtrain::trainer
