#include "data/corpus_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/child_process.h"
#include "common/status_macros.h"

namespace memtrain::data {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Real samples (docs/DATA.md §3); tests that need one skip without it.
const std::string kSharedData = MEMTRAIN_SHARED_DATA;

class CorpusReaderTest : public ::testing::Test {
 protected:
  // Writes `contents` to a fresh file in this test's directory.
  std::string WriteFile(const std::string& name, const std::string& contents) {
    const std::filesystem::path dir =
        std::filesystem::path(::testing::TempDir()) /
        absl::StrCat("corpus_reader_test_",
                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir);
    const std::string path = (dir / name).string();
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

  static ReaderOptions Options(Corpus corpus, std::vector<std::string> inputs,
                               BadRecordPolicy policy = BadRecordPolicy::kFail) {
    ReaderOptions options;
    options.corpus = corpus;
    options.inputs = std::move(inputs);
    options.on_bad_record = policy;
    return options;
  }

  // Every record, or the first error.
  static absl::StatusOr<std::vector<Record>> ReadAll(const ReaderOptions& options,
                                                     ReaderStats* stats = nullptr) {
    absl::StatusOr<std::unique_ptr<CorpusReader>> reader = OpenCorpusReader(options);
    if (!reader.ok()) return reader.status();
    std::vector<Record> records;
    while (true) {
      absl::StatusOr<std::optional<Record>> record = (*reader)->Next();
      if (!record.ok()) return record.status();
      if (!record->has_value()) break;
      records.push_back(std::move(**record));
    }
    if (stats != nullptr) *stats = (*reader)->stats();
    return records;
  }

  static std::string SharedFile(const std::string& relative) {
    return absl::StrCat(kSharedData, "/", relative);
  }

  // Empty when every file exists, else a message naming the first one missing.
  static std::string MissingSample(const std::vector<std::string>& paths) {
    for (const std::string& path : paths) {
      if (!std::filesystem::exists(path)) {
        return absl::StrCat("real corpus sample ", path, " is absent (see docs/DATA.md §3)");
      }
    }
    return "";
  }
};

TEST_F(CorpusReaderTest, CorpusNamesRoundTripAndUnknownNameListsValidOnes) {
  for (Corpus corpus : {Corpus::kWikiText, Corpus::kWmt16, Corpus::kXsum, Corpus::kOpenOrca,
                        Corpus::kDemo, Corpus::kCode}) {
    absl::StatusOr<Corpus> parsed = ParseCorpus(CorpusName(corpus));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, corpus);
  }
  absl::StatusOr<Corpus> unknown = ParseCorpus("wiki");
  ASSERT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(),
              HasSubstr("'wiki'; valid corpora: wikitext, wmt16, xsum, openorca, demo, code"));
}

TEST_F(CorpusReaderTest, TaskOfEachCorpus) {
  EXPECT_EQ(TaskName(TaskOf(Corpus::kWikiText)), "lm");
  EXPECT_EQ(TaskName(TaskOf(Corpus::kDemo)), "lm");
  EXPECT_EQ(TaskName(TaskOf(Corpus::kWmt16)), "translation");
  EXPECT_EQ(TaskName(TaskOf(Corpus::kXsum)), "summarization");
  EXPECT_EQ(TaskName(TaskOf(Corpus::kOpenOrca)), "qa");
}

// ---- WikiText ------------------------------------------------------------------

TEST_F(CorpusReaderTest, WikiTextSplitsArticlesOnlyAtTopLevelHeadings) {
  const std::string path = WriteFile("wiki.tokens",
                                     " \n"
                                     " = Alpha = \n"
                                     " \n"
                                     " Alpha text one . \n"
                                     " \n"
                                     " = = Early life = = \n"
                                     " \n"
                                     " More alpha . \n"
                                     " = = = Deeper = = = \n"
                                     " = Beta = \n"
                                     " Beta text . \n");
  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWikiText, {path}), &stats);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2);
  ASSERT_EQ((*records)[0].source.size(), 1);
  EXPECT_EQ(
      (*records)[0].source[0].text,
      " = Alpha =\n Alpha text one .\n = = Early life = =\n More alpha .\n = = = Deeper = = =");
  EXPECT_EQ((*records)[0].where, path + ":2");
  EXPECT_TRUE((*records)[0].target.empty());
  EXPECT_EQ((*records)[1].source[0].text, " = Beta =\n Beta text .");
  EXPECT_EQ((*records)[1].where, path + ":10");
  EXPECT_EQ(stats.records, 2);
  EXPECT_EQ(stats.empty_skipped, 0);  // a blank preamble is no document
  EXPECT_EQ(stats.bytes_read, std::filesystem::file_size(path));
}

