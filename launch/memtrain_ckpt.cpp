// memtrain-ckpt: looks into checkpoints, moves weights in and out, and shows
// what a model computes.
//
//   memtrain-ckpt inspect runs/lm/ckpt                 # every checkpoint, verified
//   memtrain-ckpt inspect runs/lm/ckpt/latest          # one: step, files, config, ranks
//   memtrain-ckpt export --format=safetensors --output=w.safetensors runs/lm/ckpt/latest
//   memtrain-ckpt import --output=runs/lm/imported w.safetensors
//   memtrain-ckpt logits --tokens=in.safetensors --output=logits.safetensors runs/lm/model
//
// export writes every parameter and buffer under its LibTorch name, with the
// model config, tokenizer sha256, task and step as safetensors metadata, so
// `safetensors.torch.load_file` reads it and import rebuilds a model
// directory (model.pt + model.json) that memtrain-eval and --init_from take.
// logits writes the logits the model gives for given tokens (float32, eval
// mode, on the CPU): what a port of the weights must reproduce
// (python/memtrain_torch checks itself against it).
#include <filesystem>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/model_file.h"
#include "checkpoints/safetensors.h"
#include "checkpoints/training_checkpoint.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "parallel/communicator.h"

ABSL_FLAG(std::string, format, "safetensors", "export: the weights format (safetensors only).");
ABSL_FLAG(std::string, output, "",
          "export, logits: the file to write; import: the model directory to write.");
ABSL_FLAG(std::string, tokens, "",
          "logits: a safetensors file with `tokens` (integer [B, n]: a decoder-only model's input, "
          "or an encoder-decoder model's decoder input) and, for an encoder-decoder model, "
          "`source` (integer [B, s]); pad_id tokens are padding.");

namespace memtrain {
namespace {

namespace fs = std::filesystem;

void PrintSafetensors(const std::string& path) {
  auto file = checkpoints::ReadSafetensors(path);
  if (!file.ok()) {
    std::cout << "  " << path << ": " << file.status().message() << "\n";
    return;
  }
  std::cout << "  " << fs::path(path).filename().string() << ":\n";
  for (const auto& [key, value] : file->metadata)
    std::cout << "    metadata " << key << " = " << value << "\n";
  for (const auto& [name, tensor] : file->tensors) {
    std::cout << "    " << name << " " << c10::toString(tensor.scalar_type()) << " "
              << tensor.sizes() << "\n";
  }
}

// What one checkpoint holds, read by the code that resumes from it
// (checkpoints/training_checkpoint.h); the manifest's verification decides
// the exit status.
absl::Status InspectOne(const std::string& path) {
  MEMTRAIN_ASSIGN_OR_RETURN(checkpoints::Manifest manifest, checkpoints::ReadManifest(path));
  std::cout << "checkpoint " << fs::canonical(path).string() << "\nstep " << manifest.step
            << "\nfiles:\n";
  for (const auto& entry : manifest.files) {
    std::cout << "  " << entry.file << "  " << entry.bytes << " bytes  sha256 " << entry.sha256
              << "\n";
  }
  const auto state = checkpoints::ReadTrainerState(path);
  if (state.ok()) {
    std::cout << "trainer state: step " << state->step << ", " << state->tokens_seen
              << " tokens seen, " << state->world_size << " rank(s), task " << state->task
              << ", tokenizer " << state->tokenizer_sha256 << ", memories "
              << (state->knn_memory_saved ? "saved" : "not saved") << ", "
              << state->bucket_plan.size() << " gradient buckets, format version "
              << state->format_version << "\njob: " << nlohmann::json(state->job).dump()
              << "\ndata cursor: "
              << (state->data_state.empty() ? "per rank (below)" : state->data_state)
              << "\noptions: " << state->options.dump(2) << "\n";
  } else {
    std::cout << "trainer state: " << state.status().message() << "\n";
  }
  const auto model = checkpoints::ReadModelInfo(path);
  std::cout << "model: "
            << (model.ok() ? model::TransformerOptionsToJson(model->options)
                           : std::string(model.status().message()))
            << "\nranks:\n";
  for (int rank = 0; state.ok() && rank < state->world_size; ++rank) {
    const auto rank_state = checkpoints::ReadRankState(path, rank);
    if (!rank_state.ok()) {
      std::cout << "  rank " << rank << ": " << rank_state.status().message() << "\n";
      continue;
    }
    std::cout << "  rank " << rank << ": "
              << (rank_state->data_state.empty() ? ""
                                                 : "data cursor " + rank_state->data_state + ", ")
              << "generators " << (rank_state->cuda_rng.defined() ? "cpu+cuda" : "cpu")
              << ", task state "
              << (rank_state->task_state_saved
                      ? absl::StrCat(rank_state->task_state.size(), " tensors")
                      : std::string("not saved"))
              << "\n";
    for (const auto& [name, tensor] : rank_state->task_state)
      std::cout << "    " << name << " " << parallel::DescribeTensor(tensor) << "\n";
  }
  const absl::Status verified = checkpoints::VerifyCheckpoint(path);
  std::cout << "verified: " << (verified.ok() ? "ok" : absl::StrCat("FAILED: ", verified.message()))
            << "\n";
  return verified;
}

absl::Status Inspect(const std::string& path) {
  if (fs::path(path).extension() == ".safetensors") {
    PrintSafetensors(path);
    return absl::OkStatus();
  }
  if (fs::exists(fs::path(path) / checkpoints::kManifestName)) return InspectOne(path);
  const auto all = checkpoints::ListCheckpoints(path);
  if (all.empty()) return absl::NotFoundError(absl::StrCat(path, " holds no checkpoint"));
  absl::Status worst = absl::OkStatus();
  for (const auto& checkpoint : all) {
    const absl::Status verified = checkpoints::VerifyCheckpoint(checkpoint.path);
    std::cout << checkpoint.path << "  step " << checkpoint.step << "  "
              << (verified.ok() ? "ok" : absl::StrCat("DAMAGED: ", verified.message())) << "\n";
    if (!verified.ok()) worst = verified;
  }
  return worst;
}

absl::Status Export(const std::string& path, const std::string& output) {
  if (absl::GetFlag(FLAGS_format) != "safetensors") {
    return absl::InvalidArgumentError("--format: only safetensors is supported");
  }
  if (output.empty()) return absl::InvalidArgumentError("export needs --output=FILE.safetensors");
  MEMTRAIN_ASSIGN_OR_RETURN(const int64_t tensors, checkpoints::ExportSafetensors(path, output));
  std::cout << "exported " << tensors << " tensors of " << path << " to " << output << "\n";
  return absl::OkStatus();
}

absl::Status Import(const std::string& path, const std::string& output) {
  if (output.empty()) return absl::InvalidArgumentError("import needs --output=MODEL_DIR");
  MEMTRAIN_RETURN_IF_ERROR(checkpoints::ImportSafetensors(path, output));
  std::cout << "imported " << path << " into " << output << "\n";
  return absl::OkStatus();
}

// tensors[name] as int64 [B, t] of ids below `vocab_size`, or kInvalidArgument naming the file.
absl::StatusOr<at::Tensor> TokenTensor(const checkpoints::Safetensors& file,
                                       const std::string& name, const std::string& path,
                                       int64_t vocab_size) {
  auto found = file.tensors.find(name);
  if (found == file.tensors.end())
    return absl::InvalidArgumentError(absl::StrCat(path, " has no tensor '", name, "'"));
  const at::Tensor& tensor = found->second;
  if (tensor.dim() != 2 || !at::isIntegralType(tensor.scalar_type(), /*includeBool=*/false)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": '", name, "' must be an integer [batch, length] tensor"));
  }
  const at::Tensor ids = tensor.to(at::kLong);
  if (ids.numel() > 0 &&
      (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= vocab_size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": '", name, "' holds ids from ", ids.min().item<int64_t>(), " to ",
        ids.max().item<int64_t>(), "; the model's vocabulary is 0 to ", vocab_size - 1));
  }
  return ids;
}

