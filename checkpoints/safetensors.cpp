#include "checkpoints/safetensors.h"

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "nlohmann/json.hpp"

namespace memtrain::checkpoints {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

constexpr std::pair<at::ScalarType, const char*> kDtypes[] = {
    {at::kDouble, "F64"}, {at::kFloat, "F32"}, {at::kHalf, "F16"},  {at::kBFloat16, "BF16"},
    {at::kLong, "I64"},   {at::kInt, "I32"},   {at::kShort, "I16"}, {at::kChar, "I8"},
    {at::kByte, "U8"},    {at::kBool, "BOOL"}};

const char* DtypeName(at::ScalarType type) {
  for (const auto& [scalar, name] : kDtypes) {
    if (scalar == type) return name;
  }
  return nullptr;
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, at::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  int64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const char* dtype = DtypeName(tensor.scalar_type());
    if (dtype == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", name, " has dtype ",
                                                     c10::toString(tensor.scalar_type()),
                                                     ", which safetensors does not support"));
    }
    contiguous.push_back(tensor.detach().cpu().contiguous());
    const int64_t bytes = static_cast<int64_t>(contiguous.back().nbytes());
    header[name] = {{"dtype", dtype},
                    {"shape", tensor.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // The data starts 8-byte aligned, as the reference writer pads it.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  const uint64_t length = text.size();
  std::memcpy(bytes.data(), &length, 8);
  bytes += text;
  bytes.reserve(bytes.size() + static_cast<size_t>(offset));
  for (const at::Tensor& tensor : contiguous) {
    bytes.append(static_cast<const char*>(tensor.data_ptr()), tensor.nbytes());
  }
  return WriteFileDurably(path, bytes);
}

absl::StatusOr<Safetensors> ReadSafetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  uint64_t length = 0;
  if (bytes.size() < 8)
    return absl::DataLossError(absl::StrCat(path, ": truncated (", bytes.size(), " bytes)"));
  std::memcpy(&length, bytes.data(), 8);
  if (length > bytes.size() - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header of ", length, " bytes in a file of ",
                                            bytes.size(), " (truncated?)"));
  }
  const uint64_t data_start = 8 + length, data_bytes = bytes.size() - data_start;
  Safetensors file;
  try {
    const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, length));
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        file.metadata = entry.get<std::map<std::string, std::string>>();
        continue;
      }
      const std::string dtype = entry.at("dtype").get<std::string>();
      const std::vector<int64_t> shape = entry.at("shape").get<std::vector<int64_t>>();
      const std::vector<uint64_t> range = entry.at("data_offsets").get<std::vector<uint64_t>>();
      const auto* known = std::find_if(std::begin(kDtypes), std::end(kDtypes),
                                       [&](const auto& d) { return dtype == d.second; });
      if (known == std::end(kDtypes)) {
        return absl::DataLossError(
            absl::StrCat(path, ": tensor ", name, " has unsupported dtype ", dtype));
      }
      at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(known->first));
      if (range.size() != 2 || range[0] > range[1] || range[1] > data_bytes ||
          range[1] - range[0] != tensor.nbytes()) {
        return absl::DataLossError(
            absl::StrCat(path, ": tensor ", name, " has data_offsets outside the ", data_bytes,
                         " data bytes or not matching its shape (truncated?)"));
      }
      if (tensor.nbytes() > 0)
        std::memcpy(tensor.data_ptr(), bytes.data() + data_start + range[0], tensor.nbytes());
      file.tensors.emplace(name, std::move(tensor));
    }
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": malformed safetensors header: ", e.what()));
  }
  return file;
}

}  // namespace memtrain::checkpoints
