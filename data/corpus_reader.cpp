#include "data/corpus_reader.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/child_process.h"
#include "common/status_macros.h"
#include "data/code_corpus.h"
#include "data/demo_corpus.h"
#include "data/internal/text.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"

namespace memtrain::data {
namespace {

struct CorpusInfo {
  Corpus corpus;
  const char* name;
  Task task;
};

constexpr CorpusInfo kCorpora[] = {
    {Corpus::kWikiText, "wikitext", Task::kLanguageModel},
    {Corpus::kWmt16, "wmt16", Task::kTranslation},
    {Corpus::kXsum, "xsum", Task::kSummarization},
    {Corpus::kOpenOrca, "openorca", Task::kQuestionAnswering},
    {Corpus::kDemo, "demo", Task::kLanguageModel},
    {Corpus::kCode, "code", Task::kLanguageModel},
};

constexpr bool InEnumOrder() {
  for (size_t i = 0; i < std::size(kCorpora); ++i) {
    if (static_cast<size_t>(kCorpora[i].corpus) != i) return false;
  }
  return true;
}
static_assert(InEnumOrder(), "kCorpora lists every Corpus, in enum order");

const CorpusInfo& InfoOf(Corpus corpus) { return kCorpora[static_cast<size_t>(corpus)]; }

// Malformed records skipped under kSkip are logged up to this many times per
// reader; the rest only count.
constexpr int64_t kLoggedSkips = 10;

using internal::IsBlank;
using internal::IsValidUtf8;

// ---- Moses escaping -----------------------------------------------------------

struct MosesEntity {
  absl::string_view escaped;
  char plain;
};

constexpr MosesEntity kMosesEntities[] = {
    {"&amp;", '&'},  {"&lt;", '<'},  {"&gt;", '>'},  {"&apos;", '\''},
    {"&quot;", '"'}, {"&#91;", '['}, {"&#93;", ']'}, {"&#124;", '|'},
};

// The entity `text` starts with, or nullptr.
const MosesEntity* EntityAt(absl::string_view text) {
  for (const MosesEntity& entity : kMosesEntities) {
    if (absl::StartsWith(text, entity.escaped)) return &entity;
  }
  return nullptr;
}

std::string MosesUnescape(absl::string_view text) {
  std::string result;
  result.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const MosesEntity* entity = text[i] == '&' ? EntityAt(text.substr(i)) : nullptr;
    if (entity != nullptr) {
      result.push_back(entity->plain);
      i += entity->escaped.size();
    } else {
      result.push_back(text[i]);
      ++i;
    }
  }
  return result;
}

// ---- Files and lines ----------------------------------------------------------

absl::Status CheckInputFile(const std::string& path) {
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (status.type() == std::filesystem::file_type::not_found) {
    return absl::NotFoundError(absl::StrCat("input file '", path, "' does not exist"));
  }
  if (status.type() == std::filesystem::file_type::directory) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", path, "' is a directory; list the corpus files themselves"));
  }
  return absl::OkStatus();
}

// How a parquet input becomes lines (data/parquet_rows.py streams it, with
// pyarrow): the columns every record needs, those read when present, and
// whether the one column's values are the lines themselves (WikiText) rather
// than one JSON object per row.
struct ParquetColumns {
  std::string required;  ///< comma-separated
  std::string optional;  ///< comma-separated
  bool text = false;
};

bool IsParquet(absl::string_view path) { return absl::EndsWith(path, ".parquet"); }

// The Python that runs data/parquet_rows.py: $MEMTRAIN_PYTHON, else the one
// the build was configured with (the project's .venv).
std::string ParquetPython() {
  const char* chosen = std::getenv("MEMTRAIN_PYTHON");
  return chosen != nullptr && *chosen != '\0' ? chosen : MEMTRAIN_DEFAULT_PYTHON;
}

