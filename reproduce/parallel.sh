#!/usr/bin/env bash
# reproduce/parallel.sh: data parallelism, the same LM run on 1 MPI rank and on
# 2, written to docs/RESULTS.md §parallel and docs/results/parallel.png.
#
#   reproduce/parallel.sh [--fresh]      # or: scripts/reproduce parallel
#   MEMTRAIN_REPRODUCE_SMOKE=1 reproduce/parallel.sh  # ~30 s, numbers meaningless
#
# Two runs of memtrain-train on WikiText-2 (reproduce/corpora.sh), model and
# training of configs/memory-lm.flags (4 layers, D = 128, segments of 128
# tokens), seed 1, 1000 steps, --dropout=0:
#   np1  mpirun -np 1, --streams=8
#   np2  mpirun -np 2, --streams=4 (per rank)
# Why the batches are equal: the lm BatchSource plans R x B streams globally
# (rank-major; docs/DATA.md §2) from (seed, epoch), so 1 x 8 and 2 x 4 are the
# same 8 streams over the same documents, rank 0 taking streams 0-3 and rank 1
# streams 4-7; the gradient is summed over the ranks and divided by the global
# token count, the parameters start as rank 0's (broadcast). Dropout is off
# because each rank draws its masks from its own generator (seed, rank): with
# it, the runs would differ by design. --record_batches logs every row each
# rank trains on ([document, first token, tokens]); the writer checks that
# every step's rows are the same on both runs, then compares the loss curves
# step by step (max |difference|) and the time per step.
#
# Budget (full run, quiet 2-core machine): ~5 minutes (limit 10). Measured
# 2026-12-06 on the shared 2-core machine (load average 8-10, nice 10): 40
# steps took 6.6 CPU s on 2 ranks (~0.08 s a step quiet: 1000 steps ~1.5
# minutes) and 28 CPU s on 1 rank with 2 threads, which spin while the other
# jobs hold the cores (~0.1-0.3 s a step quiet: 2-5 minutes); corpus ~3 s.
# A smoke run: 8 steps, the smoke WikiText-2 corpus.
set -euo pipefail
section=parallel
# shellcheck source=reproduce/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=reproduce/corpora.sh
source "${root}/reproduce/corpora.sh"
parse_section_args "$@"
no_section_args
need_binaries memtrain-prepare memtrain-train

readonly CORPUS=wikitext2
readonly GLOBAL_STREAMS=8
readonly TRAIN_SEED=1
flagfile="${root}/configs/memory-lm.flags"
steps="$(scaled 1000 8)"
warmup=$(( steps / 5 < 100 ? steps / 5 : 100 ))

started=${SECONDS}
prepare_corpus "${CORPUS}"
data="$(corpus_dir "${CORPUS}")"
for ranks in 1 2; do
  dir="${run}/np${ranks}"
  run_step "${dir}" train replacing "${dir}/metrics.jsonl" "${dir}/batches/" -- \
    mpirun -np "${ranks}" --bind-to none "${bin}/memtrain-train" --flagfile="${flagfile}" --dropout=0 \
    --streams=$(( GLOBAL_STREAMS / ranks )) --seed="${TRAIN_SEED}" --steps="${steps}" --warmup_steps="${warmup}" \
    --train_data="${data}/train.h5" --metrics="${dir}/metrics.jsonl" --record_batches="${dir}/batches/rows"
done
log "runs done in $((SECONDS - started)) s"

write_results --flagfile="${flagfile}" --corpus="${CORPUS}"
log "done: ${results} (§parallel), ${png_dir}/parallel.png"
