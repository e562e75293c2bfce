// File: checkpoints/checkpoint.h
//
// The on-disk protocol of a training checkpoint (docs/CHECKPOINTS.md): which
// files a checkpoint directory holds, how it becomes complete atomically, how
// it is verified, and how the newest complete one is found. What goes into
// the files, and the collective steps between the calls, are
// training_checkpoint.h's; this header never sees a communicator:
//
//   rank 0:     MEMTRAIN_ASSIGN_OR_RETURN(std::string partial, CreatePartialCheckpoint(dir, step));
//   barrier     (every rank now sees the empty `<dir>/step-<N>.partial`)
//   every rank: writes its files into `partial`, and DescribeCheckpointFile()s
//               each (size and sha256, read back)
//   all-gather  of those entries; each rank VerifyCheckpointFile()s its share
//               of the others' files; all-reduce of the results (any failure:
//               nobody commits)
//   rank 0:     MEMTRAIN_ASSIGN_OR_RETURN(std::string path,
//                                         CommitCheckpoint(dir, step, keep_last, entries));
//
// CommitCheckpoint writes MANIFEST.json from the entries the ranks verified
// (it hashes nothing itself), publishes `step-<N>.partial` as `step-<N>`
// (common/atomic_file.h; the commit: a directory named `step-<N>` is
// complete by construction), fsyncs `dir`, then moves the `latest` symlink
// (a temporary link renamed over it), sets aside as `step-<M>.abandoned` the
// complete checkpoints of later steps (an abandoned timeline: the run resumed
// from an older one), and deletes the oldest complete checkpoints beyond
// `keep_last`. A crash at any point leaves either a `.partial` directory,
// which nothing reads and the next save of that step replaces, or a complete
// checkpoint.
//
// After a checkpoint taken because the run was asked to stop (a preemption
// signal) is committed, rank 0 writes PREEMPTED.json next to the
// checkpoints: the run wants to be continued from that step. Batch scripts
// requeue on its presence (docs/CLUSTER.md), not on exit statuses, which race
// when a launcher kills the slower ranks; a run that starts training removes
// it, so it always describes the newest run of `dir`.
//
// `dir` must be on a filesystem every rank sees (the ranks write into one
// directory); the checkpoint's files are plain model.pt/model.json (so
// memtrain-eval --model=<dir>/latest works), optimizer.pt, trainer.json and
// one rank-<r>.safetensors per rank.
#ifndef MEMTRAIN_CHECKPOINTS_CHECKPOINT_H_
#define MEMTRAIN_CHECKPOINTS_CHECKPOINT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace memtrain::checkpoints {

/// How memtrain-train checkpoints (flags of the same names).
struct CheckpointOptions {
  std::string dir;                ///< empty: no checkpoints
  int64_t save_every_steps = 0;   ///< 0: not by step count
  double save_every_minutes = 0;  ///< 0: not by time (rank 0's clock decides for all)
  int keep_last = 3;              ///< complete checkpoints kept, >= 1
  std::string resume =
      "none";  ///< none, auto (newest complete one in dir) or a checkpoint directory
  bool save_knn_memory =
      false;  ///< lm: also save every stream's memory (needed for an exact resume)
  /// Run-identity fields --resume=auto may find changed on purpose (--resume_changed).
  std::vector<std::string> resume_changed;
  /// At another world size with memory states saved: "drop" them, or "" (refuse).
  std::string knn_memory_on_resize;
};

inline constexpr char kManifestName[] = "MANIFEST.json";
inline constexpr char kLatestName[] = "latest";

/// "step-00000042": names sort by step.
std::string CheckpointName(int64_t step);

/// `<dir>/step-<N>` and `<dir>/step-<N>.partial`.
std::string CheckpointPath(const std::string& dir, int64_t step);
std::string PartialCheckpointPath(const std::string& dir, int64_t step);