TEST_F(CorpusReaderTest, WikiTextTextBeforeFirstHeadingIsItsOwnDocument) {
  const std::string path = WriteFile("wiki.tokens", "\n Preamble words . \n = A = \n a text . \n");
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWikiText, {path}));
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2);
  EXPECT_EQ((*records)[0].source[0].text, " Preamble words .");
  EXPECT_EQ((*records)[0].where, path + ":2");
  EXPECT_EQ((*records)[1].source[0].text, " = A =\n a text .");
}

TEST_F(CorpusReaderTest, WikiTextArticleEndsWithItsFile) {
  const std::string first = WriteFile("one.tokens", " = A = \n a text .");  // no final newline
  const std::string second = WriteFile("two.tokens", " continued ? \n = B = \n b text . \n");
  absl::StatusOr<std::vector<Record>> records =
      ReadAll(Options(Corpus::kWikiText, {first, second}));
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3);
  EXPECT_EQ((*records)[0].source[0].text, " = A =\n a text .");
  EXPECT_EQ((*records)[1].source[0].text, " continued ?");
  EXPECT_EQ((*records)[1].where, second + ":1");
  EXPECT_EQ((*records)[2].source[0].text, " = B =\n b text .");
}

TEST_F(CorpusReaderTest, WikiTextRawWithCrlfLineEndings) {
  const std::string path =
      WriteFile("wiki.raw", " = A = \r\n Line one. \r\n\r\n Line two.\r\n = B = \r\n B.\r\n");
  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWikiText, {path}), &stats);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2);
  EXPECT_EQ((*records)[0].source[0].text, " = A =\n Line one.\n Line two.");
  EXPECT_EQ((*records)[1].source[0].text, " = B =\n B.");
  EXPECT_EQ(stats.bytes_read, std::filesystem::file_size(path));
}

TEST_F(CorpusReaderTest, WikiTextInvalidUtf8FailsOrIsSkipped) {
  const std::string path =
      WriteFile("bad.tokens", " = A = \n fine . \n = B = \n broken \xC3\x28 byte . \n = C = \n");
  absl::StatusOr<std::vector<Record>> failed = ReadAll(Options(Corpus::kWikiText, {path}));
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(failed.status().message(), HasSubstr(path + ":4 is not valid UTF-8"));

  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> skipped =
      ReadAll(Options(Corpus::kWikiText, {path}, BadRecordPolicy::kSkip), &stats);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  ASSERT_EQ(skipped->size(), 2);
  EXPECT_EQ((*skipped)[1].source[0].text, " = C =");
  EXPECT_EQ(stats.malformed_skipped, 1);
}

TEST_F(CorpusReaderTest, RealWikiText2ValidationHas60Articles) {
  const std::string valid = SharedFile("wikitext/wikitext-2/valid.txt");
  const std::string test = SharedFile("wikitext/wikitext-2/test.txt");
  const std::string missing = MissingSample({valid, test});
  if (!missing.empty()) GTEST_SKIP() << missing;

  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWikiText, {valid}));
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 60);
  EXPECT_THAT((*records)[0].source[0].text, ::testing::StartsWith(" = Homarus gammarus =\n"));
  EXPECT_EQ((*records)[0].where, valid + ":2");
  for (const Record& record : *records) {
    EXPECT_THAT(record.source[0].text, Not(HasSubstr("\n\n"))) << record.where;
  }
  absl::StatusOr<std::vector<Record>> test_records = ReadAll(Options(Corpus::kWikiText, {test}));
  ASSERT_TRUE(test_records.ok()) << test_records.status();
  EXPECT_EQ(test_records->size(), 62);
}

