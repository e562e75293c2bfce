// memtrain-generate: greedy or beam-search output of a saved model for
// records of a corpus file, printed with the source (or prompt) and the
// reference. Text comes from the tokenizer pieces stored in the file.
//
//   memtrain-generate --model=runs/wmt/model --data=wmt16.test.h5 --first=0 --count=5 --beam=4
//   memtrain-generate --model=runs/demo/model --data=demo.valid.h5 --prompt_tokens=64 --max_length=40
#include <iostream>

#include "absl/flags/flag.h"
#include "checkpoints/model_file.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/device.h"
#include "trainer/generation.h"

ABSL_FLAG(std::string, model, "", "Saved model directory (memtrain-train --save_dir). Required.");
ABSL_FLAG(std::string, data, "", "Corpus whose records are the inputs (same tokenizer). Required.");
ABSL_FLAG(int64_t, first, 0, "First record.");
ABSL_FLAG(int64_t, count, 5, "Records to generate for.");
ABSL_FLAG(int64_t, beam, 4, "Beam size (1: greedy).");
ABSL_FLAG(double, lenpen, 1.0, "Length penalty: score / length^lenpen.");
ABSL_FLAG(int64_t, max_length, 100, "Longest output, tokens.");
ABSL_FLAG(int64_t, prompt_tokens, 32, "lm: tokens of the document used as the prompt.");

namespace memtrain {
namespace {

absl::Status Run() {
  const std::string model_dir = absl::GetFlag(FLAGS_model), data_path = absl::GetFlag(FLAGS_data);
  if (model_dir.empty() || data_path.empty()) return absl::InvalidArgumentError("--model and --data are required");
  MEMTRAIN_ASSIGN_OR_RETURN(launch::DeviceChoice device, launch::ChooseDeviceForThisMachine(0, 1));
  launch::ApplyDeviceChoice(device);
  MEMTRAIN_ASSIGN_OR_RETURN(checkpoints::LoadedModel loaded, checkpoints::LoadModel(model_dir, device.device));
  MEMTRAIN_ASSIGN_OR_RETURN(auto file, data::CorpusFile::Open(data_path, {}));
  if (file->tokenizer().sha256 != loaded.info.tokenizer_sha256) {
    return absl::FailedPreconditionError(absl::StrCat(data_path, " uses another tokenizer than ", model_dir));
  }
  trainer::GenerationOptions options;
  options.search.beam = absl::GetFlag(FLAGS_beam);
  options.search.length_penalty = absl::GetFlag(FLAGS_lenpen);
  options.search.max_length = absl::GetFlag(FLAGS_max_length);
  options.search.eos = file->tokenizer().eos_id;
  options.prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  MEMTRAIN_ASSIGN_OR_RETURN(auto examples,
                            trainer::GenerateRecords(*loaded.model, *file, absl::GetFlag(FLAGS_first),
                                                     absl::GetFlag(FLAGS_count), options, device.device));
  const bool seq2seq = file->is_seq2seq();
  for (const trainer::GeneratedExample& e : examples) {
    std::cout << "record " << e.record << "\n"
              << (seq2seq ? "  source:    " : "  prompt:    ") << e.source << "\n"
              << "  reference: " << e.reference << "\n"
              << "  output:    " << e.hypothesis << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(argc, argv,
                       "Generates with a saved model (greedy or beam search) for records of a corpus.\n"
                       "  memtrain-generate --model=runs/wmt/model --data=wmt16.test.h5 --count=5 --beam=4");
  const absl::Status status = memtrain::Run();
  if (!status.ok()) {
    LOG(ERROR) << "[generate] " << status.message();
    return 1;
  }
  return 0;
}
