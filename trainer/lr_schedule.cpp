#include "trainer/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/registry.h"
#include "common/status_macros.h"

namespace memtrain::trainer {
namespace {

using Factory = std::function<absl::StatusOr<LrSchedule>(const LrScheduleOptions&)>;

// Linear warm-up from 0 to options.lr, then `after`.
LrSchedule WithWarmup(const LrScheduleOptions& o, std::function<double(int64_t)> after) {
  return [o, after = std::move(after)](int64_t step) {
    if (step < o.warmup_steps)
      return o.lr * static_cast<double>(step) / static_cast<double>(o.warmup_steps);
    return after(step);
  };
}

const NamedRegistry<Factory>& Registry() {
  static const auto* registry = new NamedRegistry<Factory>(
      "lr schedule",
      {
          {"constant",
           [](const LrScheduleOptions& o) -> absl::StatusOr<LrSchedule> {
             return WithWarmup(o, [lr = o.lr](int64_t) { return lr; });
           }},
          {"inverse_sqrt",
           [](const LrScheduleOptions& o) -> absl::StatusOr<LrSchedule> {
             const double warmup = static_cast<double>(std::max<int64_t>(o.warmup_steps, 1));
             return WithWarmup(o, [lr = o.lr, warmup](int64_t step) {
               return lr * std::sqrt(warmup / static_cast<double>(std::max<int64_t>(step, 1)));
             });
           }},
          {"cosine",
           [](const LrScheduleOptions& o) -> absl::StatusOr<LrSchedule> {
             if (o.total_steps <= o.warmup_steps) {
               return absl::InvalidArgumentError(
                   absl::StrCat("lr schedule cosine: total steps (", o.total_steps,
                                ") must exceed the warm-up steps (", o.warmup_steps, ")"));
             }
             return WithWarmup(o, [o](int64_t step) {
               const double t =
                   std::min(1.0, static_cast<double>(step - o.warmup_steps) /
                                     static_cast<double>(o.total_steps - o.warmup_steps));
               return o.min_lr + (o.lr - o.min_lr) * 0.5 * (1.0 + std::cos(M_PI * t));
             });
           }},
      });
  return *registry;
}

}  // namespace

std::vector<std::string> LrScheduleNames() { return Registry().names(); }

absl::StatusOr<LrSchedule> MakeLrSchedule(const std::string& name,
                                          const LrScheduleOptions& options) {
  if (options.lr <= 0 || options.warmup_steps < 0 || options.min_lr < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lr schedule: lr must be positive and warmup_steps, "
                     "min_lr non-negative; got lr ",
                     options.lr, ", warmup ", options.warmup_steps, ", min_lr ", options.min_lr));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const Factory* factory, Registry().Find(name));
  return (*factory)(options);
}

}  // namespace memtrain::trainer
