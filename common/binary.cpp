#include "common/binary.h"

#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "absl/flags/parse.h"
#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "common/native_libraries.h"
#include "common/process.h"
#include "glog/logging.h"

namespace memtrain {

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
    if (arg == "--help" || arg == "-help" || arg == "--helpfull" || arg == "-helpfull" || arg == "-h") {
      absl::flags_internal::SetProgramInvocationName(argv[0]);
      absl::flags_internal::FlagsHelp(std::cout, "", absl::flags_internal::HelpFormat::kHumanReadable,
                                      absl::ProgramUsageMessage());
      std::cout.flush();
      // Nothing has started, so nothing needs cleaning up; some libraries'
      // static destructors (in memtrain-prepare's) would wait forever.
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

}  // namespace memtrain
