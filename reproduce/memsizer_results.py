#!/usr/bin/env python3
"""reproduce/memsizer.sh's results writer: docs/RESULTS.md §"MemSizer vs Transformer"
(key memsizer) and docs/results/memsizer_quality.png, memsizer_decode.png,
memsizer_decode_model.png.

Reads runs/reproduce/memsizer/: {mt,xsum,lm,qa}/{transformer,memsizer}/
(metrics.jsonl, eval.jsonl, step records; qa/ROW/not_run.txt when the build
refused decoder-only qa), decode/ROW/length-L.done (memtrain-generate's
seconds) and bench/decode.json (bench-attention). Every trend
sentence is computed here from those numbers.
"""
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import results  # noqa: E402
import matplotlib.ticker  # noqa: E402  (results selected the Agg backend)

ROWS = ("transformer", "memsizer")
NAMES = {"transformer": "Transformer", "memsizer": "MemSizer"}
# MemSizer's quality counts as "comparable" (the paper's claim) when it is
# better, or worse by at most this fraction of the Transformer's score.
COMPARABLE = 0.10
# What the paper says, from its abstract (arXiv 2203.12644; retrieved through
# the search tools: paperswithcode.com and bohrium.dp.tech copies of the
# abstract). Its tables' numbers could not be retrieved.
PAPER = (
    "**The paper** (Zhang & Cai 2022, arXiv 2203.12644) reports, in its abstract, that MemSizer "
    "\"yields linear computation time and constant memory complexity at inference time\" and "
    "\"provides an improved balance between efficiency and accuracy over the vanilla transformer and "
    "other efficient transformer variants\" on machine translation, abstractive summarization and "
    "language modelling: quality comparable to the Transformer's, faster decoding, and decoding "
    "memory that does not grow with the output length. Its exact BLEU, ROUGE, perplexity and speed "
    "numbers could not be retrieved here, so none are quoted. The OpenOrca qa fine-tuning is this "
    "project's extension, not the paper's.")


def rouge_parts(summary):
    """ROUGE-1/2/L from memtrain-eval's summary line 'ROUGE-1/2/L F1 a/b/c ...'."""
    match = re.search(r"ROUGE-1/2/L F1 ([\d.]+)/([\d.]+)/([\d.]+)", summary or "")
    return tuple(float(x) for x in match.groups()) if match else None


def run_numbers(directory):
    """A trained row's numbers, or None when it has not run."""
    if not results.step_done(directory, "train"):
        return None
    out = {"train_s": results.step_seconds(directory, "train"),
           "eval_s": results.step_seconds(directory, "eval")}
    not_run = os.path.join(directory, "not_run.txt")
    if os.path.exists(not_run):
        with open(not_run, encoding="utf-8") as f:
            out["not_run"] = f.read().strip() or "refused by this build"
        return out
    metrics = os.path.join(directory, "metrics.jsonl")
    out["tokens_per_s"] = results.median_train(metrics, "tokens_per_s") if os.path.exists(metrics) else None
    eval_path = os.path.join(directory, "eval.jsonl")
    if os.path.exists(eval_path):
        ppl = results.last_eval(eval_path, memory=True) or results.last_eval(eval_path, memory=False)
        for record in results.read_jsonl(eval_path):
            if record.get("kind") != "eval":
                continue
            if "ppl" in record and ppl is None:
                ppl = record
            if record.get("metric") == "BLEU":
                out["bleu"] = record["value"]
                out["examples"] = record.get("examples")
            elif record.get("metric") == "ROUGE":
                out["rouge"] = rouge_parts(record.get("summary"))
                out["examples"] = record.get("examples")
        out["ppl"] = ppl["ppl"] if ppl else None
    return out


