// File: parallel/c10d_communicator.h
//
// `C10dCommunicator`: the Communicator over one of PyTorch's own c10d process
// groups, the C++ distributed stack inside the torch wheel memtrain already
// links: "nccl" (ProcessGroupNCCL, CUDA tensors) or "gloo" (ProcessGroupGloo,
// CPU tensors). memtrain writes no NCCL code of its own: ProcessGroupNCCL
// brings what a first GPU run needs and nobody could test here (its own
// watchdog and async error handling, dedicated NCCL streams synchronized with
// the caller's stream by events, lazy per-device communicators, the flight
// recorder). Gloo runs the same adapter on CPUs, so the code above the
// backend is exercised for real in CI (tests/parallel/c10d_communicator_test).
//
//   MEMTRAIN_ASSIGN_OR_RETURN(auto group, host->SplitMpi(0, host->rank()));   // a private MPI
//   group MEMTRAIN_ASSIGN_OR_RETURN(auto nccl, C10dCommunicator::Create(std::move(group), "nccl",
//                                                                  c10::Device(c10::kCUDA, 0)));
//   MEMTRAIN_RETURN_IF_ERROR(nccl->allreduce(cuda_tensor, ReduceOp::kAvg));
//
// Bootstrap: rank 0 of the MPI group starts a c10d::TCPStore on an ephemeral
// port of its host and MPI broadcasts "host:port"; every rank connects, and
// the backend rendezvouses through the store (torch.distributed's env://
// init, with MPI instead of MASTER_ADDR/MASTER_PORT). split() makes the child
// backend on the same store under its own key prefix, as new_group() does.
//
// Semantics (beyond parallel/communicator.h):
//   - Each collective returns once the backend's work is "waited": for Gloo
//     the result is in the tensor; for NCCL the caller's current CUDA stream
//     is ordered after it (the host does not block), as in PyTorch. Reading
//     the result on the host needs the usual stream synchronization.
//   - kAvg is a sum divided by size() afterwards, on every backend (NCCL's
//     ncclAvg pre-scales by a rounded 1/n in bf16), so results match
//     MpiCommunicator's.
//   - The group's MpiCommunicator stays its host side: allgatherv's row
//     counts, split(), and the collective watchdog (parallel/collective_watchdog.h):
//     every c10d collective is registered there and polled with
//     Work::isCompleted(); one not complete within the timeout gets the
//     watchdog's report (which ranks had not arrived), then Backend::abort()
//     and MPI_Abort, with a last-resort _exit if those hang. The backend's own
//     timeout is set a little longer, as the backstop.
//   - An error reported by the backend (e.g. a peer's connection closed
//     because it died) comes back as kInternal naming the collective, its
//     sequence number and group; the caller ends the job.
#ifndef MEMTRAIN_PARALLEL_C10D_COMMUNICATOR_H_
#define MEMTRAIN_PARALLEL_C10D_COMMUNICATOR_H_

#include <c10/core/Device.h>
#include <c10/util/intrusive_ptr.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

namespace c10d {
class Backend;
class Store;
class Work;
}  // namespace c10d

namespace memtrain::parallel {

/// The c10d backends this build can make, by name: "gloo" always, "nccl" in
/// builds with the GPU code (MEMTRAIN_WITH_CUDA).
std::vector<std::string> C10dBackendNames();

/// "NCCL 2.30.7 (runtime), built against 2.30.7" in GPU builds, "NCCL not
/// built (...)" otherwise.
std::string NcclDescription();

class C10dCommunicator final : public Communicator {
 public:
  /// Collective over `group` (which the new communicator owns and uses as its
  /// host side). `backend` is a name from C10dBackendNames(); `device` is
  /// where its tensors live (CPU for gloo, this rank's GPU for nccl).
  /// kInvalidArgument for an unknown backend or a device it cannot serve;
  /// kUnavailable when the store or the backend cannot start (the message
  /// says which rank and why).
  /// `name` is the group's name in logs and reports (empty: `group`'s).
  static absl::StatusOr<std::unique_ptr<C10dCommunicator>> Create(
      std::unique_ptr<MpiCommunicator> group, const std::string& backend, c10::Device device,
      std::string name = "");
  /// Waits for nothing: the backend's destructor finishes or aborts its work.
  ~C10dCommunicator() override;

  int rank() const override { return group_->rank(); }
  int size() const override { return group_->size(); }
  int local_rank() const override { return group_->local_rank(); }
  int local_size() const override { return group_->local_size(); }
  const std::string& name() const override { return name_; }
  uint64_t sequence_number() const override { return sequence_; }

  absl::Status allreduce(at::Tensor& tensor, ReduceOp op) override;
  absl::Status broadcast(at::Tensor& tensor, int root) override;
  absl::StatusOr<at::Tensor> allgather(const at::Tensor& tensor) override;
  absl::StatusOr<std::vector<at::Tensor>> allgatherv(const at::Tensor& tensor) override;
  absl::Status barrier() override;
  /// The child keeps this communicator's backend kind and device.
  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key) override;
  using Communicator::split;

  /// Where this communicator's tensors live; split() children inherit it.
  c10::Device device() const { return device_; }
  const std::string& backend_name() const { return backend_name_; }

 private:
  C10dCommunicator(std::unique_ptr<MpiCommunicator> group, std::string backend_name,
                   c10::Device device, c10::intrusive_ptr<c10d::Store> store, std::string name);
  // Creates backend_ over store_ (every rank of the group at once).
  absl::Status StartBackend();
  // Calls `issue` (which starts one c10d collective and returns its work)
  // under the thread check, the sequence numbering and the watchdog, then
  // waits for the work. Exceptions from c10d become kInternal.
  absl::Status Run(const std::string& collective, const std::string& tensors,
                   const std::function<c10::intrusive_ptr<c10d::Work>()>& issue);
  absl::Status Validate(const std::string& collective, const at::Tensor& tensor) const;

  std::unique_ptr<MpiCommunicator> group_;  // [not null] same ranks, host side
  const std::string backend_name_;
  const c10::Device device_;
  c10::intrusive_ptr<c10d::Store> store_;  // the job's store, under this group's prefix
  c10::intrusive_ptr<c10d::Backend> backend_;
  const std::string name_;
  uint64_t sequence_ = 0;
  std::atomic<bool> in_use_{false};
};

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_C10D_COMMUNICATOR_H_
