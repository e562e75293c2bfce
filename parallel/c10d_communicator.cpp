#include "parallel/c10d_communicator.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/registry.h"
#include "common/status_macros.h"
#include "parallel/internal/c10d_backends.h"

#ifdef MEMTRAIN_WITH_CUDA
#include <nccl.h>
#endif

namespace memtrain::parallel {
namespace {

using BackendFactory = c10::intrusive_ptr<c10d::Backend> (*)(const internal::C10dBackendSpec&);

struct BackendKind {
  BackendFactory make;
  c10::DeviceType device_type;  // the only device its tensors may be on
};

const NamedRegistry<BackendKind>& Backends() {
  static const auto* backends = new NamedRegistry<BackendKind>(
      "c10d backend", {
                          {"gloo", {&internal::MakeGlooBackend, c10::kCPU}},
#ifdef MEMTRAIN_WITH_CUDA
                          {"nccl", {&internal::MakeNcclBackend, c10::kCUDA}},
#endif
                      });
  return *backends;
}

// The backend's own timeout: longer than the watchdog's, so that the
// watchdog's report (which ranks had not arrived) comes first and the
// backend's timeout is the backstop.
constexpr absl::Duration kBackendTimeoutMargin = absl::Seconds(30);

std::chrono::milliseconds ToMilliseconds(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// The host other ranks reach rank 0's store at: MASTER_ADDR when the launcher
// sets it (torch.distributed's convention), else rank 0's host name.
std::string StoreHost() {
  const char* master = std::getenv("MASTER_ADDR");
  if (master != nullptr && *master != '\0') return master;
  std::array<char, 256> name{};
  if (gethostname(name.data(), name.size() - 1) != 0) return "127.0.0.1";
  return name.data();
}

// Collective over `group`: rank 0 starts the job's TCPStore and every rank
// connects to it. The address travels as a fixed-size byte string over MPI.
absl::StatusOr<c10::intrusive_ptr<c10d::Store>> ConnectStore(MpiCommunicator& group,
                                                             absl::Duration timeout) {
  c10d::TCPStoreOptions options;
  options.timeout = ToMilliseconds(timeout);
  options.numWorkers = static_cast<size_t>(group.size());
  options.waitWorkers = false;
  absl::Status started = absl::OkStatus();
  c10::intrusive_ptr<c10d::Store> store;
  constexpr int64_t kAddressBytes = 264;
  at::Tensor address = at::zeros({kAddressBytes}, at::kByte);
  if (group.rank() == 0) {
    options.isServer = true;
    options.port = 0;  // an ephemeral port: jobs on one host never collide
    try {
      const std::string host = StoreHost();
      auto server = c10::make_intrusive<c10d::TCPStore>(host, options);
      const std::string where = absl::StrCat(host, ":", server->getPort());
      std::copy(where.begin(), where.end(), address.data_ptr<uint8_t>());
      store = server;
    } catch (const std::exception& e) {
      started = absl::UnavailableError(absl::StrCat("starting the c10d TCPStore: ", e.what()));
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(AllRanksOk(group, started, "starting the c10d store"));
  MEMTRAIN_RETURN_IF_ERROR(group.broadcast(address, 0));
  const std::string where(reinterpret_cast<const char*>(address.data_ptr<uint8_t>()));
  absl::Status connected = absl::OkStatus();
  if (group.rank() != 0) {
    const std::pair<std::string, std::string> host_port =
        absl::StrSplit(where, absl::MaxSplits(':', 1));
    uint32_t port = 0;
    if (!absl::SimpleAtoi(host_port.second, &port)) {
      connected = absl::InternalError(absl::StrCat("bad c10d store address '", where, "'"));
    } else {
      options.isServer = false;
      options.port = static_cast<uint16_t>(port);
      try {
        store = c10::make_intrusive<c10d::TCPStore>(host_port.first, options);
      } catch (const std::exception& e) {
        connected =
            absl::UnavailableError(absl::StrCat("connecting to the c10d store at ", where,
                                                " (set MASTER_ADDR to an address of rank 0's host "
                                                "that every rank can reach): ",
                                                e.what()));
      }
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(AllRanksOk(group, connected, "connecting to the c10d store"));
  return store;
}

}  // namespace

std::vector<std::string> C10dBackendNames() { return Backends().names(); }

std::string NcclDescription() {
#ifdef MEMTRAIN_WITH_CUDA
  int version = 0;
  ncclGetVersion(&version);
  auto format = [](int v) { return absl::StrCat(v / 10000, ".", (v / 100) % 100, ".", v % 100); };
  return absl::StrCat("NCCL ", format(version), " (runtime), built against ",
                      format(NCCL_VERSION_CODE));
#else
  return "NCCL not built (configured without the CUDA toolkit or with MEMTRAIN_WITH_CUDA=OFF)";
#endif
}

C10dCommunicator::C10dCommunicator(std::unique_ptr<MpiCommunicator> group, std::string backend_name,
                                   c10::Device device, c10::intrusive_ptr<c10d::Store> store,
                                   std::string name)
    : group_(std::move(group)),
      backend_name_(std::move(backend_name)),
      device_(device),
      store_(std::move(store)),
      name_(std::move(name)) {}

C10dCommunicator::~C10dCommunicator() = default;

absl::StatusOr<std::unique_ptr<C10dCommunicator>> C10dCommunicator::Create(
    std::unique_ptr<MpiCommunicator> group, const std::string& backend, c10::Device device,
    std::string name) {
  MEMTRAIN_ASSIGN_OR_RETURN(const BackendKind* kind, Backends().Find(backend));
  if (device.type() != kind->device_type || (device.is_cuda() && !device.has_index())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the c10d backend '", backend, "' needs ", c10::DeviceTypeName(kind->device_type, true),
        " tensors with a device index; got device ", device.str()));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(
      c10::intrusive_ptr<c10d::Store> store,
      ConnectStore(*group, group->options().timeouts.For(CurrentCollectivePhase())));
  if (name.empty()) name = group->name();
  std::unique_ptr<C10dCommunicator> communicator(
      new C10dCommunicator(std::move(group), backend, device,
                           c10::make_intrusive<c10d::PrefixStore>(name, store), name));
  MEMTRAIN_RETURN_IF_ERROR(communicator->StartBackend());
  return communicator;
}

absl::Status C10dCommunicator::StartBackend() {
  internal::C10dBackendSpec spec;
  spec.store = store_;
  spec.rank = rank();
  spec.size = size();
  // Fixed for the backend's life: the longest phase's, so that the watchdog
  // judges each collective by its own phase's timeout.
  spec.timeout = ToMilliseconds(group_->options().timeouts.Longest() + kBackendTimeoutMargin);
  spec.device = device_;
  spec.group_name = name_;
  const BackendKind* kind = *Backends().Find(backend_name_);
  // Rendezvous with every peer under the watchdog: a rank that never comes
  // ends the job with a report instead of a hang.
  CollectiveWatchdog& watchdog = *group_->watchdog();
  const CollectivePhase phase = CurrentCollectivePhase();
  const CollectiveWatchdog::Ticket ticket =
      watchdog.Start(CollectiveCall{name_, group_->world_ranks(), ++sequence_,
                                    absl::StrCat("connect(", backend_name_, ")"), "-", phase},
                     group_->options().timeouts.For(phase));
  absl::Status started = absl::OkStatus();
  try {
    c10::DeviceGuard on_device(device_);
    backend_ = kind->make(spec);
  } catch (const std::exception& e) {
    started =
        absl::UnavailableError(absl::StrCat("starting c10d backend '", backend_name_, "' on ",
                                            device_.str(), " for group '", name_, "': ", e.what()));
  }
  watchdog.Finish(ticket);
  return AllRanksOk(*group_, started,
                    absl::StrCat("starting the ", backend_name_, " process group"));
}

absl::Status C10dCommunicator::Validate(const std::string& collective,
                                        const at::Tensor& tensor) const {
  MEMTRAIN_RETURN_IF_ERROR(ValidateCollectiveTensor(collective, name_, tensor, device_.type()));
  if (tensor.device() != device_) {
    return absl::InvalidArgumentError(absl::StrCat(collective, " on group '", name_,
                                                   "': tensor is on ", tensor.device().str(),
                                                   " but this group's device is ", device_.str()));
  }
  return absl::OkStatus();
}

absl::Status C10dCommunicator::Run(const std::string& collective, const std::string& tensors,
                                   const std::function<c10::intrusive_ptr<c10d::Work>()>& issue) {
  if (in_use_.exchange(true)) return ConcurrentUseError(collective, name_);
  const uint64_t sequence = ++sequence_;
  absl::Status status = absl::OkStatus();
  try {
    c10::DeviceGuard on_device(device_);
    c10::intrusive_ptr<c10d::Work> work = issue();
    // The watchdog thread polls the work; it queries CUDA events, so it runs
    // on this group's device (never creating a context on GPU 0).
    const c10::Device device = device_;
    c10::intrusive_ptr<c10d::Backend> backend = backend_;
    const CollectivePhase phase = CurrentCollectivePhase();
    group_->watchdog()->Start(
        CollectiveCall{name_, group_->world_ranks(), sequence, collective, tensors, phase},
        group_->options().timeouts.For(phase),
        [work, device] {
          c10::DeviceGuard on_device(device);
          return work->isCompleted();
        },
        [backend] { backend->abort(); });
    work->wait();
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat(collective, " #", sequence, " on group '", name_,
                                              "' (", tensors, ") failed in c10d ", backend_name_,
                                              ": ", e.what()));
  }
  in_use_.store(false);
  return status;
}

absl::Status C10dCommunicator::allreduce(at::Tensor& tensor, ReduceOp op) {
  const std::string collective = absl::StrCat("allreduce(", ReduceOpName(op), ")");
  MEMTRAIN_RETURN_IF_ERROR(Validate(collective, tensor));
  c10d::AllreduceOptions options;
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:  // summed here, divided below (as MpiCommunicator does)
      options.reduceOp = c10d::ReduceOp::SUM;
      break;
    case ReduceOp::kMax:
      options.reduceOp = c10d::ReduceOp::MAX;
      break;
    case ReduceOp::kMin:
      options.reduceOp = c10d::ReduceOp::MIN;
      break;
  }
  std::vector<at::Tensor> tensors{tensor};
  MEMTRAIN_RETURN_IF_ERROR(Run(collective, DescribeTensor(tensor),
                               [&] { return backend_->allreduce(tensors, options); }));
  if (op == ReduceOp::kAvg) DivideSumForAverage(tensor, size());
  return absl::OkStatus();
}

absl::Status C10dCommunicator::broadcast(at::Tensor& tensor, int root) {
  const std::string collective = absl::StrCat("broadcast(root=", root, ")");
  MEMTRAIN_RETURN_IF_ERROR(Validate(collective, tensor));
  if (root < 0 || root >= size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(collective, " on group '", name_, "': root must be in [0, ", size(), ")"));
  }
  c10d::BroadcastOptions options;
  options.rootRank = root;
  std::vector<at::Tensor> tensors{tensor};
  return Run(collective, DescribeTensor(tensor),
             [&] { return backend_->broadcast(tensors, options); });
}

absl::StatusOr<at::Tensor> C10dCommunicator::allgather(const at::Tensor& tensor) {
  const std::string collective = "allgather";
  MEMTRAIN_RETURN_IF_ERROR(Validate(collective, tensor));
  std::vector<int64_t> shape{size()};
  shape.insert(shape.end(), tensor.sizes().begin(), tensor.sizes().end());
  at::Tensor gathered = at::empty(shape, tensor.options());
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < size(); ++r) outputs[0].push_back(gathered[r]);
  std::vector<at::Tensor> inputs{tensor};
  MEMTRAIN_RETURN_IF_ERROR(Run(collective, DescribeTensor(tensor),
                               [&] { return backend_->allgather(outputs, inputs); }));
  return gathered;
}

absl::StatusOr<std::vector<at::Tensor>> C10dCommunicator::allgatherv(const at::Tensor& tensor) {
  const std::string collective = "allgatherv";
  MEMTRAIN_RETURN_IF_ERROR(Validate(collective, tensor));
  if (tensor.dim() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        collective, " on group '", name_, "': needs at least one dimension (the one that varies)"));
  }
  // Row counts over the host side (no device-to-host copy), then one
  // allgather of the rows padded to the longest.
  MEMTRAIN_ASSIGN_OR_RETURN(at::Tensor rows,
                            group_->allgather(at::full({1}, tensor.size(0), at::kLong)));
  const int64_t longest = rows.max().item<int64_t>();
  at::Tensor padded = tensor;
  if (tensor.size(0) != longest) {
    std::vector<int64_t> shape(tensor.sizes().begin(), tensor.sizes().end());
    shape[0] = longest;
    padded = at::zeros(shape, tensor.options());
    padded.narrow(0, 0, tensor.size(0)).copy_(tensor);
  }
  MEMTRAIN_ASSIGN_OR_RETURN(at::Tensor gathered, allgather(padded));
  std::vector<at::Tensor> pieces;
  for (int r = 0; r < size(); ++r)
    pieces.push_back(gathered[r].narrow(0, 0, rows[r][0].item<int64_t>()));
  return pieces;
}

absl::Status C10dCommunicator::barrier() {
  // A host-side rendezvous: MPI's barrier on the same ranks (NCCL's barrier
  // is an all-reduce that needs a guessed device).
  return group_->barrier();
}

absl::StatusOr<std::unique_ptr<Communicator>> C10dCommunicator::split(int color, int key) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> child_group,
                            group_->SplitMpi(color, key));
  // The child's rendezvous keys live under its own (unique, rank-independent)
  // name in the same store, as torch.distributed.new_group's do.
  const std::string child_name = child_group->name();
  std::unique_ptr<C10dCommunicator> child(
      new C10dCommunicator(std::move(child_group), backend_name_, device_,
                           c10::make_intrusive<c10d::PrefixStore>(child_name, store_), child_name));
  MEMTRAIN_RETURN_IF_ERROR(child->StartBackend());
  return std::unique_ptr<Communicator>(std::move(child));
}

}  // namespace memtrain::parallel
