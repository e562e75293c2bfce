// File: launch/device.h
//
// Which device a rank computes on, and with how many CPU threads: the local
// rank's GPU when CUDA devices are visible, else the CPU with the host's cores
// divided among the ranks on it, so that ranks never oversubscribe the cores
// (TOOLCHAIN.md §2: explicit thread counts; LibTorch's default is half the
// cores).
#ifndef MEMTRAIN_LAUNCH_DEVICE_H_
#define MEMTRAIN_LAUNCH_DEVICE_H_

#include <c10/core/Device.h>

#include <string>

#include "absl/status/statusor.h"

namespace memtrain::launch {

struct DeviceChoice {
  c10::Device device = c10::Device(c10::kCPU);
  /// Intra-op threads for this rank (LibTorch and OpenMP).
  int cpu_threads = 1;
  /// "cuda:1 (NVIDIA H100 ...)" or "cpu, 2 threads (2 cores / 1 rank(s) on this host)".
  std::string description;
};

/// `cuda_devices` visible devices (0 = CPU), `host_cores` cores shared by
/// `local_size` ranks. Fails (kFailedPrecondition) when GPUs are visible but
/// fewer than the ranks on this host.
absl::StatusOr<DeviceChoice> ChooseDevice(int local_rank, int local_size, int cuda_devices,
                                          int host_cores);

/// ChooseDevice with the machine's real device and core counts.
absl::StatusOr<DeviceChoice> ChooseDeviceForThisMachine(int local_rank, int local_size);

/// Applies `choice`: LibTorch's intra-op thread count, and the current CUDA
/// device on GPU.
void ApplyDeviceChoice(const DeviceChoice& choice);

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_DEVICE_H_
