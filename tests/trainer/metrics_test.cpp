// Known-value tests for BLEU, ROUGE and the Porter stemmer: small examples
// checked by hand (the formula is written out next to each expectation), plus
// stems and tokens that nltk 3.10.4, sacrebleu 2.6.0 and rouge-score 0.1.2
// printed once. metrics_reference_test.cpp compares with the packages live.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "trainer/bleu.h"
#include "trainer/porter_stemmer.h"
#include "trainer/rouge.h"

namespace memtrain::trainer {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

using Strings = std::vector<std::string>;

TEST(BleuTest, IdenticalTextScores100) {
  const Strings text = {"The cat sat on the mat.", "Der Hund bellt, laut!"};
  absl::StatusOr<BleuScore> bleu = CorpusBleu(text, {text});
  ASSERT_TRUE(bleu.ok()) << bleu.status();
  EXPECT_DOUBLE_EQ(bleu->score, 100.0);
  EXPECT_THAT(bleu->precisions, ElementsAre(100.0, 100.0, 100.0, 100.0));
  EXPECT_EQ(bleu->brevity_penalty, 1.0);
  EXPECT_EQ(bleu->ratio, 1.0);
  // "The cat sat on the mat ." and "Der Hund bellt , laut !".
  EXPECT_EQ(bleu->sys_len, 13);
  EXPECT_EQ(bleu->ref_len, 13);
  EXPECT_EQ(bleu->signature, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
}

TEST(BleuTest, ShortHypothesisPaysTheBrevityPenalty) {
  // Every n-gram of the 6-token hypothesis is in the 7-token reference, so
  // BLEU = 100 * exp(1 - 7/6).
  const Strings hypotheses = {"the cat sat on the mat"};
  const Strings references = {"the cat sat on the mat today"};
  absl::StatusOr<BleuScore> bleu = CorpusBleu(hypotheses, {references});
  ASSERT_TRUE(bleu.ok()) << bleu.status();
  EXPECT_NEAR(bleu->brevity_penalty, std::exp(1.0 - 7.0 / 6.0), 1e-15);
  EXPECT_NEAR(bleu->score, 100.0 * std::exp(1.0 - 7.0 / 6.0), 1e-12);
  EXPECT_THAT(bleu->precisions, ElementsAre(100.0, 100.0, 100.0, 100.0));
  EXPECT_NEAR(bleu->ratio, 6.0 / 7.0, 1e-15);
}

TEST(BleuTest, OrderWithoutMatchesIsSmoothedExponentially) {
  // hypothesis a b c x b c d, reference a b c d:
  //   unigrams 4/7 (a b c d; the second b and c are clipped), bigrams 3/6
  //   (ab bc cd), trigrams 2/5 (abc bcd), 4-grams 0/4 -> 100 / (2 * 4) = 12.5.
  // Longer hypothesis than reference: no brevity penalty.
  const Strings hypotheses = {"a b c x b c d"};
  const Strings references = {"a b c d"};
  absl::StatusOr<BleuScore> bleu = CorpusBleu(hypotheses, {references});
  ASSERT_TRUE(bleu.ok()) << bleu.status();
  EXPECT_THAT(bleu->matches, ElementsAre(4, 3, 2, 0));
  EXPECT_THAT(bleu->totals, ElementsAre(7, 6, 5, 4));
  EXPECT_DOUBLE_EQ(bleu->precisions[0], 400.0 / 7.0);
  EXPECT_DOUBLE_EQ(bleu->precisions[3], 12.5);
  EXPECT_EQ(bleu->brevity_penalty, 1.0);
  EXPECT_NEAR(bleu->ratio, 7.0 / 4.0, 1e-15);
  const double expected =
      std::exp((std::log(400.0 / 7.0) + std::log(50.0) + std::log(40.0) + std::log(12.5)) / 4.0);
  EXPECT_NEAR(bleu->score, expected, 1e-12);
  EXPECT_DOUBLE_EQ(bleu->score, 34.57207846419411);  // sacrebleu's value
}

TEST(BleuTest, NoFourGramsOrNoMatchesScoreZero) {
  // Three tokens have no 4-gram: its precision stays 0 and floors the score.
  const Strings short_text = {"a b c"};
  absl::StatusOr<BleuScore> bleu = CorpusBleu(short_text, {short_text});
  ASSERT_TRUE(bleu.ok()) << bleu.status();
  EXPECT_EQ(bleu->score, 0.0);
  EXPECT_THAT(bleu->precisions, ElementsAre(100.0, 100.0, 100.0, 0.0));

  const Strings hypotheses = {"x y z w"};
  const Strings references = {"a b c d"};
  bleu = CorpusBleu(hypotheses, {references});
  ASSERT_TRUE(bleu.ok()) << bleu.status();
  EXPECT_EQ(bleu->score, 0.0);
  EXPECT_THAT(bleu->precisions, ElementsAre(0.0, 0.0, 0.0, 0.0));
}

TEST(BleuTest, SeveralReferencesClipByTheBestAndUseTheClosestLength) {
  // Segment 1 (3 tokens): references of 4 and 2 tokens are equally close, the
  // shorter counts. Segment 2 (5 tokens): the 5-token reference counts.
  // Every hypothesis n-gram is in one reference except "a dog ran far away",
  // which no reference has: 4-grams 1/2, so BLEU = 100 * 0.5^(1/4).
  const Strings hypotheses = {"the cat sat", "a dog ran far away"};
  const Strings first = {"the cat sat down", "a dog ran"};
  const Strings second = {"the cat", "one dog ran far away"};
  absl::StatusOr<BleuScore> bleu = CorpusBleu(hypotheses, {first, second});
  ASSERT_TRUE(bleu.ok()) << bleu.status();
  EXPECT_EQ(bleu->sys_len, 8);
  EXPECT_EQ(bleu->ref_len, 7);
  EXPECT_THAT(bleu->matches, ElementsAre(8, 6, 4, 1));
  EXPECT_THAT(bleu->totals, ElementsAre(8, 6, 4, 2));
  EXPECT_NEAR(bleu->score, 100.0 * std::pow(0.5, 0.25), 1e-12);
  EXPECT_THAT(bleu->signature, HasSubstr("nrefs:2|"));
}

TEST(BleuTest, MismatchedOrEmptyInputsAreInvalidArguments) {
  const Strings two = {"a", "b"};
  const Strings one = {"a"};
  absl::StatusOr<BleuScore> bleu = CorpusBleu(two, {one});
  EXPECT_EQ(bleu.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bleu.status().message(), HasSubstr("reference stream 0 has 1 segments"));
  EXPECT_EQ(CorpusBleu({}, {Strings{}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CorpusBleu(two, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BleuTest, Tokenizer13aMatchesSacrebleu) {
  // Expected tokens printed by sacrebleu 2.6.0's Tokenizer13a.
  const std::vector<std::pair<std::string, Strings>> cases = {
      {"Hello, world!", {"Hello", ",", "world", "!"}},
      {"It costs $3.14, or 1,000 yen.",
       {"It", "costs", "$", "3.14", ",", "or", "1,000", "yen", "."}},
      {"&quot;Quoted&quot; &amp;lt; &lt;b&gt;", {"\"", "Quoted", "\"", "<", "<", "b", ">"}},
      {"a<skipped>b", {"ab"}},
      {"1990-2000 well-known", {"1990", "-", "2000", "well-known"}},
      {"U.S. policy.", {"U", ".", "S", ".", "policy", "."}},
      {"Stra\u00dfe\u00a0liegt\u2026", {"Stra\u00dfe", "liegt\u2026"}},
      {"end-\n", {"end-"}},  // rstrip first, so "-\n" is not removed
      {"x.y ,z", {"x", ".", "y", ",", "z"}},
      {"(a) [b] {c}", {"(", "a", ")", "[", "b", "]", "{", "c", "}"}},
      {"don't", {"don't"}},
  };
  for (const auto& [segment, tokens] : cases) {
    EXPECT_THAT(Tokenize13a(segment), ElementsAreArray(tokens)) << segment;
  }
}

TEST(RougeTest, IdenticalTextScoresOne) {
  const RougeScores scores =
      ScoreRouge("The cat sat on the mat.", "the cat sat on the mat", RougeStemming::kNone);
  for (const RougeScore& score : {scores.rouge1, scores.rouge2, scores.rouge_l}) {
    EXPECT_EQ(score.precision, 1.0);
    EXPECT_EQ(score.recall, 1.0);
    EXPECT_EQ(score.fmeasure, 1.0);
  }
}

TEST(RougeTest, LongestCommonSubsequenceOfAKnownPair) {
  // Lin (2004)'s kind of example: the reference "the cat was under the bed"
  // is a subsequence of the 7-token hypothesis, so LCS = 6:
  // P = 6/7, R = 6/6, F = 2 * 6/7 / (1 + 6/7) = 12/13.
  const RougeScores scores = ScoreRouge("the cat was found under the bed",
                                        "the cat was under the bed", RougeStemming::kNone);
  EXPECT_DOUBLE_EQ(scores.rouge_l.precision, 6.0 / 7.0);
  EXPECT_DOUBLE_EQ(scores.rouge_l.recall, 1.0);
  EXPECT_NEAR(scores.rouge_l.fmeasure, 12.0 / 13.0, 1e-15);
  // Bigrams: 4 of the hypothesis's 6 are among the reference's 5.
  EXPECT_DOUBLE_EQ(scores.rouge2.precision, 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(scores.rouge2.recall, 4.0 / 5.0);
}

TEST(RougeTest, ReadmeExampleOfRougeScore) {
  // rouge-score's README: target "The quick brown fox jumps over the lazy
  // dog", prediction "The quick brown dog jumps on the log.". Unigram overlap
  // 6 (the x2, quick, brown, dog, jumps) of 8 and 9 tokens; LCS 5 ("the quick
  // brown jumps the").
  const RougeScores scores =
      ScoreRouge("The quick brown dog jumps on the log.",
                 "The quick brown fox jumps over the lazy dog", RougeStemming::kNone);
  EXPECT_DOUBLE_EQ(scores.rouge1.precision, 6.0 / 8.0);
  EXPECT_DOUBLE_EQ(scores.rouge1.recall, 6.0 / 9.0);
  EXPECT_DOUBLE_EQ(scores.rouge1.fmeasure, 0.7058823529411765);
  EXPECT_DOUBLE_EQ(scores.rouge_l.precision, 5.0 / 8.0);
  EXPECT_DOUBLE_EQ(scores.rouge_l.recall, 5.0 / 9.0);
  EXPECT_DOUBLE_EQ(scores.rouge2.fmeasure, 0.26666666666666666);
}

TEST(RougeTest, StemmingMatchesInflectedForms) {
  // cats -> cat and running, runs -> run: 3 of 4 unigrams match with the
  // stemmer, only "the" without it.
  const std::string hypothesis = "the cats are running";
  const std::string reference = "the cat is runs";
  EXPECT_DOUBLE_EQ(ScoreRouge(hypothesis, reference, RougeStemming::kNone).rouge1.fmeasure, 0.25);
  EXPECT_DOUBLE_EQ(ScoreRouge(hypothesis, reference, RougeStemming::kPorter).rouge1.fmeasure, 0.75);
}

TEST(RougeTest, EmptyTextScoresZero) {
  const RougeScores scores = ScoreRouge("", "some reference", RougeStemming::kNone);
  EXPECT_EQ(scores.rouge1.fmeasure, 0.0);
  EXPECT_EQ(scores.rouge_l.precision, 0.0);
  EXPECT_EQ(scores.rouge_l.recall, 0.0);
}

TEST(RougeTest, TokenizerMatchesRougeScore) {
  // Printed by rouge-score 0.1.2's DefaultTokenizer: U+2014, the dots and the
  // apostrophe separate; U+0130 lowercases to "i" + a combining dot, U+212A
  // (Kelvin) to "k"; non-ASCII letters separate.
  EXPECT_THAT(RougeTokenize("Don't stop\u2014U.S. \u0130stanbul 5\u212aB \u00dcn\u00efcode x2",
                            RougeStemming::kNone),
              ElementsAre("don", "t", "stop", "u", "s", "i", "stanbul", "5kb", "n", "code", "x2"));
  EXPECT_THAT(RougeTokenize("Running runners ran quickly; the cats' generalizations",
                            RougeStemming::kPorter),
              ElementsAre("run", "runner", "ran", "quickli", "the", "cat", "gener"));
}

TEST(RougeTest, CorpusMeanAveragesPairs) {
  const Strings hypotheses = {"a b c d", "x y"};
  const Strings references = {"a b c d", "x z"};
  absl::StatusOr<CorpusRougeScores> rouge =
      CorpusRouge(hypotheses, references, RougeStemming::kNone);
  ASSERT_TRUE(rouge.ok()) << rouge.status();
  ASSERT_EQ(rouge->pairs.size(), 2u);
  EXPECT_EQ(rouge->pairs[1].rouge1.fmeasure, 0.5);
  EXPECT_EQ(rouge->pairs[1].rouge2.fmeasure, 0.0);
  EXPECT_EQ(rouge->mean.rouge1.fmeasure, (1.0 + 0.5) / 2);
  EXPECT_EQ(rouge->mean.rouge2.recall, (1.0 + 0.0) / 2);
  EXPECT_EQ(rouge->mean.rouge_l.precision, (1.0 + 0.5) / 2);

  const Strings one = {"a"};
  absl::StatusOr<CorpusRougeScores> mismatched = CorpusRouge(hypotheses, one, RougeStemming::kNone);
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatched.status().message(), HasSubstr("2 hypotheses and 1 references"));
  EXPECT_EQ(CorpusRouge({}, {}, RougeStemming::kNone).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PorterStemmerTest, StemsMatchNltk) {
  // Printed by nltk 3.10.4's PorterStemmer() (NLTK_EXTENSIONS). The paper's
  // examples per step, then NLTK's irregular forms and extensions.
  // clang-format off
  const std::vector<std::pair<std::string, std::string>> stems = {
      {"caresses", "caress"}, {"ponies", "poni"}, {"ties", "tie"}, {"caress", "caress"},
      {"cats", "cat"}, {"dies", "die"}, {"flies", "fli"}, {"feed", "feed"}, {"agreed", "agre"},
      {"plastered", "plaster"}, {"bled", "bled"}, {"motoring", "motor"}, {"sing", "sing"},
      {"conflated", "conflat"}, {"troubled", "troubl"}, {"sized", "size"}, {"hopping", "hop"},
      {"tanned", "tan"}, {"falling", "fall"}, {"hissing", "hiss"}, {"fizzed", "fizz"},
      {"failing", "fail"}, {"filing", "file"}, {"happy", "happi"}, {"sky", "sky"},
      {"enjoy", "enjoy"}, {"spy", "spi"}, {"relational", "relat"}, {"conditional", "condit"},
      {"rational", "ration"}, {"valenci", "valenc"}, {"hesitanci", "hesit"},
      {"digitizer", "digit"}, {"conformabli", "conform"}, {"radicalli", "radic"},
      {"differentli", "differ"}, {"vileli", "vile"}, {"analogousli", "analog"},
      {"vietnamization", "vietnam"}, {"predication", "predic"}, {"operator", "oper"},
      {"feudalism", "feudal"}, {"decisiveness", "decis"}, {"hopefulness", "hope"},
      {"callousness", "callous"}, {"formaliti", "formal"}, {"sensitiviti", "sensit"},
      {"sensibiliti", "sensibl"}, {"triplicate", "triplic"}, {"formative", "form"},
      {"formalize", "formal"}, {"electriciti", "electr"}, {"electrical", "electr"},
      {"hopeful", "hope"}, {"goodness", "good"}, {"revival", "reviv"}, {"allowance", "allow"},
      {"inference", "infer"}, {"airliner", "airlin"}, {"gyroscopic", "gyroscop"},
      {"adjustable", "adjust"}, {"defensible", "defens"}, {"irritant", "irrit"},
      {"replacement", "replac"}, {"adjustment", "adjust"}, {"dependent", "depend"},
      {"adoption", "adopt"}, {"homologou", "homolog"}, {"communism", "commun"},
      {"activate", "activ"}, {"angulariti", "angular"}, {"homologous", "homolog"},
      {"effective", "effect"}, {"bowdlerize", "bowdler"}, {"probate", "probat"},
      {"rate", "rate"}, {"cease", "ceas"}, {"controll", "control"}, {"roll", "roll"},
      {"generalizations", "gener"}, {"skies", "sky"}, {"dying", "die"}, {"lying", "lie"},
      {"tying", "tie"}, {"news", "news"}, {"innings", "inning"}, {"outings", "outing"},
      {"cannings", "canning"}, {"howe", "howe"}, {"proceed", "proceed"}, {"exceed", "exceed"},
      {"succeed", "succeed"}, {"died", "die"}, {"spied", "spi"}, {"geology", "geolog"},
      {"archaeology", "archaeolog"}, {"beautifully", "beauti"}, {"yyyyyy", "yyyyyi"},
      {"syzygy", "syzygi"}, {"1990s", "1990"}, {"covid19", "covid19"}, {"oed", "o"},
      {"at", "at"}, {"by", "by"}, {"Running", "run"},
  };
  // clang-format on
  for (const auto& [word, stem] : stems) EXPECT_EQ(PorterStem(word), stem) << word;
}

}  // namespace
}  // namespace memtrain::trainer
