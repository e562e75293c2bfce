// memtrain-generate: a saved model's outputs for text, one input a line
// (--input), or for records of a corpus file, printed with the source (or
// prompt) and the reference. --data is the corpus that carries the model's
// tokenizer in both modes.
//
//   memtrain-generate --model=runs/wmt/model --data=wmt16.train.h5 --input=src.en > hyp.de
//   memtrain-generate --model=runs/demo/model --data=demo.valid.h5 --input=- --max_length=40
//       --temperature=0.8 --top_p=0.9 --seed=7 < prompts.txt
//   memtrain-generate --model=runs/wmt/model --data=wmt16.test.h5 --first=0 --count=5 --beam=4
#include <filesystem>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/atomic_file.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "data/text_inputs.h"
#include "glog/logging.h"
#include "launch/batch_flags.h"
#include "launch/device.h"
#include "launch/saved_model_flags.h"
#include "trainer/generation.h"

ABSL_FLAG(std::string, input, "",
          "Text to generate for, one input a line ('-': standard input): translation and "
          "summarization: the source text (summarization also takes JSON lines with "
          "\"document\"); qa: JSON lines with \"question\" and optional \"system_prompt\" (a "
          "plain line is the question); lm: the prompt to continue. Outputs go to --output in "
          "the same order, one a line. Without --input: records of --data (--first, --count).");
ABSL_FLAG(std::string, output, "",
          "--input: write the outputs to this file (atomically: complete or not at all) instead "
          "of standard output.");
ABSL_FLAG(int64_t, batch_size, 16,
          "Inputs decoded together, at most (neighbours in length order).");
ABSL_FLAG(double, temperature, 0,
          "Above 0: sample each output from softmax(logits / temperature) instead of beam search "
          "(--beam and --lenpen are then unused).");
ABSL_FLAG(int64_t, top_k, 0, "Sampling: draw from the k most likely tokens only (0: all).");
ABSL_FLAG(double, top_p, 1.0,
          "Sampling: then from the fewest most likely tokens whose probability reaches top_p.");
ABSL_FLAG(uint64_t, seed, 1,
          "Sampling: input i (0-based) draws from a generator seeded with seed + i, so an "
          "input's output does not depend on the other inputs.");
ABSL_FLAG(bool, progress, true, "--input: show progress and ETA on standard error.");
ABSL_FLAG(int64_t, first, 0, "Without --input: the first record.");
ABSL_FLAG(int64_t, count, 5, "Without --input: records to generate for.");
ABSL_FLAG(int64_t, prompt_tokens, 32,
          "Without --input, lm: tokens of the document used as the prompt.");