// The lines of several files read one after the other, without "\n" or
// "\r\n"; a parquet file's lines are its rows (ParquetColumns).
class LineSource {
 public:
  struct Line {
    std::string text;
    size_t file_index = 0;
    int64_t number = 0;  ///< 1-based within its file (a parquet file: its row)
  };

  /// Adds the bytes it consumes to *bytes_read (of a parquet file: its size
  /// times the fraction of its rows read, so that progress stays in bytes).
  LineSource(std::vector<std::string> paths, int64_t* bytes_read,
             ParquetColumns parquet = ParquetColumns{})
      : paths_(std::move(paths)), bytes_read_(bytes_read), parquet_(std::move(parquet)) {}

  /// The next line, or nullopt after the last line of the last file.
  absl::StatusOr<std::optional<Line>> Next() {
    while (true) {
      if (!file_.is_open() && rows_ == nullptr) {
        if (next_file_ == paths_.size()) return std::nullopt;
        MEMTRAIN_RETURN_IF_ERROR(Open(next_file_++));
      }
      Line line;
      line.file_index = next_file_ - 1;
      if (rows_ != nullptr) {
        MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> row, rows_->ReadLine());
        if (row.has_value()) {
          line.text = std::move(*row);
          line.number = ++line_number_;
          const int64_t counted =
              parquet_bytes_ * line_number_ / std::max<int64_t>(parquet_rows_, 1);
          *bytes_read_ += counted - parquet_counted_;
          parquet_counted_ = counted;
          return line;
        }
        const absl::Status finished = rows_->Wait();
        rows_.reset();
        MEMTRAIN_RETURN_IF_ERROR(finished);
        continue;
      }
      if (std::getline(file_, line.text)) {
        *bytes_read_ += static_cast<int64_t>(line.text.size()) + (file_.eof() ? 0 : 1);
        if (!line.text.empty() && line.text.back() == '\r') line.text.pop_back();
        line.number = ++line_number_;
        return line;
      }
      if (file_.bad()) {
        return absl::DataLossError(absl::StrCat("reading '", paths_[next_file_ - 1],
                                                "' failed after line ", line_number_, ": ",
                                                std::strerror(errno)));
      }
      file_.close();
    }
  }

  std::string Where(const Line& line) const {
    const std::string& path = paths_[line.file_index];
    return absl::StrCat(path, IsParquet(path) ? ":row " : ":", line.number);
  }

 private:
  absl::Status Open(size_t index) {
    const std::string& path = paths_[index];
    MEMTRAIN_RETURN_IF_ERROR(CheckInputFile(path));
    line_number_ = 0;
    if (IsParquet(path)) return OpenParquet(path);
    file_.clear();
    file_.open(path, std::ios::binary);
    if (!file_.is_open()) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }

  absl::Status OpenParquet(const std::string& path) {
    ChildCommand command;
    command.argv = {ParquetPython(),
                    MEMTRAIN_PARQUET_ROWS_SCRIPT,
                    path,
                    "--columns",
                    parquet_.required,
                    "--optional",
                    parquet_.optional};
    if (parquet_.text) command.argv.push_back("--text");
    command.capture_stderr = true;
    MEMTRAIN_ASSIGN_OR_RETURN(rows_, ChildProcess::Start(command));
    // The first line is {"rows": N}; without it the child failed and says why.
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> header, rows_->ReadLine());
    const nlohmann::json parsed = nlohmann::json::parse(header.value_or(""), nullptr, false);
    if (!header.has_value() || !parsed.is_object() || !parsed.contains("rows") ||
        !parsed["rows"].is_number_integer()) {
      const absl::Status failed = rows_->Wait();
      rows_.reset();
      return absl::InvalidArgumentError(
          absl::StrCat("reading parquet '", path,
                       "' failed: ", failed.ok() ? "no row count" : failed.message()));
    }
    std::error_code error;
    parquet_bytes_ = static_cast<int64_t>(std::filesystem::file_size(path, error));
    parquet_rows_ = parsed["rows"].get<int64_t>();
    parquet_counted_ = 0;
    return absl::OkStatus();
  }

  std::vector<std::string> paths_;
  int64_t* bytes_read_;
  ParquetColumns parquet_;
  std::ifstream file_;
  std::unique_ptr<ChildProcess> rows_;  // the open parquet file's rows
  int64_t parquet_bytes_ = 0, parquet_rows_ = 0, parquet_counted_ = 0;
  size_t next_file_ = 0;
  int64_t line_number_ = 0;
};

