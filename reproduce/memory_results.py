#!/usr/bin/env python3
"""Writes docs/RESULTS.md §Memory and docs/results/memory.png from the runs of
reproduce/memory.sh (<run_dir>/<corpus>/{base,mem-<size>.xl-<off|on>}/).

Per row it reads train.done/eval.done (seconds), eval.jsonl (memtrain-eval:
ppl, long-range ppl), metrics.jsonl (memtrain-train: tokens/s per step) and
train.cmd; per corpus the base's eval.jsonl and eval_control.jsonl and the
valid split's document lengths (h5dump of /source/offsets). Every statement
about a trend is computed here from the numbers, never written by hand.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402
from results import fmt, same  # noqa: E402

plt = results.plt
CORPORA = [("demo", "demo corpus"), ("code", "code (Python stdlib)"), ("wikitext2", "WikiText-2")]
MEMORIES = ["none", "1536", "8192", "65536"]
MEMORY_LABELS = {"none": "none", "1536": "1.5K", "8192": "8K", "65536": "65K"}
XLS = ["off", "on"]


def read_eval(directory, label):
    """ppl and long-range ppl (None where the corpus marks no long-range token) of a finished eval step."""
    if not results.step_done(directory, label):
        return None
    record = results.last_eval(os.path.join(directory, f"{label}.jsonl"))  # one setting per step
    if record is None:
        sys.exit(f"{directory}/{label}.jsonl: no eval record")
    with open(os.path.join(directory, f"{label}.log"), encoding="utf-8", errors="replace") as f:
        has_long_range = "long-range ppl" in f.read()
    lr = record.get("long_range_ppl")
    return {"ppl": record["ppl"], "long_range_ppl": lr if has_long_range and results.finite(lr) else None}


def read_row(directory):
    """The results of one row, or None when it has not finished."""
    row = read_eval(directory, "eval")
    if row is None or not results.step_done(directory, "train"):
        return None
    row["tokens_per_s"] = results.median_train(os.path.join(directory, "metrics.jsonl"), "tokens_per_s")
    row["train_s"] = round(results.step_seconds(directory, "train"))
    row["eval_s"] = round(results.step_seconds(directory, "eval"))
    row["command"] = results.step_command(directory, "train")
    return row


def document_lengths(path):
    """Token counts of the documents of a memtrain corpus (its /source/offsets)."""
    try:
        out = subprocess.run(["h5dump", "-d", "/source/offsets", "-y", "-w", "0", path],
                             check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"[memory_results] cannot read the document lengths of {path}: {error}", file=sys.stderr)
        return None
    data = out[out.index("DATA {") + len("DATA {"):]
    data = data[:data.index("}")]
    offsets = [int(x) for x in data.replace("\n", " ").split(",") if x.strip()]
    return [b - a for a, b in zip(offsets, offsets[1:])]


def describe_lengths(lengths, train_longest=None):
    """What the memory sizes can differ on: a memory of C entries per stream
    (cleared at a document start) holds the last C tokens of the document, so two
    sizes C < C' can differ only at tokens more than C tokens into their document."""
    total = sum(lengths)
    ordered = sorted(lengths)
    parts = [f"{len(lengths)} documents, {total:,} tokens, median {ordered[len(ordered) // 2]:,}, "
             f"longest {ordered[-1]:,} tokens"]
    for size in (1536, 8192, 65536):
        beyond = sum(max(0, n - size) for n in lengths)
        parts.append(f"{100.0 * beyond / total:.1f}% of tokens lie more than {MEMORY_LABELS[str(size)]} "
                     f"into their document")
    text = "; ".join(parts) + "."
    if train_longest is not None:
        text += f" The longest train document has {train_longest:,} tokens."
    if ordered[-1] <= 1536:
        same_training = train_longest is not None and train_longest <= 1536
        text += (" **Every document is shorter than 1.5K tokens, so memories of 1.5K, 8K and 65K hold the"
                 " same entries (the whole document so far) and cannot differ**: their rows must agree"
                 + (" (in training too: the models are the same)" if same_training else "")
                 + ", a finding of the corpus, not of the model.")
    elif ordered[-1] <= 8192:
        text += " Every document is shorter than 8K tokens: the 8K and 65K memories cannot differ."
    elif ordered[-1] <= 65536:
        text += (" Every document is shorter than 65K tokens: a 65K memory is an unbounded one here, and"
                 " differs from 8K only on the tokens more than 8K into their document.")
    return text


