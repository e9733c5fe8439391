"""Benchmark of the dense backend: encoding speed, ANN recall/QPS, and nDCG@10 of bm25/dense/hybrid.

Measured in the same run:

* **Encoding.** ``spacerini.backends.dense.build`` (split, encode, checkpoint, flat index) vs
  plain sentence-transformers ``model.encode`` with the same model (the packaged
  all-MiniLM-L6-v2) and batch size, on the same texts. The texts are code functions of at most
  254 tokens, so each is one passage and both sides do the same model work (goal: ratio >= 1.0).
  The docs/s of the whole code corpus (long functions split into passages) is reported as well.
* **ANN.** 100k clustered synthetic 384-d unit vectors (a 1,000-component Gaussian mixture in a
  48-d latent space, randomly projected to 384-d plus isotropic noise, so neighbourhoods overlap
  as in real embeddings rather than being trivially separable): recall@10 of HNSW (the ``auto``
  choice above 50k passages; sweep of ``efSearch``) and IVF (sweep of ``nprobe``; skip with
  ``--no-ivf``) against exact flat search, and QPS ratio against flat. Goal: recall >= 0.95 at
  >= 5x flat QPS. Every index searches the same 1,000 queries as one batch (flat's best case:
  one BLAS matrix product); ``single_query_qps`` also times 200 queries one at a time, as the
  app sends them.
* **Retrieval quality.** A CodeSearchNet-style collection built from the Python standard library
  on this machine: each document is one function's source *with its docstring removed*, and
  each query is the first sentence of that docstring, with the function as its only relevant
  document. It is public, packaged with every Python, needs no network, and the qrels come
  mechanically from the source; removing the docstring keeps the task from being a trivial
  string match, as CodeSearchNet does. nDCG@10 (ir-measures) of bm25 (``analyzer="code"``),
  dense, and hybrid (RRF and weighted). The bm25 parts are skipped, with the reason printed, if
  the bm25 backend cannot run here.

Prints one JSON line. Usage: ``python benchmarks/dense_bench.py [--docs 1200] [--queries 200]``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from spacerini.backends import dense  # noqa: E402
from spacerini.backends.hybrid import HybridSearcher  # noqa: E402
from spacerini.encoders import load_encoder  # noqa: E402
from spacerini.records import Doc  # noqa: E402

SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "ensurepip", "tkinter", "pydoc_data"}


def stdlib_functions(limit: int, seed: int = 0) -> list[tuple[Doc, str]]:
    """(doc with the docstring removed, first docstring sentence) for stdlib functions."""
    root = Path(sysconfig.get_paths()["stdlib"])
    items: list[tuple[Doc, str]] = []
    seen_queries: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP_DIRS & set(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = source.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            if not doc or not node.body or not isinstance(node.body[0], ast.Expr):
                continue
            sentence = doc.strip().split("\n\n")[0].replace("\n", " ").split(". ")[0].strip().rstrip(".")
            if len(sentence.split()) < 5 or sentence in seen_queries:
                continue
            ds = node.body[0]
            start, end = node.lineno - 1, node.end_lineno or node.lineno
            body = lines[start : ds.lineno - 1] + lines[(ds.end_lineno or ds.lineno) : end]
            text = "".join(body).strip()
            if len(text.splitlines()) < 3:
                continue
            seen_queries.add(sentence)
            items.append((Doc(id=f"{rel.as_posix()}:{node.name}:{node.lineno}", text=text), sentence))
    random.Random(seed).shuffle(items)
    return items[:limit]


def bench_encoding(docs: list[Doc], *, n: int, batch_size: int) -> dict[str, object]:
    enc = load_encoder()
    short = [d for d in docs if enc.count_tokens(d.text) <= enc.max_tokens][:n]
    texts = [d.text for d in short]
    model = enc._model  # the same SentenceTransformer object: same weights, device and threads
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(2):  # alternate, keep the best of each, to damp noise from other load
            started = time.perf_counter()
            model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            dense.build(lambda: iter(short), Path(tmp) / f"e{attempt}", progress=False, batch_size=batch_size,
                        checkpoint_dir=Path(tmp) / f"ck{attempt}", index="flat")
            ours.append(time.perf_counter() - started)
    return {
        "texts": len(texts),
        "batch_size": batch_size,
        "plain_st_docs_per_s": round(len(texts) / min(plain), 1),
        "spacerini_docs_per_s": round(len(texts) / min(ours), 1),
        "ratio": round(min(plain) / min(ours), 3),
    }


def synthetic(n: int, *, dim: int = 384, latent: int = 48, clusters: int = 1000, spread: float = 1.2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, latent)).astype(np.float32)
    z = centers[rng.integers(0, clusters, size=n)] + spread * rng.normal(size=(n, latent)).astype(np.float32)
    proj = rng.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    x = z @ proj + 0.1 * rng.normal(size=(n, dim)).astype(np.float32)
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def bench_ann(n: int, *, ivf_too: bool) -> dict[str, object]:
    import faiss

    data = synthetic(n + 1000)
    vectors, queries = data[:n], data[n:]
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    flat.search(queries[:10], 10)
    started = time.perf_counter()
    _, exact = flat.search(queries, 10)
    flat_s = time.perf_counter() - started
    out: dict[str, object] = {"vectors": n, "dim": int(vectors.shape[1]), "queries": len(queries),
                              "flat_qps": round(len(queries) / flat_s, 1)}

    def measure(index: object) -> tuple[float, float]:
        started = time.perf_counter()
        _, got = index.search(queries, 10)  # type: ignore[attr-defined]
        seconds = time.perf_counter() - started
        recall = float(np.mean([len(set(got[i]) & set(exact[i])) / 10 for i in range(len(queries))]))
        return round(recall, 4), round(flat_s / seconds, 2)

    with tempfile.TemporaryDirectory() as tmp:
        chunks = []
        for number, start in enumerate(range(0, n, 20_000)):
            vec_path, doc_path = dense._chunk_paths(Path(tmp), number)
            dense._save_npy(vec_path, vectors[start : start + 20_000])
            dense._save_npy(doc_path, np.arange(start, min(n, start + 20_000), dtype=np.int32))
            chunks.append((vec_path, doc_path))
        started = time.perf_counter()
        with dense._faiss_threads(faiss, os.cpu_count() or 1):
            graph = dense._build_index(faiss, "hnsw", chunks, dim=vectors.shape[1], n_passages=n, hnsw_m=32,
                                       ef_construction=80, nlist=None, progress=False)
        out["hnsw_build_s"] = round(time.perf_counter() - started, 1)
        hsweep = {}
        for ef in (32, 64, 128, 256):
            graph.hnsw.efSearch = ef
            recall, ratio = measure(graph)
            hsweep[str(ef)] = {"recall_at_10": recall, "qps_ratio_vs_flat": ratio}
        out["hnsw_by_ef_search"] = hsweep
        # One query at a time, as the app searches: flat loses its batched-BLAS advantage.
        graph.hnsw.efSearch = 128
        single = {}
        for name, index in (("flat", flat), ("hnsw_ef128", graph)):
            started = time.perf_counter()
            for i in range(200):
                index.search(queries[i : i + 1], 10)
            single[name] = round(200 / (time.perf_counter() - started), 1)
        out["single_query_qps"] = single
        if ivf_too:
            nlist = dense.default_nlist(n)
            started = time.perf_counter()
            with dense._faiss_threads(faiss, os.cpu_count() or 1):
                ivf = dense._build_index(faiss, "ivf", chunks, dim=vectors.shape[1], n_passages=n, hnsw_m=32,
                                         ef_construction=80, nlist=nlist, progress=False)
            out["ivf_build_s"] = round(time.perf_counter() - started, 1)
            out["ivf_nlist"] = nlist
            sweep = {}
            for nprobe in (8, 16, 32, 64):
                faiss.extract_index_ivf(ivf).nprobe = nprobe
                recall, ratio = measure(ivf)
                sweep[str(nprobe)] = {"recall_at_10": recall, "qps_ratio_vs_flat": ratio}
            out["ivf_by_nprobe"] = sweep
            out["ivf_default_nprobe"] = 32
        out["hnsw_default_ef_search"] = 128
    return out


def ndcg10(run: dict[str, list], qrels: dict[str, str]) -> float:
    import ir_measures
    from ir_measures import nDCG

    qrel_list = [ir_measures.Qrel(qid, docid, 1) for qid, docid in qrels.items()]
    scored = [ir_measures.ScoredDoc(qid, hit.docid, float(hit.score)) for qid, hits in run.items() for hit in hits]
    return round(float(ir_measures.calc_aggregate([nDCG @ 10], qrel_list, scored)[nDCG @ 10]), 4)


def bench_quality(items: list[tuple[Doc, str]], *, n_queries: int) -> dict[str, object]:
    docs = [doc for doc, _ in items]
    queries = [(f"q{i}", sentence) for i, (_, sentence) in enumerate(items[:n_queries])]
    qrels = {f"q{i}": doc.id for i, (doc, _) in enumerate(items[:n_queries])}
    out: dict[str, object] = {"collection": "python-stdlib functions (docstring removed) / first docstring sentence",
                              "docs": len(docs), "queries": len(queries)}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        report = dense.build(lambda: iter(docs), Path(tmp) / "dense", progress=False, checkpoint_dir=Path(tmp) / "ck")
        out["dense_build_docs_per_s"] = round(len(docs) / (time.perf_counter() - started), 1)
        out["dense_passages"] = report.stats["passages"]
        dense_searcher = dense.open(Path(tmp) / "dense", report.to_dict())
        started = time.perf_counter()
        dense_run = dense_searcher.batch_search(queries, k=100)
        out["dense_query_qps"] = round(len(queries) / (time.perf_counter() - started), 1)
        out["ndcg@10_dense"] = ndcg10(dense_run, qrels)
        try:
            from spacerini.backends import bm25

            bm25_report = bm25.build(lambda: iter(docs), Path(tmp) / "bm25", threads=os.cpu_count() or 1,
                                     progress=False, analyzer="code")
            bm25_searcher = bm25.open(Path(tmp) / "bm25", bm25_report.to_dict())
            bm25_run = bm25_searcher.batch_search(queries, k=100)
        except Exception as exc:  # noqa: BLE001 - report any reason the peer cannot run, and go on
            out["bm25_skipped"] = f"{type(exc).__name__}: {exc}"[:300]
            return out
        out["ndcg@10_bm25"] = ndcg10(bm25_run, qrels)
        for method in ("rrf", "weighted"):
            hybrid = HybridSearcher(bm25_searcher, dense_searcher, method=method, depth=100)
            out[f"ndcg@10_hybrid_{method}"] = ndcg10(hybrid.batch_search(queries, k=100), qrels)
        bm25_searcher.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1200, help="functions in the quality collection")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--encode-texts", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--no-ivf", action="store_true", help="skip the IVF sweep")
    args = parser.parse_args()

    started = time.perf_counter()
    items = stdlib_functions(args.docs)
    result: dict[str, object] = {"bench": "dense", "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    result["encoding"] = bench_encoding([doc for doc, _ in items], n=args.encode_texts, batch_size=args.batch_size)
    result["ann"] = bench_ann(args.vectors, ivf_too=not args.no_ivf)
    result["quality"] = bench_quality(items, n_queries=args.queries)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
