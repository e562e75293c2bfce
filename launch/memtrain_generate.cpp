// memtrain-generate: greedy or beam-search output of a saved model for
// records of a corpus file, printed with the source (or prompt) and the
// reference. Text comes from the tokenizer pieces stored in the file.
//
//   memtrain-generate --model=runs/wmt/model --data=wmt16.test.h5 --first=0 --count=5 --beam=4
//   memtrain-generate --model=runs/demo/model --data=demo.valid.h5 --prompt_tokens=64
//   --max_length=40
#include <iostream>

#include "absl/flags/flag.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/device.h"
#include "launch/saved_model_flags.h"
#include "trainer/generation.h"

ABSL_FLAG(int64_t, first, 0, "First record.");
ABSL_FLAG(int64_t, count, 5, "Records to generate for.");
ABSL_FLAG(int64_t, prompt_tokens, 32, "lm: tokens of the document used as the prompt.");

namespace memtrain {
namespace {

absl::Status Run() {
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("first", absl::GetFlag(FLAGS_first), 0));
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("count", absl::GetFlag(FLAGS_count), 1));
  MEMTRAIN_RETURN_IF_ERROR(
      RequireFlagAtLeast("prompt_tokens", absl::GetFlag(FLAGS_prompt_tokens), 1));
  MEMTRAIN_ASSIGN_OR_RETURN(launch::DeviceChoice device,
                            launch::ChooseDeviceForThisMachine(absl::GetFlag(FLAGS_device), 0, 1));
  launch::ApplyDeviceChoice(device);
  MEMTRAIN_ASSIGN_OR_RETURN(launch::ModelAndData opened,
                            launch::OpenModelAndDataFromFlags(device.device));
  trainer::GenerationOptions options;
  options.search = launch::SearchOptionsFromFlags(opened.data->tokenizer().eos_id);
  options.prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  MEMTRAIN_ASSIGN_OR_RETURN(
      auto examples,
      trainer::GenerateRecords(*opened.model.model, *opened.data, absl::GetFlag(FLAGS_first),
                               absl::GetFlag(FLAGS_count), options, device.device));
  const bool seq2seq = opened.data->is_seq2seq();
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
  memtrain::InitBinary(
      argc, argv,
      "Generates with a saved model (greedy or beam search) for records of a corpus.\n"
      "  memtrain-generate --model=runs/wmt/model --data=wmt16.test.h5 --count=5 --beam=4");
  return memtrain::RunBinary("[generate]", [] { return memtrain::Run(); });
}
