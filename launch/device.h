// File: launch/device.h
//
// Which device a rank computes on, and with how many CPU threads: as asked by
// --device (auto: the local rank's GPU when CUDA devices are visible, else the
// CPU; cpu; cuda: a GPU or an error), the CPU with the host's cores
// divided among the ranks on it, so that ranks never oversubscribe the cores
// (TOOLCHAIN.md §2: explicit thread counts; LibTorch's default is half the
// cores).
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

/// `requested` is one of kDeviceRequests; `cuda_devices` visible devices,
/// `host_cores` cores shared by `local_size` ranks. kInvalidArgument for an
/// unknown request or "cuda" without a visible GPU; kFailedPrecondition when
/// a GPU is to be used but there are fewer than the ranks on this host.
absl::StatusOr<DeviceChoice> ChooseDevice(const std::string& requested, int local_rank,
                                          int local_size, int cuda_devices, int host_cores);

/// ChooseDevice with the machine's real device and core counts.
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
