// ProgressReporter's line: amounts, rates (slow ones too) and the ETA.
#include "common/progress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace memtrain {
namespace {

using ::testing::HasSubstr;

TEST(ProgressTest, SlowItemRatesKeepADecimalAndTheEtaFollowsTheRate) {
  const ProgressReporter progress("[test] segments", 30, ProgressReporter::Unit::kItems);
  const std::string line = progress.Render(3, absl::Seconds(10));
  EXPECT_THAT(line, HasSubstr("0.3 items/s"));
  EXPECT_THAT(line, HasSubstr("ETA 1:30"));  // 27 left at 0.3 a second
  EXPECT_THAT(progress.Render(300, absl::Seconds(10)), HasSubstr("30 items/s"));
}

TEST(ProgressTest, BytesAreScaledAndAnUnknownTotalHasNoEta) {
  const ProgressReporter progress("[test] encode", 0, ProgressReporter::Unit::kBytes);
  const std::string line = progress.Render(3'000'000, absl::Seconds(2));
  EXPECT_THAT(line, HasSubstr("3.0 MB"));
  EXPECT_THAT(line, HasSubstr("1.5 MB/s"));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("ETA")));
}

}  // namespace
}  // namespace memtrain
