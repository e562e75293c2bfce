#!/usr/bin/env bash
# bench-attention --json reports, next to each decode time, the bytes the
# layer's DecodeState holds after that position (decode_state_bytes): softmax's
# KV cache doubles with the position, MemSizer's constant state does not grow.
#   bench_attention_state.sh BIN_DIR PYTHON
set -euo pipefail
bin="$1" python="$2"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
"${bin}/bench-attention" --train=false --kinds=softmax,memsizer --decode_positions=64 --width=64 --heads=2 \
  --json="${work}/bench.json" > "${work}/bench.log" 2>&1 || { cat "${work}/bench.log"; echo "FAIL: bench-attention"; exit 1; }
grep -q "state bytes" "${work}/bench.log" || { cat "${work}/bench.log"; echo "FAIL: no state bytes column"; exit 1; }
"${python}" - "${work}/bench.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
state, decode = results["decode_state_bytes"], results["decode"]
for kind in ("softmax", "memsizer"):
    if sorted(state[kind]) != sorted(decode[kind]):
        sys.exit(f"FAIL: {kind}: state bytes at {sorted(state[kind])}, decode times at {sorted(decode[kind])}")
softmax = [state["softmax"][p] for p in ("16", "32", "64")]
# Keys and values, [1, heads, position, width / heads] float32 each, and more.
if not (softmax[0] >= 2 * 16 * 64 * 4 and softmax[1] >= 2 * softmax[0] - 64 and softmax[2] >= 2 * softmax[1] - 64):
    sys.exit(f"FAIL: softmax's KV cache does not grow with the position: {softmax}")
memsizer = set(state["memsizer"].values())
if len(memsizer) != 1 or min(memsizer) <= 0:
    sys.exit(f"FAIL: memsizer's state is not one positive size: {state['memsizer']}")
print(f"PASS: softmax state {softmax} bytes at positions 16/32/64, memsizer {memsizer.pop()} at each")
PY
