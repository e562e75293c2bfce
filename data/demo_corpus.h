// File: data/demo_corpus.h
//
// The built-in demo corpus: language-model documents with long-range
// dependencies, generated from a seed, so the quickstart needs no download and
// shows what a memory buys. Each document
//
//   1. states facts about invented entities on its first line
//        "The chief export of Thiny is Morchador . The leader of Faldra is named Rasaven ."
//   2. continues with filler paragraphs: templated everyday sentences that
//      never name an entity or an answer (`demo_distance_words` words or a few
//      more, one sentence's worth at most, kDemoMaxSentenceWords),
//   3. ends with a line asking for every fact, in shuffled order:
//        "... Question : who leads Faldra ? Answer : the leader of Faldra is named"
//        " Rasaven" " ."
//
// The answers (" Rasaven") are their own TextSegment with long_range=true: every
// token of that segment is long-range. An answer occurs exactly twice in its
// document, in its fact sentence and as the long-range segment, so only a model
// that remembers the first line can predict it. Names are two or three random
// syllables; the answers of a document are distinct from each other and from its
// entities. Punctuation is a separate word (" ." like WikiText's .tokens), so
// every segment boundary falls before a space.
//
// Words are whitespace-separated (punctuation counts). With the default 1000
// filler words a fact sits 1000-1200 words before its question, about as many
// tokens: a BPE model trained on the demo corpus spends 1.01 pieces per word
// (docs/DATA.md §3). Same seed and knobs give byte-identical documents on
// every platform (the generator uses no implementation-defined distribution).
#ifndef MEMTRAIN_DATA_DEMO_CORPUS_H_
#define MEMTRAIN_DATA_DEMO_CORPUS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "data/corpus_reader.h"

namespace memtrain::data {

/// No sentence of the demo corpus has more words than this.
inline constexpr int kDemoMaxSentenceWords = 24;

/// The generator as a reader of options.demo_documents documents, using
/// options.seed, demo_facts_per_document and demo_distance_words.
/// kInvalidArgument naming the knob when one is out of range, or when inputs
/// are given (the demo reads no file). stats().bytes_read counts generated text.
absl::StatusOr<std::unique_ptr<CorpusReader>> OpenDemoCorpusReader(const ReaderOptions& options);

}  // namespace memtrain::data

#endif  // MEMTRAIN_DATA_DEMO_CORPUS_H_
