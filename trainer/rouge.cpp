#include "trainer/rouge.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "trainer/internal/text.h"
#include "trainer/porter_stemmer.h"

namespace memtrain::trainer {
namespace {

// Characters outside ASCII whose Python lowercase contains [a-z0-9]
// (computed over all of Unicode with Python 3.11): U+0130 LATIN CAPITAL
// LETTER I WITH DOT ABOVE -> "i" + U+0307, and U+212A KELVIN SIGN -> "k".
constexpr char32_t kCapitalIWithDot = 0x130;
constexpr char32_t kKelvinSign = 0x212A;

// scoring.fmeasure, same operation order.
double FMeasure(double precision, double recall) {
  return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

// rouge_scorer._score_ngrams over n-grams of `order` tokens.
RougeScore ScoreNgrams(absl::Span<const std::string> hypothesis,
                       absl::Span<const std::string> reference, int order) {
  const auto hypothesis_ngrams = internal::CountNgrams(hypothesis, order);
  const auto reference_ngrams = internal::CountNgrams(reference, order);
  int64_t overlap = 0, hypothesis_count = 0, reference_count = 0;
  for (const auto& [ngram, count] : reference_ngrams) {
    reference_count += count;
    if (auto found = hypothesis_ngrams.find(ngram); found != hypothesis_ngrams.end()) {
      overlap += std::min(count, found->second);
    }
  }
  for (const auto& [ngram, count] : hypothesis_ngrams) hypothesis_count += count;
  RougeScore score;
  score.precision =
      static_cast<double>(overlap) / static_cast<double>(std::max<int64_t>(hypothesis_count, 1));
  score.recall =
      static_cast<double>(overlap) / static_cast<double>(std::max<int64_t>(reference_count, 1));
  score.fmeasure = FMeasure(score.precision, score.recall);
  return score;
}

// Length of the longest common subsequence (rolling rows of _lcs_table).
int64_t LcsLength(absl::Span<const std::string> a, absl::Span<const std::string> b) {
  std::vector<int64_t> previous(b.size() + 1, 0), current(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      current[j] =
          a[i - 1] == b[j - 1] ? previous[j - 1] + 1 : std::max(previous[j], current[j - 1]);
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

// rouge_scorer._score_lcs.
RougeScore ScoreLcs(absl::Span<const std::string> hypothesis,
                    absl::Span<const std::string> reference) {
  RougeScore score;
  if (hypothesis.empty() || reference.empty()) return score;
  const auto lcs = static_cast<double>(LcsLength(reference, hypothesis));
  score.precision = lcs / static_cast<double>(hypothesis.size());
  score.recall = lcs / static_cast<double>(reference.size());
  score.fmeasure = FMeasure(score.precision, score.recall);
  return score;
}

void Accumulate(const RougeScore& score, RougeScore& sum) {
  sum.precision += score.precision;
  sum.recall += score.recall;
  sum.fmeasure += score.fmeasure;
}

void Divide(RougeScore& sum, double count) {
  sum.precision /= count;
  sum.recall /= count;
  sum.fmeasure /= count;
}

}  // namespace

std::vector<std::string> RougeTokenize(absl::string_view text, RougeStemming stemming) {
  std::vector<std::string> tokens;
  std::string token;
  const auto end_token = [&] {
    if (token.empty()) return;
    // Only words longer than three characters are stemmed (rouge-score's rule).
    if (stemming == RougeStemming::kPorter && token.size() > 3) token = PorterStem(token);
    if (!token.empty()) tokens.push_back(std::move(token));
    token.clear();
  };
  for (size_t i = 0; i < text.size();) {
    const internal::CodePoint c = internal::DecodeUtf8(text, i);
    i += c.length;
    if ((c.value >= 'a' && c.value <= 'z') || (c.value >= '0' && c.value <= '9')) {
      token.push_back(static_cast<char>(c.value));
    } else if (c.value >= 'A' && c.value <= 'Z') {
      token.push_back(static_cast<char>(c.value - 'A' + 'a'));
    } else if (c.value == kKelvinSign) {
      token.push_back('k');
    } else if (c.value == kCapitalIWithDot) {
      token.push_back('i');
      end_token();  // the combining dot that follows separates
    } else {
      end_token();
    }
  }
  end_token();
  return tokens;
}

RougeScores ScoreRouge(absl::string_view hypothesis, absl::string_view reference,
                       RougeStemming stemming) {
  const std::vector<std::string> hypothesis_tokens = RougeTokenize(hypothesis, stemming);
  const std::vector<std::string> reference_tokens = RougeTokenize(reference, stemming);
  RougeScores scores;
  scores.rouge1 = ScoreNgrams(hypothesis_tokens, reference_tokens, 1);
  scores.rouge2 = ScoreNgrams(hypothesis_tokens, reference_tokens, 2);
  scores.rouge_l = ScoreLcs(hypothesis_tokens, reference_tokens);
  return scores;
}

absl::StatusOr<CorpusRougeScores> CorpusRouge(absl::Span<const std::string> hypotheses,
                                              absl::Span<const std::string> references,
                                              RougeStemming stemming) {
  if (hypotheses.empty() || hypotheses.size() != references.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ROUGE: got ", hypotheses.size(), " hypotheses and ", references.size(),
                     " references; need one reference per hypothesis and at least one pair"));
  }
  CorpusRougeScores corpus;
  corpus.pairs.reserve(hypotheses.size());
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const RougeScores& scores =
        corpus.pairs.emplace_back(ScoreRouge(hypotheses[i], references[i], stemming));
    Accumulate(scores.rouge1, corpus.mean.rouge1);
    Accumulate(scores.rouge2, corpus.mean.rouge2);
    Accumulate(scores.rouge_l, corpus.mean.rouge_l);
  }
  const auto count = static_cast<double>(hypotheses.size());
  Divide(corpus.mean.rouge1, count);
  Divide(corpus.mean.rouge2, count);
  Divide(corpus.mean.rouge_l, count);
  return corpus;
}

}  // namespace memtrain::trainer
