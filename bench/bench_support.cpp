#include "bench/bench_support.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "glog/logging.h"

ABSL_FLAG(std::string, json, "", "Write every number to this file (rank 0 under mpirun).");
ABSL_FLAG(std::string, work_dir, "",
          "Scratch directory of the benchmarks that write files (default: a fresh temporary "
          "directory, removed at the end).");
ABSL_FLAG(std::optional<int>, warmup, std::nullopt,
          "Untimed repetitions at the start of each measurement (default: the benchmark's, see its "
          "usage).");
ABSL_FLAG(std::optional<int>, repeats, std::nullopt,
          "Timed repetitions per measurement; the benchmark reports their median (default: the "
          "benchmark's, see its usage).");

namespace memtrain::bench {

absl::Status SetRepetitionDefaults(int warmup, int repeats) {
  if (!absl::GetFlag(FLAGS_warmup).has_value()) absl::SetFlag(&FLAGS_warmup, warmup);
  if (!absl::GetFlag(FLAGS_repeats).has_value()) absl::SetFlag(&FLAGS_repeats, repeats);
  if (Warmup() < 0)
    return absl::InvalidArgumentError(absl::StrCat("--warmup=", Warmup(), ": not >= 0"));
  if (Repeats() < 1)
    return absl::InvalidArgumentError(absl::StrCat("--repeats=", Repeats(), ": not >= 1"));
  return absl::OkStatus();
}

int Warmup() {
  const std::optional<int> warmup = absl::GetFlag(FLAGS_warmup);
  CHECK(warmup.has_value()) << "Warmup() before SetRepetitionDefaults";
  return *warmup;
}

int Repeats() {
  const std::optional<int> repeats = absl::GetFlag(FLAGS_repeats);
  CHECK(repeats.has_value()) << "Repeats() before SetRepetitionDefaults";
  return *repeats;
}

absl::Status WriteJsonIfRequested(const nlohmann::json& results) {
  const std::string path = absl::GetFlag(FLAGS_json);
  if (path.empty()) return absl::OkStatus();
  std::ofstream out(path);
  out << results.dump(2) << "\n";
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("--json: cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<WorkDir> WorkDir::Create(absl::string_view benchmark) {
  std::string path = absl::GetFlag(FLAGS_work_dir);
  std::error_code error;
  if (!path.empty()) {
    std::filesystem::create_directories(path, error);
    if (error)
      return absl::InternalError(
          absl::StrCat("--work_dir: cannot create ", path, ": ", error.message()));
    return WorkDir(std::move(path), /*remove=*/false);
  }
  const std::filesystem::path temp = std::filesystem::temp_directory_path(error);
  if (error) return absl::InternalError(absl::StrCat("no temporary directory: ", error.message()));
  std::string pattern = (temp / absl::StrCat("memtrain_", benchmark, "_XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create a directory like ", pattern));
  }
  return WorkDir(std::move(pattern), /*remove=*/true);
}

WorkDir::WorkDir(WorkDir&& other) noexcept : path_(std::move(other.path_)), remove_(other.remove_) {
  other.remove_ = false;
}

WorkDir::~WorkDir() {
  if (!remove_) return;
  std::error_code error;
  std::filesystem::remove_all(path_, error);
  if (error) LOG(WARNING) << "cannot remove " << path_ << ": " << error.message();
}

absl::StatusOr<nlohmann::json> ChildResult::LastLineJson() const {
  const std::vector<absl::string_view> lines =
      absl::StrSplit(stdout_text, '\n', absl::SkipWhitespace());
  if (lines.empty()) return absl::InternalError(absl::StrCat("`", command, "` printed nothing"));
  nlohmann::json parsed = nlohmann::json::parse(lines.back(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InternalError(
        absl::StrCat("`", command, "` printed no JSON last: ", lines.back()));
  }
  return parsed;
}

absl::StatusOr<ChildResult> RunChild(const ChildCommand& command) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> child, ChildProcess::Start(command));
  ChildResult result;
  result.command = child->command();
  MEMTRAIN_ASSIGN_OR_RETURN(result.stdout_text, child->ReadRest());
  MEMTRAIN_RETURN_IF_ERROR(child->Wait());
  result.peak_rss_mb = child->peak_rss_mb();
  return result;
}

double Median(std::vector<double> values) {
  CHECK(!values.empty()) << "the median of nothing";
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

absl::StatusOr<std::string> ThisExecutable() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error)
    return absl::InternalError(absl::StrCat("cannot read /proc/self/exe: ", error.message()));
  return self.string();
}

absl::StatusOr<std::string> SiblingExecutable(absl::string_view name) {
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string self, ThisExecutable());
  return (std::filesystem::path(self).parent_path() / std::string(name)).string();
}

}  // namespace memtrain::bench
