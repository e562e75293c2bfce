#!/usr/bin/env bash
# reproduce/scaling.sh: the seed on the ∞-former and Performer at the scale of
# a 2-core machine, written to docs/RESULTS.md §scaling and docs/results/scaling*.png.
#
#   reproduce/scaling.sh [--fresh]       # or: scripts/reproduce scaling
#   MEMTRAIN_REPRODUCE_SMOKE=1 reproduce/scaling.sh   # ~1 minute, numbers meaningless
#
# 1. Cost against sequence length, one attention layer (D = 512, 8 heads):
#    bench-attention --json for softmax, linformer, performer, memsizer and
#    infinite: training cost per token (forward + backward, 16K tokens a batch)
#    and peak memory at n = 256 ... 16384, non-causal and causal; decoding cost
#    per token and DecodeState bytes at positions 16 ... 4096. The writer
#    tabulates ratios to softmax and plots them log-log.
# 2. LM perplexity of the ∞-former against the Transformer at an equal context
#    budget, on demo, code and WikiText-2 (reproduce/corpora.sh, shared with §Memory):
#    configs/memory-lm.flags (4 layers, D = 128, 2 ranks x 4 streams, segments
#    of L = 128 tokens), seed 1, the same steps, four rows:
#      transformer     softmax, rotary; attends within its segment (<= L tokens)
#      transformer-sinusoidal  the same with the ∞-former's positions
#                      (--positions=sinusoidal, restarting every segment): how
#                      much of the ∞-former's gap is its positions, not its memory
#      transformer-xl  + --xl_cache: each layer also keeps the previous segment's
#                      keys and values, L vectors each, exact (<= 2L tokens back)
#      infinite        --attention=infinite --infinite_basis=L: each layer's
#                      short-term softmax over the segment plus a continuous
#                      long-term memory of N = L basis coefficients (float64
#                      [N, D], the bytes of XL's float32 keys + values) that
#                      summarises every earlier segment of the document
#    So both memories hold L vectors of width D per layer and stream beyond the
#    segment (equal bytes): XL's are the last L tokens exactly, the ∞-former's
#    compress the whole document so far. memtrain-eval on the whole valid
#    split (the ∞-former also without its memory, --compare_memory).
#
# Budget (full run, quiet 2-core machine): ~22 minutes (limit 25). Measured
# 2026-12-06 on the shared 2-core machine (load average 9, nice 10); quiet
# wall taken as the processes' CPU seconds / 2 (two ranks, or two threads):
#   bench-attention  the per-token costs of docs/BENCHMARKS.md's quiet run x
#                    16384 tokens x 3 runs (--warmup 1 --repeats 2) over the
#                    points, ~1.5 s start-up per point: ~7.5 minutes
#   training         500 steps of 1,024 tokens; 30 steps took 6.0 / 7.2 / 10.4
#                    CPU s (transformer / -xl / infinite): ~45 / 50 / 85 s a
#                    run, ~11 minutes for 3 corpora (the sinusoidal row as the
#                    transformer's)
#   evaluation       valid splits of 117K (demo), 325K (code), 349K (WikiText-2)
#                    tokens; 48 (softmax) and 103 (infinite) CPU us a token:
#                    ~2 minutes in all (the ∞-former twice)
#   corpora          ~15 s (the code tokenizer is most of it)
# A smoke run: bench at n = 256 only (256 tokens) and 32 decode positions; the
# LM rows on a small demo corpus only (the other corpora differ in data alone),
# 4 training steps, 2 eval batches.
set -euo pipefail
section=scaling
# shellcheck source=reproduce/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=reproduce/corpora.sh
source "${root}/reproduce/corpora.sh"
parse_section_args "$@"
no_section_args
need_binaries bench-attention memtrain-prepare memtrain-train memtrain-eval

readonly KINDS=softmax,linformer,performer,memsizer,infinite
lm_corpora=("${LM_CORPORA[@]}")
[[ "${smoke}" == true ]] && lm_corpora=(demo)
readonly ROWS=(transformer transformer-sinusoidal transformer-xl infinite)
readonly TRAIN_SEED=1
flagfile="${root}/configs/memory-lm.flags"
flag_value() { sed -n "s/^--$1=//p" "${flagfile}" | tail -n 1; }
streams="$(flag_value streams)"
segment_length="$(flag_value segment_length)"
steps="$(scaled 500 4)"
# The flagfile's 100 warm-up steps, or a fifth of a shorter run (as §Memory).
warmup=$(( steps / 5 < 100 ? steps / 5 : 100 ))
eval_steps="$(scaled 0 2)"  # 0: the whole valid split

mkdir -p "${run}"
started=${SECONDS}

# --- 1. one layer against sequence length ------------------------------------
bench_flags=(--lengths=256,512,1024,2048,4096,8192,16384 --tokens=16384 --decode_positions=4096
             --warmup=1 --repeats=2)
[[ "${smoke}" == true ]] && bench_flags=(--lengths=256 --tokens=256 --decode_positions=32 --warmup=0
                                         --repeats=1)
run_step "${run}/bench" bench replacing "${run}/bench/bench.json" -- \
  "${bin}/bench-attention" --kinds="${KINDS}" "${bench_flags[@]}" --device=cpu \
  --json="${run}/bench/bench.json"

# --- 2. ∞-former against Transformer, per corpus --------------------------------
row_flags() {
  case "$1" in
    transformer) ;;
    transformer-sinusoidal) echo --positions=sinusoidal ;;
    transformer-xl) echo --xl_cache ;;
    infinite) echo --attention=infinite --infinite_basis="${segment_length}" ;;
  esac
}
for corpus in "${lm_corpora[@]}"; do
  data="$(corpus_dir "${corpus}")"
  prepare_corpus "${corpus}"
  for row in "${ROWS[@]}"; do
    dir="${run}/${corpus}/${row}"
    # shellcheck disable=SC2046  # row_flags prints separate flags
    run_step "${dir}" train replacing "${dir}/metrics.jsonl" "${dir}/model" -- \
      mpirun -np 2 --bind-to none "${bin}/memtrain-train" --flagfile="${flagfile}" $(row_flags "${row}") \
      --seed="${TRAIN_SEED}" --steps="${steps}" --warmup_steps="${warmup}" --train_data="${data}/train.h5" \
      --metrics="${dir}/metrics.jsonl" --save_dir="${dir}/model"
    compare=()
    [[ "${row}" == infinite ]] && compare=(--compare_memory)
    run_step "${dir}" eval replacing "${dir}/eval.jsonl" -- \
      mpirun -np 2 --bind-to none "${bin}/memtrain-eval" --model="${dir}/model" --data="${data}/valid.h5" \
      --streams="${streams}" --segment_length="${segment_length}" --steps="${eval_steps}" "${compare[@]}" \
      --eval_timeout=7200 --metrics="${dir}/eval.jsonl"
  done
done
log "runs done in $((SECONDS - started)) s"

write_results --flagfile="${flagfile}" --corpora="$(IFS=,; echo "${lm_corpora[*]}")" --corpora_dir="${corpora}" \
  --rows="$(IFS=,; echo "${ROWS[*]}")" --segment_length="${segment_length}"
log "done: ${results} (§scaling), ${png_dir}/scaling*.png"
