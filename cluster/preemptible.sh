# shellcheck shell=bash
# File: cluster/preemptible.sh (sourced, not run)
#
# The preemption logic every launcher script of cluster/ shares: the SLURM
# templates (cluster/slurm/*.sbatch) and the mpirun wrapper
# (cluster/mpirun-preemptible). docs/CLUSTER.md explains why each step is
# there.
#
#   source cluster/preemptible.sh
#   checkpoints="$(memtrain_checkpoint_dir)"
#   memtrain_run_preemptible "${checkpoints}" srun --mpi=pmix build/bin/memtrain-train \
#     --checkpoint_dir="${checkpoints}" --resume=auto ...
#   memtrain_slurm_finish "${checkpoints}"      # or memtrain_mpirun_finish
#
# The decision to continue a run is the marker memtrain-train writes after
# committing a checkpoint on a stop request (PREEMPTED.json in the checkpoint
# directory, checkpoints/checkpoint.h), never an exit status: when a launcher
# tears the job down, which rank's status it reports (75, 1, 137, 143) is a
# race.

readonly MEMTRAIN_PREEMPTED_MARKER=PREEMPTED.json

_memtrain_log() { echo "[preemptible] $*" >&2; }

# The checkpoint directory of this job: $MEMTRAIN_CHECKPOINT_DIR when set
# (e.g. to continue another job's run), else one per job and per array task,
# runs/<job name>/<job id or array job id_task id>/checkpoints. A requeued job
# keeps its id, so it finds its own checkpoints and nobody else's.
memtrain_checkpoint_dir() {
  if [[ -n "${MEMTRAIN_CHECKPOINT_DIR:-}" ]]; then
    echo "${MEMTRAIN_CHECKPOINT_DIR}"
  elif [[ -n "${SLURM_ARRAY_JOB_ID:-}" ]]; then
    echo "runs/${SLURM_JOB_NAME}/${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}/checkpoints"
  else
    echo "runs/${SLURM_JOB_NAME:-memtrain}/${SLURM_JOB_ID:-$$}/checkpoints"
  fi
}

# A stop request (SIGUSR1, SIGUSR2 or SIGTERM to this shell) goes to the
# launcher as SIGUSR1, which srun and mpirun both forward to every rank. Never
# SIGTERM: srun answers it by killing the step, mpirun by killing the ranks.
# The traps are set when this file is sourced, so that a request arriving
# before the launch does not kill the script (bash's default for USR1).
_memtrain_launcher_pid=""
_memtrain_stop_signal=""
_memtrain_stop() {
  _memtrain_stop_signal="$1"
  [[ -n "${_memtrain_launcher_pid}" ]] || return 0
  _memtrain_log "got SIG$1: asking every rank to checkpoint and stop (SIGUSR1 to pid ${_memtrain_launcher_pid})"
  kill -USR1 "${_memtrain_launcher_pid}" 2>/dev/null
}
for _memtrain_signal in USR1 USR2 TERM; do
  # shellcheck disable=SC2064  # the signal's name is meant to be expanded now
  trap "_memtrain_stop ${_memtrain_signal}" "${_memtrain_signal}"
done

# memtrain_run_preemptible CHECKPOINT_DIR COMMAND...: runs COMMAND (the
# launcher: srun or mpirun of memtrain-train --checkpoint_dir=CHECKPOINT_DIR)
# until it ends, forwarding stop requests to it, and returns its exit status.
# A marker left by an earlier run is removed first, so a run that fails before
# it trains is not taken for a preempted one. A stop requested before the
# launch launches nothing (the ranks could not yet take the signal) and keeps
# the earlier run's marker: returns 75.
memtrain_run_preemptible() {
  local checkpoints="$1" status
  shift
  if [[ -n "${_memtrain_stop_signal}" ]]; then
    _memtrain_log "got SIG${_memtrain_stop_signal} before the run started: not starting it"
    return 75
  fi
  mkdir -p "${checkpoints}"
  rm -f "${checkpoints}/${MEMTRAIN_PREEMPTED_MARKER}"
  "$@" &
  _memtrain_launcher_pid=$!
  # `wait` returns early when a trapped signal arrives: wait again until the
  # launcher has really ended, then collect its status. Once a stop was
  # requested and the marker says the checkpoint is committed, the launcher
  # gets 10 s more: mpirun that got SIGTERM too (SLURM signals the whole
  # job) would otherwise sit out 2 x odls_base_sigkill_timeout after its
  # ranks have exited, past SLURM's SIGKILL, and the script could not requeue.
  local grace=100
  while kill -0 "${_memtrain_launcher_pid}" 2>/dev/null; do
    if [[ -z "${_memtrain_stop_signal}" ]]; then
      wait "${_memtrain_launcher_pid}"
    elif [[ -e "${checkpoints}/${MEMTRAIN_PREEMPTED_MARKER}" ]] && ((--grace < 0)); then
      _memtrain_log "checkpoint committed but the launcher still runs after 10 s: SIGKILL to it"
      kill -KILL "${_memtrain_launcher_pid}" 2>/dev/null
      break  # it stays a zombie, which kill -0 still finds, until `wait` below
    else
      sleep 0.1
    fi
  done
  wait "${_memtrain_launcher_pid}"
  status=$?
  _memtrain_launcher_pid=""
  return "${status}"
}

