// File: checkpoints/internal/format_version.h
//
// The "format_version" field every versioned memtrain JSON file carries
// (model.json, trainer.json), read one way for all of them.
#ifndef MEMTRAIN_CHECKPOINTS_INTERNAL_FORMAT_VERSION_H_
#define MEMTRAIN_CHECKPOINTS_INTERNAL_FORMAT_VERSION_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace memtrain::checkpoints::internal {

/// The file's format version: 1 when the field is absent (files written
/// before versions existed). kDataLoss when it is not an integer;
/// kFailedPrecondition naming both versions when it is outside 1..newest.
inline absl::StatusOr<int> FormatVersion(const nlohmann::json& file, int newest,
                                         const std::string& path) {
  if (!file.contains("format_version")) return 1;
  const nlohmann::json& field = file.at("format_version");
  if (!field.is_number_integer())
    return absl::DataLossError(absl::StrCat(path, ": format_version is not an integer"));
  const int version = field.get<int>();
  if (version < 1 || version > newest) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " has format version ", version, "; this memtrain reads versions 1 to ",
                     newest, " (a newer memtrain wrote it: upgrade memtrain to read it)"));
  }
  return version;
}

}  // namespace memtrain::checkpoints::internal

#endif  // MEMTRAIN_CHECKPOINTS_INTERNAL_FORMAT_VERSION_H_
