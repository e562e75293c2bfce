#!/usr/bin/env bash
# cluster/slurm/train-one-node.sbatch, unchanged, on a real local SLURM
# cluster (cluster/local/slurm-up), preempted the two ways SLURM does it; each
# run must checkpoint, be requeued, resume and end with every step's loss, the
# final one included, equal (bitwise, as logged) to an uninterrupted job's:
#   requeue    `scontrol requeue` mid-run (what preemption in REQUEUE mode
#              does): SIGTERM to the batch shell and every rank; SLURM
#              requeues the job itself.
#   timelimit  --time=1 --signal=B:USR1@58: SLURM's USR1 before the time
#              limit; the batch script requeues the job from the marker. The
#              ranks are held (SIGSTOP) until SLURM's timer fires.
# SLURM starts a requeued job 121 s later; the test moves that to now. Exit
# 77 (ctest: skipped) when no local cluster can be started.
#
#   slurm_preemption.sh BIN_DIR
set -euo pipefail
bin="$(cd "$1" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
cleanup() {
  "${root}/cluster/local/slurm-down" "${work}/slurm" >/dev/null 2>&1 || true
  rm -rf "${work}"
}
trap cleanup EXIT

if ! "${root}/cluster/local/slurm-up" "${work}/slurm" >"${work}/slurm.env" 2>"${work}/slurm-up.log"; then
  cat "${work}/slurm-up.log"
  echo "SKIP: the local SLURM cluster (slurmctld, slurmd, munged) could not start; see above"
  exit 77
fi
# shellcheck disable=SC1091  # written by slurm-up above
source "${work}/slurm.env"
# SLURM checks time limits every 30 s; its debug2 log says when (timelimit).
scontrol setdebug debug2

"${bin}/memtrain-prepare" --corpus=demo --demo_documents=200 --vocab_size=500 --output="${work}/demo.h5" \
  --progress=false 2>"${work}/prepare.log" || { cat "${work}/prepare.log"; exit 1; }
# The template runs build/bin/memtrain-train and sources cluster/ from where it was submitted.
mkdir -p "${work}/submit/build"
ln -s "${bin}" "${work}/submit/build/bin"
ln -s "${root}/cluster" "${work}/submit/cluster"

steps=6000
flags=(--train_data="${work}/demo.h5" --steps="${steps}" --encoder_layers=0 --decoder_layers=2 --model_dim=64
       --heads=2 --ffn_dim=128 --dropout=0.1 --streams=2 --segment_length=32 --lr_schedule=constant
       --warmup_steps=0 --lr=1e-3 --log_every=500)

