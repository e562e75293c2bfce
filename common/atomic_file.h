// File: common/atomic_file.h
//
// Writing a file or a directory so that readers, and a crash at any moment,
// see either the old one or the complete new one, never a part. Every
// memtrain artifact is written this way: corpora (data/corpus_file.h), models
// (checkpoints/model_file.h), training checkpoints (checkpoints/checkpoint.h)
// and built kNN memories.
//
//   const std::string staging = StagingPath("runs/model");  // runs/model.partial-<pid>
//   ... write the file or the directory's files at `staging` ...
//   MEMTRAIN_RETURN_IF_ERROR(Publish(staging, "runs/model"));
//
// Publish makes the content durable before anything points at it: it fsyncs
// the staged file (a directory: each regular file in it, then the directory),
// renames it over the target, and fsyncs the target's parent so the rename
// itself survives a power cut. Until Publish returns OK the target is
// untouched; a crash leaves at most a `.partial` next to it, which the next
// writer of that target replaces.
//
// Collective writers (every rank writes its files into one staging directory,
// rank 0 publishes once all reported success) pick a staging name every rank
// agrees on with StagingPath(target, tag).
#ifndef MEMTRAIN_COMMON_ATOMIC_FILE_H_
#define MEMTRAIN_COMMON_ATOMIC_FILE_H_

#include <string>

#include "absl/status/status.h"

namespace memtrain {

/// `<target>.partial-<pid>`, or `<target>.partial` + `tag` when one is given
/// (a name every rank of a job computes alike).
std::string StagingPath(const std::string& target);
std::string StagingPath(const std::string& target, const std::string& tag);

/// Removes whatever is at `staging` (a crashed earlier attempt) and creates
/// it as an empty directory.
absl::Status CreateStagingDirectory(const std::string& staging);

/// Makes `staging` (a file, or a directory of regular files) the `target`:
/// fsync, rename over the target (a directory target is moved aside first
/// and deleted after the rename, since rename() cannot replace a non-empty
/// directory), fsync of the target's parent.
absl::Status Publish(const std::string& staging, const std::string& target);

/// Writes `bytes` to `path` (replacing it) and fsyncs the file. For small
/// files inside a staging directory; on its own it is not atomic.
absl::Status WriteFileDurably(const std::string& path, const std::string& bytes);

/// fsync of a file or a directory (its entries).
absl::Status Fsync(const std::string& path);

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_ATOMIC_FILE_H_
