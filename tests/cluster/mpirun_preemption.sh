#!/usr/bin/env bash
# cluster/mpirun-preemptible around a 2-rank mpirun job of memtrain-train:
#   term-mpirun   SIGTERM to mpirun itself (what a scheduler or kill sends):
#                 mpirun passes it on to the ranks after
#                 odls_base_sigkill_timeout (raised by the wrapper) and exits
#                 1; the ranks checkpoint, the marker names SIGTERM, and the
#                 wrapper exits 75.
#   term-wrapper  SIGTERM to the wrapper: SIGUSR1 to mpirun, forwarded at once;
#                 checkpoint, marker (SIGUSR1), exit 75.
# Each is then rerun by the same command with --resume=auto: exit 0, no
# marker left, and every step's loss equal to an uninterrupted run's, bitwise.
#
#   mpirun_preemption.sh BIN_DIR MPIEXEC "MPIEXEC_FLAGS"
set -euo pipefail
bin="$1" mpiexec="$2" mpi_flags="$3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

"${bin}/memtrain-prepare" --corpus=demo --demo_documents=200 --vocab_size=500 --output="${work}/demo.h5" \
  --progress=false 2>"${work}/prepare.log" || { cat "${work}/prepare.log"; exit 1; }

ckpt="${work}/ckpt"
# The wrapper around mpirun of memtrain-train; $1 the metrics file's name.
# It replaces the calling shell: call it in a subshell, and `(run NAME) &`
# gives the wrapper's pid in $!.
# shellcheck disable=SC2086
run() {
  MEMTRAIN_SAVE_SECONDS=2 exec "${root}/cluster/mpirun-preemptible" "${ckpt}" \
    ${mpiexec} ${mpi_flags} -n 2 "${bin}/memtrain-train" --train_data="${work}/demo.h5" --steps=2000 \
    --encoder_layers=0 --decoder_layers=2 --model_dim=64 --heads=2 --ffn_dim=128 --dropout=0.1 --streams=2 \
    --segment_length=32 --lr_schedule=constant --warmup_steps=0 --lr=1e-3 --log_every=500 \
    --checkpoint_dir="${ckpt}" --resume=auto --metrics="${work}/$1.jsonl"
}

# The preempted and resumed run logged every step, the last included, each
# with the uninterrupted run's loss (tests/common/same_losses.py: bitwise).
same_losses() {
  local said
  said="$(python3 "${root}/tests/common/same_losses.py" "${work}/whole.jsonl" "${work}/preempted.jsonl")" \
    || { echo "${scenario}: ${said}"; exit 1; }
  [[ "${said}" == "steps 1..2000:"* ]] || { echo "${scenario}: ${said}, not steps 1..2000"; exit 1; }
  echo "${scenario}: ${said}"
}

(run whole) >"${work}/whole.log" 2>&1 || { tail -20 "${work}/whole.log"; exit 1; }
for scenario in term-mpirun term-wrapper; do
  rm -rf "${ckpt}" "${work}/preempted.jsonl"
  (run preempted) >"${work}/preempted.log" 2>&1 &
  wrapper=$!
  deadline=$((SECONDS + 60))
  # As soon as it trained a step: mpirun passes SIGTERM on only 2 s later.
  until [[ -s "${work}/preempted.jsonl" ]]; do
    ((SECONDS < deadline)) || { echo "no step in 60 s"; tail -20 "${work}/preempted.log"; exit 1; }
    sleep 0.1
  done
  case "${scenario}" in
    term-mpirun) kill -TERM "$(pgrep -P "${wrapper}")"; signal=SIGTERM ;;
    term-wrapper) kill -TERM "${wrapper}"; signal=SIGUSR1 ;;
  esac
  status=0
  wait "${wrapper}" || status=$?
  [[ ${status} -eq 75 ]] || { echo "${scenario}: the wrapper exited ${status}, not 75:"; tail -20 "${work}/preempted.log"; exit 1; }
  marker="${ckpt}/PREEMPTED.json"
  [[ -e "${marker}" ]] || { echo "${scenario}: no ${marker}"; exit 1; }
  grep -q "\"signal_name\":\"${signal}\"" "${marker}" \
    || { echo "${scenario}: the marker does not name ${signal}: $(cat "${marker}")"; exit 1; }
  step="$(sed -E 's/.*"step":([0-9]+).*/\1/' "${marker}")"
  [[ -d "${ckpt}/step-$(printf %08d "${step}")" ]] \
    || { echo "${scenario}: the marker names step ${step}, which is not saved"; exit 1; }
  echo "${scenario}: stopped at step ${step} by ${signal}, wrapper status 75; marker $(cat "${marker}")"

  (run preempted) >"${work}/resumed.log" 2>&1 || { tail -20 "${work}/resumed.log"; exit 1; }
  grep -q "resumed from .*step-0*${step} at step ${step}\$" "${work}/resumed.log" \
    || { echo "${scenario}: the rerun did not resume from step ${step}"; tail -20 "${work}/resumed.log"; exit 1; }
  [[ ! -e "${marker}" ]] || { echo "${scenario}: the finished rerun left the marker"; exit 1; }
  same_losses
done
