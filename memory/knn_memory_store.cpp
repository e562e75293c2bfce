#include "memory/knn_memory_store.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace memtrain::memory {
namespace {

namespace fs = std::filesystem;

constexpr char kInfoName[] = "memory.json";
constexpr char kFormat[] = "memtrain-knn-memory-1";

std::string ShardName(int64_t layer, int rank) {
  return absl::StrCat("layer-", layer, ".rank-", rank, ".pt");
}

nlohmann::json InfoJson(const KnnMemoryStoreInfo& info) {
  nlohmann::json entries = nlohmann::json::object();
  for (const auto& [layer, count] : info.entries) entries[std::to_string(layer)] = count;
  return {{"format", kFormat},
          {"model_sha256", info.model_sha256},
          {"corpus", info.corpus},
          {"corpus_tokens", info.corpus_tokens},
          {"ranks", info.ranks},
          {"backend", info.memory.backend},
          {"capacity_per_rank", info.memory.capacity},
          {"entries", entries}};
}

}  // namespace

absl::Status WriteKnnMemoryStore(const std::string& dir, const KnnMemoryStoreInfo& info,
                                 const std::map<int64_t, std::shared_ptr<KnnMemory>>& memories,
                                 parallel::Communicator& group) {
  const std::string partial = StagingPath(dir, "");  // every rank names it alike
  absl::Status made = absl::OkStatus();
  if (group.rank() == 0) {
    std::error_code error;
    made = fs::exists(dir, error) ? absl::AlreadyExistsError(absl::StrCat(
                                        dir, " exists; choose another --out or remove it"))
                                  : CreateStagingDirectory(partial);
  }
  MEMTRAIN_RETURN_IF_ERROR(parallel::AllRanksOk(group, made, "creating the memory directory"));
  auto write_shards = [&]() -> absl::Status {
    for (const auto& [layer, memory] : memories) {
      const std::string path = (fs::path(partial) / ShardName(layer, group.rank())).string();
      MEMTRAIN_RETURN_IF_ERROR(SaveKnnMemory(*memory, path));
    }
    return absl::OkStatus();
  };
  MEMTRAIN_RETURN_IF_ERROR(
      parallel::AllRanksOk(group, write_shards(), "writing the memory shards"));
  absl::Status committed = absl::OkStatus();
  if (group.rank() == 0) {
    committed = [&]() -> absl::Status {
      MEMTRAIN_RETURN_IF_ERROR(WriteFileDurably((fs::path(partial) / kInfoName).string(),
                                                InfoJson(info).dump(2) + "\n"));
      return Publish(partial, dir);  // fsyncs every rank's shard files too
    }();
  }
  return parallel::AllRanksOk(group, committed, "committing the memory directory");
}

absl::StatusOr<KnnMemoryStoreInfo> ReadKnnMemoryStoreInfo(const std::string& dir) {
  const std::string path = (fs::path(dir) / kInfoName).string();
  std::ifstream file(path);
  if (!file)
    return absl::NotFoundError(
        absl::StrCat(path, ": not found (not a memtrain-build-memory directory?)"));
  std::stringstream text;
  text << file.rdbuf();
  KnnMemoryStoreInfo info;
  try {
    const nlohmann::json json = nlohmann::json::parse(text.str());
    if (json.at("format").get<std::string>() != kFormat) {
      return absl::DataLossError(absl::StrCat(
          path, ": format '", json.at("format").get<std::string>(), "', expected '", kFormat, "'"));
    }
    info.model_sha256 = json.at("model_sha256").get<std::string>();
    info.corpus = json.at("corpus").get<std::string>();
    info.corpus_tokens = json.at("corpus_tokens").get<int64_t>();
    info.ranks = json.at("ranks").get<int>();
    info.memory.backend = json.at("backend").get<std::string>();
    info.memory.capacity = json.at("capacity_per_rank").get<int64_t>();
    info.memory.sharded = true;
    for (const auto& [layer, count] : json.at("entries").items())
      info.entries[std::stoll(layer)] = count.get<int64_t>();
  } catch (const std::exception& e) {  // nlohmann::json and std::stoll throw
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
  return info;
}

absl::StatusOr<KnnMemoryStore> ReadKnnMemoryStore(const std::string& dir,
                                                  const std::string& model_sha256,
                                                  const std::vector<int64_t>& layers,
                                                  parallel::Communicator& group) {
  KnnMemoryStore store;
  MEMTRAIN_ASSIGN_OR_RETURN(store.info, ReadKnnMemoryStoreInfo(dir));
  const KnnMemoryStoreInfo& info = store.info;
  if (info.model_sha256 != model_sha256) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " holds the keys of the model with weights sha256 ", info.model_sha256,
        ", not of this one (", model_sha256, "); rebuild it with memtrain-build-memory --model"));
  }
  std::vector<int64_t> stored;
  for (const auto& [layer, count] : info.entries) stored.push_back(layer);
  if (stored != layers) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " holds memories for decoder layers [", absl::StrJoin(stored, ", "),
                     "], the model's knn layers are [", absl::StrJoin(layers, ", "), "]"));
  }
  if (info.ranks != group.size()) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " was built sharded over ", info.ranks,
                                                      " ranks; read it with as many (this job has ",
                                                      group.size(), ")"));
  }
  auto load = [&]() -> absl::Status {
    for (const auto& [layer, count] : info.entries) {
      MEMTRAIN_ASSIGN_OR_RETURN(std::shared_ptr<KnnMemory> memory,
                                MakeKnnMemory(info.memory, &group));
      const std::string path = (fs::path(dir) / ShardName(layer, group.rank())).string();
      const absl::Status loaded = LoadKnnMemory(*memory, path);
      if (!loaded.ok()) return absl::DataLossError(loaded.message());
      store.memories[layer] = std::move(memory);
    }
    return absl::OkStatus();
  };
  MEMTRAIN_RETURN_IF_ERROR(
      parallel::AllRanksOk(group, load(), absl::StrCat("reading the kNN memory ", dir)));
  return store;
}

}  // namespace memtrain::memory