/// Rank 0, before any rank writes: an empty `<dir>/step-<N>.partial`
/// (a leftover of a crashed save is removed). Returns its path.
absl::StatusOr<std::string> CreatePartialCheckpoint(const std::string& dir, int64_t step);
/// `<dir>/PREEMPTED.json`, one JSON line (so that a shell can read a field
/// with sed): {"step", "checkpoint", "signal", "signal_name", "save_seconds",
/// "step_seconds", "time"}.
inline constexpr char kPreemptedMarkerName[] = "PREEMPTED.json";
struct PreemptedMarker {
  int64_t step = 0;         ///< of the checkpoint committed before stopping
  int signal = 0;           ///< that asked the run to stop
  double save_seconds = 0;  ///< the save took (a preemption lead time must cover it)
  double step_seconds = 0;  ///< the last training step took (the wait for the step boundary)
};
/// Rank 0, after CommitCheckpoint of `marker.step`: writes the marker
/// atomically (common/atomic_file.h).
absl::Status WritePreemptedMarker(const std::string& dir, const PreemptedMarker& marker);
/// Rank 0, when a run starts training: removes a marker left by an earlier
/// run (OK when there is none).
absl::Status RemovePreemptedMarker(const std::string& dir);

struct ManifestEntry {
  std::string file;  ///< relative to the checkpoint directory
  int64_t bytes = 0;
  std::string sha256;
};

/// Rank 0, after every rank wrote, fsynced and verified its files: the
/// manifest listing `files` (which must be exactly the regular files in the
/// staging directory, else kInternal: an unverified file is never committed),
/// the rename, `latest`, retention. Returns the checkpoint's path.
absl::StatusOr<std::string> CommitCheckpoint(const std::string& dir, int64_t step, int keep_last,
                                             std::vector<ManifestEntry> files);

/// `file` of the checkpoint (or staging) directory `checkpoint`, read back
/// from disk: its size and sha256.
absl::StatusOr<ManifestEntry> DescribeCheckpointFile(const std::string& checkpoint,
                                                     const std::string& file);
/// Reads `entry.file` back and checks it has the size and sha256 of `entry`,
/// which came from `expected_from` ("the manifest", "its writer (rank 0)").
/// kDataLoss naming the file and the damage (missing, truncated, corrupted).
absl::Status VerifyCheckpointFile(const std::string& checkpoint, const ManifestEntry& entry,
                                  absl::string_view expected_from);
struct Manifest {
  int64_t step = 0;
  std::vector<ManifestEntry> files;
};
/// kNotFound without a manifest (not a checkpoint, or incomplete);
/// kDataLoss for a malformed one.
absl::StatusOr<Manifest> ReadManifest(const std::string& checkpoint);
/// Checks every file the manifest lists (or those `wanted` accepts): present,
/// of the listed size, with the listed sha256. kDataLoss naming the first
/// damaged file and how it is damaged.
absl::Status VerifyCheckpoint(const std::string& checkpoint,
                              const std::function<bool(const std::string& file)>& wanted = nullptr);

struct CheckpointRef {
  int64_t step = 0;
  std::string path;
};
/// The complete-by-name (`step-<N>`, not `.partial`) checkpoints in `dir`,
/// newest first; unverified.
std::vector<CheckpointRef> ListCheckpoints(const std::string& dir);
/// The newest checkpoint in `dir` whose step is <= `max_step` and that
/// verifies (only the files `wanted` accepts); each damaged one skipped on
/// the way is reported in `skipped` ("<path>: <reason naming the file>").
/// kNotFound when none qualifies.
absl::StatusOr<CheckpointRef> FindNewestValid(
    const std::string& dir, int64_t max_step,
    const std::function<bool(const std::string& file)>& wanted, std::vector<std::string>* skipped);

}  // namespace memtrain::checkpoints

#endif  // MEMTRAIN_CHECKPOINTS_CHECKPOINT_H_
