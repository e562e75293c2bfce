#include "checkpoints/training_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "checkpoints/internal/format_version.h"
#include "checkpoints/internal/json_differences.h"
#include "checkpoints/safetensors.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "parallel/collective_phase.h"

namespace memtrain::checkpoints {
namespace {

namespace fs = std::filesystem;

constexpr char kCpuRng[] = "rng.cpu", kCudaRng[] = "rng.cuda", kTaskPrefix[] = "task.";

bool IsRankFile(const std::string& file) { return absl::StartsWith(file, "rank-"); }

// The files a rank reads on resume: the shared ones and its own.
std::function<bool(const std::string&)> FilesOfRank(int rank) {
  return [own = RankFileName(rank)](const std::string& file) {
    return !IsRankFile(file) || file == own;
  };
}

nlohmann::json TrainerStateJson(const TrainerState& s) {
  return {{"format_version", kTrainerStateVersion},
          {"step", s.step},
          {"tokens_seen", s.tokens_seen},
          {"world_size", s.world_size},
          {"task", s.task},
          {"tokenizer_sha256", s.tokenizer_sha256},
          {"knn_memory_saved", s.knn_memory_saved},
          {"options", s.options},
          {"bucket_plan", s.bucket_plan},
          {"data_state", s.data_state},
          {"job", s.job}};
}

// Throws nlohmann::json::exception on a missing or mistyped field.
TrainerState TrainerStateFromJson(const nlohmann::json& j, int version) {
  TrainerState s;
  s.format_version = version;
  s.step = j.at("step").get<int64_t>();
  s.tokens_seen = j.at("tokens_seen").get<double>();
  s.world_size = j.at("world_size").get<int>();
  s.task = j.at("task").get<std::string>();
  s.tokenizer_sha256 = j.at("tokenizer_sha256").get<std::string>();
  s.knn_memory_saved = j.at("knn_memory_saved").get<bool>();
  s.options = j.at("options");
  s.bucket_plan = j.at("bucket_plan").get<std::vector<std::vector<std::string>>>();
  if (version >= 4) {
    s.data_state = j.at("data_state").get<std::string>();
    s.job = j.at("job").get<std::map<std::string, std::string>>();
  }
  return s;
}

// Version 3's option names and values from those of versions 1 and 2 (the
// header's version history). Throws nlohmann::json::exception on a mistyped value.
void UpgradeOptionsToVersion3(nlohmann::json& options) {
  constexpr double kMiB = 1 << 20;
  auto rename = [&](const char* from, const char* to, auto convert) {
    if (!options.contains(from)) return;
    const nlohmann::json value = options.at(from);
    options.erase(from);
    options[to] = convert(value);
  };
  auto same = [](const nlohmann::json& value) { return value; };
  auto mib = [&](const nlohmann::json& bytes) { return bytes.get<double>() / kMiB; };
  rename("metrics_path", "metrics", same);
  rename("bucket_bytes", "bucket_mb", mib);
  rename("first_bucket_bytes", "first_bucket_mb", mib);
  rename("unused_parameters", "unused_parameters", [](const nlohmann::json& value) {
    return value.is_number() ? nlohmann::json(value.get<int>() == 0 ? "error" : "zero") : value;
  });
  options.erase("lr_total_steps");
}

absl::Status WriteRankState(const std::string& path, int rank, const RankState& state) {
  std::map<std::string, at::Tensor> tensors{{kCpuRng, state.cpu_rng}};
  if (state.cuda_rng.defined()) tensors[kCudaRng] = state.cuda_rng;
  if (state.task_state_saved) {
    for (const auto& [name, tensor] : state.task_state) tensors[kTaskPrefix + name] = tensor;
  }
  return WriteSafetensors(
      path, tensors,
      {{"rank", std::to_string(rank)}, {"task_state_saved", state.task_state_saved ? "1" : "0"}});
}

// Why `state`, of another world size than `target`'s, cannot be resumed; OK if it can.
absl::Status CheckResizable(const std::string& checkpoint, const TrainerState& state,
                            const ResumeTarget& target) {
  const std::string sizes = absl::StrCat(checkpoint, " was written by ", state.world_size,
                                         " ranks; this run has ", target.world_size);
  if (state.data_state.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(sizes, ", and its format (version ", state.format_version,
                     ") keeps a data cursor per rank: resume it with ", state.world_size,
                     " ranks (format 4 on can change the world size)"));
  }
  if (state.knn_memory_saved && !target.drop_memory_on_resize) {
    return absl::FailedPreconditionError(absl::StrCat(
        sizes,
        ", and it holds every stream's memory states, which cannot follow the streams to "
        "another number of ranks: pass --knn_memory_on_resize=drop to resume with empty "
        "memories (resharding them is not implemented)"));
  }
  return absl::OkStatus();
}

// The run identity (options, safe ones included, and job) of `state` against
// `target`'s, when --resume=auto found the checkpoint: one line per difference.
std::vector<std::string> IdentityDifferences(const nlohmann::json& saved_options,
                                             const TrainerState& state,
                                             const ResumeTarget& target) {
  if (!target.automatic || state.format_version < 4) return {};  // older files have none
  std::set<std::string> ignored = target.accepted_changes;
  ignored.insert(target.outside_identity.begin(), target.outside_identity.end());
  for (const auto& item : target.options.items()) {
    if (target.safe_to_change.count(item.key()) == 0) ignored.insert(item.key());  // checked before
  }
  std::vector<std::string> differences =
      internal::Differences(saved_options, target.options, ignored);
  for (const std::string& d :
       internal::Differences(nlohmann::json(state.job), nlohmann::json(target.job), ignored)) {
    differences.push_back(d);
  }
  return differences;
}

// Everything about `state` that forbids resuming `target` from it, one line each.
absl::Status CheckCompatible(const std::string& checkpoint, const TrainerState& state,
                             const ModelInfo& saved_model, const ResumeTarget& target) {
  if (state.world_size != target.world_size) {
    MEMTRAIN_RETURN_IF_ERROR(CheckResizable(checkpoint, state, target));
  }
  if (state.task != target.task || state.tokenizer_sha256 != target.tokenizer_sha256) {
    return absl::FailedPreconditionError(absl::StrCat(
        checkpoint, " is a ", state.task, " checkpoint with tokenizer ", state.tokenizer_sha256,
        "; this run is ", target.task, " with tokenizer ", target.tokenizer_sha256));
  }
  // Options the checkpoint's memtrain did not have yet: it ran with their defaults.
  nlohmann::json saved_options = target.default_options;
  saved_options.update(state.options);
  std::vector<std::string> differences =
      internal::Differences(saved_options, target.options, target.safe_to_change);
  for (const std::string& d : internal::Differences(
           nlohmann::json::parse(model::TransformerOptionsToJson(saved_model.options)),
           nlohmann::json::parse(model::TransformerOptionsToJson(target.model->options())), {})) {
    differences.push_back("model." + d);
  }
  if (!differences.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot resume from ", checkpoint, " with a different configuration:\n  ",
                     absl::StrJoin(differences, "\n  "), "\n(safe to change: ",
                     absl::StrJoin(target.safe_to_change, ", "), "; see docs/CHECKPOINTS.md)"));
  }
  if (const std::vector<std::string> foreign = IdentityDifferences(saved_options, state, target);
      !foreign.empty()) {
    std::vector<std::string> names;
    for (const std::string& d : foreign) names.push_back(d.substr(0, d.find(':')));
    return absl::FailedPreconditionError(absl::StrCat(
        "--resume=auto: ", checkpoint, " belongs to another run (its run identity differs):\n  ",
        absl::StrJoin(foreign, "\n  "),
        "\n(another task of a sweep sharing --checkpoint_dir? Give each run its own directory. "
        "To continue this checkpoint with these changes on purpose, add --resume_changed=",
        absl::StrJoin(names, ","), " or name it: --resume=", checkpoint,
        "; see docs/CHECKPOINTS.md, \"Run identity\")"));
  }
  if (state.bucket_plan != target.bucket_plan) {
    return absl::FailedPreconditionError(
        absl::StrCat(checkpoint,
                     ": the gradient bucket plan differs from this run's "
                     "(same options, different model code?); the reduction order "
                     "would change"));
  }
  return absl::OkStatus();
}

