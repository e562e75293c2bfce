#!/usr/bin/env bash
# memtrain-generate on plain text (issue 18), on the real samples:
#  - translation: an en->de model (a few steps on newstest2015); its output
#    for the first 40 lines of newstest2016.en (--output, and again from
#    standard input) scored by sacreBLEU's command line equals memtrain-eval's
#    BLEU for the same model and beam, and equals record mode's outputs line
#    for line (the text went through a memtrain-prepare child to the ids);
#  - a line that is not UTF-8, or too long, is refused naming the line, and
#    --output keeps what it held;
#  - lm: a tiny knn model (segments of 64 tokens) continues prompts, one of
#    them longer than a segment; sampling repeats under one --seed and
#    changes with another.
# Exit 77 (ctest: skipped) without the samples or sacrebleu.
#
#   generate_text.sh BIN_DIR SHARED_DATA PYTHON
set -euo pipefail
bin="$1" data="$2" python="$3"
configs="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../configs" && pwd)"
sacrebleu="$(dirname "${python}")/sacrebleu"
for need in "${data}/wmt16_en_de/test/newstest2016.en" "${data}/wikitext/wikitext-2/valid.txt" "${sacrebleu}"; do
  [[ -e "${need}" ]] || { echo "SKIP: ${need} is missing"; exit 77; }
done
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
run() {  # log name, command...
  local log="${work}/$1.log"; shift
  "$@" 2>"${log}" || { tail -20 "${log}"; fail "$* exited $?"; }
}

# ---- translation ----------------------------------------------------------------
# A few steps only: what is checked is that memtrain-generate's text path and
# memtrain-eval's record path give the same outputs and the same BLEU, not the
# model. Its outputs score 0.00 against the real reference, which would prove
# nothing, so each reference line is the real one's first three words and then
# the output itself with every second word dropped (a BLEU far from 0 and 100).
wmt="${data}/wmt16_en_de"
head -n 40 "${wmt}/test/newstest2016.en" >"${work}/src.en"
run prepare "${bin}/memtrain-prepare" --corpus=wmt16 --progress=false --vocab_size=600 \
  --inputs="${wmt}/validation/newstest2015.en,${wmt}/validation/newstest2015.de" --output="${work}/train.h5"
run train "${bin}/memtrain-train" --flagfile="${configs}/wmt16-tiny.flags" --train_data="${work}/train.h5" \
  --steps=3 --log_every=3 --save_dir="${work}/mt"
search=(--model="${work}/mt" --beam=2 --max_length=12)
run generate "${bin}/memtrain-generate" "${search[@]}" --data="${work}/train.h5" --input="${work}/src.en" \
  --output="${work}/hyp.de"
[[ "$(wc -l <"${work}/hyp.de")" == 40 ]] || fail "40 inputs, $(wc -l <"${work}/hyp.de") output lines"
grep -q "\[generate\] 100.0% (40 of 40" "${work}/generate.log" || fail "no progress line: $(cat "${work}/generate.log")"
paste -d '\t' <(head -n 40 "${wmt}/test/newstest2016.de") "${work}/hyp.de" \
  | awk -F '\t' '{ n = split($1, r, " "); m = split($2, h, " "); line = r[1] " " r[2] " " r[3];
                   for (i = 1; i <= m; i += 2) line = line " " h[i]; print line }' >"${work}/ref.de"
run prepare_test "${bin}/memtrain-prepare" --corpus=wmt16 --progress=false --split=test --wmt_escaping=plain \
  --tokenizer_from="${work}/train.h5" --inputs="${work}/src.en,${work}/ref.de" --output="${work}/test.h5"
search+=(--data="${work}/test.h5")
run eval "${bin}/memtrain-eval" "${search[@]}" --steps=1 --generate=40 --metrics="${work}/eval.jsonl" >"${work}/eval.out"
# The generate record times the search alone (scripts/reproduce's inference cost).
grep '"metric":"BLEU"' "${work}/eval.jsonl" | grep -qE '"seconds":[0-9.e+-]+[,}]' \
  || fail "the BLEU record has no seconds: $(cat "${work}/eval.jsonl")"
eval_bleu="$(sed -n 's/.*BLEU \([0-9.]*\) (nrefs.*/\1/p' "${work}/eval.out")"
[[ -n "${eval_bleu}" ]] || fail "memtrain-eval printed no BLEU: $(cat "${work}/eval.out")"
sacre_bleu="$("${sacrebleu}" "${work}/ref.de" -i "${work}/hyp.de" -m bleu -b -w 2)"
echo "translation: memtrain-eval BLEU ${eval_bleu}, sacrebleu on memtrain-generate's output ${sacre_bleu}"
[[ "${sacre_bleu}" == "${eval_bleu}" ]] || fail "sacreBLEU ${sacre_bleu} != memtrain-eval ${eval_bleu}"
[[ "${eval_bleu}" != 0.00 && "${eval_bleu}" != 100.00 ]] || fail "BLEU ${eval_bleu} proves nothing"

