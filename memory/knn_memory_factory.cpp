#include "memory/knn_memory_factory.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "common/registry.h"
#include "common/status_macros.h"
#include "memory/exact_knn_memory.h"
#include "memory/sharded_knn_memory.h"
#ifdef MEMTRAIN_WITH_FAISS
#include "memory/faiss_knn_memory.h"
#endif

namespace memtrain::memory {
namespace {

using Backend = std::function<std::unique_ptr<KnnMemory>(int64_t capacity)>;

std::unique_ptr<KnnMemory> Exact(int64_t capacity, c10::optional<at::ScalarType> storage) {
  return std::make_unique<ExactKnnMemory>(ExactKnnMemoryOptions(capacity).storage_dtype(storage));
}

#ifdef MEMTRAIN_WITH_FAISS
std::unique_ptr<KnnMemory> Faiss(int64_t capacity, FaissIndexKind kind) {
  return std::make_unique<FaissKnnMemory>(FaissKnnMemoryOptions(capacity).kind(kind));
}
#endif

const NamedRegistry<Backend>& Backends() {
  static const auto* backends = new NamedRegistry<Backend>(
      "kNN memory backend",
      {
          {"exact", [](int64_t capacity) { return Exact(capacity, c10::nullopt); }},
          {"exact_bf16", [](int64_t capacity) { return Exact(capacity, at::kBFloat16); }},
#ifdef MEMTRAIN_WITH_FAISS
          {"faiss_flat", [](int64_t capacity) { return Faiss(capacity, FaissIndexKind::kFlat); }},
          {"faiss_hnsw", [](int64_t capacity) { return Faiss(capacity, FaissIndexKind::kHnsw); }},
#endif
      });
  return *backends;
}

}  // namespace

absl::Status CheckKnnMemorySpec(const KnnMemorySpec& spec, const parallel::Communicator* group) {
  MEMTRAIN_RETURN_IF_ERROR(Backends().Find(spec.backend).status());
  if (spec.capacity < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("kNN memory capacity must be >= 1, got ", spec.capacity));
  }
  if (spec.sharded && group == nullptr) {
    return absl::InvalidArgumentError("a sharded kNN memory needs a communicator group");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<KnnMemory>> MakeKnnMemory(const KnnMemorySpec& spec,
                                                         parallel::Communicator* group) {
  MEMTRAIN_RETURN_IF_ERROR(CheckKnnMemorySpec(spec, group));
  MEMTRAIN_ASSIGN_OR_RETURN(const Backend* backend, Backends().Find(spec.backend));
  std::unique_ptr<KnnMemory> memory = (*backend)(spec.capacity);
  if (!spec.sharded) return std::shared_ptr<KnnMemory>(std::move(memory));
  return std::shared_ptr<KnnMemory>(
      std::make_shared<ShardedKnnMemory>(*group, std::move(memory), spec.capacity));
}

std::vector<std::string> KnnBackendNames() { return Backends().names(); }

}  // namespace memtrain::memory
