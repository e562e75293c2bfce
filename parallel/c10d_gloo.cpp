// ProcessGroupGloo for C10dCommunicator. The only file that includes Gloo's
// headers (third_party/gloo: headers only; the code is the torch wheel's).
#include <cstdlib>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "parallel/internal/c10d_backends.h"

namespace memtrain::parallel::internal {

c10::intrusive_ptr<c10d::Backend> MakeGlooBackend(const C10dBackendSpec& spec) {
  auto options = c10d::ProcessGroupGloo::Options::create(spec.timeout);
  options->group_name = spec.group_name;
  const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
  options->devices.push_back(interface != nullptr && *interface != '\0'
                                 ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
                                 : c10d::ProcessGroupGloo::createDefaultDevice());
  return c10::make_intrusive<c10d::ProcessGroupGloo>(spec.store, spec.rank, spec.size, options);
}

}  // namespace memtrain::parallel::internal
