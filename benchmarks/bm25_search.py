"""Batch BM25 search: Spacerini's compiled kernel vs bm25s (numba) and vs a warm, batched LuceneSearcher.

Prints one JSON object (and writes it to ``benchmarks/out/bm25_search.json``) with, per corpus:

* QPS of ours (``BM25Searcher.batch_search_arrays``: row numbers and scores as arrays, the path of
  ``spacerini search --queries``, as bm25s returns index arrays; ``batch_search_pairs``, which
  builds ``(docid, score)`` tuples; and ``batch_search``, which builds ``Hit`` objects), of bm25s
  (``BM25(backend="numba")``, query tokenization included) and of pyserini's
  ``LuceneSearcher.batch_search`` (warm JVM), at k = 10,
  100 and 1000, with 1 and 2 threads; the peers run interleaved (the order rotates), each figure is
  the median of ``--repeats`` runs, and the ratios ours/peer come from those medians;
* how many queries' rankings differ from LuceneSearcher's (docids and scores; all queries at k=10,
  the k=1000 query set at k=1000);
* the size of the sidecar against that of the Lucene index it sits in;
* the QPS of ours (arrays) at 1x and at ``--scale``x the documents (the Debian corpus repeated, ids
  perturbed: every term's postings grow ``--scale`` times), interleaved, to show how the work per
  query grows with the corpus; the same with the kernel's block-max pruning off (every posting
  scored), and the block table's cost.

The peers at their best:

* **bm25s** ``BM25(k1=0.9, b=0.4, backend="numba")``, PyStemmer's Porter stemmer (the algorithm of
  Lucene's ``PorterStemFilter``) and Lucene's 33 English stopwords (those of Anserini's default
  analyzer), warmed up (numba compiled) before timing; ``retrieve(..., n_threads=threads)``.
* **LuceneSearcher** on our bundle's own Lucene index (same analysis, same scores), warmed up;
  ``batch_search(..., threads=threads)``.

Corpora: (a) ``--docs`` paragraphs of Debian documentation and man pages
(``benchmarks/debian_corpus.py``), (b) this interpreter's standard-library ``.py`` files
(``preprocess_bench.stdlib_sources``), or any JSONL file with ``id`` and ``contents`` named in
``--corpora``, all with the ``"en"`` analyzer (the same words as bm25s sees). Queries: 1-4 words sampled from random documents. Bundles are cached in
``benchmarks/out/``.

Usage: python benchmarks/bm25_search.py [--docs 100000] [--queries 1000] [--k1000-queries 300]
       [--repeats 3] [--scale 4] [--corpora debian,python,FILE.jsonl] [--no-lucene-timing] [--scaling-only]
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_queries import sample_queries  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out

os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini builds an OpenAI client at import
os.environ.setdefault("SPACERINI_JVM_HEAP", "6g")  # LuceneSearcher's k=1000 hits carry whole documents

#: Lucene's ``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`` (Anserini's default English analyzer).
LUCENE_STOPWORDS = (
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with"
).split()
KS = (10, 100, 1000)
THREADS = (1, 2)


def read_records(path: Path) -> Iterator[tuple[str, str]]:
    """The ``(id, contents)`` of each JSON line of ``path``.

    Raises:
        SystemExit: A line is not a JSON object with ``id`` and a string ``contents`` (one line
            saying where).
    """
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                doc_id, text = record["id"], record["contents"]
            except (ValueError, KeyError, TypeError) as exc:
                raise SystemExit(
                    f"{path}:{number}: not a JSON object with id and contents ({type(exc).__name__}: {exc})"
                ) from None
            if not isinstance(text, str):
                raise SystemExit(f"{path}:{number}: contents is not a string")
            yield str(doc_id), text


def read_docs(path: Path) -> Iterator:
    """The ``{"id", "contents"}`` JSON lines of ``path`` as :class:`~spacerini.records.Doc`."""
    from spacerini.records import Doc

    for doc_id, text in read_records(path):
        yield Doc(id=doc_id, text=text)


def make_queries(corpus: Path, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Samples 1-4 words from random documents: realistic, always-matching queries."""
    texts = [text[:5000] for _, text in read_records(corpus)]
    return [(f"q{i}", q) for i, q in enumerate(sample_queries(texts, n, seed=seed, source=str(corpus)))]


