// ProcessGroupNCCL for C10dCommunicator (GPU builds only; NOT RUN on the
// development machines or in CI, which have no GPU: scripts/gpu-check runs it).
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "parallel/internal/c10d_backends.h"

namespace memtrain::parallel::internal {

c10::intrusive_ptr<c10d::Backend> MakeNcclBackend(const C10dBackendSpec& spec) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = spec.timeout;
  options->group_name = spec.group_name;
  auto backend =
      c10::make_intrusive<c10d::ProcessGroupNCCL>(spec.store, spec.rank, spec.size, options);
  // Binding the device makes ProcessGroupNCCL create its NCCL communicator
  // now, on this device, instead of inside the first collective.
  backend->setBoundDeviceId(spec.device);
  backend->eagerConnectSingleDevice(spec.device);
  return backend;
}

}  // namespace memtrain::parallel::internal
