"""What every results writer of scripts/reproduce shares (reproduce/<section>_results.py).

A writer reads its section's run directory (reproduce/common.sh's layout: per
step LABEL.cmd, LABEL.log, LABEL.done = {"seconds": S}, and whatever the step's
binary wrote: metrics.jsonl, eval.jsonl, bench JSON), computes its table, any
trend statement and a PNG from those numbers (never by hand), and calls
update_section(). Run with the venv's Python (scripts/setup installs
matplotlib there).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402,F401  (re-exported for the writers)

# Relative differences below this are "the same" in trend statements.
TOLERANCE = 0.005
# The leading share of a run's steps left out of its throughput (start-up, first batches).
SKIP_FRACTION = 0.1


def arguments(description):
    """The flags reproduce/common.sh's write_results passes to every writer."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True)
    parser.add_argument("--results", default="docs/RESULTS.md")
    parser.add_argument("--png_dir", default="docs/results")
    parser.add_argument("--root", default=".", help="paths in the document are relative to this")
    parser.add_argument("--smoke", action="store_true", help="the run was a smoke run")
    return parser


def read_jsonl(path):
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    sys.exit(f"{path}:{number}: not a JSON line ({error})")
    return records


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def same(a, b, tolerance=TOLERANCE):
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def step_done(directory, label):
    """True when reproduce/common.sh's run_step finished LABEL in DIRECTORY."""
    return os.path.exists(os.path.join(directory, f"{label}.done"))


def step_seconds(directory, label):
    """Wall seconds of a finished step, or None."""
    path = os.path.join(directory, f"{label}.done")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)["seconds"]


def step_command(directory, label):
    with open(os.path.join(directory, f"{label}.cmd"), encoding="utf-8") as f:
        return f.read().strip()


def command_flag(command, name, default="?"):
    """The value of --NAME=VALUE in a recorded command line (its first occurrence)."""
    return next((w.split("=", 1)[1] for w in command.split() if w.startswith(f"--{name}=")), default)


def train_records(metrics_path, kind="train"):
    """memtrain-train's metrics.jsonl records of one kind (train, valid)."""
    return [r for r in read_jsonl(metrics_path) if r.get("kind") == kind]


def median_train(metrics_path, key):
    """The median of KEY (tokens_per_s, step_s) over a run's train records,
    the first SKIP_FRACTION left out; the median resists a noisy machine."""
    records = [r for r in train_records(metrics_path) if finite(r.get(key))]
    kept = records[int(len(records) * SKIP_FRACTION):] or records
    return statistics.median(r[key] for r in kept) if kept else None


def last_eval(eval_path, **match):
    """The last memtrain-eval record whose fields equal MATCH (e.g. memory=True), or None."""
    found = None
    for record in read_jsonl(eval_path):
        if record.get("kind") == "eval" and all(record.get(k) == v for k, v in match.items()):
            found = record
    return found


def table(headers, rows, align=None):
    """A markdown table; ALIGN is a string of l/r per column (default: first l, rest r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |",
             "| " + " | ".join("---" if a == "l" else "---:" for a in align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(seconds, runs, run_dir):
    """How long the section's runs took, when they finished (RUN_DIR's step
    records: a reused step keeps its time) and the load when this is written."""
    finished = [os.path.getmtime(os.path.join(d, f)) for d, _, files in os.walk(run_dir)
                for f in files if f.endswith(".done")]
    when = ""
    if finished:
        first, last = (time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) for t in (min(finished), max(finished)))
        when = f", finishing between {first} and {last[-5:] if last[:10] == first[:10] else last} {time.strftime('%Z')}"
    return (f"{runs} runs took {seconds / 60:.1f} minutes on {os.cpu_count()} cores{when}; load average "
            f"{os.getloadavg()[0]:.1f} when this was written ({time.strftime('%Y-%m-%d %H:%M %Z')}).")


def smoke_banner(command):
    return ("**This is a smoke run** (MEMTRAIN_REPRODUCE_SMOKE=1): too few steps for its numbers to mean "
            f"anything; it shows that the pipeline runs end to end. The full run is `{command}`.")


def png_path(args, name):
    return os.path.join(args.png_dir, name)


def png_link(args, name, alt):
    rel = os.path.relpath(png_path(args, name), os.path.dirname(os.path.abspath(args.results)))
    return f"![{alt}]({rel})"


def update_section(path, key, heading, markdown):
    """Puts MARKDOWN between <!-- KEY:begin --> and <!-- KEY:end --> of PATH
    (atomically), keeping everything else; a missing section is appended
    under '## HEADING'."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        if not text:
            text = ("# Results\n\nResults reproduced on this project's machines by `scripts/reproduce`; "
                    "each section says which command writes it.\n")
        text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
