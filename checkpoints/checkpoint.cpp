#include "checkpoints/checkpoint.h"

#include <string.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "data/corpus_file.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"

namespace memtrain::checkpoints {
namespace {

namespace fs = std::filesystem;

constexpr char kStepPrefix[] = "step-";

}  // namespace

std::string CheckpointName(int64_t step) { return absl::StrFormat("%s%08d", kStepPrefix, step); }

std::string CheckpointPath(const std::string& dir, int64_t step) {
  return (fs::path(dir) / CheckpointName(step)).string();
}

std::string PartialCheckpointPath(const std::string& dir, int64_t step) {
  return StagingPath(CheckpointPath(dir, step), "");
}

absl::StatusOr<std::string> CreatePartialCheckpoint(const std::string& dir, int64_t step) {
  const std::string partial = PartialCheckpointPath(dir, step);
  MEMTRAIN_RETURN_IF_ERROR(CreateStagingDirectory(partial));
  return partial;
}

absl::StatusOr<std::string> CommitCheckpoint(const std::string& dir, int64_t step, int keep_last,
                                             std::vector<ManifestEntry> files) {
  const std::string partial = PartialCheckpointPath(dir, step);
  const fs::path target = CheckpointPath(dir, step);
  std::sort(files.begin(), files.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.file < b.file; });
  std::vector<std::string> present, listed;
  for (const auto& entry : fs::directory_iterator(partial)) {
    if (entry.is_regular_file() && entry.path().filename() != kManifestName) {
      present.push_back(entry.path().filename().string());
    }
  }
  std::sort(present.begin(), present.end());
  for (const ManifestEntry& entry : files) listed.push_back(entry.file);
  if (present != listed) {
    return absl::InternalError(absl::StrCat("not committing ", partial, ": it holds [",
                                            absl::StrJoin(present, ", "), "] but the ranks wrote [",
                                            absl::StrJoin(listed, ", "), "]"));
  }
  nlohmann::json manifest;
  manifest["format"] = "memtrain-checkpoint-1";
  manifest["step"] = step;
  manifest["files"] = nlohmann::json::array();
  for (const ManifestEntry& entry : files) {
    manifest["files"].push_back(
        {{"file", entry.file}, {"bytes", entry.bytes}, {"sha256", entry.sha256}});
  }
  MEMTRAIN_RETURN_IF_ERROR(
      WriteFileDurably((fs::path(partial) / kManifestName).string(), manifest.dump(2) + "\n"));
  // A checkpoint of this step from an earlier attempt (a run resumed from an
  // older one) is replaced: the new one is at least as recent.
  MEMTRAIN_RETURN_IF_ERROR(Publish(partial, target.string()));
  std::error_code error;
  // `latest` moves only now, and atomically: a new link renamed over the old.
  const fs::path latest = fs::path(dir) / kLatestName,
                 link = fs::path(dir) / absl::StrCat(kLatestName, ".tmp");
  fs::remove(link, error);
  fs::create_directory_symlink(CheckpointName(step), link, error);
  if (!error) fs::rename(link, latest, error);
  if (error)
    return absl::InternalError(absl::StrCat("cannot point ", latest.string(), " at ",
                                            target.string(), ": ", error.message()));
  // One timeline: committing step N means this run resumed from N or
  // before, so complete checkpoints after N belong to an abandoned one
  // (a rollback, a damaged checkpoint skipped). They are set aside, not
  // deleted, and no longer count: retention then keeps the newest commits
  // of this timeline, the one just made first, and `--resume=auto` cannot
  // jump back to the abandoned run.
  std::vector<CheckpointRef> timeline;  // this run's complete checkpoints, newest first
  for (const CheckpointRef& checkpoint : ListCheckpoints(dir)) {
    if (checkpoint.step <= step) {
      timeline.push_back(checkpoint);
      continue;
    }
    std::string aside = absl::StrCat(checkpoint.path, ".abandoned");
    for (int n = 2; fs::exists(aside); ++n) aside = absl::StrCat(checkpoint.path, ".abandoned-", n);
    fs::rename(checkpoint.path, aside, error);
    if (error)
      return absl::InternalError(absl::StrCat("cannot set aside ", checkpoint.path,
                                              " (newer than the resumed run's step ", step,
                                              "): ", error.message()));
    LOG(WARNING) << "[checkpoint] " << checkpoint.path
                 << " is from an abandoned timeline (after step " << step
                 << ", which this run resumed before); set aside as " << aside;
  }
  MEMTRAIN_RETURN_IF_ERROR(Fsync(dir));
  for (size_t i = static_cast<size_t>(std::max(keep_last, 1)); i < timeline.size(); ++i) {
    fs::remove_all(timeline[i].path, error);
  }
  return target.string();
}

