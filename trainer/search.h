// File: trainer/search.h
//
// Greedy and beam search through the model's incremental decoding (each
// attention kind's DecodeState; TransformerDecodeStates::Reorder after every
// step). Greedy is beam 1. Scores are sums of log-probabilities; finished
// hypotheses are ranked by score / length^length_penalty (fairseq's
// --lenpen), length counting the eos. And sampling (language models):
// each token drawn from softmax(logits / temperature), cut to the top_k most
// likely and then to the nucleus of probability top_p (Holtzman et al.).
//
//   SearchOptions options;  options.beam = 4;  options.eos = tokenizer.eos_id;
//   std::vector<Hypothesis> best = BeamSearch(*model, source, bos_column, options);
//   options.temperature = 0.8;  options.top_p = 0.9;
//   std::vector<Hypothesis> drawn = Sample(*model, {}, prompts, options, {seed_of_row0, ...});
#ifndef MEMTRAIN_TRAINER_SEARCH_H_
#define MEMTRAIN_TRAINER_SEARCH_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace memtrain::trainer {

struct SearchOptions {
  int64_t beam = 4;
  double length_penalty = 1.0;
  int64_t max_length = 200;  ///< new tokens per hypothesis, eos included
  int64_t eos = 3;
  /// Decoder-only models: a segment ends every this many tokens, prompt
  /// included, as in training over document streams (memories written, XL
  /// caches kept; TransformerImpl::DecodeStep). 0: one segment.
  int64_t segment_length = 0;
  // Sample only (BeamSearch ignores them).
  double temperature = 1.0;  ///< > 0; below 1 sharpens the distribution
  int64_t top_k = 0;         ///< keep the k most likely tokens; 0: all
  double top_p = 1.0;        ///< then the fewest whose probability reaches top_p; 1: all
};

struct Hypothesis {
  std::vector<int64_t> tokens;  ///< generated tokens, without the prompt and the eos
  double score = 0;             ///< Σ log p, eos included when it ended with one
  bool finished = false;        ///< ended with eos (else max_length stopped it)
};

/// The best hypothesis for each row. `prompt` [B, P] (P >= 1, no padding)
/// starts the decoder: bos for seq2seq, a document's first tokens for an LM.
/// `source` [B, S] is the encoder input (undefined for decoder-only models).
/// Runs in eval mode without gradients.
std::vector<Hypothesis> BeamSearch(model::TransformerImpl& model, const at::Tensor& source,
                                   const at::Tensor& prompt, const SearchOptions& options);

/// One sampled continuation per row (same `source`/`prompt` contract as
/// BeamSearch). Row r draws from its own CPU generator seeded with
/// `row_seeds[r]`, so what a row gets depends on its seed alone, not on the
/// rows batched with it. The score is the model's Σ log p of the drawn tokens.
std::vector<Hypothesis> Sample(model::TransformerImpl& model, const at::Tensor& source,
                               const at::Tensor& prompt, const SearchOptions& options,
                               const std::vector<uint64_t>& row_seeds);

/// The distribution Sample draws from, for logits [B, V] (float64, summing
/// to 1 per row).
at::Tensor SamplingDistribution(const at::Tensor& logits, const SearchOptions& options);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_SEARCH_H_
