// See the header: compiled wherever the CUDA toolkit is, run only on GPUs.
#include "parallel/nccl_communicator.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "parallel/nccl_bootstrap.h"

static_assert(NCCL_UNIQUE_ID_BYTES == memtrain::parallel::kNcclUniqueIdBytes,
              "kNcclUniqueIdBytes must match nccl.h");

namespace memtrain::parallel {
namespace {

absl::StatusOr<ncclDataType_t> NcclType(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat:
      return ncclFloat32;
    case c10::kDouble:
      return ncclFloat64;
    case c10::kBFloat16:
      return ncclBfloat16;
    case c10::kHalf:
      return ncclFloat16;
    case c10::kInt:
      return ncclInt32;
    case c10::kLong:
      return ncclInt64;
    case c10::kByte:
      return ncclUint8;
    default:
      return absl::InvalidArgumentError(absl::StrCat("no NCCL type for ", DtypeName(dtype)));
  }
}

ncclRedOp_t NcclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

absl::Status NcclStatus(ncclResult_t result, const std::string& what) {
  if (result == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": NCCL error ", ncclGetErrorString(result), ": ",
                                          ncclGetLastError(nullptr)));
}

absl::Status CudaStatus(cudaError_t error, const std::string& what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": CUDA error ", cudaGetErrorString(error)));
}

using EventPtr = std::shared_ptr<CUevent_st>;

absl::StatusOr<EventPtr> RecordEvent(cudaStream_t stream) {
  cudaEvent_t event = nullptr;
  MEMTRAIN_RETURN_IF_ERROR(
      CudaStatus(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate"));
  EventPtr owned(event, [](cudaEvent_t e) { cudaEventDestroy(e); });
  MEMTRAIN_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(event, stream), "cudaEventRecord"));
  return owned;
}

}  // namespace

NcclCommunicator::NcclCommunicator(std::unique_ptr<MpiCommunicator> bootstrap, int device)
    : bootstrap_(std::move(bootstrap)), name_(bootstrap_->name() + "[nccl]"), device_(device) {}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    std::unique_ptr<MpiCommunicator> bootstrap) {
  TORCH_INTERNAL_ASSERT(bootstrap != nullptr);
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess) device_count = 0;
  MEMTRAIN_ASSIGN_OR_RETURN(
      const int device,
      DeviceForLocalRank(bootstrap->local_rank(), bootstrap->local_size(), device_count));
  MEMTRAIN_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "cudaSetDevice"));

  // No two ranks of a host on one GPU: all-gather (host, device UUID).
  cudaDeviceProp properties;
  MEMTRAIN_RETURN_IF_ERROR(
      CudaStatus(cudaGetDeviceProperties(&properties, device), "cudaGetDeviceProperties"));
  char host[64] = {0};
  gethostname(host, sizeof(host) - 1);
  at::Tensor record = at::zeros({64 + 16}, at::kByte);
  std::memcpy(record.data_ptr(), host, sizeof(host));
  std::memcpy(static_cast<char*>(record.data_ptr()) + 64, properties.uuid.bytes, 16);
  MEMTRAIN_ASSIGN_OR_RETURN(at::Tensor records, bootstrap->allgather(record));
  for (int a = 0; a < bootstrap->size(); ++a) {
    for (int b = a + 1; b < bootstrap->size(); ++b) {
      if (at::equal(records[a], records[b])) {
        return absl::FailedPreconditionError(absl::StrCat(
            "group '", bootstrap->name(), "': ranks ", a, " and ", b,
            " would use the same GPU on host ", static_cast<const char*>(records[a].data_ptr()),
            "; NCCL hangs when a device appears twice. Give each rank its own GPU."));
      }
    }
  }

  MEMTRAIN_ASSIGN_OR_RETURN(
      NcclUniqueIdBytes id_bytes,
      ExchangeUniqueId(*bootstrap, []() -> absl::StatusOr<NcclUniqueIdBytes> {
        ncclUniqueId id;
        MEMTRAIN_RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId"));
        NcclUniqueIdBytes bytes;
        std::memcpy(bytes.data(), id.internal, kNcclUniqueIdBytes);
        return bytes;
      }));
  ncclUniqueId id;
  std::memcpy(id.internal, id_bytes.data(), kNcclUniqueIdBytes);

  std::unique_ptr<NcclCommunicator> communicator(new NcclCommunicator(std::move(bootstrap), device));
  MpiCommunicator& group = *communicator->bootstrap_;
  // ncclCommInitRank blocks until every rank joined; the watchdog covers it.
  ncclResult_t init_result = ncclSuccess;
  MEMTRAIN_RETURN_IF_ERROR(group.RunCollective("nccl_init", "-", [&] {
    init_result = ncclCommInitRank(&communicator->comm_, group.size(), id, group.rank());
    return MPI_SUCCESS;
  }));
  MEMTRAIN_RETURN_IF_ERROR(NcclStatus(init_result, absl::StrCat("ncclCommInitRank on group '",
                                                                group.name(), "'")));
  LOG(INFO) << "[parallel] rank " << group.rank() << ": NCCL communicator for group '"
            << group.name() << "' on cuda:" << device;
  return communicator;
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ == nullptr) return;
  if (ncclCommFinalize(comm_) != ncclSuccess) {
    ncclCommAbort(comm_);
    return;
  }
  ncclCommDestroy(comm_);
}

