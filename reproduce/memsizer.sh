#!/usr/bin/env bash
# reproduce/memsizer.sh: MemSizer (Zhang & Cai 2022, "Linearizing Transformer
# with Key-Value Memory") against the vanilla Transformer at the scale of a
# 2-core machine: translation (BLEU), summarization (ROUGE-1/2/L), language
# modelling (perplexity), qa fine-tuning from the LM checkpoint (OpenOrca), and
# decoding time and state memory per token against the output length; written
# to docs/RESULTS.md §"MemSizer vs Transformer" and docs/results/memsizer*.png.
#
#   reproduce/memsizer.sh [--fresh]          # or: scripts/reproduce memsizer
#   MEMTRAIN_REPRODUCE_SMOKE=1 reproduce/memsizer.sh   # ~1.5 minutes, numbers meaningless
#
# Budget (full run, quiet 2-core machine): measured 2026-12-06 with nothing
# else running, at the first version's steps (translation 450, summarization
# 300, LM 400): the whole section took 6 min 36 s (translation 85-92 s a
# model, summarization 39-41 s, LM 30-33 s, qa 8-10 s); the estimate made
# beforehand on the loaded machine (40 min) was 6x too high. At these steps
# (2000, 1200, 1600, 60) the section took 23.8 min with its evaluations
# (2026-12-06, quiet; estimated beforehand at ~30); docs/RESULTS.md has each
# run's own minutes. The smoke run (4 steps a run of 256-token batches,
# 2 eval batches, a few generated records) took 110-118 s wall niced at load
# average 4.4 (~100 s of CPU, inflated by the contention); a quiet machine
# runs it in well under 90 s (its steps are 0.1-0.3 s, start-up ~1 s a binary).
#
# Steps (outputs under runs/reproduce/memsizer/):
#   data/        the inputs (a smoke run cuts them to their first lines) and
#                the corpora: mt (WMT16 en-de train sample, 10K pairs -> joint
#                BPE 4000; valid = newstest2015), xsum (no train split in
#                shared/: train on its 2,000 test documents, evaluate on the
#                first 300 validation documents; BPE 4000), qa (OpenOrca's 50
#                records: first 40 train, last 10 valid, with the LM's
#                tokenizer); the LM's WikiText-2 (train on test.txt, evaluate on
#                valid.txt; BPE 4000) is reproduce/corpora.sh's wikitext2,
#                shared with the other sections
#   mt/ROW, xsum/ROW   memtrain-train --flagfile=configs/reproduce-memsizer-seq2seq.flags
#                + the row's attention, then memtrain-eval --generate=N
#                (perplexity on the valid set, then BLEU / ROUGE of beam search,
#                beam 4, on its first N records)
#   lm/ROW       memtrain-train --flagfile=configs/reproduce-memsizer-lm.flags, memtrain-eval
#   qa/ROW       memtrain-train --task=qa --encoder_layers=0 --init_from=lm/ROW/model
#                (decoder-only on [question <sep> answer]); memtrain-eval
#                --generate (perplexity, ROUGE). A build that refuses decoder-only qa ("task
#                qa needs an encoder-decoder model") is logged and the row is
#                written "not run: <reason>".
#   decode/ROW   memtrain-generate with the LM, greedy, 4 prompts, output lengths
#                1, 128, 256, 512, 1024, 2048: the whole model's decode time per
#                token (a first version stopped at 512 after a super-linear
#                slowdown seen at load 9, 280 s for 1024 tokens; on the quiet
#                machine the same generation takes 2.0 s, 2026-12-06)
#   bench/       bench-attention --kinds=softmax,memsizer --train=false: one
#                layer's decode time per token (and, where the build reports
#                decode_state_bytes, its state's bytes) against the position
# ROW is transformer (softmax everywhere) or memsizer (the reference's MT set-up:
# softmax encoder, MemSizer decoder self-attention with 4 slots and cross-
# attention with 32; the LM: MemSizer self-attention with 32 slots).
# Then reproduce/memsizer_results.py writes the tables and PNGs.
set -euo pipefail
section=memsizer
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/corpora.sh"
parse_section_args "$@"
no_section_args
need_binaries memtrain-prepare memtrain-train memtrain-eval memtrain-generate bench-attention

