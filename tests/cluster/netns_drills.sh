#!/usr/bin/env bash
# memtrain-train across two hosts of a local namespace cluster
# (cluster/local/hosts-up: one rank per network namespace, MPI over TCP on a
# veth pair), and the fault drills of docs/CLUSTER.md on it:
#   two_hosts  a 2-host job gives the single-host 2-rank job's losses at every
#              step and the same final weights (exported safetensors), bitwise.
#   kill       rank 1 SIGKILLed mid-training -> the job ends well within
#              the collective timeout (--step_timeout, --checkpoint_timeout), rank 0's log names the collective it was
#              left waiting in, and --resume=auto finishes with the
#              uninterrupted run's losses.
#   cut_link   host 1's link set down mid-training -> the job ends within
#              the collective timeout (mpirun's keep-alive notices the host),
#              naming the lost host and the collective rank 0 was stuck in;
#              with the link back up --resume=auto finishes with the
#              uninterrupted run's losses.
#   preempt    SIGTERM to every rank (what SLURM sends at preemption) while
#              they train: each saves at the next step boundary, the job
#              exits 75, and --resume=auto finishes with the uninterrupted
#              run's losses (the report of launch/signals.h does not get in
#              the way of a real preemption).
#   rollback   --resume=<older checkpoint> with a new --lr, saving as it goes:
#              the old timeline's later checkpoint is set aside, the new ones
#              are kept, `latest` is the new timeline's, and --resume=auto
#              continues it with the losses of a run that never stopped.
# Each scenario brings up its own hosts and removes them (hosts-down) on exit.
# Exit 77 (skip) without root or network namespaces.
#
#   netns_drills.sh BIN_DIR MPIEXEC "MPIEXEC_FLAGS" SCENARIO
set -euo pipefail
bin="$1" mpiexec="$2" mpi_flags="$3" scenario="$4"
cluster_local="$(cd "$(dirname "$0")/../../cluster/local" && pwd)"
if [[ $(id -u) -ne 0 ]] || ! ip netns list >/dev/null 2>&1; then
  echo "SKIP: needs root and ip netns (network namespaces)"
  exit 77
fi
work="$(mktemp -d)"
fail() { echo "FAIL: $*"; exit 1; }
show() { tail -n 20 "${work}/$1.log" "${work}/$1".rank*.log; }  # mpirun's and the ranks' logs
hosts="${work}/hosts"
cleanup() {
  [[ ! -f "${hosts}/namespaces" ]] || "${cluster_local}/hosts-down" "${hosts}"
  rm -rf "${work}"
}
trap cleanup EXIT
trap "exit 143" TERM INT HUP  # so that cleanup runs when ctest stops the test
if ! "${cluster_local}/hosts-up" 2 "${hosts}" >"${work}/hosts-up.log" 2>&1; then
  if grep -q "Operation not permitted" "${work}/hosts-up.log"; then
    echo "SKIP: network namespaces cannot be made here: $(head -1 "${work}/hosts-up.log")"
    exit 77
  fi
  cat "${work}/hosts-up.log"; fail "hosts-up failed"
fi

"${bin}/memtrain-prepare" --corpus=demo --demo_documents=200 --vocab_size=500 --output="${work}/demo.h5" \
  --progress=false 2>"${work}/prepare.log" || { cat "${work}/prepare.log"; exit 1; }

steps=12
# train WHERE NAME FLAGS...: WHERE is `hosts` (one rank per namespace host) or
# `local` (both ranks here). Each rank records its PID in NAME.rank<R>.pid and
# its network namespace in NAME.rank<R>.ns, writes its log to NAME.rank<R>.log
# itself (mpirun's output forwarding loses a dying rank's last lines under
# load; mpirun's own messages go to NAME.log), and is bound to one core, so it
# runs 1 thread wherever it is: LibTorch's CPU reductions depend on the thread
# count (2 threads per rank on the hosts vs 1 here changed losses in the 7th
# digit by step 10).
# The exit status is the caller's.
train() {
  local where="$1" name="$2"; shift 2
  local launcher
  if [[ ${where} == hosts ]]; then launcher="${hosts}/mpirun"; else launcher="${mpiexec} ${mpi_flags}"; fi
  # shellcheck disable=SC2016,SC2086
  ${as_process:-} ${launcher} -n 2 sh -c 'r="$0.rank${OMPI_COMM_WORLD_RANK}"; echo $$ >"$r.pid"; ip netns identify $$ >"$r.ns"; shift; exec taskset -c $((OMPI_COMM_WORLD_RANK % $(nproc))) "$@" >"$r.log" 2>&1' \
    "${work}/${name}" -- "${bin}/memtrain-train" --train_data="${work}/demo.h5" --steps="${steps}" \
    --encoder_layers=0 --decoder_layers=2 --model_dim=32 --heads=2 --ffn_dim=64 --knn_layers=1 \
    --knn_memory_size=64 --knn_top_k=4 --dropout=0.1 --streams=2 --segment_length=16 --lr_schedule=constant \
    --warmup_steps=0 --lr=3e-3 --unused_parameters=zero --log_every=1 --metrics="${work}/${name}.jsonl" "$@" \
    >"${work}/${name}.log" 2>&1
}

