#include "trainer/metrics_log.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace memtrain::trainer {

absl::StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Open(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code error;
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  std::FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) return absl::InternalError(absl::StrCat("cannot open metrics file ", path));
  return std::unique_ptr<MetricsLog>(new MetricsLog(path, file));
}

MetricsLog::~MetricsLog() { std::fclose(file_); }

absl::Status MetricsLog::Write(const std::string& kind, nlohmann::json record) {
  record["kind"] = kind;
  record["time"] = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  // NaN is not JSON: nlohmann writes null, which readers treat as missing.
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    return absl::InternalError(absl::StrCat("cannot write metrics to ", path_));
  }
  return absl::OkStatus();
}

}  // namespace memtrain::trainer
