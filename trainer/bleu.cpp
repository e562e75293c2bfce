#include "trainer/bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "trainer/internal/text.h"

namespace memtrain::trainer {
namespace {

using NgramCounts = absl::flat_hash_map<std::string, int64_t>;

// Python's str.isspace(), which str.split() and str.rstrip() use (the same
// set from Python 3.7 through 3.13).
bool IsPythonWhitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// str.rstrip().
absl::string_view StripTrailingWhitespace(absl::string_view text) {
  size_t end = 0;
  for (size_t i = 0; i < text.size();) {
    const internal::CodePoint c = internal::DecodeUtf8(text, i);
    i += c.length;
    if (!IsPythonWhitespace(c.value)) end = i;
  }
  return text.substr(0, end);
}

// str.split().
std::vector<std::string> SplitOnWhitespace(absl::string_view text) {
  std::vector<std::string> tokens;
  size_t token_start = 0;
  bool in_token = false;
  for (size_t i = 0; i < text.size();) {
    const internal::CodePoint c = internal::DecodeUtf8(text, i);
    if (IsPythonWhitespace(c.value)) {
      if (in_token) tokens.emplace_back(text.substr(token_start, i - token_start));
      in_token = false;
    } else if (!in_token) {
      token_start = i;
      in_token = true;
    }
    i += c.length;
  }
  if (in_token) tokens.emplace_back(text.substr(token_start));
  return tokens;
}

// The regular expressions of sacreBLEU's TokenizerRegexp, done by hand. They
// work byte by byte on UTF-8 with the same result as Python's on code points:
// their character classes name ASCII characters only, so a multi-byte
// character matches exactly where its last byte (for [^0-9] before [.,]) or
// its first byte (for [^0-9] after [.,]) does, and no match starts or ends
// inside it otherwise.
bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool IsNotDigit(unsigned char c) { return !IsDigit(c); }
bool IsPeriodOrComma(unsigned char c) { return c == '.' || c == ','; }
bool IsDash(unsigned char c) { return c == '-'; }

// [\{-\~\[-\` -\&\(-\+\:-\@\/]: ASCII punctuation and symbols except
// ' , - . (and the space, which the class holds too).
bool IsSeparatedSymbol(unsigned char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

// re.sub(r'([...])', r' \1 ', text).
std::string PadSymbols(absl::string_view text) {
  std::string out;
  out.reserve(text.size() * 2);
  for (const char c : text) {
    if (IsSeparatedSymbol(static_cast<unsigned char>(c))) {
      absl::StrAppend(&out, " ", absl::string_view(&c, 1), " ");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// re.sub(r'(A)(B)', before + r'\1 \2' + after, text): the same left-to-right,
// non-overlapping scan as Python's, for one-character classes A and B.
std::string SeparatePairs(absl::string_view text, bool (*first)(unsigned char),
                          bool (*second)(unsigned char), absl::string_view before,
                          absl::string_view after) {
  std::string out;
  out.reserve(text.size() * 2);
  size_t i = 0;
  while (i < text.size()) {
    if (i + 1 < text.size() && first(static_cast<unsigned char>(text[i])) &&
        second(static_cast<unsigned char>(text[i + 1]))) {
      absl::StrAppend(&out, before, text.substr(i, 1), " ", text.substr(i + 1, 1), after);
      i += 2;
    } else {
      out.push_back(text[i]);
      ++i;
    }
  }
  return out;
}

// The n-gram counts of one segment, per order.
struct SegmentNgrams {
  std::array<NgramCounts, kBleuMaxOrder> counts;
  int64_t length = 0;
};

SegmentNgrams CountSegmentNgrams(absl::string_view segment) {
  const std::vector<std::string> tokens = Tokenize13a(segment);
  SegmentNgrams ngrams;
  ngrams.length = static_cast<int64_t>(tokens.size());
  for (int order = 1; order <= kBleuMaxOrder; ++order) {
    ngrams.counts[order - 1] = internal::CountNgrams(tokens, order);
  }
  return ngrams;
}

// sacreBLEU's _get_closest_ref_len: the closest length, the shorter on a tie.
int64_t ClosestReferenceLength(int64_t hypothesis_length, absl::Span<const int64_t> lengths) {
  int64_t closest = lengths[0];
  for (const int64_t length : lengths) {
    const int64_t difference = std::abs(hypothesis_length - length);
    const int64_t closest_difference = std::abs(hypothesis_length - closest);
    if (difference < closest_difference || (difference == closest_difference && length < closest)) {
      closest = length;
    }
  }
  return closest;
}

// sacreBLEU's my_log: log, with log(0) floored to a large negative number so
// that a zero precision gives a zero score instead of a math error.
double FlooredLog(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

// sacreBLEU's BLEU.compute_bleu for smooth_method "exp" and no effective
// order, with its operations in its order so results agree to the last bit.
void ComputeScore(BleuScore& bleu) {
  bleu.brevity_penalty = 1.0;
  if (bleu.sys_len < bleu.ref_len) {
    bleu.brevity_penalty =
        bleu.sys_len > 0
            ? std::exp(1.0 - static_cast<double>(bleu.ref_len) / static_cast<double>(bleu.sys_len))
            : 0.0;
  }
  bleu.ratio = bleu.ref_len != 0
                   ? static_cast<double>(bleu.sys_len) / static_cast<double>(bleu.ref_len)
                   : 0.0;
  bleu.precisions.fill(0.0);
  bleu.score = 0.0;
  if (std::all_of(bleu.matches.begin(), bleu.matches.end(), [](int64_t m) { return m == 0; })) {
    return;
  }
  double smoothing = 1.0;
  for (int n = 0; n < kBleuMaxOrder; ++n) {
    if (bleu.totals[n] == 0) break;
    if (bleu.matches[n] == 0) {
      smoothing *= 2;
      bleu.precisions[n] = 100.0 / (smoothing * static_cast<double>(bleu.totals[n]));
    } else {
      bleu.precisions[n] =
          100.0 * static_cast<double>(bleu.matches[n]) / static_cast<double>(bleu.totals[n]);
    }
  }
  double log_sum = 0.0;
  for (const double precision : bleu.precisions) log_sum += FlooredLog(precision);
  bleu.score = bleu.brevity_penalty * std::exp(log_sum / kBleuMaxOrder);
}

}  // namespace

std::vector<std::string> Tokenize13a(absl::string_view segment) {
  std::string line(StripTrailingWhitespace(segment));
  // Sequential replacements, in sacreBLEU's order ("&amp;lt;" becomes "<").
  for (const auto& [from, to] :
       std::initializer_list<std::pair<absl::string_view, absl::string_view>>{{"<skipped>", ""},
                                                                              {"-\n", ""},
                                                                              {"\n", " "},
                                                                              {"&quot;", "\""},
                                                                              {"&amp;", "&"},
                                                                              {"&lt;", "<"},
                                                                              {"&gt;", ">"}}) {
    absl::StrReplaceAll({{from, to}}, &line);
  }
  line = PadSymbols(absl::StrCat(" ", line, " "));
  // Periods and commas split off unless between digits; dashes after digits.
  line = SeparatePairs(line, IsNotDigit, IsPeriodOrComma, "", " ");
  line = SeparatePairs(line, IsPeriodOrComma, IsNotDigit, " ", "");
  line = SeparatePairs(line, IsDigit, IsDash, "", " ");
  return SplitOnWhitespace(line);
}

absl::StatusOr<BleuScore> CorpusBleu(
    absl::Span<const std::string> hypotheses,
    absl::Span<const absl::Span<const std::string>> reference_streams) {
  if (hypotheses.empty()) {
    return absl::InvalidArgumentError("BLEU: no hypotheses to score");
  }
  if (reference_streams.empty()) {
    return absl::InvalidArgumentError("BLEU: no reference stream (pass {references})");
  }
  for (size_t stream = 0; stream < reference_streams.size(); ++stream) {
    if (reference_streams[stream].size() != hypotheses.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("BLEU: reference stream ", stream, " has ", reference_streams[stream].size(),
                       " segments but there are ", hypotheses.size(),
                       " hypotheses; each stream needs one reference per hypothesis"));
    }
  }

  BleuScore bleu;
  std::vector<int64_t> reference_lengths(reference_streams.size());
  for (size_t segment = 0; segment < hypotheses.size(); ++segment) {
    // Each reference n-gram may be matched as often as the reference that
    // holds it most often holds it.
    std::array<NgramCounts, kBleuMaxOrder> reference_counts;
    for (size_t stream = 0; stream < reference_streams.size(); ++stream) {
      SegmentNgrams reference = CountSegmentNgrams(reference_streams[stream][segment]);
      reference_lengths[stream] = reference.length;
      for (int n = 0; n < kBleuMaxOrder; ++n) {
        for (auto& [ngram, count] : reference.counts[n]) {
          int64_t& most = reference_counts[n][ngram];
          most = std::max(most, count);
        }
      }
    }
    const SegmentNgrams hypothesis = CountSegmentNgrams(hypotheses[segment]);
    bleu.sys_len += hypothesis.length;
    bleu.ref_len += ClosestReferenceLength(hypothesis.length, reference_lengths);
    for (int n = 0; n < kBleuMaxOrder; ++n) {
      for (const auto& [ngram, count] : hypothesis.counts[n]) {
        bleu.totals[n] += count;
        if (auto match = reference_counts[n].find(ngram); match != reference_counts[n].end()) {
          bleu.matches[n] += std::min(count, match->second);
        }
      }
    }
  }
  ComputeScore(bleu);
  bleu.signature =
      absl::StrCat("nrefs:", reference_streams.size(),
                   "|case:mixed|eff:no|tok:13a|smooth:exp|version:", kSacreBleuVersion);
  return bleu;
}

}  // namespace memtrain::trainer
