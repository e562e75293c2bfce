#include "data/demo_corpus.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace memtrain::data {
namespace {

using ::testing::HasSubstr;

ReaderOptions DemoOptions(uint64_t seed, int64_t documents, int64_t distance_words) {
  ReaderOptions options;
  options.corpus = Corpus::kDemo;
  options.seed = seed;
  options.demo_documents = documents;
  options.demo_distance_words = distance_words;
  return options;
}

std::vector<Record> ReadAll(const ReaderOptions& options) {
  absl::StatusOr<std::unique_ptr<CorpusReader>> reader = OpenCorpusReader(options);
  EXPECT_TRUE(reader.ok()) << reader.status();
  std::vector<Record> records;
  if (!reader.ok()) return records;
  while (true) {
    absl::StatusOr<std::optional<Record>> record = (*reader)->Next();
    EXPECT_TRUE(record.ok()) << record.status();
    if (!record.ok() || !record->has_value()) break;
    records.push_back(std::move(**record));
  }
  return records;
}

std::string Text(const Record& record) {
  std::string text;
  for (const TextSegment& segment : record.source) text += segment.text;
  return text;
}

// Segment texts and flags in one comparable string.
std::string Dump(const std::vector<Record>& records) {
  std::string dump;
  for (const Record& record : records) {
    for (const TextSegment& segment : record.source) {
      dump += segment.long_range ? "[L]" : "[ ]";
      dump += segment.text;
    }
    dump += "\n<end>\n";
  }
  return dump;
}

std::vector<std::string> Words(absl::string_view text) {
  return absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty());
}

TEST(DemoCorpusTest, SameSeedGivesIdenticalDocumentsDifferentSeedDiffers) {
  const std::string first = Dump(ReadAll(DemoOptions(7, 5, 300)));
  EXPECT_EQ(first, Dump(ReadAll(DemoOptions(7, 5, 300))));
  EXPECT_NE(first, Dump(ReadAll(DemoOptions(8, 5, 300))));
}

TEST(DemoCorpusTest, DocumentsWithinACorpusDiffer) {
  std::vector<Record> records = ReadAll(DemoOptions(1, 3, 200));
  ASSERT_EQ(records.size(), 3);
  EXPECT_NE(Text(records[0]), Text(records[1]));
  EXPECT_NE(Text(records[1]), Text(records[2]));
}

TEST(DemoCorpusTest, EveryAnswerIsStatedOnlyInItsFactSentence) {
  ReaderOptions options = DemoOptions(3, 30, 400);
  options.demo_facts_per_document = 5;
  for (const Record& record : ReadAll(options)) {
    const std::string text = Text(record);
    const std::vector<std::string> lines = absl::StrSplit(text, '\n');
    ASSERT_GE(lines.size(), 3) << record.where;
    const std::vector<std::string> words = Words(text);
    int long_range = 0;
    for (size_t i = 0; i < record.source.size(); ++i) {
      const TextSegment& segment = record.source[i];
      EXPECT_FALSE(segment.separator_before);
      // Segments meet before a space, so the tokenizer can encode them apart.
      if (i > 0) {
        EXPECT_EQ(segment.text.front(), ' ') << record.where << " segment " << i;
      }
      if (!segment.long_range) continue;
      ++long_range;
      const std::string answer = segment.text.substr(1);
      ASSERT_EQ(Words(answer).size(), 1) << answer;
      // Stated on the first line, in a fact sentence ending with the answer...
      EXPECT_THAT(lines.front(), HasSubstr(" " + answer + " .")) << record.where;
      // ...and nowhere else but in the answer segment itself.
      EXPECT_EQ(std::count(words.begin(), words.end(), answer), 2) << record.where << answer;
      // The question's cue ends right before the answer.
      EXPECT_THAT(Words(record.source[i - 1].text).back(),
                  ::testing::AnyOf("is", "was", "called", "named"))
          << record.where;
    }
    EXPECT_EQ(long_range, 5) << record.where;
  }
}

// Words strictly between the answer's fact sentence and its long-range segment.
std::vector<int64_t> FactToQuestionDistances(const Record& record) {
  std::vector<int64_t> distances;
  std::string before;
  for (const TextSegment& segment : record.source) {
    if (segment.long_range) {
      const std::vector<std::string> words = Words(before);
      const std::string answer = segment.text.substr(1);
      const auto fact = std::find(words.begin(), words.end(), answer);
      distances.push_back(static_cast<int64_t>(words.end() - fact) - 1);
    }
    before += segment.text;
  }
  return distances;
}

