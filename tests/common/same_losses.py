"""Exits non-zero unless every training step of run B has the loss of the same step of run A.

    python3 tests/common/same_losses.py A.jsonl B.jsonl

A and B are memtrain-train --metrics files. The losses are compared as
written (17 significant digits), so equal means bitwise equal: the check the
resume, preemption and multi-host tests share.
"""
import json
import sys


def losses(path):
    with open(path, encoding="utf-8") as records:
        return {r["step"]: r["loss"] for r in map(json.loads, records) if r.get("kind") == "train"}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    reference, compared = losses(sys.argv[1]), losses(sys.argv[2])
    if not compared:
        sys.exit(f"{sys.argv[2]} logged no training step")
    differ = [s for s in sorted(compared) if compared[s] != reference.get(s)]
    if differ:
        sys.exit(f"losses differ at steps {differ}: "
                 f"{[(compared[s], reference.get(s)) for s in differ]}")
    print(f"steps {min(compared)}..{max(compared)}: losses equal to {sys.argv[1]}'s")


if __name__ == "__main__":
    main()
