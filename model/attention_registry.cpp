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

// A kind: how to make it, and which of the Transformer's position and cache
// options its math has a place for.
struct Kind {
  Factory make;
  bool rotary = false;    // rotates its own queries and keys (softmax scores)
  bool xl_cache = false;  // attends to a previous segment's keys/values
};

template <typename Impl>
Kind Make(bool rotary = false, bool xl_cache = false) {
  return {[](const AttentionOptions& options) { return std::make_shared<Impl>(options); }, rotary,
          xl_cache};
}

const NamedRegistry<Kind>& Registry() {
  static const auto* registry = new NamedRegistry<Kind>(
      "attention kind",
      {
          {"softmax", Make<SoftmaxAttentionImpl>(/*rotary=*/true, /*xl_cache=*/true)},
          {"linformer", Make<LinformerAttentionImpl>()},
          {"performer", Make<PerformerAttentionImpl>()},
          {"memsizer", Make<MemSizerAttentionImpl>()},
          {"knn", Make<KnnAttentionImpl>(/*rotary=*/true, /*xl_cache=*/true)},
          {"infinite", Make<InfiniteAttentionImpl>()},
      });
  return *registry;
}

}  // namespace

std::vector<std::string> AttentionKinds() { return Registry().names(); }

bool SupportsRotary(const std::string& kind) {
  absl::StatusOr<const Kind*> found = Registry().Find(kind);
  return found.ok() && (*found)->rotary;
}

bool SupportsXlCache(const std::string& kind) {
  absl::StatusOr<const Kind*> found = Registry().Find(kind);
  return found.ok() && (*found)->xl_cache;
}

absl::StatusOr<std::shared_ptr<AttentionImpl>> MakeAttention(const std::string& kind,
                                                             const AttentionOptions& options) {
  absl::StatusOr<const Kind*> found = Registry().Find(kind);
  if (!found.ok()) {
    return absl::Status(found.status().code(),
                        absl::StrCat(options.layer, ": ", found.status().message()));
  }
  if (options.rotary && !(*found)->rotary) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.layer, ": ", kind, " attention has no rotary form; use --positions=sinusoidal"));
  }
  if (options.xl_cache && !(*found)->xl_cache) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.layer, ": ", kind, " attention has no Transformer-XL cache (--xl_cache)"));
  }
  try {
    return (*found)->make(options);
  } catch (const c10::Error& error) {
    // Constructors refuse unsupported configurations with TORCH_CHECK.
    return absl::FailedPreconditionError(error.what_without_backtrace());
  }
}

}  // namespace memtrain::model
