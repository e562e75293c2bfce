#include "data/task.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace memtrain::data {
namespace {

constexpr TaskInfo kTasks[] = {
    {Task::kLanguageModel, "lm", false},
    {Task::kTranslation, "translation", true},
    {Task::kSummarization, "summarization", true},
    {Task::kQuestionAnswering, "qa", true},
};

}  // namespace

absl::Span<const TaskInfo> Tasks() { return kTasks; }

std::vector<std::string> TaskNames() {
  std::vector<std::string> names;
  for (const TaskInfo& info : kTasks) names.push_back(info.name);
  return names;
}

absl::StatusOr<const TaskInfo*> FindTask(absl::string_view name) {
  for (const TaskInfo& info : kTasks) {
    if (name == info.name) return &info;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown task '", name, "'; known: ", absl::StrJoin(TaskNames(), ", ")));
}

const TaskInfo& InfoOf(Task task) {
  for (const TaskInfo& info : kTasks) {
    if (info.task == task) return info;
  }
  return kTasks[0];  // unreachable: every enumerator is in the table
}

std::string TaskName(Task task) { return InfoOf(task).name; }

}  // namespace memtrain::data
