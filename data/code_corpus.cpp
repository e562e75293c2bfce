#include "data/code_corpus.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/enum_names.h"
#include "common/status_macros.h"
#include "data/internal/text.h"
#include "glog/logging.h"

namespace memtrain::data {
namespace {

namespace fs = std::filesystem;

// Skipped files and documents are logged up to this many times per reader;
// the rest only count.
constexpr int64_t kLoggedSkips = 10;

const EnumNames<CodeDocument>& CodeDocumentNames() {
  static const auto* names = new EnumNames<CodeDocument>(
      "code document kind", {{CodeDocument::kFile, "file"}, {CodeDocument::kPackage, "package"}});
  return *names;
}

// ---- The walk -------------------------------------------------------------------

struct Walk {
  const ReaderOptions& options;
  size_t input = 0;
  std::set<fs::path> entered;  // canonical paths of the directories entered
  std::set<std::string> packages_found;
  std::vector<CodeFile>* files;
};

bool Selected(const ReaderOptions& options, const std::string& name) {
  return std::any_of(options.code_extensions.begin(), options.code_extensions.end(),
                     [&](const std::string& ending) { return absl::EndsWith(name, ending); });
}

// Adds the selected files under `dir` (`relative` to the input; "" for the
// input itself) to walk->files.
absl::Status WalkDirectory(const fs::path& dir, const std::string& relative, Walk* walk) {
  std::error_code error;
  const fs::path canonical = fs::canonical(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot resolve directory '", dir.string(), "': ", error.message()));
  }
  if (!walk->entered.insert(canonical).second) {
    // A link back to an ancestor would recurse forever; a second link to a
    // directory would repeat its files.
    LOG(WARNING) << "[data] not entering '" << dir.string() << "' again (it is "
                 << canonical.string() << ", reached before)";
    return absl::OkStatus();
  }
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    names.push_back(it->path().filename().string());
  }
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot list directory '", dir.string(), "': ", error.message()));
  }
  std::sort(names.begin(), names.end());  // byte order: the same on every file system
  for (const std::string& name : names) {
    if (name.front() == '.' || name == "__pycache__") continue;
    const bool top_level = relative.empty();
    if (top_level && !walk->options.code_packages.empty()) {
      const auto& packages = walk->options.code_packages;
      if (std::find(packages.begin(), packages.end(), name) == packages.end()) continue;
      walk->packages_found.insert(name);
    }
    const fs::path path = dir / name;
    const std::string path_relative = top_level ? name : absl::StrCat(relative, "/", name);
    // status() follows links; a dangling link or a socket is neither case.
    const fs::file_type type = fs::status(path, error).type();
    if (type == fs::file_type::directory) {
      MEMTRAIN_RETURN_IF_ERROR(WalkDirectory(path, path_relative, walk));
    } else if (type == fs::file_type::regular && Selected(walk->options, name)) {
      walk->files->push_back(CodeFile{path.string(), path_relative, walk->input});
    }
  }
  return absl::OkStatus();
}

// ---- Reading files ----------------------------------------------------------------

std::string TopLevelEntry(const CodeFile& file) {
  return file.relative.substr(0, file.relative.find('/'));
}

// The source text as a document holds it: CRLF line ends become LF, as in
// every other reader, and a byte order mark, which marks the encoding rather
// than being code, is dropped.
std::string Normalize(std::string text) {
  constexpr absl::string_view kByteOrderMark = "\xEF\xBB\xBF";
  if (absl::StartsWith(text, kByteOrderMark)) text.erase(0, kByteOrderMark.size());
  if (text.find('\r') != std::string::npos) absl::StrReplaceAll({{"\r\n", "\n"}}, &text);
  return text;
}

class CodeCorpusReader : public CorpusReader {
 public:
  CodeCorpusReader(const ReaderOptions& options, std::vector<CodeFile> files)
      : options_(options), files_(std::move(files)) {}

  absl::StatusOr<std::optional<Record>> Next() override {
    if (!failed_.ok()) return failed_;
    absl::StatusOr<std::optional<Record>> result = NextRecord();
    if (!result.ok()) failed_ = result.status();
    return result;
  }

  const ReaderStats& stats() const override { return stats_; }

