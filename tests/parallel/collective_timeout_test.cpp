// Whole-job fault tests: a 2-rank job under real mpirun in which one rank
// stalls or is SIGKILLed mid-run must end non-zero, well before the stalled
// rank would have woken up, and its log must name the collective.
//
// Sequence numbers: creating the world communicator is collective #1 on it,
// so the helper's all-reduce k is collective #k+1.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <ostream>
#include <string>

namespace {

using ::testing::HasSubstr;

struct JobResult {
  int exit_code = -1;
  double seconds = 0;
  std::string output;
};

JobResult RunJob(const std::string& helper_flags) {
  const std::string command = std::string(MEMTRAIN_MPIEXEC) + " " + MEMTRAIN_MPIEXEC_FLAGS +
                              " -n 2 " + MEMTRAIN_FAULT_HELPER + " " + helper_flags + " 2>&1";
  const auto start = std::chrono::steady_clock::now();
  FILE* pipe = popen(command.c_str(), "r");
  JobResult result;
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

TEST(CollectiveTimeoutTest, HealthyJobSucceeds) {
  const JobResult job = RunJob("--fault=none");
  EXPECT_EQ(job.exit_code, 0) << job.output;
  EXPECT_THAT(job.output, HasSubstr("rank 1 finished"));
}

// Each fault over the world's two device channels: MPI, and PyTorch's Gloo
// through the c10d adapter (parallel/c10d_communicator.h), the code path NCCL
// takes on GPUs. The group name says which.
struct Channel {
  const char* collectives;
  const char* group;
};

// How ctest and GoogleTest name a channel.
void PrintTo(const Channel& channel, std::ostream* out) { *out << channel.collectives; }

class CollectiveFaultTest : public ::testing::TestWithParam<Channel> {
 protected:
  JobResult Run(const std::string& fault_flags) {
    return RunJob(std::string("--collectives=") + GetParam().collectives + " " + fault_flags);
  }
  std::string Call() const {
    return std::string("allreduce(sum) #4 on group '") + GetParam().group + "'";
  }
};

TEST_P(CollectiveFaultTest, StalledRankAbortsJobWithinStepTimeoutNamingCollectiveAndRank) {
  // Rank 1 sleeps 120 s before all-reduce #3; the step timeout is 2 s, every
  // other phase's a minute.
  const JobResult job = Run("--fault=stall --step_timeout=2 --fault_at=3");
  EXPECT_NE(job.exit_code, 0) << job.output;
  // 2 s timeout + 3 s answer grace + start-up; far below the 120 s stall and
  // the other phases' minute.
  EXPECT_LT(job.seconds, 30) << job.output;
  EXPECT_THAT(job.output,
              HasSubstr(Call() + " (float32[1024]) did not complete within 2s (the step "
                                 "phase's timeout, --step_timeout)"));
  EXPECT_THAT(job.output, HasSubstr("ranks that had not arrived: [1]"));
  EXPECT_THAT(job.output, HasSubstr("rank 1 (world 1): NOT arrived; outside any collective; last "
                                    "finished on this group: #3"));
  // Our own line, not Open MPI's MPI_ABORT banner, which mpirun sometimes
  // loses ("ORTE_ERROR_LOG: Data unpack would read past end of buffer").
  EXPECT_THAT(job.output, HasSubstr("aborting the job (exit code 124)"));
}

TEST_P(CollectiveFaultTest, KilledRankEndsJobNonZeroNamingPendingCollective) {
  const JobResult job = Run("--fault=kill --step_timeout=20 --fault_at=3");
  EXPECT_NE(job.exit_code, 0) << job.output;
  EXPECT_LT(job.seconds, 30) << job.output;
  // MPI: mpirun tore rank 0 down (its termination report names the
  // collective it was in) or rank 0's watchdog fired first. Gloo: rank 0's
  // collective failed at once on the closed connection, naming itself.
  EXPECT_THAT(job.output, HasSubstr(Call())) << job.output;
}

// memtrain-train with --checkpoint_dir takes SIGTERM as a preemption request;
// mpirun's tear-down after the peer died is one too, and SIGKILL follows a
// second later. The report of where the survivor waits must still appear.
TEST(CollectiveTimeoutTest, KilledRankStillNamesPendingCollectiveWhenSigtermRequestsPreemption) {
  const JobResult job = RunJob("--fault=kill --step_timeout=20 --fault_at=3 --preemption_request");
  EXPECT_NE(job.exit_code, 0) << job.output;
  EXPECT_LT(job.seconds, 30) << job.output;
  EXPECT_THAT(job.output, HasSubstr("collectives pending: allreduce(sum) #4 on group 'world'"))
      << job.output;
}

INSTANTIATE_TEST_SUITE_P(Channels, CollectiveFaultTest,
                         ::testing::Values(Channel{"mpi", "world"}, Channel{"gloo", "world/gloo"}),
                         [](const ::testing::TestParamInfo<Channel>& info) {
                           return std::string(info.param.collectives);
                         });

TEST(CollectiveTimeoutTest, HangingBackendAbortStillEndsTheJob) {
  // Timeout 2 s, answer grace 3 s, abort grace 3 s: the job must be gone long
  // before the helper's 120 s sleep or the abort's hour-long hang.
  const JobResult job = RunJob("--fault=hang_in_abort --step_timeout=2");
  EXPECT_NE(job.exit_code, 0) << job.output;
  EXPECT_LT(job.seconds, 40) << job.output;
  EXPECT_THAT(job.output, HasSubstr("the backend's abort hangs"));
  EXPECT_THAT(job.output, HasSubstr("exiting with _exit(124)"));
}

}  // namespace
