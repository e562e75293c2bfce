#!/usr/bin/env bash
# Checkpoints of memtrain-train as processes under real mpirun (2 ranks), on
# a demo lm corpus with a knn layer and its memory checkpointed:
#   usr1   SIGUSR1 to mpirun -> every rank saves at the next step boundary and
#          exits 75 (requeue); --resume=auto then completes the run, and every
#          later step's loss equals the uninterrupted run's, bitwise.
#   kill   rank 1 is SIGKILLed while the checkpoint of step 6 is being written
#          -> `latest` still names step 3, which verifies; the next run resumes
#          from it and matches the uninterrupted run.
#   damage the newest checkpoint truncated -> the resume warns naming the file
#          and uses the previous one.
#   sharded with --knn_sharded (each rank holds half of every stream's memory)
#          the checkpoint of step 8 resumes to losses equal to the
#          uninterrupted sharded run; resuming without --knn_sharded is refused.
#   format1 a checkpoint written by format version 1 (fixtures/format1: no
#          "format_version" yet) resumes under this build to the losses its
#          own run logged, bitwise, and its saved model generates.
#   format3 the same for format version 3 (fixtures/format3: the data cursor
#          in each rank file, no run identity), resumed by --resume=auto; at
#          another world size it is refused (its data cursor is per rank).
#   export memtrain-ckpt export -> import -> export gives the same bytes, and
#          Python's safetensors (when PYTHON has it) reads tensors equal to the
#          checkpoint's model.pt as torch.jit.load reads it.
#   slow_save  a save 4 s slower (test flag --testing_slow_save) than the 2 s
#          --step_timeout, within --checkpoint_timeout, completes: rank 1
#          waits for rank 0 in the checkpoint phase.
#   stuck_save the same save stuck beyond a 3 s --checkpoint_timeout aborts
#          the job (the watchdog's exit code 124) within seconds, the report naming the
#          checkpoint phase and its flag.
#   verify rank 0 flips a byte of optimizer.pt after reading it back
#          (--testing_corrupt_during_save): rank 1, which verifies rank 0's
#          files, names the file; nothing is committed (no step-00000002,
#          no latest).
#
#   ckpt_faults.sh BIN_DIR MPIEXEC "MPIEXEC_FLAGS" SCENARIO [PYTHON]
set -euo pipefail
bin="$1" mpiexec="$2" mpi_flags="$3" scenario="$4" python="${5:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

"${bin}/memtrain-prepare" --corpus=demo --demo_documents=200 --vocab_size=500 --output="${work}/demo.h5" \
  --progress=false 2>"${work}/prepare.log" || { cat "${work}/prepare.log"; exit 1; }

steps=12
train() {  # name, extra flags...; the exit status is the caller's
  local name="$1"; shift
  # With as_process=exec (in the background) mpirun replaces the subshell, so
  # $! is mpirun's pid and the signal goes to it.
  # shellcheck disable=SC2086
  ${as_process:-} ${mpiexec} ${mpi_flags} -n 2 "${bin}/memtrain-train" --train_data="${work}/demo.h5" --steps="${steps}" \
    --encoder_layers=0 --decoder_layers=2 --model_dim=32 --heads=2 --ffn_dim=64 --knn_layers=1 \
    --knn_memory_size=64 --knn_top_k=4 --dropout=0.1 --streams=2 --segment_length=16 --lr_schedule=constant \
    --warmup_steps=0 --lr=3e-3 --unused_parameters=zero --log_every=1 --metrics="${work}/${name}.jsonl" "$@" >"${work}/${name}.log" 2>&1
}

# Every step of run $2 must have the loss of the same step of run $1 (bitwise).
same_losses_py="$(cd "$(dirname "$0")/../common" && pwd)/same_losses.py"
same_losses() { python3 "${same_losses_py}" "$1" "$2"; }

ckpt="${work}/ckpt"
case "${scenario}" in
  slow_save|stuck_save|verify) steps=4 ;;  # nothing to compare with an uninterrupted run
  *) train whole || { tail -20 "${work}/whole.log"; exit 1; } ;;
esac

