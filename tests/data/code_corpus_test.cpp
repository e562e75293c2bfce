// The code reader on a small tree: walk order, what is left out and counted,
// documents per file and per package with their whitespace intact, symbolic
// link loops, and errors that name the path or knob.
#include "data/code_corpus.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace memtrain::data {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class CodeCorpusTest : public ::testing::Test {
 protected:
  // A fresh tree for this test:
  //   a.py             BOM, blank lines, indentation
  //   b_pkg/__init__.py  empty
  //   b_pkg/sub/a.py   CRLF line ends, a tab
  //   b_pkg/z.py
  //   bad.py           Latin-1, not UTF-8
  //   big.py           over the 200-byte bound the tests set
  //   c.py             no newline at the end
  //   notes.txt, __pycache__/c.py, .hidden/d.py   never read
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            absl::StrCat("code_corpus_test_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    Write("a.py", "\xEF\xBB\xBFimport os\n\n\n    # indented\n");
    Write("b_pkg/__init__.py", "");
    Write("b_pkg/sub/a.py", "class A:\r\n\tpass\r\n");
    Write("b_pkg/z.py", "def z():\n    return 1\n");
    Write("bad.py", "name = 'caf\xE9'\n");
    std::string big;
    for (int i = 0; i < 50; ++i) big += "x = 1\n";
    Write("big.py", big);
    Write("c.py", "print('c')");
    Write("notes.txt", "not code\n");
    Write("__pycache__/c.py", "cached = True\n");
    Write(".hidden/d.py", "hidden = True\n");
  }

  void Write(const std::string& relative, const std::string& contents) {
    const fs::path path = root_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << contents;
  }

  ReaderOptions Options() const {
    ReaderOptions options;
    options.corpus = Corpus::kCode;
    options.inputs = {root_.string()};
    options.code_max_file_bytes = 200;
    return options;
  }

  std::string Path(const std::string& relative) const { return (root_ / relative).string(); }

  // Every document's text, or the first error.
  static absl::StatusOr<std::vector<std::string>> ReadAll(
      const ReaderOptions& options, ReaderStats* stats = nullptr,
      std::vector<std::string>* where = nullptr) {
    absl::StatusOr<std::unique_ptr<CorpusReader>> reader = OpenCorpusReader(options);
    if (!reader.ok()) return reader.status();
    std::vector<std::string> texts;
    while (true) {
      absl::StatusOr<std::optional<Record>> record = (*reader)->Next();
      if (!record.ok()) return record.status();
      if (!record->has_value()) break;
      if ((*record)->source.size() != 1 || !(*record)->target.empty()) {
        return absl::InternalError("a code document is one source segment");
      }
      texts.push_back((*record)->source[0].text);
      if (where != nullptr) where->push_back((*record)->where);
    }
    if (stats != nullptr) *stats = (*reader)->stats();
    return texts;
  }

  fs::path root_;
};

TEST_F(CodeCorpusTest, CodeIsAnLmCorpus) {
  absl::StatusOr<Corpus> corpus = ParseCorpus("code");
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  EXPECT_EQ(*corpus, Corpus::kCode);
  EXPECT_EQ(TaskName(TaskOf(Corpus::kCode)), "lm");
}

TEST_F(CodeCorpusTest, ListsFilesDepthFirstInByteOrderLeavingOutCachesAndHiddenEntries) {
  absl::StatusOr<std::vector<CodeFile>> files = ListCodeFiles(Options());
  ASSERT_TRUE(files.ok()) << files.status();
  std::vector<std::string> relative;
  for (const CodeFile& file : *files) {
    relative.push_back(file.relative);
    EXPECT_EQ(file.path, Path(file.relative));
    EXPECT_EQ(file.input, 0u);
  }
  // "b_pkg" < "bad.py" ('_' < 'a'); "__init__.py" < "sub" < "z.py".
  EXPECT_THAT(relative, ElementsAre("a.py", "b_pkg/__init__.py", "b_pkg/sub/a.py", "b_pkg/z.py",
                                    "bad.py", "big.py", "c.py"));
}

TEST_F(CodeCorpusTest, OneDocumentPerFileWithWhitespaceKept) {
  ReaderStats stats;
  std::vector<std::string> where;
  absl::StatusOr<std::vector<std::string>> texts = ReadAll(Options(), &stats, &where);
  ASSERT_TRUE(texts.ok()) << texts.status();
  EXPECT_THAT(*texts, ElementsAre("import os\n\n\n    # indented\n", "class A:\n\tpass\n",
                                  "def z():\n    return 1\n", "print('c')"));
  EXPECT_THAT(where, ElementsAre(Path("a.py") + ":1", Path("b_pkg/sub/a.py") + ":1",
                                 Path("b_pkg/z.py") + ":1", Path("c.py") + ":1"));
  EXPECT_EQ(stats.records, 4);
  EXPECT_EQ(stats.empty_skipped, 1);  // b_pkg/__init__.py
  EXPECT_EQ(stats.files_not_utf8, 1);
  EXPECT_EQ(stats.files_too_large, 1);
  EXPECT_EQ(stats.short_skipped, 0);
  EXPECT_EQ(stats.malformed_skipped, 0);
  // Every file read, the BOM and the carriage returns included; big.py is not read.
  uintmax_t bytes = 0;
  for (const char* read : {"a.py", "b_pkg/sub/a.py", "b_pkg/z.py", "bad.py", "c.py"}) {
    bytes += fs::file_size(Path(read));
  }
  EXPECT_EQ(stats.bytes_read, static_cast<int64_t>(bytes));
}