TEST_F(CorpusReaderTest, RealWikiText2RawCrlfTestFileMatchesTokenizedArticles) {
  const std::string raw = SharedFile("wikitext/wikitext-2-raw/test.nonblank-crlf.raw");
  const std::string missing = MissingSample({raw});
  if (!missing.empty()) GTEST_SKIP() << missing;

  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWikiText, {raw}));
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 62);
  EXPECT_THAT((*records)[0].source[0].text, ::testing::StartsWith(" = Robert Boulter =\n"));
  for (const Record& record : *records) {
    EXPECT_THAT(record.source[0].text, Not(HasSubstr("\r"))) << record.where;
  }
}

// ---- WMT16 ----------------------------------------------------------------------

TEST_F(CorpusReaderTest, WmtPlainPairKeepsAmpersandsAndDropsCarriageReturns) {
  // A bare '&' marks a file as plain, so its literal "&amp;" stays too.
  const std::string en = WriteFile("plain.en", "Marks & Spencer\nTom &amp; Jerry\n");
  const std::string de = WriteFile("plain.de", "Marks & Spencer\r\nTom &amp; Jerry\r\n");
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWmt16, {en, de}));
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2);
  EXPECT_EQ((*records)[0].source[0].text, "Marks & Spencer");
  EXPECT_EQ((*records)[0].target[0].text, "Marks & Spencer");
  EXPECT_EQ((*records)[1].source[0].text, "Tom &amp; Jerry");
  EXPECT_EQ((*records)[1].target[0].text, "Tom &amp; Jerry");
  EXPECT_EQ((*records)[1].where, en + ":2");
}

TEST_F(CorpusReaderTest, WmtMosesEscapedPairIsUnescaped) {
  const std::string en = WriteFile(
      "esc.en", "It &apos;s &quot; ok &quot; &#91; 1 &#93; &#124; a &amp; b &lt; c &gt;\n");
  const std::string de = WriteFile("esc.de", "Es ist &quot; gut &quot;\n");
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWmt16, {en, de}));
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1);
  EXPECT_EQ((*records)[0].source[0].text, "It 's \" ok \" [ 1 ] | a & b < c >");
  EXPECT_EQ((*records)[0].target[0].text, "Es ist \" gut \"");

  ReaderOptions plain = Options(Corpus::kWmt16, {en, de});
  plain.wmt_escaping = MosesEscaping::kPlain;
  absl::StatusOr<std::vector<Record>> kept = ReadAll(plain);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ((*kept)[0].target[0].text, "Es ist &quot; gut &quot;");
}

TEST_F(CorpusReaderTest, WmtForcedUnescapeLeavesBareAmpersands) {
  const std::string en = WriteFile("mixed.en", "A & B &amp; C &unknown;\n");
  const std::string de = WriteFile("mixed.de", "x\n");
  ReaderOptions options = Options(Corpus::kWmt16, {en, de});
  options.wmt_escaping = MosesEscaping::kEscaped;
  absl::StatusOr<std::vector<Record>> records = ReadAll(options);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ((*records)[0].source[0].text, "A & B & C &unknown;");
}

TEST_F(CorpusReaderTest, WmtTsvMalformedAndEmptyLines) {
  const std::string path = WriteFile("pairs.tsv",
                                     "hello\thallo\n"
                                     "no tab here\n"
                                     "a\tb\tc\n"
                                     "\tnur Ziel\n"
                                     "it &apos;s\tes ist\n");
  absl::StatusOr<std::vector<Record>> failed = ReadAll(Options(Corpus::kWmt16, {path}));
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(failed.status().message(),
              HasSubstr(path + ":2: expected source<TAB>target (exactly one tab), found 0 tabs"));

  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> records =
      ReadAll(Options(Corpus::kWmt16, {path}, BadRecordPolicy::kSkip), &stats);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2);
  EXPECT_EQ((*records)[0].source[0].text, "hello");
  EXPECT_EQ((*records)[0].target[0].text, "hallo");
  EXPECT_EQ((*records)[1].source[0].text, "it 's");
  EXPECT_EQ((*records)[1].where, path + ":5");
  EXPECT_EQ(stats.records, 2);
  EXPECT_EQ(stats.malformed_skipped, 2);
  EXPECT_EQ(stats.empty_skipped, 1);
}