# Every step of run $2 must have the loss of the same step of run $1 (bitwise).
same_losses_py="$(cd "$(dirname "$0")/../common" && pwd)/same_losses.py"
same_losses() { python3 "${same_losses_py}" "$1" "$2"; }

# Starts run NAME in the background on the hosts and waits until it logged
# step 4 (mid-training); sets `pid` to mpirun's.
start_long_run() {
  local name="$1"; shift
  as_process="exec" train hosts "${name}" "$@" &
  pid=$!
  until [[ -s "${work}/${name}.jsonl" && $(grep -c '"train"' "${work}/${name}.jsonl") -ge 4 ]]; do
    kill -0 "${pid}" 2>/dev/null || { show "${name}"; fail "${name} ended before the fault"; }
    sleep 0.1
  done
}

# Waits for mpirun ($pid) at most $1 seconds; sets `status` and `took` (seconds
# since $2, a `date +%s.%N`). Past the bound the job is killed and the test fails.
wait_job() {
  local bound="$1" since="$2" name="$3"
  local deadline=$((SECONDS + bound))
  while kill -0 "${pid}" 2>/dev/null && [[ ${SECONDS} -lt ${deadline} ]]; do sleep 0.1; done
  if kill -0 "${pid}" 2>/dev/null; then
    kill -KILL "${pid}"
    wait "${pid}" || true
    show "${name}"
    fail "${name}: the job was still running ${bound} s after the fault"
  fi
  status=0; wait "${pid}" || status=$?
  took=$(python3 -c "import time; print(f'{time.time() - ${since}:.2f}')")
  python3 -c "import sys; sys.exit(${took} >= ${bound})" || fail "${name}: the job ended ${took} s after the fault (bound ${bound} s)"
}

ckpt="${work}/ckpt"

