#include "common/binary.h"

#include "absl/flags/parse.h"
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
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  // Correct but 2-3x slower matrix products are the kind of fault nobody
  // notices in a loss curve, so every binary says so at start-up.
  const absl::Status blas = CheckLibTorchBlas(FindNativeLibraries());
  LOG_IF(WARNING, !blas.ok()) << "[process] " << blas.message();
  return positional;
}

int ExitStatus(const absl::Status& status, const char* tag) {
  if (status.ok()) return 0;
  LOG(ERROR) << tag << " " << status.message();
  return 1;
}

}  // namespace memtrain
