#include "launch/saved_model_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "launch/batch_flags.h"

ABSL_FLAG(std::string, model, "", "Saved model directory (memtrain-train --save_dir). Required.");
ABSL_FLAG(std::string, data, "", "Corpus to read (the model's tokenizer). Required.");
ABSL_FLAG(int64_t, beam, 4, "Beam size (1: greedy).");
ABSL_FLAG(double, lenpen, 1.0, "Length penalty: hypotheses ranked by score / length^lenpen.");
ABSL_FLAG(int64_t, max_length, 200, "Longest output, tokens.");

namespace memtrain::launch {

absl::StatusOr<ModelAndData> OpenModelAndDataFromFlags(const c10::Device& device) {
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  ModelAndData opened;
  opened.model_dir = model_dir;
  opened.data_path = absl::GetFlag(FLAGS_data);
  if (model_dir.empty() || opened.data_path.empty()) {
    return absl::InvalidArgumentError("--model and --data are required");
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
