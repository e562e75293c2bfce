// File: checkpoints/safetensors.h
//
// The safetensors format (huggingface/safetensors): 8 bytes little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}, and
// optionally "__metadata__": {string: string}}, then the raw little-endian
// tensor bytes. Python's `safetensors.torch.load_file` reads what this
// writes. memtrain uses it for exported weights (memtrain-ckpt export) and
// for each rank's part of a checkpoint (RNG states, kNN memory), because it
// is self-describing: memtrain-ckpt inspect lists any such file.
//
//   MEMTRAIN_RETURN_IF_ERROR(WriteSafetensors("w.safetensors", {{"a", t}}, {{"step", "7"}}));
//   MEMTRAIN_ASSIGN_OR_RETURN(Safetensors file, ReadSafetensors("w.safetensors"));
//
// dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL. Tensors are written from
// CPU contiguous copies; read tensors are CPU tensors.
#ifndef MEMTRAIN_CHECKPOINTS_SAFETENSORS_H_
#define MEMTRAIN_CHECKPOINTS_SAFETENSORS_H_

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace memtrain::checkpoints {

struct Safetensors {
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

/// Writes and fsyncs `path`. kInvalidArgument for an unsupported dtype.
absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, at::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata);
/// kNotFound for a missing file; kDataLoss (naming the file and what is
/// wrong) for a truncated or malformed one.
absl::StatusOr<Safetensors> ReadSafetensors(const std::string& path);

}  // namespace memtrain::checkpoints

#endif  // MEMTRAIN_CHECKPOINTS_SAFETENSORS_H_