TEST_F(CodeCorpusTest, OneDocumentPerPackageNamesEachFile) {
  ReaderOptions options = Options();
  options.code_document = CodeDocument::kPackage;
  ReaderStats stats;
  std::vector<std::string> where;
  absl::StatusOr<std::vector<std::string>> texts = ReadAll(options, &stats, &where);
  ASSERT_TRUE(texts.ok()) << texts.status();
  EXPECT_THAT(*texts, ElementsAre("# file: a.py\nimport os\n\n\n    # indented\n",
                                  "# file: b_pkg/sub/a.py\nclass A:\n\tpass\n"
                                  "# file: b_pkg/z.py\ndef z():\n    return 1\n",
                                  "# file: c.py\nprint('c')\n"));
  EXPECT_THAT(where, ElementsAre(Path("a.py"), Path("b_pkg"), Path("c.py")));
  EXPECT_EQ(stats.records, 3);
  EXPECT_EQ(stats.empty_skipped, 2);  // bad.py and big.py hold no file that is read
  EXPECT_EQ(stats.files_not_utf8, 1);
  EXPECT_EQ(stats.files_too_large, 1);
}

TEST_F(CodeCorpusTest, PackagesSelectTopLevelEntriesInWalkOrder) {
  ReaderOptions options = Options();
  options.code_packages = {"c.py", "b_pkg"};
  options.code_document = CodeDocument::kPackage;
  std::vector<std::string> where;
  absl::StatusOr<std::vector<std::string>> texts = ReadAll(options, nullptr, &where);
  ASSERT_TRUE(texts.ok()) << texts.status();
  EXPECT_THAT(where, ElementsAre(Path("b_pkg"), Path("c.py")));
}

TEST_F(CodeCorpusTest, ShortDocumentsAreCountedAndSkipped) {
  ReaderOptions options = Options();
  options.code_min_document_bytes = 20;
  ReaderStats stats;
  absl::StatusOr<std::vector<std::string>> texts = ReadAll(options, &stats);
  ASSERT_TRUE(texts.ok()) << texts.status();
  EXPECT_THAT(*texts, ElementsAre("import os\n\n\n    # indented\n", "def z():\n    return 1\n"));
  EXPECT_EQ(stats.short_skipped, 2);  // "class A:\n\tpass\n" (15 bytes), "print('c')" (10)
}

TEST_F(CodeCorpusTest, OtherExtensions) {
  ReaderOptions options = Options();
  options.code_extensions = {".txt", "z.py"};
  absl::StatusOr<std::vector<std::string>> texts = ReadAll(options);
  ASSERT_TRUE(texts.ok()) << texts.status();
  EXPECT_THAT(*texts, ElementsAre("def z():\n    return 1\n", "not code\n"));
}

TEST_F(CodeCorpusTest, SymbolicLinkLoopsAndRepeatsAreEnteredOnce) {
  fs::create_directory_symlink(root_, root_ / "b_pkg" / "sub" / "loop");
  fs::create_directory_symlink(root_ / "b_pkg", root_ / "z_again");
  absl::StatusOr<std::vector<CodeFile>> files = ListCodeFiles(Options());
  ASSERT_TRUE(files.ok()) << files.status();
  std::vector<std::string> relative;
  for (const CodeFile& file : *files) relative.push_back(file.relative);
  EXPECT_THAT(relative, ElementsAre("a.py", "b_pkg/__init__.py", "b_pkg/sub/a.py", "b_pkg/z.py",
                                    "bad.py", "big.py", "c.py"));
}

TEST_F(CodeCorpusTest, ErrorsNameThePathOrTheKnob) {
  ReaderOptions options = Options();
  options.inputs = {Path("missing")};
  absl::StatusOr<std::vector<std::string>> texts = ReadAll(options);
  EXPECT_EQ(texts.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(texts.status().message(),
              HasSubstr(absl::StrCat("input directory '", Path("missing"), "' does not exist")));

  options.inputs = {Path("a.py")};
  texts = ReadAll(options);
  EXPECT_EQ(texts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(texts.status().message(), HasSubstr(absl::StrCat("'", Path("a.py"), "' is not a")));

  Write("compiled/__pycache__/x.py", "");
  Write("compiled/x.pyc", "");
  options.inputs = {Path("compiled")};
  texts = ReadAll(options);
  EXPECT_EQ(texts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      texts.status().message(),
      HasSubstr(absl::StrCat("no source files under '", Path("compiled"), "': none ends in .py")));

  options = Options();
  options.code_packages = {"b_pkg", "email"};
  texts = ReadAll(options);
  EXPECT_EQ(texts.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(texts.status().message(), HasSubstr("code package 'email' is under none of"));

  options = Options();
  options.code_extensions = {".py", ""};
  texts = ReadAll(options);
  EXPECT_EQ(texts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(texts.status().message(), HasSubstr("code_extensions holds an empty ending"));

  options = Options();
  options.code_min_document_bytes = -1;
  texts = ReadAll(options);
  EXPECT_THAT(texts.status().message(), HasSubstr("code_min_document_bytes=-1"));
}

TEST_F(CodeCorpusTest, DocumentKindFlagValues) {
  CodeDocument kind = CodeDocument::kFile;
  std::string error;
  ASSERT_TRUE(AbslParseFlag("package", &kind, &error));
  EXPECT_EQ(kind, CodeDocument::kPackage);
  EXPECT_EQ(AbslUnparseFlag(kind), "package");
  EXPECT_FALSE(AbslParseFlag("repo", &kind, &error));
  EXPECT_THAT(error, HasSubstr("'repo' is not a code document kind: file, package"));
}

}  // namespace
}  // namespace memtrain::data
