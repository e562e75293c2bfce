#!/usr/bin/env bash
# Every shipped flagfile (configs/*.flags) names only flags memtrain-train has:
# a renamed or removed option breaks this test, not a user's job hours later.
# Each config is run with a missing corpus, so the first error after parsing
# the flags must be about that corpus.
#
#   configs_parse.sh BIN_DIR CONFIG_DIR
set -uo pipefail
bin="$1" configs="$2" failures=0
for config in "${configs}"/*.flags; do
  out="$(timeout 60 "${bin}/memtrain-train" --flagfile="${config}" --train_data=/nonexistent/corpus.h5 2>&1)"
  if grep -q "/nonexistent/corpus.h5" <<<"${out}" && ! grep -qi "unknown\|illegal" <<<"${out}"; then
    echo "ok   ${config##*/}"
  else
    echo "FAIL ${config##*/}:"; tail -3 <<<"${out}"; failures=$((failures + 1))
  fi
done
exit $((failures > 0))
