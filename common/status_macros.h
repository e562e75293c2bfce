// File: common/status_macros.h
//
// Propagation helpers for absl::Status / absl::StatusOr, defined once for the
// whole project. The Abseil release we build against (20220623) has no status
// macros; the MEMTRAIN_ prefix keeps these from clashing with upstream ones
// after an upgrade.
//
//   absl::Status Load(const std::string& path) {
//     MEMTRAIN_ASSIGN_OR_RETURN(File f, Open(path));
//     MEMTRAIN_RETURN_IF_ERROR(f.Verify());
//     return absl::OkStatus();
//   }
#ifndef MEMTRAIN_COMMON_STATUS_MACROS_H_
#define MEMTRAIN_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

/// Evaluates `expr` (an absl::Status) and returns it from the enclosing
/// function when it is not OK.
#define MEMTRAIN_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::absl::Status memtrain_status_ = (expr);            \
    if (!memtrain_status_.ok()) return memtrain_status_; \
  } while (false)

#define MEMTRAIN_STATUS_CONCAT_INNER_(a, b) a##b
#define MEMTRAIN_STATUS_CONCAT_(a, b) MEMTRAIN_STATUS_CONCAT_INNER_(a, b)

/// Evaluates `expr` (an absl::StatusOr<T>); on error returns its status from
/// the enclosing function, otherwise moves the value into `lhs`, which may be
/// a declaration (`auto x`) or an existing variable.
#define MEMTRAIN_ASSIGN_OR_RETURN(lhs, expr) \
  MEMTRAIN_ASSIGN_OR_RETURN_IMPL_(MEMTRAIN_STATUS_CONCAT_(memtrain_statusor_, __LINE__), lhs, expr)

#define MEMTRAIN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = *std::move(statusor)

#endif  // MEMTRAIN_COMMON_STATUS_MACROS_H_