# After a stop: --resume=auto from the newest checkpoint for 4 more steps
# must give every step the loss of a run that never stopped. Extra flags go
# to the resumed run.
resume_matches_uninterrupted() {
  stopped_at=$(readlink "${ckpt}/latest")
  steps=$(( 10#${stopped_at#step-} + 4 ))
  train hosts whole || { show "whole"; fail "the uninterrupted run failed"; }
  train hosts resumed --checkpoint_dir="${ckpt}" --save_knn_memory --resume=auto --resume_changed=steps "$@" \
    || { show "resumed"; fail "the resumed run failed"; }
  grep -q "resumed from .*${stopped_at}" "${work}/resumed.rank0.log" || fail "did not resume from ${stopped_at}"
  same_losses "${work}/whole.jsonl" "${work}/resumed.jsonl"
}

# Rank 0's report of the collective it waits in, as the watchdog describes a
# call (parallel/collective_watchdog.cpp, DescribeCall): the collective, its
# operation where it has one ("allreduce(sum)", "allgatherv"), its sequence
# number and group. Which one depends on where rank 1 dies: a checkpoint's
# allgatherv as well as a step's allreduce.
pending_collective="rank 0 .*collectives pending: [a-z_]+(\([a-z_]+\))? #[0-9]+ on group '"

case "${scenario}" in
  two_hosts)
    train local single --save_dir="${work}/single_model" || { show "single"; fail "the single-host run failed"; }
    train hosts spread --save_dir="${work}/spread_model" || { show "spread"; fail "the 2-host run failed"; }
    # Each rank ran in its own namespace, on its own address.
    for rank in 0 1; do
      cmp -s "${hosts}/ns.${rank}" "${work}/spread.rank${rank}.ns" || fail "rank ${rank} did not run in host ${rank}"
    done
    same_losses "${work}/single.jsonl" "${work}/spread.jsonl"
    "${bin}/memtrain-ckpt" export --format=safetensors --output="${work}/single.safetensors" "${work}/single_model"
    "${bin}/memtrain-ckpt" export --format=safetensors --output="${work}/spread.safetensors" "${work}/spread_model"
    cmp "${work}/single.safetensors" "${work}/spread.safetensors" || fail "the final weights differ"
    echo "final weights equal (safetensors, bitwise)" ;;
  kill)
    train hosts whole || { show "whole"; fail "the uninterrupted run failed"; }
    timeout=20
    steps=400  # long enough to be killed mid-run
    start_long_run killed --checkpoint_dir="${ckpt}" --save_knn_memory --save_every_steps=2 --step_timeout="${timeout}" --checkpoint_timeout="${timeout}"
    since=$(date +%s.%N)
    kill -KILL "$(cat "${work}/killed.rank1.pid")"
    wait_job "${timeout}" "${since}" killed
    [[ ${status} -ne 0 ]] || fail "the job survived the kill"
    echo "job ended ${took} s after rank 1 was killed (exit ${status}; step and checkpoint timeouts ${timeout} s)"
    # mpirun's SIGTERM is a preemption request with --checkpoint_dir; the
    # report of where rank 0 waits must come anyway (launch/signals.h).
    grep -E "${pending_collective}" "${work}/killed.rank0.log" \
      || { show "killed"; fail "rank 0's log does not name the collective it waited in"; }
    resume_matches_uninterrupted --save_every_steps=2 ;;
  cut_link)
    timeout=20
    steps=400
    start_long_run cut --checkpoint_dir="${ckpt}" --save_knn_memory --save_every_steps=2 --step_timeout="${timeout}" --checkpoint_timeout="${timeout}"
    since=$(date +%s.%N)
    ip -n "$(cat "${hosts}/ns.1")" link set eth0 down
    # mpirun's keep-alive (hosts-up) finds the silent host in about 5 s and
    # tears the job down, before memtrain's watchdog would.
    wait_job "${timeout}" "${since}" cut
    [[ ${status} -ne 0 ]] || fail "the job survived the cut"
    echo "job ended ${took} s after the link was cut (exit ${status}; step and checkpoint timeouts ${timeout} s)"
    grep -E "${pending_collective}" "${work}/cut.rank0.log" \
      || { show "cut"; fail "no line names the collective rank 0 was stuck in"; }
    # mpirun says it lost the cut host's daemon, in one of two wordings: seen
    # under CI load (ctest -j 2) instead of "lost communication ... Remote
    # daemon ... on node 10.77.0.2", the lost-daemon message of start-up.
    grep -E "Remote daemon.* on node 10\.77\.0\.2|ORTE was unable to reliably start one or more daemons" \
      "${work}/cut.log" || { show "cut"; fail "mpirun does not say it lost the cut host's daemon"; }
    ip -n "$(cat "${hosts}/ns.1")" link set eth0 up
    resume_matches_uninterrupted --save_every_steps=2 ;;
  preempt)
    steps=400
    start_long_run preempted --checkpoint_dir="${ckpt}" --save_knn_memory
    kill -TERM "$(cat "${work}/preempted.rank0.pid")" "$(cat "${work}/preempted.rank1.pid")"
    since=$(date +%s.%N)
    wait_job 60 "${since}" preempted
    [[ ${status} -eq 75 ]] || { show preempted; fail "exit ${status}, want 75"; }
    stopped_at=$(readlink "${ckpt}/latest")
    echo "stopped with exit 75 at ${stopped_at}, ${took} s after the signal"
    resume_matches_uninterrupted ;;
  rollback)
    train hosts first --checkpoint_dir="${ckpt}" --save_knn_memory --save_every_steps=3 --keep_last=10 \
      || { show "first"; fail "the first run failed"; }
    # Back to step 6 with another learning rate: a new timeline from there.
    train hosts rolled --checkpoint_dir="${ckpt}" --save_knn_memory --save_every_steps=3 --keep_last=10 --lr=1e-3 \
      --resume="${ckpt}/step-00000006" || { show "rolled"; fail "the rollback run failed"; }
    # Committing the new step 9 set the old step 12 aside and replaced the old 9.
    [[ -d "${ckpt}/step-00000012.abandoned" ]] || { ls "${ckpt}"; fail "the old timeline's step 12 was not set aside"; }
    [[ $(readlink "${ckpt}/latest") == step-00000012 ]] || { ls -l "${ckpt}"; fail "latest is not step 12"; }
    for step in 00000009 00000012; do
      grep -q '"lr": 0.001' "${ckpt}/step-${step}/trainer.json" \
        || { cat "${ckpt}/step-${step}/trainer.json"; fail "step ${step} is not the new timeline's"; }
    done
    # --resume=auto continues the new timeline: its steps 13..15 are those of
    # the rollback run carried on without a stop.
    steps=15
    train hosts straight --checkpoint_dir="${work}/straight" --save_knn_memory --lr=1e-3 --resume="${ckpt}/step-00000006" \
      || { show "straight"; fail "the straight run failed"; }
    train hosts continued --checkpoint_dir="${ckpt}" --save_knn_memory --save_every_steps=3 --keep_last=10 --lr=1e-3 --resume=auto --resume_changed=steps \
      || { show "continued"; fail "the continued run failed"; }
    grep -q "resumed from .*step-00000012\b" "${work}/continued.rank0.log" || fail "did not resume from the new step 12"
    same_losses "${work}/straight.jsonl" "${work}/continued.jsonl" ;;
  *) echo "unknown scenario ${scenario}"; exit 2 ;;
esac
echo "PASS ${scenario}"
