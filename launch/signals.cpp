#include "launch/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

#include "parallel/collective_watchdog.h"

namespace memtrain::launch {
namespace {

int g_rank = 0;
// Lock-free, so reading and writing it in a handler is async-signal-safe.
std::atomic<int> g_preemption_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

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
  if (signal_number == SIGTERM && g_preemption_signal.load() != 0) {
    OnTermination(signal_number);  // the second SIGTERM: being killed
    return;
  }
  g_preemption_signal.store(signal_number);
  WriteAll("[launch] rank ");
  WriteInt(g_rank);
  WriteAll(" got signal ");
  WriteInt(signal_number);
  WriteAll(": checkpoint and stop at the next step boundary\n");
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
