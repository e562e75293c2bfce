#include "common/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace memtrain {
namespace {

// This process's environment with `extra` in place of the variables it names.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> environment = extra;
  for (char** variable = environ; *variable != nullptr; ++variable) {
    const absl::string_view entry(*variable);
    const absl::string_view name = entry.substr(0, entry.find('='));
    const bool replaced = std::any_of(extra.begin(), extra.end(), [&](const std::string& added) {
      return absl::string_view(added).substr(0, added.find('=')) == name;
    });
    if (!replaced) environment.emplace_back(entry);
  }
  return environment;
}

std::vector<char*> NullTerminated(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Everything in `file` from its start.
std::string ReadWholeFile(FILE* file) {
  std::string text;
  std::rewind(file);
  char buffer[4096];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, got);
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(const ChildCommand& command) {
  if (command.argv.empty()) return absl::InvalidArgumentError("ChildProcess: no command");
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->command_ = absl::StrJoin(command.argv, " ");
  const auto failed = [&](int error, absl::string_view what) {
    return absl::ErrnoToStatus(error, absl::StrCat("cannot run `", child->command_, "`: ", what));
  };
  std::vector<std::string> args = command.argv;
  std::vector<std::string> environment = ChildEnvironment(command.extra_environment);
  const std::vector<char*> argv = NullTerminated(args), envp = NullTerminated(environment);

  // Both pipe ends close in the child on exec; dup2 gives it a stdout without that flag.
  int pipe_fds[2] = {-1, -1};
  if (command.capture_stdout && pipe2(pipe_fds, O_CLOEXEC) != 0) return failed(errno, "pipe");
  if (command.capture_stderr && (child->stderr_ = std::tmpfile()) == nullptr) {
    const int error = errno;
    if (command.capture_stdout) close(pipe_fds[0]), close(pipe_fds[1]);
    return failed(error, "a temporary file for its stderr");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (command.capture_stdout)
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  if (command.capture_stderr)
    posix_spawn_file_actions_adddup2(&actions, fileno(child->stderr_), STDERR_FILENO);
  // What this process printed so far comes before what a child printing to
  // the same stdout prints.
  std::fflush(stdout);
  const int spawned =
      posix_spawnp(&child->pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (command.capture_stdout) close(pipe_fds[1]);
  if (spawned != 0) {
    child->pid_ = -1;
    if (command.capture_stdout) close(pipe_fds[0]);
    return failed(spawned, "spawn");
  }
  if (command.capture_stdout) child->stdout_ = fdopen(pipe_fds[0], "r");
  return child;
}

ChildProcess::~ChildProcess() {
  if (stdout_ != nullptr) std::fclose(stdout_);
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (stderr_ != nullptr) std::fclose(stderr_);
}

absl::StatusOr<std::optional<std::string>> ChildProcess::ReadLine() {
  if (stdout_ == nullptr) return std::nullopt;
  char* buffer = nullptr;
  size_t capacity = 0;
  errno = 0;
  const ssize_t got = getline(&buffer, &capacity, stdout_);
  if (got < 0) {
    const int error = errno;
    std::free(buffer);
    if (error != 0 && !std::feof(stdout_)) {
      return absl::ErrnoToStatus(error, absl::StrCat("reading the output of `", command_, "`"));
    }
    return std::nullopt;
  }
  std::string line(buffer, static_cast<size_t>(got));
  std::free(buffer);
  if (!line.empty() && line.back() == '\n') line.pop_back();
  return line;
}

absl::StatusOr<std::string> ChildProcess::ReadRest() {
  std::string text;
  if (stdout_ == nullptr) return text;
  char buffer[4096];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof(buffer), stdout_)) > 0) text.append(buffer, got);
  if (std::ferror(stdout_)) {
    return absl::ErrnoToStatus(errno, absl::StrCat("reading the output of `", command_, "`"));
  }
  return text;
}

absl::Status ChildProcess::Wait() {
  if (pid_ <= 0)
    return absl::FailedPreconditionError(absl::StrCat("`", command_, "` was waited for"));
  // A child blocked writing to a pipe nobody reads would never end.
  if (stdout_ != nullptr) {
    std::fclose(stdout_);
    stdout_ = nullptr;
  }
  int status = 0;
  struct rusage usage {};
  while (wait4(pid_, &status, 0, &usage) < 0) {
    if (errno != EINTR)
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot wait for `", command_, "`"));
  }
  pid_ = -1;
  peak_rss_mb_ = static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  const std::string said =
      stderr_ == nullptr ? " (its error is above)"
                         : absl::StrCat(": ", absl::StripAsciiWhitespace(ReadWholeFile(stderr_)));
  if (WIFSIGNALED(status)) {
    return absl::InternalError(absl::StrCat("`", command_, "` died of signal ", WTERMSIG(status),
                                            " (", strsignal(WTERMSIG(status)), ")", said));
  }
  return absl::InternalError(
      absl::StrCat("`", command_, "` exited with status ", WEXITSTATUS(status), said));
}

}  // namespace memtrain