// ---- The policy every file reader shares ----------------------------------------

// What a format parser found: a record, possibly malformed or empty.
struct Parsed {
  Record record;
  std::string problem;  ///< why the record is malformed; empty when it is not
  bool empty = false;   ///< no text where the task needs some
};

class FileReader : public CorpusReader {
 public:
  explicit FileReader(BadRecordPolicy policy) : policy_(policy) {}

  absl::StatusOr<std::optional<Record>> Next() final {
    if (!failed_.ok()) return failed_;
    absl::StatusOr<std::optional<Record>> result = NextRecord();
    if (!result.ok()) failed_ = result.status();
    return result;
  }

  const ReaderStats& stats() const final { return stats_; }

 protected:
  /// The next record as the file has it, or nullopt at the end of the inputs.
  virtual absl::StatusOr<std::optional<Parsed>> Parse() = 0;

  ReaderStats stats_;

 private:
  absl::StatusOr<std::optional<Record>> NextRecord() {
    while (true) {
      MEMTRAIN_ASSIGN_OR_RETURN(std::optional<Parsed> parsed, Parse());
      if (!parsed.has_value()) return std::nullopt;
      if (!parsed->problem.empty()) {
        const std::string message = absl::StrCat(parsed->record.where, ": ", parsed->problem);
        if (policy_ == BadRecordPolicy::kFail) {
          return absl::InvalidArgumentError(absl::StrCat(
              message, " (BadRecordPolicy::kSkip counts and skips malformed records)"));
        }
        if (++stats_.malformed_skipped <= kLoggedSkips) {
          LOG(WARNING) << "[data] skipping malformed record " << message;
        }
        continue;
      }
      if (parsed->empty) {
        ++stats_.empty_skipped;
        continue;
      }
      ++stats_.records;
      return std::move(parsed->record);
    }
  }

  BadRecordPolicy policy_;
  absl::Status failed_;
};

std::vector<TextSegment> OneSegment(std::string text) {
  std::vector<TextSegment> segments(1);
  segments[0].text = std::move(text);
  return segments;
}

// ---- WikiText -------------------------------------------------------------------

// " = Title = " starts an article; " = = Section = = " and deeper do not.
bool IsArticleHeading(absl::string_view line) {
  line = absl::StripAsciiWhitespace(line);
  return line.size() >= 5 && absl::StartsWith(line, "= ") && absl::EndsWith(line, " =") &&
         line[2] != '=' && line[line.size() - 3] != '=';
}

class WikiTextReader : public FileReader {
 public:
  explicit WikiTextReader(const ReaderOptions& options)
      : FileReader(options.on_bad_record),
        lines_(options.inputs, &stats_.bytes_read, ParquetColumns{"text", "", /*text=*/true}) {}

 protected:
  absl::StatusOr<std::optional<Parsed>> Parse() override {
    Parsed parsed;
    std::vector<LineSource::Line> article;
    while (true) {
      std::optional<LineSource::Line> line = std::move(pending_);
      pending_.reset();
      if (!line.has_value()) {
        MEMTRAIN_ASSIGN_OR_RETURN(line, lines_.Next());
        if (!line.has_value()) break;
      }
      // An article ends at the next article's heading or at the end of its file.
      if (!article.empty() &&
          (line->file_index != article.front().file_index || IsArticleHeading(line->text))) {
        pending_ = std::move(line);
        break;
      }
      if (IsBlank(line->text)) continue;
      if (parsed.problem.empty() && !IsValidUtf8(line->text)) {
        parsed.problem = absl::StrCat("line ", lines_.Where(*line), " is not valid UTF-8");
      }
      article.push_back(std::move(*line));
    }
    if (article.empty()) return std::nullopt;
    parsed.record.where = lines_.Where(article.front());
    std::string text;
    for (const LineSource::Line& line : article) {
      if (!text.empty()) text.push_back('\n');
      absl::StrAppend(&text, absl::StripTrailingAsciiWhitespace(line.text));
    }
    parsed.record.source = OneSegment(std::move(text));
    return parsed;
  }

