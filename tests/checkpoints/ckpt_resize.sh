#!/usr/bin/env bash
# Resuming memtrain-train at another world size, and the run identity, with
# memtrain-train processes under real mpirun on a demo lm corpus (a knn layer,
# its memory checkpointed). --record_batches logs every segment each rank
# trains on as [record, first token, tokens].
#   shrink  a 2-rank run checkpoints at step 4 and dies saving step 8.
#           Resuming at 1 rank is refused naming --knn_memory_on_resize (the
#           memories cannot follow the streams); with =drop it resumes and
#           finishes the epoch. The segments of epoch 0 over both runs (the
#           first up to its checkpoint) are exactly those of an uninterrupted
#           2-rank run: none repeated, none skipped.
#   grow    the same from a 1-rank checkpoint resumed at 2 ranks.
#   identity a run with lr=A dies after its checkpoint of step 3; the same
#           directory with lr=B and --resume=auto is refused naming lr and the
#           checkpoint, as is another SLURM array task; the same command
#           resumes; --resume_changed=lr,steps continues it with lr=B.
#
#   ckpt_resize.sh BIN_DIR MPIEXEC "MPIEXEC_FLAGS" SCENARIO
set -euo pipefail
bin="$1" mpiexec="$2" mpi_flags="$3" scenario="$4"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

"${bin}/memtrain-prepare" --corpus=demo --demo_documents=16 --demo_distance_words=60 --vocab_size=500 --output="${work}/demo.h5" \
  --progress=false 2>"${work}/prepare.log" || { cat "${work}/prepare.log"; exit 1; }

train() {  # name, ranks, steps, extra flags...; the exit status is the caller's
  local name="$1" ranks="$2" steps="$3"; shift 3
  # shellcheck disable=SC2086
  ${mpiexec} ${mpi_flags} -n "${ranks}" "${bin}/memtrain-train" --train_data="${work}/demo.h5" \
    --steps="${steps}" --encoder_layers=0 --decoder_layers=2 --model_dim=16 --heads=2 --ffn_dim=32 \
    --knn_layers=1 --knn_memory_size=64 --knn_top_k=4 --dropout=0.1 --streams=2 --segment_length=32 \
    --lr_schedule=constant --warmup_steps=0 --lr=3e-3 --unused_parameters=zero --log_every=1 \
    --checkpoint_dir="${work}/ckpt" --save_knn_memory "$@" >"${work}/${name}.log" 2>&1
}
fail() { tail -20 "$1"; echo "FAIL: $2"; exit 1; }

# The segments of epoch 0 that the runs recorded in files $2... (a glob per
# run, ":N" keeping its steps up to N) must be those of the uninterrupted
# run's files $1, each once.
same_epoch() {
  python3 - "$@" <<'PY'
import collections, glob, json, sys
def segments(spec):
    pattern, _, last = spec.partition(":")
    rows = [tuple(row) for path in glob.glob(pattern) for line in open(path)
            for record in [json.loads(line)]
            if record["epoch"] == 0 and (not last or record["step"] <= int(last))
            for row in record["rows"]]
    if not rows:
        sys.exit(f"no segment of epoch 0 recorded in {spec}")
    return rows
whole = segments(sys.argv[1])
joined = [row for pattern in sys.argv[2:] for row in segments(pattern)]
twice = [row for row, n in collections.Counter(joined).items() if n > 1]
missing, extra = set(whole) - set(joined), set(joined) - set(whole)
if twice or missing or extra:
    sys.exit(f"repeated {sorted(twice)[:5]} ({len(twice)}), skipped {sorted(missing)[:5]} "
             f"({len(missing)}), unknown {sorted(extra)[:5]} ({len(extra)})")
print(f"epoch 0: {len(joined)} segments of {len({r[0] for r in joined})} records, "
      f"{sum(r[2] for r in joined)} tokens, each once, as in the uninterrupted run")
PY
}

