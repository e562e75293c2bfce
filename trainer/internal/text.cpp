#include "trainer/internal/text.h"

#include "absl/strings/str_join.h"

namespace memtrain::trainer::internal {

CodePoint DecodeUtf8(absl::string_view text, size_t position) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(position);
  const CodePoint invalid{0xFFFD, 1};
  size_t length;
  char32_t value;
  if (lead < 0x80) return {lead, 1};
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    value = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    value = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    value = lead & 0x07;
  } else {
    return invalid;
  }
  if (position + length > text.size()) return invalid;
  for (size_t i = 1; i < length; ++i) {
    const unsigned char continuation = byte(position + i);
    if ((continuation & 0xC0) != 0x80) return invalid;
    value = (value << 6) | (continuation & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
  static constexpr char32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (value < kSmallest[length] || (value >= 0xD800 && value <= 0xDFFF) || value > 0x10FFFF) {
    return invalid;
  }
  return {value, length};
}

absl::flat_hash_map<std::string, int64_t> CountNgrams(absl::Span<const std::string> tokens,
                                                      int order) {
  absl::flat_hash_map<std::string, int64_t> counts;
  const size_t n = static_cast<size_t>(order);
  for (size_t start = 0; start + n <= tokens.size(); ++start) {
    ++counts[absl::StrJoin(tokens.subspan(start, n), " ")];
  }
  return counts;
}

}  // namespace memtrain::trainer::internal
