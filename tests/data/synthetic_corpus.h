// Corpus files with known contents for BatchSource tests, written through the
// real CorpusWriter but without SentencePiece: token ids are positions, so a
// test can tell exactly which token of which record a batch holds.
#ifndef MEMTRAIN_TESTS_DATA_SYNTHETIC_CORPUS_H_
#define MEMTRAIN_TESTS_DATA_SYNTHETIC_CORPUS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace memtrain::data::testing {

/// Ids start here, above the special ids (pad 0, unk 1, bos 2, eos 3, sep 4).
inline constexpr int32_t kFirstId = 8;
/// Vocabulary of the synthetic tokenizer; token ids wrap below it.
inline constexpr int32_t kVocabulary = 60000;

/// The token at global source position `i`.
inline int32_t SourceToken(int64_t i) {
  return kFirstId + static_cast<int32_t>(i % (kVocabulary - kFirstId));
}
/// The token at global target position `i`.
inline int32_t TargetToken(int64_t i) {
  return kVocabulary - 1 - static_cast<int32_t>(i % (kVocabulary - kFirstId));
}

/// An lm corpus of documents with `lengths` tokens each (token at global
/// position i is SourceToken(i)); every 7th token is flagged long-range.
void WriteLmCorpus(const std::string& path, const std::vector<int64_t>& lengths);
/// A seq2seq (translation) corpus with the given source/target lengths.
void WriteSeq2SeqCorpus(const std::string& path, const std::vector<int64_t>& source_lengths,
                        const std::vector<int64_t>& target_lengths);
/// A fresh path under the test temp directory.
std::string TempPath(const std::string& name);

}  // namespace memtrain::data::testing

#endif  // MEMTRAIN_TESTS_DATA_SYNTHETIC_CORPUS_H_
