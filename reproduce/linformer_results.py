#!/usr/bin/env python3
"""reproduce/linformer.sh's results writer: the Linformer section of docs/RESULTS.md.

Reads runs/reproduce/linformer/ (data/, and per model train/eval/infer/train
timing steps), checks in each train log that only the encoder is Linformer,
and writes the quality table (dev/test ppl, BLEU), the cost table per source
length bucket, the sources' length distribution against k, the paper's claims
and trend sentences computed from the numbers, and docs/results/linformer.png.
"""
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

KEY = "linformer"
HEADING = "Linformer vs Transformer (WMT16 En-De)"
# Within this relative difference a quality or cost number "matches".
QUALITY_TOLERANCE = 0.05


def model_label(model):
    return "Transformer (softmax)" if model == "softmax" else f"Linformer k={model.split('-k')[1]}"


def attention_layout(train_log):
    """{'encoder': [kinds], 'decoder_self': [kinds], 'cross': [kinds]} from the model description."""
    layout = {"encoder": [], "decoder_self": [], "cross": []}
    with open(train_log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"\s+encoder\.\d+\s+\d+\s+self=(\w+)", line)
            if m:
                layout["encoder"].append(m.group(1))
            m = re.match(r"\s+decoder\.\d+\s+\d+\s+self=(\w+) cross=(\w+)", line)
            if m:
                layout["decoder_self"].append(m.group(1))
                layout["cross"].append(m.group(2))
    return layout


def check_layout(model, layout):
    want_encoder = "softmax" if model == "softmax" else "linformer"
    if (not layout["encoder"] or set(layout["encoder"]) != {want_encoder}
            or set(layout["decoder_self"]) != {"softmax"} or set(layout["cross"]) != {"softmax"}):
        sys.exit(f"linformer_results: {model}'s train log describes encoder {layout['encoder']}, decoder "
                 f"self {layout['decoder_self']}, cross {layout['cross']}; want encoder {want_encoder}, "
                 "decoder softmax")


def eval_records(path):
    """(ppl record, generation record) of a memtrain-eval metrics file (either may be None)."""
    ppl = gen = None
    if os.path.exists(path):
        for r in results.read_jsonl(path):
            if r.get("kind") != "eval":
                continue
            if "ppl" in r:
                ppl = r
            if "metric" in r:
                gen = r
    return ppl, gen


def last_run(metrics_path):
    """The train records of the last run in METRICS_PATH: memtrain-train appends, so a
    re-run step (--fresh, a changed command) follows the old run's records."""
    records = results.train_records(metrics_path)
    starts = [i for i, r in enumerate(records) if r.get("step") == 1]
    return records[starts[-1]:] if starts else records


def median_last_run(metrics_path, key):
    """results.median_train over the last run only."""
    records = [r for r in last_run(metrics_path) if results.finite(r.get(key))]
    kept = records[int(len(records) * results.SKIP_FRACTION):] or records
    return statistics.median(r[key] for r in kept) if kept else None


def bucket_inputs(data, label):
    """The TSV a data step prepared (its --inputs=), from the step's command line."""
    found = re.search(r"--inputs=(\S+)", results.step_command(data, label))
    if not found:
        sys.exit(f"linformer_results: {data}/{label}.cmd names no --inputs")
    return found.group(1)


def source_words(tsv):
    with open(tsv, encoding="utf-8") as f:
        return [len(line.split("\t")[0].split()) for line in f if line.strip()]


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def relative(a, b):
    """a against b as a signed percentage."""
    return 100.0 * (a - b) / b


def compare_word(a, b, tolerance, lower="lower", higher="higher"):
    if results.same(a, b, tolerance):
        return f"within {tolerance * 100:.0f}% of"
    return f"{abs(relative(a, b)):.0f}% {lower if a < b else higher} than"


