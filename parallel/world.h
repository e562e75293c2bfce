// File: parallel/world.h
//
// The job's world: the one Communicator every binary hands to the trainer,
// the reducer, evaluation, checkpoints and the sharded kNN memory, whatever
// device the model is on.
//
//   WorldOptions options;
//   options.device = c10::Device(c10::kCUDA, local_rank);   // launch/device.h chooses it
//   MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> world, CreateWorld(*runtime, options));
//   world->allreduce(cuda_gradients, ReduceOp::kAvg);   // over NCCL
//   world->allreduce(cpu_stop_flags, ReduceOp::kMax);   // over MPI
//
// On a GPU, tensors of two kinds cross ranks: the model's (parameters,
// gradients, kNN keys: CUDA tensors) and the host's (rank agreement, stop and
// save flags, loss totals, checkpoint status: small CPU tensors). NCCL takes
// only the first kind, MPI only the second. `HybridCommunicator` routes each
// call by its tensor's device type: tensors on the device channel's device
// type go to the device channel (a C10dCommunicator: NCCL, or Gloo when the
// device is the CPU), every other tensor to the host channel (MPI).
//
// `--collectives` (WorldOptions::collectives) picks the device channel:
//   auto  nccl when the device is a GPU, mpi on the CPU
//   mpi   MPI for everything (CPU devices only): the plain MpiCommunicator
//   gloo  PyTorch's Gloo for the CPU device's tensors (every CPU tensor, then:
//         with a CPU device there is no other kind), MPI for the rest
//   nccl  PyTorch's NCCL for the GPU's tensors, MPI for the CPU ones
// "gloo" exists so that the routing, the c10d adapter and everything above
// it run for real on machines without a GPU (tests/trainer/trainer_gloo_test.sh).
#ifndef MEMTRAIN_PARALLEL_WORLD_H_
#define MEMTRAIN_PARALLEL_WORLD_H_

#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_runtime.h"

namespace memtrain::parallel {

class HybridCommunicator final : public Communicator {
 public:
  /// `device_channel` carries the tensors whose device type is
  /// `device_type`; `host` every other tensor, barrier() and split()'s
  /// agreement. Both span the same ranks in the same order.
  HybridCommunicator(std::unique_ptr<MpiCommunicator> host,
                     std::unique_ptr<Communicator> device_channel, c10::DeviceType device_type);

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  int local_rank() const override { return host_->local_rank(); }
  int local_size() const override { return host_->local_size(); }
  const std::string& name() const override { return host_->name(); }
  /// Collectives started on both channels.
  uint64_t sequence_number() const override;

  absl::Status allreduce(at::Tensor& tensor, ReduceOp op) override;
  absl::Status broadcast(at::Tensor& tensor, int root) override;
  absl::StatusOr<at::Tensor> allgather(const at::Tensor& tensor) override;
  absl::StatusOr<std::vector<at::Tensor>> allgatherv(const at::Tensor& tensor) override;
  /// The host channel's barrier.
  absl::Status barrier() override;
  /// Splits both channels (the child routes the same way).
  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key) override;
  using Communicator::split;

  /// The channel a tensor on `device` goes through.
  Communicator& ChannelFor(const c10::Device& device);
  Communicator& device_channel() { return *device_channel_; }
  Communicator& host_channel() { return *host_; }

 private:
  std::unique_ptr<MpiCommunicator> host_;         // [not null]
  std::unique_ptr<Communicator> device_channel_;  // [not null]
  const c10::DeviceType device_type_;
};

struct WorldOptions {
  CommunicatorOptions communicator;
  /// Where this rank's model lives.
  c10::Device device = c10::Device(c10::kCPU);
  /// auto, mpi, gloo or nccl (see above).
  std::string collectives = "auto";
};

/// The names --collectives accepts in this build ("nccl" only in GPU builds).
std::vector<std::string> CollectivesNames();

/// What options.collectives means for options.device ("auto" resolved).
std::string ResolvedCollectives(const WorldOptions& options);

/// Collective over every process. kInvalidArgument when `collectives` is
/// unknown or cannot carry tensors on `device` (mpi or gloo with a GPU, nccl
/// with the CPU).
absl::StatusOr<std::unique_ptr<Communicator>> CreateWorld(MpiRuntime& runtime,
                                                          const WorldOptions& options);

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_WORLD_H_
