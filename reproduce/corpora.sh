# reproduce/corpora.sh: the long-document language-model corpora that more
# than one section of scripts/reproduce trains on, prepared once under
# $corpora (default: corpora/ beside the section's run directory, so every
# section of one reproduction shares them). Sourced after reproduce/common.sh.
#
#   corpus_dir NAME       where NAME's train.h5 and valid.h5 are
#   prepare_corpus NAME   makes them unless present (--fresh: again)
#
#   demo       scripts/quickstart's corpus: memtrain-prepare --corpus=demo
#              --demo_recall --demo_distance_words=150, 2000 train / 100 valid
#              documents of ~330 tokens, each a facts line, ~150 words of filler
#              and the facts line again (seeds 1 and 2; BPE, 1000 pieces); the
#              only corpus with long-range tokens (the repeated line's names).
#              Tried first (2026-12-06), with whole documents in one segment for
#              600 steps: the question form with facts ~1000 words back (long-range
#              ppl 39.4 with the facts in view against 46.0 without) and the recall
#              form at 1000 words (43.9 against 48.2) were not learnt, so no memory
#              could have helped; the quickstart's form is (control 1.02)
#   code       scripts/code-corpus: this machine's Python standard library, a
#              document per file; valid = asyncio, email, json, logging; BPE, 4000
#   wikitext2  ../shared/data/wikitext/wikitext-2: train on the official *test*
#              file, evaluate on the official *valid* one (shared/ has no train
#              split); BPE, 4000 pieces
# A smoke run makes smaller corpora (demo: 200 / 20 documents; the others as
# they are: they take seconds).
corpora="${MEMTRAIN_CORPORA_DIR:-$(dirname "${run}")/corpora}"
if [[ "${smoke}" == true ]]; then corpora="${MEMTRAIN_CORPORA_DIR:-$(dirname "${run}")/corpora-smoke}"; fi
readonly LM_CORPORA=(demo code wikitext2)

corpus_dir() { echo "${corpora}/$1"; }

_prepare_demo() {
  local dir="$1"
  "${bin}/memtrain-prepare" --corpus=demo --demo_recall --demo_documents="$(scaled 2000 200)" --demo_distance_words=150 \
    --vocab_size=1000 --seed=1 --split=train --output="${dir}/train.h5" --progress=false \
    --stats_json="${dir}/train.json" || return 1
  "${bin}/memtrain-prepare" --corpus=demo --demo_recall --demo_documents="$(scaled 100 20)" --demo_distance_words=150 \
    --seed=2 --split=valid --tokenizer_from="${dir}/train.h5" --output="${dir}/valid.h5" \
    --progress=false --stats_json="${dir}/valid.json" || return 1
}
_prepare_code() {
  local dir="$1"
  MEMTRAIN_RUN_DIR="${dir}" MEMTRAIN_BUILD_DIR="${build}" MEMTRAIN_CODE_VOCAB=4000 \
    MEMTRAIN_CODE_DOCUMENT=file "${root}/scripts/code-corpus" || return 1
  mv "${dir}/code.train.h5" "${dir}/train.h5" || return 1
  mv "${dir}/code.valid.h5" "${dir}/valid.h5"
}
_prepare_wikitext2() {
  local dir="$1" wikitext="${shared_data}/wikitext/wikitext-2"
  [[ -f "${wikitext}/test.txt" && -f "${wikitext}/valid.txt" ]] || {
    echo "WikiText-2 is not at ${wikitext} (test.txt, valid.txt; see ../shared/data/README.md)"
    return 1
  }
  "${bin}/memtrain-prepare" --corpus=wikitext --inputs="${wikitext}/test.txt" --split=train \
    --vocab_size=4000 --seed=1 --output="${dir}/train.h5" --progress=false --stats_json="${dir}/train.json" || return 1
  "${bin}/memtrain-prepare" --corpus=wikitext --inputs="${wikitext}/valid.txt" --split=valid \
    --tokenizer_from="${dir}/train.h5" --output="${dir}/valid.h5" --progress=false \
    --stats_json="${dir}/valid.json" || return 1
}

prepare_corpus() {
  local name="$1" dir
  dir="$(corpus_dir "${name}")"
  [[ "${fresh}" == false && -f "${dir}/valid.h5" ]] && return
  log "${name}: preparing the corpus in ${dir}"
  rm -rf "${dir}"
  mkdir -p "${dir}"
  "_prepare_${name}" "${dir}" > "${dir}.log" 2>&1 || {
    rm -rf "${dir}"
    fail "${name}: preparing the corpus (log: ${dir}.log)" "${dir}.log"
  }
}
