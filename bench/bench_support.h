// File: bench/bench_support.h
//
// What every benchmark in bench/ shares: one way to run a child process, one
// flag vocabulary, and the helpers they would otherwise each repeat.
//
// Flags, declared once here for every benchmark (docs/BENCHMARKS.md):
//   --json      write every number to this file (rank 0 under mpirun)
//   --work_dir  scratch directory; default a fresh temporary one, removed at the end
//   --warmup    untimed repetitions at the start of each measurement
//   --repeats   timed repetitions per measurement; the benchmark reports their median
// --warmup and --repeats default to each benchmark's own numbers (its usage
// line states them): main() calls SetRepetitionDefaults after InitBinary.
//
// Children (a measurement in a process of its own, or a tool; common/child_process.h):
//   ChildCommand command;
//   command.argv = {self, "--measure=single"};
//   MEMTRAIN_ASSIGN_OR_RETURN(ChildResult child, RunChild(command));
//   MEMTRAIN_ASSIGN_OR_RETURN(nlohmann::json numbers, child.LastLineJson());
// The child's stderr is this process's, so its errors show; a child that
// exits non-zero or dies of a signal is an error Status naming its command.
#ifndef MEMTRAIN_BENCH_BENCH_SUPPORT_H_
#define MEMTRAIN_BENCH_BENCH_SUPPORT_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/child_process.h"
#include "nlohmann/json.hpp"

ABSL_DECLARE_FLAG(std::string, json);
ABSL_DECLARE_FLAG(std::string, work_dir);
ABSL_DECLARE_FLAG(std::optional<int>, warmup);
ABSL_DECLARE_FLAG(std::optional<int>, repeats);

namespace memtrain::bench {

// ---- flags -------------------------------------------------------------------

/// Gives --warmup and --repeats these values where the command line left them
/// unset (declared once for every benchmark, they cannot carry a default
/// each). InvalidArgument unless warmup >= 0 and repeats >= 1.
absl::Status SetRepetitionDefaults(int warmup, int repeats);

/// --warmup and --repeats; only after SetRepetitionDefaults.
int Warmup();
int Repeats();

/// Writes `results` to --json, if given.
absl::Status WriteJsonIfRequested(const nlohmann::json& results);

/// --work_dir when given (created if missing, kept), else a fresh directory
/// under the system's temporary directory, removed with this object.
class WorkDir {
 public:
  /// `benchmark` goes into the temporary directory's name.
  static absl::StatusOr<WorkDir> Create(absl::string_view benchmark);
  WorkDir(WorkDir&& other) noexcept;
  WorkDir& operator=(WorkDir&&) = delete;
  ~WorkDir();

  const std::string& path() const { return path_; }

 private:
  WorkDir(std::string path, bool remove) : path_(std::move(path)), remove_(remove) {}

  std::string path_;
  bool remove_;
};

// ---- child processes -----------------------------------------------------------

using memtrain::ChildCommand;

struct ChildResult {
  std::string command;      // argv joined by spaces, for messages
  std::string stdout_text;  // empty unless captured
  double peak_rss_mb = 0;   // wait4's ru_maxrss: the child's peak resident memory

  /// The last non-empty line of stdout, parsed; an error naming the command
  /// if there is none or it is not JSON.
  absl::StatusOr<nlohmann::json> LastLineJson() const;
};

/// Runs `command` to its end; stderr passes through. An error if it cannot
/// start, exits non-zero or dies of a signal (the message says which).
absl::StatusOr<ChildResult> RunChild(const ChildCommand& command);

// ---- helpers -------------------------------------------------------------------

/// The middle value, or the mean of the two middle ones; `values` not empty.
double Median(std::vector<double> values);

/// This binary's absolute path (/proc/self/exe: argv[0] may be a bare name).
absl::StatusOr<std::string> ThisExecutable();

/// The binary `name` in this binary's directory (build/bin/ holds every one).
absl::StatusOr<std::string> SiblingExecutable(absl::string_view name);

}  // namespace memtrain::bench

#endif  // MEMTRAIN_BENCH_BENCH_SUPPORT_H_
