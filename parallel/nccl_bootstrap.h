// File: parallel/nccl_bootstrap.h
//
// The host-side logic of NcclCommunicator that needs no GPU, kept apart so
// that it is compiled and tested on every machine:
//   - the NCCL unique-id exchange: rank 0 of a group makes the id and MPI
//     broadcasts its bytes (NCCL's own MPI example, DISTRIBUTED.md §3.1);
//     one id, hence one NCCL communicator, per group (world or split);
//   - the choice of CUDA device for a rank (local rank -> device), refusing
//     layouts where two ranks would share a GPU, which hangs NCCL.
#ifndef MEMTRAIN_PARALLEL_NCCL_BOOTSTRAP_H_
#define MEMTRAIN_PARALLEL_NCCL_BOOTSTRAP_H_

#include <array>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/mpi_communicator.h"

namespace memtrain::parallel {

/// NCCL_UNIQUE_ID_BYTES; checked against nccl.h where NCCL is compiled in.
inline constexpr size_t kNcclUniqueIdBytes = 128;
using NcclUniqueIdBytes = std::array<char, kNcclUniqueIdBytes>;

/// Rank 0 of `group` calls `make_id` (ncclGetUniqueId on GPU builds); every
/// rank returns rank 0's bytes. Collective over `group`; a failure of
/// `make_id` is reported on every rank.
absl::StatusOr<NcclUniqueIdBytes> ExchangeUniqueId(
    MpiCommunicator& group, const std::function<absl::StatusOr<NcclUniqueIdBytes>()>& make_id);

/// The CUDA device of the rank with `local_rank` among `local_size` ranks on
/// its host, given `device_count` visible devices: device `local_rank`, or
/// device 0 when each rank sees exactly one device (the launcher bound ranks
/// to GPUs with CUDA_VISIBLE_DEVICES). kFailedPrecondition otherwise, when
/// there are fewer devices than local ranks.
absl::StatusOr<int> DeviceForLocalRank(int local_rank, int local_size, int device_count);

/// "NCCL 2.30.7 (runtime), built against 2.30.7" when the GPU code is built,
/// "not built (...)" otherwise.
std::string NcclDescription();

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_NCCL_BOOTSTRAP_H_
