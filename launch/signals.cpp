#include "launch/signals.h"

#include <semaphore.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "parallel/collective_watchdog.h"

namespace memtrain::launch {
namespace {

int g_rank = 0;
// Lock-free, so reading and writing it in a handler is async-signal-safe.
std::atomic<int> g_preemption_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);
std::atomic<bool> g_sigterm_seen{false};
static_assert(std::atomic<bool>::is_always_lock_free);
// Posted by the handler (sem_post is async-signal-safe), awaited by the
// thread that reports a rank left waiting in a collective.
sem_t g_preemption_arrived;

// Open MPI's orted sends SIGKILL 1 s (odls_base_sigkill_timeout) after the
// SIGTERM with which it tears a job down, so the report must come before:
// the pending collectives are looked at every kPendingPoll, and the same ones
// seen twice in a row are reported.
constexpr std::chrono::milliseconds kPendingPoll{100};
constexpr int kPendingPolls = 50;

void WriteAll(const char* text) {
  size_t left = strlen(text);
  while (left > 0) {
    const ssize_t written = write(STDERR_FILENO, text, left);
    if (written <= 0) return;
    text += written;
    left -= static_cast<size_t>(written);
  }
}

// Async-signal-safe decimal formatting (no snprintf in a handler).
void WriteInt(int value) {
  char digits[16];
  int n = 0;
  unsigned v = value < 0 ? 0u - static_cast<unsigned>(value) : static_cast<unsigned>(value);
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < 15);
  char text[18];
  int i = 0;
  if (value < 0) text[i++] = '-';
  while (n > 0) text[i++] = digits[--n];
  text[i] = '\0';
  WriteAll(text);
}

void OnTermination(int signal_number) {
  WriteAll("[launch] rank ");
  WriteInt(g_rank);
  WriteAll(" terminated by signal ");
  WriteInt(signal_number);
  WriteAll(" (");
  WriteAll(signal_number == SIGTERM ? "SIGTERM" : signal_number == SIGINT ? "SIGINT" : "SIGHUP");
  WriteAll("); collectives pending: ");
  WriteAll(parallel::PendingCollectivesForSignalHandler());
  WriteAll("\n");
  signal(signal_number, SIG_DFL);
  raise(signal_number);
}

void OnPreemption(int signal_number) {
  // The second SIGTERM means being killed. Only SIGTERMs count: SLURM's
  // SIGTERM and a batch script's forwarded SIGUSR1 arrive in either order.
  if (signal_number == SIGTERM && g_sigterm_seen.exchange(true)) {
    OnTermination(signal_number);
    return;
  }
  // The first request is the one reported.
  int none = 0;
  const bool first = g_preemption_signal.compare_exchange_strong(none, signal_number);
  WriteAll("[launch] rank ");
  WriteInt(g_rank);
  WriteAll(" got signal ");
  WriteInt(signal_number);
  WriteAll(": checkpoint and stop at the next step boundary; collectives pending: ");
  WriteAll(parallel::PendingCollectivesForSignalHandler());
  WriteAll("\n");
  if (first) sem_post(&g_preemption_arrived);
}

// A SIGTERM that is mpirun tearing the job down after a peer died looks like
// a preemption request, but the rank, waiting in a collective with the dead
// peer, never reaches the step boundary: SIGKILL follows within a second.
// This thread says where the rank waits before that happens: the first time
// the same collectives are pending at two polls in a row. Whether a step
// boundary was reached says nothing (the ranks' agreement to checkpoint is a
// collective too), and in a real preemption the line is only information:
// the rank goes on to save.
void ReportWhereItWaits() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals go to the other threads
  while (sem_wait(&g_preemption_arrived) != 0) {
  }
  const std::string none = "no collective pending";
  std::string previous = none;
  for (int poll = 0; poll < kPendingPolls; ++poll) {
    std::this_thread::sleep_for(kPendingPoll);
    const std::string pending = parallel::PendingCollectivesForSignalHandler();
    if (pending != none && pending == previous) {
      WriteAll("[launch] rank ");
      WriteInt(g_rank);
      WriteAll(" has waited in the same collectives since signal ");
      WriteInt(g_preemption_signal.load());
      WriteAll(" (where it stays if a peer died); collectives pending: ");
      WriteAll(pending.c_str());
      WriteAll("\n");
      return;
    }
    previous = pending;
  }
}

}  // namespace

void InstallTerminationReport(int rank) {
  g_rank = rank;
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = &OnTermination;
  sigemptyset(&action.sa_mask);
  for (int signal_number : {SIGTERM, SIGINT, SIGHUP}) sigaction(signal_number, &action, nullptr);
}

void InstallPreemptionRequest() {
  sem_init(&g_preemption_arrived, /*pshared=*/0, /*value=*/0);
  std::thread(&ReportWhereItWaits).detach();
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = &OnPreemption;
  sigemptyset(&action.sa_mask);
  // SA_RESTART: a blocking read or MPI progress call interrupted by the
  // signal resumes instead of failing with EINTR.
  action.sa_flags = SA_RESTART;
  for (int signal_number : {SIGUSR1, SIGUSR2, SIGTERM}) sigaction(signal_number, &action, nullptr);
}

int PreemptionSignal() { return g_preemption_signal.load(); }

}  // namespace memtrain::launch
