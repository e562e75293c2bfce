#include "launch/saved_model_flags.h"

#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "launch/batch_flags.h"

ABSL_FLAG(std::string, model, "", "Saved model directory (memtrain-train --save_dir). Required.");
ABSL_FLAG(std::string, data, "",
          "Corpus to read (encoded with the model's tokenizer). Required, except for "
          "memtrain-generate --input with a model directory holding tokenizer.h5 "
          "(memtrain-train --save_dir writes it).");
ABSL_FLAG(int64_t, beam, 4, "Beam size (1: greedy).");
ABSL_FLAG(double, lenpen, 1.0, "Length penalty: hypotheses ranked by score / length^lenpen.");
ABSL_FLAG(int64_t, max_length, 200, "Longest output, tokens.");

namespace memtrain::launch {

absl::StatusOr<ModelAndData> OpenModelAndDataFromFlags(const c10::Device& device, DataNeed need) {
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  ModelAndData opened;
  opened.model_dir = model_dir;
  opened.data_path = absl::GetFlag(FLAGS_data);
  if (model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (opened.data_path.empty()) {
    const std::string saved_tokenizer =
        (std::filesystem::path(model_dir) / checkpoints::kSavedTokenizerFile).string();
    if (need == DataNeed::kRecords) return absl::InvalidArgumentError("--data is required");
    if (!std::filesystem::exists(saved_tokenizer)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--data is required: ", model_dir, " has no ", checkpoints::kSavedTokenizerFile,
          " (saved before memtrain kept the tokenizer with the model); give any corpus "
          "prepared with the model's tokenizer"));
    }
    opened.data_path = saved_tokenizer;
  }
  MEMTRAIN_RETURN_IF_ERROR(CheckSearchFlags());  // before anything is loaded
  MEMTRAIN_ASSIGN_OR_RETURN(opened.model, checkpoints::LoadModel(model_dir, device));
  MEMTRAIN_ASSIGN_OR_RETURN(opened.data, data::CorpusFile::Open(opened.data_path, {}));
  if (opened.data->tokenizer().sha256 != opened.model.info.tokenizer_sha256) {
    return absl::FailedPreconditionError(absl::StrCat(
        opened.data_path, " uses tokenizer ", opened.data->tokenizer().sha256, "; the model ",
        model_dir, " was trained with ", opened.model.info.tokenizer_sha256));
  }
  return opened;
}

absl::Status CheckSearchFlags() {
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("beam", absl::GetFlag(FLAGS_beam), 1));
  return RequireFlagAtLeast("max_length", absl::GetFlag(FLAGS_max_length), 1);
}

trainer::SearchOptions SearchOptionsFromFlags(int64_t eos) {
  trainer::SearchOptions search;
  search.beam = absl::GetFlag(FLAGS_beam);
  search.length_penalty = absl::GetFlag(FLAGS_lenpen);
  search.max_length = absl::GetFlag(FLAGS_max_length);
  search.eos = eos;
  search.segment_length = absl::GetFlag(FLAGS_segment_length);
  return search;
}

}  // namespace memtrain::launch
