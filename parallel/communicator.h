// File: parallel/communicator.h
//
// `Communicator`: collective communication among a fixed group of processes
// (ranks). Every cross-process byte in memtrain (gradient all-reduce, the
// sharded kNN memory, checkpoint agreement, metrics) goes through it.
//
// Implementations (see their headers):
//   - MpiCommunicator  (parallel/mpi_communicator.h): CPU tensors, over MPI.
//   - NcclCommunicator (parallel/nccl_communicator.h): CUDA tensors, over NCCL,
//     bootstrapped by MPI. Built when the CUDA toolkit is found.
//
//   std::unique_ptr<Communicator> world = ...;           // from MpiRuntime
//   at::Tensor grad = ...;
//   MEMTRAIN_RETURN_IF_ERROR(world->allreduce(grad, ReduceOp::kAvg));
//   MEMTRAIN_ASSIGN_OR_RETURN(auto pair, world->split(world->rank() / 2));
//
// Contract (the same for every implementation):
//   - Every rank of the group calls the same collectives in the same order with
//     tensors of the same dtype and, except for `allgatherv` dim 0, the same
//     shape. A mismatch is undefined behaviour in MPI and NCCL (a hang or wrong
//     numbers); with `CommunicatorOptions::verify_collectives` every call first
//     checks this across ranks and fails with the ranks that differ.
//   - One thread at a time calls into a given communicator; a second thread
//     entering concurrently is a bug and fails with an internal error.
//   - Tensors must be contiguous, on the implementation's device, with a
//     supported dtype (float32, float64, bfloat16, float16, int32, int64, uint8).
//   - A collective that does not complete within the timeout of the phase it
//     started in (`CommunicatorOptions::timeouts`, parallel/collective_phase.h)
//     aborts the whole job (exit code kCollectiveTimeoutExitCode) after logging the
//     collective, its group, its sequence number, the tensor sizes and the
//     ranks that had not arrived. There is no silent hang; see
//     parallel/collective_watchdog.h.
//   - Errors for bad arguments come back as absl::Status (kInvalidArgument,
//     kFailedPrecondition); the communicator remains usable after them.
#ifndef MEMTRAIN_PARALLEL_COMMUNICATOR_H_
#define MEMTRAIN_PARALLEL_COMMUNICATOR_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parallel/collective_phase.h"

namespace memtrain::parallel {

enum class ReduceOp {
  kSum,
  /// Sum divided by the group size. Integer tensors divide with truncation
  /// toward zero, like C++ integer division.
  kAvg,
  kMax,
  kMin,
};

/// "sum", "avg", "max" or "min".
absl::string_view ReduceOpName(ReduceOp op);

/// Options every implementation accepts.
struct CommunicatorOptions {
  /// A collective not finished after its phase's timeout aborts the job.
  /// Binaries expose them as --startup_timeout, --step_timeout,
  /// --checkpoint_timeout and --eval_timeout (seconds; launch/rank_context.h).
  PhaseTimeouts timeouts;
  /// Before each collective, all-gather (op, dtype, shape) and fail with the
  /// mismatching ranks instead of hanging. Costs one small collective per call;
  /// meant for debugging and tests.
  bool verify_collectives = false;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  /// This process's rank in the group, 0 <= rank() < size().
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Rank among the group's processes on this host, and how many there are.
  /// The device of a rank is chosen by local_rank() (launch/device.h).
  virtual int local_rank() const = 0;
  virtual int local_size() const = 0;
  /// The group's name in logs: "world", or "world/split(color=1)" and so on.
  virtual const std::string& name() const = 0;
  /// How many collectives this communicator has started; the number printed
  /// in timeout reports is this count at the time of the call.
  virtual uint64_t sequence_number() const = 0;

  /// In place: every rank ends with op over all ranks' `tensor`.
  virtual absl::Status allreduce(at::Tensor& tensor, ReduceOp op) = 0;
  /// In place: every rank ends with `root`'s tensor.
  virtual absl::Status broadcast(at::Tensor& tensor, int root) = 0;
  /// Equal shapes on every rank; returns [size(), *tensor.sizes()] with rank
  /// r's tensor at index r.
  virtual absl::StatusOr<at::Tensor> allgather(const at::Tensor& tensor) = 0;
  /// Shapes may differ in dim 0 only (0 rows allowed); returns one tensor per
  /// rank, in rank order.
  virtual absl::StatusOr<std::vector<at::Tensor>> allgatherv(const at::Tensor& tensor) = 0;
  /// Returns once every rank of the group has called barrier().
  virtual absl::Status barrier() = 0;
  /// Collective: ranks passing the same `color` (>= 0) form a new group, ordered
  /// by (key, rank). Each new group gets its own channel (and, for NCCL, its
  /// own NCCL communicator); this one stays valid.
  virtual absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key) = 0;
  absl::StatusOr<std::unique_ptr<Communicator>> split(int color) { return split(color, rank()); }
};

/// Supported dtypes, as listed in the contract above.
bool IsSupportedDtype(c10::ScalarType dtype);

/// Checks the parts of the contract that need no communication: defined,
/// contiguous, on `device_type`, supported dtype. The error names `collective`
/// and `group`.
absl::Status ValidateCollectiveTensor(absl::string_view collective, absl::string_view group,
                                      const at::Tensor& tensor, c10::DeviceType device_type);

/// The second half of ReduceOp::kAvg in every implementation, after a sum:
/// divides by the group size (integers truncate toward zero).
void DivideSumForAverage(at::Tensor& tensor, int group_size);

/// The error a second thread gets when it enters `collective` on `group`
/// while another thread is inside a collective there (the contract's
/// one-thread-at-a-time rule).
absl::Status ConcurrentUseError(absl::string_view collective, absl::string_view group);

/// Collective: `mine` on this rank, and whether every rank of `group` is ok.
/// This rank's error names the rank and `what`; a rank that is ok while
/// another failed gets that failure's code (the largest of several) and a
/// message saying so. So all ranks take the same branch
/// after a step that may fail on one of them (e.g. writing a file).
absl::Status AllRanksOk(Communicator& group, const absl::Status& mine, const std::string& what);

/// "float32", "bfloat16", "int64", ...
std::string DtypeName(c10::ScalarType dtype);

/// "float32[4, 1024]": how tensors appear in logs and timeout reports.
std::string DescribeTensor(const at::Tensor& tensor);

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_COMMUNICATOR_H_
