"""Sharded BM25 search: 8 shards (global statistics) vs 1 shard, same corpus, same queries.

Prints one JSON line with, for 1 and 8 shards (``open_shards``) and for the plain unsharded
searcher (``bm25.open`` on the 1-shard folder), one thread each, best of ``--repeat`` interleaved runs:

* batch QPS of ``batch_search`` (hits) at k=10 and of ``batch_search_pairs`` (TREC runs) at k=1000;
* single-query QPS of ``search(q, k=10)`` one query at a time;
* the ratios 8 shards / 1 shard (``_ratio``; goal: >= 0.8) and 8 shards / plain (``_ratio_plain``);
* the time ``open_shards`` takes (global statistics are summed there);
* whether every answer of the 8 shards equals the 1 shard's (docids, order and float scores; it must).

The corpus: paragraphs (blocks between blank lines) of the Python standard library's ``.py``
files, read in sorted path order from this interpreter's stdlib (deterministic), ids
``path#n``; or the first ``--docs`` documents of ``--corpus`` (any corpus ``spacerini index``
reads, with its ``--format``, ``--id-field`` and ``--fields``). Shards are contiguous ranges of
those documents, as a bundle cuts its docstore. The indexes are cached in
``benchmarks/out/bm25_shards_<docs>/`` between runs.

Usage: python benchmarks/bm25_shards_bench.py [--docs 50000] [--shards 8] [--queries 1000] [--repeat 3]
       [--corpus PATH [--format FMT] [--id-field NAME] [--fields NAME,...]]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_queries import add_corpus_args, sample_queries  # noqa: E402

from spacerini.records import Doc  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out
_BLANK = re.compile(r"\n[ \t]*\n")


def stdlib_paragraphs(limit: int) -> list[Doc]:
    """The first ``limit`` paragraphs (at least 40 characters) of the stdlib's ``.py`` files, sorted by path."""
    from preprocess_bench import stdlib_sources

    docs: list[Doc] = []
    for rel, text in stdlib_sources():
        for n, para in enumerate(_BLANK.split(text)):
            if len(para.strip()) >= 40:
                docs.append(Doc(f"{rel}#{n}", para))
                if len(docs) >= limit:
                    return docs
    return docs


def corpus_docs(source: str, limit: int, *, format: str | None, id_field: str | None, fields: str | None) -> list[Doc]:
    """The first ``limit`` documents of any corpus ``spacerini index`` reads (``format``,
    ``id_field`` and ``fields`` as its ``--format``, ``--id-field`` and ``--fields``).

    Raises:
        SystemExit: The corpus cannot be read (the library's error, on one line), or has fewer
            documents than shards are asked for.
    """
    import itertools

    from spacerini.corpus import load_corpus
    from spacerini.errors import SpaceriniError

    try:
        return list(itertools.islice(load_corpus(source, format=format, id_field=id_field, fields=fields, progress=False), limit))
    except SpaceriniError as exc:
        raise SystemExit(str(exc)) from None


def cache_root(source: str | None, docs: list[Doc]) -> Path:
    """The folder the indexes of ``docs`` are cached in: by count for the stdlib paragraphs; by
    location and count for ``--corpus``, emptied when the file has changed since."""
    if source is None:
        return OUT / f"bm25_shards_{len(docs)}"
    import hashlib

    where = str(Path(source).resolve()) if Path(source).exists() else source
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).stem if Path(source).exists() else source)
    root = OUT / f"bm25_shards_{stem}-{hashlib.sha256(where.encode()).hexdigest()[:8]}_{len(docs)}"
    stamp = {"path": where, "first": docs[0].id, "last": docs[-1].id}
    if Path(source).exists():
        stamp.update(bytes=Path(source).stat().st_size, mtime_ns=Path(source).stat().st_mtime_ns)
    if not (root / "source.json").exists() or json.loads((root / "source.json").read_text()) != stamp:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        (root / "source.json").write_text(json.dumps(stamp))
    return root