absl::Status NcclCommunicator::Validate(const std::string& collective,
                                        const at::Tensor& tensor) const {
  MEMTRAIN_RETURN_IF_ERROR(ValidateCollectiveTensor(collective, name_, tensor, c10::kCUDA));
  if (tensor.device().index() != device_) {
    return absl::InvalidArgumentError(absl::StrCat(collective, " on group '", name_,
                                                   "': tensor is on ", tensor.device().str(),
                                                   " but this rank's communicator uses cuda:",
                                                   device_));
  }
  return absl::OkStatus();
}

absl::Status NcclCommunicator::Enqueue(const std::string& collective, const std::string& tensors,
                                       const std::function<ncclResult_t(cudaStream_t)>& enqueue,
                                       bool wait) {
  if (in_use_.exchange(true)) {
    return absl::InternalError(absl::StrCat(collective, " on group '", name_,
                                            "': another thread is inside a collective on this "
                                            "communicator; use one thread at a time"));
  }
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device_).stream();
  ++sequence_;
  const std::string where = absl::StrCat(collective, " #", sequence_, " on group '", name_, "'");
  absl::Status status = NcclStatus(enqueue(stream), where);
  absl::StatusOr<EventPtr> done = status.ok() ? RecordEvent(stream) : absl::StatusOr<EventPtr>(status);
  in_use_.store(false);
  MEMTRAIN_RETURN_IF_ERROR(done.status());
  EventPtr event = *done;
  ncclComm_t comm = comm_;
  // The watchdog thread polls the event; on timeout it aborts NCCL first so
  // that the spinning kernels stop, then the job.
  bootstrap_->watchdog()->Start(
      CollectiveCall{name_, bootstrap_->world_ranks(), sequence_, collective, tensors},
      bootstrap_->options().collective_timeout,
      [event] { return cudaEventQuery(event.get()) == cudaSuccess; },
      [comm] { ncclCommAbort(comm); });
  if (!wait) return absl::OkStatus();
  // Poll rather than cudaEventSynchronize: a dead peer makes NCCL spin
  // forever, and the watchdog must be the one to end it.
  for (;;) {
    const cudaError_t query = cudaEventQuery(event.get());
    if (query == cudaSuccess) return absl::OkStatus();
    if (query != cudaErrorNotReady) return CudaStatus(query, where);
    ncclResult_t async_error = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async_error);
    if (async_error != ncclSuccess && async_error != ncclInProgress) {
      return NcclStatus(async_error, where);
    }
    usleep(50);
  }
}

absl::Status NcclCommunicator::allreduce(at::Tensor& tensor, ReduceOp op) {
  const std::string collective = absl::StrCat("allreduce(", ReduceOpName(op), ")");
  MEMTRAIN_RETURN_IF_ERROR(Validate(collective, tensor));
  MEMTRAIN_ASSIGN_OR_RETURN(const ncclDataType_t type, NcclType(tensor.scalar_type()));
  return Enqueue(collective, DescribeTensor(tensor), [&](cudaStream_t stream) {
    return ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                         type, NcclOp(op), comm_, stream);
  }, /*wait=*/false);
}

