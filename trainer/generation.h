// File: trainer/generation.h
//
// Generation for token-id inputs (Generate: batched by length, order kept;
// memtrain-generate's text inputs are encoded by data/text_inputs.h), and
// over the records of a corpus file, decoded back to text with the pieces
// stored in the file (GenerateRecords):
//   seq2seq: the source through the encoder, bos as the prompt; or for a
//            decoder-only model (a prefix LM, data/batch_source.h) the
//            prompt PrefixLmPrompt(source) in one segment. The reference is
//            the record's target.
//   lm:      the first `prompt_tokens` of the document as the prompt; the
//            reference is the document's next `max_length` tokens.
// And the task's score of the result: BLEU (sacreBLEU's default) for
// translation, ROUGE-1/2/L (rouge-score, Porter stemming) for summarization
// and qa; lm has none.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(auto examples, GenerateRecords(*model, *file, 0, 100, options,
//   device)); MEMTRAIN_ASSIGN_OR_RETURN(GenerationScore score, ScoreGeneration("translation",
//   examples));
#ifndef MEMTRAIN_TRAINER_GENERATION_H_
#define MEMTRAIN_TRAINER_GENERATION_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/corpus_file.h"
#include "model/transformer.h"
#include "trainer/search.h"

namespace memtrain::trainer {

struct GeneratedExample {
  int64_t record = 0;
  std::string source;  ///< seq2seq: the input; lm: the prompt
  std::string reference;
  std::string hypothesis;
};

struct GenerationOptions {
  SearchOptions search;
  /// Draw each output (Sample) instead of searching for the best (BeamSearch).
  bool sample = false;
  /// Sampling: input i draws from a generator seeded with seed + i.
  uint64_t seed = 1;
  int64_t prompt_tokens = 32;   ///< records of an lm corpus
  int64_t batch_rows = 16;      ///< inputs decoded together, at most
  int64_t batch_tokens = 4096;  ///< seq2seq: rows x longest source of a batch, at most
  bool show_progress = false;   ///< progress (rate, ETA) on stderr
};

/// One input of Generate: a seq2seq source (ending with eos; the decoder
/// starts from bos), or an lm prompt (source empty).
struct GenerationInput {
  std::vector<int32_t> source;
  std::vector<int32_t> prompt;
};

/// A seq2seq source (ending with eos) as `model`'s input (see the top).
/// Decoding it as a prefix LM also needs search.segment_length = 0: training
/// saw each example whole.
GenerationInput Seq2SeqInput(const model::TransformerImpl& model, std::vector<int32_t> source,
                             const data::TokenizerInfo& tokenizer);

/// The output for each input, in the inputs' order. Inputs are decoded in
/// batches of neighbours in length order (little padding; an lm batch holds
/// prompts of one length, since the decoder takes no padding), so the result
/// for an input does not depend on the order the inputs came in.
/// kInvalidArgument for an input with an empty prompt; LibTorch errors as
/// kInternal.
absl::StatusOr<std::vector<Hypothesis>> Generate(model::TransformerImpl& model,
                                                 const std::vector<GenerationInput>& inputs,
                                                 int32_t pad_id, const GenerationOptions& options,
                                                 const c10::Device& device);

/// Records [first, first + count) of `file` (clamped to the file), through
/// Generate. The model must use the file's tokenizer (the caller checks the
/// sha256).
absl::StatusOr<std::vector<GeneratedExample>> GenerateRecords(model::TransformerImpl& model,
                                                              data::CorpusFile& file, int64_t first,
                                                              int64_t count,
                                                              const GenerationOptions& options,
                                                              const c10::Device& device);

struct GenerationScore {
  std::string metric;   ///< "BLEU", "ROUGE" or "" (lm)
  std::string summary;  ///< one line, e.g. "BLEU 27.31 (nrefs:1|case:mixed|...)"
  double value = 0;     ///< BLEU score, or ROUGE-L F1 x 100
};

absl::StatusOr<GenerationScore> ScoreGeneration(const std::string& task,
                                                const std::vector<GeneratedExample>& examples);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_GENERATION_H_