readonly ROWS=(transformer memsizer)
readonly SEQ2SEQ_FLAGS="${root}/configs/reproduce-memsizer-seq2seq.flags"
readonly LM_FLAGS="${root}/configs/reproduce-memsizer-lm.flags"
# The reference's MT set-up for the MemSizer row (configs/wmt16.flags).
readonly MEMSIZER_SEQ2SEQ=(--layer_attention=0:memsizer,1:memsizer,2:memsizer --cross_attention=memsizer
                           --memsizer_slots=4 --memsizer_cross_slots=32
                           --memsizer_key_init_scale=8 --memsizer_value_init_scale=8)
readonly MEMSIZER_LM=(--attention=memsizer)
# The refusal of a build without decoder-only qa (trainer's binary.cpp).
readonly QA_REFUSAL="needs an encoder-decoder model"

mt_steps="$(scaled 2000)" xsum_steps="$(scaled 1200)" lm_steps="$(scaled 1600)" qa_steps="$(scaled 60)"
mt_generate="$(scaled 100 4)" xsum_generate="$(scaled 50 2)" qa_generate="$(scaled 10 2)"
decode_positions="$(scaled 4096 64)"
# Warm-up shorter than a smoke run's few steps (the cosine schedule needs it).
warmup() { if [[ "${smoke}" == true ]]; then echo 1; else echo "$1"; fi; }
# A smoke run's batches are small too (the flagfiles' are what a full run uses).
batch=(--max_tokens="$(scaled 2048 256)")
# Perplexity batches per evaluation (0: the whole valid set).
eval_batches=(--steps="$(scaled 0 2)")
shared="${shared_data}"
data="${run}/data"
mkdir -p "${data}"

# --- data ------------------------------------------------------------------------
# head -n LINES of each input (a smoke run keeps a few; a full run everything).
subset() {
  local lines="$1" out="$2"
  shift 2
  mkdir -p "${out}"
  local f
  for f in "$@"; do head -n "${lines}" "${f}" > "${out}/$(basename "${f}")" || return 1; done
}
all=100000000
run_step "${data}" inputs subset "$(scaled "${all}" 200)" "${data}/inputs" \
  "${shared}/wmt16_en_de/train_sample/train.tok.en" "${shared}/wmt16_en_de/train_sample/train.tok.de" \
  "${shared}/wmt16_en_de/validation/newstest2015.en" "${shared}/wmt16_en_de/validation/newstest2015.de" \
  "${shared}/xsum/test/test_subset_a.jsonl" "${shared}/xsum/test/test_subset_b.jsonl"
run_step "${data}" inputs-xsum-valid subset "$(scaled 300 10)" "${data}/inputs" \
  "${shared}/xsum/validation/validation_subset.jsonl"
# OpenOrca: 50 records in all, so the split is the same in a smoke run.
split_qa() {
  head -n 40 "$1" > "${data}/inputs/openorca.train.jsonl" && tail -n 10 "$1" > "${data}/inputs/openorca.valid.jsonl"
}
run_step "${data}" inputs-qa split_qa "${shared}/openorca/openorca_sample_50.jsonl"
in="${data}/inputs"
prepare=("${bin}/memtrain-prepare" --progress=false --seed=1)
run_step "${data}" mt-train "${prepare[@]}" --corpus=wmt16 --inputs="${in}/train.tok.en,${in}/train.tok.de" \
  --vocab_size=4000 --split=train --output="${data}/mt.train.h5" --stats_json="${data}/mt.train.json"
run_step "${data}" mt-valid "${prepare[@]}" --corpus=wmt16 --inputs="${in}/newstest2015.en,${in}/newstest2015.de" \
  --tokenizer_from="${data}/mt.train.h5" --split=valid --output="${data}/mt.valid.h5" --stats_json="${data}/mt.valid.json"