 private:
  LineSource lines_;
  std::optional<LineSource::Line> pending_;  // read, but belongs to the next article
};

// ---- JSON lines (XSUM, OpenOrca, the hub's WMT16)
// ------------------------------------------------

// The string member `name`; nullopt when absent and optional.
absl::StatusOr<std::optional<std::string>> StringMember(const nlohmann::json& object,
                                                        const char* name, bool required) {
  const auto it = object.find(name);
  if (it == object.end()) {
    if (!required) return std::nullopt;
    return absl::InvalidArgumentError(absl::StrCat("missing field '", name, "'"));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", name, "' must be a string, got ", it->type_name()));
  }
  return it->get<std::string>();
}

// Ids are strings in some XSUM dumps and integers in others.
absl::StatusOr<std::string> IdMember(const nlohmann::json& object) {
  const auto it = object.find("id");
  if (it == object.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return it->dump();
  return absl::InvalidArgumentError(
      absl::StrCat("field 'id' must be a string or an integer, got ", it->type_name()));
}

// Fills parsed->record from one JSON object of the corpus; an error is a
// malformed record.
using JsonToRecord = absl::Status (*)(const nlohmann::json& object, const ReaderOptions& options,
                                      Parsed* parsed);

absl::Status XsumToRecord(const nlohmann::json& object, const ReaderOptions&, Parsed* parsed) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> document,
                            StringMember(object, "document", /*required=*/true));
  MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> summary,
                            StringMember(object, "summary", /*required=*/true));
  MEMTRAIN_ASSIGN_OR_RETURN(parsed->record.id, IdMember(object));
  parsed->empty = IsBlank(*document) || IsBlank(*summary);
  parsed->record.source = OneSegment(std::move(*document));
  parsed->record.target = OneSegment(std::move(*summary));
  return absl::OkStatus();
}

absl::Status OpenOrcaToRecord(const nlohmann::json& object, const ReaderOptions&, Parsed* parsed) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> system_prompt,
                            StringMember(object, "system_prompt", /*required=*/false));
  MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> question,
                            StringMember(object, "question", /*required=*/true));
  MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> response,
                            StringMember(object, "response", /*required=*/true));
  MEMTRAIN_ASSIGN_OR_RETURN(parsed->record.id, IdMember(object));
  parsed->empty = IsBlank(*question) || IsBlank(*response);
  if (system_prompt.has_value() && !IsBlank(*system_prompt)) {
    parsed->record.source = OneSegment(std::move(*system_prompt));
  }
  TextSegment question_segment;
  question_segment.text = std::move(*question);
  question_segment.separator_before = true;
  parsed->record.source.push_back(std::move(question_segment));
  parsed->record.target = OneSegment(std::move(*response));
  return absl::OkStatus();
}

// The Hugging Face hub's WMT16 rows: {"translation": {"de": ..., "en": ...}},
// the source and target languages chosen by ReaderOptions::wmt_direction.
absl::Status TranslationToRecord(const nlohmann::json& object, const ReaderOptions& options,
                                 Parsed* parsed) {
  const auto translation = object.find("translation");
  if (translation == object.end() || !translation->is_object()) {
    return absl::InvalidArgumentError(
        "expected a field 'translation' holding one string per language");
  }
  std::string text[2];
  const std::string* languages[2] = {&options.wmt_direction.source, &options.wmt_direction.target};
  for (int side = 0; side < 2; ++side) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> found,
                              StringMember(*translation, languages[side]->c_str(), true));
    text[side] = std::move(*found);
  }
  parsed->empty = IsBlank(text[0]) || IsBlank(text[1]);
  parsed->record.source = OneSegment(std::move(text[0]));
  parsed->record.target = OneSegment(std::move(text[1]));
  return absl::OkStatus();
}

