// File: trainer/metrics_log.h
//
// Metrics as JSON lines, one object per record, appended and flushed at
// once, so `tail -f` and plots (scripts/plot_metrics) see every step and a
// crash loses nothing already written. Each record carries "kind" (train,
// valid, eval, ...) and the wall time.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(auto log, MetricsLog::Open("runs/lm/metrics.jsonl"));
//   log->Write("train", {{"step", 10}, {"loss", 5.2}});
#ifndef MEMTRAIN_TRAINER_METRICS_LOG_H_
#define MEMTRAIN_TRAINER_METRICS_LOG_H_

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace memtrain::trainer {

class MetricsLog {
 public:
  /// Appends to `path` (creating its directory); kInternal naming the path when it cannot.
  static absl::StatusOr<std::unique_ptr<MetricsLog>> Open(const std::string& path);
  ~MetricsLog();

  absl::Status Write(const std::string& kind, nlohmann::json record);

 private:
  MetricsLog(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  const std::string path_;
  std::FILE* file_;
};

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_METRICS_LOG_H_
