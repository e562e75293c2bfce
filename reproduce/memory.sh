#!/usr/bin/env bash
# reproduce/memory.sh (scripts/reproduce memory): the Memorizing Transformer's
# memory-size table (Wu et al. 2022, Table 4: perplexity for memory none / 1.5K
# / 8K / 65K, each without and with a Transformer-XL cache) at the scale of a
# 2-core machine, on three long-document corpora (reproduce/corpora.sh: demo,
# code, wikitext2), written to docs/RESULTS.md §Memory and
# docs/results/memory.png.
#
#   reproduce/memory.sh [demo|code|wikitext2 ...] [--fresh]
#
# Two stages per corpus (docs/KNN_MEMORY.md, "Does the memory help?"): trained
# from scratch on short segments with its memory, this model does not learn to
# use the memory in a few hundred steps (the first version of this table: no
# memory size beat none on any corpus; its gates closed while the memory was
# still noise). So, as scripts/quickstart does:
#   1. base   memtrain-train, configs/memory-lm.flags, long segments, decoder
#             layer 2 a knn layer with its memory off (--knn_layers=2
#             --use_memory=false), so every row fine-tunes the model it was
#             trained as (demo: scripts/quickstart's stage 1, 3000 steps of one
#             384-token segment a rank, a whole document with its facts line
#             and its repetition; code, wikitext2: 600 steps of 2 x 1280 tokens
#             a rank), lr 3e-3 as quickstart's stage 1: the model learns to use
#             long context
#   2. rows   from the base (--init_from), 128-token segments, each row's
#             settings (--knn_memory_size=N, or --use_memory=false for "none";
#             --xl_cache), the same steps for every row, "none" included (the
#             fair baseline: the same model and fine-tuning without memory, as
#             meliad's baseline is its memory model's architecture)
#   3. eval   memtrain-eval of every row on the whole valid split (128-token
#             segments, 4 streams a rank, 2 ranks); the base also on its own long
#             segments, the "control": what the model gets with the whole
#             context in view, no memory needed
#
# Why the base has the knn layer: a knn layer is not a softmax layer with a
# memory added; it unit-normalises queries and keys and learns its logit
# scale (meliad normalises every layer's keys; memtrain only its knn layers).
# The first two-stage version trained a softmax base and turned layer 2 into
# a knn layer only for the memory rows, which undid that layer's training:
# long-range ppl 40.84 against 41.37 for none. With a knn base the same row
# reached 37.68 and, with 1000 steps, 27.41 (docs/RESULTS.md §Memory).
# then reproduce/memory_results.py writes the table, trends and plot.
#
# Budget (full run, quiet 2-core machine): see the measured minutes in
# docs/RESULTS.md §Memory's time line; sized for <= 55 minutes in all: per
# corpus a base (above) and 8 rows of 1000 steps (2 ranks x 4 streams x 128
# tokens) plus their evaluations.
section=memory
# shellcheck source=reproduce/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=reproduce/corpora.sh
source "${root}/reproduce/corpora.sh"
parse_section_args "$@"
chosen=("${section_args[@]}")
(( ${#chosen[@]} > 0 )) || chosen=("${LM_CORPORA[@]}")
for corpus in "${chosen[@]}"; do
  [[ " ${LM_CORPORA[*]} " == *" ${corpus} "* ]] || { echo "[reproduce memory] unknown corpus '${corpus}' (${LM_CORPORA[*]})" >&2; exit 2; }
done

readonly MEMORY_SIZES=(none 1536 8192 65536)
readonly XL_SETTINGS=(off on)
readonly KNN_LAYER=2
readonly SEED=1
readonly BASE_LR=3e-3
readonly SEGMENT=128 STREAMS=4
# The base's batch shape per corpus: "segment streams steps". A segment never
# mixes documents and starts at a document's start (data/batch_source.h).
# demo: scripts/quickstart's stage 1, which learns to copy the facts line
# (its documents hold ~330 tokens); code and wikitext2: 1280-token segments
# (their documents are longer than any segment here).
base_shape() {
  case "$1" in
    demo) echo "384 1 $(scaled 3000 6)" ;;
    *) echo "1280 2 $(scaled 600 6)" ;;
  esac
}
row_steps="$(scaled 1000 6)"
eval_steps="$(scaled 0 2)"  # 0: the whole valid split
flagfile="${root}/configs/memory-lm.flags"
need_binaries memtrain-prepare memtrain-train memtrain-eval

train() {  # DIR STEPS FLAGS...
  local dir="$1" steps="$2"
  shift 2
  run_step "${dir}" train replacing "${dir}/metrics.jsonl" -- mpirun -np 2 --bind-to none "${bin}/memtrain-train" --flagfile="${flagfile}" \
    --seed="${SEED}" --steps="${steps}" --warmup_steps=$(( steps / 5 < 50 ? steps / 5 : 50 )) \
    --metrics="${dir}/metrics.jsonl" --save_dir="${dir}/model" "$@"
}
evaluate() {  # DIR LABEL DATA STREAMS SEGMENT FLAGS...
  run_step "$1" "$2" replacing "$1/$2.jsonl" -- mpirun -np 2 --bind-to none "${bin}/memtrain-eval" --model="$1/model" --data="$3" \
    --streams="$4" --segment_length="$5" --steps="${eval_steps}" --eval_timeout=7200 --metrics="$1/$2.jsonl" "${@:6}"
}

log "corpora: ${chosen[*]}; rows ${row_steps} steps, eval steps ${eval_steps} (0: all); outputs under ${run}"
for corpus in "${chosen[@]}"; do
  prepare_corpus "${corpus}"
  data="$(corpus_dir "${corpus}")"
  base="${run}/${corpus}/base"
  read -r base_segment base_streams base_steps <<< "$(base_shape "${corpus}")"
  train "${base}" "${base_steps}" --train_data="${data}/train.h5" \
    --streams="${base_streams}" --segment_length="${base_segment}" --lr="${BASE_LR}" \
    --knn_layers="${KNN_LAYER}" --use_memory=false
  evaluate "${base}" eval "${data}/valid.h5" "${STREAMS}" "${SEGMENT}" --use_memory=false
  evaluate "${base}" eval_control "${data}/valid.h5" "${base_streams}" "${base_segment}" --use_memory=false
  for xl in "${XL_SETTINGS[@]}"; do
    for memory in "${MEMORY_SIZES[@]}"; do
      dir="${run}/${corpus}/mem-${memory}.xl-${xl}"
      depends_on "${dir}" "${base}"  # fine-tuned from the base
      use_memory=true row_flags=(--knn_memory_size="${memory}")
      [[ "${memory}" == none ]] && use_memory=false row_flags=()
      [[ "${xl}" == on ]] && row_flags+=(--xl_cache)
      train "${dir}" "${row_steps}" --train_data="${data}/train.h5" --init_from="${base}/model" \
        --streams="${STREAMS}" --segment_length="${SEGMENT}" --knn_layers="${KNN_LAYER}" --use_memory="${use_memory}" "${row_flags[@]}"
      # (a saved model records --knn_memory_size and --xl_cache, not --use_memory)
      evaluate "${dir}" eval "${data}/valid.h5" "${STREAMS}" "${SEGMENT}" --use_memory="${use_memory}"
    done
  done
done

write_results --corpora="$(dirname "$(corpus_dir demo)")"
log "done: ${results} (§Memory), ${png_dir}/memory.png"
