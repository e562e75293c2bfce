#include "parallel/knn_memory.h"

#include "absl/strings/str_cat.h"

namespace memtrain::parallel {

absl::Status SaveKnnMemory(const KnnMemory& memory, const std::string& path) {
  try {
    torch::serialize::OutputArchive archive;
    memory.WriteState(archive);
    archive.save_to(path);
  } catch (const c10::Error& error) {
    return absl::InternalError(
        absl::StrCat("SaveKnnMemory(", path, "): ", error.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::Status LoadKnnMemory(KnnMemory& memory, const std::string& path) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    memory.ReadState(archive);
  } catch (const c10::Error& error) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoadKnnMemory(", path, "): ", error.what_without_backtrace()));
  }
  return absl::OkStatus();
}

}  // namespace memtrain::parallel