def main():
    parser = results.arguments(__doc__)
    parser.add_argument("--models", required=True)
    parser.add_argument("--buckets", required=True)
    args = parser.parse_args()
    run = args.run_dir
    models = args.models.split(",")
    buckets = args.buckets.split(",")
    data = os.path.join(run, "data")

    rows, stats = [], {}
    for model in models:
        d = os.path.join(run, model)
        layout = attention_layout(os.path.join(d, "train.log"))
        check_layout(model, layout)
        metrics = os.path.join(d, "metrics.jsonl")
        dev_ppl, dev_bleu = eval_records(os.path.join(d, "eval-dev.jsonl"))
        test_ppl, _ = eval_records(os.path.join(d, "eval-test.jsonl"))
        if dev_ppl is None or dev_bleu is None or test_ppl is None:
            sys.exit(f"linformer_results: {model} has no dev/test evaluation records")
        s = {
            "layout": layout,
            "dev_ppl": dev_ppl["ppl"], "dev_bleu": dev_bleu["value"], "dev_n": dev_bleu["examples"],
            "test_ppl": test_ppl["ppl"],
            "train_minutes": results.step_seconds(d, "train") / 60,
            "tokens_per_s": median_last_run(metrics, "tokens_per_s"),
            "steps": last_run(metrics)[-1]["step"] if last_run(metrics) else 0,
            "buckets": {},
        }
        test_bleu_num = test_bleu_den = 0.0
        for b in buckets:
            _, gen = eval_records(os.path.join(d, f"infer-{b}.jsonl"))
            if gen is None or not results.finite(gen.get("seconds")):
                sys.exit(f"linformer_results: {model} bucket {b}: no timed generation record")
            words = sum(source_words(bucket_inputs(data, f"test-{b}")))
            train_metrics = os.path.join(d, f"train-{b}.jsonl")
            tps = median_last_run(train_metrics, "tokens_per_s")
            s["buckets"][b] = {
                "sentences": gen["examples"], "words": words, "bleu": gen["value"],
                "infer_s_per_sentence": gen["seconds"] / gen["examples"],
                "infer_ms_per_word": 1000 * gen["seconds"] / words,
                "train_ms_per_token": 1000 / tps if tps else None,
            }
            test_bleu_num += gen["value"] * gen["examples"]
            test_bleu_den += gen["examples"]
        s["test_bleu_mean"] = test_bleu_num / test_bleu_den
        stats[model] = s
        enc = f"{layout['encoder'][0]} x{len(layout['encoder'])}"
        rows.append([model_label(model), f"{enc} / {layout['decoder_self'][0]} / {layout['cross'][0]}",
                     results.fmt(s["dev_ppl"]), results.fmt(s["dev_bleu"]), results.fmt(s["test_ppl"]),
                     results.fmt(s["test_bleu_mean"]), results.fmt(s["train_minutes"], 1),
                     results.fmt(s["tokens_per_s"], 0)])

    # The sources' lengths: words from the text, subword tokens from memtrain-prepare's counts.
    test_words = source_words(os.path.join(data, "text", "test.tsv"))
    with open(os.path.join(data, "test.stats.json"), encoding="utf-8") as f:
        test_stats = json.load(f)
    pieces_per_word = test_stats["source_tokens"] / sum(test_words)
    test_tokens = [w * pieces_per_word for w in test_words]
    ks = sorted(int(m.split("-k")[1]) for m in models if m.startswith("linformer-k"))
    base = stats.get("softmax")

    out = []
    if args.smoke:
        out.append(results.smoke_banner("scripts/reproduce linformer") + "\n")
    steps = stats[models[0]]["steps"]
    out.append(
        "Written by `scripts/reproduce linformer` (reproduce/linformer.sh). Three models with "
        f"configs/reproduce-wmt16.flags (2+2 layers, width 128, {steps} steps, seed 1), differing only in "
        "the encoder's self-attention: Linformer is non-causal, so it replaces the encoder's softmax "
        "(`--attention=linformer --layer_attention=0:softmax,1:softmax --linformer_k=K`) while the "
        "decoder's self- and cross-attention stay softmax, as each train log's model description "
        "confirms (column *attention*: encoder / decoder self / cross). Training data: the 10K-pair "
        "WMT16 train sample **plus newstest2009-2014** (~17K pairs) as extra training pairs; dev = "
        "newstest2015, test = newstest2016. BLEU is memtrain-eval's sacreBLEU-compatible corpus BLEU "
        f"(beam 4): dev on the first {stats[models[0]]['dev_n']} sentences; test BLEU is the mean of the "
        "per-bucket BLEU below, weighted by sentences (a stratified sample, not the whole test set). "
        "Perplexity is over the whole dev/test set.\n")
    out.append(results.table(
        ["model", "attention", "dev ppl", "dev BLEU", "test ppl", "test BLEU (buckets)",
         "train min", "train tok/s"], rows) + "\n")

    # Cost per source-length bucket.
    cost_rows = []
    for b in buckets:
        first = stats[models[0]]["buckets"][b]
        row = [f"{b} words", str(first["sentences"])]
        for m in models:
            mb = stats[m]["buckets"][b]
            row.append(f"{results.fmt(mb['infer_s_per_sentence'], 3)} / {results.fmt(mb['infer_ms_per_word'], 1)}")
        for m in models:
            row.append(results.fmt(stats[m]["buckets"][b]["train_ms_per_token"], 2))
        for m in models:
            row.append(results.fmt(stats[m]["buckets"][b]["bleu"]))
        cost_rows.append(row)
    names = [model_label(m).replace("Transformer (softmax)", "softmax") for m in models]
    out.append(
        "Cost against source length (newstest2016 for inference: the first sentences of each bucket "
        "of English words; the train sample for training: a few steps from scratch on the bucket's "
        "pairs, median step). *Inference*: seconds of beam search per sentence / milliseconds per "
        "source word, the search alone (memtrain-eval's `seconds`, not process start-up). *Train*: "
        "milliseconds per token (memtrain-train's tokens/s). *BLEU* of the bucket.\n")
    out.append(results.table(
        ["source", "sentences"] + [f"infer {n}" for n in names] + [f"train ms/tok {n}" for n in names]
        + [f"BLEU {n}" for n in names], cost_rows) + "\n")
    out.append(results.png_link(args, "linformer.png", "Linformer vs Transformer: cost against source length") + "\n")

    # Lengths against k.
    length_lines = [
        f"**Source lengths against k.** newstest2016's {len(test_words)} English sources have a median of "
        f"{statistics.median(test_words):.0f} words, 90th percentile {percentile(test_words, 0.9)}, maximum "
        f"{max(test_words)}; with this tokenizer ({pieces_per_word:.2f} subword tokens per word) that is a "
        f"median of ~{statistics.median(test_tokens):.0f} tokens."]
    median_tokens = statistics.median(test_tokens)
    for k in ks:
        longer = 100.0 * sum(t > k for t in test_tokens) / len(test_tokens)
        length_lines.append(f"{longer:.0f}% of the sources are longer than k = {k} tokens.")
    length_lines.append(
        "Linformer projects a sentence's n keys and values onto k rows, so its encoder attention "
        "costs ~n*k instead of n*n: a saving only where n > k, of at most n/k, and none (a little extra "
        "work) where n <= k.")
    if ks and median_tokens <= min(ks):
        length_lines.append(
            f"Here the median source (~{median_tokens:.0f} tokens) is no longer than even k = {min(ks)}: "
            "for most sentences neither k removes anything, so this comparison can show what the "
            "projection costs in quality, not the speed-up the paper is about.")
    elif ks:
        length_lines.append(
            f"Here the median source is ~{median_tokens:.0f} tokens, {median_tokens / min(ks):.1f}x k = "
            f"{min(ks)} at most, so even the best case saves little of the encoder's attention, itself a "
            "small share of a step (the decoder, cross-attention and output layer are unchanged): "
            "the comparison mainly shows what the projection costs in quality.")
    out.append(" ".join(length_lines) + "\n")

    # The paper, and the trend here.
    out.append(
        "**What the papers report.** Linformer (Wang et al. 2020, arXiv:2006.04768) claims that "
        "self-attention is approximately low-rank, so projecting keys and values to k << n rows makes "
        "it O(n) in time and memory, and that it performs on par with a standard Transformer while "
        "being much more memory- and time-efficient (its abstract). The exact numbers of the paper and of the "
        "seed study (\"Evaluating Linformer's performance on WMT14 EN-DE\") could not be retrieved here, "
        "so none are quoted.\n")
    if base:
        trend = []
        for k in ks:
            s = stats[f"linformer-k{k}"]
            bleu_gap = s["dev_bleu"] - base["dev_bleu"]
            trend.append(
                f"Linformer k={k}: dev ppl {results.fmt(s['dev_ppl'])} is "
                f"{compare_word(s['dev_ppl'], base['dev_ppl'], QUALITY_TOLERANCE)} the Transformer's "
                f"{results.fmt(base['dev_ppl'])}, dev BLEU {bleu_gap:+.2f} points; training throughput "
                f"{compare_word(s['tokens_per_s'], base['tokens_per_s'], QUALITY_TOLERANCE)} softmax's.")
        quality_same = all(results.same(stats[f"linformer-k{k}"]["dev_ppl"], base["dev_ppl"], QUALITY_TOLERANCE)
                           for k in ks)
        trend.append(
            "On quality the small-scale run " + ("agrees with the paper's claim of parity "
                                                 f"(every Linformer dev ppl within {QUALITY_TOLERANCE * 100:.0f}%)."
                                                 if quality_same else
                                                 "does not show the paper's parity (a dev ppl differs by more "
                                                 f"than {QUALITY_TOLERANCE * 100:.0f}%)."))
        longest, shortest = buckets[-1], buckets[0]
        for k in ks:
            s = stats[f"linformer-k{k}"]["buckets"]
            r_short = s[shortest]["infer_ms_per_word"] / base["buckets"][shortest]["infer_ms_per_word"]
            r_long = s[longest]["infer_ms_per_word"] / base["buckets"][longest]["infer_ms_per_word"]
            trend.append(
                f"Inference time per source word, Linformer k={k} over softmax: {r_short:.2f}x on "
                f"{shortest}-word sources, {r_long:.2f}x on {longest}-word sources"
                + (" (relatively cheaper on long sources, the paper's direction)." if r_long < r_short * (1 - QUALITY_TOLERANCE)
                   else " (no relative gain on long sources: at these lengths the decoder's softmax "
                        "attention and the output layer dominate, and n is rarely above k)."))
        out.append("**Trend here.** " + " ".join(trend) + "\n")
    total = sum(results.step_seconds(os.path.join(run, m), lab) or 0 for m in models
                for lab in ["train", "eval-dev", "eval-test"] + [f"infer-{b}" for b in buckets]
                + [f"train-{b}" for b in buckets])
    out.append(results.machine_line(total, len(models), args.run_dir) + "\n")

    # The plot: inference and training cost per bucket, and dev quality.
    plt = results.plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    x = list(range(len(buckets)))
    for m in models:
        axes[0].plot(x, [stats[m]["buckets"][b]["infer_ms_per_word"] for b in buckets], marker="o",
                     label=model_label(m))
        axes[1].plot(x, [stats[m]["buckets"][b]["train_ms_per_token"] or 0 for b in buckets], marker="o",
                     label=model_label(m))
    for ax, title, ylabel in [(axes[0], "inference (beam 4)", "ms per source word"),
                              (axes[1], "training", "ms per token")]:
        ax.set_xticks(x)
        ax.set_xticklabels(buckets)
        ax.set_xlabel("source length (words)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[2].bar(range(len(models)), [stats[m]["dev_bleu"] for m in models],
                tick_label=[model_label(m).replace(" (softmax)", "") for m in models])
    axes[2].set_ylabel("dev BLEU (newstest2015)")
    axes[2].set_title("quality")
    fig.suptitle("Linformer (encoder) vs Transformer, WMT16 En-De" + (" — SMOKE RUN" if args.smoke else ""))
    fig.tight_layout()
    os.makedirs(args.png_dir, exist_ok=True)
    fig.savefig(results.png_path(args, "linformer.png"), dpi=100)

    results.update_section(args.results, KEY, HEADING, "\n".join(out))
    print(f"[linformer_results] wrote section {KEY} of {args.results} and linformer.png")


if __name__ == "__main__":
    main()