// A file of a checkpoint being saved: its entry as its writer read it back,
// and the rank that reads it back again before the commit (the writer itself
// when nobody else does).
struct WrittenFile {
  ManifestEntry entry;
  int writer = 0;
  int verifier = 0;
};

// Collective: every rank's `mine`, in rank order, each with its verifier.
// Rank files are verified by their writers; the shared files, which rank 0
// wrote, are spread over the other ranks, largest first to the one with the
// fewest bytes so far, so that no rank re-reads everything.
absl::StatusOr<std::vector<WrittenFile>> GatherWrittenFiles(
    parallel::Communicator& world, const std::vector<ManifestEntry>& mine) {
  nlohmann::json json = nlohmann::json::array();
  for (const ManifestEntry& entry : mine) {
    json.push_back({{"file", entry.file}, {"bytes", entry.bytes}, {"sha256", entry.sha256}});
  }
  const std::string text = json.dump();
  at::Tensor bytes = at::empty({static_cast<int64_t>(text.size())}, at::kByte);
  std::memcpy(bytes.data_ptr<uint8_t>(), text.data(), text.size());
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<at::Tensor> all, world.allgatherv(bytes));
  std::vector<WrittenFile> written;
  for (int rank = 0; rank < static_cast<int>(all.size()); ++rank) {
    const at::Tensor piece = all[rank].contiguous();
    const nlohmann::json entries =
        nlohmann::json::parse(std::string(reinterpret_cast<const char*>(piece.data_ptr<uint8_t>()),
                                          static_cast<size_t>(piece.numel())),
                              nullptr, /*allow_exceptions=*/false);
    if (!entries.is_array())
      return absl::InternalError(
          absl::StrCat("rank ", rank, "'s list of written files is garbled"));
    for (const auto& entry : entries) {
      written.push_back(
          {{entry.value("file", ""), entry.value("bytes", int64_t{-1}), entry.value("sha256", "")},
           rank,
           rank});
    }
  }
  std::vector<WrittenFile*> shared;
  for (WrittenFile& file : written) {
    if (!IsRankFile(file.entry.file) && world.size() > 1) shared.push_back(&file);
  }
  std::stable_sort(shared.begin(), shared.end(), [](const WrittenFile* a, const WrittenFile* b) {
    return a->entry.bytes > b->entry.bytes;
  });
  std::vector<int64_t> load(static_cast<size_t>(world.size()), 0);
  for (WrittenFile* file : shared) {
    int least = 1;
    for (int rank = 2; rank < world.size(); ++rank) {
      if (load[rank] < load[least]) least = rank;
    }
    file->verifier = least;
    load[least] += file->entry.bytes;
  }
  return written;
}

}  // namespace

