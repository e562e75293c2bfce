#include "common/binary.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "glog/logging.h"

namespace memtrain {
namespace {

TEST(RunBinaryTest, ExitStatusFollowsTheWork) {
  EXPECT_EQ(RunBinary("[t]", [] { return absl::OkStatus(); }), 0);
  EXPECT_EQ(RunBinary("[t]", [] { return absl::InvalidArgumentError("bad flag"); }), 1);
  EXPECT_EQ(RunBinaryWithExitCode("[t]", []() -> absl::StatusOr<int> { return 75; }), 75);
  EXPECT_EQ(RunBinaryWithExitCode("[t]",
                                  []() -> absl::StatusOr<int> { return absl::InternalError("x"); }),
            1);
}

// An exception (LibTorch's TORCH_CHECK throws c10::Error, whose what()
// carries a C++ backtrace) is one line on the log and exit status 1, not
// abort() with a stack trace.
TEST(RunBinaryTest, AnExceptionIsOneLineAndStatusOne) {
  FLAGS_logtostderr = true;
  ::testing::internal::CaptureStderr();
  const int code = RunBinary("[tool]", []() -> absl::Status {
    throw std::runtime_error(
        "beam must be positive\nException raised from Search at search.cpp:12 (most recent call "
        "first):\nframe #0");
  });
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_NE(log.find("[tool] beam must be positive"), std::string::npos) << log;
  EXPECT_EQ(log.find("Exception raised from"), std::string::npos) << log;
  EXPECT_EQ(log.find("frame #0"), std::string::npos) << log;
}

}  // namespace
}  // namespace memtrain
