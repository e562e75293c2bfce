#include "common/binary.h"

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
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
  return absl::ParseCommandLine(argc, argv);
}

int ExitStatus(const absl::Status& status, const char* tag) {
  if (status.ok()) return 0;
  LOG(ERROR) << tag << " " << status.message();
  return 1;
}

}  // namespace memtrain