TEST_F(CorpusReaderTest, WmtLineCountMismatchNamesBothFilesAndCounts) {
  const std::string en = WriteFile("long.en", "one\ntwo\nthree\n");
  const std::string de = WriteFile("short.de", "eins\nzwei");
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWmt16, {en, de}));
  ASSERT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(records.status().message(),
              HasSubstr(absl::StrCat(en, " has 3 lines, ", de, " has 2 lines")));
}

TEST_F(CorpusReaderTest, WmtEmptySideIsCountedAndSkipped) {
  const std::string en = WriteFile("e.en", "one\n\nthree\n  \n");
  const std::string de = WriteFile("e.de", "eins\nzwei\n\nvier\n");
  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWmt16, {en, de}), &stats);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1);
  EXPECT_EQ((*records)[0].target[0].text, "eins");
  EXPECT_EQ(stats.empty_skipped, 3);
}

TEST_F(CorpusReaderTest, WmtNeedsAPairOrTsvFiles) {
  const std::string en = WriteFile("only.en", "one\n");
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kWmt16, {en}));
  ASSERT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(records.status().message(), HasSubstr("got 1 inputs: " + en));
}

TEST_F(CorpusReaderTest, RealWmt16ValidationIsPlainAndTrainSampleEscaped) {
  const std::string en = SharedFile("wmt16_en_de/validation/newstest2015.en");
  const std::string de = SharedFile("wmt16_en_de/validation/newstest2015.de");
  const std::string train_en = SharedFile("wmt16_en_de/train_sample/train.tok.en");
  const std::string train_de = SharedFile("wmt16_en_de/train_sample/train.tok.de");
  const std::string missing = MissingSample({en, de, train_en, train_de});
  if (!missing.empty()) GTEST_SKIP() << missing;

  absl::StatusOr<std::vector<Record>> validation = ReadAll(Options(Corpus::kWmt16, {en, de}));
  ASSERT_TRUE(validation.ok()) << validation.status();
  ASSERT_EQ(validation->size(), 2169);
  EXPECT_EQ((*validation)[0].source[0].text, "India and Japan prime ministers meet in Tokyo");

  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> train =
      ReadAll(Options(Corpus::kWmt16, {train_en, train_de}), &stats);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->size(), 9999);
  EXPECT_EQ(stats.empty_skipped, 1);  // one English line of the sample is empty
  EXPECT_THAT((*train)[0].source[0].text, HasSubstr("Parliament 's legislative"));
  for (const Record& record : *train) {
    EXPECT_THAT(record.source[0].text, Not(HasSubstr("&apos;"))) << record.where;
    EXPECT_THAT(record.target[0].text, Not(HasSubstr("&quot;"))) << record.where;
  }
}

// ---- XSUM ------------------------------------------------------------------------

TEST_F(CorpusReaderTest, XsumNumericAndStringIds) {
  const std::string path = WriteFile(
      "x.jsonl",
      "{\"document\": \"Para one.\\nPara two.\", \"summary\": \"Short.\", \"id\": 38264402}\n"
      "\n"
      "{\"id\": \"abc-7\", \"document\": \"D\", \"summary\": \"S\", \"extra\": true}\n"
      "{\"document\": \"No id\", \"summary\": \"S\"}\n");
  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kXsum, {path}), &stats);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3);
  EXPECT_EQ((*records)[0].id, "38264402");
  EXPECT_EQ((*records)[0].source[0].text, "Para one.\nPara two.");
  EXPECT_EQ((*records)[0].target[0].text, "Short.");
  EXPECT_EQ((*records)[1].id, "abc-7");
  EXPECT_EQ((*records)[1].where, path + ":3");
  EXPECT_EQ((*records)[2].id, "");
  EXPECT_EQ(stats.empty_skipped, 0);  // the blank line is no record
}