def make_queries(docs: list[Doc], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """1-4 words sampled from random paragraphs: queries that always match something."""
    return [(f"q{i}", q) for i, q in enumerate(sample_queries([d.text for d in docs], n, seed=seed))]


def build_shards(docs: list[Doc], root: Path, parts: int) -> tuple[list[Path], list[dict]]:
    """Builds (or reuses) ``parts`` contiguous shards of ``docs`` under ``root``."""
    from spacerini.backends import bm25

    done = root / "reports.json"
    cuts = [round(i * len(docs) / parts) for i in range(parts + 1)]
    folders = [root / f"shard{i:02d}" for i in range(parts)]
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        reports = []
        for folder, a, b in zip(folders, cuts[:-1], cuts[1:], strict=True):
            chunk = docs[a:b]
            report = bm25.build(lambda chunk=chunk: iter(chunk), folder, threads=1, progress=False)
            reports.append(report.to_dict())
        done.write_text(json.dumps(reports), encoding="utf-8")
    return folders, json.loads(done.read_text(encoding="utf-8"))


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(searcher, queries: list[tuple[str, str]], repeat: int) -> dict[str, float]:
    texts = [t for _, t in queries]
    searcher.batch_search(queries[:50], k=10)  # warm-up: id lists, term caches
    batch10 = best_of(lambda: searcher.batch_search(queries, k=10, threads=1), repeat)
    pairs1000 = best_of(lambda: searcher.batch_search_pairs(queries, k=1000, threads=1), repeat)
    single = best_of(lambda: [searcher.search(t, k=10) for t in texts], repeat)
    return {
        "batch_k10_qps": round(len(queries) / batch10, 1),
        "pairs_k1000_qps": round(len(queries) / pairs1000, 1),
        "search_k10_qps": round(len(queries) / single, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    add_corpus_args(parser, "any corpus spacerini index reads (JSONL, Parquet, CSV, a folder, hf:NAME): its first --docs documents, instead of stdlib paragraphs")
    args = parser.parse_args()

    from spacerini.backends import bm25
    from spacerini.java import ensure_jvm

    ensure_jvm()
    if args.corpus is None:
        docs = stdlib_paragraphs(args.docs)
    else:
        docs = corpus_docs(args.corpus, args.docs, format=args.format, id_field=args.id_field, fields=args.fields)
    if len(docs) < args.shards:
        raise SystemExit(f"{len(docs)} documents: fewer than --shards {args.shards}")
    queries = make_queries(docs, args.queries)
    root = cache_root(args.corpus, docs)
    one = build_shards(docs, root / "1", 1)
    many = build_shards(docs, root / str(args.shards), args.shards)
    del docs
    result: dict = {
        "benchmark": "bm25_shards",
        "corpus": args.corpus or "stdlib paragraphs",
        "docs": sum(r["docs"] for r in one[1]),
        "queries": len(queries),
    }
    result["shards"] = args.shards

    plain = bm25.open(one[0][0], one[1][0])
    started = time.perf_counter()
    single = bm25.open_shards(*one)
    result["open_s_1"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    sharded = bm25.open_shards(*many)
    result[f"open_s_{args.shards}"] = round(time.perf_counter() - started, 3)
    try:
        want = plain.batch_search_pairs(queries, k=1000)
        same = (
            sharded.batch_search_pairs(queries, k=1000) == want == single.batch_search_pairs(queries, k=1000)
        )
        same = same and all(sharded.search(t, k=10) == plain.search(t, k=10) for _, t in queries[:200])
        result["identical"] = same
        # Interleaved, so that the shared machine's load hits all three alike.
        runs = {"plain": [], "1": [], str(args.shards): []}
        for _ in range(args.repeat):
            for name, searcher in (("plain", plain), ("1", single), (str(args.shards), sharded)):
                runs[name].append(measure(searcher, queries, 1))
    finally:
        sharded.close()
        single.close()
        plain.close()
    best = {name: {key: max(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()}
    for key in best["1"]:
        result[f"{key}_plain"] = best["plain"][key]
        result[f"{key}_1"] = best["1"][key]
        result[f"{key}_{args.shards}"] = best[str(args.shards)][key]
        result[f"{key}_ratio"] = round(best[str(args.shards)][key] / best["1"][key], 3)
        result[f"{key}_ratio_plain"] = round(best[str(args.shards)][key] / best["plain"][key], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
