// File: checkpoints/model_file.h
//
// A trained model on disk: a directory with `model.pt` (every parameter and
// buffer, LibTorch's archive format) and `model.json` (the model config and
// what the weights belong to: the tokenizer's sha256, the task, the step).
// memtrain-train writes one at the end (--save_dir), memtrain-eval,
// memtrain-generate and --init_from read one. Full training checkpoints
// (optimizer, data cursors, RNG) build on this format. Beside them
// memtrain-train --save_dir writes kSavedTokenizerFile, a corpus of no records
// holding the tokenizer (data::WriteTokenizerCorpus), so that memtrain-generate
// --input needs no --data.
//
//   MEMTRAIN_RETURN_IF_ERROR(SaveModel("runs/lm/final", *model, info));
//   MEMTRAIN_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel("runs/lm/final", device));
//
// Versions: model.json carries "format_version" (kModelFormatVersion; files
// without one are version 1, written before 2026-12-06). Reading accepts every
// version up to this build's, an option missing from an older file taking its
// default (model/transformer.h), except where a version changed a default:
// version 3 made the knn projections bias-free, so a knn config of version
// 1 or 2 without "projection_bias" reads as true; version 4 added
// "positions" (default auto), so a model of version 1 to 3 reads as
// sinusoidal, the only encoding then; version 5 added "dropout_sampler"
// (default philox), so older models read as aten, the masks they trained
// with (model/dropout.h). A newer file is refused,
// naming both versions. Reading never throws: every problem is a Status naming the file.
// tests/checkpoints/fixtures/format1 holds files written by version 1.
//
// Writing is atomic (common/atomic_file.h): the files go to a sibling
// directory `<dir>.partial-<pid>`, published over `dir` only when complete,
// so a crash leaves the previous model or none.
#ifndef MEMTRAIN_CHECKPOINTS_MODEL_FILE_H_
#define MEMTRAIN_CHECKPOINTS_MODEL_FILE_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "model/transformer.h"

namespace memtrain::checkpoints {

/// The tokenizer memtrain-train --save_dir keeps in the model directory.
inline constexpr char kSavedTokenizerFile[] = "tokenizer.h5";

/// The model.json format this build writes; it reads 1..kModelFormatVersion.
inline constexpr int kModelFormatVersion = 5;

struct ModelInfo {
  model::TransformerOptions options;
  std::string tokenizer_sha256;  ///< the corpus tokenizer the model was trained with
  std::string task;              ///< lm, translation, summarization, qa
  int64_t step = 0;              ///< optimizer steps taken
};

absl::Status SaveModel(const std::string& dir, model::TransformerImpl& model,
                       const ModelInfo& info);
/// Writes (and fsyncs) model.pt and model.json into the existing directory
/// `dir`, non-atomically: for writers that make `dir` appear atomically
/// themselves (SaveModel, checkpoints/checkpoint.h).
absl::Status WriteModelFiles(const std::string& dir, model::TransformerImpl& model,
                             const ModelInfo& info);

struct LoadedModel {
  model::Transformer model{nullptr};
  ModelInfo info;
  std::string
      weights_sha256;  ///< of model.pt: what the model is, e.g. for a memory its keys came from
};

/// Starts `target`, built from this run's model flags, from the saved model
/// `saved` (--init_from), the way the Memorizing Transformer paper
/// fine-tunes: the two configurations must agree except that `target` may
/// have another knn memory size (Table 5: pre-train with 8K, fine-tune with
/// 65K), more knn layers (Figure 6: a softmax layer of `saved` becomes
/// knn, though unlike meliad's its scores change: a knn layer unit-normalises
/// queries and keys; when `saved` has no knn layer, the knn options are the
/// new layers') and the XL cache on or off (it has no weights). Copies every parameter and buffer
/// whose name and shape agree and returns one line per change for the log: the memory resized, a
/// layer turned knn, tensors initialised fresh, saved tensors not used. kFailedPrecondition listing
/// the fields for any other difference.
absl::StatusOr<std::vector<std::string>> InitializeFrom(model::TransformerImpl& target,
                                                        const LoadedModel& saved);

/// model.json alone (no weights read). kNotFound when `dir` has none;
/// kDataLoss naming the file when it is damaged.
absl::StatusOr<ModelInfo> ReadModelInfo(const std::string& dir);
/// kNotFound when `dir` has no model; kDataLoss (naming the file) when a file
/// is damaged or does not match its config.
absl::StatusOr<LoadedModel> LoadModel(const std::string& dir, const c10::Device& device);

/// A model directory (or checkpoint) as one safetensors file: every parameter
/// and buffer under its LibTorch name, the model config, tokenizer sha256,
/// task and step as metadata ("memtrain.model", ...), so that
/// `safetensors.torch.load_file` reads it. Returns the number of tensors.
absl::StatusOr<int64_t> ExportSafetensors(const std::string& model_dir, const std::string& path);
/// The inverse: rebuilds a model directory (model_file.h) from an exported
/// file. kFailedPrecondition for a file without memtrain's metadata,
/// kDataLoss naming a tensor that is missing or not of the config's shape.
absl::Status ImportSafetensors(const std::string& path, const std::string& model_dir);

}  // namespace memtrain::checkpoints

#endif  // MEMTRAIN_CHECKPOINTS_MODEL_FILE_H_