class JsonLinesReader : public FileReader {
 public:
  /// `parquet`: the columns to_record reads, for parquet inputs.
  JsonLinesReader(const ReaderOptions& options, JsonToRecord to_record, ParquetColumns parquet)
      : FileReader(options.on_bad_record),
        options_(options),
        lines_(options.inputs, &stats_.bytes_read, std::move(parquet)),
        to_record_(to_record) {}

 protected:
  absl::StatusOr<std::optional<Parsed>> Parse() override {
    std::optional<LineSource::Line> line;
    do {  // blank lines separate nothing in JSON lines; they are not records
      MEMTRAIN_ASSIGN_OR_RETURN(line, lines_.Next());
      if (!line.has_value()) return std::nullopt;
    } while (IsBlank(line->text));
    Parsed parsed;
    parsed.record.where = lines_.Where(*line);
    nlohmann::json object;
    try {
      object = nlohmann::json::parse(line->text);
    } catch (const nlohmann::json::exception& error) {
      parsed.problem = absl::StrCat("invalid JSON: ", error.what());
      return parsed;
    }
    if (!object.is_object()) {
      parsed.problem = absl::StrCat("expected a JSON object, got ", object.type_name());
      return parsed;
    }
    if (absl::Status status = to_record_(object, options_, &parsed); !status.ok()) {
      parsed.problem = std::string(status.message());
    }
    return parsed;
  }

 private:
  const ReaderOptions options_;
  LineSource lines_;
  JsonToRecord to_record_;
};

// ---- WMT16 ------------------------------------------------------------------------

struct TextFileScan {
  int64_t lines = 0;
  bool has_entity = false;          ///< one of kMosesEntities occurs
  bool has_bare_ampersand = false;  ///< an '&' that starts none of them occurs
};

absl::StatusOr<TextFileScan> ScanTextFile(const std::string& path) {
  int64_t bytes = 0;
  LineSource lines({path}, &bytes);
  TextFileScan scan;
  while (true) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<LineSource::Line> line, lines.Next());
    if (!line.has_value()) return scan;
    ++scan.lines;
    for (size_t at = line->text.find('&'); at != std::string::npos;
         at = line->text.find('&', at + 1)) {
      if (EntityAt(absl::string_view(line->text).substr(at)) != nullptr) {
        scan.has_entity = true;
      } else {
        scan.has_bare_ampersand = true;
      }
    }
  }
}

bool ShouldUnescape(MosesEscaping escaping, const TextFileScan& scan) {
  switch (escaping) {
    case MosesEscaping::kEscaped:
      return true;
    case MosesEscaping::kPlain:
      return false;
    case MosesEscaping::kAuto:
      return scan.has_entity && !scan.has_bare_ampersand;
  }
  return false;
}

absl::StatusOr<bool> ShouldUnescapeFile(MosesEscaping escaping, const std::string& path) {
  if (escaping != MosesEscaping::kAuto) return ShouldUnescape(escaping, TextFileScan());
  MEMTRAIN_ASSIGN_OR_RETURN(TextFileScan scan, ScanTextFile(path));
  return ShouldUnescape(escaping, scan);
}

// Fills one side of a translation example; records the first problem.
void SetSide(absl::string_view text, bool unescape, absl::string_view side_where,
             std::vector<TextSegment>* side, Parsed* parsed) {
  if (!IsValidUtf8(text) && parsed->problem.empty()) {
    parsed->problem = absl::StrCat(side_where, " is not valid UTF-8");
  }
  if (IsBlank(text)) parsed->empty = true;
  *side = OneSegment(unescape ? MosesUnescape(text) : std::string(text));
}

