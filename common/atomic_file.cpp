#include "common/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace memtrain {
namespace {

namespace fs = std::filesystem;

// The directory whose entry names `path` (".", for a bare file name).
std::string ParentOf(const std::string& path) {
  return fs::absolute(fs::path(path)).parent_path().string();
}

}  // namespace

std::string StagingPath(const std::string& target) {
  return StagingPath(target, absl::StrCat("-", ::getpid()));
}

std::string StagingPath(const std::string& target, const std::string& tag) {
  return absl::StrCat(target, ".partial", tag);
}

absl::Status CreateStagingDirectory(const std::string& staging) {
  std::error_code error;
  fs::remove_all(staging, error);
  if (!error) fs::create_directories(staging, error);
  if (error)
    return absl::InternalError(absl::StrCat("cannot create ", staging, ": ", error.message()));
  return absl::OkStatus();
}

absl::Status Publish(const std::string& staging, const std::string& target) {
  std::error_code error;
  const bool directory = fs::is_directory(staging, error);
  if (directory) {
    for (const auto& entry : fs::directory_iterator(staging, error)) {
      if (entry.is_regular_file()) MEMTRAIN_RETURN_IF_ERROR(Fsync(entry.path().string()));
    }
    if (error)
      return absl::InternalError(absl::StrCat("cannot list ", staging, ": ", error.message()));
  }
  MEMTRAIN_RETURN_IF_ERROR(Fsync(staging));
  const std::string aside = StagingPath(target, absl::StrCat("-old-", ::getpid()));
  const bool replaces_directory = directory && fs::exists(target, error);
  if (replaces_directory) {
    fs::remove_all(aside, error);
    fs::rename(target, aside, error);
    if (error)
      return absl::InternalError(absl::StrCat("cannot move ", target, " aside: ", error.message()));
  }
  fs::rename(staging, target, error);
  if (error)
    return absl::InternalError(
        absl::StrCat("cannot rename ", staging, " to ", target, ": ", error.message()));
  MEMTRAIN_RETURN_IF_ERROR(Fsync(ParentOf(target)));
  if (replaces_directory) fs::remove_all(aside, error);  // best effort: the new one is in place
  return absl::OkStatus();
}

absl::Status Fsync(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    return absl::InternalError(
        absl::StrCat("cannot open ", path, " to fsync: ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0)
    return absl::InternalError(absl::StrCat("fsync of ", path, " failed: ", std::strerror(errno)));
  return absl::OkStatus();
}

absl::Status WriteFileDurably(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      return absl::InternalError(absl::StrCat("writing ", path, ": ", reason));
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const bool closed = ::close(fd) == 0;
  if (!synced || !closed)
    return absl::InternalError(
        absl::StrCat("fsync/close of ", path, " failed: ", std::strerror(errno)));
  return absl::OkStatus();
}

}  // namespace memtrain
