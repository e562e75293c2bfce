#include "common/binary.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/native_libraries.h"
#include "common/process.h"
#include "glog/logging.h"

namespace memtrain {

namespace {

// "<binary>: <usage>" and every flag but Abseil's own, by file, through the
// public reflection API. Not Abseil's internal FlagsHelp: referencing
// libabsl_flags_usage_internal directly moves it ahead of SentencePiece in
// the load order, and both export a global `FLAGS_help` (1 byte in Abseil,
// 32 in SentencePiece's bundled flags), so SentencePiece's constructor then
// overwrote Abseil's flag state and memtrain-prepare hung inside
// ParseCommandLine (docs/ARCHITECTURE.md, "Symbols two libraries define").
void PrintHelp(std::ostream& out, const char* argv0) {
  std::map<std::string, std::vector<const absl::CommandLineFlag*>> by_file;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StrContains(flag->Filename(), "absl/")) continue;
    by_file[flag->Filename()].push_back(flag);
  }
  out << std::filesystem::path(argv0).filename().string() << ": " << absl::ProgramUsageMessage()
      << "\n";
  for (auto& [file, flags] : by_file) {
    std::sort(flags.begin(), flags.end(),
              [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
                return a->Name() < b->Name();
              });
    out << "\n  Flags from " << file << ":\n";
    for (const absl::CommandLineFlag* flag : flags) {
      out << "    --" << flag->Name() << " (" << flag->Help()
          << "); default: " << flag->DefaultValue() << ";\n";
    }
  }
  out << "\n  --flagfile=FILE reads flags from FILE, one per line (configs/*.flags).\n";
  out.flush();
}

}  // namespace

std::vector<char*> InitBinary(int argc, char** argv, const char* usage) {
  ConfigureProcess();
  google::InitGoogleLogging(argv[0]);
  absl::SetProgramUsageMessage(usage);
  // Abseil's --help lists only flags from files named like the binary;
  // memtrain-foo's flags live in foo.cpp, so list every non-Abseil flag.
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return !absl::StrContains(file, "absl/");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  // Abseil's --help exits 1, which breaks `memtrain-foo --help && ...` in
  // scripts; asking for help is a success.
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-help" || arg == "--helpfull" || arg == "-helpfull" ||
        arg == "-h") {
      PrintHelp(std::cout, argv[0]);
      // Nothing has started, so nothing needs cleaning up.
      std::_Exit(0);
    }
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  // Correct but 2-3x slower matrix products are the kind of fault nobody
  // notices in a loss curve, so every binary says so at start-up.
  const absl::Status blas = CheckLibTorchBlas(FindNativeLibraries());
  LOG_IF(WARNING, !blas.ok()) << "[process] " << blas.message();
  return positional;
}

namespace {

// An exception's message without the C++ backtrace c10::Error appends
// (common/ links no LibTorch, so it cannot call what_without_backtrace()).
std::string MessageOf(const std::exception& error) {
  std::string message = error.what();
  const size_t backtrace = message.find("\nException raised from ");
  if (backtrace != std::string::npos) message.resize(backtrace);
  return message;
}

}  // namespace

int RunBinaryWithExitCode(const char* tag, const std::function<absl::StatusOr<int>()>& run) {
  try {
    const absl::StatusOr<int> code = run();
    return code.ok() ? *code : ExitStatus(code.status(), tag);
  } catch (const std::exception& error) {
    return ExitStatus(absl::InternalError(MessageOf(error)), tag);
  }
}

int RunBinary(const char* tag, const std::function<absl::Status()>& run) {
  return RunBinaryWithExitCode(tag, [&]() -> absl::StatusOr<int> {
    const absl::Status status = run();
    if (!status.ok()) return status;
    return 0;
  });
}

int ExitStatus(const absl::Status& status, const char* tag) {
  if (status.ok()) return 0;
  LOG(ERROR) << tag << " " << status.message();
  return 1;
}

absl::Status RequireFlagAtLeast(const char* flag, int64_t value, int64_t minimum) {
  if (value >= minimum) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " must be >= ", minimum, ", got ", value));
}

}  // namespace memtrain
