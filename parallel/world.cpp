#include "parallel/world.h"

#include <ATen/core/Tensor.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "parallel/c10d_communicator.h"

namespace memtrain::parallel {

HybridCommunicator::HybridCommunicator(std::unique_ptr<MpiCommunicator> host,
                                       std::unique_ptr<Communicator> device_channel,
                                       c10::DeviceType device_type)
    : host_(std::move(host)),
      device_channel_(std::move(device_channel)),
      device_type_(device_type) {}

uint64_t HybridCommunicator::sequence_number() const {
  return host_->sequence_number() + device_channel_->sequence_number();
}

Communicator& HybridCommunicator::ChannelFor(const c10::Device& device) {
  if (device.type() == device_type_) return *device_channel_;
  return *host_;
}

absl::Status HybridCommunicator::allreduce(at::Tensor& tensor, ReduceOp op) {
  if (!tensor.defined()) return host_->allreduce(tensor, op);  // reports the error
  return ChannelFor(tensor.device()).allreduce(tensor, op);
}

absl::Status HybridCommunicator::broadcast(at::Tensor& tensor, int root) {
  if (!tensor.defined()) return host_->broadcast(tensor, root);
  return ChannelFor(tensor.device()).broadcast(tensor, root);
}

absl::StatusOr<at::Tensor> HybridCommunicator::allgather(const at::Tensor& tensor) {
  if (!tensor.defined()) return host_->allgather(tensor);
  return ChannelFor(tensor.device()).allgather(tensor);
}

absl::StatusOr<std::vector<at::Tensor>> HybridCommunicator::allgatherv(const at::Tensor& tensor) {
  if (!tensor.defined()) return host_->allgatherv(tensor);
  return ChannelFor(tensor.device()).allgatherv(tensor);
}

absl::Status HybridCommunicator::barrier() { return host_->barrier(); }

absl::StatusOr<std::unique_ptr<Communicator>> HybridCommunicator::split(int color, int key) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> host, host_->SplitMpi(color, key));
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> device,
                            device_channel_->split(color, key));
  return std::unique_ptr<Communicator>(
      new HybridCommunicator(std::move(host), std::move(device), device_type_));
}

std::vector<std::string> CollectivesNames() {
  std::vector<std::string> names{"auto", "mpi"};
  for (const std::string& backend : C10dBackendNames()) names.push_back(backend);
  return names;
}

std::string ResolvedCollectives(const WorldOptions& options) {
  if (options.collectives != "auto") return options.collectives;
  return options.device.is_cuda() ? "nccl" : "mpi";
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateWorld(MpiRuntime& runtime,
                                                          const WorldOptions& options) {
  const std::string collectives = ResolvedCollectives(options);
  const std::vector<std::string> known = CollectivesNames();
  if (std::find(known.begin(), known.end(), collectives) == known.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--collectives=", options.collectives,
                     " is not one this build has; known: ", absl::StrJoin(known, ", ")));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> host,
                            runtime.CreateWorld(options.communicator));
  if (collectives == "mpi") {
    if (!options.device.is_cpu()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--collectives=mpi carries CPU tensors only, but the model is on ",
                       options.device.str(), "; use --collectives=auto or nccl"));
    }
    return std::unique_ptr<Communicator>(std::move(host));
  }
  // The device channel gets its own MPI group (same ranks) for its host side.
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> device_group,
                            host->SplitMpi(0, host->rank()));
  MEMTRAIN_ASSIGN_OR_RETURN(
      std::unique_ptr<C10dCommunicator> device,
      C10dCommunicator::Create(std::move(device_group), collectives, options.device,
                               absl::StrCat(host->name(), "/", collectives)));
  return std::unique_ptr<Communicator>(
      new HybridCommunicator(std::move(host), std::move(device), options.device.type()));
}

}  // namespace memtrain::parallel