TEST_F(CorpusReaderTest, XsumMalformedLinesReportTheirLineNumber) {
  const std::string path =
      WriteFile("bad.jsonl",
                "{\"document\": \"d\", \"summary\": \"s\", \"id\": 1}\n"
                "\n"
                "{\"document\": \"d\", \"summary\": }\n"
                "{\"document\": 5, \"summary\": \"s\"}\n"
                "{\"summary\": \"s\"}\n"
                "{\"document\": \"d\", \"summary\": \"s\", \"id\": 1.5}\n"
                "[\"document\", \"summary\"]\n"
                "{\"document\": \"d2\", \"summary\": \"s2\", \"id\": \"2\"}\n");
  ReaderOptions options = Options(Corpus::kXsum, {path});
  absl::StatusOr<std::unique_ptr<CorpusReader>> reader = OpenCorpusReader(options);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE((*reader)->Next().ok());
  absl::StatusOr<std::optional<Record>> failed = (*reader)->Next();
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(failed.status().message(), HasSubstr(path + ":3: invalid JSON: "));
  EXPECT_THAT(failed.status().message(), HasSubstr("parse error"));
  // The error is final.
  EXPECT_EQ((*reader)->Next().status(), failed.status());

  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> records =
      ReadAll(Options(Corpus::kXsum, {path}, BadRecordPolicy::kSkip), &stats);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2);
  EXPECT_EQ((*records)[1].id, "2");
  EXPECT_EQ(stats.records, 2);
  EXPECT_EQ(stats.malformed_skipped, 5);
}

TEST_F(CorpusReaderTest, XsumFieldProblemsNameFieldAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"document\": 5, \"summary\": \"s\"}",
       ":1: field 'document' must be a string, got number"},
      {"{\"summary\": \"s\"}", ":1: missing field 'document'"},
      {"{\"document\": \"d\"}", ":1: missing field 'summary'"},
      {"{\"document\": \"d\", \"summary\": \"s\", \"id\": 1.5}",
       ":1: field 'id' must be a string or an integer, got number"},
      {"[1]", ":1: expected a JSON object, got array"},
  };
  for (const auto& [line, expected] : cases) {
    const std::string path = WriteFile("field.jsonl", line + "\n");
    absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kXsum, {path}));
    ASSERT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument) << line;
    EXPECT_THAT(records.status().message(), HasSubstr(path + expected));
  }
}

TEST_F(CorpusReaderTest, XsumEmptyExamplesAreCountedAndSkipped) {
  const std::string path =
      WriteFile("empty.jsonl",
                "{\"document\": \" \\n \", \"summary\": \"s\", \"id\": \"1\"}\n"
                "{\"document\": \"d\", \"summary\": \"\", \"id\": \"2\"}\n"
                "{\"document\": \"d\", \"summary\": \"s\", \"id\": \"3\"}\n");
  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kXsum, {path}), &stats);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1);
  EXPECT_EQ((*records)[0].id, "3");
  EXPECT_EQ(stats.empty_skipped, 2);
  EXPECT_EQ(stats.malformed_skipped, 0);
}

TEST_F(CorpusReaderTest, RealXsumSubsets) {
  const std::string integer_ids = SharedFile("xsum/test/test_subset_b.jsonl");
  const std::string validation = SharedFile("xsum/validation/validation_subset.jsonl");
  const std::string missing = MissingSample({integer_ids, validation});
  if (!missing.empty()) GTEST_SKIP() << missing;

  absl::StatusOr<std::vector<Record>> test = ReadAll(Options(Corpus::kXsum, {integer_ids}));
  ASSERT_TRUE(test.ok()) << test.status();
  ASSERT_EQ(test->size(), 1000);
  for (const Record& record : *test) {
    ASSERT_FALSE(record.id.empty()) << record.where;
    EXPECT_TRUE(std::all_of(record.id.begin(), record.id.end(), ::isdigit)) << record.id;
  }
  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> valid = ReadAll(Options(Corpus::kXsum, {validation}), &stats);
  ASSERT_TRUE(valid.ok()) << valid.status();
  EXPECT_EQ(valid->size(), 999);
  EXPECT_EQ(stats.empty_skipped, 1);  // real XSUM has one empty validation document
  EXPECT_EQ((*valid)[0].id, "38295789");
}

// ---- OpenOrca ----------------------------------------------------------------------