submit() {  # name, sbatch options...; prints the job id
  local name="$1"; shift
  (cd "${work}/submit" && sbatch --parsable --job-name="${name}" "$@" cluster/slurm/train-one-node.sbatch \
    "${flags[@]}" --metrics="${work}/${name}.jsonl")
}
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
# wait_for JOB STATE SECONDS
wait_for() {
  local deadline=$((SECONDS + $3))
  while [[ "$(state "$1")" != "$2" ]]; do
    if ((SECONDS > deadline)); then
      echo "job $1 is $(state "$1"), not $2, after $3 s; its log:"
      cat "${work}"/submit/*-"$1".out
      exit 1
    fi
    sleep 0.2
  done
}
# A requeued job waits 121 s (BeginTime); start it now, with time to finish.
restart_now() {
  local deadline=$((SECONDS + 60))
  until [[ "$(state "$1")" == PENDING && "$(scontrol show job "$1" | grep -o 'Restarts=[0-9]*')" == Restarts=1 ]]; do
    if ((SECONDS > deadline)); then
      echo "job $1 was not requeued within 60 s; its log:"
      cat "${work}"/submit/*-"$1".out
      exit 1
    fi
    sleep 0.2
  done
  # slurmd refuses a job whose credential was revoked in the same second
  # ("Job credential revoked"): the requeue revoked the last one.
  sleep 2
  scontrol update JobId="$1" StartTime=now TimeLimit=10
}
log_of() { cat "${work}/submit/$1-$2.out"; }
expect_in_log() {  # name, job, extended regex
  log_of "$1" "$2" | grep -Eq "$3" || { echo "$1: no line matching '$3' in its log:"; log_of "$1" "$2"; exit 1; }
}

# The preempted job logged every step, the last included, each with the
# uninterrupted job's loss (tests/common/same_losses.py: bitwise).
same_losses() {
  local said
  said="$(python3 "${root}/tests/common/same_losses.py" "${work}/whole.jsonl" "${work}/$1.jsonl")" \
    || { echo "$1: ${said}"; exit 1; }
  [[ "${said}" == "steps 1..${steps}:"* ]] || { echo "$1: ${said}, not steps 1..${steps}"; exit 1; }
  echo "$1: ${said}"
}

# The checks every preempted job must pass: one requeue, a resume from the
# step the marker named, a completed job, no marker left.
check_resumed() {  # name, job, the signal the ranks got (an extended regex)
  local name="$1" job="$2"
  expect_in_log "${name}" "${job}" "\[preemptible\] SIG$3: step-0*([0-9]+) saved in"
  local saved
  saved="$(log_of "${name}" "${job}" | grep -Eo "\[preemptible\] SIG$3: step-0*[0-9]+ saved in" | head -1 \
    | sed -E 's/.*step-0*([0-9]+) saved in/\1/')"
  expect_in_log "${name}" "${job}" "restart 1,"
  expect_in_log "${name}" "${job}" "resumed from .*step-0*${saved} at step ${saved}\$"
  [[ "$(state "${job}")" == COMPLETED ]]
  [[ ! -e "${work}/submit/runs/${name}/${job}/checkpoints/PREEMPTED.json" ]] \
    || { echo "${name}: the finished run left its marker"; exit 1; }
  echo "${name}: preempted at step ${saved}, requeued, resumed, completed"
  same_losses "${name}"
}

# submit_held NAME OPTIONS...: submits the job and holds its ranks (SIGSTOP,
# by their pids) at their first step, until release_ranks sees the batch
# script log the signal: on a loaded machine slurmctld has taken 7 s to answer
# sbatch or scontrol requeue, longer than the job trains. sbatch runs in the
# background so that its answer does not delay the hold. Signals sent to held
# ranks wait, pending; SLURM's own SIGCONT (before its SIGTERM) continues
# them earlier. Sets `job` and `held`.
submit_held() {
  local name="$1" deadline=$((SECONDS + 60))
  submit "$@" >"${work}/${name}.id" &
  local submitter=$!
  until [[ -s "${work}/${name}.jsonl" ]]; do
    ((SECONDS < deadline)) || { echo "${name}: no step in 60 s"; cat "${work}"/submit/"${name}"-*.out; exit 1; }
    sleep 0.05
  done
  # None left: the signal came already and they stopped.
  held="$(pgrep -f "^[^ ]*/memtrain-train .*--metrics=${work}/${name}.jsonl" | tr '\n' ' ' || true)"
  # shellcheck disable=SC2086
  [[ -z "${held}" ]] || kill -STOP ${held} 2>/dev/null || true
  wait "${submitter}"
  job="$(cat "${work}/${name}.id")"
}
release_ranks() {
  local deadline=$((SECONDS + 60))
  until log_of "$1" "$2" | grep -q "\[preemptible\] got SIG$3"; do
    ((SECONDS < deadline)) || break
    sleep 0.2
  done
  # shellcheck disable=SC2086
  [[ -z "${held}" ]] || kill -CONT ${held} 2>/dev/null || true
  log_of "$1" "$2" | grep -q "\[preemptible\] got SIG$3" || { echo "$1: no SIG$3 in 60 s"; log_of "$1" "$2"; exit 1; }
}

whole="$(submit whole)"
wait_for "${whole}" COMPLETED 120

# requeue: mid-run.
submit_held requeue
scontrol requeue "${job}"
release_ranks requeue "${job}" TERM
restart_now "${job}"
wait_for "${job}" COMPLETED 120
expect_in_log requeue "${job}" "already requeued by SLURM"
# The ranks get SLURM's SIGTERM and the script's forwarded SIGUSR1, in either order.
check_resumed requeue "${job}" "(TERM|USR1)"

# timelimit: with --time=1, a lead of 58 s is within SLURM's window (it sends
# the warning at the first of its 30-s checks where the time left is at most
# the lead plus 30 s), so the USR1 comes at the first check after the start.
# Neither too early (before the ranks handle signals, about a second after
# their start) nor after the job has trained: it is submitted 8 s before the
# next check (from slurmctld's debug2 log), and its ranks are held until then.
tick_log="${work}/slurm/logs/slurmctld.log"
deadline=$((SECONDS + 40))
until grep -q "Testing job time limits" "${tick_log}"; do
  ((SECONDS < deadline)) || { echo "timelimit: slurmctld logged no time-limit check in 40 s"; exit 1; }
  sleep 0.5
done
last_tick="$(date -d "$(grep "Testing job time limits" "${tick_log}" | tail -1 | sed -E 's/^\[([^]]*)\].*/\1/')" +%s)"
wait_s=$(( (last_tick + 30 - 8 - $(date +%s)) % 30 ))
((wait_s >= 0)) || wait_s=$((wait_s + 30))
sleep "${wait_s}"
submit_held timelimit --time=1 --signal=B:USR1@58
release_ranks timelimit "${job}" USR1
restart_now "${job}"
wait_for "${job}" COMPLETED 120
expect_in_log timelimit "${job}" "requeued job ${job} \(restart 1\)"
check_resumed timelimit "${job}" USR1
