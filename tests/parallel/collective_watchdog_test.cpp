// The watchdog's investigation, under mpirun with 2 and 4 ranks: a late rank
// is named as "not arrived" with what it was doing. The report goes to a test
// hook instead of aborting (the abort itself is covered by
// collective_timeout_test.cpp, which runs whole jobs).
#include "parallel/collective_watchdog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "parallel/mpi_communicator.h"
#include "tests/mpi_test_support.h"

namespace memtrain::parallel {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct Reports {
  std::mutex mutex;
  std::vector<TimeoutReport> seen;
};

TEST(CollectiveWatchdogTest, LateRankIsReportedAsNotArrivedWithItsState) {
  const int world_size = testing::Runtime().world_size();
  if (world_size < 2) GTEST_SKIP() << "needs 2+ ranks";
  Reports reports;
  CollectiveWatchdog::Options options;
  options.poll_interval = absl::Milliseconds(20);
  options.answer_grace = absl::Seconds(5);
  options.on_timeout = [&](const TimeoutReport& report) {
    std::lock_guard<std::mutex> lock(reports.mutex);
    reports.seen.push_back(report);
  };
  CollectiveWatchdog watchdog(MPI_COMM_WORLD, options);
  MPI_Comm dup;
  MPI_Comm_dup(MPI_COMM_WORLD, &dup);
  // Only the checkpoint phase's timeout is short: the report below shows
  // the barrier was judged by the phase it started in.
  CommunicatorOptions short_checkpoints;
  short_checkpoints.timeouts = {absl::Seconds(60), absl::Seconds(60), absl::Milliseconds(300),
                                absl::Seconds(60)};
  auto group = MpiCommunicator::Adopt(dup, "watched", &watchdog, short_checkpoints);
  ASSERT_TRUE(group.ok()) << group.status();
  MpiCommunicator& comm = **group;
  const uint64_t sequence = comm.sequence_number() + 1;

  // Rank 1 computes (sleeps) for 2 s before joining; everyone else waits in
  // the barrier past its 300 ms deadline.
  {
    const ScopedCollectivePhase phase(CollectivePhase::kCheckpoint);
    if (comm.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(2));
    ASSERT_TRUE(comm.barrier().ok());
  }
  EXPECT_EQ(CurrentCollectivePhase(), CollectivePhase::kStartup) << "the guard restores the phase";

  std::lock_guard<std::mutex> lock(reports.mutex);
  if (comm.rank() == 1) {
    EXPECT_THAT(reports.seen, IsEmpty()) << "the late rank itself never waited";
  } else {
    ASSERT_EQ(reports.seen.size(), 1u);
    const TimeoutReport& report = reports.seen[0];
    EXPECT_EQ(report.call.collective, "barrier");
    EXPECT_EQ(report.call.group, "watched");
    EXPECT_EQ(report.call.sequence, sequence);
    EXPECT_EQ(report.call.phase, CollectivePhase::kCheckpoint);
    // Any report at all shows the checkpoint phase's 300 ms applied: every
    // other phase's timeout is a minute, and rank 1 is late by 2 s.
    EXPECT_GE(report.waited, absl::Milliseconds(300));
    EXPECT_THAT(report.missing_ranks, ElementsAre(1));
    ASSERT_EQ(static_cast<int>(report.peer_states.size()), comm.size() - 1);
    for (const std::string& line : report.peer_states) {
      if (line.rfind("rank 1 ", 0) == 0) {
        EXPECT_THAT(line, HasSubstr("NOT arrived"));
        EXPECT_THAT(line, HasSubstr("outside any collective"));
      } else {
        EXPECT_THAT(line, HasSubstr("arrived, waiting"));
        EXPECT_THAT(line, HasSubstr("barrier #" + std::to_string(sequence)));
      }
    }
  }
  EXPECT_EQ(watchdog.pending_count(), 0u);
}

TEST(CollectiveWatchdogTest, SignalSummaryNamesPendingCollectives) {
  Reports unused;
  CollectiveWatchdog::Options options;
  options.on_timeout = [&](const TimeoutReport&) {};
  CollectiveWatchdog watchdog(MPI_COMM_WORLD, options);
  const auto ticket = watchdog.Start({"g", {0}, 7, "allreduce(sum)", "float32[3]"}, absl::Hours(1));
  EXPECT_THAT(std::string(PendingCollectivesForSignalHandler()),
              HasSubstr("allreduce(sum) #7 on group 'g' (float32[3]) started at"));
  watchdog.Finish(ticket);
  EXPECT_EQ(std::string(PendingCollectivesForSignalHandler()), "no collective pending");
}

TEST(CollectiveWatchdogTest, AsyncCollectivesFinishWhenTheirPredicateSaysSo) {
  CollectiveWatchdog::Options options;
  options.poll_interval = absl::Milliseconds(10);
  options.on_timeout = [](const TimeoutReport&) {};
  CollectiveWatchdog watchdog(MPI_COMM_WORLD, options);
  std::atomic<bool> done{false};
  watchdog.Start({"g", {0}, 1, "allreduce(sum)", "float32[1]"}, absl::Hours(1),
                 [&] { return done.load(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(watchdog.pending_count(), 1u);
  done = true;
  for (int i = 0; i < 100 && watchdog.pending_count() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(watchdog.pending_count(), 0u);
}

}  // namespace
}  // namespace memtrain::parallel
