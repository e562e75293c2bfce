// File: data/task.h
//
// The four tasks, one table shared by every layer: a corpus names its task
// (data/corpus_file.h), the batch source shapes batches by whether the task
// is sequence-to-sequence, and the trainer (trainer/task.h) picks the loss
// by the same name. A corpus whose task is not in this table is refused,
// never treated as some default.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(const TaskInfo* task, FindTask("translation"));
//   if (task->seq2seq) ...
#ifndef MEMTRAIN_DATA_TASK_H_
#define MEMTRAIN_DATA_TASK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace memtrain::data {

enum class Task { kLanguageModel, kTranslation, kSummarization, kQuestionAnswering };

struct TaskInfo {
  Task task;
  const char* name;  ///< as corpora, flags and checkpoints spell it
  bool seq2seq;      ///< source -> target examples; otherwise documents (lm)
};

/// Every task, in this order: lm, translation, summarization, qa.
absl::Span<const TaskInfo> Tasks();
/// Their names, in that order.
std::vector<std::string> TaskNames();
/// kInvalidArgument naming the known tasks for an unknown name.
absl::StatusOr<const TaskInfo*> FindTask(absl::string_view name);
const TaskInfo& InfoOf(Task task);
/// InfoOf(task).name.
std::string TaskName(Task task);

}  // namespace memtrain::data

#endif  // MEMTRAIN_DATA_TASK_H_
