#!/usr/bin/env bash
# reproduce/linformer.sh: the Linformer comparison of issue 17 (seed study
# "Evaluating Linformer's performance on WMT14 EN-DE"; Wang et al. 2020) at the
# scale of a 2-core machine: a Transformer (softmax) against Linformer k = 32
# and k = 64 in the encoder, on WMT16 En-De; perplexity and BLEU on dev
# (newstest2015) and test (newstest2016), training and inference time, per
# source-length bucket. Writes docs/RESULTS.md section `linformer` and
# docs/results/linformer.png.
#
#   reproduce/linformer.sh [--fresh]
#   MEMTRAIN_REPRODUCE_SMOKE=1 reproduce/linformer.sh   # under a minute, numbers meaningless
#
# Three models, the same flagfile (configs/reproduce-wmt16.flags: 2+2 layers,
# width 128, 2000 steps of 1536 tokens, seed 1) and the same data order; only
# the encoder's self-attention differs. Linformer is non-causal, so it is the
# encoder's alone: --attention=linformer sets every layer, and
# --layer_attention=0:softmax,1:softmax (decoder layers only) and
# --cross_attention=softmax (in the flagfile) keep the decoder softmax; the
# results writer checks the train log's model description for exactly that.
#
# Steps (under $run = runs/reproduce/linformer):
#   data/     memtrain-prepare: train = the 10K-pair train sample (Moses-
#             tokenized) PLUS newstest2009-2014 (17K pairs, plain text) as more
#             training pairs, one BPE tokenizer of 4000 pieces; dev =
#             newstest2015, test = newstest2016 (whole); and per source-length
#             bucket (words of the English side: 1-10, 11-20, 21-40, 41+) the
#             first 20 test pairs (inference timing and per-bucket BLEU) and
#             the first 2000 train-sample pairs (training timing)
#   <model>/  (softmax, linformer-k32, linformer-k64)
#     train          memtrain-train -> model/, metrics.jsonl
#     eval-dev       memtrain-eval on newstest2015: ppl, BLEU of the first 100
#                    (beam 4) -> eval-dev.jsonl
#     eval-test      memtrain-eval on newstest2016: ppl
#     infer-<bucket> memtrain-eval --generate on the bucket's 20 test pairs:
#                    BLEU and the search's seconds (the record's "seconds":
#                    the model's work, not process start-up)
#     train-<bucket> memtrain-train, 12 steps from scratch on the bucket's
#                    train pairs: median seconds per step and tokens per second
#   reproduce/linformer_results.py: tables, the sources' length distribution
#   against k, the paper's claims, computed trend sentences, the PNG.
#
# Budget (full run, quiet 2-core machine): measured 2026-12-06 with nothing
# else running, at the first version's 250 steps: the whole section took
# 2 min 20 s (training 26 s a model, 0.10 s a step of 1536 tokens); the
# estimate made beforehand on the loaded machine (23 min) was 10x too high.
# At 2000 steps: ~3.5 min of training a model, ~15 min in all (the beam
# search grows with the models' output lengths); the run's own minutes are in
# docs/RESULTS.md's time line.
# Smoke run (MEMTRAIN_REPRODUCE_SMOKE=1: 4 steps of 256 tokens, 2 buckets of
# 3 sentences, outputs of <= 12 tokens, ppl over 2 batches): 38 CPU-s, 88 s
# wall at load 8-9, so ~30-40 s quiet.
set -euo pipefail
section=linformer
# shellcheck source=reproduce/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_section_args "$@"
no_section_args
need_binaries memtrain-prepare memtrain-train memtrain-eval

readonly FLAGFILE="${root}/configs/reproduce-wmt16.flags"
readonly WMT="${shared_data}/wmt16_en_de"
readonly MODELS=(softmax linformer-k32 linformer-k64)
# Source-length buckets in words of the English side: name, lowest, highest.
buckets=("1-10:1:10" "11-20:11:20" "21-40:21:40" "41+:41:100000")
# A smoke run keeps the shortest and the longest bucket, in batches of 256
# tokens and with perplexity over a few batches: the pipeline, not the numbers.
if [[ "${smoke}" == true ]]; then buckets=("${buckets[0]}" "${buckets[3]}"); fi
readonly BUCKETS=("${buckets[@]}")
[[ -d "${WMT}" ]] || fail "no WMT16 sample at ${WMT} (MEMTRAIN_SHARED_DATA)"

steps="$(scaled 2000 4)"
timing_steps="$(scaled 12 3)"
dev_sentences="$(scaled 100 3)"
bucket_sentences="$(scaled 20 3)"
bucket_train_pairs=2000
vocab="$(scaled 4000 600)"
max_tokens="$(scaled 1536 256)"
ppl_batches="$(scaled 0 2)"
beam=(--beam=4 --max_length="$(scaled 100 12)")

# ---- data -------------------------------------------------------------------
data="${run}/data"
mkdir -p "${data}/text"
# Pairs as TSV (memtrain-prepare decides Moses escaping per file: the train
# sample is escaped, newstest plain). A smoke run trains on the sample alone.
train_tsvs=()
paste -d '\t' "${WMT}/train_sample/train.tok.en" "${WMT}/train_sample/train.tok.de" > "${data}/text/sample.tsv"
train_tsvs+=("${data}/text/sample.tsv")
if [[ "${smoke}" == false ]]; then
  for year in 2009 2010 2011 2012 2013 2014; do
    paste -d '\t' "${WMT}/extra_newstest/newstest${year}.en" "${WMT}/extra_newstest/newstest${year}.de" \
      > "${data}/text/newstest${year}.tsv"
    train_tsvs+=("${data}/text/newstest${year}.tsv")
  done