run_step "${data}" xsum-train "${prepare[@]}" --corpus=xsum --inputs="${in}/test_subset_a.jsonl,${in}/test_subset_b.jsonl" \
  --vocab_size=4000 --split=train --output="${data}/xsum.train.h5" --stats_json="${data}/xsum.train.json"
run_step "${data}" xsum-valid "${prepare[@]}" --corpus=xsum --inputs="${in}/validation_subset.jsonl" \
  --tokenizer_from="${data}/xsum.train.h5" --split=valid --output="${data}/xsum.valid.h5" --stats_json="${data}/xsum.valid.json"
# WikiText-2 as the other sections have it (reproduce/corpora.sh).
prepare_corpus wikitext2
lm_data="$(corpus_dir wikitext2)"
# The qa corpus shares the LM's tokenizer (--init_from needs the same vocabulary).
run_step "${data}" qa-train "${prepare[@]}" --corpus=openorca --inputs="${in}/openorca.train.jsonl" \
  --tokenizer_from="${lm_data}/train.h5" --split=train --output="${data}/qa.train.h5" --stats_json="${data}/qa.train.json"
run_step "${data}" qa-valid "${prepare[@]}" --corpus=openorca --inputs="${in}/openorca.valid.jsonl" \
  --tokenizer_from="${lm_data}/train.h5" --split=valid --output="${data}/qa.valid.h5" --stats_json="${data}/qa.valid.json"

# --- seq2seq: translation and summarization ----------------------------------------
# Steps that run again start from no metrics (appended to) and no model:
# common.sh's `replacing`.
row_flags() {  # ROW lm|seq2seq
  [[ "$1" == memsizer ]] || return 0
  if [[ "$2" == lm ]]; then echo "${MEMSIZER_LM[@]}"; else echo "${MEMSIZER_SEQ2SEQ[@]}"; fi
}
seq2seq_row() {  # NAME TASK STEPS GENERATE MAX_LENGTH ROW [flags of train and eval]
  local name="$1" task="$2" steps="$3" generate="$4" max_length="$5" row="$6"
  shift 6
  local dir="${run}/${name}/${row}"
  # shellcheck disable=SC2046
  run_step "${dir}" train replacing "${dir}/metrics.jsonl" "${dir}/model" -- \
    "${bin}/memtrain-train" --flagfile="${SEQ2SEQ_FLAGS}" --task="${task}" \
    $(row_flags "${row}" seq2seq) "$@" "${batch[@]}" --steps="${steps}" --warmup_steps="$(warmup 100)" \
    --train_data="${data}/${name}.train.h5" --metrics="${dir}/metrics.jsonl" --save_dir="${dir}/model"
  # Perplexity on the whole valid set, then beam search of its first records.
  run_step "${dir}" eval replacing "${dir}/eval.jsonl" -- "${bin}/memtrain-eval" --model="${dir}/model" \
    --data="${data}/${name}.valid.h5" "$@" "${eval_batches[@]}" --generate="${generate}" --beam=4 --max_length="$(scaled "${max_length}" 16)" \
    --metrics="${dir}/eval.jsonl"
}
for row in "${ROWS[@]}"; do
  seq2seq_row mt translation "${mt_steps}" "${mt_generate}" 160 "${row}"
  seq2seq_row xsum summarization "${xsum_steps}" "${xsum_generate}" 64 "${row}" --max_source_length=256 --max_target_length=64
done

# --- language model, then qa fine-tuning from it ------------------------------------
# Decoder-only qa comes with the decoder-qa work; a build without it refuses
# --task=qa --encoder_layers=0 at start-up, which is recorded (qa/ROW/not_run.txt)
# instead of failing the section. The train step's command line carries the
# binary's checksum, so a rebuilt binary runs it again.
qa_train() {
  local dir="$1"
  shift 2  # DIR and the binary's checksum
  rm -f "${dir}/not_run.txt"
  local out status=0
  out="$("$@" 2>&1)" || status=$?
  printf '%s\n' "${out}"
  if (( status != 0 )) && grep -q "${QA_REFUSAL}" <<< "${out}"; then
    grep -m1 -o "task qa ${QA_REFUSAL}.*" <<< "${out}" > "${dir}/not_run.txt"
    echo "[reproduce memsizer] qa: this build refuses decoder-only qa; recorded in ${dir}/not_run.txt" >&2
    return 0
  fi
  return "${status}"
}
# A prefix LM's batch holds whole [question <sep> answer] rows: --max_tokens
# must cover both lengths (the LM flagfile's 384 + 128; a smoke run's 64 + 32).
qa_batch=(--max_tokens="$(scaled 2048 256)" --max_source_length="$(scaled 384 64)"
          --max_target_length="$(scaled 128 32)")
