// File: common/process.h
//
// Process-wide settings every memtrain binary applies first thing in main(),
// before any large allocation, MPI or LibTorch work:
//
//   int main(int argc, char** argv) {
//     memtrain::ConfigureProcess();
//     ...
//   }
//
// Why (TOOLCHAIN.md §0, §2, §3): page faults are very expensive on the VMs we
// run on, and glibc hands every block above 128 KiB (dynamically raised up to
// 32 MiB) back to the kernel on free, so each large tensor or MPI temporary is
// faulted in again on every allocation. Raising the mmap and trim thresholds
// keeps freed memory in the heap: 2-10x faster large allocations, 10x faster
// 100 MB MPI all-reduces. We set them with mallopt() so the binaries do not
// depend on the caller's environment (MALLOC_*_ / GLIBC_TUNABLES).
#ifndef MEMTRAIN_COMMON_PROCESS_H_
#define MEMTRAIN_COMMON_PROCESS_H_

#include <string>

namespace memtrain {

/// Applies the malloc thresholds above and makes glog log to stderr unless the
/// caller configured glog through GLOG_* variables. Idempotent.
void ConfigureProcess();

/// A one-line description of what ConfigureProcess() applied, for logs.
std::string ProcessSettingsSummary();

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_PROCESS_H_
