#include "launch/device.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace memtrain::launch {
namespace {

using ::testing::HasSubstr;

TEST(ChooseDeviceTest, CpuThreadsDivideTheCoresAmongLocalRanks) {
  auto one = ChooseDevice("auto", 0, 1, /*cuda_devices=*/0, CpuBudgetOfRank(2, 0, 0, 1));
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(one->device.is_cpu());
  EXPECT_EQ(one->cpu_threads, 2);
  auto two = ChooseDevice("auto", 1, 2, 0, CpuBudgetOfRank(2, 0, 0, 2));
  EXPECT_EQ(two->cpu_threads, 1);
  auto four = ChooseDevice("auto", 3, 4, 0, CpuBudgetOfRank(2, 0, 0, 4));
  EXPECT_EQ(four->cpu_threads, 1) << "never fewer than one thread";
  EXPECT_EQ(ChooseDevice("auto", 0, 2, 0, CpuBudgetOfRank(16, 0, 0, 2))->cpu_threads, 8);
}

// A shared node: the allocation, not the host, decides (issue 16).
TEST(ChooseDeviceTest, CpuThreadsFollowTheAllocation) {
  EXPECT_EQ(CpuBudgetOfRank(64, 64, /*slurm_cpus_per_task=*/4, 2).threads, 4);
  EXPECT_EQ(CpuBudgetOfRank(64, 64, 4, 2).why, "SLURM_CPUS_PER_TASK=4");
  EXPECT_EQ(CpuBudgetOfRank(64, /*affinity_cores=*/8, 0, 2).threads, 8) << "bound by the launcher";
  EXPECT_EQ(CpuBudgetOfRank(64, 8, 0, 2).why, "bound to 8 of 64 cores");
  EXPECT_EQ(CpuBudgetOfRank(64, 64, 0, 4).threads, 16) << "unbound: the host divided";
  EXPECT_EQ(CpuBudgetOfRank(64, 0, 0, 128).threads, 1) << "never fewer than one";
  auto choice = ChooseDevice("cpu", 0, 2, 0, CpuBudgetOfRank(64, 8, 0, 2));
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->cpu_threads, 8);
  EXPECT_THAT(choice->description, HasSubstr("bound to 8 of 64 cores"));
}

TEST(ChooseDeviceTest, GpuPerLocalRank) {
  auto choice = ChooseDevice("auto", 2, 4, /*cuda_devices=*/8, CpuBudgetOfRank(16, 0, 0, 4));
  ASSERT_TRUE(choice.ok());
  EXPECT_TRUE(choice->device.is_cuda());
  EXPECT_EQ(choice->device.index(), 2);
}

TEST(ChooseDeviceTest, OneVisibleDevicePerRankMeansBoundByTheLauncher) {
  auto choice = ChooseDevice("auto", 3, 4, /*cuda_devices=*/1, CpuBudgetOfRank(16, 0, 0, 4));
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->device.index(), 0);
}

TEST(ChooseDeviceTest, FewerDevicesThanRanksIsRefused) {
  auto choice = ChooseDevice("auto", 0, 4, /*cuda_devices=*/2, CpuBudgetOfRank(16, 0, 0, 4));
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(choice.status().message()), HasSubstr("4 ranks run on this host"));
}

TEST(ChooseDeviceTest, CpuRequestIgnoresVisibleGpus) {
  auto choice = ChooseDevice("cpu", 1, 2, /*cuda_devices=*/8, CpuBudgetOfRank(16, 0, 0, 2));
  ASSERT_TRUE(choice.ok());
  EXPECT_TRUE(choice->device.is_cpu());
  EXPECT_EQ(choice->cpu_threads, 8);
}

TEST(ChooseDeviceTest, CudaRequestWithoutGpuIsRefusedNotFallenBackToCpu) {
  auto choice = ChooseDevice("cuda", 0, 1, /*cuda_devices=*/0, CpuBudgetOfRank(16, 0, 0, 1));
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(choice.status().message()), HasSubstr("no CUDA device is visible"));
  EXPECT_EQ(ChooseDevice("cuda", 1, 2, 2, CpuBudgetOfRank(16, 0, 0, 2))->device.index(), 1);
}

TEST(ChooseDeviceTest, UnknownRequestIsRefused) {
  auto choice = ChooseDevice("gpu", 0, 1, 1, CpuBudgetOfRank(16, 0, 0, 1));
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(choice.status().message()), HasSubstr("auto, cpu, cuda"));
}

}  // namespace
}  // namespace memtrain::launch
