// Small learnable corpora for trainer tests, written through the real
// CorpusWriter with a toy tokenizer of `vocab` ids (no SentencePiece), so a
// model of a few thousand parameters learns them in a few dozen steps.
#ifndef MEMTRAIN_TESTS_TRAINER_TOY_CORPUS_H_
#define MEMTRAIN_TESTS_TRAINER_TOY_CORPUS_H_

#include <cstdint>
#include <string>

namespace memtrain::trainer::testing {

inline constexpr int32_t kToyVocab = 24;

/// `documents` lm documents of 20..60 tokens (and an eos): each token is a
/// fixed successor of the previous one with probability 0.9, else random, so
/// a bigram model predicts most tokens (every 9th is flagged long-range).
void WriteToyLm(const std::string& path, int documents, uint64_t seed);
/// `examples` translation pairs: the target is the source reversed.
void WriteToyReversal(const std::string& path, int examples, uint64_t seed);
/// A fresh path under the test temp directory.
std::string ToyPath(const std::string& name);

}  // namespace memtrain::trainer::testing

#endif  // MEMTRAIN_TESTS_TRAINER_TOY_CORPUS_H_