train_sha="$(sha256sum "${bin}/memtrain-train" | cut -c1-16)"
for row in "${ROWS[@]}"; do
  dir="${run}/lm/${row}"
  # shellcheck disable=SC2046
  run_step "${dir}" train replacing "${dir}/metrics.jsonl" "${dir}/model" -- \
    "${bin}/memtrain-train" --flagfile="${LM_FLAGS}" --task=lm $(row_flags "${row}" lm) \
    --streams="$(scaled 8 2)" --segment_length="$(scaled 128 64)" --steps="${lm_steps}" \
    --warmup_steps="$(warmup 50)" --train_data="${lm_data}/train.h5" \
    --metrics="${dir}/metrics.jsonl" --save_dir="${dir}/model"
  run_step "${dir}" eval replacing "${dir}/eval.jsonl" -- "${bin}/memtrain-eval" --model="${dir}/model" \
    --data="${lm_data}/valid.h5" "${eval_batches[@]}" --streams="$(scaled 8 2)" --segment_length="$(scaled 128 64)" --metrics="${dir}/eval.jsonl"

  qa="${run}/qa/${row}"
  depends_on "${qa}" "${dir}"  # fine-tuned from this LM
  # shellcheck disable=SC2046
  run_step "${qa}" train qa_train "${qa}" "memtrain-train-sha256=${train_sha}" \
    replacing "${qa}/metrics.jsonl" "${qa}/model" -- "${bin}/memtrain-train" \
    --flagfile="${LM_FLAGS}" $(row_flags "${row}" lm) --task=qa --encoder_layers=0 --init_from="${dir}/model" \
    --lr=3e-4 --lr_schedule=constant "${qa_batch[@]}" --steps="${qa_steps}" --warmup_steps="$(warmup 10)" \
    --train_data="${data}/qa.train.h5" --metrics="${qa}/metrics.jsonl" --save_dir="${qa}/model"
  if [[ -f "${qa}/not_run.txt" ]]; then
    log "qa/${row}: not run: $(cat "${qa}/not_run.txt")"
  else
    run_step "${qa}" eval replacing "${qa}/eval.jsonl" -- "${bin}/memtrain-eval" --model="${qa}/model" \
      --data="${data}/qa.valid.h5" "${qa_batch[@]}" "${eval_batches[@]}" --generate="${qa_generate}" --beam=4 --max_length="$(scaled 128 16)" \
      --metrics="${qa}/eval.jsonl"
  fi
done

# --- decoding time against the output length: the whole LM --------------------------
# Greedy continuation of 4 valid-set prompts (16 tokens), at most L tokens
# (no segment end before L; a document's end stops one sooner); the L=1 run
# is the start-up and prompt, taken off the others (memsizer_results.py).
for row in "${ROWS[@]}"; do
  depends_on "${run}/decode/${row}" "${run}/lm/${row}"  # decodes this LM
  for length in 1 $(scaled "128 256 512 1024 2048" "8 16"); do
    run_step "${run}/decode/${row}" "length-${length}" "${bin}/memtrain-generate" --model="${run}/lm/${row}/model" \
      --data="${lm_data}/valid.h5" --count=4 --first=0 --prompt_tokens=16 --beam=1 --max_length="${length}" \
      --segment_length=4096
  done
done

# --- decoding cost against the output length: one layer ----------------------------
run_step "${run}/bench" decode "${bin}/bench-attention" --kinds=softmax,memsizer --train=false \
  --decode_positions="${decode_positions}" --json="${run}/bench/decode.json"

write_results
