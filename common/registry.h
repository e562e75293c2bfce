// File: common/registry.h
//
// A table of implementations chosen by name (attention kinds, tasks,
// learning-rate schedules): an explicit list in one file per concern, not
// self-registration, which a static library's linker may silently drop
// (STYLE.md §2). Names keep the order they are listed in.
//
//   const NamedRegistry<Factory> kTasks("task", {{"lm", MakeLm}, {"qa", MakeQa}});
//   MEMTRAIN_ASSIGN_OR_RETURN(const Factory* make, kTasks.Find(name));
#ifndef MEMTRAIN_COMMON_REGISTRY_H_
#define MEMTRAIN_COMMON_REGISTRY_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace memtrain {

template <typename Factory>
class NamedRegistry {
 public:
  /// `what` names the thing in errors ("task", "attention kind").
  NamedRegistry(std::string what, std::vector<std::pair<std::string, Factory>> entries)
      : what_(std::move(what)), entries_(std::move(entries)) {}

  std::vector<std::string> names() const {
    std::vector<std::string> names;
    for (const auto& entry : entries_) names.push_back(entry.first);
    return names;
  }

  /// The factory registered as `name`; kInvalidArgument listing the known
  /// names otherwise.
  absl::StatusOr<const Factory*> Find(const std::string& name) const {
    for (const auto& entry : entries_) {
      if (entry.first == name) return &entry.second;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown ", what_, " '", name, "'; known: ", absl::StrJoin(names(), ", ")));
  }

 private:
  const std::string what_;
  const std::vector<std::pair<std::string, Factory>> entries_;
};

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_REGISTRY_H_
