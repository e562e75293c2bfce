#!/usr/bin/env bash
# Every validated flag of memtrain-train, -generate, -eval and -build-memory, given a bad
# value: exit status 1, one message that names the flag or the value and what
# is allowed, and no signal or C++ stack trace (issue 14: no crash paths).
#
#   bad_flags.sh BIN_DIR
set -euo pipefail
bin="$1"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
"${bin}/memtrain-prepare" --corpus=demo --demo_documents=40 --vocab_size=500 --output="${work}/demo.h5" \
  --progress=false 2>"${work}/prepare.log" || { cat "${work}/prepare.log"; exit 1; }

failures=0
train_args=(--train_data="${work}/demo.h5" --steps=2 --encoder_layers=0 --decoder_layers=1 --model_dim=16
  --heads=2 --ffn_dim=32 --streams=1 --segment_length=8 --lr_schedule=constant --warmup_steps=0)
"${bin}/memtrain-train" "${train_args[@]}" --save_dir="${work}/model" >"${work}/train.log" 2>&1 \
  || { cat "${work}/train.log"; exit 1; }
saved_args=(--model="${work}/model" --data="${work}/demo.h5")
binary=memtrain-train args=("${train_args[@]}")

expect_refusal() {  # flag=value, text the message must contain; runs ${binary} ${args[@]}
  local flag="$1" text="$2" out rc=0
  out="$(timeout 120 "${bin}/${binary}" "${args[@]}" "${flag}" 2>&1)" || rc=$?
  if [[ ${rc} != 1 ]] || ! grep -qF -- "${text}" <<<"${out}" || grep -q "Exception raised from\|Check failure stack" <<<"${out}"; then
    echo "FAIL ${binary} ${flag}: exit ${rc}, expected 1 and a message containing '${text}'; got:"
    tail -5 <<<"${out}"
    failures=$((failures + 1))
  else
    echo "ok   ${binary} ${flag}: $(grep -F -- "${text}" <<<"${out}" | head -1 | sed 's/^.*\] //')"
  fi
}
expect_refusal --optimizer=sgd "unknown optimizer 'sgd'; known: adam, adamw"
expect_refusal --lr_schedule=step "known: constant, inverse_sqrt, cosine"
expect_refusal --task=foo "unknown task 'foo'; known: lm, translation, summarization, qa"
expect_refusal --attention=flash "unknown attention kind 'flash'"
expect_refusal --knn_backend=annoy "'annoy' is not one of exact"
expect_refusal --device=tpu "--device=tpu is not one of auto, cpu, cuda"
expect_refusal --collectives=ib "--collectives=ib is not one this build has"
expect_refusal --unused_parameters=maybe "'maybe' is not a policy for unused parameters: error, zero"
expect_refusal --accumulate=0 "accumulate >= 1"
expect_refusal --heads=3 "heads"
expect_refusal --linformer_sharing=all "'all' is not a Linformer sharing: none, headwise, key_value, layerwise"
expect_refusal --streams=0 "--streams must be >= 1, got 0"
expect_refusal --train_data=/nonexistent.h5 "/nonexistent.h5"
expect_refusal --knn_memory_on_resize=reshard "(resharding the memories is not implemented)"
expect_refusal --resume_changed=seed "--resume_changed: 'seed' is not a run-identity field"

binary=memtrain-generate args=("${saved_args[@]}")
expect_refusal --beam=0 "--beam must be >= 1, got 0"
expect_refusal --max_length=0 "--max_length must be >= 1, got 0"
expect_refusal --count=0 "--count must be >= 1, got 0"
expect_refusal --first=-1 "--first must be >= 0, got -1"
expect_refusal --prompt_tokens=0 "--prompt_tokens must be >= 1, got 0"
expect_refusal --temperature=-1 "--temperature must be >= 0, got -1"
expect_refusal --top_k=-1 "--top_k must be >= 0, got -1"
expect_refusal --batch_size=0 "--batch_size must be >= 1, got 0"
expect_refusal --device=tpu "--device=tpu is not one of auto, cpu, cuda"
expect_refusal --model="${work}/none" "${work}/none holds no model"

binary=memtrain-eval args=("${saved_args[@]}")
expect_refusal --steps=-1 "--steps must be >= 0, got -1"
expect_refusal --generate=-2 "--generate must be >= 0, got -2"
expect_refusal --segment_length=0 "--segment_length must be >= 1, got 0"
expect_refusal --knn_scope=x "'x' is not one of"
expect_refusal --collectives=ib "--collectives=ib is not one this build has"

binary=memtrain-build-memory args=("${saved_args[@]}" --out="${work}/memory")
expect_refusal --capacity_per_rank=-5 "--capacity_per_rank must be >= 0, got -5"
expect_refusal --steps=-1 "--steps must be >= 0, got -1"
expect_refusal --out= "--out is required"
expect_refusal --knn_backend=annoy "'annoy' is not one of exact"
expect_refusal --segment_length=0 "--segment_length must be >= 1, got 0"
expect_refusal --data="${work}/demo.h5" "has no knn layer"
exit $((failures > 0))
