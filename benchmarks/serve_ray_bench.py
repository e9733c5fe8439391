"""Serving a sharded bundle from Ray actors (``--engine ray``) vs in this process (``--engine local``).

Prints one JSON line with, for the same N-shard bundle (bm25 + exact) opened both ways, medians of
``--repeat`` interleaved runs:

* single-query QPS of ``Bundle.search(q, k=10, snippets=False)``, one query at a time (what the app
  does per request, less the snippets, which are cut in this process either way);
* batch QPS of ``Bundle.batch_search_pairs`` at k=1000 (a TREC run);
* single-query QPS of the exact backend's ``count``;
* the ratios ray / local (``_ratio``);
* seconds to open the Ray-served bundle's searchers (Ray start excluded, actors and global
  statistics included);
* whether every answer is identical (docids, order, float scores, counts; it must be).

The corpus: paragraphs of the Python standard library (``bm25_shards_bench.stdlib_paragraphs``),
cached in ``benchmarks/out/serve_ray_<docs>_<shards>/``. Ray starts embedded with this machine's CPUs.

Usage: python benchmarks/serve_ray_bench.py [--docs 20000] [--shards 8] [--queries 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bm25_shards_bench import make_queries, stdlib_paragraphs  # noqa: E402

from spacerini.bundle import build_bundle, open_bundle  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out


def _qps(fn: Any, items: list[Any]) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    docs = stdlib_paragraphs(args.docs)
    path = OUT / f"serve_ray_{len(docs)}_{args.shards}"
    if not path.is_dir():
        build_bundle(docs, path, backends=["bm25", "exact"], shards=args.shards, progress=False).close()
    queries = make_queries(docs, args.queries)
    needles = [text.split()[0] for _, text in queries]
    local = open_bundle(path)
    served = open_bundle(path, engine="ray")
    started = time.perf_counter()
    served.searcher("bm25")
    served.searcher("exact")
    open_s = time.perf_counter() - started
    local.searcher("bm25")
    local.searcher("exact")
    same = all(
        served.search(text, k=10, snippets=False) == local.search(text, k=10, snippets=False) for _, text in queries
    )
    same = same and served.batch_search_pairs(queries, k=1000) == local.batch_search_pairs(queries, k=1000)
    same = same and all(served.searcher("exact").count(n) == local.searcher("exact").count(n) for n in needles)
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for name, bundle in (("local", local), ("ray", served)):
            runs.setdefault(f"{name}_search_k10_qps", []).append(
                _qps(lambda q, b=bundle: b.search(q[1], k=10, snippets=False), queries)
            )
            started = time.perf_counter()
            bundle.batch_search_pairs(queries, k=1000)
            runs.setdefault(f"{name}_batch_k1000_qps", []).append(len(queries) / (time.perf_counter() - started))
            exact = bundle.searcher("exact")
            runs.setdefault(f"{name}_exact_count_qps", []).append(_qps(exact.count, needles))
    result: dict[str, Any] = {"docs": len(docs), "shards": args.shards, "queries": len(queries), "repeat": args.repeat}
    for key, values in runs.items():
        result[key] = round(statistics.median(values), 1)
    for what in ("search_k10_qps", "batch_k1000_qps", "exact_count_qps"):
        result[f"{what}_ratio"] = round(result[f"ray_{what}"] / result[f"local_{what}"], 3)
    result["ray_open_s"] = round(open_s, 2)
    result["identical"] = same
    served.close()
    local.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
