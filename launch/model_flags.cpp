#include "launch/model_flags.h"

#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace {
// Defaults come from the option structs, so the papers' values live in one place.
const memtrain::model::TransformerOptions kModel;
const memtrain::model::AttentionOptions& kAttention = kModel.attention_options;
}  // namespace

#define MEMTRAIN_TRANSFORMER_FLAG(name, help) \
  ABSL_FLAG(std::decay_t<decltype(kModel.name)>, name, kModel.name, help);
MEMTRAIN_TRANSFORMER_OPTIONS(MEMTRAIN_TRANSFORMER_FLAG)
#undef MEMTRAIN_TRANSFORMER_FLAG
ABSL_FLAG(std::vector<std::string>, knn_layers, {},
          "Decoder layers (0-based) whose self-attention is knn (the Memorizing Transformer).");
ABSL_FLAG(std::vector<std::string>, layer_attention, {},
          "Per-layer overrides LAYER:KIND, e.g. 3:performer,5:memsizer (decoder layers).");
namespace {

// The flag type of an option type: itself, except lists of numbers, which
// Abseil parses as lists of strings ("0.005,0.01").
template <typename T>
struct FlagOf {
  using type = T;
  static T Default(const T& value) { return value; }
  static absl::Status Read(const char*, const T& flag, T* option) {
    *option = flag;
    return absl::OkStatus();
  }
};
template <>
struct FlagOf<std::vector<double>> {
  using type = std::vector<std::string>;
  static type Default(const std::vector<double>& values) {
    type texts;
    for (double value : values) texts.push_back(absl::StrCat(value));
    return texts;
  }
  static absl::Status Read(const char* name, const type& flag, std::vector<double>* option) {
    option->clear();
    for (const std::string& text : flag) {
      double value = 0;
      if (!absl::SimpleAtod(text, &value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, ": '", text, "' is not a number"));
      }
      option->push_back(value);
    }
    return absl::OkStatus();
  }
};

}  // namespace

// Every variant option as a flag (model/attention.h's tables).
#define MEMTRAIN_VARIANT_OPTION_FLAG(variant, flag, member, help)                  \
  ABSL_FLAG(FlagOf<std::decay_t<decltype(kAttention.variant.member)>>::type, flag, \
            FlagOf<std::decay_t<decltype(kAttention.variant.member)>>::Default(    \
                kAttention.variant.member),                                        \
            help);
#define MEMTRAIN_VARIANT_FLAGS(variant, Type, TABLE) TABLE(MEMTRAIN_VARIANT_OPTION_FLAG)
MEMTRAIN_ATTENTION_VARIANTS(MEMTRAIN_VARIANT_FLAGS)
#undef MEMTRAIN_VARIANT_FLAGS
#undef MEMTRAIN_VARIANT_OPTION_FLAG

namespace memtrain::launch {

absl::StatusOr<model::TransformerOptions> ModelOptionsFromFlags() {
  model::TransformerOptions o;
#define MEMTRAIN_TRANSFORMER_OPTION_FROM_FLAG(name, help) o.name = absl::GetFlag(FLAGS_##name);
  MEMTRAIN_TRANSFORMER_OPTIONS(MEMTRAIN_TRANSFORMER_OPTION_FROM_FLAG)
#undef MEMTRAIN_TRANSFORMER_OPTION_FROM_FLAG
  for (const std::string& text : absl::GetFlag(FLAGS_knn_layers)) {
    int64_t layer = 0;
    if (!absl::SimpleAtoi(text, &layer)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--knn_layers: '", text, "' is not a layer number"));
    }
    o.layer_attention[layer] = "knn";
  }
  for (const std::string& entry : absl::GetFlag(FLAGS_layer_attention)) {
    std::vector<std::string> parts = absl::StrSplit(entry, ':');
    int64_t layer = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &layer) || parts[1].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--layer_attention: '", entry, "' is not LAYER:KIND (e.g. 3:performer)"));
    }
    o.layer_attention[layer] = parts[1];
  }
  model::AttentionOptions& a = o.attention_options;
#define MEMTRAIN_VARIANT_OPTION_FROM_FLAG(variant, flag, member, help)             \
  MEMTRAIN_RETURN_IF_ERROR(FlagOf<std::decay_t<decltype(a.variant.member)>>::Read( \
      #flag, absl::GetFlag(FLAGS_##flag), &a.variant.member));
#define MEMTRAIN_VARIANT_FROM_FLAGS(variant, Type, TABLE) TABLE(MEMTRAIN_VARIANT_OPTION_FROM_FLAG)
  MEMTRAIN_ATTENTION_VARIANTS(MEMTRAIN_VARIANT_FROM_FLAGS)
#undef MEMTRAIN_VARIANT_FROM_FLAGS
#undef MEMTRAIN_VARIANT_OPTION_FROM_FLAG
  return o;
}

}  // namespace memtrain::launch
