#include "launch/batch_flags.h"

#include <type_traits>

#include "absl/flags/flag.h"
#include "common/binary.h"
#include "common/status_macros.h"

namespace {
const memtrain::data::BatchSourceOptions kDefaults;
}  // namespace

#define MEMTRAIN_BATCH_SHAPE_FLAG(name, help)                                       \
  ABSL_FLAG(std::decay_t<decltype(memtrain::data::BatchSourceOptions::name)>, name, \
            kDefaults.name, help);
MEMTRAIN_BATCH_SHAPE_OPTIONS(MEMTRAIN_BATCH_SHAPE_FLAG)
#undef MEMTRAIN_BATCH_SHAPE_FLAG

namespace memtrain::launch {

absl::Status ApplyBatchShapeFlags(data::BatchSourceOptions* options) {
#define MEMTRAIN_APPLY_BATCH_SHAPE_FLAG(name, help) \
  options->name = absl::GetFlag(FLAGS_##name);      \
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast(#name, options->name, 1));
  MEMTRAIN_BATCH_SHAPE_OPTIONS(MEMTRAIN_APPLY_BATCH_SHAPE_FLAG)
#undef MEMTRAIN_APPLY_BATCH_SHAPE_FLAG
  return absl::OkStatus();
}

}  // namespace memtrain::launch
