#include "launch/device.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "parallel/nccl_bootstrap.h"

namespace memtrain::launch {

absl::StatusOr<DeviceChoice> ChooseDevice(int local_rank, int local_size, int cuda_devices,
                                          int host_cores) {
  DeviceChoice choice;
  const int ranks_here = std::max(local_size, 1);
  choice.cpu_threads = std::max(1, host_cores / ranks_here);
  if (cuda_devices > 0) {
    MEMTRAIN_ASSIGN_OR_RETURN(
        const int index, parallel::DeviceForLocalRank(local_rank, local_size, cuda_devices));
    choice.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
    choice.description = absl::StrCat("cuda:", index, " (", cuda_devices, " visible)");
    return choice;
  }
  choice.description = absl::StrCat("cpu, ", choice.cpu_threads, " thread(s) (", host_cores,
                                    " cores / ", ranks_here, " rank(s) on this host)");
  return choice;
}

absl::StatusOr<DeviceChoice> ChooseDeviceForThisMachine(int local_rank, int local_size) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int devices = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  return ChooseDevice(local_rank, local_size, devices, cores);
}

void ApplyDeviceChoice(const DeviceChoice& choice) {
  at::set_num_threads(choice.cpu_threads);
}

}  // namespace memtrain::launch
