#!/usr/bin/env bash
# tests/reproduce/common_test.sh: reproduce/common.sh's step bookkeeping, on
# commands that only count how often they ran: an unchanged step is reused, a
# changed command runs again, --fresh runs everything again, a step after one
# that ran in the same directory runs again, depends_on carries that across
# directories, and a failing step fails with its log named.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
export MEMTRAIN_RUN_DIR="${work}/run"

# One invocation of a two-directory "section": up/a, then down/b fine-tuned from up.
invocation() {  # ARGS: extra run_step argument for up/a, then --fresh or nothing
  bash -c '
    section=test
    source "$0/reproduce/common.sh"
    parse_section_args "${@:2}"
    count() { echo x >> "$1"; }
    run_step "${run}/up" a count "${run}/up.count" "$1"
    run_step "${run}/up" a2 count "${run}/up2.count"
    depends_on "${run}/down" "${run}/up"
    run_step "${run}/down" b count "${run}/down.count"
  ' "${root}" "$@"
}
runs() { wc -l < "${MEMTRAIN_RUN_DIR}/$1.count" | tr -d ' '; }
expect() {  # UP UP2 DOWN
  local got="$(runs up) $(runs up2) $(runs down)"
  [[ "${got}" == "$*" ]] || { echo "FAIL after $step: runs (up up2 down) = ${got}, want $*"; exit 1; }
}

step="the first invocation"; invocation v1 > /dev/null; expect 1 1 1
step="an unchanged invocation"; invocation v1 > "${work}/log"; expect 1 1 1
grep -q "reused" "${work}/log" || { echo "FAIL: no step said it was reused"; exit 1; }
step="a changed command"; invocation v2 > /dev/null; expect 2 2 2
step="--fresh"; invocation v2 --fresh > /dev/null; expect 3 3 3
step="an unchanged invocation again"; invocation v2 > /dev/null; expect 3 3 3

# A failing step: exit 1, its log named, no .done left behind.
if bash -c 'section=test; source "$0/reproduce/common.sh"; run_step "${run}/bad" c false' "${root}" \
    > "${work}/bad.log" 2>&1; then
  echo "FAIL: a failing step did not fail"; exit 1
fi
grep -q "FAILED: bad: c (log: ${MEMTRAIN_RUN_DIR}/bad/c.log)" "${work}/bad.log" \
  || { echo "FAIL: the failure does not name its log:"; cat "${work}/bad.log"; exit 1; }
[[ ! -e "${MEMTRAIN_RUN_DIR}/bad/c.done" ]] || { echo "FAIL: a failed step left c.done"; exit 1; }
echo "PASS: reuse, changed command, --fresh, same-directory and depends_on re-runs, failure"
