// File: launch/environment.h
//
// Where a process sits in the job, read from the launcher's environment:
// Open MPI's mpirun (OMPI_COMM_WORLD_*), SLURM's srun (SLURM_*), or nothing
// (a plain single process). Binaries log it, compare it with what MPI reports
// (MPI is authoritative once initialized; DISTRIBUTED.md §6.1), and use it for
// log prefixes before MPI is up.
//
//   auto env = DiscoverLaunchEnvironment(SystemEnvironment());
//   if (!env.ok()) { LOG(ERROR) << env.status(); return 2; }
//
// Precedence: mpirun's variables win, because under `mpirun` inside an sbatch
// job the SLURM_* variables describe mpirun's daemon step, not the rank.
// SLURM_* count only inside a job step (SLURM_STEP_ID set, i.e. under srun):
// an sbatch script's own SLURM_NTASKS describes the allocation, not this
// process, and a process started there without srun is a single process.
#ifndef MEMTRAIN_LAUNCH_ENVIRONMENT_H_
#define MEMTRAIN_LAUNCH_ENVIRONMENT_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace memtrain::launch {

enum class Launcher { kSingleProcess, kOpenMpi, kSlurm };

/// "single process", "mpirun (Open MPI)" or "srun (SLURM)".
std::string LauncherName(Launcher launcher);

struct LaunchEnvironment {
  Launcher launcher = Launcher::kSingleProcess;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_size = 1;
  /// Things worth a warning (e.g. inside a SLURM allocation but not under srun).
  std::vector<std::string> warnings;
};

/// Reads one environment variable; nullopt when unset.
using EnvironmentReader = std::function<std::optional<std::string>(const std::string&)>;

/// The process environment (getenv).
EnvironmentReader SystemEnvironment();

/// kInvalidArgument naming the variable and its value when a launcher's
/// variables are malformed or inconsistent (rank >= size, ...).
absl::StatusOr<LaunchEnvironment> DiscoverLaunchEnvironment(const EnvironmentReader& env);

/// Tasks on node `node_index` from SLURM's compressed SLURM_TASKS_PER_NODE
/// ("2(x3),1" = 2,2,2,1).
absl::StatusOr<int> SlurmTasksOnNode(const std::string& tasks_per_node, int node_index);

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_ENVIRONMENT_H_
