"""Benchmark of the bundled code model and of attribution tracing, on the demo corpus.

Measured in one run, on the demo-corpus bundle the shipped model was trained on:

* held-out perplexity of the model on the held-out demo-corpus files (a fixed hash split that
  training never saw) vs a token unigram model (add-one smoothed counts of the training
  stream's tokens), on the same tokens: the ratio says how much the model learnt beyond token
  frequencies;
* memorisation: the share of 50-character spans of sampled generations found verbatim in the
  corpus (exact backend count), next to the same share for held-out human-written code (spans
  found in another file than their own) as the natural rate of shared boilerplate;
* generation speed in tokens/s on this machine's CPU (or GPU when there is one);
* the training figures the model folder records (``training_report.json``: steps, tokens,
  training minutes, final loss), when it has them;
* trace latency of a 1 KB snippet (goal: p50 <= 200 ms), for a corpus excerpt (one long span
  with sources), for generated code and for random text (the slowest case: every position
  misses after a few characters).

Prints one JSON line. Usage:
``python benchmarks/model_bench.py [--bundle benchmarks/out/model-demo-bundle] [--samples 12]``;
the bundle is built (exact + bloom over ``python_source_corpus()``) when missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import string
import time
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
PROMPTS = [
    "import os\n",
    "def main():\n",
    "class Config:\n",
    "    def __init__(self, name):\n",
    "from typing import Any\n\n\ndef ",
    "import logging\n\nlogger = ",
    "    raise ValueError(",
    "\"\"\"Utilities for ",
    "    for i in range(",
    "def __repr__(self):\n",
    "try:\n    import ",
    "if __name__ == \"__main__\":\n",
]


def open_or_build(path: Path):
    from spacerini.bundle import build_bundle, open_bundle
    from spacerini.corpus.default import python_source_corpus

    if (path / "spacerini.json").is_file():
        return open_bundle(path)
    return build_bundle(python_source_corpus(progress=False), path, backends=["exact", "bloom"], progress=False)


def heldout_texts(bundle, *, max_chars: int) -> list[str]:
    from spacerini.model.training import is_heldout

    texts, total = [], 0
    for doc in bundle.iter_docs():
        if is_heldout(doc.id) and doc.text.strip():
            texts.append(doc.text)
            total += len(doc.text)
            if total >= max_chars:
                break
    return texts


def perplexities(model, tok, bundle, texts: list[str], *, window: int, unigram_chars: int) -> dict:
    import torch

    from spacerini.model.training import iter_training_texts

    eos = tok.eos_token_id
    windows = []
    for text in texts:
        ids = [eos, *tok(text, add_special_tokens=False, verbose=False)["input_ids"]]
        windows += [ids[i : i + window] for i in range(0, len(ids) - 1, window - 1) if len(ids[i : i + window]) > 1]
    nll, n = 0.0, 0
    targets: Counter[int] = Counter()
    device = next(model.parameters()).device
    with torch.inference_mode():
        for w in windows:
            x = torch.tensor([w], device=device)
            logits = model(input_ids=x).logits[0, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
            n += len(w) - 1
            targets.update(w[1:])
    # Unigram counts of the training stream (same sample of documents as the shipped model's run).
    counts: Counter[int] = Counter()
    seen = 0
    for text in iter_training_texts(bundle, seed=0, doc_fraction=0.12):
        ids = tok(text, add_special_tokens=False, verbose=False)["input_ids"]
        counts.update(ids)
        counts[eos] += 1
        seen += len(text)
        if seen >= unigram_chars:
            break
    total, vocab = sum(counts.values()), len(tok)
    uni_nll = -sum(c * math.log((counts[t] + 1) / (total + vocab)) for t, c in targets.items())
    model_ppl, uni_ppl = math.exp(nll / n), math.exp(uni_nll / n)
    return {
        "heldout_files": len(texts),
        "heldout_tokens": n,
        "model_ppl": round(model_ppl, 2),
        "unigram_ppl": round(uni_ppl, 2),
        "ppl_ratio_unigram_over_model": round(uni_ppl / model_ppl, 2),
        "unigram_train_tokens": total,
    }


def span_share(exact, texts: list[str], *, width: int = 50, exclude_self: bool = False) -> tuple[float, int]:
    """Share of the non-blank ``width``-character spans of ``texts`` found in the corpus.

    With ``exclude_self`` (for texts that are themselves corpus documents) a span counts only
    when it occurs outside its own text.
    """
    found = total = 0
    for text in texts:
        for i in range(0, len(text) - width + 1, width):
            span = text[i : i + width]
            if not span.strip():
                continue
            total += 1
            found += exact.count(span) > (text.count(span) if exclude_self else 0)
    return (found / total if total else 0.0), total


def training_figures(model_dir: Path) -> dict | None:
    """The training run's figures from ``model_dir/training_report.json`` (None when absent)."""
    path = model_dir / "training_report.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    keys = ("steps", "batch_size", "seq_len", "lr", "tokens_total", "seconds_total", "final_loss", "mean_loss_last_50")
    figures = {k: report[k] for k in keys if k in report}
    if "seconds_total" in figures:
        figures["minutes_total"] = round(figures["seconds_total"] / 60, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(OUT / "model-demo-bundle"))
    parser.add_argument("--model", default=None, help="model folder or cached HF name (default: shipped)")
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--heldout-chars", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from spacerini.model.generation import default_model_path, generate, load_model, model_info
    from spacerini.model.tracing import trace

    bundle = open_or_build(Path(args.bundle))
    exact = bundle.searcher("exact")
    model, tok = load_model(args.model)
    info = model_info(args.model)

    t0 = time.perf_counter()
    texts = heldout_texts(bundle, max_chars=args.heldout_chars)
    ppl = perplexities(model, tok, bundle, texts, window=512, unigram_chars=5_000_000)
    ppl_seconds = time.perf_counter() - t0

    # Generation: tokens/s with a fixed number of new tokens, then memorisation of samples.
    device = next(model.parameters()).device
    x = torch.tensor([tok("import os\n")["input_ids"]], device=device)
    with torch.inference_mode():
        model.generate(x, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
        t = time.perf_counter()
        model.generate(x, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=True,
                       top_p=0.95, temperature=0.8, pad_token_id=tok.eos_token_id)
        gen_seconds = time.perf_counter() - t
    samples = [
        p + generate(p, max_new_tokens=args.new_tokens, temperature=0.8, top_p=0.95, seed=i, model=(model, tok))
        for i, p in enumerate((PROMPTS * (1 + args.samples // len(PROMPTS)))[: args.samples])
    ]
    gen_share, gen_spans = span_share(exact, samples)
    human_share, human_spans = span_share(exact, texts, exclude_self=True)

    # Trace latency for 1 KB snippets.
    excerpt = next(d.text for d in bundle.iter_docs() if len(d.text) > 4000)[1000:2000]
    generated = "".join(samples)[:1000]
    rng = random.Random(0)
    noise = "".join(rng.choice(string.ascii_letters + string.digits + " \n") for _ in range(1000))
    latency = {}
    for name, text in (("corpus_excerpt", excerpt), ("generated", generated), ("random", noise)):
        trace(bundle, text)  # warm the page cache
        ms = []
        for _ in range(5):
            t = time.perf_counter()
            result = trace(bundle, text)
            ms.append((time.perf_counter() - t) * 1e3)
        latency[name] = {"p50_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1),
                         "spans": len(result.spans), "coverage": round(result.coverage, 3)}

    print(json.dumps({
        "bench": "model",
        "model": {k: info[k] for k in ("architecture", "parameters", "vocab_size", "context", "multi_query")},
        "device": str(device),
        "threads": args.threads,
        "training": training_figures(Path(args.model) if args.model else default_model_path()),
        "corpus_docs": len(bundle),
        "corpus_bytes": bundle.manifest["counts"]["text_bytes"],
        **ppl,
        "ppl_seconds": round(ppl_seconds, 1),
        "gen_tokens_per_s": round(args.new_tokens / gen_seconds, 1),
        "gen_samples": len(samples),
        "gen_50char_spans": gen_spans,
        "gen_50char_share_in_corpus": round(gen_share, 3),
        "heldout_human_50char_spans": human_spans,
        "heldout_human_50char_share_in_corpus": round(human_share, 3),
        "trace_1kb": latency,
        "trace_goal_ms": 200,
        "trace_goal_met": all(v["p50_ms"] <= 200 for v in latency.values()),
        "sample": samples[0][:300],
    }))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
