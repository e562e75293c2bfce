// File: launch/batch_flags.h
//
// The batch-shape flags (--streams, --segment_length, --max_tokens,
// --max_source_length, --max_target_length), declared once for every binary
// that reads batches, from data/batch_source.h's MEMTRAIN_BATCH_SHAPE_OPTIONS
// (names, help) and BatchSourceOptions (defaults).
//
//   data::BatchSourceOptions source;
//   MEMTRAIN_RETURN_IF_ERROR(launch::ApplyBatchShapeFlags(&source));
#ifndef MEMTRAIN_LAUNCH_BATCH_FLAGS_H_
#define MEMTRAIN_LAUNCH_BATCH_FLAGS_H_

#include <cstdint>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "data/batch_source.h"

ABSL_DECLARE_FLAG(int, streams);
ABSL_DECLARE_FLAG(int, segment_length);
ABSL_DECLARE_FLAG(int64_t, max_source_length);

namespace memtrain::launch {

/// Sets `options`' batch shape from the flags; kInvalidArgument naming the
/// flag when a value is below 1 (RequireFlagAtLeast).
absl::Status ApplyBatchShapeFlags(data::BatchSourceOptions* options);

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_BATCH_FLAGS_H_
