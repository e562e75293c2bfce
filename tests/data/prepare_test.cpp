// memtrain-prepare end to end: real samples of the four corpora round-trip
// through SentencePiece and HDF5 (skipped, saying so, without ../shared/data),
// bad input is reported with its place and leaves no file, and damaged or
// foreign files are refused with the reason. Text given to memtrain-generate
// is encoded by a memtrain-prepare child into exactly the ids prepare stores.
#include "data/prepare.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "data/corpus_file.h"
#include "data/text_inputs.h"
#include "data/tokenizer.h"

namespace memtrain::data {
namespace {

using ::testing::HasSubstr;

const char kSharedData[] = MEMTRAIN_SHARED_DATA;

std::string Temp(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("memtrain_prepare_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

bool HaveSharedData() { return std::filesystem::exists(std::string(kSharedData) + "/README.md"); }

// What a record's source (or target) must decode to: the segments' text, with
// "<sep>" where the tokenizer inserted the separator.
std::string ExpectedText(const std::vector<TextSegment>& segments) {
  std::string text;
  for (const TextSegment& segment : segments) {
    if (segment.separator_before) text += "<sep>";
    text += segment.text;
  }
  return text;
}

void RoundTrip(Corpus corpus, std::vector<std::string> inputs, int vocab_size) {
  if (!HaveSharedData()) {
    GTEST_SKIP() << kSharedData << " is absent: real-sample round trips skipped";
  }
  PrepareOptions options;
  options.reader.corpus = corpus;
  options.reader.inputs = std::move(inputs);
  options.output = Temp(CorpusName(corpus) + ".h5");
  options.split = "test";
  options.train.vocab_size = vocab_size;
  options.show_progress = false;
  absl::StatusOr<PrepareResult> result = Prepare(options);
  ASSERT_TRUE(result.ok()) << result.status();

  auto file = CorpusFile::Open(options.output, {});
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Verify().ok());
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::Load((*file)->tokenizer().model_bytes, &error);
  ASSERT_NE(tokenizer, nullptr) << error;
  const PieceDecoder decoder((*file)->tokenizer());

  auto reader = OpenCorpusReader(options.reader);
  ASSERT_TRUE(reader.ok());
  int64_t record = 0;
  for (;; ++record) {
    auto next = (*reader)->Next();
    ASSERT_TRUE(next.ok()) << next.status();
    if (!next->has_value()) break;
    ASSERT_LT(record, (*file)->num_records());
    auto source = (*file)->ReadRecord(Field::kSource, record);
    ASSERT_TRUE(source.ok());
    ASSERT_EQ(source->back(), (*file)->tokenizer().eos_id);
    ASSERT_EQ(decoder.Decode(*source), ExpectedText((*next)->source)) << (*next)->where;
    if (record < 20) {
      ASSERT_EQ(tokenizer->Decode(*source), decoder.Decode(*source));
    }
    if ((*file)->is_seq2seq()) {
      auto target = (*file)->ReadRecord(Field::kTarget, record);
      ASSERT_TRUE(target.ok());
      ASSERT_EQ(decoder.Decode(*target), ExpectedText((*next)->target)) << (*next)->where;
      ASSERT_EQ((*file)->ReadId(record).value_or("?"), (*next)->id);
    }
  }
  EXPECT_EQ(record, (*file)->num_records());
  EXPECT_EQ((*file)->header().empty_skipped, (*reader)->stats().empty_skipped);
  ASSERT_EQ((*file)->header().inputs.size(), options.reader.inputs.size());
  EXPECT_EQ((*file)->header().inputs[0].sha256.size(), 64u);
}

TEST(PrepareTest, WikiTextRoundTrip) {
  RoundTrip(Corpus::kWikiText, {std::string(kSharedData) + "/wikitext/wikitext-2/valid.txt"}, 2000);
}

TEST(PrepareTest, Wmt16RoundTrip) {
  const std::string dir = std::string(kSharedData) + "/wmt16_en_de/validation/";
  std::vector<std::string> files;
  if (std::filesystem::exists(dir)) {
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());  // *.de before *.en: translate de->en
  RoundTrip(Corpus::kWmt16, files, 2000);
}

TEST(PrepareTest, XsumRoundTrip) {
  const std::string dir = std::string(kSharedData) + "/xsum/validation/";
  std::vector<std::string> files;
  if (std::filesystem::exists(dir)) {
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      files.push_back(entry.path());
  }
  RoundTrip(Corpus::kXsum, files, 2000);
}

TEST(PrepareTest, OpenOrcaRoundTrip) {
  RoundTrip(Corpus::kOpenOrca, {std::string(kSharedData) + "/openorca/openorca_sample_50.jsonl"},
            600);
}

// memtrain-generate's path for text (data/text_inputs.h): the OpenOrca
// sample's JSON lines, encoded by a memtrain-prepare child and laid out as a
// QA source, are the ids prepare stored for the same records.
TEST(PrepareTest, TextInputsEncodeInAChildAsPrepareStoresThem) {
  if (!HaveSharedData()) GTEST_SKIP() << kSharedData << " is absent";
  const std::string sample = std::string(kSharedData) + "/openorca/openorca_sample_50.jsonl";
  PrepareOptions options;
  options.reader.corpus = Corpus::kOpenOrca;
  options.reader.inputs = {sample};
  options.output = Temp("text_inputs.h5");
  options.train.vocab_size = 600;
  options.show_progress = false;
  absl::StatusOr<PrepareResult> result = Prepare(options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->header.empty_skipped, 0) << "records and lines must pair up";
  auto file = CorpusFile::Open(options.output, {});
  ASSERT_TRUE(file.ok()) << file.status();

  absl::StatusOr<std::vector<std::string>> lines = ReadInputLines(sample);
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(static_cast<int64_t>(lines->size()), (*file)->num_records());
  auto inputs = ParseInputLines(Task::kQuestionAnswering, *lines);
  ASSERT_TRUE(inputs.ok()) << inputs.status();
  const TokenizerInfo& tokenizer = (*file)->tokenizer();
  auto ids = EncodeInputs({MEMTRAIN_PREPARE_BINARY, options.output}, Task::kQuestionAnswering,
                          *inputs, tokenizer.sep_id, tokenizer.eos_id);
  ASSERT_TRUE(ids.ok()) << ids.status();
  for (size_t i = 0; i < ids->size(); ++i) {
    auto stored = (*file)->ReadRecord(Field::kSource, static_cast<int64_t>(i));
    ASSERT_TRUE(stored.ok());
    ASSERT_EQ((*ids)[i], *stored) << "line " << i + 1;
  }
  // An lm prompt is its text's ids without the eos that ends a document.
  std::string error;
  const std::unique_ptr<Tokenizer> in_process = Tokenizer::Load(tokenizer.model_bytes, &error);
  ASSERT_NE(in_process, nullptr) << error;
  auto prompt = EncodeInputs({MEMTRAIN_PREPARE_BINARY, options.output}, Task::kLanguageModel,
                             {{{"Once upon a time"}}, {{""}}}, tokenizer.sep_id, tokenizer.eos_id);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ((*prompt)[0], in_process->Encode("Once upon a time"));
  EXPECT_EQ((*prompt)[1], std::vector<int32_t>{tokenizer.eos_id})
      << "an empty prompt starts a document";
  // A child that cannot start is an error naming it.
  auto missing = EncodeInChild({"/nonexistent/memtrain-prepare", options.output}, {"x"});
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/memtrain-prepare"));
}

TEST(PrepareTest, TextInputLinesAreCheckedNamingTheLine) {
  auto bad_utf8 = ParseInputLines(Task::kTranslation, {"fine", "also fine", "caf\xe9 au lait"});
  ASSERT_FALSE(bad_utf8.ok());
  EXPECT_THAT(std::string(bad_utf8.status().message()),
              HasSubstr("input line 3 is not valid UTF-8"));
  auto bad_json =
      ParseInputLines(Task::kQuestionAnswering, {R"({"question": "Why?"})", R"({"question": )"});
  ASSERT_FALSE(bad_json.ok());
  EXPECT_THAT(std::string(bad_json.status().message()), HasSubstr("input line 2"));
  auto no_question =
      ParseInputLines(Task::kQuestionAnswering, {R"({"system_prompt": "Be brief."})"});
  ASSERT_FALSE(no_question.ok());
  EXPECT_THAT(std::string(no_question.status().message()),
              HasSubstr("input line 1: missing field 'question'"));
  // A plain qa line is the question, after <sep>; a blank system prompt is left out.
  auto qa = ParseInputLines(Task::kQuestionAnswering,
                            {"Why?", R"({"system_prompt": " ", "question": "How?"})"});
  ASSERT_TRUE(qa.ok()) << qa.status();
  for (const auto& segments : *qa) {
    ASSERT_EQ(segments.size(), 1u);
    EXPECT_TRUE(segments[0].separator_before);
  }
}

TEST(PrepareTest, DemoLongRangeTokensAreTheAnswers) {
  PrepareOptions options;
  options.reader.corpus = Corpus::kDemo;
  options.reader.demo_documents = 20;
  options.reader.demo_distance_words = 200;
  options.output = Temp("demo.h5");
  options.train.vocab_size = 800;
  options.show_progress = false;
  ASSERT_TRUE(Prepare(options).ok());
  auto file = CorpusFile::Open(options.output, {});
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE((*file)->header().has_long_range);
  const PieceDecoder decoder((*file)->tokenizer());
  auto reader = OpenCorpusReader(options.reader);
  ASSERT_TRUE(reader.ok());
  for (int64_t record = 0; record < (*file)->num_records(); ++record) {
    auto next = (*reader)->Next();
    ASSERT_TRUE(next.ok() && next->has_value());
    std::string expected;
    for (const TextSegment& segment : (*next)->source) {
      if (segment.long_range) expected += segment.text;
    }
    auto tokens = (*file)->ReadRecord(Field::kSource, record);
    auto flags = (*file)->ReadLongRange((*file)->offsets(Field::kSource)[record],
                                        static_cast<int64_t>(tokens->size()));
    ASSERT_TRUE(flags.ok());
    std::vector<int32_t> flagged;
    for (size_t i = 0; i < tokens->size(); ++i) {
      if ((*flags)[i]) flagged.push_back((*tokens)[i]);
    }
    EXPECT_FALSE(flagged.empty());
    EXPECT_EQ(decoder.Decode(flagged), expected) << "record " << record;
  }
}

// A tree of Python packages with the whitespace code has: indentation of 4, 8
// and 12 spaces, a tab, blank lines, non-ASCII text.
std::string WriteCodeTree() {
  const std::filesystem::path root = Temp("code_tree");
  std::filesystem::remove_all(root);
  for (int package = 0; package < 3; ++package) {
    for (int module = 0; module < 4; ++module) {
      const std::filesystem::path path =
          root / ("pkg" + std::to_string(package)) / ("mod" + std::to_string(module) + ".py");
      std::filesystem::create_directories(path.parent_path());
      std::ofstream out(path, std::ios::binary);
      out << "\"\"\"Module " << module << " of package " << package << ": caf\u00e9.\"\"\"\n\n";
      for (int c = 0; c < 6; ++c) {
        out << "\nclass Shape" << c << ":\n    def area(self, width, height):\n"
            << "        if width > " << c << ":\n            return width * height\n"
            << "        return None\n\n    def name(self):\n\treturn 'shape'\n";
      }
    }
  }
  return root.string();
}

TEST(PrepareTest, CodeTreeRoundTripsWithIndentationAsPieces) {
  const std::string root = WriteCodeTree();
  const std::string output = Temp("code.h5");
  const std::string command = std::string(MEMTRAIN_PREPARE_BINARY) +
                              " --corpus=code --code_document=package --inputs=" + root +
                              " --vocab_size=400 --progress=false --output=" + output +
                              " 2>/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  auto file = CorpusFile::Open(output, {});
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Verify().ok());
  EXPECT_EQ((*file)->header().corpus, "code");
  EXPECT_THAT((*file)->header().options_json, HasSubstr(R"("code_document":"package")"));
  // One provenance entry for the tree: the bytes of the files read under it.
  ASSERT_EQ((*file)->header().inputs.size(), 1u);
  EXPECT_EQ((*file)->header().inputs[0].path, root);
  int64_t bytes = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) bytes += static_cast<int64_t>(entry.file_size());
  }
  EXPECT_EQ((*file)->header().inputs[0].bytes, bytes);
  EXPECT_EQ((*file)->header().inputs[0].sha256.size(), 64u);

