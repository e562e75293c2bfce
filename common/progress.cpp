#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace memtrain {
namespace {

std::string Amount(double value, ProgressReporter::Unit unit) {
  if (unit == ProgressReporter::Unit::kItems) return absl::StrFormat("%.0f", value);
  if (value >= 1e9) return absl::StrFormat("%.2f GB", value / 1e9);
  if (value >= 1e6) return absl::StrFormat("%.1f MB", value / 1e6);
  if (value >= 1e3) return absl::StrFormat("%.1f kB", value / 1e3);
  return absl::StrFormat("%.0f B", value);
}

// Slow work (a few items a second) still shows a rate, not "0 items/s".
std::string Rate(double per_second, ProgressReporter::Unit unit) {
  if (unit == ProgressReporter::Unit::kItems) {
    return absl::StrFormat(per_second < 10 ? "%.1f items/s" : "%.0f items/s", per_second);
  }
  return Amount(per_second, unit) + "/s";
}

std::string Clock(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

}  // namespace

ProgressReporter::ProgressReporter(std::string label, int64_t total, Unit unit,
                                   absl::Duration plain_interval)
    : label_(std::move(label)),
      total_(total),
      unit_(unit),
      plain_interval_(plain_interval),
      terminal_(isatty(STDERR_FILENO) == 1),
      start_(absl::Now()),
      last_print_(start_) {}

std::string ProgressReporter::Render(int64_t done, absl::Duration elapsed) const {
  const double seconds = std::max(absl::ToDoubleSeconds(elapsed), 1e-9);
  const double rate = static_cast<double>(done) / seconds;
  const std::string rate_text = Rate(rate, unit_);
  if (total_ <= 0) {
    return absl::StrCat(label_, " ", Amount(done, unit_), ", ", rate_text, ", ", Clock(seconds));
  }
  const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
  const std::string eta = rate > 0 ? Clock((total_ - done) / rate) : std::string("?");
  if (!terminal_) {
    return absl::StrFormat("%s %5.1f%% (%s of %s, %s, elapsed %s, ETA %s)", label_, 100 * fraction,
                           Amount(done, unit_), Amount(total_, unit_), rate_text, Clock(seconds),
                           eta);
  }
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar;
  for (int i = 0; i < kWidth; ++i) bar += i < filled ? "\u2588" : "\u2591";
  return absl::StrFormat("%s %5.1f%% |%s| %s / %s  %s  ETA %s", label_, 100 * fraction, bar,
                         Amount(done, unit_), Amount(total_, unit_), rate_text, eta);
}

void ProgressReporter::Update(int64_t done) {
  done_ = done;
  const absl::Time now = absl::Now();
  const absl::Duration interval = terminal_ ? absl::Milliseconds(100) : plain_interval_;
  if (now - last_print_ < interval) return;
  last_print_ = now;
  const std::string line = Render(done, now - start_);
  if (terminal_) {
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void ProgressReporter::Finish() {
  if (finished_) return;
  finished_ = true;
  const std::string line = Render(done_, absl::Now() - start_);
  std::fprintf(stderr, terminal_ ? "\r%s\033[K\n" : "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace memtrain