TEST(DemoCorpusTest, DistanceKnobSetsTheFillerLength) {
  for (const int64_t distance : {0, 150, 1000, 2500}) {
    ReaderOptions options = DemoOptions(11, 10, distance);
    options.demo_facts_per_document = 3;
    for (const Record& record : ReadAll(options)) {
      const std::vector<std::string> lines = absl::StrSplit(Text(record), '\n');
      // Line 1 holds the facts, the last line the questions, the rest is filler.
      const std::vector<std::string> filler_lines(lines.begin() + 1, lines.end() - 1);
      const int64_t filler = Words(absl::StrJoin(filler_lines, " ")).size();
      EXPECT_GE(filler, distance) << record.where;
      EXPECT_LT(filler, distance + kDemoMaxSentenceWords) << record.where;
      if (distance == 0) {
        EXPECT_EQ(lines.size(), 2);
      }
      for (const int64_t words : FactToQuestionDistances(record)) {
        EXPECT_GE(words, distance) << record.where;
        EXPECT_LE(words, distance + kDemoMaxSentenceWords * (2 * 3 + 2)) << record.where;
      }
    }
  }
}

TEST(DemoCorpusTest, DefaultsPutFactsAboutAThousandWordsBeforeQuestions) {
  const std::vector<Record> records =
      ReadAll(DemoOptions(1, 4, ReaderOptions().demo_distance_words));
  ASSERT_EQ(records.size(), 4);
  for (const Record& record : records) {
    const std::vector<int64_t> distances = FactToQuestionDistances(record);
    ASSERT_EQ(distances.size(), ReaderOptions().demo_facts_per_document);
    for (const int64_t words : distances) {
      EXPECT_GE(words, 1000);
      EXPECT_LE(words, 1250);
    }
  }
}

TEST(DemoCorpusTest, CountsDocumentsAndBytes) {
  absl::StatusOr<std::unique_ptr<CorpusReader>> reader = OpenCorpusReader(DemoOptions(5, 3, 100));
  ASSERT_TRUE(reader.ok()) << reader.status();
  int64_t bytes = 0;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::optional<Record>> record = (*reader)->Next();
    ASSERT_TRUE(record.ok() && record->has_value());
    EXPECT_EQ((*record)->where, "demo document " + std::to_string(i) + " (seed 5)");
    bytes += Text(**record).size();
  }
  absl::StatusOr<std::optional<Record>> end = (*reader)->Next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
  EXPECT_EQ((*reader)->stats().records, 3);
  EXPECT_EQ((*reader)->stats().bytes_read, bytes);
}

TEST(DemoCorpusTest, KnobsOutOfRangeAreNamed) {
  ReaderOptions with_inputs = DemoOptions(1, 1, 10);
  with_inputs.inputs = {"corpus.txt"};
  EXPECT_THAT(OpenCorpusReader(with_inputs).status().message(), HasSubstr("reads no files"));

  ReaderOptions no_facts = DemoOptions(1, 1, 10);
  no_facts.demo_facts_per_document = 0;
  EXPECT_THAT(OpenCorpusReader(no_facts).status().message(),
              HasSubstr("demo_facts_per_document=0"));
  EXPECT_THAT(OpenCorpusReader(DemoOptions(1, 0, 10)).status().message(),
              HasSubstr("demo_documents=0"));
  absl::Status negative = OpenCorpusReader(DemoOptions(1, 1, -1)).status();
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.message(), HasSubstr("demo_distance_words=-1"));
}

// The recall ending repeats the facts line word for word after the filler;
// its names, and nothing else, are long-range, and each name occurs exactly
// three times: in the facts line, its rehearsal right after it, and the
// recall (which only the first two lines can predict).
TEST(DemoCorpusTest, RecallRepeatsTheFactsLineWithItsNamesLongRange) {
  ReaderOptions options = DemoOptions(5, 20, 120);
  options.demo_facts_per_document = 6;
  options.demo_recall = true;
  for (const Record& record : ReadAll(options)) {
    const std::string text = Text(record);
    const std::vector<std::string> lines = absl::StrSplit(text, '\n');
    ASSERT_GE(lines.size(), 3) << record.where;
    ASSERT_THAT(lines.back(), ::testing::StartsWith("Recall : "));
    EXPECT_EQ(lines.back().substr(std::string("Recall : ").size()), lines.front()) << record.where;
    EXPECT_EQ(lines[1], "Again : " + lines.front()) << "the rehearsal";
    std::vector<std::string> names;
    for (const TextSegment& segment : record.source) {
      if (!segment.long_range) continue;
      ASSERT_EQ(segment.text[0], ' ');
      names.push_back(segment.text.substr(1));
    }
    ASSERT_EQ(names.size(), 12u) << record.where;
    const std::vector<std::string> words = Words(text);
    for (const std::string& name : names) {
      EXPECT_EQ(std::count(words.begin(), words.end(), name), 3) << name << " in " << record.where;
    }
    EXPECT_GE(Words(absl::StrJoin(lines.begin() + 2, lines.end() - 1, " ")).size(), 120u);
  }
}

}  // namespace
}  // namespace memtrain::data
