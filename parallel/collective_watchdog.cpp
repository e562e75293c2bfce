#include "parallel/collective_watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "glog/logging.h"

namespace memtrain::parallel {
namespace {

// Control-channel protocol. A query is "group\nsequence"; an answer is
// "group\nsequence\ncode\ndescription" with one of the codes below.
constexpr int kQueryTag = 1;
constexpr int kAnswerTag = 2;
constexpr char kCodeWaiting = 'W';   // in the same collective, waiting
constexpr char kCodeFinished = 'F';  // already past it
constexpr char kCodeAbsent = 'A';    // has not reached it

// Note [signal-safe summary]: a fatal-signal handler cannot take a mutex or
// allocate. Writers (under a mutex) fill the buffer not being read and then
// flip `g_summary_index`; the handler reads whichever buffer is current.
constexpr size_t kSummaryBytes = 2048;
char g_summary[2][kSummaryBytes] = {{'\0'}, {'\0'}};
std::atomic<int> g_summary_index{0};
std::mutex g_summary_mutex;

void PublishSummary(const std::string& text) {
  std::lock_guard<std::mutex> lock(g_summary_mutex);
  const int next = 1 - g_summary_index.load(std::memory_order_relaxed);
  const size_t n = std::min(text.size(), kSummaryBytes - 1);
  std::memcpy(g_summary[next], text.data(), n);
  g_summary[next][n] = '\0';
  g_summary_index.store(next, std::memory_order_release);
}

std::string DescribeCall(const CollectiveCall& call) {
  return absl::StrCat(call.collective, " #", call.sequence, " on group '", call.group, "' (",
                      call.tensors, ")");
}

// Receives one pending message with `tag` from the control channel, if any.
bool ReceiveIfPresent(MPI_Comm comm, int tag, int* source, std::string* payload) {
  int flag = 0;
  MPI_Status status;
  MPI_Iprobe(MPI_ANY_SOURCE, tag, comm, &flag, &status);
  if (!flag) return false;
  int count = 0;
  MPI_Get_count(&status, MPI_CHAR, &count);
  payload->assign(static_cast<size_t>(count), '\0');
  MPI_Recv(payload->data(), count, MPI_CHAR, status.MPI_SOURCE, tag, comm, MPI_STATUS_IGNORE);
  *source = status.MPI_SOURCE;
  return true;
}

// Small control messages are sent without waiting for completion: the peer
// may be dead, and a watchdog must never block on it.
void SendAndForget(MPI_Comm comm, int dest, int tag, const std::string& payload) {
  MPI_Request request;
  MPI_Isend(payload.data(), static_cast<int>(payload.size()), MPI_CHAR, dest, tag, comm, &request);
  MPI_Request_free(&request);
}

}  // namespace

const char* PendingCollectivesForSignalHandler() {
  return g_summary[g_summary_index.load(std::memory_order_acquire)];
}

CollectiveWatchdog::CollectiveWatchdog(MPI_Comm world, Options options)
    : options_(std::move(options)) {
  MPI_Comm_dup(world, &control_);
  MPI_Comm_rank(control_, &world_rank_);
  thread_ = std::thread([this] { Run(); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  // Answers to our own queries may still be in flight; drain what arrived so
  // that freeing the channel does not leave unmatched messages behind.
  int source;
  std::string payload;
  while (ReceiveIfPresent(control_, kAnswerTag, &source, &payload) ||
         ReceiveIfPresent(control_, kQueryTag, &source, &payload)) {
  }
  MPI_Comm_free(&control_);
}

CollectiveWatchdog::Ticket CollectiveWatchdog::Start(CollectiveCall call, absl::Duration timeout,
                                                     std::function<bool()> is_complete,
                                                     std::function<void()> abort_backend) {
  std::lock_guard<std::mutex> lock(mutex_);
  const Ticket ticket = next_ticket_++;
  const absl::Time now = absl::Now();
  pending_.emplace(ticket, Pending{std::move(call), now, now + timeout, std::move(is_complete),
                                   std::move(abort_backend)});
  PublishSignalSummaryLocked();
  return ticket;
}

void CollectiveWatchdog::Finish(Ticket ticket) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = pending_.find(ticket);
  if (it == pending_.end()) return;
  MarkFinishedLocked(it->second.call);
  pending_.erase(it);
  PublishSignalSummaryLocked();
}

size_t CollectiveWatchdog::pending_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pending_.size();
}

void CollectiveWatchdog::MarkFinishedLocked(const CollectiveCall& call) {
  uint64_t& finished = finished_sequence_[call.group];
  finished = std::max(finished, call.sequence);
}

void CollectiveWatchdog::PublishSignalSummaryLocked() {
  std::vector<std::string> lines;
  for (const auto& [ticket, pending] : pending_) {
    // Unix milliseconds: formatting a local time costs more than a small
    // all-reduce, and this runs for every collective.
    lines.push_back(absl::StrCat(DescribeCall(pending.call), " started at unix ms ",
                                 absl::ToUnixMillis(pending.started)));
  }
  PublishSummary(lines.empty() ? std::string("no collective pending") : absl::StrJoin(lines, "; "));
}

void CollectiveWatchdog::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, absl::ToChronoMilliseconds(options_.poll_interval));
    if (stop_) break;
    lock.unlock();
    AnswerQueries();
    PollAsyncCompletions();
    CheckDeadlines();
    lock.lock();
  }
}

