"""Reference values from sacrebleu, rouge-score and nltk for
tests/trainer/metrics_reference_test.cpp, which runs this with the project's
Python and compares every number with memtrain's C++ metrics.

Usage: metrics_reference.py INPUT_JSON OUTPUT_JSON

INPUT_JSON:  {"bleu": {NAME: {"hypotheses": [...], "reference_streams": [[...], ...]}},
              "rouge": {NAME: {"hypotheses": [...], "references": [...]}},
              "stem_words": [...]}
OUTPUT_JSON: the same names with the packages' results; floats are written
with repr() precision, so they round-trip exactly.
"""
import json
import sys
from importlib.metadata import version

from nltk.stem import porter
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL"]


def bleu_fields(metric, score):
    return {"score": score.score, "precisions": score.precisions, "counts": score.counts,
            "totals": score.totals, "bp": score.bp, "ratio": score.ratio,
            "sys_len": score.sys_len, "ref_len": score.ref_len,
            "signature": str(metric.get_signature())}


def bleu_results(hypotheses, reference_streams):
    metric = BLEU()  # what sacrebleu.corpus_bleu uses
    corpus = bleu_fields(metric, metric.corpus_score(hypotheses, reference_streams))
    segments = [BLEU().corpus_score([h], [[s[i]] for s in reference_streams]).score
                for i, h in enumerate(hypotheses)]
    tokenizer = Tokenizer13a()
    texts = hypotheses + [r for stream in reference_streams for r in stream]
    return {"corpus": corpus, "segment_scores": segments,
            "tokens": [tokenizer(t.rstrip()).split() for t in texts]}


def rouge_results(hypotheses, references):
    results = {}
    for name, use_stemmer in (("none", False), ("porter", True)):
        scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=use_stemmer)
        # score(target, prediction): the reference comes first.
        pairs = [scorer.score(r, h) for h, r in zip(hypotheses, references)]
        results[name] = [[list(pair[t]) for t in ROUGE_TYPES] for pair in pairs]
    return results


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        request = json.load(f)
    stemmer = porter.PorterStemmer()  # rouge-score's: the default mode
    response = {
        "versions": {p: version(p) for p in ("sacrebleu", "rouge-score", "nltk")},
        "porter_mode": stemmer.mode,
        "bleu": {name: bleu_results(s["hypotheses"], s["reference_streams"])
                 for name, s in request["bleu"].items()},
        "rouge": {name: rouge_results(s["hypotheses"], s["references"])
                  for name, s in request["rouge"].items()},
        "stems": [stemmer.stem(w) for w in request["stem_words"]],
    }
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(response, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
