#include "checkpoints/model_file.h"

#include <torch/serialize.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoints/internal/format_version.h"
#include "checkpoints/internal/json_differences.h"
#include "checkpoints/safetensors.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "data/corpus_file.h"
#include "nlohmann/json.hpp"

namespace memtrain::checkpoints {
namespace {

namespace fs = std::filesystem;

constexpr char kWeights[] = "model.pt";
constexpr char kConfig[] = "model.json";
constexpr char kSafetensorsModelKey[] = "memtrain.model";

}  // namespace

absl::Status WriteModelFiles(const std::string& dir, model::TransformerImpl& model,
                             const ModelInfo& info) {
  const fs::path target(dir);
  try {
    torch::serialize::OutputArchive archive;
    model.save(archive);
    archive.save_to((target / kWeights).string());
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("writing ", (target / kWeights).string(), ": ", e.what_without_backtrace()));
  }
  nlohmann::json config;
  config["format_version"] = kModelFormatVersion;
  config["model"] = nlohmann::json::parse(model::TransformerOptionsToJson(info.options));
  config["tokenizer_sha256"] = info.tokenizer_sha256;
  config["task"] = info.task;
  config["step"] = info.step;
  MEMTRAIN_RETURN_IF_ERROR(WriteFileDurably((target / kConfig).string(), config.dump(2) + "\n"));
  return Fsync((target / kWeights).string());
}

absl::Status SaveModel(const std::string& dir, model::TransformerImpl& model,
                       const ModelInfo& info) {
  const std::string staging = StagingPath(dir);
  MEMTRAIN_RETURN_IF_ERROR(CreateStagingDirectory(staging));
  MEMTRAIN_RETURN_IF_ERROR(WriteModelFiles(staging, model, info));
  return Publish(staging, dir);
}

absl::StatusOr<ModelInfo> ReadModelInfo(const std::string& dir) {
  const fs::path config_path = fs::path(dir) / kConfig;
  std::ifstream in(config_path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(dir, " holds no model (", kConfig, " and ", kWeights,
                                            " expected; memtrain-train --save_dir writes them)"));
  }
  ModelInfo info;
  try {
    nlohmann::json config = nlohmann::json::parse(in);
    MEMTRAIN_ASSIGN_OR_RETURN(
        const int version,
        internal::FormatVersion(config, kModelFormatVersion, config_path.string()));
    // Version 3 made the knn layers' projections bias-free by default;
    // older models were trained with biases.
    if (version < 3) {
      nlohmann::json& knn = config.at("model")["attention_options"]["knn"];
      if (!knn.contains("projection_bias")) knn["projection_bias"] = true;
    }
    // Version 4 added --positions (default auto, often rotary); older
    // models were all trained with sinusoidal positions.
    if (version < 4) config.at("model")["positions"] = "sinusoidal";
    // Version 5 added --dropout_sampler (default philox); older models
    // trained with at::dropout's masks.
    if (version < 5) config.at("model")["dropout_sampler"] = "aten";
    absl::StatusOr<model::TransformerOptions> options =
        model::TransformerOptionsFromJson(config.at("model").dump());
    if (!options.ok())
      return absl::DataLossError(
          absl::StrCat(config_path.string(), ": ", options.status().message()));
    info.options = *std::move(options);
    info.tokenizer_sha256 = config.at("tokenizer_sha256").get<std::string>();
    info.task = config.at("task").get<std::string>();
    info.step = config.at("step").get<int64_t>();
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(config_path.string(), ": ", e.what()));
  }
  return info;
}

namespace {

// `options` with layer_attention entries that repeat `attention` dropped, so
// two spellings of one model compare equal.
model::TransformerOptions WithoutRedundantLayers(model::TransformerOptions options) {
  for (auto it = options.layer_attention.begin(); it != options.layer_attention.end();) {
    it = it->second == options.attention ? options.layer_attention.erase(it) : std::next(it);
  }
  return options;
}

// Copies `saved`'s tensors into `target`'s where name and shape agree;
// `fresh` gets the target's names left as initialised, `unused` the saved
// names not copied.
void CopyMatching(const torch::OrderedDict<std::string, at::Tensor>& target,
                  const torch::OrderedDict<std::string, at::Tensor>& saved,
                  std::vector<std::string>* fresh, std::vector<std::string>* unused) {
  at::NoGradGuard no_grad;
  std::set<std::string> copied;
  for (const auto& item : target) {
    const at::Tensor* from = saved.find(item.key());
    if (from != nullptr && from->sizes() == item.value().sizes()) {
      item.value().copy_(*from);
      copied.insert(item.key());
    } else {
      fresh->push_back(item.key());
    }
  }
  for (const auto& item : saved) {
    if (copied.count(item.key()) == 0) unused->push_back(item.key());
  }
}

}  // namespace