std::string RankFileName(int rank) { return absl::StrFormat("rank-%05d.safetensors", rank); }

RankState CaptureRandomState(const c10::Device& device) {
  RankState state;
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    state.cpu_rng = generator.get_state();
  }
  if (device.is_cuda()) {  // untested here: no GPU on the development machine
    auto generator = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(generator.mutex());
    state.cuda_rng = generator.get_state();
  }
  return state;
}

absl::Status RestoreRandomState(const RankState& state, const c10::Device& device) {
  if (!state.cpu_rng.defined()) return absl::DataLossError("no CPU generator state");
  if (device.is_cuda() && !state.cuda_rng.defined())
    return absl::DataLossError("no GPU generator state (a CPU run's checkpoint?)");
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state.cpu_rng);
  }
  if (device.is_cuda()) {  // untested here: no GPU on the development machine
    auto generator = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state.cuda_rng);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SaveTrainingCheckpoint(parallel::Communicator& world,
                                                   const CheckpointOptions& options,
                                                   const TrainingCheckpoint& checkpoint) {
  if (options.dir.empty())
    return absl::FailedPreconditionError("no checkpoint directory (--checkpoint_dir)");
  const parallel::ScopedCollectivePhase phase(parallel::CollectivePhase::kCheckpoint);
  const int64_t step = checkpoint.state.step;
  const absl::Time start = absl::Now();
  // 1. Rank 0 makes the empty staging directory; the others wait for it.
  absl::StatusOr<std::string> partial = PartialCheckpointPath(options.dir, step);
  if (world.rank() == 0) partial = CreatePartialCheckpoint(options.dir, step);
  MEMTRAIN_RETURN_IF_ERROR(
      parallel::AllRanksOk(world, partial.status(), "creating the checkpoint directory"));
  // 2. Every rank writes its file; rank 0 also the replicated state. Each
  // writer reads its files back: their sizes and hashes.
  auto write = [&]() -> absl::StatusOr<std::vector<ManifestEntry>> {
    const fs::path dir(*partial);
    std::vector<std::string> files{RankFileName(world.rank())};
    MEMTRAIN_RETURN_IF_ERROR(
        WriteRankState((dir / files[0]).string(), world.rank(), checkpoint.rank));
    if (checkpoint.after_rank_file) checkpoint.after_rank_file((dir / files[0]).string());
    if (world.rank() == 0) {
      MEMTRAIN_RETURN_IF_ERROR(
          WriteModelFiles(dir.string(), *checkpoint.model, checkpoint.model_info));
      const std::string optimizer_file = (dir / kOptimizerName).string();
      try {
        torch::serialize::OutputArchive archive;
        checkpoint.optimizer->save(archive);
        archive.save_to(optimizer_file);
      } catch (const c10::Error& e) {
        return absl::InternalError(
            absl::StrCat("writing ", optimizer_file, ": ", e.what_without_backtrace()));
      }
      MEMTRAIN_RETURN_IF_ERROR(WriteFileDurably((dir / kTrainerStateName).string(),
                                                TrainerStateJson(checkpoint.state).dump(2) + "\n"));
      for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (entry.is_regular_file() && !IsRankFile(name)) files.push_back(name);
      }
    }
    std::vector<ManifestEntry> written;
    for (const std::string& file : files) {
      MEMTRAIN_ASSIGN_OR_RETURN(ManifestEntry entry, DescribeCheckpointFile(dir.string(), file));
      written.push_back(std::move(entry));
    }
    return written;
  };
  absl::StatusOr<std::vector<ManifestEntry>> mine = write();
  MEMTRAIN_RETURN_IF_ERROR(
      parallel::AllRanksOk(world, mine.status(), absl::StrCat("writing checkpoint ", *partial)));
  // 3. Every rank learns every file's entry and re-reads its share of rank
  // 0's files: what a resume on another host will read.
  if (checkpoint.before_verification) checkpoint.before_verification(*partial);
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<WrittenFile> written, GatherWrittenFiles(world, *mine));
  absl::Status verified = absl::OkStatus();
  for (const WrittenFile& file : written) {
    if (file.verifier != world.rank() || file.verifier == file.writer) continue;
    verified = VerifyCheckpointFile(*partial, file.entry,
                                    absl::StrCat("its writer (rank ", file.writer, ")"));
    if (!verified.ok()) break;
  }
  MEMTRAIN_RETURN_IF_ERROR(
      parallel::AllRanksOk(world, verified, absl::StrCat("verifying checkpoint ", *partial)));
  // 4. Every file is on disk as its writer described it: rank 0 commits.
  absl::StatusOr<std::string> committed = PartialCheckpointPath(options.dir, step);
  if (world.rank() == 0) {
    std::vector<ManifestEntry> entries;
    for (const WrittenFile& file : written) entries.push_back(file.entry);
    committed = CommitCheckpoint(options.dir, step, options.keep_last, std::move(entries));
  }
  MEMTRAIN_RETURN_IF_ERROR(
      parallel::AllRanksOk(world, committed.status(), "committing the checkpoint"));
  LOG_IF(INFO, world.rank() == 0) << absl::StrFormat("[ckpt] step %d saved to %s in %.2f s", step,
                                                     *committed,
                                                     absl::ToDoubleSeconds(absl::Now() - start));
  return CheckpointPath(options.dir, step);
}