// Two line-aligned files: line i of the target translates line i of the source.
class WmtPairReader : public FileReader {
 public:
  WmtPairReader(const ReaderOptions& options, bool unescape_source, bool unescape_target)
      : FileReader(options.on_bad_record),
        source_({options.inputs[0]}, &stats_.bytes_read),
        target_({options.inputs[1]}, &stats_.bytes_read),
        unescape_source_(unescape_source),
        unescape_target_(unescape_target) {}

 protected:
  absl::StatusOr<std::optional<Parsed>> Parse() override {
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<LineSource::Line> source, source_.Next());
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<LineSource::Line> target, target_.Next());
    if (!source.has_value() && !target.has_value()) return std::nullopt;
    if (!source.has_value() || !target.has_value()) {
      // OpenCorpusReader compared the line counts, so a file changed since.
      return absl::DataLossError(
          absl::StrCat("WMT16 source and target files changed length while being read (at ",
                       source.has_value() ? source_.Where(*source) : target_.Where(*target), ")"));
    }
    Parsed parsed;
    parsed.record.where = source_.Where(*source);
    SetSide(source->text, unescape_source_, absl::StrCat("source line ", source_.Where(*source)),
            &parsed.record.source, &parsed);
    SetSide(target->text, unescape_target_, absl::StrCat("target line ", target_.Where(*target)),
            &parsed.record.target, &parsed);
    return parsed;
  }

 private:
  LineSource source_;
  LineSource target_;
  bool unescape_source_;
  bool unescape_target_;
};

// One or more files of "source<TAB>target" lines.
class WmtTsvReader : public FileReader {
 public:
  WmtTsvReader(const ReaderOptions& options, std::vector<bool> unescape)
      : FileReader(options.on_bad_record),
        lines_(options.inputs, &stats_.bytes_read),
        unescape_(std::move(unescape)) {}

 protected:
  absl::StatusOr<std::optional<Parsed>> Parse() override {
    MEMTRAIN_ASSIGN_OR_RETURN(std::optional<LineSource::Line> line, lines_.Next());
    if (!line.has_value()) return std::nullopt;
    Parsed parsed;
    parsed.record.where = lines_.Where(*line);
    const size_t tab = line->text.find('\t');
    if (tab == std::string::npos || line->text.find('\t', tab + 1) != std::string::npos) {
      const auto tabs = std::count(line->text.begin(), line->text.end(), '\t');
      parsed.problem =
          absl::StrCat("expected source<TAB>target (exactly one tab), found ", tabs, " tabs");
      return parsed;
    }
    const absl::string_view text = line->text;
    const bool unescape = unescape_[line->file_index];
    SetSide(text.substr(0, tab), unescape, "the source column", &parsed.record.source, &parsed);
    SetSide(text.substr(tab + 1), unescape, "the target column", &parsed.record.target, &parsed);
    return parsed;
  }

 private:
  LineSource lines_;
  std::vector<bool> unescape_;  // per input file
};