  // Every document decodes to the reader's text, newlines, tabs and spaces included.
  ReaderOptions reader_options;
  reader_options.corpus = Corpus::kCode;
  reader_options.inputs = {root};
  reader_options.code_document = CodeDocument::kPackage;
  auto reader = OpenCorpusReader(reader_options);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const PieceDecoder decoder((*file)->tokenizer());
  int64_t record = 0;
  for (;; ++record) {
    auto next = (*reader)->Next();
    ASSERT_TRUE(next.ok()) << next.status();
    if (!next->has_value()) break;
    auto source = (*file)->ReadRecord(Field::kSource, record);
    ASSERT_TRUE(source.ok());
    EXPECT_EQ(decoder.Decode(*source), ExpectedText((*next)->source)) << (*next)->where;
  }
  EXPECT_EQ(record, 3);
  EXPECT_EQ((*file)->num_records(), 3);

  // Indentation is learned as runs of spaces, not one piece per space.
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::Load((*file)->tokenizer().model_bytes, &error);
  ASSERT_NE(tokenizer, nullptr) << error;
  EXPECT_EQ(tokenizer->Encode(std::string(8, ' ')).size(), 1u);
  EXPECT_EQ(tokenizer->Decode(tokenizer->Encode("\n        return x\n")), "\n        return x\n");
}

void WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path);
  for (const std::string& line : lines) out << line << "\n";
}

bool AnyPartialFileIn(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().string().find(".partial-") != std::string::npos) return true;
  }
  return false;
}

TEST(PrepareTest, MalformedJsonLineIsNamedAndNothingIsWritten) {
  const std::string input = Temp("bad.jsonl");
  WriteLines(input, {R"({"document": "A first document here.", "summary": "First.", "id": 1})",
                     R"({"document": "Second one.", "summary": "Second.", "id": "b"})",
                     R"({"document": "Broken", "summary": )",
                     R"({"document": "Fourth document.", "summary": "Fourth.", "id": 4})"});
  PrepareOptions options;
  options.reader.corpus = Corpus::kXsum;
  options.reader.inputs = {input};
  options.output = Temp("bad.h5");
  options.train.vocab_size = 300;
  options.show_progress = false;
  absl::StatusOr<PrepareResult> result = Prepare(options);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(input + ":3"));
  EXPECT_FALSE(std::filesystem::exists(options.output));
  EXPECT_FALSE(AnyPartialFileIn(std::filesystem::path(input).parent_path()));

  options.reader.on_bad_record = BadRecordPolicy::kSkip;
  result = Prepare(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->header.malformed_skipped, 1);
  EXPECT_EQ(result->header.num_records, 3);
}

