// File: data/tokenizer.h
//
// SentencePiece behind a narrow wall. Debian's SentencePiece header declares
// `namespace absl { using std::string_view; }`, which breaks any translation
// unit that also includes Abseil (TOOLCHAIN.md §1 pitfall 2), and its library
// carries its own protobuf, which crashed processes that also loaded
// LibTorch (§1 pitfall 3). So: only tokenizer.cpp includes SentencePiece, this
// header uses nothing but the standard library, and only memtrain-prepare
// (no LibTorch) links it. Training and generation processes decode with the
// pieces stored in the corpus file (data/corpus_file.h, PieceDecoder).
//
// memtrain's tokenizer settings (docs/DATA.md): special ids pad=0 unk=1
// bos=2 eos=3 and the user symbol <sep>=4; identity normalization, no dummy
// prefix, whitespace kept, byte fallback — so decode(encode(text)) == text for
// any UTF-8 text.
#ifndef MEMTRAIN_DATA_TOKENIZER_H_
#define MEMTRAIN_DATA_TOKENIZER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace memtrain::data {

struct TokenizerTrainOptions {
  std::string model_type = "bpe";  ///< bpe | unigram
  int vocab_size = 8000;
  int num_threads = 2;
  /// Sentences sampled for training (SentencePiece's input_sentence_size).
  int64_t max_sentences = 1000000;
  uint64_t seed = 1;
  /// Also learn pieces that are runs of spaces. SentencePiece otherwise cuts
  /// text before every space, so code's indentation costs a token per space
  /// (docs/DATA.md §3, the code corpus).
  bool whitespace_only_pieces = false;
};

/// Produces training sentences one at a time; returns false when exhausted.
using SentenceSource = std::function<bool(std::string* sentence)>;

class Tokenizer {
 public:
  /// Trains a model on `sentences`; on failure returns false and sets `error`.
  static bool Train(const SentenceSource& sentences, const TokenizerTrainOptions& options,
                    std::string* model_bytes, std::string* error);
  /// Loads serialized model bytes; nullptr and `error` on failure.
  static std::unique_ptr<Tokenizer> Load(const std::string& model_bytes, std::string* error);
  ~Tokenizer();

  /// Thread-safe (SentencePiece's Encode is const).
  std::vector<int32_t> Encode(const std::string& text) const;
  std::string Decode(const std::vector<int32_t>& ids) const;

  int vocab_size() const;
  std::string IdToPiece(int32_t id) const;
  int32_t PieceToId(const std::string& piece) const;
  int32_t pad_id() const;
  int32_t unk_id() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  /// Id of "<sep>", or -1 when the model has none (a model not made by memtrain).
  int32_t sep_id() const;

 private:
  Tokenizer();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace memtrain::data

#endif  // MEMTRAIN_DATA_TOKENIZER_H_