absl::StatusOr<std::string> ChooseResumeCheckpoint(parallel::Communicator& world,
                                                   const CheckpointOptions& options) {
  const parallel::ScopedCollectivePhase phase(parallel::CollectivePhase::kCheckpoint);
  const auto wanted = FilesOfRank(world.rank());
  if (options.resume != "auto") {
    MEMTRAIN_RETURN_IF_ERROR(parallel::AllRanksOk(world, VerifyCheckpoint(options.resume, wanted),
                                                  "verifying --resume=" + options.resume));
    return options.resume;
  }
  // The ranks agree on a step every one of them can load: the minimum of
  // their newest verified steps, lowered until all find that same one.
  int64_t bound = std::numeric_limits<int64_t>::max(), agreed = -1;
  while (true) {
    std::vector<std::string> skipped;
    absl::StatusOr<CheckpointRef> found = FindNewestValid(options.dir, bound, wanted, &skipped);
    for (const std::string& reason : skipped) {
      LOG(WARNING) << "[ckpt] rank " << world.rank()
                   << ": damaged checkpoint skipped, using an older one: " << reason;
    }
    const int64_t mine = found.ok() ? found->step : -1;
    at::Tensor step = at::full({1}, mine, at::kLong);
    MEMTRAIN_RETURN_IF_ERROR(world.allreduce(step, parallel::ReduceOp::kMin));
    agreed = step.item<int64_t>();
    at::Tensor same = at::full({1}, mine == agreed ? 1 : 0, at::kInt);
    MEMTRAIN_RETURN_IF_ERROR(world.allreduce(same, parallel::ReduceOp::kMin));
    if (same.item<int>() == 1) break;
    bound = agreed;
  }
  return agreed < 0 ? std::string() : CheckpointPath(options.dir, agreed);
}