def trend(name, metric, transformer, memsizer, higher_better, paper=True):
    """One computed sentence: how MemSizer's METRIC compares and, for a task of
    the paper, whether that is its 'comparable' (better, or worse by <= COMPARABLE)."""
    if transformer is None or memsizer is None:
        return f"- {name}: not measured."
    diff = memsizer - transformer
    relative = diff / abs(transformer) if transformer else None
    better = diff > 0 if higher_better else diff < 0
    if results.same(memsizer, transformer):
        verdict, agrees = "the same as", True
    else:
        verdict = "better than" if better else "worse than"
        agrees = better or (relative is not None and abs(relative) <= COMPARABLE)
    change = f" ({relative:+.1%})" if relative is not None else ""
    if not paper:
        claim = "the paper has no such task to compare with"
    elif agrees:
        claim = "this agrees with the paper's comparable quality"
    else:
        claim = f"this disagrees with the paper's comparable quality (worse by more than {COMPARABLE:.0%})"
    return (f"- {name}: MemSizer's {metric} {results.fmt(memsizer)} is {verdict} the Transformer's "
            f"{results.fmt(transformer)}{change}; {claim}.")


def decode_view(bench_path):
    """bench-attention's per-layer decode numbers: {kind: {position: (us, bytes|None)}}."""
    with open(bench_path, encoding="utf-8") as f:
        bench = json.load(f)
    times = bench.get("decode", {})
    state = bench.get("decode_state_bytes")
    view = {}
    for kind in ("softmax", "memsizer"):
        if kind not in times:
            continue
        view[kind] = {int(p): (us, (state or {}).get(kind, {}).get(p)) for p, us in times[kind].items()}
    return view, state is not None