# memtrain_preempted CHECKPOINT_DIR: true when the run stopped at a committed
# checkpoint and wants to be continued; says which step, what asked, and how
# long saving took (a preemption lead time must exceed the step plus the save).
memtrain_preempted() {
  local marker="$1/${MEMTRAIN_PREEMPTED_MARKER}"
  [[ -e "${marker}" ]] || return 1
  _memtrain_log "$(memtrain_marker_field "$1" signal_name): $(memtrain_marker_field "$1" checkpoint)" \
    "saved in $(memtrain_marker_field "$1" save_seconds) s after a step of" \
    "$(memtrain_marker_field "$1" step_seconds) s (${marker})"
  return 0
}

# memtrain_marker_field CHECKPOINT_DIR KEY: one field of the marker (a JSON line).
memtrain_marker_field() {
  sed -E -n "s/.*\"$2\":\"?([^\",}]*).*/\1/p" "$1/${MEMTRAIN_PREEMPTED_MARKER}"
}

# memtrain_slurm_finish CHECKPOINT_DIR STATUS: ends the batch script. With
# the marker, requeues this job (or array task) unless SLURM already did
# (scontrol requeue, preemption in REQUEUE mode) and exits 0; at most
# $MEMTRAIN_MAX_REQUEUES times (default 20, counted by SLURM_RESTART_COUNT).
# Without it, exits with STATUS (the run finished, or failed: no requeue).
memtrain_slurm_finish() {
  local checkpoints="$1" status="$2" job restarts
  if ! memtrain_preempted "${checkpoints}"; then
    _memtrain_log "no ${MEMTRAIN_PREEMPTED_MARKER} in ${checkpoints}: not requeueing; exit status ${status}"
    exit "${status}"
  fi
  if (( ${SLURM_RESTART_COUNT:-0} >= ${MEMTRAIN_MAX_REQUEUES:-20} )); then
    _memtrain_log "requeued ${SLURM_RESTART_COUNT} times already (MEMTRAIN_MAX_REQUEUES): not again"
    exit 1
  fi
  job="${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"
  job="${job:-${SLURM_JOB_ID}}"
  # Our own requeue terminates this script with SIGTERM: nothing to forward now.
  trap '' TERM
  if scontrol requeue "${job}" 2>/dev/null; then
    _memtrain_log "requeued job ${job} (restart $(( ${SLURM_RESTART_COUNT:-0} + 1 )))"
    exit 0
  fi
  restarts="$(scontrol show job "${job}" 2>/dev/null | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')"
  if (( ${restarts:-0} > ${SLURM_RESTART_COUNT:-0} )); then
    _memtrain_log "job ${job} was already requeued by SLURM (restart ${restarts})"
    exit 0
  fi
  _memtrain_log "scontrol requeue ${job} failed; resubmit to continue from ${checkpoints}"
  exit 1
}

# memtrain_mpirun_finish CHECKPOINT_DIR STATUS: ends a plain mpirun wrapper:
# 75 (EX_TEMPFAIL, "run me again") with the marker, else STATUS.
memtrain_mpirun_finish() {
  if memtrain_preempted "$1"; then
    _memtrain_log "checkpoint committed: exit 75 (rerun with --resume=auto to continue)"
    exit 75
  fi
  exit "$2"
}