def trend(rows, key, label):
    """One computed sentence per XL setting on 'more memory -> lower perplexity',
    and one on 'XL + memory is best'."""
    sentences = []
    for xl in XLS:
        values = [(m, rows.get((m, xl), {}).get(key)) for m in MEMORIES]
        if any(v is None for _, v in values):
            sentences.append(f"XL {xl}: incomplete rows, no verdict.")
            continue
        none = values[0][1]
        seq = " → ".join(f"{MEMORY_LABELS[m]} {v:.2f}" for m, v in values)
        better = [v < none and not same(v, none) for _, v in values[1:]]
        monotone = all(b < a or same(a, b) for (_, a), (_, b) in zip(values[1:], values[2:]))
        sizes_agree = all(same(v, values[1][1]) for _, v in values[1:])
        if all(better) and sizes_agree:
            verdict = ("**holds only as memory against none** (every memory beats none, but all memory sizes "
                       "give the same)")
        elif all(better) and monotone:
            verdict = "**holds** (every memory beats none, and a larger memory is never worse)"
        elif any(better):
            verdict = "**holds only in part** (" + ("some memory sizes beat none" if not all(better)
                                                     else "every memory beats none") + (
                ", but a larger memory is sometimes worse" if not monotone else "") + ")"
        else:
            verdict = "**does not hold** (no memory size beats none)"
        sentences.append(f"XL {xl}: more memory → lower {label} {verdict}: {seq}.")
    complete = {k: r[key] for k, r in rows.items() if r.get(key) is not None}
    if len(complete) == len(MEMORIES) * len(XLS):
        best = min(complete, key=complete.get)
        best_value = complete[best]
        ties = [k for k, v in complete.items() if same(v, best_value)]
        xl_memory = [k for k in ties if k[1] == "on" and k[0] != "none"]
        name = lambda k: f"memory {MEMORY_LABELS[k[0]]}, XL {k[1]}"  # noqa: E731
        if xl_memory and len(xl_memory) == len(ties):
            sentences.append(f"XL + memory best: **holds** ({name(best)}: {best_value:.2f}).")
        elif xl_memory:
            sentences.append(f"XL + memory best: **holds only as a tie** (best {best_value:.2f}, shared by "
                             + ", ".join(name(k) for k in ties) + ").")
        else:
            sentences.append(f"XL + memory best: **does not hold** (best: {name(best)}, {best_value:.2f}).")
    return sentences