absl::Status NcclCommunicator::broadcast(at::Tensor& tensor, int root) {
  const std::string collective = absl::StrCat("broadcast(root=", root, ")");
  MEMTRAIN_RETURN_IF_ERROR(Validate(collective, tensor));
  if (root < 0 || root >= size()) {
    return absl::InvalidArgumentError(absl::StrCat(collective, " on group '", name_,
                                                   "': root must be in [0, ", size(), ")"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const ncclDataType_t type, NcclType(tensor.scalar_type()));
  return Enqueue(collective, DescribeTensor(tensor), [&](cudaStream_t stream) {
    return ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                         type, root, comm_, stream);
  }, /*wait=*/false);
}

absl::StatusOr<at::Tensor> NcclCommunicator::allgather(const at::Tensor& tensor) {
  MEMTRAIN_RETURN_IF_ERROR(Validate("allgather", tensor));
  MEMTRAIN_ASSIGN_OR_RETURN(const ncclDataType_t type, NcclType(tensor.scalar_type()));
  std::vector<int64_t> shape{size()};
  shape.insert(shape.end(), tensor.sizes().begin(), tensor.sizes().end());
  at::Tensor gathered = at::empty(shape, tensor.options());
  MEMTRAIN_RETURN_IF_ERROR(Enqueue("allgather", DescribeTensor(tensor), [&](cudaStream_t stream) {
    return ncclAllGather(tensor.data_ptr(), gathered.data_ptr(), static_cast<size_t>(tensor.numel()),
                         type, comm_, stream);
  }, /*wait=*/false));
  return gathered;
}

absl::StatusOr<std::vector<at::Tensor>> NcclCommunicator::allgatherv(const at::Tensor& tensor) {
  MEMTRAIN_RETURN_IF_ERROR(Validate("allgatherv", tensor));
  if (tensor.dim() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("allgatherv on group '", name_,
                                                   "': needs at least one dimension"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const ncclDataType_t type, NcclType(tensor.scalar_type()));
  // Row counts travel on the host channel; the rows themselves as one
  // broadcast per rank inside an NCCL group (NCCL has no allgatherv).
  at::Tensor rows = at::full({1}, tensor.size(0), at::kLong);
  MEMTRAIN_ASSIGN_OR_RETURN(at::Tensor all_rows, bootstrap_->allgather(rows));
  std::vector<int64_t> row_shape(tensor.sizes().begin() + 1, tensor.sizes().end());
  const int64_t row_numel = c10::multiply_integers(row_shape);
  std::vector<int64_t> counts(static_cast<size_t>(size()));
  int64_t total_rows = 0;
  for (int r = 0; r < size(); ++r) {
    counts[r] = all_rows[r][0].item<int64_t>();
    total_rows += counts[r];
  }
  std::vector<int64_t> out_shape{total_rows};
  out_shape.insert(out_shape.end(), row_shape.begin(), row_shape.end());
  at::Tensor gathered = at::empty(out_shape, tensor.options());
  const int64_t element_size = tensor.element_size();
  MEMTRAIN_RETURN_IF_ERROR(Enqueue("allgatherv", DescribeTensor(tensor), [&](cudaStream_t stream) {
    ncclResult_t result = ncclGroupStart();
    int64_t offset = 0;
    for (int r = 0; r < size() && result == ncclSuccess; ++r) {
      char* destination = static_cast<char*>(gathered.data_ptr()) + offset * row_numel * element_size;
      const void* source = r == rank() ? tensor.data_ptr() : destination;
      result = ncclBroadcast(source, destination, static_cast<size_t>(counts[r] * row_numel), type,
                             r, comm_, stream);
      offset += counts[r];
    }
    const ncclResult_t end = ncclGroupEnd();
    return result != ncclSuccess ? result : end;
  }, /*wait=*/true));
  std::vector<at::Tensor> pieces;
  int64_t start = 0;
  for (int r = 0; r < size(); ++r) {
    pieces.push_back(gathered.narrow(0, start, counts[r]));
    start += counts[r];
  }
  return pieces;
}

absl::Status NcclCommunicator::barrier() {
  at::Tensor token = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
  return Enqueue("barrier", "float32[1]", [&](cudaStream_t stream) {
    return ncclAllReduce(token.data_ptr(), token.data_ptr(), 1, ncclFloat32, ncclSum, comm_, stream);
  }, /*wait=*/true);
}

absl::StatusOr<std::unique_ptr<Communicator>> NcclCommunicator::split(int color, int key) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> group, bootstrap_->SplitMpi(color, key));
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> child, Create(std::move(group)));
  return std::unique_ptr<Communicator>(std::move(child));
}

}  // namespace memtrain::parallel
