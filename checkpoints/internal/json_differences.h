// File: checkpoints/internal/json_differences.h
//
// How a saved configuration differs from the one a run asks for, one line
// per top-level key: what resuming a checkpoint and starting from a saved
// model (--init_from) both refuse with.
#ifndef MEMTRAIN_CHECKPOINTS_INTERNAL_JSON_DIFFERENCES_H_
#define MEMTRAIN_CHECKPOINTS_INTERNAL_JSON_DIFFERENCES_H_

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace memtrain::checkpoints::internal {

/// "key: <saved_name> X, now Y" for each key whose values differ, outside `safe`.
inline std::vector<std::string> Differences(const nlohmann::json& saved, const nlohmann::json& now,
                                            const std::set<std::string>& safe,
                                            const std::string& saved_name = "checkpoint") {
  std::vector<std::string> differences;
  std::set<std::string> keys;
  for (const auto& item : saved.items()) keys.insert(item.key());
  for (const auto& item : now.items()) keys.insert(item.key());
  for (const std::string& key : keys) {
    const nlohmann::json a = saved.contains(key) ? saved.at(key) : nlohmann::json(),
                         b = now.contains(key) ? now.at(key) : nlohmann::json();
    if (a != b && safe.count(key) == 0)
      differences.push_back(absl::StrCat(key, ": ", saved_name, " ", a.dump(), ", now ", b.dump()));
  }
  return differences;
}

}  // namespace memtrain::checkpoints::internal

#endif  // MEMTRAIN_CHECKPOINTS_INTERNAL_JSON_DIFFERENCES_H_
