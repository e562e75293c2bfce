#include "trainer/generation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "data/batch_source.h"
#include "trainer/bleu.h"
#include "trainer/rouge.h"

namespace memtrain::trainer {
namespace {

std::vector<int32_t> ToIds(const std::vector<int64_t>& tokens) {
  return {tokens.begin(), tokens.end()};
}

// Rows of different lengths, right-padded with `pad`.
at::Tensor PadRows(const std::vector<std::vector<int32_t>>& rows, int32_t pad) {
  size_t width = 1;
  for (const auto& row : rows) width = std::max(width, row.size());
  at::Tensor padded =
      at::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(width)}, pad, at::kLong);
  auto at = padded.accessor<int64_t, 2>();
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t i = 0; i < rows[r].size(); ++i) at[r][i] = rows[r][i];
  }
  return padded;
}

}  // namespace

GenerationInput Seq2SeqInput(const model::TransformerImpl& model, std::vector<int32_t> source,
                             const data::TokenizerInfo& tokenizer) {
  GenerationInput input;
  if (model.options().encoder_layers == 0) {
    input.prompt = data::PrefixLmPrompt(std::move(source), tokenizer.sep_id, tokenizer.eos_id);
  } else {
    input.source = std::move(source);
    input.prompt = {tokenizer.bos_id};
  }
  return input;
}

absl::StatusOr<std::vector<Hypothesis>> Generate(model::TransformerImpl& model,
                                                 const std::vector<GenerationInput>& inputs,
                                                 int32_t pad_id, const GenerationOptions& options,
                                                 const c10::Device& device) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].prompt.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("input ", i + 1, " has an empty prompt"));
    }
  }
  // Longest first (an out-of-memory shows at once), ties in input order.
  const auto length = [&](size_t i) {
    return inputs[i].source.empty() ? inputs[i].prompt.size() : inputs[i].source.size();
  };
  std::vector<size_t> order(inputs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return length(a) > length(b); });
  std::vector<Hypothesis> outputs(inputs.size());
  ProgressReporter progress("[generate]", static_cast<int64_t>(inputs.size()),
                            ProgressReporter::Unit::kItems);
  const int64_t max_rows = std::max<int64_t>(options.batch_rows, 1);
  try {
    for (size_t start = 0; start < order.size();) {
      // A batch: neighbours in length order within the row and token limits
      // (the first input of the batch is its longest).
      size_t end = start + 1;
      const bool seq2seq = !inputs[order[start]].source.empty();
      while (end < order.size() && static_cast<int64_t>(end - start) < max_rows &&
             (seq2seq ? static_cast<int64_t>((end - start + 1) * length(order[start])) <=
                            options.batch_tokens
                      : length(order[end]) == length(order[start]))) {
        ++end;
      }
      std::vector<std::vector<int32_t>> sources, prompts;
      std::vector<uint64_t> seeds;
      for (size_t b = start; b < end; ++b) {
        if (seq2seq) sources.push_back(inputs[order[b]].source);
        prompts.push_back(inputs[order[b]].prompt);
        seeds.push_back(options.seed + order[b]);
      }
      const at::Tensor source = seq2seq ? PadRows(sources, pad_id).to(device) : at::Tensor();
      const at::Tensor prompt = PadRows(prompts, pad_id).to(device);
      std::vector<Hypothesis> found = options.sample
                                          ? Sample(model, source, prompt, options.search, seeds)
                                          : BeamSearch(model, source, prompt, options.search);
      for (size_t b = start; b < end; ++b) outputs[order[b]] = std::move(found[b - start]);
      start = end;
      if (options.show_progress) progress.Update(static_cast<int64_t>(start));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("generation failed: ", e.what_without_backtrace()));
  }
  if (options.show_progress) progress.Finish();
  return outputs;
}

absl::StatusOr<std::vector<GeneratedExample>> GenerateRecords(model::TransformerImpl& model,
                                                              data::CorpusFile& file, int64_t first,
                                                              int64_t count,
                                                              const GenerationOptions& given,
                                                              const c10::Device& device) {
  GenerationOptions options = given;
  if (file.is_seq2seq()) options.search.segment_length = 0;  // see Seq2SeqInput
  const data::TokenizerInfo& tokenizer = file.tokenizer();
  const data::PieceDecoder decoder(tokenizer);
  const int64_t end = std::min(file.num_records(), first + std::max<int64_t>(count, 0));
  std::vector<GeneratedExample> examples;
  std::vector<GenerationInput> inputs;
  for (int64_t record = first; record < end; ++record) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::vector<int32_t> source,
                              file.ReadRecord(data::Field::kSource, record));
    GeneratedExample example;
    example.record = record;
    GenerationInput input;
    if (file.is_seq2seq()) {
      MEMTRAIN_ASSIGN_OR_RETURN(std::vector<int32_t> target,
                                file.ReadRecord(data::Field::kTarget, record));
      example.source = decoder.Decode(source);
      example.reference = decoder.Decode(target);
      input = Seq2SeqInput(model, std::move(source), tokenizer);
    } else {
      const size_t prompt = std::min<size_t>(
          source.size(), static_cast<size_t>(std::max<int64_t>(options.prompt_tokens, 1)));
      const size_t reference_end =
          std::min(source.size(), prompt + static_cast<size_t>(options.search.max_length));
      input.prompt.assign(source.begin(), source.begin() + prompt);
      example.source = decoder.Decode(input.prompt);
      example.reference = decoder.Decode({source.begin() + prompt, source.begin() + reference_end});
    }
    inputs.push_back(std::move(input));
    examples.push_back(std::move(example));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<Hypothesis> found,
                            Generate(model, inputs, tokenizer.pad_id, options, device));
  for (size_t i = 0; i < examples.size(); ++i) {
    examples[i].hypothesis = decoder.Decode(ToIds(found[i].tokens));
  }
  return examples;
}

absl::StatusOr<GenerationScore> ScoreGeneration(const std::string& task,
                                                const std::vector<GeneratedExample>& examples) {
  std::vector<std::string> hypotheses, references;
  for (const GeneratedExample& e : examples) {
    hypotheses.push_back(e.hypothesis);
    references.push_back(e.reference);
  }
  GenerationScore score;
  if (task == "translation") {
    const std::vector<absl::Span<const std::string>> streams = {references};
    MEMTRAIN_ASSIGN_OR_RETURN(BleuScore bleu, CorpusBleu(hypotheses, streams));
    score.metric = "BLEU";
    score.value = bleu.score;
    score.summary = absl::StrFormat("BLEU %.2f (%s) on %d examples", bleu.score, bleu.signature,
                                    examples.size());
  } else if (task == "summarization" || task == "qa") {
    MEMTRAIN_ASSIGN_OR_RETURN(CorpusRougeScores rouge,
                              CorpusRouge(hypotheses, references, RougeStemming::kPorter));
    score.metric = "ROUGE";
    score.value = 100 * rouge.mean.rouge_l.fmeasure;
    score.summary =
        absl::StrFormat("ROUGE-1/2/L F1 %.2f/%.2f/%.2f (rouge-score %s, stemmed) on %d examples",
                        100 * rouge.mean.rouge1.fmeasure, 100 * rouge.mean.rouge2.fmeasure,
                        100 * rouge.mean.rouge_l.fmeasure, kRougeScoreVersion, examples.size());
  }
  return score;
}

}  // namespace memtrain::trainer
