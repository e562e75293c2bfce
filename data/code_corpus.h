// File: data/code_corpus.h
//
// The code corpus: language-model documents of real source code, read from
// directory trees already on the machine (e.g. Python's standard library), so
// long-range modelling can be measured on code without a download. Like the
// paper's GitHub corpus, a document may be a whole package: code refers to
// names defined far earlier in the same file or package.
//
//   ReaderOptions options;
//   options.corpus = Corpus::kCode;
//   options.inputs = {"/usr/lib/python3.11"};
//   options.code_packages = {"email", "json", "os.py"};
//   options.code_document = CodeDocument::kPackage;
//   MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CorpusReader> reader, OpenCorpusReader(options));
//
// The walk (ListCodeFiles): each input directory in turn, depth first, each
// directory's entries in byte order of their names, so the same tree gives the
// same documents in the same order everywhere. Names starting with '.' and
// __pycache__ are left out; symbolic links are followed, but a directory
// reached a second time (a link loop, or two links to one place) is not
// entered again. A file is read when its name ends in one of code_extensions
// and, if code_packages is given, it lies under one of those top-level entries.
//
// Documents (docs/DATA.md §3 has the details):
//   - kFile: one document per file, its text exactly as written except that
//     CRLF becomes LF and a UTF-8 byte order mark is dropped.
//   - kPackage: one document per top-level entry of an input directory (a
//     package directory, or a module file at the top level), its non-blank
//     files concatenated in walk order, each after a line "# file: <path>"
//     (the path relative to the input directory, e.g. "email/mime/text.py").
// Files that are not valid UTF-8 (legacy-encoded test fixtures) or larger than
// code_max_file_bytes are left out whatever the BadRecordPolicy and counted in
// ReaderStats; documents shorter than code_min_document_bytes are counted and
// skipped; blank documents are empty records. The first skips are logged with
// their paths. The code reader never reports a malformed record.
#ifndef MEMTRAIN_DATA_CODE_CORPUS_H_
#define MEMTRAIN_DATA_CODE_CORPUS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/corpus_reader.h"

namespace memtrain::data {

/// A source file the code reader reads.
struct CodeFile {
  std::string path;      ///< the input directory joined with `relative`
  std::string relative;  ///< to its input directory, '/'-separated: "email/mime/text.py"
  size_t input = 0;      ///< index into ReaderOptions::inputs
};

/// The files of options.inputs a code reader reads, in reading order (above).
/// A missing input, or a code_packages entry under none of the inputs, is
/// kNotFound naming it; an input that is not a directory, or one under which
/// no file is selected, is kInvalidArgument naming it; a directory that cannot
/// be listed is kPermissionDenied naming it. Knobs out of range (no inputs, no
/// or an empty extension, a package name with '/', a size bound below its
/// minimum) are kInvalidArgument naming the knob, before any directory is read.
absl::StatusOr<std::vector<CodeFile>> ListCodeFiles(const ReaderOptions& options);

/// The reader of the files ListCodeFiles(options) lists, with its errors.
absl::StatusOr<std::unique_ptr<CorpusReader>> OpenCodeCorpusReader(const ReaderOptions& options);

}  // namespace memtrain::data

#endif  // MEMTRAIN_DATA_CODE_CORPUS_H_
