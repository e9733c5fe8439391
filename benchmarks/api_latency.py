"""The public API: ``Bundle.search(k=10)`` with fields, open time, RSS growth, docstore lookups.

Against raw pyserini ``LuceneSearcher`` (warm JVM) doing what the API does: ``search(q, k=10)``
and ``doc(docid).raw()`` for every hit, on the same Lucene index and the same queries.

The corpora, each built once into ``benchmarks/out/api_latency/`` (bm25 only):

* ``debian``: >= 100k paragraphs of Debian docs and man pages (``debian_corpus.py``), with
  ``title`` and ``section`` fields;
* ``python``: the Python files of this machine (``bm25_ingest.default_corpus``), with ``title``
  (file name) and ``package`` fields;
* or any JSONL file with ``id`` and ``contents``: its other keys are the display fields (a corpus
  without any is measured without fields; ``display_fields`` says which).

Each measure runs in a fresh subprocess (so that a process holds only what it measures), ours and
the peer interleaved, three rounds, medians reported:

* ``latency``: after 500 warm-up queries, p50/p99 of ``Bundle.search(q, k=10)`` over the
  queries, with ``snippets=False`` and ``snippets=True`` alternating query by query; the peer
  likewise (``search`` + ``raw()`` of the 10 hits);
* ``open``: seconds from a fresh interpreter to ``open_bundle`` returning, and to the first
  answer (JVM start and searcher open included); the peer: ``LuceneSearcher(index)`` and its
  first search + raw;
* ``docstore``: the docstore alone: ``get`` of the 10 hits of each query, format 2 vs the
  format 1 Parquet store of the same documents (written here as the old writer did);
* ``docstore_write``: seconds to write the documents with ``DocstoreWriter`` vs the format 1
  Parquet writer (interleaved, in this process);
* ``rss`` (once, not interleaved): RSS of a process holding only the bundle, after 5,000
  warm-up searches and after each further 5,000, up to ``--rss-searches`` (50,000).

Usage: .venv/bin/python benchmarks/api_latency.py [--corpus debian|python|both|FILE.jsonl] [--queries 2000]
       [--rounds 3] [--rss-searches 50000]
Prints one JSON line per corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_queries import sample_queries  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "api_latency"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,}")


# ---------------------------------------------------------------------------------- set-up
def corpus_path(name: str) -> Path:
    """The JSONL of corpus ``name``: ``debian``, ``python`` or a path to any JSONL file with
    ``id`` and ``contents`` (its queries are drawn from its ASCII words)."""
    if name not in ("debian", "python"):
        path = Path(name)
        if not path.is_file():
            raise SystemExit(f"{name}: no such corpus; use debian, python or a JSONL file with id and contents")
        return path.resolve()
    if name == "debian":
        import debian_corpus

        return debian_corpus.build(100_000)
    from bm25_ingest import code_corpus

    # The Python files of bm25_ingest, with two display fields (file name, top-level folder).
    path = OUT / "python_11000.jsonl"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        with code_corpus(11_000).open(encoding="utf-8") as src, path.open("w", encoding="utf-8") as out:
            for line in src:
                record = json.loads(line)
                parts = record["id"].split("/")
                record.update(title=parts[-1], package=parts[1] if len(parts) > 2 else parts[0])
                out.write(json.dumps(record) + "\n")
    return path


def _label(name: str) -> str:
    """A folder-safe label for corpus ``name`` (a path gets its stem and a hash of its location)."""
    if name in ("debian", "python"):
        return name
    path = corpus_path(name)
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.stem)}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def bundle_path(name: str) -> Path:
    """Builds (once) the bm25 bundle of corpus ``name``."""
    import shutil

    from spacerini.bundle import FORMAT_VERSION, build_bundle
    from spacerini.errors import SpaceriniError

    out = OUT / f"{_label(name)}_bundle"
    manifest = out / "spacerini.json"
    # A corpus from outside is rebuilt when the file has changed since (size, modification time).
    source: dict[str, Any] | None = None
    source_path = OUT / f"{_label(name)}_source.json"
    if name not in ("debian", "python"):
        stat = corpus_path(name).stat()
        source = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    fresh = source is None or (source_path.exists() and json.loads(source_path.read_text()) == source)
    if fresh and manifest.exists() and json.loads(manifest.read_text())["format_version"] == FORMAT_VERSION:
        return out
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f"{out.name}_docs_v1", ignore_errors=True)  # parquet_copy's
    try:
        build_bundle(corpus_path(name), out, backends=["bm25"], fields=["contents"], progress=False)
    except SpaceriniError as exc:
        raise SystemExit(f"{exc} (this benchmark reads a JSONL with id and contents)") from None
    if source is not None:
        source_path.write_text(json.dumps(source))
    return out


def display_fields(name: str) -> list[str]:
    """The display fields of corpus ``name``: the keys of its first record besides id and contents."""
    with corpus_path(name).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                return sorted(set(json.loads(line)) - {"id", "contents"})
    return []


def make_queries(name: str, n: int, seed: int = 0) -> list[str]:
    """1-4 words drawn from random documents of the corpus (always-matching queries)."""
    texts = [json.loads(line)["contents"][:5000] for line in corpus_path(name).open(encoding="utf-8")]
    return sample_queries(texts, n, seed=seed, word=WORD, source=name)


def parquet_copy(bundle: Path) -> Path:
    """The bundle's documents in the format 1 layout (one zstd Parquet file, 2,048-row groups)."""
    from spacerini.docstore import Docstore

    folder = bundle.parent / f"{bundle.name}_docs_v1"
    if not (folder / "docs.parquet").exists():
        write_v1(Docstore(bundle / "docs").iter_docs(), folder)
    return folder


