// File: trainer/internal/text.h
//
// Helpers shared by the BLEU and ROUGE implementations; not part of memtrain's
// API.
#ifndef MEMTRAIN_TRAINER_INTERNAL_TEXT_H_
#define MEMTRAIN_TRAINER_INTERNAL_TEXT_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace memtrain::trainer::internal {

/// One code point decoded from UTF-8 and the bytes it took. A byte that does
/// not start a well-formed sequence decodes as U+FFFD, one byte long (what
/// Python's errors="replace" gives; neither a letter nor whitespace), so
/// scanning always advances.
struct CodePoint {
  char32_t value;
  size_t length;
};
CodePoint DecodeUtf8(absl::string_view text, size_t position);

/// Occurrences of each n-gram of exactly `order` tokens, keyed by the tokens
/// joined with single spaces (unambiguous: callers' tokens hold no spaces).
absl::flat_hash_map<std::string, int64_t> CountNgrams(absl::Span<const std::string> tokens,
                                                      int order);

}  // namespace memtrain::trainer::internal

#endif  // MEMTRAIN_TRAINER_INTERNAL_TEXT_H_
