"""Snippets on a code-analyzer bundle: how many show a match, and their cost per page, with and
without the scan past the first window that non-English analyzers now get.

Builds (once) a bm25 bundle of this interpreter's standard-library ``.py`` files with the
``code`` analyzer (``benchmarks/out/bm25_stdlib.jsonl``, as ``bm25_search.py`` writes it), draws
``--queries`` queries of 1-3 identifiers from random files, and for each query's top 10 renders
the ten snippets twice, alternating the order: ``new`` is the shipped code; ``old`` is what the
window was before (the document's first 2,500 characters, matched or not), by giving the
searcher the English path with no key prefixes, as the code analyzer had. Prints p50 / p99 / mean ms per page and
the snippets that show a match.

Usage: python benchmarks/snippet_code_bench.py [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    from bench_queries import sample_queries
    from bm25_search import python_corpus

    from spacerini.bundle import build_bundle, open_bundle

    corpus = python_corpus()
    out = HERE / "out" / "snippet_code_bundle"
    if not (out / "spacerini.json").exists():
        build_bundle(corpus, out, backends=["bm25"], fields=["contents"], progress=False,
                     backend_params={"bm25": {"analyzer": "code"}})  # fmt: skip
    bundle = open_bundle(out)
    searcher = bundle.searcher("bm25")
    texts = [json.loads(line)["contents"][:5000] for line in corpus.open(encoding="utf-8")]
    queries = sample_queries(texts, args.queries, max_words=3, source=str(corpus))
    cls = type(searcher)
    shipped_query, shipped_exact = cls._snippet_query, cls._exact_prefixes

    def old_query(self, query):  # the code analyzer had no keys
        return shipped_query(self, query)[0], None

    modes = {"new": (shipped_query, shipped_exact), "old": (old_query, property(lambda self: True))}
    times: dict[str, list[float]] = {"old": [], "new": []}
    marked = {"old": 0, "new": 0}
    shown = 0
    print(f"load average before: {os.getloadavg()}")
    for i, query in enumerate(queries):
        docs = [bundle.doc(hit.docid).text for hit in searcher.search(query, k=10)]
        for mode in ("new", "old") if i % 2 == 0 else ("old", "new"):
            cls._snippet_query, cls._exact_prefixes = modes[mode]
            start = time.perf_counter()
            snippets = [searcher.snippet(query, text, width=300) for text in docs]
            times[mode].append(time.perf_counter() - start)
            marked[mode] += sum("<mark>" in s for s in snippets)
        shown += len(docs)
    cls._snippet_query, cls._exact_prefixes = modes["new"]
    for mode, values in times.items():
        values = sorted(values)
        print(
            f"{mode}: p50 {statistics.median(values) * 1e3:.2f} ms a page, p99 {values[int(0.99 * len(values))] * 1e3:.2f},"
            f" mean {statistics.mean(values) * 1e3:.2f}; snippets showing a match {marked[mode]:,} of {shown:,}"
        )
    print(f"load average after: {os.getloadavg()}")
    bundle.close()


if __name__ == "__main__":
    main()
