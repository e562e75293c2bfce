#include "launch/knn_memory_flags.h"

#include <algorithm>
#include <type_traits>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "memory/knn_memory_factory.h"
#include "memory/knn_memory_setup.h"

namespace {
const memtrain::memory::KnnMemorySetup kDefaults;
}  // namespace

#define MEMTRAIN_KNN_MEMORY_FLAG(name, member, help)                                \
  ABSL_FLAG(std::decay_t<decltype(memtrain::memory::KnnMemorySetup::member)>, name, \
            kDefaults.member, help);
MEMTRAIN_KNN_MEMORY_OPTIONS(MEMTRAIN_KNN_MEMORY_FLAG)
#undef MEMTRAIN_KNN_MEMORY_FLAG

namespace memtrain::launch {

absl::StatusOr<memory::KnnMemorySetup> KnnMemorySetupFromFlags() {
  memory::KnnMemorySetup setup;
#define MEMTRAIN_KNN_MEMORY_OPTION_FROM_FLAG(name, member, help) \
  setup.member = absl::GetFlag(FLAGS_##name);
  MEMTRAIN_KNN_MEMORY_OPTIONS(MEMTRAIN_KNN_MEMORY_OPTION_FROM_FLAG)
#undef MEMTRAIN_KNN_MEMORY_OPTION_FROM_FLAG
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
