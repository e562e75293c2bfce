#!/usr/bin/env bash
# tests/reproduce/smoke.sh BIN_DIR PYTHON SECTION [MIN_TABLE_ROWS [ARGS...]]:
# runs reproduce/SECTION.sh [ARGS...] as a smoke run (MEMTRAIN_REPRODUCE_SMOKE=1) into a
# temporary directory, with the test build's binaries, then checks what it
# wrote: the section between its markers in a RESULTS.md of its own (not
# docs/), marked as a smoke run, with at least MIN_TABLE_ROWS table rows whose
# cells hold no nan/inf, and every PNG it links present and non-empty. A second
# run must reuse every step (nothing re-run).
set -euo pipefail
bin_dir="$1" python="$2" section="$3" min_rows="${4:-2}"
section_args=("${@:5}")
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
export MEMTRAIN_REPRODUCE_SMOKE=1 MEMTRAIN_RUN_DIR="${work}/run" MEMTRAIN_RESULTS="${work}/docs/RESULTS.md"
export MEMTRAIN_BUILD_DIR="$(dirname "${bin_dir}")" MEMTRAIN_PYTHON="${python}"
mkdir -p "${work}/docs"

"${root}/reproduce/${section}.sh" "${section_args[@]}" > "${work}/first.log" 2>&1 || { tail -n 30 "${work}/first.log"; echo "FAIL: the smoke run failed"; exit 1; }
results="${MEMTRAIN_RESULTS}"
begin="<!-- ${section}:begin -->" end="<!-- ${section}:end -->"
grep -qF "${begin}" "${results}" && grep -qF "${end}" "${results}" \
  || { echo "FAIL: ${results} has no ${section} markers"; exit 1; }
body="$(sed -n "/${begin}/,/${end}/p" "${results}")"
grep -q "This is a smoke run" <<< "${body}" || { echo "FAIL: the section does not say it is a smoke run"; exit 1; }
rows="$(grep -c '^| ' <<< "${body}" || true)"
# Each table has a header and a separator line besides its rows.
(( rows >= min_rows + 2 )) || { echo "FAIL: ${rows} table lines, want at least $((min_rows + 2))"; echo "${body}"; exit 1; }
if grep '^| ' <<< "${body}" | grep -qiwE 'nan|inf|-inf'; then
  echo "FAIL: a table cell is not finite"; echo "${body}"; exit 1
fi
while read -r png; do
  [[ -s "$(dirname "${results}")/${png}" ]] || { echo "FAIL: linked plot ${png} is missing or empty"; exit 1; }
done < <(grep -o '](results/[^)]*\.png)' <<< "${body}" | sed 's/^](//; s/)$//')

"${root}/reproduce/${section}.sh" "${section_args[@]}" > "${work}/second.log" 2>&1 || { tail -n 30 "${work}/second.log"; echo "FAIL: the second run failed"; exit 1; }
if grep -q "^\[reproduce ${section}\] running " "${work}/second.log"; then
  echo "FAIL: the second run re-ran steps:"; grep "^\[reproduce ${section}\] running " "${work}/second.log"; exit 1
fi
echo "PASS: ${section} smoke run, ${rows} table lines; the second run reused every step"