TEST_F(CorpusReaderTest, OpenOrcaSegmentsAndSeparatorFlags) {
  const std::string path =
      WriteFile("orca.jsonl",
                "{\"id\": \"niv.1\", \"system_prompt\": \"Be brief.\", \"question\": \"Why?\", "
                "\"response\": \"Because.\"}\n"
                "{\"system_prompt\": \"\", \"question\": \"What?\", \"response\": \"That.\"}\n"
                "{\"system_prompt\": \"S\", \"question\": \" \", \"response\": \"R\"}\n"
                "{\"system_prompt\": \"S\", \"question\": \"Q\"}\n");
  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> records =
      ReadAll(Options(Corpus::kOpenOrca, {path}, BadRecordPolicy::kSkip), &stats);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2);

  const Record& with_prompt = (*records)[0];
  EXPECT_EQ(with_prompt.id, "niv.1");
  ASSERT_EQ(with_prompt.source.size(), 2);
  EXPECT_EQ(with_prompt.source[0].text, "Be brief.");
  EXPECT_FALSE(with_prompt.source[0].separator_before);
  EXPECT_EQ(with_prompt.source[1].text, "Why?");
  EXPECT_TRUE(with_prompt.source[1].separator_before);
  ASSERT_EQ(with_prompt.target.size(), 1);
  EXPECT_EQ(with_prompt.target[0].text, "Because.");
  EXPECT_FALSE(with_prompt.target[0].separator_before);

  const Record& without_prompt = (*records)[1];
  EXPECT_EQ(without_prompt.id, "");
  ASSERT_EQ(without_prompt.source.size(), 1);
  EXPECT_EQ(without_prompt.source[0].text, "What?");
  EXPECT_TRUE(without_prompt.source[0].separator_before);

  EXPECT_EQ(stats.empty_skipped, 1);      // blank question
  EXPECT_EQ(stats.malformed_skipped, 1);  // no response
}

TEST_F(CorpusReaderTest, RealOpenOrcaSample) {
  const std::string path = SharedFile("openorca/openorca_sample_50.jsonl");
  const std::string missing = MissingSample({path});
  if (!missing.empty()) GTEST_SKIP() << missing;

  absl::StatusOr<std::vector<Record>> records = ReadAll(Options(Corpus::kOpenOrca, {path}));
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 50);
  int without_system_prompt = 0;
  for (const Record& record : *records) {
    EXPECT_TRUE(record.source.back().separator_before) << record.where;
    if (record.source.size() == 1) ++without_system_prompt;
  }
  EXPECT_EQ(without_system_prompt, 3);
}

// ---- Inputs --------------------------------------------------------------------------

TEST_F(CorpusReaderTest, MissingFileIsNotFoundNamingIt) {
  const std::string exists = WriteFile("exists.en", "x\n");
  const std::string missing = exists + ".nope";
  const std::vector<ReaderOptions> cases = {
      Options(Corpus::kWikiText, {exists, missing}), Options(Corpus::kWmt16, {exists, missing}),
      Options(Corpus::kXsum, {missing}), Options(Corpus::kOpenOrca, {missing})};
  for (const ReaderOptions& options : cases) {
    absl::StatusOr<std::unique_ptr<CorpusReader>> reader = OpenCorpusReader(options);
    ASSERT_EQ(reader.status().code(), absl::StatusCode::kNotFound) << CorpusName(options.corpus);
    EXPECT_THAT(reader.status().message(), HasSubstr("'" + missing + "' does not exist"));
  }
}

