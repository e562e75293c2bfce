// File: common/enum_names.h
//
// An enum whose values have names (a flag's values, a JSON field's): one
// table per enum, used for parsing, printing, help texts and errors alike.
// An Abseil flag of the enum type needs only AbslParseFlag/AbslUnparseFlag
// beside the enum, each one line over the table:
//
//   const EnumNames<Sharing>& SharingNames() {
//     static const auto* names = new EnumNames<Sharing>(
//         "Linformer sharing", {{Sharing::kNone, "none"}, {Sharing::kLayerwise, "layerwise"}});
//     return *names;
//   }
//   bool AbslParseFlag(absl::string_view text, Sharing* value, std::string* error) {
//     return SharingNames().Parse(text, value, error);
//   }
#ifndef MEMTRAIN_COMMON_ENUM_NAMES_H_
#define MEMTRAIN_COMMON_ENUM_NAMES_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace memtrain {

template <typename Enum>
class EnumNames {
 public:
  /// `what` names the enum in errors ("unused-parameter policy").
  EnumNames(std::string what, std::vector<std::pair<Enum, const char*>> entries)
      : what_(std::move(what)), entries_(std::move(entries)) {}

  /// The names, in table order.
  std::vector<std::string> names() const {
    std::vector<std::string> names;
    for (const auto& [value, name] : entries_) names.push_back(name);
    return names;
  }
  /// The value's name; "?" for a value missing from the table.
  std::string Name(Enum value) const {
    for (const auto& [candidate, name] : entries_) {
      if (candidate == value) return name;
    }
    return "?";
  }
  /// false, with `error` listing the names, for an unknown `text`.
  bool Parse(absl::string_view text, Enum* value, std::string* error) const {
    for (const auto& [candidate, name] : entries_) {
      if (text == name) {
        *value = candidate;
        return true;
      }
    }
    *error = absl::StrCat("'", text, "' is not a ", what_, ": ", absl::StrJoin(names(), ", "));
    return false;
  }

 private:
  const std::string what_;
  const std::vector<std::pair<Enum, const char*>> entries_;
};

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_ENUM_NAMES_H_
