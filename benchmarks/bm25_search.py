"""BM25 search: Spacerini's exact scorer vs bm25s and vs raw pyserini LuceneSearcher.

Prints one JSON line with:

* batch QPS of ours (``BM25Searcher.batch_search``), bm25s (``BM25.retrieve``, query tokenization
  included) and pyserini ``LuceneSearcher.batch_search``, same queries, same k, same threads,
  and the ratios ours/peer (goal: >= 1 against bm25s);
* single-query latency p50/p95 of ``BM25Searcher.search(q, k=10)`` (goal: p50 <= 5 ms);
* RSS growth over 10,000 queries after 1,000 warm-up queries (goal: <= 5 %);
* how many queries' top-10 differ from LuceneSearcher's (docids and scores; goal: 0).

bm25s runs with its default tokenizer, English stopwords and no stemmer (PyStemmer is not
installed); ours uses Anserini's default English analyzer (Porter stemming + stopwords).

The default corpus is the one ``bm25_ingest.py`` writes (Python files of this machine). The
bundle is cached in ``benchmarks/out/bm25_bundle_<docs>`` between runs.

Usage: python benchmarks/bm25_search.py [--corpus FILE.jsonl] [--threads 2] [--queries 1000] [--k 10]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bm25_ingest import OUT, default_corpus, read_docs  # noqa: E402


def make_queries(corpus: Path, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Samples 1-4 words from random documents: realistic, always-matching code queries."""
    rng = random.Random(seed)
    texts = [json.loads(line)["contents"] for line in corpus.open(encoding="utf-8")]
    word = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
    queries: list[tuple[str, str]] = []
    while len(queries) < n:
        words = word.findall(rng.choice(texts)[:5000])
        if not words:
            continue
        queries.append((f"q{len(queries)}", " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))))
    return queries


def open_ours(corpus: Path, threads: int):
    import shutil

    from spacerini.backends import bm25

    root = OUT / f"bm25_bundle_{corpus.stem}"
    folder = root / "lucene"
    report_path = root / "report.json"
    if not report_path.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        report = bm25.build(lambda: read_docs(corpus), folder, threads=threads, progress=False)
        report_path.write_text(json.dumps(report.to_dict()), encoding="utf-8")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return folder, bm25.open(folder, report)


def latencies_ms(search, texts: list[str]) -> list[float]:
    """Times ``search(text)`` for each text, one at a time; returns sorted milliseconds."""
    out = []
    for text in texts:
        start = time.perf_counter()
        search(text)
        out.append((time.perf_counter() - start) * 1000)
    return sorted(out)


def time_batch(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--max-docs", type=int, default=11000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rss-queries", type=int, default=10000)
    args = parser.parse_args()
    corpus = args.corpus or default_corpus(args.max_docs)
    queries = make_queries(corpus, args.queries)
    result: dict = {"benchmark": "bm25_search", "corpus": str(corpus), "threads": args.threads, "k": args.k}
    result["queries"] = len(queries)

    from spacerini.java import ensure_jvm

    ensure_jvm()
    folder, ours = open_ours(corpus, args.threads)
    result["docs"] = ours._exact.rows

    # -- ours: batch and single-query latency ----------------------------------------------------
    ours.batch_search(queries[:50], k=args.k, threads=args.threads)  # warm-up
    ours_s = time_batch(lambda: ours.batch_search(queries, k=args.k, threads=args.threads), repeat=2)
    ours_1t = time_batch(lambda: ours.batch_search(queries, k=args.k, threads=1), repeat=1)
    ours_1000 = time_batch(lambda: ours.batch_search(queries, k=1000, threads=args.threads), repeat=1)
    pairs_k = time_batch(lambda: ours.batch_search_pairs(queries, k=args.k, threads=args.threads), repeat=2)
    pairs_1000 = time_batch(lambda: ours.batch_search_pairs(queries, k=1000, threads=args.threads), repeat=1)
    lat = latencies_ms(lambda text: ours.search(text, k=10), [t for _, t in queries])
    result.update(
        {
            "ours_qps": round(len(queries) / ours_s, 1),
            "ours_qps_1thread": round(len(queries) / ours_1t, 1),
            "ours_qps_k1000": round(len(queries) / ours_1000, 1),
            "ours_pairs_qps": round(len(queries) / pairs_k, 1),
            "ours_pairs_qps_k1000": round(len(queries) / pairs_1000, 1),
            "ours_p50_ms": round(statistics.median(lat), 3),
            "ours_p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 3),
        }
    )

    # -- pyserini LuceneSearcher -----------------------------------------------------------------
    from pyserini.search.lucene import LuceneSearcher

    lucene = LuceneSearcher(str(folder))
    qtexts, qids = [t for _, t in queries], [q for q, _ in queries]
    lucene.batch_search(qtexts[:50], qids[:50], k=args.k, threads=args.threads)
    lucene_s = time_batch(lambda: lucene.batch_search(qtexts, qids, k=args.k, threads=args.threads))
    theirs = lucene.batch_search(qtexts, qids, k=10, threads=args.threads)
    mine = ours.batch_search(queries, k=10, threads=args.threads)
    mismatches = sum(
        1
        for qid in qids
        if [(h.docid, round(h.score, 4)) for h in mine[qid]]
        != [(h.docid, round(h.score, 4)) for h in theirs[qid]]
    )
    lucene_lat = latencies_ms(lambda text: lucene.search(text, k=10), qtexts[:300])
    lucene.close()
    result.update(
        {
            "lucene_qps": round(len(queries) / lucene_s, 1),
            "lucene_p50_ms": round(statistics.median(lucene_lat), 3),
            "ratio_vs_lucene": round(lucene_s / ours_s, 2),
            "top10_mismatches_vs_lucene": mismatches,
        }
    )

    # -- bm25s -------------------------------------------------------------------------------------
    import bm25s

    texts = [d.text for d in read_docs(corpus)]
    start = time.perf_counter()
    corpus_tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
    retriever = bm25s.BM25(k1=0.9, b=0.4)
    retriever.index(corpus_tokens, show_progress=False)
    result["bm25s_index_s"] = round(time.perf_counter() - start, 2)
    del texts, corpus_tokens
    gc.collect()

    def bm25s_batch(k: int) -> None:
        tokens = bm25s.tokenize(qtexts, stopwords="en", show_progress=False)
        retriever.retrieve(tokens, k=k, n_threads=args.threads, show_progress=False)

    bm25s_batch(args.k)
    bm25s_s = time_batch(lambda: bm25s_batch(args.k), repeat=2)
    bm25s_1000 = time_batch(lambda: bm25s_batch(1000), repeat=1)
    result.update(
        {
            "bm25s_qps": round(len(queries) / bm25s_s, 1),
            "bm25s_qps_k1000": round(len(queries) / bm25s_1000, 1),
            "ratio_vs_bm25s": round(bm25s_s / ours_s, 2),
            "ratio_vs_bm25s_k1000": round(bm25s_1000 / ours_1000, 2),
            "ratio_pairs_vs_bm25s": round(bm25s_s / pairs_k, 2),
            "ratio_pairs_vs_bm25s_k1000": round(bm25s_1000 / pairs_1000, 2),
            "bm25s_setup": "default tokenizer, stopwords=en, no stemmer, k1=0.9 b=0.4",
        }
    )
    retriever = None  # noqa: F841 - frees bm25s before the memory test
    gc.collect()

    # -- memory over 10,000 queries -----------------------------------------------------------------
    import psutil

    proc = psutil.Process()
    for i in range(1000):
        ours.search(queries[i % len(queries)][1], k=10)
    gc.collect()
    before = proc.memory_info().rss
    for i in range(args.rss_queries):
        ours.search(queries[i % len(queries)][1], k=10)
    gc.collect()
    after = proc.memory_info().rss
    result.update(
        {
            "rss_before_mb": round(before / 2**20, 1),
            "rss_after_mb": round(after / 2**20, 1),
            "rss_growth_pct": round(100 * (after - before) / before, 2),
        }
    )
    ours.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