resize() {  # first ranks, then ranks
  local first="$1" then="$2"
  # Steps per epoch at 2 ranks, as the trainer reports it.
  train probe 2 0 --checkpoint_dir= || fail "${work}/probe.log" "the probe"
  local epoch_steps
  epoch_steps=$(sed -n 's/.* \([0-9]*\) steps per epoch.*/\1/p' "${work}/probe.log")
  [[ -n "${epoch_steps}" ]] || fail "${work}/probe.log" "no steps per epoch"
  train whole 2 $(( epoch_steps + 1 )) --record_batches="${work}/whole" --checkpoint_dir= \
    || fail "${work}/whole.log" "the uninterrupted run"
  # Enough steps for 1 rank (half the streams) to finish the epoch. The first
  # run dies while saving step 8 (a node lost): step 4 is its newest checkpoint.
  local steps=$(( 2 * epoch_steps + 8 ))
  if train first "${first}" "${steps}" --save_every_steps=4 --testing_kill_during_save=0:8 \
    --record_batches="${work}/first"; then fail "${work}/first.log" "the first run survived"; fi
  if train refused "${then}" "${steps}" --resume=auto; then fail "${work}/refused.log" "resized with the memories"; fi
  grep -q -- "--knn_memory_on_resize=drop" "${work}/refused.log" \
    || fail "${work}/refused.log" "the refusal does not name --knn_memory_on_resize"
  train resumed "${then}" "${steps}" --resume=auto --knn_memory_on_resize=drop \
    --record_batches="${work}/resumed" || fail "${work}/resumed.log" "the resized resume"
  grep -q "resumed from .*step-00000004 at step 4, written by ${first} ranks, on ${then}" "${work}/resumed.log" \
    && grep -q "bitwise equal to an uninterrupted one only at an equal world size" "${work}/resumed.log" \
    || fail "${work}/resumed.log" "no resize message"
  grep -q '"epoch":1' "${work}"/resumed.rank*.jsonl || fail "${work}/resumed.log" "epoch 0 did not end"
  same_epoch "${work}/whole.rank*.jsonl" "${work}/first.rank*.jsonl:4" "${work}/resumed.rank*.jsonl"
}

case "${scenario}" in
  shrink) resize 2 1 ;;
  grow) resize 1 2 ;;
  identity)
    # The first run dies while saving step 6 (a preemption without notice): step 3 is the newest.
    if train lr1 1 6 --save_every_steps=3 --testing_kill_during_save=0:6; then fail "${work}/lr1.log" "survived"; fi
    if train lr2-refused 1 6 --resume=auto --lr=1e-3; then fail "${work}/lr2-refused.log" "adopted another run"; fi
    grep -q "lr: checkpoint 0.003, now 0.001" "${work}/lr2-refused.log" \
      && grep -q "ckpt/step-00000003 belongs to another run" "${work}/lr2-refused.log" \
      || fail "${work}/lr2-refused.log" "the refusal names neither lr nor the checkpoint"
    if SLURM_ARRAY_TASK_ID=2 train lr1-task 1 6 --resume=auto; then fail "${work}/lr1-task.log" "adopted another task"; fi
    grep -q 'slurm_array_task_id: checkpoint null, now "2"' "${work}/lr1-task.log" \
      || fail "${work}/lr1-task.log" "the refusal does not name the array task"
    # The same command, logging elsewhere (reporting is outside the identity).
    train lr1-again 1 6 --resume=auto --metrics="${work}/again.jsonl" || fail "${work}/lr1-again.log" "the same command"
    grep -q "resumed from .*step-00000003 at step 3" "${work}/lr1-again.log" || fail "${work}/lr1-again.log" "no resume"
    train lr1-changed 1 8 --resume=auto --lr=1e-3 --resume_changed=lr,steps \
      || fail "${work}/lr1-changed.log" "--resume_changed"
    grep -q "resumed from .*step-00000006 at step 6" "${work}/lr1-changed.log" || fail "${work}/lr1-changed.log" "no resume"
    echo "identity: another lr and another array task refused; the same command and --resume_changed resume" ;;
  *) echo "unknown scenario ${scenario}"; exit 2 ;;
esac