void CollectiveWatchdog::AnswerQueries() {
  int source = 0;
  std::string query;
  while (ReceiveIfPresent(control_, kQueryTag, &source, &query)) {
    std::vector<std::string> parts = absl::StrSplit(query, absl::MaxSplits('\n', 1));
    uint64_t sequence = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &sequence)) {
      LOG(WARNING) << "[parallel] watchdog: ignoring malformed query from rank " << source;
      continue;
    }
    SendAndForget(
        control_, source, kAnswerTag,
        absl::StrCat(parts[0], "\n", sequence, "\n", DescribeStateFor(parts[0], sequence)));
  }
}

std::string CollectiveWatchdog::DescribeStateFor(const std::string& group, uint64_t sequence) {
  std::lock_guard<std::mutex> lock(mutex_);
  const absl::Time now = absl::Now();
  std::vector<std::string> doing;
  char code = kCodeAbsent;
  for (const auto& [ticket, pending] : pending_) {
    if (pending.call.group == group && pending.call.sequence == sequence) code = kCodeWaiting;
    doing.push_back(absl::StrCat("in ", DescribeCall(pending.call), " for ",
                                 absl::FormatDuration(now - pending.started)));
  }
  auto finished = finished_sequence_.find(group);
  const uint64_t last = finished == finished_sequence_.end() ? 0 : finished->second;
  if (code != kCodeWaiting && last >= sequence) code = kCodeFinished;
  if (doing.empty()) doing.push_back("outside any collective");
  return absl::StrCat(std::string(1, code), "\n", absl::StrJoin(doing, "; "),
                      "; last finished on this group: #", last);
}

void CollectiveWatchdog::PollAsyncCompletions() {
  std::vector<std::pair<Ticket, std::function<bool()>>> to_poll;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [ticket, pending] : pending_) {
      if (pending.is_complete) to_poll.emplace_back(ticket, pending.is_complete);
    }
  }
  for (const auto& [ticket, is_complete] : to_poll) {
    if (is_complete()) Finish(ticket);
  }
}

