#include "launch/environment.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace memtrain::launch {
namespace {

absl::StatusOr<int> ReadInt(const EnvironmentReader& env, const std::string& name) {
  std::optional<std::string> value = env(name);
  if (!value.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is not set"));
  }
  int parsed = 0;
  if (!absl::SimpleAtoi(*value, &parsed) || parsed < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, "='", *value, "' is not a non-negative integer"));
  }
  return parsed;
}

absl::Status CheckBelow(const std::string& what, int value, const std::string& limit_name,
                        int limit) {
  if (value >= limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "=", value, " must be smaller than ", limit_name, "=", limit));
  }
  return absl::OkStatus();
}

absl::StatusOr<LaunchEnvironment> FromOpenMpi(const EnvironmentReader& env) {
  LaunchEnvironment result;
  result.launcher = Launcher::kOpenMpi;
  MEMTRAIN_ASSIGN_OR_RETURN(result.rank, ReadInt(env, "OMPI_COMM_WORLD_RANK"));
  MEMTRAIN_ASSIGN_OR_RETURN(result.world_size, ReadInt(env, "OMPI_COMM_WORLD_SIZE"));
  MEMTRAIN_ASSIGN_OR_RETURN(result.local_rank, ReadInt(env, "OMPI_COMM_WORLD_LOCAL_RANK"));
  MEMTRAIN_ASSIGN_OR_RETURN(result.local_size, ReadInt(env, "OMPI_COMM_WORLD_LOCAL_SIZE"));
  MEMTRAIN_RETURN_IF_ERROR(
      CheckBelow("OMPI_COMM_WORLD_RANK", result.rank, "OMPI_COMM_WORLD_SIZE", result.world_size));
  MEMTRAIN_RETURN_IF_ERROR(CheckBelow("OMPI_COMM_WORLD_LOCAL_RANK", result.local_rank,
                                      "OMPI_COMM_WORLD_LOCAL_SIZE", result.local_size));
  return result;
}

absl::StatusOr<LaunchEnvironment> FromSlurmStep(const EnvironmentReader& env) {
  LaunchEnvironment result;
  result.launcher = Launcher::kSlurm;
  MEMTRAIN_ASSIGN_OR_RETURN(result.rank, ReadInt(env, "SLURM_PROCID"));
  MEMTRAIN_ASSIGN_OR_RETURN(result.world_size, ReadInt(env, "SLURM_NTASKS"));
  MEMTRAIN_ASSIGN_OR_RETURN(result.local_rank, ReadInt(env, "SLURM_LOCALID"));
  MEMTRAIN_RETURN_IF_ERROR(
      CheckBelow("SLURM_PROCID", result.rank, "SLURM_NTASKS", result.world_size));
  std::optional<std::string> tasks_per_node = env("SLURM_STEP_TASKS_PER_NODE");
  if (!tasks_per_node.has_value()) tasks_per_node = env("SLURM_TASKS_PER_NODE");
  if (tasks_per_node.has_value()) {
    MEMTRAIN_ASSIGN_OR_RETURN(const int node, ReadInt(env, "SLURM_NODEID"));
    MEMTRAIN_ASSIGN_OR_RETURN(result.local_size, SlurmTasksOnNode(*tasks_per_node, node));
  } else {
    result.local_size = result.local_rank + 1;
    result.warnings.push_back("SLURM_TASKS_PER_NODE unset; local size is a lower bound");
  }
  MEMTRAIN_RETURN_IF_ERROR(
      CheckBelow("SLURM_LOCALID", result.local_rank, "tasks on this node", result.local_size));
  return result;
}

}  // namespace

std::string LauncherName(Launcher launcher) {
  switch (launcher) {
    case Launcher::kSingleProcess:
      return "single process";
    case Launcher::kOpenMpi:
      return "mpirun (Open MPI)";
    case Launcher::kSlurm:
      return "srun (SLURM)";
  }
  return "unknown";
}

EnvironmentReader SystemEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<int> SlurmTasksOnNode(const std::string& tasks_per_node, int node_index) {
  int node = 0;
  for (absl::string_view group : absl::StrSplit(tasks_per_node, ',')) {
    // "N" or "N(xR)".
    int tasks = 0;
    int repeat = 1;
    std::vector<absl::string_view> parts = absl::StrSplit(group, "(x");
    const bool ok =
        !parts.empty() && absl::SimpleAtoi(parts[0], &tasks) &&
        (parts.size() == 1 || (parts.size() == 2 && absl::ConsumeSuffix(&parts[1], ")") &&
                               absl::SimpleAtoi(parts[1], &repeat)));
    if (!ok || tasks <= 0 || repeat <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("SLURM_TASKS_PER_NODE='", tasks_per_node, "': cannot parse '", group, "'"));
    }
    if (node_index < node + repeat) return tasks;
    node += repeat;
  }
  return absl::InvalidArgumentError(absl::StrCat("SLURM_NODEID=", node_index, " is beyond the ",
                                                 node, " nodes of SLURM_TASKS_PER_NODE='",
                                                 tasks_per_node, "'"));
}

absl::StatusOr<LaunchEnvironment> DiscoverLaunchEnvironment(const EnvironmentReader& env) {
  if (env("OMPI_COMM_WORLD_RANK").has_value()) return FromOpenMpi(env);
  const bool in_step = env("SLURM_STEP_ID").has_value() || env("SLURM_STEPID").has_value();
  if (in_step && env("SLURM_PROCID").has_value()) return FromSlurmStep(env);
  LaunchEnvironment single;
  if (std::optional<std::string> tasks = env("SLURM_NTASKS"); tasks.has_value() && *tasks != "1") {
    single.warnings.push_back(absl::StrCat(
        "inside a SLURM allocation of ", *tasks,
        " tasks but not in a job step: this is one process. Start ranks with `srun --mpi=pmix` "
        "or `mpirun` (cluster/slurm/*.sbatch)"));
  }
  return single;
}

}  // namespace memtrain::launch