def write_v1(docs: Any, folder: Path) -> None:
    """Writes ``docs`` as the format 1 writer did (the peer of :func:`write_ratio`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "docs.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.large_string()), ("fields", pa.string()), ("meta", pa.string())])
    writer = pq.ParquetWriter(path.with_suffix(".tmp"), schema, compression="zstd")
    rows: dict[str, list[Any]] = {c: [] for c in schema.names}

    def flush() -> None:
        writer.write_table(pa.table(rows, schema=schema), row_group_size=2048)
        for values in rows.values():
            values.clear()

    for doc in docs:
        rows["id"].append(doc.id)
        rows["text"].append(doc.text)
        rows["fields"].append(json.dumps(dict(doc.fields), ensure_ascii=False, default=str))
        rows["meta"].append(json.dumps(dict(doc.meta), ensure_ascii=False, default=str))
        if len(rows["id"]) == 2048:
            flush()
    if rows["id"]:
        flush()
    writer.close()
    path.with_suffix(".tmp").rename(path)


def write_ratio(bundle: Path, rounds: int) -> dict[str, Any]:
    """Seconds to write the bundle's documents: DocstoreWriter (format 2) vs the format 1 writer,
    interleaved, medians of ``rounds`` (documents already in memory)."""
    import shutil

    from spacerini.docstore import Docstore, DocstoreWriter

    docs = list(Docstore(bundle / "docs").iter_docs())
    out = OUT / "write_tmp"
    times: dict[str, list[float]] = {"v2": [], "v1": []}
    for r in range(rounds):
        for name in ("v2", "v1") if r % 2 == 0 else ("v1", "v2"):
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            if name == "v1":
                write_v1(docs, out)
            else:
                with DocstoreWriter(out) as writer:
                    for doc in docs:
                        writer.add(doc)
            times[name].append(time.perf_counter() - start)
    shutil.rmtree(out, ignore_errors=True)
    v2, v1 = statistics.median(times["v2"]), statistics.median(times["v1"])
    return {"v2_s": round(v2, 2), "v1_s": round(v1, 2), "v2_over_v1": round(v2 / v1, 2)}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ---------------------------------------------------------------------------- subprocesses
def role_open(bundle: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    from spacerini.bundle import open_bundle

    b = open_bundle(bundle)
    t1 = time.perf_counter()
    b.search("list directory contents", k=10)
    t2 = time.perf_counter()
    return {"open_s": t1 - t0, "first_answer_s": t2 - t0}


def role_peer_open(bundle: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    from spacerini.java import ensure_jvm

    ensure_jvm()
    os.environ.setdefault("OPENAI_API_KEY", "unused")
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(Path(bundle) / "lucene"))
    t1 = time.perf_counter()
    for hit in searcher.search("list directory contents", k=10):
        searcher.doc(hit.docid).raw()
    t2 = time.perf_counter()
    return {"open_s": t1 - t0, "first_answer_s": t2 - t0}


def role_latency(bundle: str, queries: list[str], expect_fields: bool = True) -> dict[str, Any]:
    from spacerini.bundle import open_bundle

    b = open_bundle(bundle)
    for q in queries[:500]:
        b.search(q, k=10, snippets=True)
    plain, snip = [], []
    seen = []  # the last non-empty answer (a query of stopwords alone has none)
    for i, q in enumerate(queries):
        order = (False, True) if i % 2 else (True, False)
        for snippets in order:
            start = time.perf_counter()
            hits = b.search(q, k=10, snippets=snippets)
            ms = (time.perf_counter() - start) * 1000
            (snip if snippets else plain).append(ms)
            seen = hits or seen
    assert seen, "no query had a hit"
    assert seen[0].fields or not expect_fields, "hits carry no fields"
    return {
        "p50_ms": statistics.median(plain), "p99_ms": pct(plain, 0.99),
        "snippets_p50_ms": statistics.median(snip), "snippets_p99_ms": pct(snip, 0.99),
    }  # fmt: skip


def role_peer_latency(bundle: str, queries: list[str]) -> dict[str, Any]:
    from spacerini.java import ensure_jvm

    ensure_jvm()
    os.environ.setdefault("OPENAI_API_KEY", "unused")
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(Path(bundle) / "lucene"))

    def one(q: str) -> None:
        for hit in searcher.search(q, k=10):
            searcher.doc(hit.docid).raw()

    for q in queries[:500]:
        one(q)
    times = []
    for q in queries:
        start = time.perf_counter()
        one(q)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": statistics.median(times), "p99_ms": pct(times, 0.99)}


def role_docstore(bundle: str, queries: list[str]) -> dict[str, Any]:
    """ms per top-10 of docstore lookups, format 2 vs format 1, on the ids BM25 returns."""
    from spacerini.bundle import open_bundle
    from spacerini.docstore import Docstore

    b = open_bundle(bundle)
    tops = [[h.docid for h in b.search(q, k=10, snippets=False)] for q in queries[:300]]
    t0 = time.perf_counter()
    new = Docstore(Path(bundle) / "docs")
    new_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    old = Docstore(parquet_copy(Path(bundle)))
    old.get(tops[0][0])  # the old store builds its id map on the first lookup
    old_open = time.perf_counter() - t0
    out: dict[str, Any] = {"v2_open_ms": new_open * 1000, "v1_open_and_first_get_ms": old_open * 1000}
    for name, store in (("v2", new), ("v1", old)):
        times = []
        for ids in tops:
            start = time.perf_counter()
            store.get_many(ids)
            times.append((time.perf_counter() - start) * 1000)
        out[f"{name}_top10_p50_ms"] = statistics.median(times)
        out[f"{name}_top10_p99_ms"] = pct(times, 0.99)
    return out


def role_rss(bundle: str, queries: list[str], searches: int) -> dict[str, Any]:
    import gc

    import psutil

    from spacerini.bundle import open_bundle

    proc = psutil.Process()
    b = open_bundle(bundle)
    n = len(queries)
    for i in range(5000):
        b.search(queries[i % n], k=10, snippets=bool(i % 2))
    gc.collect()
    base = proc.memory_info().rss
    trace = []
    start = time.perf_counter()
    for i in range(searches):
        b.search(queries[(i * 7 + 3) % n], k=10, snippets=bool(i % 2))
        if (i + 1) % 5000 == 0:
            trace.append(round(proc.memory_info().rss / 2**20, 1))
    gc.collect()
    end = proc.memory_info().rss
    return {
        "searches": searches, "seconds": round(time.perf_counter() - start, 1),
        "rss_after_warmup_mb": round(base / 2**20, 1), "rss_end_mb": round(end / 2**20, 1),
        "growth_pct": round(100 * (end - base) / base, 2), "trace_mb": trace,
    }  # fmt: skip


ROLES = {"open": role_open, "peer_open": role_peer_open}


def child(role: str, bundle: Path, queries: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """Runs one role in a fresh interpreter; returns its JSON answer."""
    payload = json.dumps({"role": role, "bundle": str(bundle), "queries": queries, **extra})
    proc = subprocess.run(
        [sys.executable, __file__, "--child"], input=payload, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{role} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child() -> None:
    args = json.loads(sys.stdin.read())
    role, bundle, queries = args["role"], args["bundle"], args["queries"]
    if role in ROLES:
        out = ROLES[role](bundle)
    elif role == "latency":
        out = role_latency(bundle, queries, args.get("expect_fields", True))
    elif role == "peer_latency":
        out = role_peer_latency(bundle, queries)
    elif role == "docstore":
        out = role_docstore(bundle, queries)
    else:
        out = role_rss(bundle, queries, args["searches"])
    print(json.dumps(out))


# ------------------------------------------------------------------------------------ main
def med(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}


def bench(name: str, *, n_queries: int, rounds: int, rss_searches: int) -> dict[str, Any]:
    bundle = bundle_path(name)
    parquet_copy(bundle)
    queries = make_queries(name, n_queries + 500)
    docs = json.loads((bundle / "spacerini.json").read_text())["counts"]["docs"]
    # Hits carry the corpus's display fields, if it has any (the peer reads the whole stored JSON).
    fields = display_fields(name)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in ("open", "peer_open", "latency", "peer_latency", "docstore")}
    for r in range(rounds):
        pairs = [("open", None), ("peer_open", None), ("latency", queries), ("peer_latency", queries)]
        if r % 2:
            pairs = [pairs[1], pairs[0], pairs[3], pairs[2]]
        for role, qs in pairs:
            extra = {"expect_fields": bool(fields)} if role == "latency" else {}
            runs[role].append(child(role, bundle, qs, **extra))
        runs["docstore"].append(child("docstore", bundle, queries))
    result: dict[str, Any] = {
        "benchmark": "api_latency", "corpus": name, "docs": docs, "display_fields": fields, "queries": n_queries, "rounds": rounds,
        "load_average": os.getloadavg(),
    }  # fmt: skip
    for key, values in runs.items():
        result[key] = med(values)
    result["latency_vs_peer_p50"] = round(result["latency"]["p50_ms"] / result["peer_latency"]["p50_ms"], 2)
    result["docstore_v1_over_v2_p50"] = round(
        result["docstore"]["v1_top10_p50_ms"] / result["docstore"]["v2_top10_p50_ms"], 1
    )
    result["docstore_write"] = write_ratio(bundle, rounds)
    if rss_searches:
        result["rss"] = child("rss", bundle, queries, searches=rss_searches)
    result["load_average_end"] = os.getloadavg()
    return result


def main() -> None:
    if "--child" in sys.argv:
        run_child()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", default="both", help="debian, python, both, or a JSONL file with id and contents"
    )
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-searches", type=int, default=50_000)
    args = parser.parse_args()
    for name in ["debian", "python"] if args.corpus == "both" else [args.corpus]:
        result = bench(name, n_queries=args.queries, rounds=args.rounds, rss_searches=args.rss_searches)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
