// File: common/child_process.h
//
// Running another program and reading what it prints, line by line or whole:
// the benchmarks' measurements in processes of their own (bench/), and
// memtrain-prepare's parquet inputs, which a Python child streams as lines
// (data/parquet_rows.py), and memtrain-generate's text, which a memtrain-prepare
// child encodes (data/text_inputs.h).
//
//   ChildCommand command;
//   command.argv = {"python3", "rows.py", "train.parquet"};
//   command.capture_stderr = true;
//   MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> child, ChildProcess::Start(command));
//   while (true) {
//     MEMTRAIN_ASSIGN_OR_RETURN(std::optional<std::string> line, child->ReadLine());
//     if (!line.has_value()) break;
//     ...
//   }
//   MEMTRAIN_RETURN_IF_ERROR(child->Wait());
//
// A child that exits non-zero or dies of a signal makes Wait() an error
// naming its command and status, with what it wrote to stderr when that was
// captured (kept in an unlinked temporary file, so a chatty child never
// blocks on a full pipe); otherwise its stderr is this process's. A child
// still running when its ChildProcess is destroyed (a reader that stopped
// early) is killed and reaped.
#ifndef MEMTRAIN_COMMON_CHILD_PROCESS_H_
#define MEMTRAIN_COMMON_CHILD_PROCESS_H_

#include <sys/types.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace memtrain {

struct ChildCommand {
  std::vector<std::string> argv;               ///< argv[0]: a path, or a name looked up on PATH
  std::vector<std::string> extra_environment;  ///< "NAME=value", replacing this process's NAME
  bool capture_stdout = true;                  ///< false: the child writes to this process's stdout
  bool capture_stderr = false;  ///< true: Wait()'s error quotes it instead of it being printed
  bool pipe_stdin = false;  ///< true: WriteToStdin feeds it; else it inherits this process's stdin
};

class ChildProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const ChildCommand& command);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// Writes to the child's stdin (pipe_stdin). A child that ended early is
  /// an error here, not a SIGPIPE. Write everything before reading when the
  /// child reads all its input before it writes (else both pipes can fill).
  absl::Status WriteToStdin(absl::string_view data);
  /// Ends the child's input (its next read returns end of file).
  void CloseStdin();

  /// The next line of the captured stdout without its "\n", or nullopt at its end.
  absl::StatusOr<std::optional<std::string>> ReadLine();
  /// Exactly `size` bytes of the captured stdout: false at its end before the
  /// first, an error if it ends inside them.
  absl::StatusOr<bool> ReadExactly(void* data, size_t size);
  /// Everything left of the captured stdout.
  absl::StatusOr<std::string> ReadRest();
  /// Waits for the child to end. OK only for exit status 0.
  absl::Status Wait();

  /// argv joined by spaces, for messages.
  const std::string& command() const { return command_; }
  /// The child's peak resident memory (wait4's ru_maxrss), after Wait().
  double peak_rss_mb() const { return peak_rss_mb_; }

 private:
  ChildProcess() = default;

  std::string command_;
  pid_t pid_ = -1;
  int stdin_ = -1;          // the write end of the child's stdin, when piped
  FILE* stdout_ = nullptr;  // the read end of the child's stdout, when captured
  FILE* stderr_ = nullptr;  // the unlinked file holding its stderr, when captured
  double peak_rss_mb_ = 0;
};

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_CHILD_PROCESS_H_
