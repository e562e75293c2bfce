"""Writes docs/RESULTS.md §scaling and docs/results/scaling.png, scaling_lm.png
from reproduce/scaling.sh's run directory:

  bench/bench.json             bench-attention --json: train[kind][mode][n] =
                               {us_per_token, peak_mb}, decode[kind][position]
                               (us/token), decode_state_bytes[kind][position]
  --corpora_dir/<corpus>/valid.json  memtrain-prepare's statistics (code: code.valid.json)
  <corpus>/<row>/metrics.jsonl memtrain-train (tokens/s per step)
  <corpus>/<row>/eval.jsonl    memtrain-eval (ppl, long_range_ppl; the ∞-former
                               with and without its memory)

Every number and every trend sentence is computed from those files.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import results  # noqa: E402
from results import fmt, plt  # noqa: E402

KEY, HEADING = "scaling", "Cost against sequence length; ∞-former vs Transformer"
KINDS = ["softmax", "linformer", "performer", "memsizer", "infinite"]
LINEAR = ["linformer", "performer", "memsizer"]
MODES = [("non_causal", "non-causal"), ("causal", "causal")]
ROW_LABELS = {"transformer": "Transformer", "transformer-sinusoidal": "Transformer, sinusoidal positions",
              "transformer-xl": "Transformer-XL", "infinite": "∞-former"}
CORPUS_LABELS = {"demo": "demo", "code": "code", "wikitext2": "WikiText-2"}
# The project's own targets for a linear kind (bench/attention_bench.cpp's header).
FLAT_WITHIN = 1.3


def ratio(value, base):
    return value / base if value is not None and base else None


def cell(value, base, digits=1):
    if value is None:
        return "—"
    r = ratio(value, base)
    return f"{value:.{digits}f} ({r:.2f})" if r is not None else f"{value:.{digits}f}"


def load_bench(run_dir):
    path = os.path.join(run_dir, "bench", "bench.json")
    with open(path, encoding="utf-8") as f:
        bench = json.load(f)
    train = {}
    for kind, modes in bench.get("train", {}).items():
        for mode, points in modes.items():
            for n, point in points.items():
                train.setdefault(kind, {}).setdefault(mode, {})[int(n)] = point
    decode = {k: {int(p): v for p, v in points.items()} for k, points in bench.get("decode", {}).items()}
    state = {k: {int(p): v for p, v in points.items()}
             for k, points in bench.get("decode_state_bytes", {}).items()}
    return train, decode, state


def point(train, kind, mode, n, key):
    p = train.get(kind, {}).get(mode, {}).get(n)
    return p[key] if p and results.finite(p.get(key)) else None


def bench_tables(train, decode, state):
    lengths = sorted({n for modes in train.values() for points in modes.values() for n in points})
    kinds = [k for k in KINDS if k in train or k in decode]
    out = []
    for key, title, digits in (("us_per_token", "Training, forward + backward, us per token", 1),
                               ("peak_mb", "Peak memory, MB above a bare start", 0)):
        out.append(f"**{title}** (ratio to softmax at the same n and mode):\n")
        rows = []
        for mode, label in MODES:
            for n in lengths:
                base = point(train, "softmax", mode, n, key)
                cells = [cell(point(train, k, mode, n, key), base, digits) for k in kinds]
                if any(c != "—" for c in cells):
                    rows.append([label, f"{n:,}"] + cells)
        out.append(results.table(["mode", "n"] + kinds, rows, "lr" + "r" * len(kinds)))
        out.append("")
    positions = sorted({p for points in decode.values() for p in points})
    dkinds = [k for k in kinds if k in decode]
    rows = []
    for p in positions:
        base = decode.get("softmax", {}).get(p)
        row = [f"{p:,}"]
        for k in dkinds:
            us = decode[k].get(p)
            kb = state.get(k, {}).get(p)
            row.append(f"{cell(us, base)} · {kb / 1024:,.0f} KB" if us is not None and kb is not None
                       else cell(us, base))
        rows.append(row)
    out.append("**Decoding**, one token at a time (batch 1): us per token (ratio to softmax) · bytes the "
               "layer's DecodeState holds after that position:\n")
    out.append(results.table(["position"] + dkinds, rows))
    return "\n".join(out), lengths, positions


def growth(values):
    """last / first of the defined values, with the endpoints, or None."""
    defined = [(x, v) for x, v in values if v is not None]
    if len(defined) < 2:
        return None
    return defined[-1][1] / defined[0][1], defined[0][0], defined[-1][0]


def bench_sentences(train, decode, state, lengths, positions):
    s = []
    longest, shortest = (lengths[-1], lengths[0]) if lengths else (None, None)
    # Softmax's cost per token grows with n; a linear kind's stays flat.
    for mode, label in MODES:
        g = growth([(n, point(train, "softmax", mode, n, "us_per_token")) for n in lengths])
        if g:
            s.append(f"- Softmax, {label}: the cost per token changes {g[0]:.2f}x from n = {g[1]:,} to "
                     f"{g[2]:,} (attention over n keys: its share of the cost grows linearly in n).")
        for k in LINEAR:
            values = [(n, point(train, k, mode, n, "us_per_token")) for n in lengths]
            defined = [v for _, v in values if v is not None]
            if len(defined) < 2:
                continue
            spread = max(defined) / min(defined)
            flat = spread <= FLAT_WITHIN
            base = point(train, "softmax", mode, longest, "us_per_token")
            at_longest = point(train, k, mode, longest, "us_per_token")
            cheaper = [n for n in lengths if (point(train, k, mode, n, "us_per_token") or 1e300)
                       < (point(train, "softmax", mode, n, "us_per_token") or 0)]
            crossing = (f"cheaper than softmax from n = {cheaper[0]:,}" if cheaper
                        else "never cheaper than softmax here")
            s.append(f"- {k}, {label}: cost per token within {spread:.2f}x over n = {shortest:,} … "
                     f"{longest:,} ({'flat: linear in n' if flat else f'**not flat** (target {FLAT_WITHIN}x)'}); "
                     f"{crossing}"
                     + (f"; {at_longest / base:.2f}x softmax's cost at n = {longest:,}" if base and at_longest
                        else "") + ".")
    # Peak memory at the longest n.
    for mode, label in MODES:
        base = point(train, "softmax", mode, longest, "peak_mb")
        parts = [f"{k} {ratio(point(train, k, mode, longest, 'peak_mb'), base):.2f}x" for k in KINDS[1:]
                 if ratio(point(train, k, mode, longest, "peak_mb"), base) is not None]
        if base and parts:
            s.append(f"- Peak memory at n = {longest:,}, {label}, against softmax's {base:,.0f} MB: "
                     + ", ".join(parts) + ".")
    inf = [ratio(point(train, "infinite", m, n, "us_per_token"), point(train, "softmax", m, n, "us_per_token"))
           for m, _ in MODES for n in lengths]
    inf = [r for r in inf if r is not None]
    if inf:
        s.append(f"- The ∞-former layer costs {min(inf):.2f}-{max(inf):.2f}x softmax at every n: without a "
                 "memory state (a single sequence, as the benchmark runs it) it is its short-term softmax "
                 "alone. Its claim is about documents longer than a segment, where the segment length, "
                 "not the document's, sets the attention cost: the LM runs below measure that.")
    # Decoding: time and state against position.
    for k in [k for k in KINDS if k in decode]:
        t = growth([(p, decode[k].get(p)) for p in positions])
        b = growth([(p, state.get(k, {}).get(p)) for p in positions])
        if not t:
            continue
        text = f"- Decoding, {k}: {t[0]:.2f}x the time per token from position {t[1]:,} to {t[2]:,}"
        if b:
            text += (f"; its state {'stays at' if b[0] == 1 else f'grows {b[0]:.0f}x, to'} "
                     f"{state[k][b[2]] / 1024:,.0f} KB")
        if k == "infinite":
            text += (" (the benchmark never ends a segment, so this is the short-term window and the "
                     "write buffer; the long-term memory, N x D, is never written)")
        s.append(text + ".")
    return s


def read_stats(corpora_dir, corpus):
    for name in ("valid.json", "code.valid.json"):
        path = os.path.join(corpora_dir, corpus, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
    return None


def lm_rows(run_dir, corpora, rows):
    found = {}
    for corpus in corpora:
        for row in rows:
            d = os.path.join(run_dir, corpus, row)
            if not results.step_done(d, "eval"):
                continue
            with_memory = results.last_eval(os.path.join(d, "eval.jsonl"), memory=True)
            without = results.last_eval(os.path.join(d, "eval.jsonl"), memory=False) if row == "infinite" else None
            lr = with_memory.get("long_range_ppl") if with_memory else None
            found[(corpus, row)] = {
                "ppl": with_memory["ppl"] if with_memory else None,
                "long_range": lr if results.finite(lr) else None,
                "without": without["ppl"] if without else None,
                "tokens_per_s": results.median_train(os.path.join(d, "metrics.jsonl"), "tokens_per_s"),
                "train_s": results.step_seconds(d, "train"),
                "eval_s": results.step_seconds(d, "eval"),
            }
    return found


def lm_section(found, corpora, rows, segment, corpora_dir):
    has_long = any(v["long_range"] is not None for v in found.values())
    headers = ["corpus", "model", "attends to", "kept beyond the segment (per layer, stream)", "valid ppl"]
    if has_long:
        headers.append("long-range ppl")
    headers += ["∞-former without memory", "train tokens/s", "train s"]
    context = {"transformer": (f"its segment (≤ {segment})", "nothing"),
               "transformer-sinusoidal": (f"its segment (≤ {segment})", "nothing"),
               "transformer-xl": (f"segment + previous segment (≤ {2 * segment})",
                                  f"{segment} keys + {segment} values (exact, last {segment} tokens)"),
               "infinite": (f"segment + continuous memory of the whole document so far",
                            f"N = {segment} basis coefficients (float64; the bytes of XL's cache)")}
    table_rows = []
    for corpus in corpora:
        for row in rows:
            v = found.get((corpus, row))
            if v is None:
                continue
            line = [CORPUS_LABELS.get(corpus, corpus), ROW_LABELS.get(row, row), context[row][0], context[row][1],
                    fmt(v["ppl"])]
            if has_long:
                line.append(fmt(v["long_range"]))
            line += [fmt(v["without"]), fmt(v["tokens_per_s"], 0), fmt(v["train_s"], 0)]
            table_rows.append(line)
    sentences = []
    for corpus in corpora:
        xl, inf, tr = (found.get((corpus, r)) for r in ("transformer-xl", "infinite", "transformer"))
        if not (xl and inf and tr and xl["ppl"] and inf["ppl"] and tr["ppl"]):
            continue
        label = CORPUS_LABELS.get(corpus, corpus)
        stats = read_stats(corpora_dir, corpus)
        length = (f" (valid documents average {stats['source_tokens'] / stats['records']:,.0f} tokens, "
                  f"{stats['source_tokens'] / stats['records'] / segment:.1f} segments)"
                  if stats and stats.get("records") else "")
        diff = (inf["ppl"] - xl["ppl"]) / xl["ppl"]
        if results.same(inf["ppl"], xl["ppl"]):
            verdict = "**ties**"
        elif diff < 0:
            verdict = f"**holds** (∞-former {-100 * diff:.1f}% lower)"
        else:
            verdict = f"**does not hold** (∞-former {100 * diff:.1f}% higher)"
        text = (f"- {label}{length}: ∞-former better than Transformer-XL at the same memory bytes: {verdict}: "
                f"ppl {inf['ppl']:.2f} against {xl['ppl']:.2f} (Transformer without cache {tr['ppl']:.2f}).")
        if inf["without"]:
            change = (inf["ppl"] - inf["without"]) / inf["without"]
            text += (f" Its own memory {'lowers' if change < 0 else 'does not lower'} its perplexity "
                     f"({inf['without']:.2f} without → {inf['ppl']:.2f} with, {100 * change:+.1f}%).")
        sinusoidal = found.get((corpus, "transformer-sinusoidal"))
        if sinusoidal and sinusoidal["ppl"] and inf["ppl"] != tr["ppl"]:
            share = (sinusoidal["ppl"] - tr["ppl"]) / (inf["ppl"] - tr["ppl"])
            equal = (inf["ppl"] - sinusoidal["ppl"]) / sinusoidal["ppl"]
            text += (f" Positions: the Transformer with the ∞-former's sinusoidal positions (restarting "
                     f"every segment) reaches {sinusoidal['ppl']:.2f} against rotary's {tr['ppl']:.2f}, "
                     f"{100 * share:.0f}% of the ∞-former's gap to the Transformer; at equal positions the "
                     f"∞-former is {100 * abs(equal):.1f}% {'lower' if equal < 0 else 'higher'} "
                     f"({inf['ppl']:.2f} against {sinusoidal['ppl']:.2f}).")
        if inf["long_range"] is not None and xl["long_range"] is not None:
            text += (f" Long-range tokens: ∞-former {inf['long_range']:.2f}, XL {xl['long_range']:.2f}, "
                     f"Transformer {fmt(tr['long_range'])}.")
        if inf["tokens_per_s"] and tr["tokens_per_s"]:
            text += f" Training throughput {inf['tokens_per_s'] / tr['tokens_per_s']:.2f}x the Transformer's"
            if xl["tokens_per_s"]:
                text += f", {xl['tokens_per_s'] / tr['tokens_per_s']:.2f}x for XL"
            text += "."
        sentences.append(text)
    return results.table(headers, table_rows, "llllr" + "r" * (len(headers) - 5)), sentences


def plot_bench(train, decode, state, lengths, positions, path):
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    colors = dict(zip(KINDS, ["black", "tab:blue", "tab:orange", "tab:green", "tab:red"]))
    for kind in KINDS:
        for (mode, label), style in zip(MODES, ("--", "-")):
            for ax, key in ((axes[0][0], "us_per_token"), (axes[0][1], "peak_mb")):
                xs = [n for n in lengths if point(train, kind, mode, n, key) is not None
                      and point(train, kind, mode, n, key) > 0]
                if xs:
                    ax.plot(xs, [point(train, kind, mode, n, key) for n in xs], style, marker="o",
                            color=colors[kind], label=f"{kind} {label}", markersize=3)
        if kind in decode:
            xs = [p for p in positions if decode[kind].get(p)]
            axes[1][0].plot(xs, [decode[kind][p] for p in xs], marker="o", color=colors[kind], label=kind,
                            markersize=3)
            xs = [p for p in positions if state.get(kind, {}).get(p)]
            axes[1][1].plot(xs, [state[kind][p] / 1024 for p in xs], marker="o", color=colors[kind],
                            label=kind, markersize=3)
    titles = [("training us/token vs n (dashed: non-causal)", "n"), ("peak MB vs n", "n"),
              ("decode us/token vs position", "position"), ("DecodeState KB vs position", "position")]
    for ax, (title, xlabel) in zip([a for row in axes for a in row], titles):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    axes[1][0].legend(fontsize=7)
    fig.suptitle("One attention layer (D = 512, 8 heads), bench-attention")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lm(found, corpora, rows, path):
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = [(r, "ppl", ROW_LABELS[r]) for r in rows] + [("infinite", "without", "∞-former, memory off at eval")]
    width = 0.8 / len(bars)
    for i, (row, key, label) in enumerate(bars):
        xs, ys = [], []
        for j, corpus in enumerate(corpora):
            v, base = found.get((corpus, row)), found.get((corpus, "transformer"))
            if v and v.get(key) and base and base.get("ppl"):
                xs.append(j + (i - (len(bars) - 1) / 2) * width)
                ys.append(v[key] / base["ppl"])
        ax.bar(xs, ys, width, label=label)
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks(range(len(corpora)))
    ax.set_xticklabels([CORPUS_LABELS.get(c, c) for c in corpora])
    ax.set_ylabel("valid ppl / Transformer's")
    ax.set_title("∞-former vs Transformer(-XL), equal memory bytes beyond the segment")
    ax.legend(fontsize=8)
    lows = [p.get_height() for p in ax.patches if p.get_height() > 0]
    if lows:
        ax.set_ylim(min(lows) * 0.95, max(lows) * 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def shown(command, args):
    """A step's command as a reader would type it: without the replacing prefix, paths relative."""
    command = command.split(" -- ", 1)[-1]
    command = command.replace(os.path.abspath(args.run_dir), "runs/reproduce/scaling")
    return command.replace(os.path.abspath(args.root) + "/", "")