case "${scenario}" in
  format1)
    fixture="$(cd "$(dirname "$0")" && pwd)/fixtures/format1"
    cp -r "${fixture}/checkpoint" "${work}/step-00000006"
    # The flags that wrote the fixture (fixtures/format1/README.md); the corpus
    # path is relative, as it was then. --knn_projection_bias=true: the knn
    # layers had biases then (the default since model.json format 3 has none);
    # --positions=sinusoidal: the only encoding then (format 4's default for
    # a decoder-only model is rotary); --dropout_sampler=aten: at::dropout's
    # masks, the only ones then (format 5's default is philox).
    (cd "${work}" && ${mpiexec} ${mpi_flags} -n 2 "${bin}/memtrain-train" --train_data=demo.h5 --steps=12 \
      --encoder_layers=0 --decoder_layers=2 --model_dim=16 --heads=2 --ffn_dim=32 --knn_layers=1 \
      --knn_projection_bias=true --positions=sinusoidal --dropout_sampler=aten \
      --knn_memory_size=64 --knn_top_k=4 --dropout=0.1 --streams=2 --segment_length=16 --lr_schedule=constant \
      --warmup_steps=0 --lr=3e-3 --unused_parameters=zero --log_every=1 --metrics=format1.jsonl \
      --checkpoint_dir=ckpt1 --save_every_steps=6 --save_knn_memory=true --resume=step-00000006 \
      >format1.log 2>&1) || { tail -20 "${work}/format1.log"; exit 1; }
    grep -q "resumed from step-00000006 at step 6" "${work}/format1.log" || { tail -20 "${work}/format1.log"; exit 1; }
    same_losses "${fixture}/losses.jsonl" "${work}/format1.jsonl"
    # The checkpoint this build wrote says which format it is.
    grep -q '"format_version": 4' "${work}/ckpt1/step-00000012/trainer.json"
    # memtrain-ckpt reads the old format through the resume code: options renamed, every rank listed.
    "${bin}/memtrain-ckpt" inspect "${fixture}/checkpoint" >"${work}/inspect.txt"
    grep -q '"bucket_mb": 25.0' "${work}/inspect.txt" && grep -q 'rank 1: data cursor' "${work}/inspect.txt" \
      || { cat "${work}/inspect.txt"; echo 'FAIL: memtrain-ckpt inspect of the format-1 fixture'; exit 1; }
    "${bin}/memtrain-generate" --model="${fixture}/model" --data="${work}/demo.h5" --count=1 --max_length=8 \
      >"${work}/generate.log" 2>&1 || { cat "${work}/generate.log"; exit 1; }
    grep -q "output:" "${work}/generate.log"
    ;;
  format3)
    fixture="$(cd "$(dirname "$0")" && pwd)/fixtures/format3"
    mkdir "${work}/ckpt3" && cp -r "${fixture}/checkpoint" "${work}/ckpt3/step-00000006"
    format3_run=("${bin}/memtrain-train" --train_data=demo.h5 --steps=12 --dropout_sampler=aten \
      --encoder_layers=0 --decoder_layers=2 --model_dim=16 --heads=2 --ffn_dim=32 --knn_layers=1 \
      --knn_memory_size=64 --knn_top_k=4 --dropout=0.1 --streams=2 --segment_length=16 --lr_schedule=constant \
      --warmup_steps=0 --lr=3e-3 --unused_parameters=zero --log_every=1 --metrics=format3.jsonl \
      --checkpoint_dir=ckpt3 --save_every_steps=6 --save_knn_memory=true --resume=auto)
    if (cd "${work}" && "${format3_run[@]}" --knn_memory_on_resize=drop >resized.log 2>&1); then
      echo "FAIL: a format-3 checkpoint of 2 ranks resumed at 1"; exit 1
    fi
    grep -q "format (version 3) keeps a data cursor per rank: resume it with 2 ranks" "${work}/resized.log" \
      || { tail -5 "${work}/resized.log"; echo "FAIL: no reason for refusing the resize"; exit 1; }
    # shellcheck disable=SC2086
    (cd "${work}" && ${mpiexec} ${mpi_flags} -n 2 "${format3_run[@]}" >format3.log 2>&1) \
      || { tail -20 "${work}/format3.log"; exit 1; }
    grep -q "resumed from .*step-00000006 at step 6" "${work}/format3.log" || { tail -20 "${work}/format3.log"; exit 1; }
    same_losses "${fixture}/losses.jsonl" "${work}/format3.jsonl" ;;
  usr1)
    steps=400  # long enough to be signalled mid-run
    as_process=exec train stopped --checkpoint_dir="${ckpt}" --save_knn_memory &
    pid=$!
    until [[ -s "${work}/stopped.jsonl" && $(wc -l <"${work}/stopped.jsonl") -ge 3 ]]; do
      kill -0 "${pid}" 2>/dev/null || { tail -20 "${work}/stopped.log"; echo "FAIL: run ended before the signal"; exit 1; }
      sleep 0.2
    done
    kill -USR1 "${pid}"
    status=0; wait "${pid}" || status=$?
    [[ -n "${KEEP_LOG:-}" ]] && cp "${work}/stopped.log" "${KEEP_LOG}"
    [[ ${status} -eq 75 ]] || { tail -20 "${work}/stopped.log"; echo "FAIL: exit ${status}, want 75"; exit 1; }
    grep -q "stop requested" "${work}/stopped.log" || { echo "FAIL: no stop message"; exit 1; }
    stopped_at=$(readlink "${ckpt}/latest")
    echo "stopped with exit 75 at ${stopped_at}"
    "${bin}/memtrain-ckpt" inspect "${ckpt}/latest" >"${work}/inspect.txt" || { cat "${work}/inspect.txt"; exit 1; }
    # The uninterrupted run must reach at least as far as the resumed one.
    steps=$(( 10#${stopped_at#step-} + 6 ))
    train whole || { tail -20 "${work}/whole.log"; exit 1; }
    train resumed --checkpoint_dir="${ckpt}" --save_knn_memory --resume=auto --resume_changed=steps \
      || { tail -20 "${work}/resumed.log"; exit 1; }
    grep -q "resumed from .*${stopped_at}" "${work}/resumed.log" || { echo "FAIL: did not resume from ${stopped_at}"; exit 1; }
    same_losses "${work}/whole.jsonl" "${work}/resumed.jsonl" ;;
  kill)
    status=0
    train killed --checkpoint_dir="${ckpt}" --save_knn_memory --save_every_steps=3 --testing_kill_during_save=1:6 \
      || status=$?
    [[ ${status} -ne 0 ]] || { echo "FAIL: the run survived the kill"; exit 1; }
    [[ -d "${ckpt}/step-00000006.partial" ]] || { ls "${ckpt}"; echo "FAIL: no partial checkpoint of step 6"; exit 1; }
    [[ $(readlink "${ckpt}/latest") == step-00000003 ]] || { ls -l "${ckpt}"; echo "FAIL: latest moved"; exit 1; }
    "${bin}/memtrain-ckpt" inspect "${ckpt}/latest" | grep -q "verified: ok" || { echo "FAIL: step 3 does not verify"; exit 1; }
    train resumed --checkpoint_dir="${ckpt}" --save_knn_memory --save_every_steps=3 --resume=auto \
      || { tail -20 "${work}/resumed.log"; exit 1; }
    grep -q "resumed from .*step-00000003" "${work}/resumed.log" || { echo "FAIL: did not resume from step 3"; exit 1; }
    [[ ! -e "${ckpt}/step-00000006.partial" ]] || { echo "FAIL: the stale partial checkpoint was not replaced"; exit 1; }
    same_losses "${work}/whole.jsonl" "${work}/resumed.jsonl" ;;
  damage)
    train saved --checkpoint_dir="${ckpt}" --save_knn_memory --save_every_steps=4 || { tail "${work}/saved.log"; exit 1; }
    truncate -s -100 "${ckpt}/step-00000012/optimizer.pt"
    steps=14
    train whole || { tail -20 "${work}/whole.log"; exit 1; }
    train resumed --checkpoint_dir="${ckpt}" --save_knn_memory --resume=auto --resume_changed=steps \
      || { tail -20 "${work}/resumed.log"; exit 1; }
    grep -q "damaged checkpoint skipped.*step-00000012/optimizer.pt.*truncated" "${work}/resumed.log" \
      || { grep ckpt "${work}/resumed.log"; echo "FAIL: no warning naming the truncated file"; exit 1; }
    grep -q "resumed from .*step-00000008" "${work}/resumed.log" || { echo "FAIL: did not fall back to step 8"; exit 1; }
    same_losses "${work}/whole.jsonl" "${work}/resumed.jsonl" ;;
  sharded)
    train whole_sharded --knn_sharded || { tail -20 "${work}/whole_sharded.log"; exit 1; }
    steps=8
    train saved --knn_sharded --checkpoint_dir="${ckpt}" --save_knn_memory --save_every_steps=8 \
      || { tail "${work}/saved.log"; exit 1; }
    steps=12
    status=0
    train unsharded --checkpoint_dir="${ckpt}" --save_knn_memory --resume=auto || status=$?
    [[ ${status} -ne 0 ]] || { echo "FAIL: resumed a sharded memory as a local one"; exit 1; }
    grep -q "knn_sharded: checkpoint true, now false" "${work}/unsharded.log" \
      || { tail "${work}/unsharded.log"; echo "FAIL: the refusal does not name --knn_sharded"; exit 1; }
    train resumed --knn_sharded --checkpoint_dir="${ckpt}" --save_knn_memory --resume=auto --resume_changed=steps \
      || { tail -20 "${work}/resumed.log"; exit 1; }
    grep -q "resumed from .*step-00000008" "${work}/resumed.log" || { echo "FAIL: did not resume from step 8"; exit 1; }
    same_losses "${work}/whole_sharded.jsonl" "${work}/resumed.jsonl" ;;
  export)
    train saved --checkpoint_dir="${ckpt}" || { tail "${work}/saved.log"; exit 1; }
    "${bin}/memtrain-ckpt" export --format=safetensors --output="${work}/w.safetensors" "${ckpt}/latest"
    "${bin}/memtrain-ckpt" import --output="${work}/imported" "${work}/w.safetensors"
    "${bin}/memtrain-ckpt" export --format=safetensors --output="${work}/again.safetensors" "${work}/imported"
    cmp "${work}/w.safetensors" "${work}/again.safetensors" || { echo "FAIL: import/export changed the weights"; exit 1; }
    if ! "${python}" -c "import safetensors, torch" 2>/dev/null; then
      echo "PASS export (C++ round trip); SKIP of the Python read-back: ${python} cannot import safetensors and torch"
      exit 0
    fi
    "${python}" - "${work}/w.safetensors" "${ckpt}/latest/model.pt" <<'PY'