def main():
    args = results.arguments(__doc__).parse_args()
    run = args.run_dir
    numbers = {task: {row: run_numbers(os.path.join(run, task, row)) for row in ROWS}
               for task in ("mt", "xsum", "lm", "qa")}
    for task in ("mt", "xsum", "lm"):
        for row in ROWS:
            if numbers[task][row] is None:
                sys.exit(f"{run}/{task}/{row}: no finished run (run reproduce/memsizer.sh)")

    def cell(task, row, key, index=None):
        n = numbers[task][row]
        if n is None:
            return None
        value = n.get(key)
        return value[index] if (value is not None and index is not None) else value

    lines = []
    if args.smoke:
        lines += [results.smoke_banner("scripts/reproduce memsizer"), ""]
    lines += [
        "Written by `scripts/reproduce memsizer` (reproduce/memsizer.sh; every command line and log is "
        "under runs/reproduce/memsizer/). Each task trains the same model twice with "
        "`memtrain-train` and evaluates it with `memtrain-eval --generate=N` (beam 4): **Transformer** "
        "(softmax attention everywhere) and **MemSizer** (encoder-decoder tasks: as the reference's MT "
        "script, a softmax encoder, MemSizer decoder self-attention with 4 memory slots and "
        "cross-attention with 32, `--memsizer_slots=4 --memsizer_cross_slots=32`, init scales 8/8; "
        "language model: MemSizer self-attention with 32 slots). Models: 3+3 layers, D = 128 "
        "(configs/reproduce-memsizer-seq2seq.flags) and a 4-layer D = 128 decoder "
        "(configs/reproduce-memsizer-lm.flags): a few hundred steps on 2 CPU cores, so far from "
        "converged; the comparison is between rows trained alike, not with the paper's scores.",
        "",
        "Data: translation, the WMT16 en-de training sample (10K pairs), BLEU on the first "
        f"{cell('mt', 'transformer', 'examples') or '—'} sentences of newstest2015 (perplexity on all "
        "of it); summarization, XSUM has no train split here, so the models train on its 2,000 test "
        f"documents and are scored on the first {cell('xsum', 'transformer', 'examples') or '—'} "
        "validation documents (sources cut to 256 tokens); language model, WikiText-2 trained on "
        "test.txt and evaluated on valid.txt (no train split here either); qa, each LM fine-tuned "
        "decoder-only on OpenOrca ([question <sep> answer], loss on the answer) from its own "
        "checkpoint (`--task=qa --encoder_layers=0 --init_from`). **OpenOrca has only 50 records "
        "here**: 40 train, 10 held out, so its numbers are a check that the fine-tuning path runs, "
        "not a measurement (one answer more or less right moves ROUGE by points).",
        "",
        PAPER,
        "",
    ]

    headers = ["task", "metric", "Transformer", "MemSizer", "MemSizer − Transformer",
               "valid ppl (T / M)", "train tokens/s (T / M)"]
    rows = []

    def pair(task, key, digits=2):
        return (f"{results.fmt(cell(task, 'transformer', key), digits)} / "
                f"{results.fmt(cell(task, 'memsizer', key), digits)}")

    def diff(a, b):
        return results.fmt(b - a) if a is not None and b is not None else "—"

    t, m = cell("mt", "transformer", "bleu"), cell("mt", "memsizer", "bleu")
    rows.append(["translation (WMT16 en-de)", "BLEU", results.fmt(t), results.fmt(m), diff(t, m),
                 pair("mt", "ppl"), pair("mt", "tokens_per_s", 0)])
    for index, metric in enumerate(("ROUGE-1", "ROUGE-2", "ROUGE-L")):
        t, m = cell("xsum", "transformer", "rouge", index), cell("xsum", "memsizer", "rouge", index)
        rows.append(["summarization (XSUM)", metric, results.fmt(t), results.fmt(m), diff(t, m),
                     pair("xsum", "ppl") if index == 0 else "", pair("xsum", "tokens_per_s", 0) if index == 0 else ""])
    t, m = cell("lm", "transformer", "ppl"), cell("lm", "memsizer", "ppl")
    rows.append(["language model (WikiText-2)", "valid perplexity", results.fmt(t), results.fmt(m), diff(t, m),
                 pair("lm", "ppl"), pair("lm", "tokens_per_s", 0)])
    qa_reason = next((numbers["qa"][r]["not_run"] for r in ROWS
                      if numbers["qa"][r] is not None and "not_run" in numbers["qa"][r]), None)
    if numbers["qa"]["transformer"] is None or numbers["qa"]["memsizer"] is None:
        qa_reason = qa_reason or "no finished qa run"
    if qa_reason:
        rows.append(["qa fine-tuning (OpenOrca, 10 held out)", "ROUGE-L", f"not run: {qa_reason}",
                     "not run", "—", "—", "—"])
    else:
        t, m = cell("qa", "transformer", "rouge", 2), cell("qa", "memsizer", "rouge", 2)
        rows.append(["qa fine-tuning (OpenOrca, 10 held out)", "ROUGE-L", results.fmt(t), results.fmt(m),
                     diff(t, m), pair("qa", "ppl"), pair("qa", "tokens_per_s", 0)])
    lines += [results.table(headers, rows, "llrrrrr"), ""]

    lines += ["How the small-scale trend compares with the paper's claim of comparable quality "
              f"(\"comparable\": better, or worse by at most {COMPARABLE:.0%}):", ""]
    lines.append(trend("translation", "BLEU", cell("mt", "transformer", "bleu"), cell("mt", "memsizer", "bleu"), True))
    lines.append(trend("summarization", "ROUGE-L", cell("xsum", "transformer", "rouge", 2),
                       cell("xsum", "memsizer", "rouge", 2), True))
    lines.append(trend("language model", "valid perplexity", cell("lm", "transformer", "ppl"),
                       cell("lm", "memsizer", "ppl"), False))
    if qa_reason:
        lines.append(f"- qa fine-tuning: not run: {qa_reason}.")
    else:
        lines.append(trend("qa fine-tuning (10 held-out answers: noise)", "ROUGE-L",
                           cell("qa", "transformer", "rouge", 2), cell("qa", "memsizer", "rouge", 2), True,
                           paper=False))
    lines.append("")

    # Quality plot: each task's metric, Transformer and MemSizer side by side.
    plt = results.plt
    bars = [("BLEU", "mt", "bleu", None), ("ROUGE-L (XSUM)", "xsum", "rouge", 2), ("LM ppl", "lm", "ppl", None)]
    if not qa_reason:
        bars.append(("ROUGE-L (qa)", "qa", "rouge", 2))
    figure, axes = plt.subplots(1, len(bars), figsize=(3 * len(bars), 3.2))
    for axis, (label, task, key, index) in zip(axes, bars):
        values = [cell(task, row, key, index) or 0.0 for row in ROWS]
        axis.bar([NAMES[r] for r in ROWS], values, color=["#4c72b0", "#dd8452"])
        axis.set_title(label + (" (lower is better)" if key == "ppl" else ""), fontsize=9)
    figure.suptitle("MemSizer vs Transformer at small scale" + (" (smoke run)" if args.smoke else ""), fontsize=10)
    figure.tight_layout()
    figure.savefig(results.png_path(args, "memsizer_quality.png"), dpi=100)
    plt.close(figure)
    lines += [results.png_link(args, "memsizer_quality.png", "MemSizer vs Transformer quality"), ""]

    # Decoding cost per token against the output length, one layer.
    bench_path = os.path.join(run, "bench", "decode.json")
    view, has_state = decode_view(bench_path)
    positions = sorted(set().union(*(set(v) for v in view.values())))
    lines += ["**Decoding cost per token against the output length**, one attention layer "
              "(`bench-attention --kinds=softmax,memsizer --train=false`, its default width and heads): "
              "microseconds per decoded token after that many positions"
              + (", and the bytes the layer's decode state holds then." if has_state else
                 "; this build's bench-attention reports no `decode_state_bytes`, so the state's memory "
                 "is **not measured** here, only the time."), ""]
    headers = ["position", "softmax µs/token", "memsizer µs/token"]
    if has_state:
        headers += ["softmax state bytes", "memsizer state bytes"]
    table_rows = []
    for p in positions:
        row = [p] + [results.fmt(view.get(k, {}).get(p, (None, None))[0], 1) for k in ("softmax", "memsizer")]
        if has_state:
            row += [view.get(k, {}).get(p, (None, None))[1] if view.get(k, {}).get(p, (None, None))[1] is not None
                    else "—" for k in ("softmax", "memsizer")]
        table_rows.append(row)
    lines += [results.table(headers, table_rows), ""]
    if len(positions) >= 2 and all(k in view for k in ("softmax", "memsizer")):
        first, last = positions[0], positions[-1]
        growth = {k: view[k][last][0] / view[k][first][0] for k in view if view[k][first][0]}
        ratio = view["softmax"][last][0] / view["memsizer"][last][0] if view["memsizer"][last][0] else None
        lines.append(f"- Time: from position {first} to {last}, softmax's time per token changed "
                     f"{growth.get('softmax', float('nan')):.2f}x and MemSizer's {growth.get('memsizer', float('nan')):.2f}x; "
                     f"at position {last} MemSizer decodes a token "
                     + (f"{ratio:.2f}x as fast as softmax" if ratio else "(not measured)")
                     + (" — faster, as the paper claims." if ratio and ratio > 1 + results.TOLERANCE else
                        " — not faster, unlike the paper's claim." if ratio else "."))
        if has_state:
            ms = [view["memsizer"][p][1] for p in positions if view["memsizer"][p][1] is not None]
            sm = [view["softmax"][p][1] for p in positions if view["softmax"][p][1] is not None]
            if ms and sm:
                constant = max(ms) == min(ms)
                span = f"{min(ms)}" if min(ms) == max(ms) else f"{min(ms)}–{max(ms)}"
                lines.append(f"- Memory: MemSizer's state is {span} bytes over positions {first}–{last} "
                             f"({'constant, as the paper claims' if constant else 'not constant, unlike the paper'}); "
                             f"softmax's KV cache grows from {sm[0]} to {sm[-1]} bytes ({sm[-1] / sm[0]:.0f}x).")
        lines.append("")
    # Whole-model decode time per token: (t(L) - t(1)) / (L - 1) of memtrain-generate runs.
    whole = {}
    for row in ROWS:
        directory = os.path.join(run, "decode", row)
        lengths = sorted(int(f[len("length-"):-len(".done")]) for f in os.listdir(directory)
                         if f.startswith("length-") and f.endswith(".done")) if os.path.isdir(directory) else []
        base = results.step_seconds(directory, "length-1") if 1 in lengths else None
        # A run no slower than the L = 1 one is start-up noise, not a time: left out.
        whole[row] = {n: ms for n in lengths if n > 1 and base is not None
                      for ms in [(results.step_seconds(directory, f"length-{n}") - base) / (n - 1) * 1e3]
                      if ms > 0}
    lengths = sorted(set(whole["transformer"]) & set(whole["memsizer"]))
    if lengths:
        lines += ["**Whole-model decode time per token** (the WikiText-2 LMs above, `memtrain-generate`, "
                  "greedy, 4 prompts decoded together, at most L tokens each (a document's end stops one sooner); milliseconds per decoding step "
                  "averaged over the L steps, the L = 1 run's start-up and prompt taken off; one run each, "
                  "so noisy on a shared machine):", ""]
        lines += [results.table(["output length L", "Transformer ms/step", "MemSizer ms/step", "Transformer / MemSizer"],
                                [[n, results.fmt(whole["transformer"][n]), results.fmt(whole["memsizer"][n]),
                                  results.fmt(whole["transformer"][n] / whole["memsizer"][n])
                                  if whole["memsizer"][n] > 0 else "—"] for n in lengths]), ""]
        first, last = lengths[0], lengths[-1]
        t_growth = whole["transformer"][last] / whole["transformer"][first] if whole["transformer"][first] > 0 else None
        m_growth = whole["memsizer"][last] / whole["memsizer"][first] if whole["memsizer"][first] > 0 else None
        if t_growth and m_growth:
            faster = whole["memsizer"][last] < whole["transformer"][last] * (1 - results.TOLERANCE)
            growth = (f"From L = {first} to {last} the Transformer's time per step changed {t_growth:.2f}x and "
                      f"MemSizer's {m_growth:.2f}x. " if last > first else "")
            lines += [f"- {growth}At L = {last} MemSizer is "
                      + ("faster, as the paper claims." if faster else
                         "not faster, unlike the paper's claim."), ""]
    figure, axis = plt.subplots(figsize=(5, 3.4))
    for row, colour in (("transformer", "#4c72b0"), ("memsizer", "#dd8452")):
        if whole.get(row):
            ns = sorted(whole[row])
            axis.plot(ns, [whole[row][n] for n in ns], marker="o", color=colour, label=NAMES[row])
    axis.set(xlabel="output length L (tokens)", ylabel="ms per decoding step", title="whole LM, greedy decoding")
    axis.legend()
    figure.tight_layout()
    figure.savefig(results.png_path(args, "memsizer_decode_model.png"), dpi=100)
    plt.close(figure)
    lines += [results.png_link(args, "memsizer_decode_model.png", "MemSizer vs Transformer whole-model decode time"), ""]

    figure, axes = plt.subplots(1, 2 if has_state else 1, figsize=(9 if has_state else 5, 3.4), squeeze=False)
    for kind, colour in (("softmax", "#4c72b0"), ("memsizer", "#dd8452")):
        if kind not in view:
            continue
        ps = sorted(view[kind])
        axes[0][0].plot(ps, [view[kind][p][0] for p in ps], marker="o", color=colour, label=kind)
        if has_state:
            state_ps = [p for p in ps if view[kind][p][1] is not None]
            axes[0][1].plot(state_ps, [view[kind][p][1] for p in state_ps], marker="o", color=colour, label=kind)
    axes[0][0].set(yscale="log", xlabel="position (tokens decoded)", ylabel="µs per token",
                   title="one layer's decode time per token")
    if has_state:
        axes[0][1].set(yscale="log", xlabel="position (tokens decoded)", ylabel="bytes",
                       title="decode state memory")
    for axis in axes[0]:
        axis.set_xscale("log", base=2)  # the positions are powers of two
        axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.legend()
    figure.tight_layout()
    figure.savefig(results.png_path(args, "memsizer_decode.png"), dpi=100)
    plt.close(figure)
    lines += [results.png_link(args, "memsizer_decode.png", "MemSizer vs softmax decoding cost"), ""]

    seconds = 0.0
    runs = 0
    for done in glob.glob(os.path.join(run, "**", "*.done"), recursive=True):
        with open(done, encoding="utf-8") as f:
            seconds += json.load(f)["seconds"]
        runs += 1
    lines.append(results.machine_line(seconds, runs, args.run_dir).replace(" runs took", " steps took"))
    results.update_section(args.results, "memsizer", "MemSizer vs Transformer", "\n".join(lines))


if __name__ == "__main__":
    main()