absl::Status Logits(const std::string& path, const std::string& output) {
  const std::string tokens_path = absl::GetFlag(FLAGS_tokens);
  if (tokens_path.empty() || output.empty()) {
    return absl::InvalidArgumentError(
        "logits needs --tokens=IN.safetensors and --output=OUT.safetensors");
  }
  MEMTRAIN_ASSIGN_OR_RETURN(checkpoints::LoadedModel loaded,
                            checkpoints::LoadModel(path, at::kCPU));
  MEMTRAIN_ASSIGN_OR_RETURN(const checkpoints::Safetensors input,
                            checkpoints::ReadSafetensors(tokens_path));
  const int64_t vocab_size = loaded.info.options.vocab_size;
  MEMTRAIN_ASSIGN_OR_RETURN(const at::Tensor tokens,
                            TokenTensor(input, "tokens", tokens_path, vocab_size));
  const bool encoder_decoder = loaded.info.options.encoder_layers > 0;
  at::Tensor source;
  if (encoder_decoder) {
    MEMTRAIN_ASSIGN_OR_RETURN(source, TokenTensor(input, "source", tokens_path, vocab_size));
  } else if (input.tensors.count("source") > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokens_path, ": a decoder-only model takes no 'source'"));
  }
  model::TransformerImpl& model = *loaded.model;
  model.eval();
  at::NoGradGuard no_grad;
  at::Tensor logits;
  try {
    logits = encoder_decoder ? model.Decode(tokens, model.Encode(source), source)
                             : model.ForwardLm(tokens);
  } catch (const c10::Error& error) {  // e.g. a source longer than linformer.max_length
    return absl::InvalidArgumentError(
        absl::StrCat(tokens_path, ": ", error.what_without_backtrace()));
  }
  MEMTRAIN_RETURN_IF_ERROR(
      checkpoints::WriteSafetensors(output, {{"logits", logits.to(at::kFloat)}}, {}));
  std::cout << "logits " << logits.sizes() << " of " << path << " to " << output << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  std::vector<char*> args = memtrain::InitBinary(
      argc, argv,
      "Inspects, verifies, exports and imports memtrain checkpoints, and writes a model's logits "
      "for given tokens (docs/CHECKPOINTS.md).\n"
      "  memtrain-ckpt inspect CHECKPOINT_DIR|CHECKPOINT|FILE.safetensors   (exit 1 if damaged)\n"
      "  memtrain-ckpt export --format=safetensors --output=W.safetensors CHECKPOINT|MODEL_DIR\n"
      "  memtrain-ckpt import --output=MODEL_DIR W.safetensors\n"
      "  memtrain-ckpt logits --tokens=IN.safetensors --output=OUT.safetensors "
      "CHECKPOINT|MODEL_DIR");
  if (args.size() != 3) {
    std::cerr << "usage: memtrain-ckpt inspect|export|import|logits PATH (see --help)\n";
    return 2;
  }
  const std::string command = args[1], path = args[2], output = absl::GetFlag(FLAGS_output);
  if (command != "inspect" && command != "export" && command != "import" && command != "logits") {
    std::cerr << "unknown command '" << command << "': inspect, export, import or logits\n";
    return 2;
  }
  return memtrain::RunBinary("[ckpt]", [&] {
    if (command == "inspect") return memtrain::Inspect(path);
    if (command == "export") return memtrain::Export(path, output);
    if (command == "logits") return memtrain::Logits(path, output);
    return memtrain::Import(path, output);
  });
}
