"""BM25 kernel cost as a corpus grows with *different* documents: the first 1/``--parts`` of Debian 100k vs all.

``bm25_search.py --scale`` repeats every document; here the small corpus is the first
``docs / parts`` rows of the same Debian sidecar (its own statistics, written as a sidecar of
its own), so growing it adds new documents, as a real collection grows. Both are ranked with the
same analyzed queries (1,000; 300 at k=1000), pruned (the default policy) and with pruning off,
interleaved, medians of ``--repeats``; CPU time of ``ExactScorer.rank_arrays`` in chunks of 512
queries (the kernel and its Python set-up, not the analysis). Also the oracle of
``bm25_prune_oracle.py`` (postings block-max MaxScore must read with the final threshold known).

Usage: python benchmarks/bm25_natural_growth.py [--docs 100000] [--parts 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def subset_sidecar(src: Path, dst: Path, rows: int) -> Path:
    """Writes (once) the sidecar of ``src``'s first ``rows`` rows, with their own statistics."""
    from spacerini.backends.bm25 import lucene as jl
    from spacerini.backends.bm25.scorer import FORMAT_VERSION, ExactScorer, decode_tfs, write_sidecar

    meta = dst / "meta.json"
    if meta.exists() and json.loads(meta.read_text(encoding="utf-8")).get("format") == FORMAT_VERSION:
        return dst
    ex = ExactScorer(src)
    offsets = np.asarray(ex.offsets)
    dfs = np.diff(offsets)
    docs = np.asarray(ex.docs)
    tfs = decode_tfs(np.asarray(ex.tfs), 0, ex.tf_exc_pos, ex.tf_exc, ex.tf_escape)
    tids = np.repeat(np.arange(dfs.size, dtype=np.int32), dfs)
    keep = docs < rows
    write_sidecar(
        dst, k1=float(ex.meta["k1"]), b=float(ex.meta["b"]), ids=[ex._ids[i] for i in range(rows)],
        lengths=np.load(src / "lengths.npy")[:rows], terms=[ex._terms[t] for t in range(dfs.size)],
        tids=tids[keep], tfs=tfs[keep], rows=docs[keep], log=jl.java_log(),
    )  # fmt: skip
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--oracle-queries", type=int, default=300)
    args = parser.parse_args()

    import bm25_search as bs
    from bm25_prune_oracle import oracle
    from debian_corpus import build

    from spacerini.backends.bm25.scorer import ExactScorer
    from spacerini.java import ensure_jvm

    ensure_jvm()
    corpus = build(args.docs)
    queries = bs.make_queries(corpus, 1000)
    _, ours = bs.open_ours(corpus)
    counts = ours._analyze_many([t for _, t in queries])
    src = ours.sidecar_dir
    rows = ours._exact.rows // args.parts
    small = ExactScorer(
        subset_sidecar(src, bs.OUT / f"bm25_sidecar_{src.parent.parent.name}_first{rows}", rows)
    )
    big = ExactScorer(src)
    ours.close()
    out: dict = {"benchmark": "bm25_natural_growth", "argv": sys.argv[1:], "docs": [small.rows, big.rows]}
    out["load_before"] = os.getloadavg()

    def run(scorer: ExactScorer, qs: list, k: int, prune: bool) -> float:
        scorer.prune = prune
        gc.collect()
        started = time.thread_time()
        for i in range(0, len(qs), 512):
            scorer.rank_arrays(qs[i : i + 512], k)
        return time.thread_time() - started

    rows_out = []
    for k in bs.KS:
        qs = counts[:300] if k == 1000 else counts
        for scorer in (small, big):
            for prune in (True, False):
                run(scorer, qs[:100], k, prune)  # warm: compiled code, block table, scores
        times: dict[str, list[float]] = {}
        for r in range(args.repeats):
            order = [("small", small), ("big", big)]
            for name, scorer in order if r % 2 == 0 else order[::-1]:
                for prune in (True, False) if r % 2 == 0 else (False, True):
                    times.setdefault(f"{name}_{'pruned' if prune else 'exhaustive'}", []).append(
                        run(scorer, qs, k, prune)
                    )
        us = {key: round(statistics.median(v) / len(qs) * 1e6, 1) for key, v in times.items()}
        row = {"k": k, "cpu_us_per_query": us}
        row["big_vs_small_pruned"] = round(us["small_pruned"] / us["big_pruned"], 2)
        row["big_vs_small_exhaustive"] = round(us["small_exhaustive"] / us["big_exhaustive"], 2)
        rows_out.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out["cpu"] = rows_out
    out["oracle"] = []
    for k in bs.KS:
        row = {"k": k}
        for name, scorer in (("small", small), ("big", big)):
            row[name] = oracle(scorer, counts[: args.oracle_queries], k, 64)
        row["needed_big_vs_small"] = round(
            row["big"]["live_and_essential_postings"] / row["small"]["live_and_essential_postings"], 2
        )
        out["oracle"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
