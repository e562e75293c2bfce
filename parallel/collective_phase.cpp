#include "parallel/collective_phase.h"

#include <algorithm>
#include <atomic>

namespace memtrain::parallel {
namespace {

std::atomic<CollectivePhase> g_phase{CollectivePhase::kStartup};

}  // namespace

absl::string_view CollectivePhaseName(CollectivePhase phase) {
  switch (phase) {
    case CollectivePhase::kStartup:
      return "start-up";
    case CollectivePhase::kStep:
      return "step";
    case CollectivePhase::kCheckpoint:
      return "checkpoint";
    case CollectivePhase::kEvaluation:
      return "evaluation";
  }
  return "?";
}

absl::string_view CollectivePhaseFlag(CollectivePhase phase) {
  switch (phase) {
    case CollectivePhase::kStartup:
      return "--startup_timeout";
    case CollectivePhase::kStep:
      return "--step_timeout";
    case CollectivePhase::kCheckpoint:
      return "--checkpoint_timeout";
    case CollectivePhase::kEvaluation:
      return "--eval_timeout";
  }
  return "?";
}

absl::Duration PhaseTimeouts::For(CollectivePhase phase) const {
  switch (phase) {
    case CollectivePhase::kStartup:
      return startup;
    case CollectivePhase::kStep:
      return step;
    case CollectivePhase::kCheckpoint:
      return checkpoint;
    case CollectivePhase::kEvaluation:
      return evaluation;
  }
  return step;
}

absl::Duration PhaseTimeouts::Longest() const {
  return std::max({startup, step, checkpoint, evaluation});
}

CollectivePhase CurrentCollectivePhase() { return g_phase.load(std::memory_order_relaxed); }

ScopedCollectivePhase::ScopedCollectivePhase(CollectivePhase phase)
    : previous_(g_phase.exchange(phase, std::memory_order_relaxed)) {}

ScopedCollectivePhase::~ScopedCollectivePhase() {
  g_phase.store(previous_, std::memory_order_relaxed);
}

}  // namespace memtrain::parallel
