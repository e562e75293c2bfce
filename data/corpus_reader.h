// File: data/corpus_reader.h
//
// Streams records out of the raw corpus files (WikiText, WMT16, XSUM, OpenOrca),
// out of a tree of source code (data/code_corpus.h) or out of the built-in demo
// generator, one record at a time, so the prepare
// tool never holds a corpus in memory. Formats, delimiters, escaping and what
// counts as malformed or empty: docs/DATA.md §3.
//
//   ReaderOptions options;
//   options.corpus = Corpus::kWmt16;
//   options.inputs = {"newstest2015.en", "newstest2015.de"};
//   MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CorpusReader> reader, OpenCorpusReader(options));
//   while (true) {
//     MEMTRAIN_ASSIGN_OR_RETURN(std::optional<Record> record, reader->Next());
//     if (!record.has_value()) break;
//     ...
//   }
//
// Errors: a missing input is kNotFound naming it; options that do not fit the
// corpus (wrong number of files, WMT16 files of different lengths, knobs out of
// range) are kInvalidArgument from OpenCorpusReader, before any record is read.
// A malformed record is kInvalidArgument naming path:line and the problem, or is
// counted and skipped under BadRecordPolicy::kSkip. An error from Next() is
// final: later calls return it again.
#ifndef MEMTRAIN_DATA_CORPUS_READER_H_
#define MEMTRAIN_DATA_CORPUS_READER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/task.h"

namespace memtrain::data {

enum class Corpus { kWikiText, kWmt16, kXsum, kOpenOrca, kDemo, kCode };

/// "wikitext", "wmt16", "xsum", "openorca", "demo" or "code"; anything else is
/// kInvalidArgument listing the valid names.
absl::StatusOr<Corpus> ParseCorpus(absl::string_view name);
/// The name ParseCorpus accepts.
std::string CorpusName(Corpus corpus);

/// wikitext, demo, code -> lm; wmt16 -> translation; xsum -> summarization; openorca -> qa.
Task TaskOf(Corpus corpus);

/// A piece of text. The tokenizer encodes each segment separately and
/// concatenates the ids, so segment boundaries fall where a word boundary is
/// (before a space).
struct TextSegment {
  std::string text;
  bool long_range = false;        ///< demo: tokens the evaluation scores separately
  bool separator_before = false;  ///< QA: the tokenizer inserts <sep> before this segment
};

/// One LM document, or one seq2seq example.
struct Record {
  /// LM: the document. seq2seq: the input (QA: the system prompt when there is
  /// one, then the question with separator_before=true).
  std::vector<TextSegment> source;
  /// seq2seq only: the translation, summary or response.
  std::vector<TextSegment> target;
  std::string id;     ///< XSUM/OpenOrca id as text ("" if none)
  std::string where;  ///< "path:line" of the record's first line (a code package: its path)
};

enum class BadRecordPolicy { kFail, kSkip };

struct ReaderStats {
  int64_t records = 0;            ///< records returned by Next()
  int64_t malformed_skipped = 0;  ///< malformed records skipped under kSkip
  int64_t empty_skipped = 0;      ///< records without text, always skipped
  int64_t bytes_read = 0;         ///< input bytes consumed (demo: text bytes generated)
  // Code only: source files left out of every document, and short documents.
  int64_t files_not_utf8 = 0;   ///< files that are not valid UTF-8 (other encodings)
  int64_t files_too_large = 0;  ///< files over code_max_file_bytes, not read
  int64_t short_skipped = 0;    ///< documents under code_min_document_bytes
};

/// How WMT16 text is escaped. Moses' tokenizer writes & < > ' " [ ] | as
/// &amp; &lt; &gt; &apos; &quot; &#91; &#93; &#124;.
enum class MosesEscaping {
  /// Per file: escaped when the file holds at least one of those entities and
  /// no '&' that starts none of them (costs one extra pass over the file).
  kAuto,
  kEscaped,  ///< always unescape
  kPlain,    ///< never unescape
};

/// What one code document is (data/code_corpus.h).
enum class CodeDocument {
  kFile,     ///< one source file
  kPackage,  ///< a top-level entry of an input directory, its files concatenated
};
/// "file" or "package", for --code_document.
bool AbslParseFlag(absl::string_view text, CodeDocument* value, std::string* error);
std::string AbslUnparseFlag(CodeDocument value);

/// Which language of a WMT16 row of the Hugging Face hub ({"translation":
/// {"de": ..., "en": ...}}) is the source; --wmt_direction=en-de.
struct WmtDirection {
  std::string source = "en";
  std::string target = "de";
};
bool AbslParseFlag(absl::string_view text, WmtDirection* value, std::string* error);
std::string AbslUnparseFlag(const WmtDirection& value);

struct ReaderOptions {
  Corpus corpus = Corpus::kDemo;
  /// wikitext: one or more .tokens/.raw files, read in order. wmt16: a source
  /// file and its line-aligned target file, or one or more .tsv files
  /// (source<TAB>target). xsum, openorca: one or more JSON-lines files.
  /// Besides, for all four, the Hugging Face hub's .parquet files (wmt16 also
  /// its JSON lines), read through data/parquet_rows.py (pyarrow).
  /// code: one or more directories. demo: none.
  std::vector<std::string> inputs;
  BadRecordPolicy on_bad_record = BadRecordPolicy::kFail;
  /// wmt16 only.
  MosesEscaping wmt_escaping = MosesEscaping::kAuto;
  WmtDirection wmt_direction;  ///< wmt16 parquet/JSON lines only

  // Demo only (data/demo_corpus.h says what the generator writes).
  uint64_t seed = 1;                   ///< same seed, same knobs: byte-identical records
  int64_t demo_documents = 2000;       ///< documents generated (>= 1)
  int demo_facts_per_document = 4;     ///< facts stated, and asked for, per document (1..16)
  int64_t demo_distance_words = 1000;  ///< filler words between the facts and the questions (>= 0)
  /// After the filler, repeat the facts line word for word ("Recall :"),
  /// every name in it long-range, instead of asking questions.
  bool demo_recall = false;

  // Code only (data/code_corpus.h says how the directories are walked).
  CodeDocument code_document = CodeDocument::kFile;
  std::vector<std::string> code_extensions = {".py"};  ///< file name endings read (>= 1)
  /// Top-level entries of the input directories to read (directories, or
  /// files such as "os.py"); all of them when empty.
  std::vector<std::string> code_packages;
  int64_t code_max_file_bytes = int64_t{1} << 20;  ///< larger files are counted, not read (>= 1)
  int64_t code_min_document_bytes = 0;  ///< shorter documents are counted and skipped (>= 0)
};

class CorpusReader {
 public:
  virtual ~CorpusReader() = default;

  /// The next record, or nullopt at the end (and on every later call). A
  /// malformed record: kInvalidArgument naming path:line and what is wrong
  /// (kFail), or counted in stats() and skipped (kSkip). Empty documents or
  /// examples (no non-whitespace text) are always counted and skipped.
  virtual absl::StatusOr<std::optional<Record>> Next() = 0;
  virtual const ReaderStats& stats() const = 0;
};

/// Checks the options against the corpus and opens the inputs.
absl::StatusOr<std::unique_ptr<CorpusReader>> OpenCorpusReader(const ReaderOptions& options);

}  // namespace memtrain::data

#endif  // MEMTRAIN_DATA_CORPUS_READER_H_