absl::StatusOr<std::unique_ptr<CorpusReader>> OpenWmtReader(const ReaderOptions& options) {
  const auto is_hub_file = [](const std::string& p) {
    return IsParquet(p) || absl::EndsWith(p, ".jsonl") || absl::EndsWith(p, ".json");
  };
  const int64_t hub_files =
      std::count_if(options.inputs.begin(), options.inputs.end(), is_hub_file);
  if (hub_files == static_cast<int64_t>(options.inputs.size())) {
    return std::make_unique<JsonLinesReader>(options, &TranslationToRecord,
                                             ParquetColumns{"translation", ""});
  }
  if (hub_files > 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "wmt16 inputs are either all the hub's parquet/JSON-lines files ({\"translation\": "
        "{...}}) or text files; got a mix: ",
        absl::StrJoin(options.inputs, ", ")));
  }
  const bool all_tsv = std::all_of(options.inputs.begin(), options.inputs.end(),
                                   [](const std::string& p) { return absl::EndsWith(p, ".tsv"); });
  if (all_tsv) {
    std::vector<bool> unescape;
    for (const std::string& path : options.inputs) {
      MEMTRAIN_ASSIGN_OR_RETURN(bool file_unescape, ShouldUnescapeFile(options.wmt_escaping, path));
      unescape.push_back(file_unescape);
    }
    return std::make_unique<WmtTsvReader>(options, std::move(unescape));
  }
  if (options.inputs.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("wmt16 takes a source file and its line-aligned target file, or .tsv files "
                     "(source<TAB>target); got ",
                     options.inputs.size(), " inputs: ", absl::StrJoin(options.inputs, ", ")));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(TextFileScan source, ScanTextFile(options.inputs[0]));
  MEMTRAIN_ASSIGN_OR_RETURN(TextFileScan target, ScanTextFile(options.inputs[1]));
  if (source.lines != target.lines) {
    return absl::InvalidArgumentError(absl::StrCat(
        "wmt16 source and target must have the same number of lines (line i translates line "
        "i): ",
        options.inputs[0], " has ", source.lines, " lines, ", options.inputs[1], " has ",
        target.lines, " lines"));
  }
  return std::make_unique<WmtPairReader>(options, ShouldUnescape(options.wmt_escaping, source),
                                         ShouldUnescape(options.wmt_escaping, target));
}

}  // namespace

bool AbslParseFlag(absl::string_view text, WmtDirection* value, std::string* error) {
  const std::vector<std::string> parts = absl::StrSplit(text, '-');
  if (parts.size() != 2 || parts[0].empty() || parts[1].empty() || parts[0] == parts[1]) {
    *error = absl::StrCat("expected SOURCE-TARGET language codes such as en-de, got '", text, "'");
    return false;
  }
  value->source = parts[0];
  value->target = parts[1];
  return true;
}

std::string AbslUnparseFlag(const WmtDirection& value) {
  return absl::StrCat(value.source, "-", value.target);
}

absl::StatusOr<Corpus> ParseCorpus(absl::string_view name) {
  std::vector<std::string> names;
  for (const CorpusInfo& info : kCorpora) {
    if (name == info.name) return info.corpus;
    names.push_back(info.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown corpus '", name, "'; valid corpora: ", absl::StrJoin(names, ", ")));
}

std::string CorpusName(Corpus corpus) { return InfoOf(corpus).name; }

Task TaskOf(Corpus corpus) { return InfoOf(corpus).task; }

absl::StatusOr<std::unique_ptr<CorpusReader>> OpenCorpusReader(const ReaderOptions& options) {
  if (options.corpus == Corpus::kDemo) return OpenDemoCorpusReader(options);
  if (options.corpus == Corpus::kCode) return OpenCodeCorpusReader(options);
  if (options.inputs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("corpus ", CorpusName(options.corpus), " needs input files; none given"));
  }
  for (const std::string& path : options.inputs) MEMTRAIN_RETURN_IF_ERROR(CheckInputFile(path));
  switch (options.corpus) {
    case Corpus::kWikiText:
      return std::make_unique<WikiTextReader>(options);
    case Corpus::kWmt16:
      return OpenWmtReader(options);
    case Corpus::kXsum:
      return std::make_unique<JsonLinesReader>(options, &XsumToRecord,
                                               ParquetColumns{"document,summary", "id"});
    case Corpus::kOpenOrca:
      return std::make_unique<JsonLinesReader>(
          options, &OpenOrcaToRecord, ParquetColumns{"question,response", "id,system_prompt"});
    case Corpus::kDemo:
    case Corpus::kCode:
      break;
  }
  return absl::InternalError(
      absl::StrCat("OpenCorpusReader: unhandled corpus ", static_cast<int>(options.corpus)));
}

}  // namespace memtrain::data
