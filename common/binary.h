// File: common/binary.h
//
// The first call in every memtrain binary's main():
//
//   int main(int argc, char** argv) {
//     std::vector<char*> args = memtrain::InitBinary(argc, argv, "Does X.\n  usage...");
//     ...
//   }
//
// It applies ConfigureProcess() (common/process.h), starts glog, and parses
// Abseil flags (--help lists every memtrain flag of the binary, --flagfile
// reads a config). Returns the positional arguments (argv[0] first).
#ifndef MEMTRAIN_COMMON_BINARY_H_
#define MEMTRAIN_COMMON_BINARY_H_

#include <vector>

namespace memtrain {

std::vector<char*> InitBinary(int argc, char** argv, const char* usage);

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_BINARY_H_
