#include "parallel/mpi_communicator.h"

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace memtrain::parallel {
namespace {

// ---- bfloat16 / float16 ------------------------------------------------------
// MPI has no 16-bit float types, so each gets a 2-byte contiguous datatype and
// user-defined sum/max/min ops that widen to float32 per element, combine, and
// round back (round-to-nearest-even, as c10's conversions do).

template <typename T, typename Combine>
void CombineHalf(void* in, void* inout, int* len, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  const Combine combine;
  for (int i = 0; i < *len; ++i) {
    b[i] = T(combine(static_cast<float>(a[i]), static_cast<float>(b[i])));
  }
}

struct Plus {
  float operator()(float a, float b) const { return a + b; }
};
struct Max {
  float operator()(float a, float b) const { return std::max(a, b); }
};
struct Min {
  float operator()(float a, float b) const { return std::min(a, b); }
};

struct HalfTypes {
  MPI_Datatype type;
  MPI_Op sum, max, min;
};

template <typename T>
HalfTypes MakeHalfTypes() {
  HalfTypes t;
  MPI_Type_contiguous(sizeof(T), MPI_BYTE, &t.type);
  MPI_Type_commit(&t.type);
  MPI_Op_create(&CombineHalf<T, Plus>, /*commute=*/1, &t.sum);
  MPI_Op_create(&CombineHalf<T, Max>, 1, &t.max);
  MPI_Op_create(&CombineHalf<T, Min>, 1, &t.min);
  return t;
}

// Created on first use (after MPI_Init) and left to MPI_Finalize.
const HalfTypes& BFloat16Types() {
  static const HalfTypes types = MakeHalfTypes<c10::BFloat16>();
  return types;
}
const HalfTypes& Float16Types() {
  static const HalfTypes types = MakeHalfTypes<c10::Half>();
  return types;
}

MPI_Datatype MpiType(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat:
      return MPI_FLOAT;
    case c10::kDouble:
      return MPI_DOUBLE;
    case c10::kInt:
      return MPI_INT32_T;
    case c10::kLong:
      return MPI_INT64_T;
    case c10::kByte:
      return MPI_UINT8_T;
    case c10::kBFloat16:
      return BFloat16Types().type;
    case c10::kHalf:
      return Float16Types().type;
    default:
      TORCH_INTERNAL_ASSERT(false, "MpiType: dtype ", dtype,
                            " passed validation but has no MPI type");
  }
}

MPI_Op MpiOp(c10::ScalarType dtype, ReduceOp op) {
  const HalfTypes* half = dtype == c10::kBFloat16 ? &BFloat16Types()
                          : dtype == c10::kHalf   ? &Float16Types()
                                                  : nullptr;
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:  // summed here, divided by the caller
      return half ? half->sum : MPI_SUM;
    case ReduceOp::kMax:
      return half ? half->max : MPI_MAX;
    case ReduceOp::kMin:
      return half ? half->min : MPI_MIN;
  }
  return MPI_OP_NULL;
}

std::string MpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<size_t>(length));
}

// MPI counts are ints; larger tensors go in pieces of at most this many
// elements (a multiple of every element size, 1 GiB of float32).
constexpr int64_t kMaxElementsPerCall = int64_t{1} << 28;

// Calls `call(offset, count)` over [0, numel) in pieces MPI can count.
absl::Status ForEachPiece(int64_t numel, const std::function<absl::Status(int64_t, int)>& call) {
  for (int64_t offset = 0; offset < numel; offset += kMaxElementsPerCall) {
    const int count = static_cast<int>(std::min(kMaxElementsPerCall, numel - offset));
    MEMTRAIN_RETURN_IF_ERROR(call(offset, count));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> CheckedCount(const std::string& where, int64_t numel) {
  if (numel > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", numel, " elements per rank exceed MPI's limit of ", INT_MAX,
                     " for gathers; gather in several calls"));
  }
  return static_cast<int>(numel);
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, CollectiveWatchdog* watchdog,
                                 CommunicatorOptions options)
    : comm_(comm), name_(std::move(name)), watchdog_(watchdog), options_(options) {}

