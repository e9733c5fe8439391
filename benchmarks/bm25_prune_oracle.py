"""How much of a query's postings exact block-max pruning must still read, with a perfect threshold.

For each query, the final ``k``-th best score (``theta``, from the exact scores) is known in
advance, as if the heap had been full of the right rows from the start. Each term's postings are
cut into blocks of ``--block`` postings; the rows are cut into windows wherever a block of any
query term ends (so each term has one block per window, as in the kernel's finest windows). A
posting must be read if its window's bound (the sum of the block maxima of the terms present
there) is ``>= theta`` ("live") and, for MaxScore, if its term is essential (the terms of
smallest maxima whose maxima sum below ``theta`` are not). The fraction of postings both live and
essential is a lower bound on what block-max MaxScore reads; the benchmark compares it between
the Debian sidecar and its ``--scale`` copies (``bm25_search.py`` builds both).

Usage: python benchmarks/bm25_prune_oracle.py [--docs 100000] [--scale 4] [--queries 300] [--k 10,1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def oracle(scorer, queries: list[list[tuple[str, int]]], k: int, block: int) -> dict:
    """Postings in all, live, essential, and live and essential, for ``queries`` at ``k``."""
    total = live_n = ess_n = both_n = 0
    for counts in queries:
        spans = []
        for term, count in counts:
            tid = scorer.term_id(term)
            if tid >= 0 and scorer.offsets[tid + 1] > scorer.offsets[tid]:
                a, b = int(scorer.offsets[tid]), int(scorer.offsets[tid + 1])
                spans.append((np.asarray(scorer.docs[a:b]), scorer.term_scores(tid, a, b, count)))
        if not spans:
            continue
        _, raw = scorer.score(counts)
        size = sum(d.size for d, _ in spans)
        total += size
        if raw.size <= k:  # everything is read
            live_n, ess_n, both_n = live_n + size, ess_n + size, both_n + size
            continue
        theta = np.sort(raw)[-k]
        blocks = []
        cuts: set[int] = set()
        for docs, scores in spans:
            starts = np.arange(0, docs.size, block)
            last = docs[np.minimum(starts + block, docs.size) - 1]
            blocks.append((last, np.maximum.reduceat(scores, starts)))
            cuts.update((last + 1).tolist())
        ends = np.array(sorted(cuts))
        begins = np.concatenate([[0], ends[:-1]])
        bound = np.zeros(ends.size)
        for (docs, _), (last, maxima) in zip(spans, blocks, strict=True):
            j = np.minimum(np.searchsorted(last, begins), last.size - 1)
            present = np.searchsorted(docs, ends) > np.searchsorted(docs, begins)
            bound += np.where(present, maxima[j], 0.0)
        top = np.array([scores.max() for _, scores in spans])
        order = np.argsort(top)
        non_essential = set(order[: int(np.searchsorted(np.cumsum(top[order]), theta, side="left"))].tolist())
        for i, (docs, _) in enumerate(spans):
            live = int((bound[np.searchsorted(ends, docs, side="right")] >= theta).sum())
            live_n += live
            if i not in non_essential:
                ess_n += docs.size
                both_n += live
    return {
        "postings": total,
        "live": round(live_n / total, 3),
        "essential": round(ess_n / total, 3),
        "live_and_essential": round(both_n / total, 3),
        "live_and_essential_postings": both_n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", default="10,1000")
    parser.add_argument("--block", type=int, default=64)
    args = parser.parse_args()

    import bm25_search as bs
    from debian_corpus import build

    from spacerini.backends.bm25.scorer import ExactScorer
    from spacerini.java import ensure_jvm

    ensure_jvm()
    corpus = build(args.docs)
    queries = bs.make_queries(corpus, args.queries)
    _, ours = bs.open_ours(corpus)
    counts = ours._analyze_many([t for _, t in queries])
    src = ours.sidecar_dir
    dst = bs.OUT / f"bm25_sidecar_{src.parent.parent.name}_x{args.scale}"
    bs.replicate_sidecar(src, dst, args.scale)
    out: dict = {"benchmark": "bm25_prune_oracle", "argv": sys.argv[1:], "results": []}
    for k in map(int, args.k.split(",")):
        row: dict = {"k": k}
        for name, folder in (("small", src), ("big", dst)):
            row[name] = oracle(ExactScorer(folder), counts, k, args.block)
        row["live_and_essential_big_vs_small"] = round(
            row["big"]["live_and_essential_postings"] / row["small"]["live_and_essential_postings"], 2
        )
        out["results"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    ours.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
