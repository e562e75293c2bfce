#include "launch/device.h"

#include <ATen/Parallel.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <sched.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

ABSL_FLAG(std::string, device, "auto",
          "Where the model runs: auto (this rank's GPU when one is visible, else the CPU), cpu, or "
          "cuda (a GPU, or an error when none is visible).");

namespace memtrain::launch {

absl::StatusOr<int> DeviceForLocalRank(int local_rank, int local_size, int device_count) {
  if (local_rank < 0 || local_rank >= local_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("local rank ", local_rank, " is outside [0, ", local_size, ")"));
  }
  if (device_count >= local_size) return local_rank;
  // One visible device per rank: the launcher bound each rank to its own GPU
  // through CUDA_VISIBLE_DEVICES (srun --gpus-per-task=1).
  if (device_count == 1) return 0;
  return absl::FailedPreconditionError(absl::StrCat(
      local_size, " ranks run on this host but only ", device_count,
      " CUDA device(s) are visible; NCCL needs one device per rank (two ranks on one GPU "
      "hang). Start at most ",
      device_count,
      " ranks per host (mpirun --map-by ppr:N:node, srun --ntasks-per-node=N) or check "
      "CUDA_VISIBLE_DEVICES."));
}

CpuBudget CpuBudgetOfRank(int host_cores, int affinity_cores, int slurm_cpus_per_task,
                          int local_size) {
  CpuBudget budget;
  if (slurm_cpus_per_task > 0) {
    budget.threads = slurm_cpus_per_task;
    budget.why = absl::StrCat("SLURM_CPUS_PER_TASK=", slurm_cpus_per_task);
  } else if (affinity_cores > 0 && affinity_cores < host_cores) {
    budget.threads = affinity_cores;
    budget.why = absl::StrCat("bound to ", affinity_cores, " of ", host_cores, " cores");
  } else {
    const int ranks_here = std::max(local_size, 1);
    budget.threads = std::max(1, host_cores / ranks_here);
    budget.why = absl::StrCat(host_cores, " cores / ", ranks_here, " rank(s) on this host");
  }
  return budget;
}

absl::StatusOr<DeviceChoice> ChooseDevice(const std::string& requested, int local_rank,
                                          int local_size, int cuda_devices, const CpuBudget& cpu) {
  if (std::find(std::begin(kDeviceRequests), std::end(kDeviceRequests), requested) ==
      std::end(kDeviceRequests)) {
    return absl::InvalidArgumentError(absl::StrCat("--device=", requested, " is not one of ",
                                                   absl::StrJoin(kDeviceRequests, ", ")));
  }
  if (requested == "cuda" && cuda_devices == 0) {
    return absl::InvalidArgumentError(
        "--device=cuda, but no CUDA device is visible to this process (check nvidia-smi, "
        "CUDA_VISIBLE_DEVICES, and that this is a CUDA build: memtrain-env prints it)");
  }
  DeviceChoice choice;
  choice.cpu_threads = cpu.threads;
  if (cuda_devices > 0 && requested != "cpu") {
    MEMTRAIN_ASSIGN_OR_RETURN(const int index,
                              DeviceForLocalRank(local_rank, local_size, cuda_devices));
    choice.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
    choice.description = absl::StrCat("cuda:", index, " (", cuda_devices, " visible)");
    return choice;
  }
  choice.description = absl::StrCat("cpu, ", choice.cpu_threads, " thread(s) (", cpu.why, ")");
  return choice;
}

absl::StatusOr<DeviceChoice> ChooseDeviceForThisMachine(const std::string& requested,
                                                        int local_rank, int local_size) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  const int affinity =
      sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
  int slurm_cpus = 0;
  const char* slurm = std::getenv("SLURM_CPUS_PER_TASK");
  if (slurm == nullptr || !absl::SimpleAtoi(slurm, &slurm_cpus)) slurm_cpus = 0;
  // --device=cpu never asks the CUDA runtime anything (no context, no driver
  // start-up cost).
  const int devices = requested != "cpu" && torch::cuda::is_available()
                          ? static_cast<int>(torch::cuda::device_count())
                          : 0;
  return ChooseDevice(requested, local_rank, local_size, devices,
                      CpuBudgetOfRank(cores, affinity, slurm_cpus, local_size));
}

void WaitForDevice(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

void ApplyDeviceChoice(const DeviceChoice& choice) {
  at::set_num_threads(choice.cpu_threads);
  if (choice.device.is_cuda()) c10::impl::getDeviceGuardImpl(c10::kCUDA)->setDevice(choice.device);
}

}  // namespace memtrain::launch
