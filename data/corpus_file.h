// File: data/corpus_file.h
//
// The memtrain HDF5 corpus format, version 1 (specified in docs/DATA.md):
// writing it (CorpusWriter, used by memtrain-prepare) and reading it
// (CorpusFile, used by memtrain-inspect and BatchSource). No LibTorch and no
// SentencePiece here: the vocabulary's pieces are stored in the file, so any
// process can turn ids back into text (PieceDecoder).
//
//   auto file = CorpusFile::Open("wiki.valid.h5", {});
//   if (!file.ok()) return file.status();        // names the file and the problem
//   std::vector<int32_t> doc = *(*file)->ReadRecord(Field::kSource, 7);
//
// Writing is atomic (common/atomic_file.h): CorpusWriter writes
// `<path>.partial-<pid>` and publishes it (fsync, rename) to `<path>` only in
// Finish(), after the `complete` attribute is set; a
// writer destroyed before Finish() (or a killed process) never leaves a file
// at `<path>`, and a `.partial-*` file is refused by CorpusFile::Open.
#ifndef MEMTRAIN_DATA_CORPUS_FILE_H_
#define MEMTRAIN_DATA_CORPUS_FILE_H_

#include <hdf5.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/task.h"

namespace memtrain::data {

inline constexpr char kFormatName[] = "memtrain-corpus";
inline constexpr int kFormatVersion = 1;

/// The tokenizer a file was encoded with.
struct TokenizerInfo {
  std::string model_bytes;  ///< serialized SentencePiece model
  std::string sha256;       ///< of model_bytes, hex; files used together must agree
  std::string model_type;   ///< "bpe" or "unigram"
  int32_t vocab_size = 0;
  int32_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3, sep_id = 4;
  std::vector<std::string> pieces;  ///< id -> piece
};

struct InputFile {
  std::string path;
  int64_t bytes = 0;
  std::string sha256;
};

/// Root attributes: what the file holds and where it came from.
struct CorpusHeader {
  std::string corpus;       ///< wikitext, wmt16, xsum, openorca, demo
  std::string split;        ///< train, valid, test, ...
  std::string task;         ///< lm, translation, summarization, qa
  int64_t num_records = 0;  ///< documents (lm) or examples (seq2seq)
  int64_t num_source_tokens = 0;
  int64_t num_target_tokens = 0;
  int64_t malformed_skipped = 0;
  int64_t empty_skipped = 0;
  bool has_long_range = false;  ///< /source/long_range present (demo)
  std::vector<InputFile> inputs;
  std::string options_json;  ///< how memtrain-prepare was run
  std::string created_by;
  std::string created_at;
};

/// Token sequences of a record: the LM document, or a seq2seq input/output.
enum class Field { kSource, kTarget };

/// Lowercase hex sha256 of `bytes`.
std::string Sha256Hex(const std::string& bytes);
/// sha256 and size of a file, streamed.
absl::StatusOr<InputFile> DescribeInputFile(const std::string& path);

class CorpusWriter {
 public:
  static absl::StatusOr<std::unique_ptr<CorpusWriter>> Create(const std::string& path,
                                                              const std::string& task,
                                                              const TokenizerInfo& tokenizer);
  /// Removes the partial file unless Finish() succeeded.
  ~CorpusWriter();

  /// Appends one record. `source_long_range` is empty or one flag per source
  /// token; `target` must be empty for lm and non-empty for seq2seq.
  absl::Status Append(const std::vector<int32_t>& source,
                      const std::vector<uint8_t>& source_long_range,
                      const std::vector<int32_t>& target, const std::string& id);
  /// Writes the header (counts are checked against what was appended), marks
  /// the file complete and renames it into place.
  absl::Status Finish(CorpusHeader header);

 private:
  struct Column;  // an appendable 1-D dataset with a write buffer
  CorpusWriter(std::string path, std::string partial_path, std::string task);
  absl::Status Flush();
  // Closes every dataset (before the file can be closed).
  void CloseColumns();

