// File: parallel/nccl_communicator.h
//
// `NcclCommunicator`: the Communicator for CUDA tensors, over NCCL. One NCCL
// communicator per group (world or split), bootstrapped by MPI: the group's
// MpiCommunicator broadcasts the ncclUniqueId (parallel/nccl_bootstrap.h) and
// stays the group's host-side channel (sizes for allgatherv, the timeout
// investigation).
//
// NOT RUN ON THE DEVELOPMENT MACHINES OR IN CI: they have the CUDA toolkit but
// no GPU. This file is compiled and linked there whenever the toolkit and a
// CUDA LibTorch are found (MEMTRAIN_WITH_CUDA), its host-side logic is tested
// on the CPU, and its GPU tests (named *_CUDA) skip visibly without a device.
// docs/PARALLEL.md records what has and has not been run on a GPU.
//
// Semantics (beyond parallel/communicator.h):
//   - Collectives are enqueued on LibTorch's current CUDA stream of the
//     communicator's device and return without waiting, like PyTorch's
//     ProcessGroupNCCL: later work on that stream is ordered after them, and
//     the host must synchronize the stream before reading results on the CPU.
//     barrier() and allgatherv() (which needs sizes on the host) do wait.
//   - The watchdog polls a CUDA event recorded after each collective; one that
//     does not complete within the timeout gets ncclCommAbort (which stops
//     the spinning kernels) and then MPI_Abort.
//   - Every rank of a host must use a different GPU; Create() checks it.
#ifndef MEMTRAIN_PARALLEL_NCCL_COMMUNICATOR_H_
#define MEMTRAIN_PARALLEL_NCCL_COMMUNICATOR_H_

#include <nccl.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

namespace memtrain::parallel {

class NcclCommunicator final : public Communicator {
 public:
  /// Collective over `bootstrap`'s group: picks the device for the rank's
  /// local rank, checks that no two ranks of a host share it, exchanges the
  /// unique id and initializes NCCL. Sets the current CUDA device.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(
      std::unique_ptr<MpiCommunicator> bootstrap);
  /// ncclCommDestroy after the pending work finished (ncclCommFinalize).
  ~NcclCommunicator() override;

  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  int local_rank() const override { return bootstrap_->local_rank(); }
  int local_size() const override { return bootstrap_->local_size(); }
  const std::string& name() const override { return name_; }
  uint64_t sequence_number() const override { return sequence_; }

  absl::Status allreduce(at::Tensor& tensor, ReduceOp op) override;
  absl::Status broadcast(at::Tensor& tensor, int root) override;
  absl::StatusOr<at::Tensor> allgather(const at::Tensor& tensor) override;
  absl::StatusOr<std::vector<at::Tensor>> allgatherv(const at::Tensor& tensor) override;
  absl::Status barrier() override;
  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key) override;
  using Communicator::split;

  /// The CUDA device this rank's collectives run on.
  int device() const { return device_; }

 private:
  NcclCommunicator(std::unique_ptr<MpiCommunicator> bootstrap, int device);
  // Enqueues `enqueue` (NCCL calls on `stream`) under the sequence numbering
  // and the watchdog; returns once enqueued. `wait` blocks the host until done.
  absl::Status Enqueue(const std::string& collective, const std::string& tensors,
                       const std::function<ncclResult_t(cudaStream_t)>& enqueue, bool wait);
  absl::Status Validate(const std::string& collective, const at::Tensor& tensor) const;

  std::unique_ptr<MpiCommunicator> bootstrap_;  // [not null] same group, host side
  const std::string name_;
  const int device_;
  ncclComm_t comm_ = nullptr;
  uint64_t sequence_ = 0;
  std::atomic<bool> in_use_{false};
};

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_NCCL_COMMUNICATOR_H_
