// The one table of attention variants: a new variant is one file plus one
// line here (common/registry.h).
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/registry.h"
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

const NamedRegistry<Factory>& Registry() {
  static const auto* registry = new NamedRegistry<Factory>(
      "attention kind", {
                            {"softmax", Make<SoftmaxAttentionImpl>()},
                            {"linformer", Make<LinformerAttentionImpl>()},
                            {"performer", Make<PerformerAttentionImpl>()},
                            {"memsizer", Make<MemSizerAttentionImpl>()},
                            {"knn", Make<KnnAttentionImpl>()},
                            {"infinite", Make<InfiniteAttentionImpl>()},
                        });
  return *registry;
}

}  // namespace

std::vector<std::string> AttentionKinds() { return Registry().names(); }

absl::StatusOr<std::shared_ptr<AttentionImpl>> MakeAttention(const std::string& kind,
                                                             const AttentionOptions& options) {
  absl::StatusOr<const Factory*> factory = Registry().Find(kind);
  if (!factory.ok()) {
    return absl::Status(factory.status().code(),
                        absl::StrCat(options.layer, ": ", factory.status().message()));
  }
  try {
    return (**factory)(options);
  } catch (const c10::Error& error) {
    // Constructors refuse unsupported configurations with TORCH_CHECK.
    return absl::FailedPreconditionError(error.what_without_backtrace());
  }
}

}  // namespace memtrain::model