def python_corpus() -> Path:
    """Writes (once) the standard library's ``.py`` files as JSONL ``{"id", "contents"}``."""
    from preprocess_bench import stdlib_sources

    path = OUT / "bm25_stdlib.jsonl"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for rel, text in stdlib_sources():
                out.write(json.dumps({"id": rel, "contents": text}, ensure_ascii=False) + "\n")
        tmp.rename(path)
    return path


def open_ours(corpus: Path):
    """Builds (once; again when its sidecar is of an older format) and opens the bm25 backend over
    ``corpus``; returns (lucene folder, searcher)."""
    import shutil

    from spacerini.backends import bm25
    from spacerini.backends.bm25.scorer import FORMAT_VERSION

    root = OUT / f"bm25_bundle_{corpus.stem}"
    source = None
    if not corpus.resolve().is_relative_to(OUT.resolve()):
        # A corpus from outside: its location names the bundle (two files of one name do not share
        # it), and its size and modification time say when the file has changed since the build.
        where = corpus.resolve()
        root = root.with_name(f"{root.name}-{hashlib.sha256(str(where).encode()).hexdigest()[:8]}")
        stat = where.stat()
        source = {"path": str(where), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    folder = root / "lucene"
    report_path = root / "report.json"
    source_path = root / "source.json"
    meta = folder / bm25.SIDECAR_DIR / "meta.json"
    if report_path.exists() and (
        not meta.exists()
        or json.loads(meta.read_text(encoding="utf-8")).get("format") != FORMAT_VERSION
        or (source is not None and (not source_path.exists() or json.loads(source_path.read_text()) != source))
    ):
        report_path.unlink()
    if not report_path.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        from spacerini.errors import SpaceriniError

        try:
            report = bm25.build(lambda: read_docs(corpus), folder, threads=2, progress=False)
        except SpaceriniError as exc:  # duplicate ids, say: one line, as the CLI says it
            raise SystemExit(f"{corpus}: {exc}") from None
        report_path.write_text(json.dumps(report.to_dict()), encoding="utf-8")
        if source is not None:
            source_path.write_text(json.dumps(source), encoding="utf-8")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return folder, bm25.open(folder, report)


def sizes(folder: Path) -> dict:
    """Bytes of the Lucene index (without the sidecar inside it) and of the sidecar."""
    from spacerini.backends import bm25

    side = folder / bm25.SIDECAR_DIR
    sidecar = sum(p.stat().st_size for p in side.rglob("*") if p.is_file())
    lucene = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) - sidecar
    postings = json.loads((side / "meta.json").read_text(encoding="utf-8"))["postings"]
    return {
        "lucene_bytes": lucene,
        "sidecar_bytes": sidecar,
        "sidecar_vs_lucene": round(sidecar / lucene, 3),
        "postings": postings,
        "sidecar_bytes_per_posting": round(sidecar / max(1, postings), 2),
    }


def replicate_sidecar(src: Path, dst: Path, copies: int) -> Path:
    """Writes (once) a sidecar of ``copies`` copies of ``src``'s rows (ids suffixed ``~c``)."""
    from spacerini.backends.bm25.scorer import FORMAT_VERSION, ExactScorer, decode_tfs, write_sidecar

    if (dst / "meta.json").exists():
        if json.loads((dst / "meta.json").read_text(encoding="utf-8")).get("format") == FORMAT_VERSION:
            return dst
        import shutil

        shutil.rmtree(dst)
    ex = ExactScorer(src)
    n, offsets = ex.rows, np.asarray(ex.offsets)
    dfs = np.diff(offsets)
    docs = np.asarray(ex.docs)
    tfs = decode_tfs(np.asarray(ex.tfs), 0, ex.tf_exc_pos, ex.tf_exc, ex.tf_escape)
    lengths = np.load(src / "lengths.npy")
    tid = np.repeat(np.arange(dfs.size, dtype=np.int64), dfs)
    within = np.arange(docs.size, dtype=np.int64) - offsets[tid]
    rows = np.empty(docs.size * copies, dtype=np.int32)
    new_tfs = np.empty(docs.size * copies, dtype=np.int32)
    for c in range(copies):  # each term's postings: copy 0, then copy 1, ...: rows stay ascending
        pos = offsets[tid] * copies + c * dfs[tid] + within
        rows[pos] = docs + c * n
        new_tfs[pos] = tfs
    ids = [ex._ids[i] for i in range(n)]
    all_ids = [i if c == 0 else i + f"~{c}".encode() for c in range(copies) for i in ids]
    terms = [ex._terms[t] for t in range(dfs.size)]
    from spacerini.backends.bm25 import lucene as jl

    write_sidecar(
        dst, k1=float(ex.meta["k1"]), b=float(ex.meta["b"]), ids=all_ids, lengths=np.tile(lengths, copies),
        terms=terms, tids=np.repeat(np.arange(dfs.size, dtype=np.int32), dfs * copies), tfs=new_tfs, rows=rows,
        log=jl.java_log(),
    )  # fmt: skip
    return dst


