// File: parallel/collective_watchdog.h
//
// `CollectiveWatchdog`: the one place that turns a stuck collective into a
// diagnosed, aborted job instead of a silent hang. Every Communicator
// implementation registers each collective here before it starts and marks it
// finished after; the host-side logic is therefore shared by the MPI and the
// NCCL paths.
//
// How it works (DISTRIBUTED.md §3.3 is the background):
//   - One watchdog thread per watchdog wakes every `poll_interval`. It polls
//     asynchronous collectives (NCCL: a CUDA event) through `is_complete`, and
//     checks every pending collective against its deadline.
//   - It owns a private duplicate of MPI_COMM_WORLD (the control channel) on
//     which it answers peers' "what are you doing?" queries, even while the
//     caller's thread is blocked inside MPI or busy computing. This needs
//     MPI_THREAD_MULTIPLE (MpiRuntime requests and checks it).
//   - On expiry it logs the collective (group, sequence number, op, tensor
//     sizes), asks every other rank of the group for its state, logs which
//     ranks had not arrived and what each was doing (no answer within
//     `answer_grace` = dead or its process hung), runs the backend's abort
//     (c10d's Backend::abort) and calls MPI_Abort, which makes mpirun/srun
//     end the job with kCollectiveTimeoutExitCode. Either of those may hang
//     (ncclCommAbort on a wedged device is known to): `abort_grace` later the
//     process ends itself with _exit(kCollectiveTimeoutExitCode).
//
// Threads: Start()/Finish() are called by communicator callers (any thread);
// the watchdog thread only touches the control channel, never the caller's
// communicators. `mutex_` guards the pending table and the finished-sequence
// map against those two sides.
#ifndef MEMTRAIN_PARALLEL_COLLECTIVE_WATCHDOG_H_
#define MEMTRAIN_PARALLEL_COLLECTIVE_WATCHDOG_H_

#include <mpi.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "parallel/collective_phase.h"

namespace memtrain::parallel {

/// Exit code of a job aborted by a collective timeout (as MPI_Abort's code).
inline constexpr int kCollectiveTimeoutExitCode = 124;

/// One collective call as it appears in reports.
struct CollectiveCall {
  std::string group;             ///< communicator name, unique in the process
  std::vector<int> world_ranks;  ///< world rank of each group rank
  uint64_t sequence = 0;         ///< 1-based count of collectives on `group`
  std::string collective;        ///< "allreduce(sum)", "broadcast(root=0)", ...
  std::string tensors;           ///< "float32[1024]"
  /// What the job was doing when the call started; its timeout is this
  /// phase's, and the report names it (parallel/collective_phase.h).
  CollectivePhase phase = CollectivePhase::kStartup;
};

/// What a timed-out rank found out about its peers.
struct TimeoutReport {
  CollectiveCall call;
  absl::Duration waited;
  /// Group ranks that had not reached the collective (or did not answer).
  std::vector<int> missing_ranks;
  /// One line per other rank of the group: its answer, or that it gave none.
  std::vector<std::string> peer_states;
};

class CollectiveWatchdog {
 public:
  struct Options {
    /// How often the thread checks deadlines and answers peers.
    absl::Duration poll_interval = absl::Milliseconds(100);
    /// How long a timed-out rank waits for its peers' answers.
    absl::Duration answer_grace = absl::Seconds(3);
    /// How long the backend's abort plus MPI_Abort may take before _exit.
    absl::Duration abort_grace = absl::Seconds(15);
    /// What to do after the report is logged. Empty (the default): run the
    /// backend's abort, then MPI_Abort. Tests set it to observe the report;
    /// the collective then stays pending and may still complete.
    std::function<void(const TimeoutReport&)> on_timeout;
  };

  /// `world` is duplicated for the control channel; every process of
  /// MPI_COMM_WORLD must construct its watchdogs in the same order.
  /// Collective over `world`.
  CollectiveWatchdog(MPI_Comm world, Options options);
  /// Stops the thread and frees the control channel; call before MPI_Finalize.
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  using Ticket = uint64_t;

  /// Registers `call`, due within `timeout` (the communicators pass their
  /// options' timeout for `call.phase`). Without `is_complete` the call is
  /// complete when Finish() runs; with it, the watchdog thread polls it and the
  /// caller must not call Finish(). `abort_backend` runs on the watchdog thread
  /// before MPI_Abort.
  Ticket Start(CollectiveCall call, absl::Duration timeout,
               std::function<bool()> is_complete = nullptr,
               std::function<void()> abort_backend = nullptr);
  void Finish(Ticket ticket);

  /// Number of collectives still pending (tests).
  size_t pending_count() const;

 private:
  struct Pending {
    CollectiveCall call;
    absl::Time started;
    absl::Time deadline;
    std::function<bool()> is_complete;
    std::function<void()> abort_backend;
    bool reported = false;
  };

  void Run();
  void AnswerQueries();
  void PollAsyncCompletions();
  void CheckDeadlines();
  TimeoutReport Investigate(const Pending& pending);
  // Answer to "are you in collective `sequence` of `group`?": a code (see the
  // .cpp) and a description of what this process is doing.
  std::string DescribeStateFor(const std::string& group, uint64_t sequence);
  void MarkFinishedLocked(const CollectiveCall& call);
  void PublishSignalSummaryLocked();

  const Options options_;
  MPI_Comm control_ = MPI_COMM_NULL;  // used by the watchdog thread only
  int world_rank_ = 0;

  mutable std::mutex mutex_;  // guards the members below; callers vs. thread
  std::condition_variable wake_;
  bool stop_ = false;
  Ticket next_ticket_ = 1;
  std::map<Ticket, Pending> pending_;
  std::map<std::string, uint64_t> finished_sequence_;  // by group name

  std::thread thread_;
};

/// The collectives pending in this process when a fatal signal arrives, as
/// one NUL-terminated line; safe to read from a signal handler (launch/ prints
/// it when mpirun tears the job down because another rank died).
const char* PendingCollectivesForSignalHandler();

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_COLLECTIVE_WATCHDOG_H_
