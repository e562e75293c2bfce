// memtrain's BLEU, ROUGE and Porter stemmer against the Python packages they
// reproduce (sacrebleu, rouge-score, nltk), on real text from ../shared/data:
// WMT16 newstest2016 German references with perturbed references or the
// English source as hypotheses, and XSUM summaries against perturbed
// summaries or the first line of their article. metrics_reference.py computes the packages' values
// with the project's Python (MEMTRAIN_PYTHON); every number must agree within 1e-9 and every count
// and token exactly. Skips, saying why, without the data or the packages (scripts/setup installs
// them).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "trainer/bleu.h"
#include "trainer/porter_stemmer.h"
#include "trainer/rouge.h"

namespace memtrain::trainer {
namespace {

using ::testing::ElementsAreArray;
using Json = nlohmann::json;
using Strings = std::vector<std::string>;

const std::string kSharedData = MEMTRAIN_SHARED_DATA;
constexpr size_t kPairsPerCorpus = 500;
constexpr double kTolerance = 1e-9;

struct BleuCase {
  Strings hypotheses;
  std::vector<Strings> reference_streams;
};

struct RougeCase {
  Strings hypotheses, references;
};

// The inputs and what the Python packages made of them; `skip_reason` is
// set instead when they cannot be had.
struct Reference {
  std::string skip_reason;
  std::map<std::string, BleuCase> bleu;
  std::map<std::string, RougeCase> rouge;
  Strings stem_words;
  Json python;  // metrics_reference.py's output
};

// The first `count` lines of a text file.
Strings ReadLines(const std::string& path, size_t count) {
  Strings lines;
  std::ifstream in(path);
  for (std::string line; lines.size() < count && std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A hypothesis that shares some but not all n-grams with `sentence`: drop
// every k-th word (k from 3 to 7 with the line) and, on odd lines, swap the
// first two words.
std::string Perturb(const std::string& sentence, size_t line) {
  std::vector<std::string> words = absl::StrSplit(sentence, ' ', absl::SkipEmpty());
  if (line % 2 == 1 && words.size() > 2) std::swap(words[0], words[1]);
  const size_t k = 3 + line % 5;
  std::vector<std::string> kept;
  for (size_t i = 0; i < words.size(); ++i) {
    if ((i + 1) % k != 0) kept.push_back(words[i]);
  }
  return absl::StrJoin(kept, " ");
}

// Runs `command`; returns its exit code and, in `output`, stdout and stderr.
int Run(const std::string& command, std::string& output) {
  FILE* pipe = popen(absl::StrCat(command, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Reference BuildReference() {
  Reference reference;
  const std::string wmt = kSharedData + "/wmt16_en_de/test/newstest2016";
  const std::string xsum = kSharedData + "/xsum/test/test_subset_b.jsonl";
  for (const std::string& path : {wmt + ".en", wmt + ".de", xsum}) {
    if (!std::filesystem::exists(path)) {
      reference.skip_reason =
          absl::StrCat("real corpus sample ", path, " is absent (see docs/DATA.md §3)");
      return reference;
    }
  }
  const std::string python = MEMTRAIN_PYTHON;
  std::string import_output;
  if (Run(absl::StrCat("'", python, "' -c 'import sacrebleu, rouge_score, nltk'"), import_output) !=
      0) {
    reference.skip_reason = absl::StrCat(python, " cannot import sacrebleu, rouge_score and nltk ",
                                         "(scripts/setup installs them): ", import_output);
    return reference;
  }

  // WMT16 en-de: German references; hypotheses are a perturbed reference on
  // two lines of three and the English source on the third (few matches).
  const Strings english = ReadLines(wmt + ".en", kPairsPerCorpus);
  const Strings german = ReadLines(wmt + ".de", kPairsPerCorpus);
  RougeCase wmt_pairs;
  for (size_t i = 0; i < german.size(); ++i) {
    wmt_pairs.hypotheses.push_back(i % 3 == 0 ? english[i] : Perturb(german[i], i));
    wmt_pairs.references.push_back(german[i]);
  }
  // XSUM: the summary against a perturbed summary on even lines and against
  // the article's first line (which shares few n-grams) on odd ones.
  RougeCase xsum_pairs;
  Strings documents;
  for (const std::string& line : ReadLines(xsum, kPairsPerCorpus)) {
    const Json example = Json::parse(line);
    const std::string document = example.at("document");
    const std::string summary = example.at("summary");
    const size_t i = documents.size();
    documents.push_back(document);
    xsum_pairs.hypotheses.push_back(i % 2 == 0 ? Perturb(summary, i)
                                               : document.substr(0, document.find('\n')));
    xsum_pairs.references.push_back(summary);
  }
  reference.bleu["wmt"] = {wmt_pairs.hypotheses, {wmt_pairs.references}};
  reference.bleu["wmt_two_references"] = {wmt_pairs.hypotheses, {wmt_pairs.references, english}};
  reference.bleu["xsum"] = {xsum_pairs.hypotheses, {xsum_pairs.references}};
  reference.rouge["wmt"] = wmt_pairs;
  reference.rouge["xsum"] = xsum_pairs;

  // Every word of the XSUM articles and the English news, for the stemmer.
  std::set<std::string> words;
  for (const Strings* texts : std::initializer_list<const Strings*>{&documents, &english}) {
    for (const std::string& text : *texts) {
      for (std::string& token : RougeTokenize(text, RougeStemming::kNone)) {
        words.insert(std::move(token));
      }
    }
  }
  reference.stem_words.assign(words.begin(), words.end());

  Json request;
  for (const auto& [name, bleu] : reference.bleu) {
    request["bleu"][name] = {{"hypotheses", bleu.hypotheses},
                             {"reference_streams", bleu.reference_streams}};
  }
  for (const auto& [name, rouge] : reference.rouge) {
    request["rouge"][name] = {{"hypotheses", rouge.hypotheses}, {"references", rouge.references}};
  }
  request["stem_words"] = reference.stem_words;
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                                    absl::StrCat("metrics_reference_test_", getpid());
  std::filesystem::create_directories(dir);
  const std::string request_path = (dir / "request.json").string();
  const std::string response_path = (dir / "response.json").string();
  std::ofstream(request_path) << request.dump();
  std::string output;
  const int exit_code = Run(absl::StrCat("'", python, "' '", MEMTRAIN_METRICS_REFERENCE_SCRIPT,
                                         "' '", request_path, "' '", response_path, "'"),
                            output);
  EXPECT_EQ(exit_code, 0) << "metrics_reference.py failed: " << output;
  std::ifstream response(response_path);
  reference.python = Json::parse(response, nullptr, /*allow_exceptions=*/false);
  std::filesystem::remove_all(dir);
  return reference;
}

const Reference& SharedReference() {
  static const Reference* const reference = new Reference(BuildReference());
  return *reference;
}

#define MEMTRAIN_GET_REFERENCE_OR_SKIP(reference)                            \
  const Reference& reference = SharedReference();                            \
  if (!reference.skip_reason.empty()) GTEST_SKIP() << reference.skip_reason; \
  ASSERT_FALSE(reference.python.is_discarded()) << "metrics_reference.py wrote no JSON"

std::vector<absl::Span<const std::string>> Streams(const BleuCase& bleu) {
  return {bleu.reference_streams.begin(), bleu.reference_streams.end()};
}

TEST(MetricsReferenceTest, PackagesAreTheVersionsMemtrainMatches) {
  MEMTRAIN_GET_REFERENCE_OR_SKIP(reference);
  const Json& versions = reference.python.at("versions");
  EXPECT_EQ(versions.at("sacrebleu"), kSacreBleuVersion) << "scripts/setup pins the versions";
  EXPECT_EQ(versions.at("rouge-score"), kRougeScoreVersion);
  EXPECT_EQ(versions.at("nltk"), kNltkVersion);
  EXPECT_EQ(reference.python.at("porter_mode"), "NLTK_EXTENSIONS");
}

TEST(MetricsReferenceTest, Tokenize13aMatchesSacrebleuOnEverySegment) {
  MEMTRAIN_GET_REFERENCE_OR_SKIP(reference);
  for (const auto& [name, bleu] : reference.bleu) {
    Strings texts = bleu.hypotheses;
    for (const Strings& stream : bleu.reference_streams) {
      texts.insert(texts.end(), stream.begin(), stream.end());
    }
    const Json& expected = reference.python.at("bleu").at(name).at("tokens");
    ASSERT_EQ(expected.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      ASSERT_THAT(Tokenize13a(texts[i]), ElementsAreArray(expected[i].get<Strings>()))
          << name << " text " << i << ": " << texts[i];
    }
  }
}

TEST(MetricsReferenceTest, CorpusBleuMatchesSacrebleu) {
  MEMTRAIN_GET_REFERENCE_OR_SKIP(reference);
  for (const auto& [name, bleu_case] : reference.bleu) {
    SCOPED_TRACE(name);
    const Json& expected = reference.python.at("bleu").at(name).at("corpus");
    absl::StatusOr<BleuScore> bleu = CorpusBleu(bleu_case.hypotheses, Streams(bleu_case));
    ASSERT_TRUE(bleu.ok()) << bleu.status();
    // A non-trivial score, or the comparison would prove little.
    EXPECT_GT(bleu->score, 5.0);
    EXPECT_LT(bleu->score, 95.0);
    EXPECT_NEAR(bleu->score, expected.at("score").get<double>(), kTolerance);
    EXPECT_EQ(bleu->sys_len, expected.at("sys_len").get<int64_t>());
    EXPECT_EQ(bleu->ref_len, expected.at("ref_len").get<int64_t>());
    EXPECT_THAT(bleu->matches, ElementsAreArray(expected.at("counts").get<std::vector<int64_t>>()));
    EXPECT_THAT(bleu->totals, ElementsAreArray(expected.at("totals").get<std::vector<int64_t>>()));
    const auto precisions = expected.at("precisions").get<std::vector<double>>();
    for (int n = 0; n < kBleuMaxOrder; ++n) {
      EXPECT_NEAR(bleu->precisions[n], precisions[n], kTolerance) << "order " << n + 1;
    }
    EXPECT_NEAR(bleu->brevity_penalty, expected.at("bp").get<double>(), kTolerance);
    EXPECT_NEAR(bleu->ratio, expected.at("ratio").get<double>(), kTolerance);
    EXPECT_EQ(bleu->signature, expected.at("signature").get<std::string>());
    std::cout << "[metrics] " << name << ": BLEU " << bleu->score << " (sacrebleu "
              << expected.at("score").get<double>() << "), difference "
              << std::abs(bleu->score - expected.at("score").get<double>()) << "\n";
  }
}

TEST(MetricsReferenceTest, SegmentBleuMatchesSacrebleu) {
  MEMTRAIN_GET_REFERENCE_OR_SKIP(reference);
  for (const auto& [name, bleu_case] : reference.bleu) {
    const auto expected =
        reference.python.at("bleu").at(name).at("segment_scores").get<std::vector<double>>();
    ASSERT_EQ(expected.size(), bleu_case.hypotheses.size());
    int nonzero = 0;
    double largest_difference = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      std::vector<absl::Span<const std::string>> streams;
      for (const Strings& stream : bleu_case.reference_streams) {
        streams.push_back(absl::MakeConstSpan(&stream[i], 1));
      }
      absl::StatusOr<BleuScore> bleu =
          CorpusBleu(absl::MakeConstSpan(&bleu_case.hypotheses[i], 1), streams);
      ASSERT_TRUE(bleu.ok()) << bleu.status();
      EXPECT_NEAR(bleu->score, expected[i], kTolerance) << name << " segment " << i;
      largest_difference = std::max(largest_difference, std::abs(bleu->score - expected[i]));
      nonzero += bleu->score > 0;
    }
    EXPECT_GT(nonzero, static_cast<int>(expected.size() / 4)) << name;
    std::cout << "[metrics] " << name << ": " << expected.size() << " segments, " << nonzero
              << " with BLEU > 0, largest |difference| " << largest_difference << "\n";
  }
}

void ExpectRougeMatches(const Reference& reference, RougeStemming stemming,
                        const std::string& mode) {
  for (const auto& [name, rouge_case] : reference.rouge) {
    SCOPED_TRACE(absl::StrCat(name, ", stemming ", mode));
    const Json& expected = reference.python.at("rouge").at(name).at(mode);
    absl::StatusOr<CorpusRougeScores> rouge =
        CorpusRouge(rouge_case.hypotheses, rouge_case.references, stemming);
    ASSERT_TRUE(rouge.ok()) << rouge.status();
    ASSERT_EQ(expected.size(), rouge->pairs.size());
    double sums[3][3] = {};
    double largest_difference = 0;
    for (size_t i = 0; i < rouge->pairs.size(); ++i) {
      const RougeScores& pair = rouge->pairs[i];
      const RougeScore* kinds[3] = {&pair.rouge1, &pair.rouge2, &pair.rouge_l};
      for (int kind = 0; kind < 3; ++kind) {
        const auto prf = expected[i][kind].get<std::vector<double>>();
        const double ours[3] = {kinds[kind]->precision, kinds[kind]->recall, kinds[kind]->fmeasure};
        for (int k = 0; k < 3; ++k) {
          EXPECT_NEAR(ours[k], prf[k], kTolerance)
              << "pair " << i << " rouge type " << kind << " field " << k << ": "
              << rouge_case.hypotheses[i] << " | " << rouge_case.references[i];
          sums[kind][k] += prf[k];
          largest_difference = std::max(largest_difference, std::abs(ours[k] - prf[k]));
        }
      }
    }
    const double count = static_cast<double>(rouge->pairs.size());
    const RougeScore* means[3] = {&rouge->mean.rouge1, &rouge->mean.rouge2, &rouge->mean.rouge_l};
    for (int kind = 0; kind < 3; ++kind) {
      EXPECT_NEAR(means[kind]->precision, sums[kind][0] / count, kTolerance);
      EXPECT_NEAR(means[kind]->recall, sums[kind][1] / count, kTolerance);
      EXPECT_NEAR(means[kind]->fmeasure, sums[kind][2] / count, kTolerance);
      // Non-trivial scores, or the comparison would prove little.
      EXPECT_GT(means[kind]->fmeasure, 0.05);
      EXPECT_LT(means[kind]->fmeasure, 0.95);
    }
    std::cout << "[metrics] " << name << ", stemming " << mode << ": " << count
              << " pairs, mean ROUGE-1/2/L F " << rouge->mean.rouge1.fmeasure << " "
              << rouge->mean.rouge2.fmeasure << " " << rouge->mean.rouge_l.fmeasure
              << ", largest |difference| " << largest_difference << "\n";
  }
}

TEST(MetricsReferenceTest, RougeMatchesRougeScoreWithoutStemming) {
  MEMTRAIN_GET_REFERENCE_OR_SKIP(reference);
  ExpectRougeMatches(reference, RougeStemming::kNone, "none");
}

TEST(MetricsReferenceTest, RougeMatchesRougeScoreWithPorterStemming) {
  MEMTRAIN_GET_REFERENCE_OR_SKIP(reference);
  ExpectRougeMatches(reference, RougeStemming::kPorter, "porter");
}

TEST(MetricsReferenceTest, PorterStemMatchesNltkOnRealVocabulary) {
  MEMTRAIN_GET_REFERENCE_OR_SKIP(reference);
  const auto expected = reference.python.at("stems").get<Strings>();
  ASSERT_EQ(expected.size(), reference.stem_words.size());
  EXPECT_GT(expected.size(), 10000u);
  int mismatches = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const std::string stem = PorterStem(reference.stem_words[i]);
    if (stem != expected[i] && ++mismatches <= 20) {
      ADD_FAILURE() << reference.stem_words[i] << ": nltk " << expected[i] << ", memtrain " << stem;
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << expected.size() << " words";
  std::cout << "[metrics] Porter stems of " << expected.size() << " distinct words, " << mismatches
            << " differ from nltk's\n";
}

}  // namespace
}  // namespace memtrain::trainer
