// File: trainer/task.h
//
// A `Task` turns one BatchSource batch into a loss with a given model. It is
// what differs between the four tasks; the training loop, the evaluation and
// the reducer do not know which one runs. The names and which tasks are
// sequence-to-sequence are data/task.h's table; the loss follows from it:
//   lm             decoder-only over document streams (WikiText-103, demo).
//                  With memory on, the layers that remember across segments
//                  (knn, infinite) keep one state per stream across steps,
//                  cleared at a new document; with memory off every segment
//                  is seen alone. With memory, the loss also holds the
//                  memory layers' regularisers (the ∞-former's KL term,
//                  --infinite_kl_weight; SegmentMemoryState::AuxiliaryLoss).
//   translation, summarization, qa
//                  encoder-decoder, teacher forced: source -> encoder,
//                  bos + target[:-1] -> decoder, predicts target. Or, with
//                  a decoder-only model (encoder_layers = 0), a prefix LM:
//                  source, <sep>, target as one sequence, the loss on the
//                  target only (data/batch_source.h, prefix_lm batches).
//                  So an lm model can be fine-tuned on them (--init_from).
//
//   MEMTRAIN_ASSIGN_OR_RETURN(auto task, MakeTask("lm", {.label_smoothing = 0.1}));
//   TokenLoss loss = task->Forward(*model, batch);
//   loss.smoothed.backward();
#ifndef MEMTRAIN_TRAINER_TASK_H_
#define MEMTRAIN_TRAINER_TASK_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/batch_source.h"
#include "memory/knn_layer_memory.h"
#include "model/transformer.h"
#include "trainer/loss.h"

namespace memtrain::trainer {

struct TaskOptions {
  double label_smoothing = 0.0;
  /// lm only: the memory layers (knn, infinite) keep their memories across
  /// segments; false: they keep none, an XL cache is kept either way.
  bool use_memory = true;
  /// lm with memory: the knn layers' memories (memory/knn_layer_memory.h,
  /// made by memory/knn_memory_setup.h). Null: an ExactKnnMemory per layer,
  /// one stream per row.
  memory::KnnLayerMemories knn_memory;
};

class Task {
 public:
  virtual ~Task() = default;
  /// The loss of `batch` (on the model's device). An empty batch (0 rows; a
  /// rank without data at an epoch's last step) gives a zero loss that still
  /// reaches every parameter, so the ranks' reducers stay in step.
  virtual TokenLoss Forward(model::TransformerImpl& model, const data::Batch& batch) = 0;
  /// Whether the model shape suits the task (decoder-only for lm; either
  /// for the others, whose batches must then be prefix_lm ones):
  /// kFailedPrecondition saying what to change.
  virtual absl::Status CheckModel(const model::TransformerOptions& options) const = 0;

  /// Checkpoints: what the task carries from one step to the next, as named
  /// CPU tensors; empty when it carries nothing (seq2seq, lm without
  /// memory). lm with memory: "rows" and, per memory layer i, its state under
  /// "decoder.<i>." (model/attention.h SegmentMemoryState::SaveState).
  virtual absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const;
  /// Restores SaveState's output; `model` (the one trained) makes the fresh
  /// states to load into. An empty `state` starts from fresh states.
  virtual absl::Status LoadState(model::TransformerImpl& model,
                                 const std::map<std::string, at::Tensor>& state);
};

/// kInvalidArgument for an unknown name, listing the known ones.
absl::StatusOr<std::unique_ptr<Task>> MakeTask(const std::string& name, const TaskOptions& options);

/// `batch`'s tensors on `device` (non-blocking where possible).
data::Batch ToDevice(const data::Batch& batch, const c10::Device& device);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_TASK_H_