TEST(PrepareTest, KilledPrepareLeavesNoOutputFile) {
  const std::string output = Temp("killed.h5");
  const pid_t child = fork();
  if (child == 0) {
    execl(MEMTRAIN_PREPARE_BINARY, MEMTRAIN_PREPARE_BINARY, "--corpus=demo",
          "--demo_documents=1000000", "--vocab_size=500", "--progress=false",
          ("--output=" + output).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(child, 0);
  // Long enough to be writing (tokenizer trained on a sample, encoding under way).
  std::this_thread::sleep_for(std::chrono::seconds(4));
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "prepare finished before it could be killed";
  EXPECT_FALSE(std::filesystem::exists(output));
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(output).parent_path())) {
    if (entry.path().string().find("killed.h5.partial-") == std::string::npos) continue;
    auto opened = CorpusFile::Open(entry.path().string(), {});
    EXPECT_FALSE(opened.ok()) << "a partial file must never pass for a corpus";
    std::filesystem::remove(entry.path());
  }
}

class DamagedFileTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    good_ = new std::string(Temp("good.h5"));
    PrepareOptions options;
    options.reader.corpus = Corpus::kDemo;
    options.reader.demo_documents = 300;
    options.output = *good_;
    options.train.vocab_size = 500;
    options.show_progress = false;
    ASSERT_TRUE(Prepare(options).ok());
  }
  static std::string CopyWith(const std::string& name,
                              const std::function<void(std::string*)>& edit) {
    std::ifstream in(*good_, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    edit(&bytes);
    const std::string path = Temp(name);
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  static std::string* good_;
};
std::string* DamagedFileTest::good_ = nullptr;

TEST_F(DamagedFileTest, GoodFileVerifies) {
  auto file = CorpusFile::Open(*good_, {});
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->Verify().ok());
}

