#include "memory/knn_memory.h"

#include <torch/serialize/archive.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace memtrain::memory {

absl::Status SaveKnnMemory(const KnnMemory& memory, const std::string& path) {
  MEMTRAIN_ASSIGN_OR_RETURN(const auto state, memory.SaveState());
  try {
    torch::serialize::OutputArchive archive;
    for (const auto& [name, tensor] : state) archive.write(name, tensor);
    archive.save_to(path);
  } catch (const c10::Error& error) {
    return absl::InternalError(
        absl::StrCat("SaveKnnMemory(", path, "): ", error.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::Status LoadKnnMemory(KnnMemory& memory, const std::string& path) {
  std::map<std::string, at::Tensor> state;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    for (const std::string& name : archive.keys()) {
      at::Tensor tensor;
      archive.read(name, tensor);
      state[name] = tensor;
    }
  } catch (const c10::Error& error) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoadKnnMemory(", path, "): ", error.what_without_backtrace()));
  }
  const absl::Status loaded = memory.LoadState(state);
  if (!loaded.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("LoadKnnMemory(", path, "): ", loaded.message()));
  return absl::OkStatus();
}

}  // namespace memtrain::memory
