#include "launch/environment.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace memtrain::launch {
namespace {

using ::testing::HasSubstr;

EnvironmentReader FakeEnvironment(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

TEST(LaunchEnvironmentTest, PlainProcessIsRankZeroOfOne) {
  auto env = DiscoverLaunchEnvironment(FakeEnvironment({}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, Launcher::kSingleProcess);
  EXPECT_EQ(env->rank, 0);
  EXPECT_EQ(env->world_size, 1);
  EXPECT_TRUE(env->warnings.empty());
}

TEST(LaunchEnvironmentTest, OpenMpiVariables) {
  auto env = DiscoverLaunchEnvironment(FakeEnvironment({{"OMPI_COMM_WORLD_RANK", "5"},
                                                        {"OMPI_COMM_WORLD_SIZE", "8"},
                                                        {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                                        {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, Launcher::kOpenMpi);
  EXPECT_EQ(env->rank, 5);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->local_size, 4);
}

TEST(LaunchEnvironmentTest, MpirunInsideSlurmPrefersMpiVariables) {
  // mpirun inside sbatch: the SLURM_* variables describe mpirun's daemon step.
  auto env = DiscoverLaunchEnvironment(FakeEnvironment({{"OMPI_COMM_WORLD_RANK", "3"},
                                                        {"OMPI_COMM_WORLD_SIZE", "4"},
                                                        {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                                        {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                                        {"SLURM_STEP_ID", "0"},
                                                        {"SLURM_PROCID", "1"},
                                                        {"SLURM_NTASKS", "2"},
                                                        {"SLURM_LOCALID", "0"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, Launcher::kOpenMpi);
  EXPECT_EQ(env->rank, 3);
}

TEST(LaunchEnvironmentTest, SrunStepWithCompressedTasksPerNode) {
  auto env = DiscoverLaunchEnvironment(FakeEnvironment({{"SLURM_STEP_ID", "0"},
                                                        {"SLURM_PROCID", "6"},
                                                        {"SLURM_NTASKS", "7"},
                                                        {"SLURM_LOCALID", "0"},
                                                        {"SLURM_NODEID", "2"},
                                                        {"SLURM_TASKS_PER_NODE", "3(x2),1"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, Launcher::kSlurm);
  EXPECT_EQ(env->rank, 6);
  EXPECT_EQ(env->world_size, 7);
  EXPECT_EQ(env->local_rank, 0);
  EXPECT_EQ(env->local_size, 1);
}

TEST(LaunchEnvironmentTest, BatchScriptWithoutSrunIsOneProcessWithAWarning) {
  auto env = DiscoverLaunchEnvironment(
      FakeEnvironment({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_JOB_ID", "17"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, Launcher::kSingleProcess);
  EXPECT_EQ(env->world_size, 1);
  ASSERT_EQ(env->warnings.size(), 1u);
  EXPECT_THAT(env->warnings[0], HasSubstr("srun"));
}

TEST(LaunchEnvironmentTest, MalformedValuesNameTheVariable) {
  auto env = DiscoverLaunchEnvironment(
      FakeEnvironment({{"OMPI_COMM_WORLD_RANK", "two"}, {"OMPI_COMM_WORLD_SIZE", "4"}}));
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("OMPI_COMM_WORLD_RANK='two'"));

  env = DiscoverLaunchEnvironment(FakeEnvironment({{"OMPI_COMM_WORLD_RANK", "4"},
                                                   {"OMPI_COMM_WORLD_SIZE", "4"},
                                                   {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"}}));
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(env.status().message()),
              HasSubstr("OMPI_COMM_WORLD_RANK=4 must be smaller than OMPI_COMM_WORLD_SIZE=4"));
}

TEST(SlurmTasksOnNodeTest, ExpandsRepeats) {
  EXPECT_EQ(*SlurmTasksOnNode("2(x3),1", 0), 2);
  EXPECT_EQ(*SlurmTasksOnNode("2(x3),1", 2), 2);
  EXPECT_EQ(*SlurmTasksOnNode("2(x3),1", 3), 1);
  EXPECT_EQ(*SlurmTasksOnNode("4", 0), 4);
  EXPECT_EQ(SlurmTasksOnNode("2(x3),1", 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SlurmTasksOnNode("2(x", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memtrain::launch
