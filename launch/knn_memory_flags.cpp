#include "launch/knn_memory_flags.h"

#include <algorithm>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "memory/knn_memory_factory.h"

namespace {
const memtrain::memory::KnnMemorySetup kDefaults;
}  // namespace

ABSL_FLAG(std::string, knn_backend, kDefaults.backend,
          "knn layers: the memory's backend, how it stores and searches its entries. exact "
          "(matmul + topk, fp32), exact_bf16 (bf16 storage), faiss_flat (FAISS IndexFlatIP, "
          "exact, CPU) or faiss_hnsw (FAISS HNSW, approximate, CPU; for memories searched more "
          "often than they change). FAISS ones only in builds with FAISS.");
ABSL_FLAG(bool, knn_sharded, kDefaults.sharded,
          "knn layers: shard each memory, i.e. partition its entries over the ranks "
          "(--knn_memory_size entries per stream on each rank, so a stream holds that x ranks); "
          "searches and writes become collective. Unsharded, each rank has memories of its own.");
ABSL_FLAG(std::string, knn_scope, kDefaults.scope,
          "knn layers: the memory's scope, who writes it and what clears it. stream (the paper: "
          "each row's document stream has its own memory, cleared when its document starts) or "
          "shared (one memory for all rows, and all ranks when sharded; never cleared). "
          "memtrain-eval --knn_memory_dir makes it prebuilt (searched, never written).");

namespace memtrain::launch {

absl::StatusOr<memory::KnnMemorySetup> KnnMemorySetupFromFlags() {
  memory::KnnMemorySetup setup;
  setup.backend = absl::GetFlag(FLAGS_knn_backend);
  setup.sharded = absl::GetFlag(FLAGS_knn_sharded);
  setup.scope = absl::GetFlag(FLAGS_knn_scope);
  auto check = [](const char* flag, const std::string& value,
                  const std::vector<std::string>& known) {
    if (std::find(known.begin(), known.end(), value) != known.end()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": '", value, "' is not one of ", absl::StrJoin(known, ", ")));
  };
  if (absl::Status s = check("knn_backend", setup.backend, memory::KnnBackendNames()); !s.ok())
    return s;
  if (absl::Status s = check("knn_scope", setup.scope, memory::KnnScopeNames()); !s.ok()) return s;
  return setup;
}

}  // namespace memtrain::launch
