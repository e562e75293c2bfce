#!/usr/bin/env bash
# Trains each task a few dozen steps end to end on the real corpus samples
# (../shared/data): memtrain-prepare -> memtrain-train -> the training loss
# must fall (mean of the last 5 steps below the mean of the first 5 by a
# margin). qa also fine-tunes from a saved model (--init_from) and must start
# lower than from scratch. qa_prefix_lm trains qa on a decoder-only model (a
# prefix LM) from scratch and from a WikiText LM's model dir, evaluates it
# (perplexity, ROUGE of greedy search) and generates from records and from
# text. Exit 77 (ctest: skipped) without the samples.
#
#   train_real_samples.sh BIN_DIR SHARED_DATA TASK
#
# The model and optimizer come from configs/<task>-tiny.flags, so this also
# checks that those configs train.
set -euo pipefail
bin="$1" data="$2" task="$3"
configs="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../configs" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

need() { [[ -e "$1" ]] || { echo "SKIP: $1 is missing (the real samples live in ../shared/data)"; exit 77; }; }

prepare() {  # corpus, inputs
  "${bin}/memtrain-prepare" --corpus="$1" --inputs="$2" --vocab_size=600 --output="${work}/train.h5" \
    --progress=false 2>"${work}/prepare.log" || { cat "${work}/prepare.log"; exit 1; }
}

# Loss falls: compares the first and last 5 training records of a metrics file.
check_learning() {
  python3 - "$1" "$2" <<'PY'
import json, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "train"]
first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
print(f"{sys.argv[2]}: {len(losses)} steps, loss {first:.3f} -> {last:.3f}")
if len(losses) < 10 or not last < first - 0.5:
    sys.exit(f"{sys.argv[2]}: the loss did not fall by 0.5 nats")
PY
}

train() {  # name, extra flags...
  local name="$1"; shift
  "${bin}/memtrain-train" --flagfile="${configs}/${config}" --train_data="${work}/train.h5" --steps=40 \
    --log_every=20 --metrics="${work}/${name}.jsonl" "$@" 2>"${work}/${name}.log" \
    || { tail -20 "${work}/${name}.log"; exit 1; }
  # A fine-tuned model starts where the first run ended; only training from scratch must fall far.
  [[ "${name}" != scratch ]] || check_learning "${work}/${name}.jsonl" "${task}/${name}"
}

case "${task}" in
  lm)
    need "${data}/wikitext/wikitext-2/valid.txt"
    config=wikitext103-tiny.flags
    prepare wikitext "${data}/wikitext/wikitext-2/valid.txt"
    train scratch ;;
  translation)
    need "${data}/wmt16_en_de/validation/newstest2015.en"
    config=wmt16-tiny.flags
    prepare wmt16 "${data}/wmt16_en_de/validation/newstest2015.de,${data}/wmt16_en_de/validation/newstest2015.en"
    train scratch --save_dir="${work}/model"
    # The saved model evaluates (perplexity, beam search, BLEU with sacreBLEU's signature) and generates.
    "${bin}/memtrain-eval" --model="${work}/model" --data="${work}/train.h5" --steps=5 --generate=8 --beam=2 \
      --max_length=20 >"${work}/eval.out" 2>"${work}/eval.log" || { cat "${work}/eval.log"; exit 1; }
    grep -q "ppl" "${work}/eval.out" && grep -q "BLEU .*nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" "${work}/eval.out" \
      || { echo "memtrain-eval printed no perplexity or BLEU:"; cat "${work}/eval.out"; exit 1; }
    "${bin}/memtrain-generate" --model="${work}/model" --data="${work}/train.h5" --count=2 --beam=2 --max_length=10 \
      >"${work}/generate.out" 2>/dev/null
    [[ "$(grep -c "output:" "${work}/generate.out")" == 2 ]] || { echo "memtrain-generate:"; cat "${work}/generate.out"; exit 1; }
    cat "${work}/eval.out" ;;
  summarization)
    need "${data}/xsum/validation/validation_subset.jsonl"
    config=xsum-tiny.flags
    prepare xsum "${data}/xsum/validation/validation_subset.jsonl"
    train scratch ;;
  qa)
    need "${data}/openorca/openorca_sample_50.jsonl"
    config=openorca-qa-tiny.flags
    prepare openorca "${data}/openorca/openorca_sample_50.jsonl"
    train scratch --save_dir="${work}/model"
    train finetune --init_from="${work}/model"
    python3 - "${work}/scratch.jsonl" "${work}/finetune.jsonl" <<'PY'
