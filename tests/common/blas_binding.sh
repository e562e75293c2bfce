#!/usr/bin/env bash
# Every memtrain executable that links LibTorch runs LibTorch's own BLAS and
# one OpenMP runtime (docs/ARCHITECTURE.md, "One BLAS and one OpenMP runtime
# per process"). Asked of the dynamic linker itself, not of memtrain's code:
#   order    for every ELF executable in BIN_DIR that loads libtorch_cpu.so,
#            `ldd` (the loader's own load order, which is the symbol lookup
#            order) lists libtorch_cpu.so before any other BLAS or LAPACK
#            library, and lists exactly one OpenMP runtime;
#   bindings with every symbol bound at start-up (LD_BIND_NOW) the loader's
#            binding log of memtrain-env shows libtorch_cpu.so's `sgemm_`
#            bound to libtorch_cpu.so itself;
#   report   memtrain-env prints "sgemm_ -> .../libtorch_cpu.so (LibTorch's own)";
#   detects  with OpenBLAS preloaded (the old failure, forced) memtrain-env
#            names the displacing library, so the check above can fail.
#
#   blas_binding.sh BIN_DIR
set -euo pipefail
bin="$1"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

checked=0
for exe in "${bin}"/*; do
  [[ -x "${exe}" && -f "${exe}" ]] || continue
  head -c 4 "${exe}" | grep -q 'ELF' || continue
  ldd "${exe}" >"${work}/ldd" 2>&1 || continue
  grep -q 'libtorch_cpu\.so' "${work}/ldd" || continue
  checked=$((checked + 1))
  # The first library in load order that is LibTorch or a BLAS/LAPACK.
  first="$(grep -oE '^\s*(libtorch_cpu\.so|lib(open)?blas[^ ]*|liblapack[^ ]*|libblis[^ ]*|libmkl[^ ]*)' \
             "${work}/ldd" | head -1 | tr -d '[:space:]')"
  [[ "${first}" == libtorch_cpu.so ]] || fail "$(basename "${exe}"): ${first} loads before libtorch_cpu.so"
  openmp="$(grep -cE '^\s*lib(gomp|omp|iomp5)[.-]' "${work}/ldd" || true)"
  [[ "${openmp}" == 1 ]] || fail "$(basename "${exe}"): ${openmp} OpenMP runtimes: $(grep -E 'lib(gomp|omp|iomp5)' "${work}/ldd" | tr -s ' ' | tr '\n' ';')"
done
(( checked >= 5 )) || fail "only ${checked} LibTorch executables found in ${bin}"
echo "order: ${checked} LibTorch executables checked"

LD_BIND_NOW=1 LD_DEBUG=bindings LD_DEBUG_OUTPUT="${work}/bindings" "${bin}/memtrain-env" >"${work}/env.out" 2>&1 ||
  { cat "${work}/env.out"; fail "memtrain-env failed"; }
binding="$(cat "${work}/bindings".* | grep -E "binding file [^ ]*libtorch_cpu\.so .* symbol \`sgemm_'" | head -1)"
if [[ -z "${binding}" ]]; then
  fail "the loader logged no binding of libtorch_cpu.so's sgemm_"
elif ! grep -qE "to [^ ]*libtorch_cpu\.so \[" <<<"${binding}"; then
  fail "libtorch_cpu.so's sgemm_ is bound elsewhere: ${binding}"
fi
echo "bindings: ${binding//$'\t'/ }"

grep -q "sgemm_ -> .*libtorch_cpu.so (LibTorch's own)" "${work}/env.out" ||
  fail "memtrain-env does not report LibTorch's own sgemm_: $(cat "${work}/env.out")"
grep -q "\[process\]" "${work}/env.out" && fail "memtrain-env warned: $(grep '\[process\]' "${work}/env.out")"

openblas="$(ldconfig -p | grep -oE '/[^ ]*libopenblas\.so\.0$' | head -1 || true)"
if [[ -n "${openblas}" ]]; then
  LD_PRELOAD="${openblas}" "${bin}/memtrain-env" >"${work}/displaced.out" 2>&1 || true
  grep -q "\[process\] LibTorch's matrix products (sgemm_) bind to .*libopenblas" "${work}/displaced.out" ||
    fail "with OpenBLAS preloaded memtrain-env did not name it: $(cat "${work}/displaced.out")"
  echo "detects: $(grep -o "\[process\].*instead of" "${work}/displaced.out")"
else
  echo "detects: skipped (no libopenblas.so.0 on this machine)"
fi

if (( failures > 0 )); then
  echo "${failures} check(s) failed"
  exit 1
fi
echo "blas_binding: all checks passed"
