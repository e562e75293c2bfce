#include "parallel/communicator.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace memtrain::parallel {

absl::string_view ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAvg:
      return "avg";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
  }
  return "unknown";
}

bool IsSupportedDtype(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat:
    case c10::kDouble:
    case c10::kBFloat16:
    case c10::kHalf:
    case c10::kInt:
    case c10::kLong:
    case c10::kByte:
      return true;
    default:
      return false;
  }
}

std::string DtypeName(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat:
      return "float32";
    case c10::kDouble:
      return "float64";
    case c10::kBFloat16:
      return "bfloat16";
    case c10::kHalf:
      return "float16";
    case c10::kInt:
      return "int32";
    case c10::kLong:
      return "int64";
    case c10::kByte:
      return "uint8";
    default:
      return c10::toString(dtype);
  }
}

std::string DescribeTensor(const at::Tensor& tensor) {
  if (!tensor.defined()) return "undefined";
  return absl::StrCat(DtypeName(tensor.scalar_type()), "[", absl::StrJoin(tensor.sizes(), ", "),
                      "]");
}

void DivideSumForAverage(at::Tensor& tensor, int group_size) {
  if (at::isFloatingType(tensor.scalar_type())) {
    tensor.div_(group_size);
  } else {
    tensor.div_(group_size, "trunc");
  }
}

absl::Status ConcurrentUseError(absl::string_view collective, absl::string_view group) {
  return absl::InternalError(absl::StrCat(
      collective, " on group '", group,
      "': another thread is inside a collective on this communicator; a communicator is used "
      "by one thread at a time (parallel/communicator.h)"));
}

absl::Status AllRanksOk(Communicator& group, const absl::Status& mine, const std::string& what) {
  // The largest status code of the ranks that failed: every rank returns the same code.
  at::Tensor worst = at::full({1}, static_cast<int>(mine.code()), at::kInt);
  MEMTRAIN_RETURN_IF_ERROR(group.allreduce(worst, ReduceOp::kMax));
  if (!mine.ok())
    return absl::Status(mine.code(),
                        absl::StrCat("rank ", group.rank(), ": ", what, ": ", mine.message()));
  const auto code = static_cast<absl::StatusCode>(worst.item<int>());
  if (code != absl::StatusCode::kOk)
    return absl::Status(code, absl::StrCat(what, " failed on another rank (see its log)"));
  return absl::OkStatus();
}

absl::Status ValidateCollectiveTensor(absl::string_view collective, absl::string_view group,
                                      const at::Tensor& tensor, c10::DeviceType device_type) {
  const std::string where = absl::StrCat(collective, " on group '", group, "'");
  if (!tensor.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": the tensor is undefined"));
  }
  if (tensor.device().type() != device_type) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": tensor is on ", tensor.device().str(), " but this communicator needs ",
        c10::DeviceTypeName(device_type, /*lower_case=*/true),
        " tensors (MpiCommunicator: CPU; NcclCommunicator: CUDA)"));
  }
  if (!tensor.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": tensor ", DescribeTensor(tensor),
                     " is not contiguous; call .contiguous() first (collectives work in place)"));
  }
  if (!IsSupportedDtype(tensor.scalar_type())) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": dtype ", DtypeName(tensor.scalar_type()),
        " is not supported; use float32, float64, bfloat16, float16, int32, int64 or uint8"));
  }
  return absl::OkStatus();
}

}  // namespace memtrain::parallel
