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
  int pipe_fds[2] = {-1, -1}, stdin_fds[2] = {-1, -1};
  const auto close_pipes = [&] {
    for (int fd : {pipe_fds[0], pipe_fds[1], stdin_fds[0], stdin_fds[1]})
      if (fd >= 0) close(fd);
  };
  if ((command.capture_stdout && pipe2(pipe_fds, O_CLOEXEC) != 0) ||
      (command.pipe_stdin && pipe2(stdin_fds, O_CLOEXEC) != 0)) {
    const int error = errno;
    close_pipes();
    return failed(error, "pipe");
  }
  if (command.capture_stderr && (child->stderr_ = std::tmpfile()) == nullptr) {
    const int error = errno;
    close_pipes();
    return failed(error, "a temporary file for its stderr");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (command.capture_stdout)
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  if (command.pipe_stdin) posix_spawn_file_actions_adddup2(&actions, stdin_fds[0], STDIN_FILENO);
  if (command.capture_stderr)
    posix_spawn_file_actions_adddup2(&actions, fileno(child->stderr_), STDERR_FILENO);
  // What this process printed so far comes before what a child printing to
  // the same stdout prints.
  std::fflush(stdout);
  const int spawned =
      posix_spawnp(&child->pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    child->pid_ = -1;
    close_pipes();
    return failed(spawned, "spawn");
  }
  // The child's ends are its own now.
  if (command.capture_stdout) {
    close(pipe_fds[1]);
    child->stdout_ = fdopen(pipe_fds[0], "r");
  }
  if (command.pipe_stdin) {
    close(stdin_fds[0]);
    child->stdin_ = stdin_fds[1];
  }
  return child;
}

ChildProcess::~ChildProcess() {
  CloseStdin();
  if (stdout_ != nullptr) std::fclose(stdout_);
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (stderr_ != nullptr) std::fclose(stderr_);
}

absl::Status ChildProcess::WriteToStdin(absl::string_view data) {
  if (stdin_ < 0)
    return absl::FailedPreconditionError(absl::StrCat("`", command_, "` has no stdin pipe"));
  // MSG_NOSIGNAL is for sockets only: a pipe's reader gone raises SIGPIPE,
  // ignored while writing so that write() returns EPIPE instead.
  struct sigaction ignore = {}, previous = {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &previous);
  absl::Status status = absl::OkStatus();
  while (!data.empty()) {
    const ssize_t written = write(stdin_, data.data(), data.size());
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      status = absl::ErrnoToStatus(errno, absl::StrCat("writing to `", command_, "`"));
      break;
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  sigaction(SIGPIPE, &previous, nullptr);
  return status;
}

void ChildProcess::CloseStdin() {
  if (stdin_ >= 0) close(stdin_);
  stdin_ = -1;
}

absl::StatusOr<bool> ChildProcess::ReadExactly(void* data, size_t size) {
  if (size == 0) return true;
  const size_t got = stdout_ == nullptr ? 0 : std::fread(data, 1, size, stdout_);
  if (got == size) return true;
  if (stdout_ != nullptr && std::ferror(stdout_)) {
    return absl::ErrnoToStatus(errno, absl::StrCat("reading the output of `", command_, "`"));
  }
  if (got == 0) return false;
  return absl::DataLossError(absl::StrCat("the output of `", command_, "` ended inside a message"));
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
  // A child blocked reading input or writing to a pipe nobody reads would
  // never end.
  CloseStdin();
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