  const std::string path_;
  const std::string partial_path_;
  const std::string task_;
  bool seq2seq_ = false;  // the task's (data/task.h)
  hid_t file_ = -1;
  std::unique_ptr<Column> source_tokens_, source_offsets_, source_long_range_;
  std::unique_ptr<Column> target_tokens_, target_offsets_, id_bytes_, id_offsets_;
  int64_t records_ = 0, source_tokens_count_ = 0, target_tokens_count_ = 0, id_bytes_count_ = 0;
  bool any_long_range_ = false;
  bool finished_ = false;
};

struct CorpusFileOptions {
  /// Chunk cache per dataset. Compressed chunks are decompressed whole on a
  /// miss, so the cache must hold the chunks a reader revisits (TOOLCHAIN.md
  /// §6: the 1 MiB default made random reads 30x slower).
  int64_t chunk_cache_bytes = int64_t{32} << 20;
};

/// A corpus file opened read-only (HDF5 file locking off, so any number of
/// ranks can read it while nothing writes it). Not thread-safe: one thread
/// makes all calls (BatchSource's prefetch thread).
class CorpusFile;

/// Writes to `path` a corpus of no records with `from`'s task, corpus name and
/// tokenizer: what a saved model keeps beside its weights (tokenizer.h5, by
/// memtrain-train --save_dir) so that text can be encoded and decoded for it
/// without the training data (memtrain-generate --input).
absl::Status WriteTokenizerCorpus(const CorpusFile& from, const std::string& path);

class CorpusFile {
 public:
  /// Refuses, with the path and the reason, files that are missing, not
  /// HDF5, not a memtrain corpus, of another format version, incomplete, or
  /// missing a dataset. Reads the header, the tokenizer and the offsets
  /// (8 bytes per record), never the tokens.
  static absl::StatusOr<std::unique_ptr<CorpusFile>> Open(const std::string& path,
                                                          CorpusFileOptions options);
  ~CorpusFile();

  const std::string& path() const { return path_; }
  const CorpusHeader& header() const { return header_; }
  const TokenizerInfo& tokenizer() const { return tokenizer_; }
  /// The task's (data/task.h): seq2seq files have /target.
  bool is_seq2seq() const { return seq2seq_; }
  int64_t num_records() const { return header_.num_records; }
  /// offsets(field)[i] .. offsets(field)[i+1] are record i's tokens.
  const std::vector<int64_t>& offsets(Field field) const;
  int64_t record_length(Field field, int64_t record) const;
  /// Replaces CorpusFileOptions::chunk_cache_bytes. Each dataset takes its
  /// cache size when first read, so afterwards this is kFailedPrecondition.
  absl::Status set_chunk_cache_bytes(int64_t bytes);

  /// Tokens [start, start + count) of `field` (a hyperslab read).
  absl::StatusOr<std::vector<int32_t>> ReadTokens(Field field, int64_t start, int64_t count);
  absl::StatusOr<std::vector<int32_t>> ReadRecord(Field field, int64_t record);
  /// Long-range flags of source tokens [start, start + count); all zero when
  /// the file has none.
  absl::StatusOr<std::vector<uint8_t>> ReadLongRange(int64_t start, int64_t count);
  absl::StatusOr<std::string> ReadId(int64_t record);

  /// Full check: every token id within the vocabulary, offsets consistent,
  /// tokenizer checksum, counts. Reads the whole file (memtrain-inspect).
  absl::Status Verify();

 private:
  CorpusFile() = default;
  absl::Status Load();
  // The open dataset `name`, opened on first use with the chunk cache.
  absl::StatusOr<hid_t> Dataset(const char* name);

  std::string path_;
  CorpusFileOptions options_;
  hid_t file_ = -1;
  CorpusHeader header_;
  bool seq2seq_ = false;
  TokenizerInfo tokenizer_;
  std::vector<int64_t> source_offsets_, target_offsets_, id_offsets_;
  std::map<std::string, hid_t> datasets_;  // open datasets by name
};

/// Files used together (train and valid, a model and its data) must share
/// one tokenizer: kFailedPrecondition naming both files otherwise.
absl::Status CheckSameTokenizer(const CorpusFile& a, const CorpusFile& b);

/// Turns ids back into text with the stored pieces, as SentencePiece's
/// decoder does for memtrain's tokenizer settings: "▁" is a space, "<0xNN>"
/// byte pieces are bytes, pad/bos/eos are dropped, unk is " ⁇ ", sep is
/// "<sep>".
class PieceDecoder {
 public:
  explicit PieceDecoder(const TokenizerInfo& tokenizer) : tokenizer_(tokenizer) {}
  std::string Decode(const std::vector<int32_t>& ids) const;

 private:
  const TokenizerInfo& tokenizer_;
};

}  // namespace memtrain::data

#endif  // MEMTRAIN_DATA_CORPUS_FILE_H_
