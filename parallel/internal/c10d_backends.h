// File: parallel/internal/c10d_backends.h
//
// The c10d process groups C10dCommunicator can create, one small factory per
// backend, each in its own translation unit because each needs its own
// headers: c10d_gloo.cpp the vendored Gloo headers (third_party/gloo),
// c10d_nccl.cpp the CUDA and NCCL ones (GPU builds only). Internal to
// parallel/: use parallel/c10d_communicator.h.
#ifndef MEMTRAIN_PARALLEL_INTERNAL_C10D_BACKENDS_H_
#define MEMTRAIN_PARALLEL_INTERNAL_C10D_BACKENDS_H_

#include <c10/core/Device.h>
#include <c10/util/intrusive_ptr.h>

#include <chrono>
#include <string>

namespace c10d {
class Backend;
class Store;
}  // namespace c10d

namespace memtrain::parallel::internal {

struct C10dBackendSpec {
  c10::intrusive_ptr<c10d::Store> store;  // already under the group's prefix
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
  c10::Device device = c10::Device(c10::kCPU);
  std::string group_name;
};

/// ProcessGroupGloo over TCP: the interface named by GLOO_SOCKET_IFNAME when
/// set (as torch.distributed does), else the one this host's name resolves to.
/// Throws what c10d throws.
c10::intrusive_ptr<c10d::Backend> MakeGlooBackend(const C10dBackendSpec& spec);

#ifdef MEMTRAIN_WITH_CUDA
/// ProcessGroupNCCL bound to `spec.device`, its communicator created eagerly
/// (so that a peer that never comes is found here, under the watchdog, not
/// inside the first gradient all-reduce). Throws what c10d throws.
c10::intrusive_ptr<c10d::Backend> MakeNcclBackend(const C10dBackendSpec& spec);
#endif

}  // namespace memtrain::parallel::internal

#endif  // MEMTRAIN_PARALLEL_INTERNAL_C10D_BACKENDS_H_