absl::Status WritePreemptedMarker(const std::string& dir, const PreemptedMarker& marker) {
  const char* abbreviation = sigabbrev_np(marker.signal);
  const nlohmann::json line = {
      {"step", marker.step},
      {"checkpoint", CheckpointName(marker.step)},
      {"signal", marker.signal},
      {"signal_name", abbreviation ? absl::StrCat("SIG", abbreviation) : ""},
      {"save_seconds", marker.save_seconds},
      {"step_seconds", marker.step_seconds},
      {"time", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone())}};
  const std::string target = (fs::path(dir) / kPreemptedMarkerName).string();
  const std::string staging = StagingPath(target);
  MEMTRAIN_RETURN_IF_ERROR(WriteFileDurably(staging, line.dump() + "\n"));
  return Publish(staging, target);
}

absl::Status RemovePreemptedMarker(const std::string& dir) {
  const fs::path marker = fs::path(dir) / kPreemptedMarkerName;
  std::error_code error;
  if (fs::remove(marker, error) || !error) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("cannot remove ", marker.string(), ": ", error.message()));
}

absl::StatusOr<Manifest> ReadManifest(const std::string& checkpoint) {
  const fs::path path = fs::path(checkpoint) / kManifestName;
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(
        absl::StrCat(path.string(), " is missing (not a complete checkpoint)"));
  Manifest manifest;
  try {
    const nlohmann::json json = nlohmann::json::parse(in);
    manifest.step = json.at("step").get<int64_t>();
    for (const auto& entry : json.at("files")) {
      manifest.files.push_back({entry.at("file").get<std::string>(),
                                entry.at("bytes").get<int64_t>(),
                                entry.at("sha256").get<std::string>()});
    }
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(path.string(), " is malformed: ", e.what()));
  }
  return manifest;
}

absl::StatusOr<ManifestEntry> DescribeCheckpointFile(const std::string& checkpoint,
                                                     const std::string& file) {
  MEMTRAIN_ASSIGN_OR_RETURN(data::InputFile described,
                            data::DescribeInputFile((fs::path(checkpoint) / file).string()));
  return ManifestEntry{file, described.bytes, described.sha256};
}

absl::Status VerifyCheckpointFile(const std::string& checkpoint, const ManifestEntry& entry,
                                  absl::string_view expected_from) {
  const std::string path = (fs::path(checkpoint) / entry.file).string();
  std::error_code error;
  const auto bytes = fs::file_size(path, error);
  if (error)
    return absl::DataLossError(absl::StrCat(path, " is missing (listed in ", expected_from, ")"));
  if (static_cast<int64_t>(bytes) != entry.bytes) {
    return absl::DataLossError(
        absl::StrCat(path, " has ", bytes, " bytes, ", expected_from, " says ", entry.bytes,
                     bytes < static_cast<uintmax_t>(entry.bytes) ? " (truncated)" : ""));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(data::InputFile described, data::DescribeInputFile(path));
  if (described.sha256 != entry.sha256) {
    return absl::DataLossError(absl::StrCat(path, " has sha256 ", described.sha256, ", ",
                                            expected_from, " says ", entry.sha256, " (corrupted)"));
  }
  return absl::OkStatus();
}

absl::Status VerifyCheckpoint(const std::string& checkpoint,
                              const std::function<bool(const std::string& file)>& wanted) {
  MEMTRAIN_ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(checkpoint));
  for (const ManifestEntry& entry : manifest.files) {
    if (wanted && !wanted(entry.file)) continue;
    MEMTRAIN_RETURN_IF_ERROR(VerifyCheckpointFile(checkpoint, entry, "the manifest"));
  }
  return absl::OkStatus();
}

std::vector<CheckpointRef> ListCheckpoints(const std::string& dir) {
  std::vector<CheckpointRef> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    int64_t step = 0;
    if (!entry.is_directory() || entry.is_symlink() || !absl::StartsWith(name, kStepPrefix) ||
        !absl::SimpleAtoi(name.substr(sizeof(kStepPrefix) - 1), &step)) {
      continue;  // `.partial` directories fail the number parse
    }
    found.push_back({step, entry.path().string()});
  }
  std::sort(found.begin(), found.end(),
            [](const CheckpointRef& a, const CheckpointRef& b) { return a.step > b.step; });
  return found;
}

absl::StatusOr<CheckpointRef> FindNewestValid(
    const std::string& dir, int64_t max_step,
    const std::function<bool(const std::string& file)>& wanted, std::vector<std::string>* skipped) {
  for (const CheckpointRef& candidate : ListCheckpoints(dir)) {
    if (candidate.step > max_step) continue;
    const absl::Status verified = VerifyCheckpoint(candidate.path, wanted);
    if (verified.ok()) return candidate;
    if (skipped != nullptr)
      skipped->push_back(absl::StrCat(candidate.path, ": ", verified.message()));
  }
  return absl::NotFoundError(
      absl::StrCat("no complete checkpoint in ", dir,
                   max_step < INT64_MAX ? absl::StrCat(" at or before step ", max_step) : ""));
}

}  // namespace memtrain::checkpoints
