#include "memory/knn_memory_setup.h"

#include <functional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/registry.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "memory/knn_memory_factory.h"

namespace memtrain::memory {
namespace {

// Each row's stream and the scope, for `rows` rows on `rank` of the ranks
// that share the memory (0 unless sharded).
using Scope = std::function<KnnLayerMemory(int64_t rows, int rank)>;

const NamedRegistry<Scope>& Scopes() {
  static const auto* scopes = new NamedRegistry<Scope>(
      "kNN memory scope", {
                              {"stream",
                               [](int64_t rows, int rank) {
                                 KnnLayerMemory layer;
                                 // Distinct over the ranks that share
                                 // the memory: rank-major.
                                 for (int64_t b = 0; b < rows; ++b)
                                   layer.streams.push_back(rank * rows + b);
                                 layer.scope = KnnScope::kStream;
                                 return layer;
                               }},
                              {"shared",
                               [](int64_t rows, int /*rank*/) {
                                 KnnLayerMemory layer;
                                 layer.streams.assign(static_cast<size_t>(rows), 0);
                                 layer.scope = KnnScope::kShared;
                                 return layer;
                               }},
                          });
  return *scopes;
}

}  // namespace

std::vector<std::string> KnnScopeNames() { return Scopes().names(); }

absl::StatusOr<KnnLayerMemories> MakeKnnLayerMemories(const KnnMemorySetup& setup, int64_t capacity,
                                                      parallel::Communicator& group) {
  if (!setup.prebuilt.empty()) {
    return KnnLayerMemories([prebuilt = setup.prebuilt](int64_t layer, int64_t rows) {
      auto memory = prebuilt.find(layer);
      TORCH_CHECK(memory != prebuilt.end(), "decoder.", layer,
                  ": is a knn layer, but the prebuilt kNN memory has none for it");
      KnnLayerMemory layer_memory;
      layer_memory.memory = memory->second;
      layer_memory.streams.assign(static_cast<size_t>(rows), 0);
      layer_memory.scope = KnnScope::kPrebuilt;
      return layer_memory;
    });
  }
  KnnMemorySpec spec;
  spec.backend = setup.backend;
  spec.capacity = capacity;
  spec.sharded = setup.sharded;
  MEMTRAIN_RETURN_IF_ERROR(CheckKnnMemorySpec(spec, &group));
  MEMTRAIN_ASSIGN_OR_RETURN(const Scope* scope, Scopes().Find(setup.scope));
  LOG_IF(WARNING,
         absl::StartsWith(setup.backend, "faiss") && setup.scope == "stream" && group.rank() == 0)
      << "[knn] --knn_backend=" << setup.backend
      << " with --knn_scope=stream: a FAISS index is rebuilt whenever "
      << "its stream evicts, i.e. every segment once a stream's memory is full; exact is faster "
         "for per-stream "
      << "memories (docs/KNN_MEMORY.md)";
  return KnnLayerMemories([spec, scope = *scope, &group](int64_t layer, int64_t rows) {
    auto memory = MakeKnnMemory(spec, &group);
    TORCH_CHECK(memory.ok(), "decoder.", layer, ": ", memory.status().ToString());  // checked above
    KnnLayerMemory layer_memory = scope(rows, spec.sharded ? group.rank() : 0);
    layer_memory.memory = std::move(*memory);
    return layer_memory;
  });
}

}  // namespace memtrain::memory