absl::StatusOr<std::vector<std::string>> InitializeFrom(model::TransformerImpl& target,
                                                        const LoadedModel& saved) {
  const model::TransformerOptions& from = saved.info.options;
  model::TransformerOptions expected = target.options();
  std::vector<std::string> changes;
  const std::vector<int64_t> saved_knn = model::KnnLayers(from);
  // The allowed differences, undone in `expected` so what is left must match.
  if (saved_knn.empty()) {
    expected.attention_options.knn = from.attention_options.knn;  // options of new layers
  } else if (expected.attention_options.knn.memory_size != from.attention_options.knn.memory_size) {
    changes.push_back(absl::StrCat("knn memory: ", from.attention_options.knn.memory_size, " -> ",
                                   expected.attention_options.knn.memory_size,
                                   " entries per stream"));
    expected.attention_options.knn.memory_size = from.attention_options.knn.memory_size;
  }
  if (expected.dropout_sampler != from.dropout_sampler) {
    changes.push_back(absl::StrCat("dropout masks: ", model::AbslUnparseFlag(from.dropout_sampler),
                                   " -> ", model::AbslUnparseFlag(expected.dropout_sampler)));
    expected.dropout_sampler = from.dropout_sampler;  // no weights: other masks, same model
  }
  if (expected.xl_cache != from.xl_cache) {
    changes.push_back(absl::StrCat("XL cache: ", from.xl_cache ? "on" : "off", " -> ",
                                   expected.xl_cache ? "on" : "off"));
    expected.xl_cache = from.xl_cache;  // no weights: the same layers see more or less
  }
  for (int64_t i = 0; i < std::min(expected.decoder_layers, from.decoder_layers); ++i) {
    const std::string& then = model::DecoderSelfAttentionKind(from, i);
    if (model::DecoderSelfAttentionKind(expected, i) == "knn" && then != "knn") {
      // Not meliad's case, where every layer normalises its keys: here only
      // knn layers do, so the layer's trained scores are not kept.
      changes.push_back(absl::StrCat(
          "decoder.", i, ".self: ", then,
          " -> knn (memory added; its queries and keys are unit-normalised from now on, so the "
          "layer relearns its attention: to keep it, train the saved model with --knn_layers and "
          "--use_memory=false)"));
      expected.layer_attention[i] = then;
    }
  }
  const std::vector<std::string> differences = internal::Differences(
      nlohmann::json::parse(model::TransformerOptionsToJson(WithoutRedundantLayers(from))),
      nlohmann::json::parse(model::TransformerOptionsToJson(WithoutRedundantLayers(expected))), {},
      "saved");
  if (!differences.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the model flags describe another model than the saved one:\n  ",
        absl::StrJoin(differences, "\n  "),
        "\n(only --knn_memory_size, added --knn_layers and --xl_cache may differ; memtrain-ckpt "
        "inspect shows the saved model's options)"));
  }
  std::vector<std::string> fresh;
  std::vector<std::string> unused;
  CopyMatching(target.named_parameters(), saved.model->named_parameters(), &fresh, &unused);
  CopyMatching(target.named_buffers(), saved.model->named_buffers(), &fresh, &unused);
  if (!fresh.empty()) changes.push_back("initialised fresh: " + absl::StrJoin(fresh, ", "));
  if (!unused.empty()) changes.push_back("saved but not used: " + absl::StrJoin(unused, ", "));
  return changes;
}

