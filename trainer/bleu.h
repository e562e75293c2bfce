// File: trainer/bleu.h
//
// Corpus BLEU exactly as sacreBLEU 2.6.0 computes it by default,
// `sacrebleu.corpus_bleu(hypotheses, [references])`: tokenizer 13a (with the
// `<skipped>` removal and the &quot; &amp; &lt; &gt; unescaping sacreBLEU
// does first), case kept, n-grams of orders 1 to 4 clipped by the reference
// counts, brevity penalty from the closest reference length, smoothing "exp"
// (mteval-v13a's: the k-th order without a match counts 1/2^k matches), no
// effective order. docs/EVALUATION.md says how this was checked against the
// Python package. No LibTorch here: memtrain-eval scores the decoded text.
//
//   std::vector<std::string> hypotheses = ..., references = ...;  // line i = segment i
//   MEMTRAIN_ASSIGN_OR_RETURN(BleuScore bleu, CorpusBleu(hypotheses, {references}));
//   LOG(INFO) << "[eval] BLEU " << bleu.score << " " << bleu.signature;
//   // BLEU 27.3 nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0
//
// Several references per hypothesis come as several streams, sacreBLEU's
// layout: `CorpusBleu(hypotheses, {references_a, references_b})`; n-gram
// counts are clipped by the largest count in any reference, and the
// reference length is the closest one (the shorter on a tie).
#ifndef MEMTRAIN_TRAINER_BLEU_H_
#define MEMTRAIN_TRAINER_BLEU_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace memtrain::trainer {

/// The sacreBLEU release whose default BLEU this file reproduces.
inline constexpr char kSacreBleuVersion[] = "2.6.0";
/// Highest n-gram order (sacreBLEU's MAX_NGRAM_ORDER).
inline constexpr int kBleuMaxOrder = 4;

/// sacreBLEU's BLEUScore, with its field meanings.
struct BleuScore {
  double score = 0;  ///< 0..100
  /// Percent, per order 1..4; a smoothed value for an order without matches.
  /// All zero when no n-gram of any order matched (then score is 0).
  std::array<double, kBleuMaxOrder> precisions{};
  std::array<int64_t, kBleuMaxOrder> matches{};  ///< clipped matches per order ("counts")
  std::array<int64_t, kBleuMaxOrder> totals{};   ///< hypothesis n-grams per order
  double brevity_penalty = 0;  ///< exp(1 - ref_len / sys_len) when sys_len < ref_len, else 1
  double ratio = 0;            ///< sys_len / ref_len; 0 when ref_len is 0
  int64_t sys_len = 0;         ///< hypothesis tokens
  int64_t ref_len = 0;         ///< closest reference tokens, summed over segments
  /// sacreBLEU's signature, e.g.
  /// "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0".
  std::string signature;
};

/// The tokens BLEU counts for one segment: sacreBLEU's
/// `Tokenizer13a()(segment.rstrip()).split()`. Whitespace is Python's
/// (str.isspace(): ASCII whitespace, U+001C..U+001F, U+0085, U+00A0 and the
/// Unicode space separators); the input is UTF-8.
std::vector<std::string> Tokenize13a(absl::string_view segment);

/// BLEU of `hypotheses` against `reference_streams` (one or more streams, each
/// with one reference per hypothesis). kInvalidArgument, naming the sizes,
/// when there is no hypothesis or no stream, or a stream's length differs
/// from the number of hypotheses (sacreBLEU would silently truncate).
absl::StatusOr<BleuScore> CorpusBleu(
    absl::Span<const std::string> hypotheses,
    absl::Span<const absl::Span<const std::string>> reference_streams);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_BLEU_H_
