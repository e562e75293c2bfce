#!/usr/bin/env bash
# memtrain-build-memory and memtrain-eval --knn_memory_dir as processes under
# real mpirun (2 ranks): a tiny knn model trained on a demo corpus builds a
# shared memory holding one entry per corpus token; eval on 2 ranks searches
# it read-only; eval on 1 rank, a second build into the same directory and an
# unknown --knn_backend are refused with messages that say why.
#
#   build_memory.sh BIN_DIR MPIEXEC "MPIEXEC_FLAGS" BACKEND
set -euo pipefail
bin="$1" mpiexec="$2" mpi_flags="$3" backend="$4"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
run() {  # log name, ranks, binary, flags...
  local log="${work}/$1.log" ranks="$2" binary="$3"; shift 3
  # shellcheck disable=SC2086
  ${mpiexec} ${mpi_flags} -n "${ranks}" "${bin}/${binary}" "$@" >"${log}" 2>&1
}

"${bin}/memtrain-prepare" --corpus=demo --demo_documents=60 --vocab_size=500 --output="${work}/demo.h5" \
  --progress=false 2>"${work}/prepare.log" || { cat "${work}/prepare.log"; exit 1; }
run train 2 memtrain-train --train_data="${work}/demo.h5" --steps=10 --encoder_layers=0 --decoder_layers=2 \
  --model_dim=32 --heads=2 --ffn_dim=64 --knn_layers=1 --knn_memory_size=64 --knn_top_k=4 --streams=2 \
  --segment_length=16 --unused_parameters=zero --save_dir="${work}/model" || { tail -20 "${work}/train.log"; exit 1; }

data=(--model="${work}/model" --data="${work}/demo.h5" --streams=2 --segment_length=16)
run build 2 memtrain-build-memory "${data[@]}" --steps=60 --out="${work}/memory" --knn_backend="${backend}" \
  || { tail -20 "${work}/build.log"; exit 1; }
line=$(grep "decoder.1:" "${work}/build.log") || { tail "${work}/build.log"; fail "no entry count"; }
echo "${line}"
[[ "${line}" =~ decoder\.1:\ ([0-9]+)\ entries\ \(of\ ([0-9]+)\ tokens ]] || fail "unreadable: ${line}"
[[ ${BASH_REMATCH[1]} -eq ${BASH_REMATCH[2]} && ${BASH_REMATCH[1]} -gt 0 ]] || fail "entries != corpus tokens"
[[ -f "${work}/memory/memory.json" && -f "${work}/memory/layer-1.rank-1.pt" ]] || fail "missing files"
[[ ! -e "${work}/memory.partial" ]] || fail "the partial directory was left behind"

run eval 2 memtrain-eval "${data[@]}" --steps=60 --knn_memory_dir="${work}/memory" --compare_memory \
  || { tail -20 "${work}/eval.log"; exit 1; }
grep -q "decoder.1 searches ${work}/memory read-only" "${work}/eval.log" || fail "eval did not load the memory"
grep "with memory: ppl" "${work}/eval.log" || fail "no perplexity with the memory"

! run eval_one_rank 1 memtrain-eval "${data[@]}" --knn_memory_dir="${work}/memory" || fail "1 rank was accepted"
grep -q "built sharded over 2 ranks; read it with as many" "${work}/eval_one_rank.log" || fail "no reason given for 1 rank"
! run again 2 memtrain-build-memory "${data[@]}" --out="${work}/memory" || fail "an existing --out was replaced"
grep -q "exists" "${work}/again.log" || fail "no reason given for the existing --out"
! run bogus 1 memtrain-eval "${data[@]}" --knn_backend=bogus || fail "--knn_backend=bogus was accepted"
grep -q -- "--knn_backend: 'bogus' is not one of exact" "${work}/bogus.log" || fail "no list of backends"
echo "PASS ${backend}"