import sys, torch
from safetensors.torch import load_file
exported = load_file(sys.argv[1])
reference = torch.jit.load(sys.argv[2])
expected = dict(reference.named_parameters()) | dict(reference.named_buffers())
assert set(exported) == set(expected), (sorted(set(exported) ^ set(expected)))
for name, tensor in expected.items():
    assert exported[name].dtype == tensor.dtype and torch.equal(exported[name], tensor.detach()), name
print(f"python: {len(exported)} tensors equal to model.pt")
PY
    ;;
  slow_save)
    train slow --checkpoint_dir="${ckpt}" --save_every_steps=2 --step_timeout=2 --checkpoint_timeout=60 \
      --testing_slow_save=4 || { tail -20 "${work}/slow.log"; echo "FAIL: the slow save aborted the job"; exit 1; }
    grep -q "test seam: a slow save" "${work}/slow.log" || { echo "FAIL: the save was not slowed"; exit 1; }
    [[ $(readlink "${ckpt}/latest") == step-00000004 ]] || { ls -l "${ckpt}"; echo "FAIL: latest is not step 4"; exit 1; }
    "${bin}/memtrain-ckpt" inspect "${ckpt}/latest" | grep -q "verified: ok" || { echo "FAIL: step 4 does not verify"; exit 1; } ;;
  stuck_save)
    status=0 start=${SECONDS}
    train stuck --checkpoint_dir="${ckpt}" --save_every_steps=2 --step_timeout=600 --checkpoint_timeout=3 \
      --testing_slow_save=300 || status=$?
    elapsed=$(( SECONDS - start ))
    # mpirun's own status after MPI_Abort varies; the watchdog's line does not.
    [[ ${status} -ne 0 ]] && grep -q "aborting the job (exit code 124)" "${work}/stuck.log" \
      || { tail -20 "${work}/stuck.log"; echo "FAIL: exit ${status}, no abort by the watchdog"; exit 1; }
    # 3 s timeout + 3 s for the peers' answers + start-up; far below the 300 s stall.
    (( elapsed < 60 )) || { echo "FAIL: took ${elapsed} s"; exit 1; }
    grep -q "did not complete within 3s (the checkpoint phase's timeout, --checkpoint_timeout)" "${work}/stuck.log" \
      || { grep parallel "${work}/stuck.log"; echo "FAIL: the report does not name the checkpoint phase"; exit 1; }
    [[ ! -e "${ckpt}/latest" ]] || { echo "FAIL: a stuck save committed"; exit 1; } ;;
  verify)
    status=0
    train corrupt --checkpoint_dir="${ckpt}" --save_every_steps=2 --testing_corrupt_during_save=optimizer.pt || status=$?
    [[ ${status} -ne 0 ]] || { echo "FAIL: a corrupted checkpoint was saved without an error"; exit 1; }
    grep -q "rank 1: verifying checkpoint .*step-00000002.partial: .*optimizer.pt has sha256 .*its writer (rank 0) says .* (corrupted)" \
      "${work}/corrupt.log" || { grep ckpt "${work}/corrupt.log"; echo "FAIL: rank 1 did not name the corrupted file"; exit 1; }
    [[ ! -e "${ckpt}/step-00000002" && ! -e "${ckpt}/latest" ]] || { ls -l "${ckpt}"; echo "FAIL: the corrupted checkpoint was committed"; exit 1; } ;;
  *) echo "unknown scenario ${scenario}"; exit 2 ;;
esac
echo "PASS ${scenario}"
