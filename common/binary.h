// File: common/binary.h
//
// The first and last calls in every memtrain binary's main():
//
//   int main(int argc, char** argv) {
//     std::vector<char*> args = memtrain::InitBinary(argc, argv, "Does X.\n  usage...");
//     return memtrain::RunBinary("[x]", [&] { return memtrain::Run(args); });
//   }
//
// InitBinary applies ConfigureProcess() (common/process.h), starts glog,
// parses Abseil flags (--help lists every memtrain flag of the binary;
// --flagfile reads a config) and
// warns if LibTorch's BLAS or the OpenMP runtime is not the one the build
// intends (common/native_libraries.h). Returns the positional arguments
// (argv[0] first).
//
// RunBinary turns every failure of the work, an error Status or an exception
// (LibTorch's TORCH_CHECK throws c10::Error), into one line on the log and
// exit status 1: no failure ends in abort() with a C++ stack trace.
#ifndef MEMTRAIN_COMMON_BINARY_H_
#define MEMTRAIN_COMMON_BINARY_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace memtrain {

std::vector<char*> InitBinary(int argc, char** argv, const char* usage);

/// main()'s return value for `run`: 0 when it succeeds, else 1 after logging
/// "<tag> <message>" (for an exception: its message without a backtrace).
int RunBinary(const char* tag, const std::function<absl::Status()>& run);
/// The same for work that chooses its own exit status on success (e.g. 75:
/// stopped by a signal after a checkpoint).
int RunBinaryWithExitCode(const char* tag, const std::function<absl::StatusOr<int>()>& run);

/// kInvalidArgument "--<flag> must be >= <minimum>, got <value>" unless it is;
/// for a binary's checks of its flags before any work.
absl::Status RequireFlagAtLeast(const char* flag, int64_t value, int64_t minimum);

/// main()'s return value for `status`: 0, or 1 after logging the error as
/// "<tag> <message>".
int ExitStatus(const absl::Status& status, const char* tag);

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_BINARY_H_
