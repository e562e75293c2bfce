#include "trainer/trainer_options.h"

#include <type_traits>

#include "nlohmann/json.hpp"

namespace memtrain::trainer {
namespace {

// An option's value as trainer.json records it: enums by their flag names.
template <typename T>
nlohmann::json OptionJson(const T& value) {
  if constexpr (std::is_enum_v<T>) {
    return AbslUnparseFlag(value);
  } else {
    return value;
  }
}

}  // namespace

nlohmann::json TrainerOptionsJson(const TrainerOptions& o) {
  nlohmann::json json = nlohmann::json::object();
#define MEMTRAIN_RECORD_OPTION(name, member, on_resume, help) \
  if (OnResume::on_resume != OnResume::kNotRecorded) json[#name] = OptionJson(o.member);
  MEMTRAIN_TRAINER_OPTIONS(MEMTRAIN_RECORD_OPTION)
#undef MEMTRAIN_RECORD_OPTION
#define MEMTRAIN_RECORD_BATCH_SHAPE(name, help) json[#name] = o.batch.name;
  MEMTRAIN_BATCH_SHAPE_OPTIONS(MEMTRAIN_RECORD_BATCH_SHAPE)
#undef MEMTRAIN_RECORD_BATCH_SHAPE
#define MEMTRAIN_RECORD_KNN_MEMORY_OPTION(name, member, help) json[#name] = o.knn_memory.member;
  MEMTRAIN_KNN_MEMORY_OPTIONS(MEMTRAIN_RECORD_KNN_MEMORY_OPTION)
#undef MEMTRAIN_RECORD_KNN_MEMORY_OPTION
  return json;
}

std::set<std::string> OptionsSafeToChange() {
  std::set<std::string> safe;
#define MEMTRAIN_SAFE_OPTION(name, member, on_resume, help) \
  if (OnResume::on_resume == OnResume::kMayChange ||        \
      OnResume::on_resume == OnResume::kMayChangeFreely)    \
    safe.insert(#name);
  MEMTRAIN_TRAINER_OPTIONS(MEMTRAIN_SAFE_OPTION)
#undef MEMTRAIN_SAFE_OPTION
  return safe;
}

std::set<std::string> OptionsOutsideRunIdentity() {
  std::set<std::string> outside;
#define MEMTRAIN_OUTSIDE_IDENTITY(name, member, on_resume, help) \
  if (OnResume::on_resume == OnResume::kMayChangeFreely) outside.insert(#name);
  MEMTRAIN_TRAINER_OPTIONS(MEMTRAIN_OUTSIDE_IDENTITY)
#undef MEMTRAIN_OUTSIDE_IDENTITY
  return outside;
}

}  // namespace memtrain::trainer
