#include "trainer/generation.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
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

absl::StatusOr<std::vector<GeneratedExample>> GenerateRecords(model::TransformerImpl& model,
                                                              data::CorpusFile& file, int64_t first,
                                                              int64_t count,
                                                              const GenerationOptions& options,
                                                              const c10::Device& device) {
  const data::TokenizerInfo& tokenizer = file.tokenizer();
  const data::PieceDecoder decoder(tokenizer);
  const int64_t end = std::min(file.num_records(), first + std::max<int64_t>(count, 0));
  std::vector<GeneratedExample> examples;
  const int64_t rows = file.is_seq2seq() ? std::max<int64_t>(options.batch_rows, 1) : 1;
  for (int64_t start = first; start < end; start += rows) {
    std::vector<std::vector<int32_t>> sources, prompts;
    std::vector<GeneratedExample> batch;
    for (int64_t record = start; record < std::min(end, start + rows); ++record) {
      MEMTRAIN_ASSIGN_OR_RETURN(std::vector<int32_t> source,
                                file.ReadRecord(data::Field::kSource, record));
      GeneratedExample example;
      example.record = record;
      if (file.is_seq2seq()) {
        MEMTRAIN_ASSIGN_OR_RETURN(std::vector<int32_t> target,
                                  file.ReadRecord(data::Field::kTarget, record));
        example.source = decoder.Decode(source);
        example.reference = decoder.Decode(target);
        sources.push_back(std::move(source));
        prompts.push_back({tokenizer.bos_id});
      } else {
        const size_t prompt = std::min<size_t>(
            source.size(), static_cast<size_t>(std::max<int64_t>(options.prompt_tokens, 1)));
        const size_t reference_end =
            std::min(source.size(), prompt + static_cast<size_t>(options.search.max_length));
        prompts.emplace_back(source.begin(), source.begin() + prompt);
        example.source = decoder.Decode(prompts.back());
        example.reference =
            decoder.Decode({source.begin() + prompt, source.begin() + reference_end});
      }
      batch.push_back(std::move(example));
    }
    const at::Tensor source =
        file.is_seq2seq() ? PadRows(sources, tokenizer.pad_id).to(device) : at::Tensor();
    const std::vector<Hypothesis> found =
        BeamSearch(model, source, PadRows(prompts, tokenizer.pad_id).to(device), options.search);
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i].hypothesis = decoder.Decode(ToIds(found[i].tokens));
      examples.push_back(std::move(batch[i]));
    }
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