def corpus_section(corpus, title, rows, lengths_text):
    lines = [f"### {title}", ""]
    if lengths_text:
        lines += [f"Valid documents: {lengths_text}", ""]
    lines += ["| memory | XL cache | ppl | long-range ppl | train tokens/s | knn step-time overhead | train s | eval s |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for xl in XLS:
        base = rows.get(("none", xl), {}).get("tokens_per_s")
        for memory in MEMORIES:
            row = rows.get((memory, xl))
            if row is None:
                lines.append(f"| {MEMORY_LABELS[memory]} | {xl} | not run | | | | | |")
                continue
            tps = row["tokens_per_s"]
            if memory == "none":
                overhead = "(baseline)"
            elif tps and base:
                overhead = f"{100.0 * (base / tps - 1.0):+.0f}%"
            else:
                overhead = "—"
            lines.append(f"| {MEMORY_LABELS[memory]} | {xl} | {fmt(row['ppl'])} | {fmt(row['long_range_ppl'])} | "
                         f"{fmt(tps, 0)} | {overhead} | {row.get('train_s', '—')} | {row.get('eval_s', '—')} |")
    lines.append("")
    lines += ["Trend (computed from this table):", ""]
    lines += [f"- {s}" for s in trend(rows, "ppl", "perplexity")]
    if any(r.get("long_range_ppl") is not None for r in rows.values()):
        lines += [f"- Long-range tokens: {s}" for s in trend(rows, "long_range_ppl", "long-range perplexity")
                  if not s.startswith("XL + memory")]
    elif corpus == "demo":
        lines.append("- Long-range perplexity: — (no long-range token was evaluated: the evaluation stopped "
                     "before the documents' repeated facts lines; evaluate more batches).")
    else:
        lines.append("- Long-range perplexity: — (this corpus marks no long-range tokens; the ppl of tokens "
                     "far into their document is not measured by memtrain-eval and is not made up here).")
    lines.append("")
    return lines


PAPER = """\
**The paper's numbers.** Wu, Rabe, Hutchins, Szegedy, *Memorizing Transformers*, ICLR 2022
([arXiv:2203.08913](https://arxiv.org/abs/2203.08913)), Table 4: perplexity of a 12-layer,
D = 1024 decoder (kNN layer 9, k = 32, segments of 512 tokens) with memory none / 1.5K / 8K / 65K,
with and without an XL cache, on arXiv Math, C4 (4K+), GitHub, Isabelle and PG-19. **The exact
values of Table 4 could not be retrieved when this section's generator was written** (the search
tools reached only the paper's abstract and set-up, not its tables), so they are not copied here
rather than quoted from memory; read them in the paper. What the paper states and this section
checks: perplexity *steadily improves as the memory grows* (up to 262K tokens, abstract), and the
kNN memory adds to, rather than replaces, the XL cache (XL + memory is the best setting). Their
documents are long (PG-19 books, arXiv papers, whole repositories: far beyond 65K tokens); here
the corpora are small and, but for code packages, shorter than the memories; see the valid
documents' lengths under each table."""


def plot(all_rows, png):
    present = [(c, t) for c, t in CORPORA if all_rows.get(c)]
    if not present:
        return
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 4), squeeze=False)
    xs = range(len(MEMORIES))
    for ax, (corpus, title) in zip(axes[0], present):
        rows = all_rows[corpus]
        for xl, colour in zip(XLS, ("tab:blue", "tab:orange")):
            for key, style, suffix in (("ppl", "-", ""), ("long_range_ppl", "--", " (long-range)")):
                points = [(x, rows.get((m, xl), {}).get(key)) for x, m in zip(xs, MEMORIES)]
                points = [(x, v) for x, v in points if v is not None]
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", color=colour,
                            label=f"XL {xl}{suffix}")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([MEMORY_LABELS[m] for m in MEMORIES])
        ax.set_xlabel("kNN memory per stream (tokens)")
        ax.set_ylabel("valid perplexity")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(png) or ".", exist_ok=True)
    fig.savefig(png, dpi=100)


def base_line(corpus_dir):
    """The base model (stage 1) on the rows' short segments and on its own long ones."""
    base = os.path.join(corpus_dir, "base")
    short, control = read_eval(base, "eval"), read_eval(base, "eval_control")
    if short is None or control is None:
        return None, []
    command = results.step_command(base, "train")
    segment, streams, steps = (results.command_flag(command, name)
                               for name in ("segment_length", "streams", "steps"))
    lines = [f"Stage 1, the base (memory off; {steps} steps of {streams} {segment}-token segment(s) a rank): "
             f"valid ppl **{fmt(control['ppl'])}** on {segment}-token segments (the control: the context in view) and "
             f"{fmt(short['ppl'])} on the rows' 128-token segments"]
    if control["long_range_ppl"] is not None:
        lines[0] += (f"; long-range ppl {fmt(control['long_range_ppl'])} and {fmt(short['long_range_ppl'])}: "
                     "what a memory could at best recover is the gap between the two")
    lines[0] += f"; trained in {round(results.step_seconds(base, 'train'))} s."
    return control, lines + [""]


