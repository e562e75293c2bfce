// File: data/internal/text.h
//
// Checks every raw-corpus reader applies to its text (docs/DATA.md §3), in one
// place so the file readers (corpus_reader.cpp) and the code reader
// (code_corpus.cpp) agree on what is blank and what is UTF-8.
#ifndef MEMTRAIN_DATA_INTERNAL_TEXT_H_
#define MEMTRAIN_DATA_INTERNAL_TEXT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace memtrain::data::internal {

/// True when `text` holds nothing but ASCII whitespace.
bool IsBlank(absl::string_view text);

/// True when `text` is well-formed UTF-8: no overlong forms, surrogates or
/// code points beyond U+10FFFF. SentencePiece expects valid UTF-8; rejecting
/// it in the reader names the place instead of failing, or silently mangling
/// text, in the tokenizer.
bool IsValidUtf8(absl::string_view text);

/// TEXT with every byte that starts no valid UTF-8 sequence replaced by U+FFFD
/// (decoded byte-fallback pieces can leave such bytes: a model may emit any id).
std::string ReplaceInvalidUtf8(absl::string_view text);

}  // namespace memtrain::data::internal

#endif  // MEMTRAIN_DATA_INTERNAL_TEXT_H_
