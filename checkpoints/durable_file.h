// File: checkpoints/durable_file.h
//
// Writing files that survive a crash: data and directory entries reach the
// disk (fsync) before anything points at them. Used by every checkpoint
// writer in this folder.
#ifndef MEMTRAIN_CHECKPOINTS_DURABLE_FILE_H_
#define MEMTRAIN_CHECKPOINTS_DURABLE_FILE_H_

#include <string>

#include "absl/status/status.h"

namespace memtrain::checkpoints {

/// fsync of a file or a directory (its entries).
absl::Status Fsync(const std::string& path);
/// Writes `bytes` to `path` (replacing it) and fsyncs the file.
absl::Status WriteFileDurably(const std::string& path, const std::string& bytes);

}  // namespace memtrain::checkpoints

#endif  // MEMTRAIN_CHECKPOINTS_DURABLE_FILE_H_