TEST_F(CorpusReaderTest, InputsThatCannotBeReadAreRefused) {
  absl::StatusOr<std::unique_ptr<CorpusReader>> none = OpenCorpusReader(Options(Corpus::kXsum, {}));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);

  // Not parquet inside: the first read says so, naming the file.
  const std::string parquet = WriteFile("rows.parquet", "PAR1");
  absl::StatusOr<std::vector<Record>> columnar = ReadAll(Options(Corpus::kOpenOrca, {parquet}));
  EXPECT_EQ(columnar.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(columnar.status().message(), HasSubstr(parquet));
  EXPECT_THAT(columnar.status().message(), HasSubstr("not a readable parquet file"));

  const std::string directory = std::filesystem::path(parquet).parent_path().string();
  absl::StatusOr<std::unique_ptr<CorpusReader>> folder =
      OpenCorpusReader(Options(Corpus::kWikiText, {directory}));
  EXPECT_EQ(folder.status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- The Hugging Face hub's layouts (parquet, WMT16 JSON lines) ----------------

// Writes parquet files with pyarrow (the project's Python) from the samples.
class HubLayoutTest : public CorpusReaderTest {
 protected:
  // Runs `code` with MEMTRAIN_PYTHON; `dir` is its first argument.
  static absl::Status RunPython(const std::string& code, const std::string& dir) {
    ChildCommand command;
    command.argv = {MEMTRAIN_PYTHON, "-c", code, dir, kSharedData};
    command.capture_stdout = false;
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> child, ChildProcess::Start(command));
    return child->Wait();
  }

  std::string Dir() { return std::filesystem::path(WriteFile("unused", "")).parent_path(); }

  // Records equal field by field, `where` aside (a line vs a row).
  static void ExpectSameRecords(const std::vector<Record>& got, const std::vector<Record>& want) {
    ASSERT_EQ(got.size(), want.size());
    const auto texts = [](const std::vector<TextSegment>& segments) {
      std::vector<std::string> out;
      for (const TextSegment& s : segments)
        out.push_back(absl::StrCat(s.separator_before ? "<sep>" : "", s.text));
      return out;
    };
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(texts(got[i].source), texts(want[i].source)) << "record " << i;
      ASSERT_EQ(texts(got[i].target), texts(want[i].target)) << "record " << i;
      ASSERT_EQ(got[i].id, want[i].id) << "record " << i;
    }
  }
};

TEST_F(HubLayoutTest, OpenOrcaParquetReadsAsItsJsonLinesDump) {
  const std::string parquet = SharedFile("openorca/openorca_sample_50.parquet");
  const std::string jsonl = SharedFile("openorca/openorca_sample_50.jsonl");
  if (std::string missing = MissingSample({parquet, jsonl}); !missing.empty())
    GTEST_SKIP() << missing;
  ReaderStats stats;
  absl::StatusOr<std::vector<Record>> from_parquet =
      ReadAll(Options(Corpus::kOpenOrca, {parquet}), &stats);
  ASSERT_TRUE(from_parquet.ok()) << from_parquet.status();
  absl::StatusOr<std::vector<Record>> from_jsonl = ReadAll(Options(Corpus::kOpenOrca, {jsonl}));
  ASSERT_TRUE(from_jsonl.ok()) << from_jsonl.status();
  EXPECT_EQ(from_parquet->size(), 50u);
  ExpectSameRecords(*from_parquet, *from_jsonl);
  // Progress counts the parquet file's own bytes, all of them at the end.
  EXPECT_EQ(stats.bytes_read, static_cast<int64_t>(std::filesystem::file_size(parquet)));
  EXPECT_THAT(from_parquet->front().where, HasSubstr("openorca_sample_50.parquet:row 1"));
}

