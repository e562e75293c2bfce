#!/usr/bin/env bash
# cluster/slurm/train-one-node.sbatch, unchanged, on a real local SLURM
# cluster (cluster/local/slurm-up), preempted the two ways SLURM does it; each
# run must checkpoint, be requeued, resume and end with every step's loss, the
# final one included, equal (bitwise, as logged) to an uninterrupted job's:
#   requeue    `scontrol requeue` mid-run (what preemption in REQUEUE mode
#              does): SIGTERM to the batch shell and every rank; SLURM
#              requeues the job itself.
#   timelimit  --time=1 --signal=B:USR1@58: SLURM's USR1 before the time
#              limit; the batch script requeues the job from the marker.
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
# SLURM checks time limits every 30 s; its debug2 log says when (see timelimit).
scontrol setdebug debug2

"${bin}/memtrain-prepare" --corpus=demo --demo_documents=200 --vocab_size=500 --output="${work}/demo.h5" \
  --progress=false 2>"${work}/prepare.log" || { cat "${work}/prepare.log"; exit 1; }
# The template runs build/bin/memtrain-train and sources cluster/ from where it was submitted.
mkdir -p "${work}/submit/build"
ln -s "${bin}" "${work}/submit/build/bin"
ln -s "${root}/cluster" "${work}/submit/cluster"

steps=3000
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
  scontrol update JobId="$1" StartTime=now TimeLimit=10
}
log_of() { cat "${work}/submit/$1-$2.out"; }
expect_in_log() {  # name, job, extended regex
  log_of "$1" "$2" | grep -Eq "$3" || { echo "$1: no line matching '$3' in its log:"; log_of "$1" "$2"; exit 1; }
}

# Every step the preempted job logged last must have the uninterrupted job's loss.
same_losses() {
  python3 - "${work}/whole.jsonl" "${work}/$1.jsonl" <<'PY'
import json, sys
def losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if r.get("kind") == "train"}
whole, preempted = losses(sys.argv[1]), losses(sys.argv[2])
last = max(whole)
if set(preempted) != set(whole):
    sys.exit(f"the preempted job logged steps {min(preempted)}..{max(preempted)} ({len(preempted)}), not 1..{last}")
bad = [s for s in whole if preempted[s] != whole[s]]
if bad:
    sys.exit(f"losses differ at {len(bad)} steps, first {bad[0]}: {preempted[bad[0]]} != {whole[bad[0]]}")
print(f"final loss {preempted[last]!r} at step {last} = the uninterrupted job's; all {last} steps equal")
PY
}

# The checks every preempted job must pass: one requeue, a resume from the
# step the marker named, a completed job, no marker left.
check_resumed() {  # name, job, the signal the ranks got
  local name="$1" job="$2"
  expect_in_log "${name}" "${job}" "\[preemptible\] SIG$3: step-0*([0-9]+) saved in"
  local saved
  saved="$(log_of "${name}" "${job}" | sed -En "s/.*\[preemptible\] SIG$3: step-0*([0-9]+) saved in.*/\1/p" | head -1)"
  expect_in_log "${name}" "${job}" "restart 1,"
  expect_in_log "${name}" "${job}" "resumed from .*step-0*${saved} at step ${saved}\$"
  [[ "$(state "${job}")" == COMPLETED ]]
  [[ ! -e "${work}/submit/runs/${name}/${job}/checkpoints/PREEMPTED.json" ]] \
    || { echo "${name}: the finished run left its marker"; exit 1; }
  echo "${name}: preempted at step ${saved} ($3), requeued, resumed, completed"
  same_losses "${name}"
}

whole="$(submit whole)"
wait_for "${whole}" COMPLETED 120

# requeue: as soon as the job has trained a step (the margin a loaded
# machine needs: this loop has been seen to notice 8 s late).
job="$(submit requeue)"
deadline=$((SECONDS + 60))
until [[ -s "${work}/requeue.jsonl" ]]; do
  ((SECONDS < deadline)) || { echo "requeue: no step in 60 s"; log_of requeue "${job}"; exit 1; }
  sleep 0.1
done
echo "requeue: scontrol requeue at $(date +%T.%N) after $(wc -l <"${work}/requeue.jsonl") steps"
scontrol requeue "${job}"
restart_now "${job}"
wait_for "${job}" COMPLETED 120
expect_in_log requeue "${job}" "already requeued by SLURM"
check_resumed requeue "${job}" TERM

# timelimit: SLURM signals at the first 30-s check after (start + 60 - 58 s);
# submit so that a check falls 5-6 s after the start (SLURM starts a job 1-2 s
# after its submission), mid-training.
tick_log="${work}/slurm/logs/slurmctld.log"
deadline=$((SECONDS + 40))
until grep -q "Testing job time limits" "${tick_log}"; do
  ((SECONDS < deadline)) || { echo "timelimit: slurmctld logged no time-limit check in 40 s"; exit 1; }
  sleep 0.5
done
last_tick="$(date -d "$(grep "Testing job time limits" "${tick_log}" | tail -1 | sed -E 's/^\[([^]]*)\].*/\1/')" +%s)"
wait_s=$(( (last_tick + 30 - 7 - $(date +%s)) % 30 ))
((wait_s >= 0)) || wait_s=$((wait_s + 30))
sleep "${wait_s}"
job="$(submit timelimit --time=1 --signal=B:USR1@58)"
restart_now "${job}"
wait_for "${job}" COMPLETED 120
expect_in_log timelimit "${job}" "requeued job ${job} \(restart 1\)"
check_resumed timelimit "${job}" USR1
