#include "common/process.h"

#include <malloc.h>

#include <climits>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace memtrain {
namespace {

// mallopt takes an int, so 2 GiB - 1 is the largest threshold it accepts;
// allocations above it are rare enough (one per run) not to matter.
constexpr int kMallocThresholdBytes = INT_MAX;

bool g_malloc_configured = false;

}  // namespace

void ConfigureProcess() {
  if (g_malloc_configured) return;
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, kMallocThresholdBytes) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, kMallocThresholdBytes) == 1;
  g_malloc_configured = mmap_ok && trim_ok;
  // glog's own flags cannot be Abseil flags (TOOLCHAIN.md §1 pitfall 4); the
  // default here is stderr, and GLOG_logtostderr / GLOG_log_dir still win.
  if (std::getenv("GLOG_logtostderr") == nullptr && std::getenv("GLOG_log_dir") == nullptr) {
    FLAGS_logtostderr = true;
  }
}

std::string ProcessSettingsSummary() {
  return absl::StrCat("malloc mmap/trim thresholds ",
                      g_malloc_configured ? absl::StrCat(kMallocThresholdBytes, " B")
                                          : std::string("NOT set (mallopt refused)"));
}

}  // namespace memtrain
