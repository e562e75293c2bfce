#include "parallel/nccl_bootstrap.h"

#include <ATen/ATen.h>

#include <cstring>

#ifdef MEMTRAIN_WITH_CUDA
#include <nccl.h>
#endif

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace memtrain::parallel {

absl::StatusOr<NcclUniqueIdBytes> ExchangeUniqueId(
    MpiCommunicator& group, const std::function<absl::StatusOr<NcclUniqueIdBytes>()>& make_id) {
  // Byte 0 of the message says whether rank 0 succeeded, so a failure there
  // fails every rank instead of leaving them waiting in ncclCommInitRank.
  at::Tensor message = at::zeros({static_cast<int64_t>(kNcclUniqueIdBytes) + 1}, at::kByte);
  absl::Status root_status = absl::OkStatus();
  if (group.rank() == 0) {
    absl::StatusOr<NcclUniqueIdBytes> id = make_id();
    if (id.ok()) {
      message[0] = 1;
      std::memcpy(static_cast<char*>(message.data_ptr()) + 1, id->data(), kNcclUniqueIdBytes);
    } else {
      root_status = id.status();
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(group.broadcast(message, 0));
  if (message[0].item<uint8_t>() != 1) {
    if (!root_status.ok()) return root_status;
    return absl::UnavailableError(absl::StrCat("group '", group.name(),
                                               "': rank 0 could not create the NCCL unique id "
                                               "(see rank 0's log)"));
  }
  NcclUniqueIdBytes id;
  std::memcpy(id.data(), static_cast<const char*>(message.data_ptr()) + 1, kNcclUniqueIdBytes);
  return id;
}

absl::StatusOr<int> DeviceForLocalRank(int local_rank, int local_size, int device_count) {
  if (local_rank < 0 || local_rank >= local_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("local rank ", local_rank, " is outside [0, ", local_size, ")"));
  }
  if (device_count >= local_size) return local_rank;
  // One visible device per rank: the launcher bound each rank to its own GPU
  // through CUDA_VISIBLE_DEVICES (srun --gpus-per-task=1). NcclCommunicator
  // verifies that the ranks' devices really differ.
  if (device_count == 1) return 0;
  {
    return absl::FailedPreconditionError(absl::StrCat(
        local_size, " ranks run on this host but only ", device_count,
        " CUDA device(s) are visible; NCCL needs one device per rank (two ranks on one GPU "
        "hang). Start at most ", device_count,
        " ranks per host (mpirun --map-by ppr:N:node, srun --ntasks-per-node=N) or check "
        "CUDA_VISIBLE_DEVICES."));
  }
}

std::string NcclDescription() {
#ifdef MEMTRAIN_WITH_CUDA
  int version = 0;
  ncclGetVersion(&version);
  auto format = [](int v) {
    return absl::StrCat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
  };
  return absl::StrCat("NCCL ", format(version), " (runtime), built against ", format(NCCL_VERSION_CODE));
#else
  return "NCCL not built (configured without the CUDA toolkit or with MEMTRAIN_WITH_CUDA=OFF)";
#endif
}

}  // namespace memtrain::parallel