 private:
  absl::StatusOr<std::optional<Record>> NextRecord() {
    while (next_ < files_.size()) {
      Record record;
      std::string text;
      if (options_.code_document == CodeDocument::kFile) {
        const CodeFile& file = files_[next_++];
        record.where = absl::StrCat(file.path, ":1");
        MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> contents, ReadSource(file));
        if (!contents.has_value()) continue;  // left out, and counted as such
        text = std::move(*contents);
      } else {
        const CodeFile& first = files_[next_];
        const std::string package = TopLevelEntry(first);
        record.where = (fs::path(options_.inputs[first.input]) / package).string();
        for (; next_ < files_.size() && files_[next_].input == first.input &&
               TopLevelEntry(files_[next_]) == package;
             ++next_) {
          MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> contents, ReadSource(files_[next_]));
          // A blank file (an empty __init__.py) would add only its name.
          if (!contents.has_value() || internal::IsBlank(*contents)) continue;
          absl::StrAppend(&text, "# file: ", files_[next_].relative, "\n", *contents);
          if (text.back() != '\n') text.push_back('\n');
        }
      }
      if (internal::IsBlank(text)) {
        ++stats_.empty_skipped;
        continue;
      }
      if (static_cast<int64_t>(text.size()) < options_.code_min_document_bytes) {
        ++stats_.short_skipped;
        continue;
      }
      record.source.resize(1);
      record.source[0].text = std::move(text);
      ++stats_.records;
      return record;
    }
    return std::nullopt;
  }

  // The file's normalized text, or nullopt when it is left out (counted).
  absl::StatusOr<std::optional<std::string>> ReadSource(const CodeFile& file) {
    std::error_code error;
    const uintmax_t size = fs::file_size(file.path, error);
    if (error) {
      return absl::DataLossError(
          absl::StrCat("cannot read '", file.path, "' (listed before): ", error.message()));
    }
    if (static_cast<int64_t>(size) > options_.code_max_file_bytes) {
      ++stats_.files_too_large;
      LogSkip(file, absl::StrCat(
                        size, " bytes, over code_max_file_bytes=", options_.code_max_file_bytes));
      return std::nullopt;
    }
    std::ifstream in(file.path, std::ios::binary);
    std::string text(static_cast<size_t>(size), '\0');
    if (!in.read(text.data(), static_cast<std::streamsize>(text.size()))) {
      return absl::DataLossError(absl::StrCat("cannot read '", file.path, "' (", size,
                                              " bytes listed): ", std::strerror(errno)));
    }
    stats_.bytes_read += static_cast<int64_t>(text.size());
    if (!internal::IsValidUtf8(text)) {
      ++stats_.files_not_utf8;
      LogSkip(file, "not valid UTF-8");
      return std::nullopt;
    }
    return Normalize(std::move(text));
  }

  void LogSkip(const CodeFile& file, const std::string& why) {
    if (++logged_skips_ <= kLoggedSkips) {
      LOG(WARNING) << "[data] leaving out '" << file.path << "': " << why;
    }
  }

  ReaderOptions options_;
  std::vector<CodeFile> files_;
  size_t next_ = 0;  // the next file to read
  ReaderStats stats_;
  int64_t logged_skips_ = 0;
  absl::Status failed_;
};

absl::Status CheckCodeOptions(const ReaderOptions& options) {
  if (options.inputs.empty()) {
    return absl::InvalidArgumentError("the code corpus needs input directories; none given");
  }
  if (options.code_extensions.empty()) {
    return absl::InvalidArgumentError("code_extensions is empty; give file endings such as .py");
  }
  for (const std::string& ending : options.code_extensions) {
    if (ending.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("code_extensions holds an empty ending (",
                                                     absl::StrJoin(options.code_extensions, ","),
                                                     "), which selects every file"));
    }
  }
  if (options.code_max_file_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("code_max_file_bytes=", options.code_max_file_bytes, " must be at least 1"));
  }
  if (options.code_min_document_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "code_min_document_bytes=", options.code_min_document_bytes, " must be at least 0"));
  }
  for (const std::string& package : options.code_packages) {
    if (package.empty() || package.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "code_packages entry '", package,
          "' must name a top-level entry of an input directory (no '/'), e.g. email or os.py"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool AbslParseFlag(absl::string_view text, CodeDocument* value, std::string* error) {
  return CodeDocumentNames().Parse(text, value, error);
}

std::string AbslUnparseFlag(CodeDocument value) { return CodeDocumentNames().Name(value); }

absl::StatusOr<std::vector<CodeFile>> ListCodeFiles(const ReaderOptions& options) {
  MEMTRAIN_RETURN_IF_ERROR(CheckCodeOptions(options));
  std::vector<CodeFile> files;
  std::set<std::string> packages_found;
  std::string empty_input;  // the first input under which nothing is selected
  for (size_t input = 0; input < options.inputs.size(); ++input) {
    const std::string& root = options.inputs[input];
    std::error_code error;
    const fs::file_type type = fs::status(root, error).type();
    if (type == fs::file_type::not_found) {
      return absl::NotFoundError(absl::StrCat("input directory '", root, "' does not exist"));
    }
    if (type != fs::file_type::directory) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", root, "' is not a directory; the code corpus reads directory trees"));
    }
    Walk walk{options, input, {}, {}, &files};
    const size_t before = files.size();
    MEMTRAIN_RETURN_IF_ERROR(WalkDirectory(root, "", &walk));
    if (files.size() == before && empty_input.empty()) empty_input = root;
    packages_found.insert(walk.packages_found.begin(), walk.packages_found.end());
  }
  // A misspelt package explains an empty input, so it is reported first.
  for (const std::string& package : options.code_packages) {
    if (packages_found.count(package) == 0) {
      return absl::NotFoundError(absl::StrCat("code package '", package, "' is under none of ",
                                              absl::StrJoin(options.inputs, ", ")));
    }
  }
  if (!empty_input.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no source files under '", empty_input, "': none ends in ",
                     absl::StrJoin(options.code_extensions, " or "),
                     options.code_packages.empty()
                         ? ""
                         : absl::StrCat(" within ", absl::StrJoin(options.code_packages, ", "))));
  }
  return files;
}

absl::StatusOr<std::unique_ptr<CorpusReader>> OpenCodeCorpusReader(const ReaderOptions& options) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<CodeFile> files, ListCodeFiles(options));
  return std::make_unique<CodeCorpusReader>(options, std::move(files));
}

}  // namespace memtrain::data
