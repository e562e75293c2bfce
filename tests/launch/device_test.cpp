#include "launch/device.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace memtrain::launch {
namespace {

using ::testing::HasSubstr;

TEST(ChooseDeviceTest, CpuThreadsDivideTheCoresAmongLocalRanks) {
  auto one = ChooseDevice("auto", 0, 1, /*cuda_devices=*/0, /*host_cores=*/2);
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(one->device.is_cpu());
  EXPECT_EQ(one->cpu_threads, 2);
  auto two = ChooseDevice("auto", 1, 2, 0, 2);
  EXPECT_EQ(two->cpu_threads, 1);
  auto four = ChooseDevice("auto", 3, 4, 0, 2);
  EXPECT_EQ(four->cpu_threads, 1) << "never fewer than one thread";
  EXPECT_EQ(ChooseDevice("auto", 0, 2, 0, 16)->cpu_threads, 8);
}

TEST(ChooseDeviceTest, GpuPerLocalRank) {
  auto choice = ChooseDevice("auto", 2, 4, /*cuda_devices=*/8, 16);
  ASSERT_TRUE(choice.ok());
  EXPECT_TRUE(choice->device.is_cuda());
  EXPECT_EQ(choice->device.index(), 2);
}

TEST(ChooseDeviceTest, OneVisibleDevicePerRankMeansBoundByTheLauncher) {
  auto choice = ChooseDevice("auto", 3, 4, /*cuda_devices=*/1, 16);
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->device.index(), 0);
}

TEST(ChooseDeviceTest, FewerDevicesThanRanksIsRefused) {
  auto choice = ChooseDevice("auto", 0, 4, /*cuda_devices=*/2, 16);
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(choice.status().message()), HasSubstr("4 ranks run on this host"));
}

TEST(ChooseDeviceTest, CpuRequestIgnoresVisibleGpus) {
  auto choice = ChooseDevice("cpu", 1, 2, /*cuda_devices=*/8, 16);
  ASSERT_TRUE(choice.ok());
  EXPECT_TRUE(choice->device.is_cpu());
  EXPECT_EQ(choice->cpu_threads, 8);
}

TEST(ChooseDeviceTest, CudaRequestWithoutGpuIsRefusedNotFallenBackToCpu) {
  auto choice = ChooseDevice("cuda", 0, 1, /*cuda_devices=*/0, 16);
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(choice.status().message()), HasSubstr("no CUDA device is visible"));
  EXPECT_EQ(ChooseDevice("cuda", 1, 2, 2, 16)->device.index(), 1);
}

TEST(ChooseDeviceTest, UnknownRequestIsRefused) {
  auto choice = ChooseDevice("gpu", 0, 1, 1, 16);
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(choice.status().message()), HasSubstr("auto, cpu, cuda"));
}

}  // namespace
}  // namespace memtrain::launch