def main():
    parser = results.arguments(__doc__)
    parser.add_argument("--flagfile", required=True)
    parser.add_argument("--corpora", required=True)
    parser.add_argument("--rows", required=True)
    parser.add_argument("--segment_length", type=int, required=True)
    parser.add_argument("--corpora_dir", required=True, help="reproduce/corpora.sh's corpora")
    args = parser.parse_args()
    corpora, rows = args.corpora.split(","), args.rows.split(",")
    run_dir = args.run_dir

    train, decode, state = load_bench(run_dir)
    bench_md, lengths, positions = bench_tables(train, decode, state)
    sentences = bench_sentences(train, decode, state, lengths, positions)
    plot_bench(train, decode, state, lengths, positions, results.png_path(args, "scaling.png"))
    found = lm_rows(run_dir, corpora, rows)
    lm_table, lm_sentences = lm_section(found, corpora, rows, args.segment_length, args.corpora_dir)
    plot_lm(found, corpora, rows, results.png_path(args, "scaling_lm.png"))

    dirs = [os.path.join(run_dir, "bench")] + [os.path.join(run_dir, c, r) for c in corpora for r in rows]
    seconds = sum(results.step_seconds(d, label) or 0 for d in dirs for label in ("bench", "train", "eval"))
    runs = 1 + len(found)
    bench_cmd = shown(results.step_command(os.path.join(run_dir, "bench"), "bench"), args)
    flagfile = os.path.relpath(args.flagfile, args.root)
    some = next(iter(found), None)
    train_cmd = results.step_command(os.path.join(run_dir, *some), "train") if some else ""
    eval_cmd = results.step_command(os.path.join(run_dir, *some), "eval") if some else ""
    steps = results.command_flag(train_cmd, "steps")
    eval_steps = results.command_flag(eval_cmd, "steps", "0")
    evaluated = ("each corpus's whole valid split" if eval_steps == "0"
                 else f"the first {eval_steps} batches per rank of each corpus's valid split")
    tokens = int(results.command_flag(bench_cmd, "tokens", "16384"))

    md = ["Written by `reproduce/scaling.sh` (table and plots by `reproduce/scaling_results.py`); do not "
          "edit by hand. Every step's command line, log and seconds are under `runs/reproduce/scaling/`."]
    if args.smoke:
        md += ["", results.smoke_banner("reproduce/scaling.sh")]
    md += ["", results.machine_line(seconds, runs, args.run_dir), "",
           "**What the papers report.** *Performer* (Choromanski et al. 2020, arXiv 2009.14794; transcribed "
           "in the project's attention spec, §4): FAVOR+ attention is linear in time and space in the "
           "sequence length; at their default size the backward pass is nearly linear in time and "
           "sub-quadratic in memory (§4.1, App. E), and decoding keeps a constant state. *∞-former* "
           "(Martins et al., ACL 2022, arXiv 2109.00301): a continuous long-term memory makes the "
           "attention's cost independent of the context length, and in language modelling an unbounded "
           "memory helps, more on corpora with longer dependencies (PG-19 more than WikiText-103); "
           "**its perplexity tables could not be retrieved** (the spec marks the numbers it recalls as "
           "unverified), so none are quoted here. MemSizer and Linformer are in the cost comparison for "
           "reference (their own sections compare their quality).", "",
           "### Cost of one layer against sequence length", "",
           f"`{bench_cmd}`: one layer, D = 512, 8 heads, batch = {tokens:,} tokens / n, median of the "
           "repetitions; each point in a process of its own (its peak RSS minus a bare start's); "
           "docs/BENCHMARKS.md says how each number is taken.", "",
           bench_md, "", *sentences, "", results.png_link(args, "scaling.png", "cost against sequence length"),
           "", "### ∞-former against Transformer at an equal context budget", "",
           f"`{flagfile}` (4 layers, D = 128, segments of L = {args.segment_length} tokens, 2 ranks × 4 document "
           f"streams; memories per stream, cleared at a document start), seed 1, {steps} steps each, "
           f"evaluated on {evaluated} with the training streams and segment length. "
           "**The budget**: every model sees the current segment; beyond it each layer of a stream keeps "
           f"**{args.segment_length} vectors of width D**: Transformer-XL (`--xl_cache`) the exact keys and "
           f"values of the previous {args.segment_length} tokens, the ∞-former (`--attention=infinite "
           f"--infinite_basis={args.segment_length}`) the coefficients B [N, D] of a continuous signal over "
           "the whole document so far (float64, so the same bytes as XL's float32 keys + values); the "
           "plain Transformer keeps nothing. So XL is exact but short, the ∞-former unbounded but "
           "compressed. Differences besides the memory: the Transformer rows use rotary positions, the "
           "∞-former sinusoidal ones restarting every segment (it has no rotary form); its LTM sits in "
           "every layer, with memtrain's defaults otherwise (Σ = {0.005, 0.01}, λ = 0.5, τ = 0.5, M = 512, "
           "no sticky memories, no gate, no KL term). One seed each: a difference of "
           "a few percent may be noise.", "",
           lm_table, "", *lm_sentences, "",
           results.png_link(args, "scaling_lm.png", "∞-former against Transformer perplexity")]
    results.update_section(args.results, KEY, HEADING, "\n".join(md))


if __name__ == "__main__":
    main()