void CollectiveWatchdog::CheckDeadlines() {
  Pending expired;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const absl::Time now = absl::Now();
    auto it = std::find_if(pending_.begin(), pending_.end(), [&](const auto& entry) {
      return !entry.second.reported && now >= entry.second.deadline;
    });
    if (it == pending_.end()) return;
    it->second.reported = true;
    expired = it->second;
  }
  LOG(ERROR) << "[parallel] rank " << world_rank_ << ": collective " << DescribeCall(expired.call)
             << " did not complete within "
             << absl::FormatDuration(expired.deadline - expired.started) << " (the "
             << CollectivePhaseName(expired.call.phase) << " phase's timeout, "
             << CollectivePhaseFlag(expired.call.phase)
             << "); asking the other ranks what they are doing";
  TimeoutReport report = Investigate(expired);
  LOG(ERROR) << "[parallel] rank " << world_rank_ << ": " << DescribeCall(expired.call)
             << ": ranks that had not arrived: [" << absl::StrJoin(report.missing_ranks, ", ")
             << "]";
  for (const std::string& line : report.peer_states) {
    LOG(ERROR) << "[parallel]   " << line;
  }
  if (options_.on_timeout) {
    options_.on_timeout(report);
    return;
  }
  LOG(ERROR) << "[parallel] rank " << world_rank_ << ": aborting the job (exit code "
             << kCollectiveTimeoutExitCode << ")";
  google::FlushLogFiles(google::GLOG_INFO);
  // ncclCommAbort and MPI_Abort can themselves hang (a wedged device, a dead
  // peer's socket): whatever happens below, the process is gone after
  // abort_grace.
  std::thread([grace = options_.abort_grace, rank = world_rank_] {
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(grace));
    LOG(ERROR) << "[parallel] rank " << rank
               << ": the backend's abort or MPI_Abort did not end the process within "
               << absl::FormatDuration(grace) << "; exiting with _exit("
               << kCollectiveTimeoutExitCode << ")";
    google::FlushLogFiles(google::GLOG_INFO);
    _exit(kCollectiveTimeoutExitCode);
  }).detach();
  if (expired.abort_backend) expired.abort_backend();
  MPI_Abort(MPI_COMM_WORLD, kCollectiveTimeoutExitCode);
}

TimeoutReport CollectiveWatchdog::Investigate(const Pending& pending) {
  TimeoutReport report;
  report.call = pending.call;
  report.waited = absl::Now() - pending.started;
  const std::vector<int>& ranks = pending.call.world_ranks;
  std::map<int, int> group_rank_of;  // world rank -> group rank, for the peers asked
  for (int group_rank = 0; group_rank < static_cast<int>(ranks.size()); ++group_rank) {
    if (ranks[group_rank] == world_rank_) continue;
    group_rank_of[ranks[group_rank]] = group_rank;
    SendAndForget(control_, ranks[group_rank], kQueryTag,
                  absl::StrCat(pending.call.group, "\n", pending.call.sequence));
  }
  std::map<int, std::string> answers;  // group rank -> answer
  std::set<int> absent;
  const absl::Time give_up = absl::Now() + options_.answer_grace;
  while (answers.size() < group_rank_of.size() && absl::Now() < give_up) {
    // Peers time out at the same moment and ask us too; answer while waiting.
    AnswerQueries();
    int source = 0;
    std::string answer;
    if (!ReceiveIfPresent(control_, kAnswerTag, &source, &answer)) {
      usleep(2000);
      continue;
    }
    std::vector<std::string> parts = absl::StrSplit(answer, absl::MaxSplits('\n', 3));
    uint64_t sequence = 0;
    auto peer = group_rank_of.find(source);
    if (parts.size() != 4 || parts[0] != pending.call.group ||
        !absl::SimpleAtoi(parts[1], &sequence) || sequence != pending.call.sequence ||
        peer == group_rank_of.end()) {
      continue;  // an answer to an earlier report
    }
    const char code = parts[2].empty() ? kCodeAbsent : parts[2][0];
    if (code == kCodeAbsent) absent.insert(peer->second);
    answers[peer->second] = absl::StrCat("rank ", peer->second, " (world ", source, "): ",
                                         code == kCodeWaiting    ? "arrived, waiting; "
                                         : code == kCodeFinished ? "already past it; "
                                                                 : "NOT arrived; ",
                                         parts[3]);
  }
  for (const auto& [world, group_rank] : group_rank_of) {
    auto it = answers.find(group_rank);
    if (it != answers.end()) {
      report.peer_states.push_back(it->second);
    } else {
      absent.insert(group_rank);
      report.peer_states.push_back(
          absl::StrCat("rank ", group_rank, " (world ", world, "): NOT arrived; no answer within ",
                       absl::FormatDuration(options_.answer_grace),
                       " (process dead, or hung outside memtrain's control)"));
    }
  }
  report.missing_ranks.assign(absent.begin(), absent.end());
  return report;
}

}  // namespace memtrain::parallel