run records "${bin}/memtrain-generate" "${search[@]}" --count=40 >"${work}/records.out"
sed -n 's/^  output:    //p' "${work}/records.out" >"${work}/records.de"
cmp -s "${work}/records.de" "${work}/hyp.de" || { diff "${work}/records.de" "${work}/hyp.de" | head; fail "text and record outputs differ"; }
run stdin "${bin}/memtrain-generate" "${search[@]}" --input=- --progress=false <"${work}/src.en" >"${work}/stdin.de"
cmp -s "${work}/stdin.de" "${work}/hyp.de" || fail "standard input gave other outputs than --input=FILE"
# The model directory keeps its tokenizer: text in and out without --data,
# and a directory without it asks for --data.
[[ -f "${work}/mt/tokenizer.h5" ]] || fail "--save_dir wrote no tokenizer.h5"
run saved_tokenizer "${bin}/memtrain-generate" --model="${work}/mt" --beam=2 --max_length=12 \
  --input="${work}/src.en" --progress=false >"${work}/saved_tokenizer.de"
cmp -s "${work}/saved_tokenizer.de" "${work}/hyp.de" || fail "the saved tokenizer gave other outputs than --data"
cp -r "${work}/mt" "${work}/mt_without" && rm "${work}/mt_without/tokenizer.h5"
if "${bin}/memtrain-generate" --model="${work}/mt_without" --input="${work}/src.en" 2>"${work}/without.log"; then
  fail "generated without --data or a saved tokenizer"
fi
grep -q -- "--data is required: .*mt_without has no tokenizer.h5" "${work}/without.log" \
  || { cat "${work}/without.log"; fail "no message asking for --data"; }

# Refusals name the line and leave --output as it was.
printf 'A fine line.\nA line with \xff in it.\n' >"${work}/bad.en"
echo "old" >"${work}/kept.de"
refused() {  # expected message (extended regex), flags...
  local expected="$1"; shift
  if "${bin}/memtrain-generate" "${search[@]}" --output="${work}/kept.de" "$@" 2>"${work}/refused.log"; then
    fail "accepted $*"
  fi
  grep -qE -- "${expected}" "${work}/refused.log" || { cat "${work}/refused.log"; fail "no '${expected}'"; }
  [[ "$(cat "${work}/kept.de")" == old ]] || fail "--output changed by a refused run"
  local partial
  for partial in "${work}"/kept.de.partial*; do [[ ! -e "${partial}" ]] || fail "${partial} was left"; done
}
refused "input line 2 is not valid UTF-8" --input="${work}/bad.en"
refused "input line 2 is [0-9]+ tokens long, over --max_source_length=30" --input="${work}/src.en" \
  --max_source_length=30
refused "--top_p must be in \\(0, 1\\], got 0" --input="${work}/src.en" --top_p=0

# ---- lm ------------------------------------------------------------------------------
head -n 400 "${data}/wikitext/wikitext-2/valid.txt" >"${work}/wiki.txt"
run prepare_lm "${bin}/memtrain-prepare" --corpus=wikitext --progress=false --vocab_size=600 \
  --inputs="${work}/wiki.txt" --output="${work}/wiki.h5"
run train_lm "${bin}/memtrain-train" --flagfile="${configs}/wikitext103-tiny.flags" \
  --train_data="${work}/wiki.h5" --steps=10 --log_every=10 --save_dir="${work}/lm"
{
  echo "The game was released in"
  echo ""
  # Longer than a segment: the prompt itself writes the knn memory.
  sed -n '/^ [A-Z]/{p;q}' "${work}/wiki.txt" | cut -c1-400
} >"${work}/prompts.txt"
lm=(--model="${work}/lm" --data="${work}/wiki.h5" --segment_length=64 --max_length=24 --input="${work}/prompts.txt")
run lm_greedy "${bin}/memtrain-generate" "${lm[@]}" --beam=1 >"${work}/greedy.txt"
[[ "$(wc -l <"${work}/greedy.txt")" == 3 ]] || fail "3 prompts, $(wc -l <"${work}/greedy.txt") continuations"
[[ -n "$(head -n 1 "${work}/greedy.txt")" ]] || fail "an empty continuation"
run lm_a "${bin}/memtrain-generate" "${lm[@]}" --temperature=1 --top_k=50 --seed=3 >"${work}/a.txt"
run lm_b "${bin}/memtrain-generate" "${lm[@]}" --temperature=1 --top_k=50 --seed=3 >"${work}/b.txt"
run lm_c "${bin}/memtrain-generate" "${lm[@]}" --temperature=1 --top_k=50 --seed=4 >"${work}/c.txt"
cmp -s "${work}/a.txt" "${work}/b.txt" || fail "one seed, two samples"
! cmp -s "${work}/a.txt" "${work}/c.txt" || fail "seeds 3 and 4 drew the same"
echo "lm: prompt '$(head -n 1 "${work}/prompts.txt")' -> greedy '$(head -n 1 "${work}/greedy.txt")', sampled '$(head -n 1 "${work}/a.txt")'"
echo "PASS"
