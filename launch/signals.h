// File: launch/signals.h
//
// What a rank says when it is terminated from outside. When one rank dies,
// mpirun (or srun) tears the others down with SIGTERM; without this report
// their logs would end mid-line with no hint of where they were. The handler
// writes, with async-signal-safe calls only, the signal, the rank and the
// collectives pending in the process (parallel/collective_watchdog.h), then
// dies by the same signal so the exit status stays truthful.
//
// Preemption (memtrain-train with --checkpoint_dir): InstallPreemptionRequest
// makes SIGUSR1, SIGUSR2 and SIGTERM only set a flag (nothing else is
// async-signal-safe, and saving inside a handler can interrupt backward or a
// collective: Lightning#21406). The trainer polls PreemptionSignal() at each
// step boundary, the ranks agree, save a checkpoint, and memtrain-train exits
// with kRequeueExitCode. SIGTERM takes part because srun and SLURM send it
// at preemption; a second SIGTERM means "being killed now" and falls back to
// the report above. SIGINT and SIGHUP always report and die.
//
// mpirun's tear-down after a peer died is a SIGTERM too, followed by SIGKILL
// a second later, and the rank, stuck in a collective with the dead peer,
// never reaches a step boundary. So the preemption line also lists the
// collectives pending, and a second line lists them again once the same ones
// have stayed pending across two polls 100 ms apart (the rank may have
// entered the stuck collective after the signal). A real preemption is
// unaffected: the lines are information, the rank still saves at its next
// step boundary.
#ifndef MEMTRAIN_LAUNCH_SIGNALS_H_
#define MEMTRAIN_LAUNCH_SIGNALS_H_

namespace memtrain::launch {

/// Installs the report for SIGTERM, SIGINT and SIGHUP. `rank` appears in it.
void InstallTerminationReport(int rank);

/// memtrain-train's exit status after a preemption checkpoint: 75, EX_TEMPFAIL
/// of sysexits.h ("temporary failure; the user is invited to retry"). Scripts
/// decide on the marker the checkpoint directory then holds
/// (checkpoints::kPreemptedMarkerName), not on this status: when a launcher
/// tears a job down, which rank's status it reports is a race (cluster/).
inline constexpr int kRequeueExitCode = 75;

/// Call after InstallTerminationReport: SIGUSR1, SIGUSR2 and (the first)
/// SIGTERM now set the preemption flag instead.
void InstallPreemptionRequest();
/// The first signal that requested preemption, or 0. Call it at step boundaries:
/// a call after the signal is how the rank says it reached one.
int PreemptionSignal();

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_SIGNALS_H_
