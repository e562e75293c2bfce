// File: trainer/lr_schedule.h
//
// Learning-rate schedules, registered by name and chosen by --lr_schedule:
//   constant      linear warm-up from 0, then `lr`
//   inverse_sqrt  linear warm-up from 0, then lr · sqrt(warmup / step)   (fairseq, Vaswani et al.)
//   cosine        linear warm-up from 0, then min_lr + (lr - min_lr)(1 + cos(π t)) / 2,
//                 t = (step - warmup) / (total_steps - warmup), held at min_lr after
//
//   MEMTRAIN_ASSIGN_OR_RETURN(auto schedule, MakeLrSchedule("inverse_sqrt", options));
//   double lr = schedule(step);          // step counts from 1
#ifndef MEMTRAIN_TRAINER_LR_SCHEDULE_H_
#define MEMTRAIN_TRAINER_LR_SCHEDULE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace memtrain::trainer {

struct LrScheduleOptions {
  double lr = 5e-4;             ///< peak rate, reached at the end of warm-up
  int64_t warmup_steps = 4000;  ///< 0: no warm-up
  double min_lr = 0;            ///< cosine only
  int64_t total_steps = 0;      ///< cosine only: where the rate reaches min_lr
};

/// The rate at optimizer step `step` (1-based).
using LrSchedule = std::function<double(int64_t step)>;

/// The schedules' names, in registry order (constant, inverse_sqrt, cosine).
std::vector<std::string> LrScheduleNames();

/// kInvalidArgument for an unknown name (listing the known ones) or bad options.
absl::StatusOr<LrSchedule> MakeLrSchedule(const std::string& name,
                                          const LrScheduleOptions& options);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_LR_SCHEDULE_H_
