// File: common/binary.h
//
// The first call in every memtrain binary's main():
//
//   int main(int argc, char** argv) {
//     std::vector<char*> args = memtrain::InitBinary(argc, argv, "Does X.\n  usage...");
//     return memtrain::ExitStatus(memtrain::Run(args), "[x]");
//   }
//
// It applies ConfigureProcess() (common/process.h), starts glog, parses
// Abseil flags (--help lists every memtrain flag of the binary, --flagfile
// reads a config) and warns if LibTorch's BLAS or the OpenMP runtime is not
// the one the build intends (common/native_libraries.h). Returns the positional arguments (argv[0] first).
#ifndef MEMTRAIN_COMMON_BINARY_H_
#define MEMTRAIN_COMMON_BINARY_H_

#include <vector>

#include "absl/status/status.h"

namespace memtrain {

std::vector<char*> InitBinary(int argc, char** argv, const char* usage);

/// main()'s return value for `status`: 0, or 1 after logging the error as
/// "<tag> <message>".
int ExitStatus(const absl::Status& status, const char* tag);

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_BINARY_H_