fi
# bucket_pairs TSV LOW HIGH N OUT: the first N pairs whose source has LOW..HIGH words.
bucket_pairs() {
  awk -F '\t' -v lo="$2" -v hi="$3" -v n="$4" \
    '{ w = split($1, a, " ") } w >= lo && w <= hi && $2 != "" && count < n { print; count++ }' "$1" > "$5"
}
paste -d '\t' "${WMT}/test/newstest2016.en" "${WMT}/test/newstest2016.de" > "${data}/text/test.tsv"
for bucket in "${BUCKETS[@]}"; do
  IFS=: read -r name low high <<< "${bucket}"
  bucket_pairs "${data}/text/test.tsv" "${low}" "${high}" "${bucket_sentences}" "${data}/text/test-${name}.n${bucket_sentences}.tsv"
  bucket_pairs "${data}/text/sample.tsv" "${low}" "${high}" "${bucket_train_pairs}" "${data}/text/train-${name}.n${bucket_train_pairs}.tsv"
done

prepare=("${bin}/memtrain-prepare" --corpus=wmt16 --progress=false)
run_step "${data}" train "${prepare[@]}" --vocab_size="${vocab}" --seed=1 --split=train \
  --inputs="$(IFS=,; echo "${train_tsvs[*]}")" --output="${data}/train.h5" --stats_json="${data}/train.stats.json"
tokenizer=(--tokenizer_from="${data}/train.h5")
run_step "${data}" dev "${prepare[@]}" "${tokenizer[@]}" --split=valid \
  --inputs="${WMT}/validation/newstest2015.en,${WMT}/validation/newstest2015.de" --output="${data}/dev.h5" \
  --stats_json="${data}/dev.stats.json"
run_step "${data}" test "${prepare[@]}" "${tokenizer[@]}" --split=test \
  --inputs="${WMT}/test/newstest2016.en,${WMT}/test/newstest2016.de" --output="${data}/test.h5" \
  --stats_json="${data}/test.stats.json"
for bucket in "${BUCKETS[@]}"; do
  name="${bucket%%:*}"
  # The pair counts are in the file names, so a changed count prepares again.
  run_step "${data}" "test-${name}" "${prepare[@]}" "${tokenizer[@]}" --split=test \
    --inputs="${data}/text/test-${name}.n${bucket_sentences}.tsv" --output="${data}/test-${name}.h5" \
    --stats_json="${data}/test-${name}.stats.json"
  run_step "${data}" "train-${name}" "${prepare[@]}" "${tokenizer[@]}" --split=train \
    --inputs="${data}/text/train-${name}.n${bucket_train_pairs}.tsv" --output="${data}/train-${name}.h5" \
    --stats_json="${data}/train-${name}.stats.json"
done
# New data (a step above ran) makes every model step run again, though its
# command line is unchanged.
if ran_here "${data}"; then fresh=true; fi

# ---- models -----------------------------------------------------------------
model_flags() {
  case "$1" in
    softmax) ;;
    linformer-k*) echo "--attention=linformer --layer_attention=0:softmax,1:softmax --linformer_k=${1#linformer-k}" ;;
  esac
}
for model in "${MODELS[@]}"; do
  dir="${run}/${model}"
  read -r -a extra <<< "$(model_flags "${model}")"
  train=("${bin}/memtrain-train" --flagfile="${FLAGFILE}" "${extra[@]}" --max_tokens="${max_tokens}")
  run_step "${dir}" train "${train[@]}" --train_data="${data}/train.h5" --steps="${steps}" \
    --metrics="${dir}/metrics.jsonl" --save_dir="${dir}/model"
  evaluate=("${bin}/memtrain-eval" --model="${dir}/model" --max_source_length=256 --steps="${ppl_batches}" "${beam[@]}")
  run_step "${dir}" eval-dev "${evaluate[@]}" --data="${data}/dev.h5" --generate="${dev_sentences}" \
    --metrics="${dir}/eval-dev.jsonl"
  run_step "${dir}" eval-test "${evaluate[@]}" --data="${data}/test.h5" --metrics="${dir}/eval-test.jsonl"
  for bucket in "${BUCKETS[@]}"; do
    name="${bucket%%:*}"
    run_step "${dir}" "infer-${name}" "${evaluate[@]}" --data="${data}/test-${name}.h5" \
      --generate="${bucket_sentences}" --metrics="${dir}/infer-${name}.jsonl"
    run_step "${dir}" "train-${name}" "${train[@]}" --train_data="${data}/train-${name}.h5" \
      --steps="${timing_steps}" --log_every=1 --metrics="${dir}/train-${name}.jsonl"
  done
done

write_results --models="$(IFS=,; echo "${MODELS[*]}")" \
  --buckets="$(for b in "${BUCKETS[@]}"; do printf '%s,' "${b%%:*}"; done | sed 's/,$//')"
log "done: ${results} (section linformer), ${png_dir}/linformer.png"
