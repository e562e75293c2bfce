// File: common/progress.h
//
// Progress of a long operation: a redrawn bar (rate, ETA) when stderr is a
// terminal, and otherwise a plain log line every `plain_interval`, so batch
// logs show progress without carriage-return noise.
//
//   ProgressReporter progress("[prepare] encode", total_bytes, Unit::kBytes);
//   while (...) progress.Update(bytes_done);
//   progress.Finish();
#ifndef MEMTRAIN_COMMON_PROGRESS_H_
#define MEMTRAIN_COMMON_PROGRESS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace memtrain {

class ProgressReporter {
 public:
  enum class Unit { kBytes, kItems };

  /// `total` 0 means unknown (no percentage or ETA).
  ProgressReporter(std::string label, int64_t total, Unit unit,
                   absl::Duration plain_interval = absl::Seconds(10));
  /// Sets the amount done so far (absolute, not an increment). Cheap: redraws
  /// at most 10 times a second.
  void Update(int64_t done);
  /// Prints the final state once.
  void Finish();

  /// "12.3 MB" or "4,096 items" style rendering, and the line printed now.
  std::string Render(int64_t done, absl::Duration elapsed) const;

 private:
  const std::string label_;
  const int64_t total_;
  const Unit unit_;
  const absl::Duration plain_interval_;
  const bool terminal_;
  const absl::Time start_;
  absl::Time last_print_;
  int64_t done_ = 0;
  bool finished_ = false;
};

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_PROGRESS_H_