absl::StatusOr<TrainerState> ReadTrainerState(const std::string& checkpoint) {
  const std::string path = (fs::path(checkpoint) / kTrainerStateName).string();
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": not found"));
  const nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return absl::DataLossError(absl::StrCat(path, ": not a JSON object"));
  MEMTRAIN_ASSIGN_OR_RETURN(const int version,
                            internal::FormatVersion(json, kTrainerStateVersion, path));
  try {
    TrainerState state = TrainerStateFromJson(json, version);
    if (version < 3) UpgradeOptionsToVersion3(state.options);
    return state;
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
}

absl::StatusOr<RankState> ReadRankState(const std::string& checkpoint, int rank) {
  const std::string path = (fs::path(checkpoint) / RankFileName(rank)).string();
  MEMTRAIN_ASSIGN_OR_RETURN(Safetensors file, ReadSafetensors(path));
  RankState state;
  for (auto& [name, tensor] : file.tensors) {
    if (name == kCpuRng) {
      state.cpu_rng = tensor;
    } else if (name == kCudaRng) {
      state.cuda_rng = tensor;
    } else if (absl::StartsWith(name, kTaskPrefix)) {
      state.task_state[name.substr(sizeof(kTaskPrefix) - 1)] = tensor;
    }
  }
  if (!state.cpu_rng.defined()) return absl::DataLossError(absl::StrCat(path, " has no ", kCpuRng));
  state.data_state = file.metadata["data_state"];
  state.task_state_saved = file.metadata["task_state_saved"] == "1";
  return state;
}

absl::StatusOr<ResumedState> LoadTrainingCheckpoint(const std::string& checkpoint,
                                                    const ResumeTarget& target) {
  ResumedState resumed;
  MEMTRAIN_ASSIGN_OR_RETURN(resumed.state, ReadTrainerState(checkpoint));
  MEMTRAIN_ASSIGN_OR_RETURN(LoadedModel saved, LoadModel(checkpoint, target.device));
  MEMTRAIN_RETURN_IF_ERROR(CheckCompatible(checkpoint, resumed.state, saved.info, target));
  {
    at::NoGradGuard no_grad;
    auto saved_parameters = saved.model->named_parameters();
    for (auto& item : target.model->named_parameters())
      item.value().copy_(saved_parameters[item.key()]);
    auto saved_buffers = saved.model->named_buffers();
    for (auto& item : target.model->named_buffers()) item.value().copy_(saved_buffers[item.key()]);
  }
  const std::string optimizer_file = (fs::path(checkpoint) / kOptimizerName).string();
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(optimizer_file, target.device);
    target.optimizer->load(archive);
  } catch (const c10::Error& e) {
    return absl::DataLossError(absl::StrCat(optimizer_file, ": ", e.what_without_backtrace()));
  }
  resumed.resized = resumed.state.world_size != target.world_size;
  if (resumed.resized) return resumed;  // the rank files belong to the old ranks
  MEMTRAIN_ASSIGN_OR_RETURN(resumed.rank, ReadRankState(checkpoint, target.rank));
  if (resumed.state.data_state.empty()) resumed.state.data_state = resumed.rank.data_state;
  const absl::Status restored = RestoreRandomState(resumed.rank, target.device);
  if (!restored.ok()) {
    return absl::DataLossError(absl::StrCat(
        (fs::path(checkpoint) / RankFileName(target.rank)).string(), ": ", restored.message()));
  }
  return resumed;
}

}  // namespace memtrain::checkpoints