namespace memtrain {
namespace {

// All but the tokenizer's eos, which the caller sets once --data is open.
absl::StatusOr<trainer::GenerationOptions> GenerationOptionsFromFlags() {
  trainer::GenerationOptions options;
  MEMTRAIN_RETURN_IF_ERROR(launch::CheckSearchFlags());
  options.search = launch::SearchOptionsFromFlags(/*eos=*/-1);
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("batch_size", absl::GetFlag(FLAGS_batch_size), 1));
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("top_k", absl::GetFlag(FLAGS_top_k), 0));
  const double temperature = absl::GetFlag(FLAGS_temperature);
  const double top_p = absl::GetFlag(FLAGS_top_p);
  if (!(temperature >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--temperature must be >= 0, got ", temperature));
  }
  if (!(top_p > 0 && top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--top_p must be in (0, 1], got ", top_p));
  }
  options.sample = temperature > 0;
  if (options.sample) options.search.temperature = temperature;
  options.search.top_k = absl::GetFlag(FLAGS_top_k);
  options.search.top_p = top_p;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.batch_rows = absl::GetFlag(FLAGS_batch_size);
  return options;
}

// memtrain-prepare beside this binary encodes the text (data/text_inputs.h).
absl::StatusOr<std::string> PrepareBinary() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return absl::InternalError(absl::StrCat("/proc/self/exe: ", error.message()));
  return (self.parent_path() / "memtrain-prepare").string();
}

// The outputs for the lines of --input, in order, one a line.
absl::Status GenerateForText(launch::ModelAndData& opened,
                             const trainer::GenerationOptions& options, const c10::Device& device) {
  const std::string input_path = absl::GetFlag(FLAGS_input);
  const data::TokenizerInfo& tokenizer = opened.data->tokenizer();
  MEMTRAIN_ASSIGN_OR_RETURN(const data::TaskInfo* task, data::FindTask(opened.model.info.task));
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<std::string> lines, data::ReadInputLines(input_path));
  MEMTRAIN_ASSIGN_OR_RETURN(const auto segments, data::ParseInputLines(task->task, lines));
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string prepare, PrepareBinary());
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> ids,
                            data::EncodeInputs({prepare, opened.data_path}, task->task, segments,
                                               tokenizer.sep_id, tokenizer.eos_id));
  const int64_t max_source = absl::GetFlag(FLAGS_max_source_length);
  std::vector<trainer::GenerationInput> inputs(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (task->seq2seq && static_cast<int64_t>(ids[i].size()) > max_source) {
      return absl::InvalidArgumentError(
          absl::StrCat("input line ", i + 1, " is ", ids[i].size(),
                       " tokens long, over --max_source_length=", max_source));
    }
    if (task->seq2seq) {
      inputs[i] = trainer::Seq2SeqInput(*opened.model.model, std::move(ids[i]), tokenizer);
    } else {
      inputs[i].prompt = std::move(ids[i]);
    }
  }
  LOG(INFO) << "[generate] " << inputs.size() << " inputs from " << input_path << " (" << task->name
            << ")";
  trainer::GenerationOptions run = options;
  if (task->seq2seq) run.search.segment_length = 0;  // see trainer::Seq2SeqInput
  MEMTRAIN_ASSIGN_OR_RETURN(
      std::vector<trainer::Hypothesis> found,
      trainer::Generate(*opened.model.model, inputs, tokenizer.pad_id, run, device));
  const data::PieceDecoder decoder(tokenizer);
  std::string text;
  for (const trainer::Hypothesis& h : found) {
    // One output a line: a newline the model wrote becomes a space.
    absl::StrAppend(&text,
                    absl::StrReplaceAll(decoder.Decode({h.tokens.begin(), h.tokens.end()}),
                                        {{"\r\n", " "}, {"\n", " "}, {"\r", " "}}),
                    "\n");
  }
  const std::string output = absl::GetFlag(FLAGS_output);
  if (output.empty()) {
    std::cout << text << std::flush;
    return std::cout ? absl::OkStatus() : absl::DataLossError("writing standard output failed");
  }
  const std::string staging = StagingPath(output);
  absl::Status written = WriteFileDurably(staging, text);
  if (written.ok()) written = Publish(staging, output);
  if (!written.ok()) std::filesystem::remove(staging);
  return written;
}

absl::Status Run() {
  // Every flag is checked before anything is loaded.
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::GenerationOptions options, GenerationOptionsFromFlags());
  const bool text = !absl::GetFlag(FLAGS_input).empty();
  if (!text) {
    MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("first", absl::GetFlag(FLAGS_first), 0));
    MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("count", absl::GetFlag(FLAGS_count), 1));
    MEMTRAIN_RETURN_IF_ERROR(
        RequireFlagAtLeast("prompt_tokens", absl::GetFlag(FLAGS_prompt_tokens), 1));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(launch::DeviceChoice device,
                            launch::ChooseDeviceForThisMachine(absl::GetFlag(FLAGS_device), 0, 1));
  launch::ApplyDeviceChoice(device);
  MEMTRAIN_ASSIGN_OR_RETURN(
      launch::ModelAndData opened,
      launch::OpenModelAndDataFromFlags(
          device.device, text ? launch::DataNeed::kTokenizerOnly : launch::DataNeed::kRecords));
  options.search.eos = opened.data->tokenizer().eos_id;
  if (text) {
    options.show_progress = absl::GetFlag(FLAGS_progress);
    return GenerateForText(opened, options, device.device);
  }
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
      "Generates with a saved model (beam search, or sampling with --temperature) for text, one "
      "input a line, or for records of a corpus.\n"
      "  memtrain-generate --model=runs/wmt/model --data=wmt16.train.h5 --input=src.en > hyp.de\n"
      "  memtrain-generate --model=runs/wmt/model --data=wmt16.test.h5 --count=5 --beam=4");
  return memtrain::RunBinary("[generate]", [] { return memtrain::Run(); });
}
