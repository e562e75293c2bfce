// File: launch/signals.h
//
// What a rank says when it is terminated from outside. When one rank dies,
// mpirun (or srun) tears the others down with SIGTERM; without this report
// their logs would end mid-line with no hint of where they were. The handler
// writes, with async-signal-safe calls only, the signal, the rank and the
// collectives pending in the process (parallel/collective_watchdog.h), then
// dies by the same signal so the exit status stays truthful.
//
// SIGTERM here means "being killed". Graceful preemption (checkpoint, then
// exit with a requeue code) uses SIGUSR1/SIGUSR2 and is the trainer's.
#ifndef MEMTRAIN_LAUNCH_SIGNALS_H_
#define MEMTRAIN_LAUNCH_SIGNALS_H_

namespace memtrain::launch {

/// Installs the report for SIGTERM, SIGINT and SIGHUP. `rank` appears in it.
void InstallTerminationReport(int rank);

}  // namespace memtrain::launch

#endif  // MEMTRAIN_LAUNCH_SIGNALS_H_