absl::StatusOr<LoadedModel> LoadModel(const std::string& dir, const c10::Device& device) {
  const fs::path config_path = fs::path(dir) / kConfig, weights_path = fs::path(dir) / kWeights;
  if (!fs::exists(weights_path)) {
    return absl::NotFoundError(absl::StrCat(dir, " holds no model (", kConfig, " and ", kWeights,
                                            " expected; memtrain-train --save_dir writes them)"));
  }
  LoadedModel loaded;
  MEMTRAIN_ASSIGN_OR_RETURN(loaded.info, ReadModelInfo(dir));
  MEMTRAIN_ASSIGN_OR_RETURN(const data::InputFile weights,
                            data::DescribeInputFile(weights_path.string()));
  loaded.weights_sha256 = weights.sha256;
  MEMTRAIN_ASSIGN_OR_RETURN(loaded.model, model::MakeTransformer(loaded.info.options));
  // Module::load replaces each tensor with the stored one whatever its shape,
  // so the shapes the config implies are checked afterwards.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  for (const auto& item : loaded.model->named_parameters())
    expected.emplace_back(item.key(), item.value().sizes().vec());
  for (const auto& item : loaded.model->named_buffers())
    expected.emplace_back(item.key(), item.value().sizes().vec());
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(weights_path.string());
    loaded.model->load(archive);
  } catch (const c10::Error& e) {
    return absl::DataLossError(
        absl::StrCat(weights_path.string(), " does not load into the model of ",
                     config_path.string(), ": ", e.what_without_backtrace()));
  }
  auto parameters = loaded.model->named_parameters();
  auto buffers = loaded.model->named_buffers();
  for (const auto& [name, shape] : expected) {
    const at::Tensor* tensor = parameters.find(name);
    if (tensor == nullptr) tensor = buffers.find(name);
    if (tensor == nullptr || tensor->sizes().vec() != shape) {
      return absl::DataLossError(absl::StrCat(weights_path.string(), ": ", name,
                                              " does not have the shape ", config_path.string(),
                                              " implies"));
    }
  }
  loaded.model->to(device);
  return loaded;
}

absl::StatusOr<int64_t> ExportSafetensors(const std::string& model_dir, const std::string& path) {
  MEMTRAIN_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel(model_dir, at::kCPU));
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : loaded.model->named_parameters()) tensors[item.key()] = item.value();
  for (const auto& item : loaded.model->named_buffers()) tensors[item.key()] = item.value();
  MEMTRAIN_RETURN_IF_ERROR(WriteSafetensors(
      path, tensors,
      {{kSafetensorsModelKey, model::TransformerOptionsToJson(loaded.info.options)},
       {"memtrain.tokenizer_sha256", loaded.info.tokenizer_sha256},
       {"memtrain.task", loaded.info.task},
       {"memtrain.step", std::to_string(loaded.info.step)}}));
  return static_cast<int64_t>(tensors.size());
}

absl::Status ImportSafetensors(const std::string& path, const std::string& model_dir) {
  MEMTRAIN_ASSIGN_OR_RETURN(Safetensors file, ReadSafetensors(path));
  auto config = file.metadata.find(kSafetensorsModelKey);
  if (config == file.metadata.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " has no '", kSafetensorsModelKey,
                     "' metadata (not written by memtrain-ckpt export)"));
  }
  ModelInfo info;
  MEMTRAIN_ASSIGN_OR_RETURN(info.options, model::TransformerOptionsFromJson(config->second));
  info.tokenizer_sha256 = file.metadata["memtrain.tokenizer_sha256"];
  info.task = file.metadata["memtrain.task"];
  const std::string step = file.metadata["memtrain.step"];
  if (!step.empty() && !absl::SimpleAtoi(step, &info.step))
    return absl::DataLossError(absl::StrCat(path, ": memtrain.step '", step, "' is not a number"));
  MEMTRAIN_ASSIGN_OR_RETURN(model::Transformer model, model::MakeTransformer(info.options));
  at::NoGradGuard no_grad;
  auto copy = [&](const std::string& name, at::Tensor& target) -> absl::Status {
    auto found = file.tensors.find(name);
    if (found == file.tensors.end() || found->second.sizes() != target.sizes()) {
      return absl::DataLossError(absl::StrCat(path, ": ", name, " is missing or not of shape ",
                                              c10::str(target.sizes()), " as the config implies"));
    }
    target.copy_(found->second);
    return absl::OkStatus();
  };
  size_t copied = 0;
  for (auto& item : model->named_parameters()) {
    MEMTRAIN_RETURN_IF_ERROR(copy(item.key(), item.value()));
    ++copied;
  }
  for (auto& item : model->named_buffers()) {
    MEMTRAIN_RETURN_IF_ERROR(copy(item.key(), item.value()));
    ++copied;
  }
  // A tensor the config has no place for would be dropped silently.
  if (copied != file.tensors.size()) {
    return absl::DataLossError(absl::StrCat(path, " holds ", file.tensors.size(),
                                            " tensors but its config makes a model of ", copied,
                                            " (exported by an older memtrain? its config lacks an "
                                            "option whose default has changed)"));
  }
  return SaveModel(model_dir, *model, info);
}

}  // namespace memtrain::checkpoints