TEST_F(DamagedFileTest, NotHdf5) {
  const std::string path = Temp("text.h5");
  WriteLines(path, {"hello"});
  auto file = CorpusFile::Open(path, {});
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(file.status().message()), HasSubstr(path + ": not an HDF5 file"));
}

TEST_F(DamagedFileTest, ForeignHdf5) {
  const std::string path = Temp("foreign.h5");
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  auto file = CorpusFile::Open(path, {});
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("not a memtrain corpus"));
}

TEST_F(DamagedFileTest, Truncated) {
  const std::string path =
      CopyWith("truncated.h5", [](std::string* b) { b->resize(b->size() * 6 / 10); });
  auto file = CorpusFile::Open(path, {});
  absl::Status status = file.ok() ? (*file)->Verify() : file.status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr(path));
}

TEST_F(DamagedFileTest, FlippedBytesInTheTokensFailTheirChecksum) {
  // Tokens make up most of the file; flip a run of bytes in the middle.
  const std::string path = CopyWith("flipped.h5", [](std::string* b) {
    for (size_t i = b->size() / 2; i < b->size() / 2 + 64; ++i)
      (*b)[i] = static_cast<char>(~(*b)[i]);
  });
  auto file = CorpusFile::Open(path, {});
  absl::Status status = file.ok() ? (*file)->Verify() : file.status();
  EXPECT_FALSE(status.ok()) << "corruption went unnoticed";
  EXPECT_THAT(std::string(status.message()), HasSubstr(path));
}

TEST_F(DamagedFileTest, FilesWithDifferentTokenizersAreRefusedTogether) {
  PrepareOptions options;
  options.reader.corpus = Corpus::kDemo;
  options.reader.demo_documents = 50;
  options.reader.seed = 9;
  options.output = Temp("other_tokenizer.h5");
  options.train.vocab_size = 400;
  options.show_progress = false;
  ASSERT_TRUE(Prepare(options).ok());
  options.output = Temp("shared_tokenizer.h5");
  options.tokenizer_from_corpus = *good_;
  ASSERT_TRUE(Prepare(options).ok());
  auto good = CorpusFile::Open(*good_, {});
  auto other = CorpusFile::Open(Temp("other_tokenizer.h5"), {});
  auto shared = CorpusFile::Open(Temp("shared_tokenizer.h5"), {});
  ASSERT_TRUE(good.ok() && other.ok() && shared.ok());
  EXPECT_TRUE(CheckSameTokenizer(**good, **shared).ok());
  const absl::Status status = CheckSameTokenizer(**good, **other);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("different tokenizers"));
}

}  // namespace
}  // namespace memtrain::data