#: A timed measurement repeats its batch until this many seconds have passed (the same for every
#: side): one batch of 1,000 queries takes 8-10 ms on the Python corpus, where a single thread
#: wake-up or collector pause moved a median of three by 10-20 %.
MIN_SECONDS = 0.2


def timed(fn: Callable[[], object]) -> float:
    """Seconds per call of ``fn``, over as many calls as fill :data:`MIN_SECONDS` (one at least)."""
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_SECONDS:
            return elapsed / calls


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Runs every function ``repeats`` times, rotating their order; returns median seconds."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            times[name].append(timed(runs[name]))
            print(f"  {name}: {times[name][-1]:.5f} s a call", file=sys.stderr, flush=True)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_corpus(name: str, corpus: Path, args: argparse.Namespace) -> dict:
    import bm25s
    import Stemmer
    from pyserini.search.lucene import LuceneSearcher

    queries = make_queries(corpus, args.queries)
    q1000 = queries[: args.k1000_queries]
    lucene_q1000 = q1000[: args.lucene_k1000_queries]
    folder, ours = open_ours(corpus)
    where = corpus.resolve()
    out: dict = {"corpus": str(where.relative_to(ROOT) if where.is_relative_to(ROOT) else where), "docs": ours._exact.rows, "queries": len(queries),
                 "k1000_queries": len(q1000), "sizes": sizes(folder)}  # fmt: skip
    print(json.dumps({"corpus": name, "sizes": out["sizes"]}), file=sys.stderr, flush=True)
    # bm25s refuses a k above the corpus's size (ValueError): such a k is left out, and said so.
    ks = [k for k in KS if k <= out["docs"]]
    if len(ks) < len(KS):
        out["k_not_run"] = {"k": [k for k in KS if k not in ks], "why": "bm25s ranks at most the corpus's size"}
        print(f"{name}: {out['docs']} documents, so k = {out['k_not_run']['k']} is not run", file=sys.stderr)

    if args.scaling_only:
        if args.scale > 1 and name == "debian":
            out["scaling"] = bench_scaling(ours, queries, q1000, args)
        ours.close()
        return out

    lucene = LuceneSearcher(str(folder))
    lucene.set_bm25(0.9, 0.4)

    def lucene_run(qs: list[tuple[str, str]], k: int, threads: int) -> dict:
        # Each hit carries its stored document (pyserini's Result): at most 10,000 hits per call, or
        # the JVM's heap runs out on long documents and Anserini's batch fails.
        out: dict = {}
        step = max(threads, 10_000 // k)
        for i in range(0, len(qs), step):
            part = qs[i : i + step]
            out.update(lucene.batch_search([t for _, t in part], [q for q, _ in part], k=k, threads=threads))
        return out

    # Rankings against LuceneSearcher (docids and 4-decimal scores, as in a TREC run).
    def differs(mine: dict, theirs: dict) -> int:
        return sum(
            1
            for qid in mine
            if [(d, round(s, 4)) for d, s in mine[qid]] != [(h.docid, round(h.score, 4)) for h in theirs[qid]]
        )

    out["mismatches_vs_lucene_k10"] = differs(
        ours.batch_search_pairs(queries, k=10, threads=2), lucene_run(queries, 10, 2)
    )
    out["mismatches_vs_lucene_k1000"] = differs(
        ours.batch_search_pairs(lucene_q1000, k=1000, threads=2), lucene_run(lucene_q1000, 1000, 2)
    )
    out["lucene_k1000_queries"] = len(lucene_q1000)

    stemmer = Stemmer.Stemmer("porter")
    texts = [d.text for d in read_docs(corpus)]
    start = time.perf_counter()
    retriever = bm25s.BM25(k1=0.9, b=0.4, backend="numba")
    retriever.index(
        bm25s.tokenize(texts, stopwords=LUCENE_STOPWORDS, stemmer=stemmer, show_progress=False),
        show_progress=False, create_empty_token=True,
    )  # fmt: skip
    out["bm25s_index_s"] = round(time.perf_counter() - start, 2)
    del texts
    gc.collect()

    def bm25s_run(qs: list[tuple[str, str]], k: int, threads: int) -> object:
        tokens = bm25s.tokenize(
            [t for _, t in qs],
            stopwords=LUCENE_STOPWORDS,
            stemmer=stemmer,
            return_ids=False,
            show_progress=False,
        )
        return retriever.retrieve(tokens, k=k, n_threads=threads, show_progress=False)

    # The arrays path ranks exactly as the pairs path.
    arrays = ours.batch_search_arrays(queries, k=100, threads=2)
    out["arrays_equal_pairs_k100"] = arrays.pairs() == ours.batch_search_pairs(queries, k=100, threads=1)

    # Warm-up: JIT (numba in both), JVM, caches.
    for k in ks:
        for threads in THREADS:
            ours.batch_search_arrays(queries[:200], k=k, threads=threads)
            ours.batch_search_pairs(queries[:200], k=k, threads=threads)
            bm25s_run(queries[:200], k, threads)
            if args.time_lucene:
                lucene_run(queries[: 20 if k == 1000 else 200], k, threads)

    table = []
    for k in ks:
        qs = q1000 if k == 1000 else queries
        lq = lucene_q1000 if k == 1000 else queries
        for threads in THREADS:
            med = interleaved(
                {
                    "ours_arrays": lambda qs=qs, k=k, t=threads: ours.batch_search_arrays(qs, k=k, threads=t),
                    "ours_pairs": lambda qs=qs, k=k, t=threads: ours.batch_search_pairs(qs, k=k, threads=t),
                    "ours_hits": lambda qs=qs, k=k, t=threads: ours.batch_search(qs, k=k, threads=t),
                    "bm25s_numba": lambda qs=qs, k=k, t=threads: bm25s_run(qs, k, t),
                    **(
                        {"lucene": lambda qs=lq, k=k, t=threads: lucene_run(qs, k, t)}
                        if args.time_lucene
                        else {}
                    ),
                },
                args.repeats,
            )
            row = {"k": k, "threads": threads, "queries": len(qs), "lucene_queries": len(lq)}
            row.update(
                {f"{n}_qps": round((len(lq) if n == "lucene" else len(qs)) / s, 1) for n, s in med.items()}
            )
            row["arrays_vs_bm25s"] = round(row["ours_arrays_qps"] / row["bm25s_numba_qps"], 2)
            row["pairs_vs_bm25s"] = round(row["ours_pairs_qps"] / row["bm25s_numba_qps"], 2)
            row["hits_vs_bm25s"] = round(row["ours_hits_qps"] / row["bm25s_numba_qps"], 2)
            if args.time_lucene:
                row["pairs_vs_lucene"] = round(row["ours_pairs_qps"] / row["lucene_qps"], 2)
            table.append(row)
            print(json.dumps({"corpus": name, **row}), file=sys.stderr, flush=True)
    out["qps"] = table
    lucene.close()

    if args.scale > 1 and name == "debian":
        out["scaling"] = bench_scaling(ours, queries, q1000, args)
    ours.close()
    return out


def unpruned(searcher, qs: list[tuple[str, str]], k: int, threads: int) -> object:
    """``batch_search_arrays`` with the kernel's pruning off (every posting scored)."""
    searcher._exact.prune = False
    try:
        return searcher.batch_search_arrays(qs, k=k, threads=threads)
    finally:
        del searcher._exact.prune


def bench_scaling(ours, queries: list[tuple[str, str]], q1000: list[tuple[str, str]], args) -> dict:
    """QPS of the same queries on the corpus and on ``args.scale`` copies of it."""
    from spacerini.backends.bm25.scorer import ExactScorer

    src = ours.sidecar_dir
    dst = OUT / f"bm25_sidecar_{src.parent.parent.name}_x{args.scale}"
    replicate_sidecar(src, dst, args.scale)
    big = copy.copy(ours)  # same analyzer, the replicated postings
    big._exact = ExactScorer(dst)
    # The kernel's answer on the big sidecar equals the numpy reference's.
    counts = [big._count_terms(big.analyze(t)) for _, t in queries[:100]]
    want = (setattr(big._exact, "use_kernel", False), big._exact.rank_many(counts, 100))[1]
    del big._exact.use_kernel
    result: dict = {
        "docs": [ours._exact.rows, big._exact.rows],
        "kernel_equals_numpy_on_big": big._exact.rank_many(counts, 100) == want,
        "qps": [],
    }
    # ... and so does the pruned path at k=10 (its default; here for every query, at k=10 and 100).
    for k in (10, 100):
        want_k = (setattr(big._exact, "use_kernel", False), big._exact.rank_many(counts, k))[1]
        del big._exact.use_kernel
        big._exact.PRUNE_MIN_POSTINGS, big._exact.PRUNE_MAX_HITS = 0, 10**9
        result[f"pruned_equals_numpy_on_big_k{k}"] = big._exact.rank_many(counts, k) == want_k
        del big._exact.PRUNE_MIN_POSTINGS, big._exact.PRUNE_MAX_HITS
    # The block table: computed at the first pruned search of each sidecar.
    for name, scorer in (("small", ours._exact), ("big", big._exact)):
        scorer._blocks = None
        started = time.process_time()
        table = scorer.block_table()
        result[f"block_table_{name}"] = {
            "cpu_s": round(time.process_time() - started, 3),
            "bytes": int(sum(a.nbytes for a in table if isinstance(a, np.ndarray))),
            "blocks": int(table[1].size),
        }
    for k in KS:
        qs = q1000 if k == 1000 else queries
        for threads in THREADS:
            for searcher in (ours, big):
                searcher.batch_search_arrays(qs[:200], k=k, threads=threads)
            med = interleaved(
                {
                    "small": lambda qs=qs, k=k, t=threads: ours.batch_search_arrays(qs, k=k, threads=t),
                    "big": lambda qs=qs, k=k, t=threads: big.batch_search_arrays(qs, k=k, threads=t),
                    # The same without pruning (every posting scored): what the block-max path buys.
                    "small_exhaustive": lambda qs=qs, k=k, t=threads: unpruned(ours, qs, k, t),
                    "big_exhaustive": lambda qs=qs, k=k, t=threads: unpruned(big, qs, k, t),
                },
                args.repeats,
            )
            row = {
                "k": k,
                "threads": threads,
                "qps_small": round(len(qs) / med["small"], 1),
                "qps_big": round(len(qs) / med["big"], 1),
                "big_vs_small": round(med["small"] / med["big"], 2),
                "qps_small_exhaustive": round(len(qs) / med["small_exhaustive"], 1),
                "qps_big_exhaustive": round(len(qs) / med["big_exhaustive"], 1),
                "big_vs_small_exhaustive": round(med["small_exhaustive"] / med["big_exhaustive"], 2),
            }
            result["qps"].append(row)
            print(json.dumps({"scaling": row}), file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k1000-queries", type=int, default=300)
    parser.add_argument("--lucene-k1000-queries", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument(
        "--corpora", "--corpus", dest="corpora", default="debian,python",
        help="debian, python and/or paths of JSONL files with id and contents, comma-separated",
    )  # fmt: skip
    parser.add_argument(
        "--no-lucene-timing", dest="time_lucene", action="store_false",
        help="rank with LuceneSearcher only to compare rankings, not in the timed rounds (a quicker re-run)",
    )  # fmt: skip
    parser.add_argument(
        "--scaling-only", action="store_true",
        help="only the 1x vs --scale x comparison (Debian; no peers): a quick re-run of the scaling goal",
    )  # fmt: skip
    args = parser.parse_args()

    from spacerini.java import ensure_jvm

    ensure_jvm()
    result: dict = {"benchmark": "bm25_search", "argv": sys.argv[1:], "load_before": os.getloadavg()}
    for name in args.corpora.split(","):
        if name == "debian":
            from debian_corpus import build

            corpus = build(args.docs)
        elif name == "python":
            corpus = python_corpus()
        elif Path(name).is_file():  # any JSONL with id and contents
            corpus = Path(name)
        else:
            raise SystemExit(f"unknown corpus {name!r}: use debian, python or a JSONL file with id and contents")
        result[name] = bench_corpus(name, corpus, args)
    result["load_after"] = os.getloadavg()
    text = json.dumps(result)
    (OUT / ("bm25_search_scaling.json" if args.scaling_only else "bm25_search.json")).write_text(
        text + "\n", encoding="utf-8"
    )
    print(text)


if __name__ == "__main__":
    main()
