// The host-side NCCL logic, on the CPU under mpirun: every member of a group
// receives its root's unique id, different groups get different ids, and a
// failure to make the id reaches every rank.
#include "parallel/nccl_bootstrap.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/mpi_test_support.h"

namespace memtrain::parallel {
namespace {

// A stand-in for ncclGetUniqueId whose bytes say who made them.
NcclUniqueIdBytes IdMadeBy(int world_rank) {
  NcclUniqueIdBytes id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<char>(world_rank * 31 + i);
  return id;
}

TEST(NcclBootstrapTest, EveryRankGetsRootsIdInWorldAndInSplitGroups) {
  auto world = testing::NewWorld();
  const int world_rank = world->rank();
  auto make = [&]() -> absl::StatusOr<NcclUniqueIdBytes> { return IdMadeBy(world_rank); };
  auto id = ExchangeUniqueId(*world, make);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, IdMadeBy(0));

  // Groups {odd ranks} and {even ranks}, ordered by descending world rank:
  // each group's id comes from its own rank 0, its highest world rank.
  auto group = world->SplitMpi(world_rank % 2, -world_rank);
  ASSERT_TRUE(group.ok()) << group.status();
  auto group_id = ExchangeUniqueId(**group, make);
  ASSERT_TRUE(group_id.ok());
  EXPECT_EQ(*group_id, IdMadeBy((*group)->world_ranks()[0]));
  int highest = world_rank;
  while (highest + 2 < world->size()) highest += 2;
  EXPECT_EQ((*group)->world_ranks()[0], highest);
}

TEST(NcclBootstrapTest, RootFailureReachesEveryRank) {
  auto world = testing::NewWorld();
  auto id = ExchangeUniqueId(*world, []() -> absl::StatusOr<NcclUniqueIdBytes> {
    return absl::InternalError("ncclGetUniqueId: no network interface");
  });
  ASSERT_FALSE(id.ok());
  if (world->rank() == 0) {
    EXPECT_THAT(std::string(id.status().message()), ::testing::HasSubstr("no network interface"));
  } else {
    EXPECT_THAT(std::string(id.status().message()), ::testing::HasSubstr("rank 0 could not"));
  }
  // The group is still in step.
  ASSERT_TRUE(world->barrier().ok());
}

TEST(NcclBootstrapTest, DescriptionSaysWhetherNcclIsBuilt) {
#ifdef MEMTRAIN_WITH_CUDA
  EXPECT_THAT(NcclDescription(), ::testing::StartsWith("NCCL 2."));
#else
  EXPECT_THAT(NcclDescription(), ::testing::HasSubstr("not built"));
#endif
}

}  // namespace
}  // namespace memtrain::parallel
