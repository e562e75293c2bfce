// The one table of attention variants: a new variant is one file plus one
// line here (STYLE.md §2: an explicit table, not self-registration, which a
// static library's linker may silently drop).
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/attention.h"
#include "model/infinite_attention.h"
#include "model/knn_attention.h"
#include "model/linformer_attention.h"
#include "model/memsizer_attention.h"
#include "model/performer_attention.h"
#include "model/softmax_attention.h"

namespace memtrain::model {
namespace {

using Factory = std::function<std::shared_ptr<AttentionImpl>(const AttentionOptions&)>;

template <typename Impl>
Factory Make() {
  return [](const AttentionOptions& options) { return std::make_shared<Impl>(options); };
}

const std::vector<std::pair<std::string, Factory>>& Registry() {
  static const auto* registry = new std::vector<std::pair<std::string, Factory>>{
      {"softmax", Make<SoftmaxAttentionImpl>()},
      {"linformer", Make<LinformerAttentionImpl>()},
      {"performer", Make<PerformerAttentionImpl>()},
      {"memsizer", Make<MemSizerAttentionImpl>()},
      {"knn", Make<KnnAttentionImpl>()},
      {"infinite", Make<InfiniteAttentionImpl>()},
  };
  return *registry;
}

}  // namespace

std::vector<std::string> AttentionKinds() {
  std::vector<std::string> kinds;
  for (const auto& [name, factory] : Registry()) kinds.push_back(name);
  return kinds;
}

absl::StatusOr<std::shared_ptr<AttentionImpl>> MakeAttention(const std::string& kind,
                                                             const AttentionOptions& options) {
  for (const auto& [name, factory] : Registry()) {
    if (name != kind) continue;
    try {
      return factory(options);
    } catch (const c10::Error& error) {
      // Constructors refuse unsupported configurations with TORCH_CHECK.
      return absl::FailedPreconditionError(error.what_without_backtrace());
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown attention kind '", kind, "' for ",
                                                 options.layer, "; known kinds: ",
                                                 absl::StrJoin(AttentionKinds(), ", ")));
}

}  // namespace memtrain::model