// WikiText's rows are its lines, WMT16's rows {"translation": {"de", "en"}}
// (parquet and JSON lines), XSUM's rows its JSON objects: the same records as
// the text formats they were made from.
TEST_F(HubLayoutTest, WikiTextWmtAndXsumHubFilesEqualTheirTextFormats) {
  const std::string wikitext = SharedFile("wikitext/wikitext-2/valid.txt");
  const std::string en = SharedFile("wmt16_en_de/test/newstest2016.en");
  const std::string de = SharedFile("wmt16_en_de/test/newstest2016.de");
  const std::string xsum = SharedFile("xsum/validation/validation_subset.jsonl");
  if (std::string missing = MissingSample({wikitext, en, de, xsum}); !missing.empty())
    GTEST_SKIP() << missing;
  const std::string dir = Dir();
  ASSERT_TRUE(RunPython(R"(
import json, sys, pyarrow as pa, pyarrow.parquet as pq
out, data = sys.argv[1], sys.argv[2]
lines = open(f"{data}/wikitext/wikitext-2/valid.txt", encoding="utf-8", newline="").read().splitlines(True)
pq.write_table(pa.table({"text": lines}), f"{out}/wikitext.parquet", row_group_size=1000)
en = open(f"{data}/wmt16_en_de/test/newstest2016.en", encoding="utf-8").read().splitlines()
de = open(f"{data}/wmt16_en_de/test/newstest2016.de", encoding="utf-8").read().splitlines()
rows = [{"de": d, "en": e} for d, e in zip(de, en)]
pq.write_table(pa.table({"translation": rows}), f"{out}/wmt.parquet", row_group_size=1000)
with open(f"{out}/wmt.jsonl", "w", encoding="utf-8") as f:
    for r in rows: f.write(json.dumps({"translation": r}, ensure_ascii=False) + chr(10))
x = [json.loads(l) for l in open(f"{data}/xsum/validation/validation_subset.jsonl", encoding="utf-8")]
pq.write_table(pa.table({k: [r[k] for r in x] for k in ("document", "summary", "id")}), f"{out}/xsum.parquet")
)",
                        dir)
                  .ok());
  const auto expect_same = [&](Corpus corpus, std::vector<std::string> hub,
                               std::vector<std::string> text) {
    absl::StatusOr<std::vector<Record>> from_hub = ReadAll(Options(corpus, std::move(hub)));
    ASSERT_TRUE(from_hub.ok()) << from_hub.status();
    absl::StatusOr<std::vector<Record>> from_text = ReadAll(Options(corpus, std::move(text)));
    ASSERT_TRUE(from_text.ok()) << from_text.status();
    EXPECT_GT(from_hub->size(), 5u);
    ExpectSameRecords(*from_hub, *from_text);
  };
  expect_same(Corpus::kWikiText, {dir + "/wikitext.parquet"}, {wikitext});
  expect_same(Corpus::kWmt16, {dir + "/wmt.parquet"}, {en, de});
  expect_same(Corpus::kWmt16, {dir + "/wmt.jsonl"}, {en, de});
  expect_same(Corpus::kXsum, {dir + "/xsum.parquet"}, {xsum});

  // The other direction swaps the sides.
  ReaderOptions de_en = Options(Corpus::kWmt16, {dir + "/wmt.parquet"});
  de_en.wmt_direction = WmtDirection{"de", "en"};
  absl::StatusOr<std::vector<Record>> swapped = ReadAll(de_en);
  ASSERT_TRUE(swapped.ok()) << swapped.status();
  absl::StatusOr<std::vector<Record>> pair = ReadAll(Options(Corpus::kWmt16, {de, en}));
  ASSERT_TRUE(pair.ok()) << pair.status();
  ExpectSameRecords(*swapped, *pair);
}

TEST_F(HubLayoutTest, AWrongSchemaNamesTheMissingColumnAndABadRowItsNumber) {
  const std::string dir = Dir();
  ASSERT_TRUE(RunPython(R"(
import sys, pyarrow as pa, pyarrow.parquet as pq
out = sys.argv[1]
pq.write_table(pa.table({"id": ["a"], "question": ["q?"], "answer": ["a."]}), f"{out}/orca.parquet")
pq.write_table(pa.table({"document": ["d1", "d2", "d3"], "summary": ["s1", "s2", None]}),
               f"{out}/xsum.parquet")
pq.write_table(pa.table({"translation": [{"de": "Hallo", "fr": "Salut"}]}), f"{out}/wmt.parquet")
)",
                        dir)
                  .ok());
  absl::StatusOr<std::vector<Record>> orca =
      ReadAll(Options(Corpus::kOpenOrca, {dir + "/orca.parquet"}));
  EXPECT_EQ(orca.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(orca.status().message(), HasSubstr("orca.parquet: no column 'response'"));
  EXPECT_THAT(orca.status().message(), HasSubstr("its columns: id, question, answer"));

  absl::StatusOr<std::vector<Record>> xsum =
      ReadAll(Options(Corpus::kXsum, {dir + "/xsum.parquet"}));
  EXPECT_EQ(xsum.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(xsum.status().message(),
              HasSubstr("xsum.parquet:row 3: field 'summary' must be a string"));

  absl::StatusOr<std::vector<Record>> wmt =
      ReadAll(Options(Corpus::kWmt16, {dir + "/wmt.parquet"}));
  EXPECT_EQ(wmt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wmt.status().message(), HasSubstr("wmt.parquet:row 1: missing field 'en'"));
}

}  // namespace
}  // namespace memtrain::data
