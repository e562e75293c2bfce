// File: trainer/rouge.h
//
// ROUGE-1, ROUGE-2 and ROUGE-L exactly as Google's rouge-score 0.1.2 computes
// them with `rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"],
// use_stemmer=...)`, and their corpus means (what summarization papers
// report as ROUGE-1/2/L F1). ROUGE-L here is rouge-score's "rougeL": the
// longest common subsequence of the whole texts, not the summary-level
// "rougeLsum". docs/EVALUATION.md says how this was checked against the Python
// package. No LibTorch here.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(
//       CorpusRougeScores rouge, CorpusRouge(hypotheses, references, RougeStemming::kPorter));
//   LOG(INFO) << "[eval] ROUGE-1/2/L F1 " << rouge.mean.rouge1.fmeasure << " "
//             << rouge.mean.rouge2.fmeasure << " " << rouge.mean.rouge_l.fmeasure;
//
// Tokens (rouge-score's tokenize.tokenize): the text is lowercased (Python's
// str.lower(), so U+212A KELVIN SIGN becomes "k" and U+0130 becomes "i" plus
// a combining dot), every run of characters other than [a-z0-9] separates
// tokens, so all non-ASCII letters do; with stemming, tokens longer than three
// characters are replaced by their Porter stem (trainer/porter_stemmer.h).
//
// Precision is measured against the hypothesis, recall against the
// reference; F = 2PR / (P + R), 0 when both are 0. ROUGE-N divides by at
// least 1 n-gram; ROUGE-L is all zero when either text has no token.
// Argument order is (hypotheses, references), as for CorpusBleu; note that
// rouge-score's own `score(target, prediction)` takes the reference first.
#ifndef MEMTRAIN_TRAINER_ROUGE_H_
#define MEMTRAIN_TRAINER_ROUGE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace memtrain::trainer {

/// The rouge-score release this file reproduces.
inline constexpr char kRougeScoreVersion[] = "0.1.2";

/// rouge-score's use_stemmer: false (kNone) or true (kPorter).
enum class RougeStemming { kNone, kPorter };

/// rouge-score's Score tuple.
struct RougeScore {
  double precision = 0;
  double recall = 0;
  double fmeasure = 0;
};

/// The three ROUGE variants of one pair, or their means over a corpus.
struct RougeScores {
  RougeScore rouge1;   ///< unigram overlap ("rouge1")
  RougeScore rouge2;   ///< bigram overlap ("rouge2")
  RougeScore rouge_l;  ///< longest common subsequence ("rougeL")
};

struct CorpusRougeScores {
  std::vector<RougeScores> pairs;  ///< pairs[i]: hypothesis i against reference i
  RougeScores mean;                ///< each precision, recall and F averaged over pairs
};

/// rouge-score's tokens for `text` (UTF-8).
std::vector<std::string> RougeTokenize(absl::string_view text, RougeStemming stemming);

/// rouge-score's `RougeScorer(...).score(reference, hypothesis)`.
RougeScores ScoreRouge(absl::string_view hypothesis, absl::string_view reference,
                       RougeStemming stemming);

/// ScoreRouge for each pair, and the means. kInvalidArgument, naming the
/// sizes, when the lists are empty or differ in length.
absl::StatusOr<CorpusRougeScores> CorpusRouge(absl::Span<const std::string> hypotheses,
                                              absl::Span<const std::string> references,
                                              RougeStemming stemming);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_ROUGE_H_