import json, sys
first = [next(r["loss"] for r in map(json.loads, open(p)) if r.get("kind") == "train") for p in sys.argv[1:]]
print(f"qa: first loss from scratch {first[0]:.3f}, fine-tuned {first[1]:.3f}")
if not first[1] < first[0] - 1.0:
    sys.exit("qa: --init_from did not start from the trained model")
PY
    ;;
  qa_prefix_lm)
    need "${data}/wikitext/wikitext-2/valid.txt"
    need "${data}/openorca/openorca_sample_50.jsonl"
    config=wikitext103-tiny.flags
    prepare wikitext "${data}/wikitext/wikitext-2/valid.txt"
    "${bin}/memtrain-train" --flagfile="${configs}/${config}" --train_data="${work}/train.h5" --steps=40 \
      --save_dir="${work}/lm" 2>"${work}/lm.log" || { tail -20 "${work}/lm.log"; exit 1; }
    "${bin}/memtrain-prepare" --corpus=openorca --inputs="${data}/openorca/openorca_sample_50.jsonl" \
      --tokenizer_from="${work}/train.h5" --output="${work}/qa.h5" --progress=false 2>"${work}/prepare.log" \
      || { cat "${work}/prepare.log"; exit 1; }
    # The LM's model flags, the task and the example shapes of a qa run.
    qa=(--train_data="${work}/qa.h5" --task=qa --max_tokens=1024 --max_source_length=256 --max_target_length=128)
    train scratch "${qa[@]}" --save_dir="${work}/model"
    train finetune "${qa[@]}" --init_from="${work}/lm"
    python3 - "${work}/scratch.jsonl" "${work}/finetune.jsonl" <<'PY'
import json, sys
first = [next(r["loss"] for r in map(json.loads, open(p)) if r.get("kind") == "train") for p in sys.argv[1:]]
print(f"qa_prefix_lm: first loss from scratch {first[0]:.3f}, from the lm {first[1]:.3f}")
if not first[1] < first[0] - 0.3:
    sys.exit("qa_prefix_lm: --init_from did not start from the lm's weights")
PY
    "${bin}/memtrain-eval" --model="${work}/model" --data="${work}/qa.h5" --max_tokens=1024 --max_source_length=256 \
      --max_target_length=128 --generate=4 --beam=1 --max_length=20 >"${work}/eval.out" 2>"${work}/eval.log" \
      || { cat "${work}/eval.log"; exit 1; }
    grep -Eq "ppl [0-9.]+ over" "${work}/eval.out" \
      && grep -Eq "ROUGE-1/2/L F1 [0-9.]+/[0-9.]+/[0-9.]+ .* on 4 examples" "${work}/eval.out" \
      || { echo "memtrain-eval printed no perplexity or ROUGE:"; cat "${work}/eval.out"; exit 1; }
    "${bin}/memtrain-generate" --model="${work}/model" --data="${work}/qa.h5" --count=2 --beam=2 --max_length=10 \
      >"${work}/generate.out" 2>/dev/null
    [[ "$(grep -c "output:" "${work}/generate.out")" == 2 ]] || { echo "memtrain-generate:"; cat "${work}/generate.out"; exit 1; }
    echo '{"question": "What is the capital of France?"}' >"${work}/question.jsonl"
    "${bin}/memtrain-generate" --model="${work}/model" --data="${work}/qa.h5" --input="${work}/question.jsonl" \
      --beam=1 --max_length=10 --output="${work}/answer.txt" 2>"${work}/generate.log" \
      || { cat "${work}/generate.log"; exit 1; }
    [[ "$(wc -l <"${work}/answer.txt")" == 1 ]] || { echo "memtrain-generate --input:"; cat "${work}/answer.txt"; exit 1; }
    cat "${work}/eval.out" ;;
  *) echo "unknown task ${task}"; exit 2 ;;
esac
