// File: launch/device.h
//
// Which device a rank computes on, and with how many CPU threads: as asked by
// --device (auto: the local rank's GPU when CUDA devices are visible, else the
// CPU; cpu; cuda: a GPU or an error), and the CPUs the rank was given, so
// that ranks never oversubscribe the cores of a shared node (TOOLCHAIN.md §2:
// explicit thread counts; LibTorch's default is half the cores).
#ifndef MEMTRAIN_LAUNCH_DEVICE_H_
#define MEMTRAIN_LAUNCH_DEVICE_H_

#include <c10/core/Device.h>

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"

/// --device=auto|cpu|cuda, declared once for every binary that builds a model.
ABSL_DECLARE_FLAG(std::string, device);

namespace memtrain::launch {

struct DeviceChoice {
  c10::Device device = c10::Device(c10::kCPU);
  /// Intra-op threads for this rank (LibTorch and OpenMP).
  int cpu_threads = 1;
  /// "cuda:1 (NVIDIA H100 ...)" or "cpu, 2 threads (2 cores / 1 rank(s) on this host)".
  std::string description;
};

/// What --device accepts: "auto", "cpu", "cuda".
inline constexpr const char* kDeviceRequests[] = {"auto", "cpu", "cuda"};

/// The CUDA device of the rank with `local_rank` among `local_size` ranks on
/// its host, given `device_count` visible devices: device `local_rank`, or
/// device 0 when each rank sees exactly one device (the launcher bound ranks
/// to GPUs with CUDA_VISIBLE_DEVICES). kFailedPrecondition when there are
/// fewer devices than local ranks (two ranks on one GPU hang NCCL).
absl::StatusOr<int> DeviceForLocalRank(int local_rank, int local_size, int device_count);

/// A rank's intra-op threads and why: SLURM_CPUS_PER_TASK (`slurm_cpus_per_task`
/// > 0, srun/sbatch --cpus-per-task) when set; else the CPUs this process may
/// run on (`affinity_cores`, sched_getaffinity) when the launcher bound it to
/// fewer than the host's `host_cores` (mpirun --bind-to, srun --cpu-bind,
/// a cgroup cpuset); else the host's cores divided among its `local_size`
/// ranks (mpirun --bind-to none). Never fewer than 1. (Ranks that share one
/// restricted set without SLURM_CPUS_PER_TASK each take all of it: the
/// launcher did not say how to divide it.)
struct CpuBudget {
  int threads = 1;
  std::string why;  ///< "2 cores / 2 rank(s) on this host", "SLURM_CPUS_PER_TASK=4", ...
};
CpuBudget CpuBudgetOfRank(int host_cores, int affinity_cores, int slurm_cpus_per_task,
                          int local_size);

/// `requested` is one of kDeviceRequests; `cuda_devices` visible devices;
/// `cpu` the rank's CPU budget. kInvalidArgument for an
/// unknown request or "cuda" without a visible GPU; kFailedPrecondition when
/// a GPU is to be used but there are fewer than the ranks on this host.
absl::StatusOr<DeviceChoice> ChooseDevice(const std::string& requested, int local_rank,
                                          int local_size, int cuda_devices, const CpuBudget& cpu);

/// ChooseDevice with the machine's real devices and this process's CPU budget.
absl::StatusOr<DeviceChoice> ChooseDeviceForThisMachine(const std::string& requested,
                                                        int local_rank, int local_size);

/// Applies `choice` to the calling thread and the process: LibTorch's
/// intra-op thread count and, on a GPU, the current CUDA device. Call it
/// before anything touches CUDA, so that no context is made on another GPU.
void ApplyDeviceChoice(const DeviceChoice& choice);

/// Returns once every kernel queued on `device` has run (nothing on the CPU):
/// what a wall-clock measurement of GPU work must call before reading the clock.
void WaitForDevice(const c10::Device& device);

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_DEVICE_H_
