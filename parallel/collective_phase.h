// File: parallel/collective_phase.h
//
// What the job is doing, so that each kind of work gets its own collective
// timeout. A gradient bucket should be judged in minutes; a checkpoint save,
// during which rank 0 writes the model while the others wait in a
// collective, or an evaluation pass, may need an hour. One timeout for both
// either aborts a healthy job at every save or waits an hour on a dead rank
// mid-step (issue 16).
//
//   {
//     ScopedCollectivePhase phase(CollectivePhase::kCheckpoint);
//     world.allreduce(...);   // judged by CommunicatorOptions::timeouts.checkpoint
//   }                         // back to the enclosing phase
//
// The phase is process-wide, not per thread: a helper thread's collectives
// (the gradient reducer's) belong to what the job is doing. Every
// communicator reads it when a collective starts and gives the watchdog that
// phase's deadline; a timeout report names the phase and the flag that sets
// its timeout. Until a guard says otherwise a process is in kStartup. All
// ranks must enter a phase before the first collective of it (guards sit at
// points every rank passes in the same order, like the collectives).
#ifndef MEMTRAIN_PARALLEL_COLLECTIVE_PHASE_H_
#define MEMTRAIN_PARALLEL_COLLECTIVE_PHASE_H_

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace memtrain::parallel {

enum class CollectivePhase {
  kStartup,     ///< rendezvous, the first collectives, opening the corpus, a resume
  kStep,        ///< a training step: gradient buckets, the loss all-reduce, stop flags
  kCheckpoint,  ///< writing, verifying and committing a checkpoint or a model
  kEvaluation,  ///< validation, memtrain-eval, building a kNN memory
};

/// "start-up", "step", "checkpoint", "evaluation".
absl::string_view CollectivePhaseName(CollectivePhase phase);
/// The flag binaries set its timeout with: "--startup_timeout", ...
absl::string_view CollectivePhaseFlag(CollectivePhase phase);

/// How long a collective may take in each phase.
struct PhaseTimeouts {
  absl::Duration startup = absl::Minutes(30);
  absl::Duration step = absl::Minutes(10);
  absl::Duration checkpoint = absl::Minutes(60);
  absl::Duration evaluation = absl::Minutes(60);

  absl::Duration For(CollectivePhase phase) const;
  /// The longest of the four (a backend's own, fixed timeout must exceed it).
  absl::Duration Longest() const;
};

/// The process's phase now.
CollectivePhase CurrentCollectivePhase();

/// Puts the process in `phase` for the guard's lifetime; the previous phase
/// is restored after. Guards nest.
class ScopedCollectivePhase {
 public:
  explicit ScopedCollectivePhase(CollectivePhase phase);
  ~ScopedCollectivePhase();
  ScopedCollectivePhase(const ScopedCollectivePhase&) = delete;
  ScopedCollectivePhase& operator=(const ScopedCollectivePhase&) = delete;

 private:
  const CollectivePhase previous_;
};

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_COLLECTIVE_PHASE_H_
