#include "trainer/lr_schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace memtrain::trainer {
namespace {

using ::testing::HasSubstr;

TEST(LrScheduleTest, InverseSqrtWarmsUpLinearlyThenDecaysAsOneOverRootStep) {
  LrScheduleOptions o;
  o.lr = 1e-3;
  o.warmup_steps = 100;
  auto schedule = MakeLrSchedule("inverse_sqrt", o);
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  EXPECT_DOUBLE_EQ((*schedule)(50), 5e-4);
  EXPECT_DOUBLE_EQ((*schedule)(100), 1e-3);
  EXPECT_DOUBLE_EQ((*schedule)(400), 5e-4);  // sqrt(100 / 400) = 1/2
}

TEST(LrScheduleTest, CosineEndsAtTheMinimumAndStaysThere) {
  LrScheduleOptions o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  o.warmup_steps = 10;
  o.total_steps = 110;
  auto schedule = MakeLrSchedule("cosine", o);
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  EXPECT_DOUBLE_EQ((*schedule)(10), 1.0);
  EXPECT_NEAR((*schedule)(60), 0.55, 1e-12);  // half way: the mean of lr and min_lr
  EXPECT_NEAR((*schedule)(110), 0.1, 1e-12);
  EXPECT_NEAR((*schedule)(500), 0.1, 1e-12);
  o.total_steps = 5;
  EXPECT_THAT(std::string(MakeLrSchedule("cosine", o).status().message()),
              HasSubstr("must exceed"));
}

TEST(LrScheduleTest, UnknownNamesListTheKnownOnes) {
  auto schedule = MakeLrSchedule("triangle", {});
  ASSERT_FALSE(schedule.ok());
  EXPECT_THAT(std::string(schedule.status().message()),
              HasSubstr("known: constant, inverse_sqrt, cosine"));
}

}  // namespace
}  // namespace memtrain::trainer
