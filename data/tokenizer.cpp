// The only translation unit that includes SentencePiece; it must not include
// Abseil (see tokenizer.h).
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <sstream>

namespace memtrain::data {
namespace {

class CallbackSentenceIterator : public sentencepiece::SentenceIterator {
 public:
  explicit CallbackSentenceIterator(const SentenceSource& source) : source_(source) { Next(); }
  bool done() const override { return done_; }
  void Next() override { done_ = !source_(&value_); }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  const SentenceSource& source_;
  std::string value_;
  bool done_ = false;
};

}  // namespace

Tokenizer::Tokenizer() : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::~Tokenizer() = default;

bool Tokenizer::Train(const SentenceSource& sentences, const TokenizerTrainOptions& options,
                      std::string* model_bytes, std::string* error) {
  if (options.model_type != "bpe" && options.model_type != "unigram") {
    *error = "--tokenizer_type must be bpe or unigram, got '" + options.model_type + "'";
    return false;
  }
  std::ostringstream args;
  args << "--model_type=" << options.model_type << " --vocab_size=" << options.vocab_size
       << " --num_threads=" << options.num_threads
       << " --input_sentence_size=" << options.max_sentences << " --shuffle_input_sentence=true"
       << " --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3 --user_defined_symbols=<sep>"
       // Exact round trips: keep every character and every space as written.
       << " --normalization_rule_name=identity --add_dummy_prefix=false"
       << " --remove_extra_whitespaces=false --byte_fallback=true --character_coverage=0.9999"
       << " --split_digits=true --max_sentence_length=16384"
       // Only when set: a field written at its default still changes the
       // serialized model, and so the tokenizer's sha256 that checkpoints and
       // models record (tests/checkpoints/fixtures/format1).
       << (options.whitespace_only_pieces ? " --allow_whitespace_only_pieces=true" : "")
       // Small corpora (tests, demo) may not support the requested size.
       << " --hard_vocab_limit=false --minloglevel=1";
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned int>(options.seed));
  CallbackSentenceIterator iterator(sentences);
  const sentencepiece::util::Status status =
      sentencepiece::SentencePieceTrainer::Train(args.str(), &iterator, model_bytes);
  if (!status.ok()) {
    *error = "SentencePiece training failed: " + status.ToString();
    return false;
  }
  return true;
}

std::unique_ptr<Tokenizer> Tokenizer::Load(const std::string& model_bytes, std::string* error) {
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  const sentencepiece::util::Status status =
      tokenizer->processor_->LoadFromSerializedProto(model_bytes);
  if (!status.ok()) {
    *error = "not a SentencePiece model: " + status.ToString();
    return nullptr;
  }
  return tokenizer;
}

std::vector<int32_t> Tokenizer::Encode(const std::string& text) const {
  std::vector<int> ids;
  processor_->Encode(text, &ids);
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string text;
  processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  return text;
}

int Tokenizer::vocab_size() const { return processor_->GetPieceSize(); }
std::string Tokenizer::IdToPiece(int32_t id) const { return processor_->IdToPiece(id); }
int32_t Tokenizer::PieceToId(const std::string& piece) const {
  return processor_->PieceToId(piece);
}
int32_t Tokenizer::pad_id() const { return processor_->pad_id(); }
int32_t Tokenizer::unk_id() const { return processor_->unk_id(); }
int32_t Tokenizer::bos_id() const { return processor_->bos_id(); }
int32_t Tokenizer::eos_id() const { return processor_->eos_id(); }
int32_t Tokenizer::sep_id() const {
  const int32_t id = processor_->PieceToId("<sep>");
  return id == processor_->unk_id() ? -1 : id;
}

}  // namespace memtrain::data
