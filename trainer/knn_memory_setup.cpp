#include "trainer/knn_memory_setup.h"

#include <functional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/registry.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace memtrain::trainer {
namespace {

// Each row's stream and how the rows use the memory, for `rows` rows on
// `rank` of the ranks that share the memory (0 unless sharded).
using Scope = std::function<model::KnnMemoryBinding(int64_t rows, int rank)>;

const NamedRegistry<Scope>& Scopes() {
  static const auto* scopes = new NamedRegistry<Scope>(
      "kNN memory scope", {
                              {"stream",
                               [](int64_t rows, int rank) {
                                 model::KnnMemoryBinding binding;
                                 // Distinct over the ranks that share the memory: rank-major.
                                 for (int64_t b = 0; b < rows; ++b)
                                   binding.streams.push_back(rank * rows + b);
                                 binding.use = model::KnnMemoryUse::kPerStream;
                                 return binding;
                               }},
                              {"shared",
                               [](int64_t rows, int /*rank*/) {
                                 model::KnnMemoryBinding binding;
                                 binding.streams.assign(static_cast<size_t>(rows), 0);
                                 binding.use = model::KnnMemoryUse::kShared;
                                 return binding;
                               }},
                          });
  return *scopes;
}

}  // namespace

std::vector<std::string> KnnScopeNames() { return Scopes().names(); }

std::vector<int64_t> KnnLayers(const model::TransformerOptions& options) {
  std::vector<int64_t> layers;
  for (int64_t i = 0; i < options.decoder_layers; ++i) {
    if (model::DecoderSelfAttentionKind(options, i) == "knn") layers.push_back(i);
  }
  return layers;
}

absl::StatusOr<model::KnnMemoryFactory> MakeKnnMemoryFactory(const KnnMemorySetup& setup,
                                                             const model::TransformerOptions& model,
                                                             parallel::Communicator& group) {
  if (!setup.prebuilt.empty()) {
    return model::KnnMemoryFactory([prebuilt = setup.prebuilt](int64_t layer, int64_t rows) {
      auto memory = prebuilt.find(layer);
      TORCH_CHECK(memory != prebuilt.end(), "decoder.", layer,
                  ": is a knn layer, but the prebuilt kNN memory has none for it");
      model::KnnMemoryBinding binding;
      binding.memory = memory->second;
      binding.streams.assign(static_cast<size_t>(rows), 0);
      binding.use = model::KnnMemoryUse::kReadOnly;
      return binding;
    });
  }
  parallel::KnnMemorySpec spec;
  spec.backend = setup.backend;
  spec.capacity = model.attention_options.knn.memory_size;
  spec.sharded = setup.sharded;
  MEMTRAIN_RETURN_IF_ERROR(parallel::CheckKnnMemorySpec(spec, &group));
  MEMTRAIN_ASSIGN_OR_RETURN(const Scope* scope, Scopes().Find(setup.scope));
  LOG_IF(WARNING,
         absl::StartsWith(setup.backend, "faiss") && setup.scope == "stream" && group.rank() == 0)
      << "[knn] --knn_backend=" << setup.backend
      << " with --knn_scope=stream: a FAISS index is rebuilt whenever "
      << "its stream evicts, i.e. every segment once a stream's memory is full; exact is faster "
         "for per-stream "
      << "memories (docs/KNN_MEMORY.md)";
  return model::KnnMemoryFactory([spec, scope = *scope, &group](int64_t layer, int64_t rows) {
    auto memory = parallel::MakeKnnMemory(spec, &group);
    TORCH_CHECK(memory.ok(), "decoder.", layer, ": ", memory.status().ToString());  // checked above
    model::KnnMemoryBinding binding = scope(rows, spec.sharded ? group.rank() : 0);
    binding.memory = std::move(*memory);
    return binding;
  });
}

}  // namespace memtrain::trainer