def main():
    parser = results.arguments(__doc__)
    parser.add_argument("--corpora", required=True, help="the prepared corpora (reproduce/corpora.sh)")
    args = parser.parse_args()

    all_rows, sections, seconds, n_runs = {}, [], 0.0, 0
    first_command = None
    for corpus, title in CORPORA:
        corpus_dir = os.path.join(args.run_dir, corpus)
        rows = {}
        for memory in MEMORIES:
            for xl in XLS:
                row = read_row(os.path.join(corpus_dir, f"mem-{memory}.xl-{xl}"))
                if row is not None:
                    rows[(memory, xl)] = row
                    first_command = first_command or row["command"]
                    seconds += row["train_s"] + row["eval_s"]
                    n_runs += 1
        if not rows:
            continue
        all_rows[corpus] = rows
        base_dir = os.path.join(corpus_dir, "base")
        for label in ("train", "eval", "eval_control"):
            seconds += results.step_seconds(base_dir, label) or 0
        n_runs += 1
        _, base_lines = base_line(corpus_dir)
        lengths = document_lengths(os.path.join(args.corpora, corpus, "valid.h5"))
        train_lengths = document_lengths(os.path.join(args.corpora, corpus, "train.h5"))
        described = describe_lengths(lengths, max(train_lengths) if train_lengths else None) if lengths else None
        section = corpus_section(corpus, title, rows, described)
        sections += section[:2] + base_lines + section[2:]
    if not all_rows:
        sys.exit(f"[memory_results] no finished rows under {args.run_dir}")
    png = results.png_path(args, "memory.png")
    plot(all_rows, png)

    header = [
        "Written by `scripts/reproduce memory` (reproduce/memory.sh; the table and plot by "
        "reproduce/memory_results.py); do not edit by hand. The Memorizing Transformer's memory-size table "
        "(Wu et al. 2022, Table 4) at the scale of a 2-core machine: a 4-layer, D = 128 decoder with rotary "
        "positions (`configs/memory-lm.flags`), seed 1, 2 MPI ranks. **Two stages**, as scripts/quickstart "
        "does: a base trained on long segments with its memory off (below, per corpus), then every row "
        "fine-tuned from it for the same number of steps on 128-token segments (4 streams a rank) with the "
        "row's flags. Decoder layer 2 is a kNN-memory layer in the base and in every row (`--knn_layers=2`, "
        "k = 32): with `--knn_memory_size=N` a memory per document stream, cleared at a document start; the "
        "*none* rows are the same model and fine-tuning with the memory off (`--use_memory=false`, which "
        "keeps an XL cache); `--xl_cache` where the row says. Each step's command line is in "
        "`runs/reproduce/memory/<corpus>/<row>/train.cmd` (and `eval.cmd`).",
        "",
        f"This run: {results.machine_line(seconds, n_runs, args.run_dir)} First row's command: `{first_command}`.",
    ]
    if args.smoke:
        header += ["", results.smoke_banner("scripts/reproduce memory")]
    header += [
        "",
        "Columns: *ppl*, the valid perplexity with the memory on (128-token segments, the whole valid split); "
        "*long-range ppl*, that of the demo corpus's long-range tokens (the names of each document's facts line, repeated ~150 words later; "
        "other corpora mark none: —); *train tokens/s*, the median over the fine-tuning's steps (the first "
        "10% left out); *knn step-time overhead*, the step time against the row without memory and with the "
        "same XL setting.",
        "",
        PAPER,
        "",
        results.png_link(args, "memory.png", "perplexity against memory size"),
        "",
    ]
    results.update_section(args.results, "memory", "Memory", "\n".join(header + sections))
    print(f"[memory_results] wrote {args.results} (§Memory) and {png}")


if __name__ == "__main__":
    main()