MpiCommunicator::~MpiCommunicator() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Adopt(
    MPI_Comm comm, std::string name, CollectiveWatchdog* watchdog, CommunicatorOptions options) {
  TORCH_INTERNAL_ASSERT(watchdog != nullptr, "MpiCommunicator needs a watchdog");
  for (CollectivePhase phase : {CollectivePhase::kStartup, CollectivePhase::kStep,
                                CollectivePhase::kCheckpoint, CollectivePhase::kEvaluation}) {
    if (options.timeouts.For(phase) <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(CollectivePhaseFlag(phase), " must be positive, got ",
                       absl::FormatDuration(options.timeouts.For(phase))));
    }
  }
  std::unique_ptr<MpiCommunicator> communicator(
      new MpiCommunicator(comm, std::move(name), watchdog, options));
  MEMTRAIN_RETURN_IF_ERROR(communicator->Initialize());
  return communicator;
}

absl::Status MpiCommunicator::Initialize() {
  // Errors on our communicators come back as codes (turned into Status)
  // instead of MPI's default of aborting the job from inside the library.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);

  MPI_Group group, world_group;
  MPI_Comm_group(comm_, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  std::vector<int> group_ranks(static_cast<size_t>(size_));
  for (int i = 0; i < size_; ++i) group_ranks[static_cast<size_t>(i)] = i;
  world_ranks_.resize(static_cast<size_t>(size_));
  MPI_Group_translate_ranks(group, size_, group_ranks.data(), world_group, world_ranks_.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);

  // Ranks sharing memory with us = ranks on this host.
  MPI_Comm local;
  return RunCollective("split_type(shared)", "-", [&] {
    const int rc = MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_size(local, &local_size_);
    return MPI_Comm_free(&local);
  });
}

absl::Status MpiCommunicator::RunCollective(const std::string& collective,
                                            const std::string& tensors,
                                            const std::function<int()>& mpi_call) {
  if (in_use_.exchange(true)) return ConcurrentUseError(collective, name_);
  ++sequence_;
  const CollectivePhase phase = CurrentCollectivePhase();
  const CollectiveWatchdog::Ticket ticket =
      watchdog_->Start(CollectiveCall{name_, world_ranks_, sequence_, collective, tensors, phase},
                       options_.timeouts.For(phase));
  const int rc = mpi_call();
  watchdog_->Finish(ticket);
  in_use_.store(false);
  if (rc != MPI_SUCCESS) {
    return absl::InternalError(absl::StrCat(collective, " #", sequence_, " on group '", name_,
                                            "' (", tensors,
                                            ") failed in MPI: ", MpiErrorString(rc)));
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::VerifyAgreement(const std::string& collective,
                                              const std::string& signature) {
  if (!options_.verify_collectives) return absl::OkStatus();
  // Fixed-size records keep this to one MPI_Allgather.
  constexpr int kRecordBytes = 160;
  std::string mine = absl::StrCat(collective, " ", signature);
  mine.resize(kRecordBytes, '\0');
  std::vector<char> all(static_cast<size_t>(kRecordBytes) * static_cast<size_t>(size_));
  MEMTRAIN_RETURN_IF_ERROR(RunCollective(absl::StrCat("verify(", collective, ")"), signature, [&] {
    return MPI_Allgather(mine.data(), kRecordBytes, MPI_CHAR, all.data(), kRecordBytes, MPI_CHAR,
                         comm_);
  }));
  std::vector<std::string> calls;
  bool agree = true;
  for (int r = 0; r < size_; ++r) {
    calls.emplace_back(all.data() + static_cast<size_t>(r) * kRecordBytes);
    agree = agree && calls.back() == calls.front();
  }
  if (agree) return absl::OkStatus();
  std::vector<std::string> lines;
  for (int r = 0; r < size_; ++r) lines.push_back(absl::StrCat("rank ", r, ": ", calls[r]));
  return absl::FailedPreconditionError(
      absl::StrCat("group '", name_, "': ranks disagree on collective #", sequence_,
                   " (every rank must make the same call with the same dtype and shape): ",
                   absl::StrJoin(lines, "; ")));
}

absl::Status MpiCommunicator::allreduce(at::Tensor& tensor, ReduceOp op) {
  const std::string collective = absl::StrCat("allreduce(", ReduceOpName(op), ")");
  MEMTRAIN_RETURN_IF_ERROR(ValidateCollectiveTensor(collective, name_, tensor, c10::kCPU));
  const std::string described = DescribeTensor(tensor);
  MEMTRAIN_RETURN_IF_ERROR(VerifyAgreement(collective, described));
  const MPI_Datatype type = MpiType(tensor.scalar_type());
  const MPI_Op mpi_op = MpiOp(tensor.scalar_type(), op);
  char* base = static_cast<char*>(tensor.data_ptr());
  const int64_t element_size = tensor.element_size();
  MEMTRAIN_RETURN_IF_ERROR(RunCollective(collective, described, [&] {
    int rc = MPI_SUCCESS;
    ForEachPiece(tensor.numel(), [&](int64_t offset, int count) {
      if (rc == MPI_SUCCESS) {
        rc = MPI_Allreduce(MPI_IN_PLACE, base + offset * element_size, count, type, mpi_op, comm_);
      }
      return absl::OkStatus();
    }).IgnoreError();  // the lambda never fails; `rc` carries MPI's result
    return rc;
  }));
  if (op == ReduceOp::kAvg) DivideSumForAverage(tensor, size_);
  return absl::OkStatus();
}

absl::Status MpiCommunicator::broadcast(at::Tensor& tensor, int root) {
  const std::string collective = absl::StrCat("broadcast(root=", root, ")");
  MEMTRAIN_RETURN_IF_ERROR(ValidateCollectiveTensor(collective, name_, tensor, c10::kCPU));
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(
        absl::StrCat(collective, " on group '", name_, "': root must be in [0, ", size_, ")"));
  }
  const std::string described = DescribeTensor(tensor);
  MEMTRAIN_RETURN_IF_ERROR(VerifyAgreement(collective, described));
  const MPI_Datatype type = MpiType(tensor.scalar_type());
  char* base = static_cast<char*>(tensor.data_ptr());
  const int64_t element_size = tensor.element_size();
  return RunCollective(collective, described, [&] {
    int rc = MPI_SUCCESS;
    ForEachPiece(tensor.numel(), [&](int64_t offset, int count) {
      if (rc == MPI_SUCCESS) rc = MPI_Bcast(base + offset * element_size, count, type, root, comm_);
      return absl::OkStatus();
    }).IgnoreError();  // as in allreduce
    return rc;
  });
}

absl::StatusOr<at::Tensor> MpiCommunicator::allgather(const at::Tensor& tensor) {
  const std::string collective = "allgather";
  MEMTRAIN_RETURN_IF_ERROR(ValidateCollectiveTensor(collective, name_, tensor, c10::kCPU));
  const std::string described = DescribeTensor(tensor);
  MEMTRAIN_RETURN_IF_ERROR(VerifyAgreement(collective, described));
  MEMTRAIN_ASSIGN_OR_RETURN(
      const int count, CheckedCount(absl::StrCat(collective, " on '", name_, "'"), tensor.numel()));
  std::vector<int64_t> shape{size_};
  shape.insert(shape.end(), tensor.sizes().begin(), tensor.sizes().end());
  at::Tensor gathered = at::empty(shape, tensor.options());
  const MPI_Datatype type = MpiType(tensor.scalar_type());
  MEMTRAIN_RETURN_IF_ERROR(RunCollective(collective, described, [&] {
    return MPI_Allgather(tensor.data_ptr(), count, type, gathered.data_ptr(), count, type, comm_);
  }));
  return gathered;
}

absl::StatusOr<std::vector<at::Tensor>> MpiCommunicator::allgatherv(const at::Tensor& tensor) {
  const std::string collective = "allgatherv";
  MEMTRAIN_RETURN_IF_ERROR(ValidateCollectiveTensor(collective, name_, tensor, c10::kCPU));
  if (tensor.dim() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        collective, " on group '", name_, "': needs at least one dimension (the one that varies)"));
  }
  // Everything but dim 0 must agree.
  std::vector<int64_t> row_shape(tensor.sizes().begin() + 1, tensor.sizes().end());
  MEMTRAIN_RETURN_IF_ERROR(VerifyAgreement(
      collective,
      absl::StrCat(DtypeName(tensor.scalar_type()), "[*, ", absl::StrJoin(row_shape, ", "), "]")));
  const std::string described = DescribeTensor(tensor);
  const int64_t row_numel = c10::multiply_integers(row_shape);  // 1 for a vector

  std::vector<int64_t> rows(static_cast<size_t>(size_));
  int64_t my_rows = tensor.size(0);
  MEMTRAIN_RETURN_IF_ERROR(RunCollective("allgatherv(sizes)", described, [&] {
    return MPI_Allgather(&my_rows, 1, MPI_INT64_T, rows.data(), 1, MPI_INT64_T, comm_);
  }));
  std::vector<int> counts(static_cast<size_t>(size_)), displacements(static_cast<size_t>(size_));
  int64_t total_rows = 0;
  for (int r = 0; r < size_; ++r) {
    MEMTRAIN_ASSIGN_OR_RETURN(counts[r], CheckedCount(absl::StrCat(collective, " on '", name_, "'"),
                                                      rows[r] * row_numel));
    MEMTRAIN_ASSIGN_OR_RETURN(
        displacements[r],
        CheckedCount(absl::StrCat(collective, " on '", name_, "'"), total_rows * row_numel));
    total_rows += rows[r];
  }
  std::vector<int64_t> out_shape{total_rows};
  out_shape.insert(out_shape.end(), row_shape.begin(), row_shape.end());
  at::Tensor gathered = at::empty(out_shape, tensor.options());
  const MPI_Datatype type = MpiType(tensor.scalar_type());
  MEMTRAIN_RETURN_IF_ERROR(RunCollective(collective, described, [&] {
    return MPI_Allgatherv(tensor.data_ptr(), counts[rank_], type, gathered.data_ptr(),
                          counts.data(), displacements.data(), type, comm_);
  }));
  std::vector<at::Tensor> pieces;
  int64_t start = 0;
  for (int r = 0; r < size_; ++r) {
    pieces.push_back(gathered.narrow(0, start, rows[r]));
    start += rows[r];
  }
  return pieces;
}

absl::Status MpiCommunicator::barrier() {
  return RunCollective("barrier", "-", [&] { return MPI_Barrier(comm_); });
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::SplitMpi(int color, int key) {
  const std::string collective = absl::StrCat("split(color=", color, ", key=", key, ")");
  if (color < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(collective, " on group '", name_, "': color must be >= 0"));
  }
  MPI_Comm child = MPI_COMM_NULL;
  MEMTRAIN_RETURN_IF_ERROR(
      RunCollective(collective, "-", [&] { return MPI_Comm_split(comm_, color, key, &child); }));
  ++splits_;
  return Adopt(child, absl::StrCat(name_, "/split", splits_, "(color=", color, ")"), watchdog_,
               options_);
}

absl::StatusOr<std::unique_ptr<Communicator>> MpiCommunicator::split(int color, int key) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> child, SplitMpi(color, key));
  return std::unique_ptr<Communicator>(std::move(child));
}

}  // namespace memtrain::parallel
