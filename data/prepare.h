// File: data/prepare.h
//
// The memtrain-prepare pipeline: raw corpus (data/corpus_reader.h) →
// SentencePiece model (trained, or reused) → token ids, encoded on several
// threads → a memtrain HDF5 corpus (data/corpus_file.h), written atomically.
//
//   PrepareOptions options;
//   options.reader.corpus = Corpus::kWikiText;
//   options.reader.inputs = {"wiki.valid.tokens"};
//   options.output = "wiki.valid.h5";
//   options.split = "valid";
//   absl::StatusOr<PrepareResult> result = Prepare(options);
//
// Record layout (docs/DATA.md): every source and target sequence ends with
// eos; a QA source is [system prompt] <sep> question; long-range flags come
// from the reader's segments (demo answers). The header's inputs describe each
// input file, or for a code corpus each input directory: the bytes of the
// files read under it and the sha256 of their manifest (relative path and
// sha256 of each, one a line).
#ifndef MEMTRAIN_DATA_PREPARE_H_
#define MEMTRAIN_DATA_PREPARE_H_

#include <string>

#include "absl/status/statusor.h"
#include "data/corpus_file.h"
#include "data/corpus_reader.h"
#include "data/tokenizer.h"

namespace memtrain::data {

struct PrepareOptions {
  ReaderOptions reader;
  std::string output;  ///< the .h5 file to write
  std::string split = "train";
  /// The tokenizer: reuse a SentencePiece .model file, or the model inside
  /// an existing memtrain corpus (so train/valid/test share one), or train
  /// one (`train`) on this corpus's text. At most one of the first two.
  std::string tokenizer_model_path;
  std::string tokenizer_from_corpus;
  /// A code corpus's tokenizer is trained with whitespace_only_pieces on,
  /// whatever this says (indentation).
  TokenizerTrainOptions train;
  int threads = 2;  ///< encoding threads
  bool show_progress = true;
  /// Recorded in the file (the command line, for provenance).
  std::string options_json;
};

struct PrepareResult {
  CorpusHeader header;
  ReaderStats reader;  ///< the encoding pass's (bytes_read: the input bytes)
  double seconds = 0;
  double train_seconds = 0;  ///< part of `seconds` spent training the tokenizer
};

absl::StatusOr<PrepareResult> Prepare(const PrepareOptions& options);

/// memtrain-prepare --encode_stdin: the tokenizer of --tokenizer_from or
/// --tokenizer_model encodes the texts read from `in_fd` for a parent that
/// links no SentencePiece (data/text_inputs.h, EncodeInChild).
absl::Status ServeEncoding(const PrepareOptions& options, int in_fd, int out_fd);

/// What a tokenizer needs stored with the corpus: bytes, checksum, pieces.
TokenizerInfo DescribeTokenizer(const Tokenizer& tokenizer, const std::string& model_bytes,
                                const std::string& model_type);

}  // namespace memtrain::data

#endif  // MEMTRAIN_DATA_PREPARE_H_
