"""Benchmark of the dense backend: encoding speed, ANN recall/QPS, and nDCG@10 of bm25/dense/hybrid.

Measured in the same run:

* **Encoding** (``--parts encoding``). ``spacerini.backends.dense.build`` end to end (split,
  encode, checkpoint, flat index) on two corpora (``--encode-corpus``): ``stdlib``,
  ``--encode-docs`` standard-library functions of every length (long ones split into several
  passages), and ``lines``, ``--encode-lines`` short comment/docstring lines (6-40 words, one
  passage each); ``debian``, ``--encode-paras`` paragraphs of the real-text Debian corpus
  (``benchmarks/debian_corpus.py``); or a PATH, its first ``--encode-paras`` documents (any corpus
  ``spacerini index`` reads, with ``--format``, ``--id-field`` and ``--fields``), against plain sentence-transformers ``model.encode`` with the same model object (the
  packaged all-MiniLM-L6-v2: same weights, device and torch threads), the same batch size and
  ``normalize_embeddings=True``, given **the same texts: our passages** (each document split
  with ``Encoder.split`` beforehand, outside the peer's timing), so both do the same model work
  and the peer gets no splitting cost. After one untimed round of each, trials alternate peer,
  ours, peer, ours, ... and the ratio is median(peer seconds) / median(our seconds) over
  ``--trials`` of each (goal >= 1.0).
* **ANN** (``--parts ann``). 100k 384-d vectors + 1,000 held-out queries
  (``benchmarks/dense_ann.py`` describes both sets: ``text`` = mean MiniLM input embeddings of
  real text lines, ``gaussian`` = clustered synthetic): the index ``index="auto"`` builds at that
  size, with the parameters it stores, against exact flat search (same Faiss threads; batched
  1,000 queries; interleaved timings, median of 3). Goal: recall@10 >= 0.95 at >= 5x flat's QPS.
  ``benchmarks/dense_ann.py`` runs the full sweep these defaults were chosen from.
* **Retrieval quality** (``--parts quality``). Collections from ``benchmarks/dense_collections.py``
  (``manpages``: installed manual pages, query = the NAME line's description; ``stdlib``:
  functions without docstrings, query = the docstring's first sentence). nDCG@10 (ir-measures)
  on the test queries of bm25, dense, hybrid RRF (k=60) and hybrid weighted (alpha=0.5, and
  alpha chosen on the dev queries only from 0.0, 0.1, ..., 1.0). bm25 uses the ``en``
  analyzer on man pages and the ``code`` analyzer on code. The bm25 parts are skipped, with
  the reason printed, if the bm25 backend cannot run here.

Prints one JSON line. Usage: ``python benchmarks/dense_bench.py [--parts encoding,ann,quality]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dense_ann  # noqa: E402
import dense_collections  # noqa: E402

from spacerini.backends import dense  # noqa: E402
from spacerini.encoders import load_encoder  # noqa: E402
from spacerini.fusion import HybridSearcher  # noqa: E402
from spacerini.records import Doc  # noqa: E402


def bench_encoding(
    docs: list[Doc], *, batch_size: int, trials: int, runtimes: list[str], peer_batch_sizes: list[int]
) -> dict[str, object]:
    """Peer (sentence-transformers ``encode``, its best batch size) vs ``dense.build`` per runtime, interleaved."""
    enc = load_encoder(device="cpu")
    passage_tokens, overlap = enc.max_tokens, 32  # what dense.build uses by default for MiniLM
    passages = [p for doc in docs for p in enc.split(doc.text, max_tokens=passage_tokens, overlap=overlap)]
    model = enc._model  # the same SentenceTransformer object: same weights, device and threads

    def peer(size: int) -> np.ndarray:
        return model.encode(passages, batch_size=size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    # The peer's batch size is tuned (one untimed warm-up, then one timed pass per size).
    tuning = {}
    peer(peer_batch_sizes[0])
    for size in peer_batch_sizes:
        started = time.perf_counter()
        peer(size)
        tuning[size] = time.perf_counter() - started
    best = min(tuning, key=tuning.__getitem__)
    seconds: dict[str, list[float]] = {"plain_st": [], **{r: [] for r in runtimes}}
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(-1, trials):  # round -1 warms every path up (exports ONNX once) and is not timed
            started = time.perf_counter()
            reference = peer(best)
            seconds["plain_st"].append(time.perf_counter() - started)
            for runtime in runtimes:
                folder = Path(tmp) / f"{runtime}{attempt + 1}"
                started = time.perf_counter()
                dense.build(lambda: iter(docs), folder, progress=False, batch_size=batch_size,
                            checkpoint_dir=Path(tmp) / f"ck-{runtime}{attempt + 1}", index="flat",
                            passage_tokens=passage_tokens, overlap=overlap, runtime=runtime, device="cpu",
                            target_recall=None)
                seconds[runtime].append(time.perf_counter() - started)
                if runtime not in vectors:
                    import faiss

                    index = faiss.read_index(str(folder / dense.INDEX_FILE))
                    vectors[runtime] = index.reconstruct_n(0, index.ntotal)
    peer_median = statistics.median(seconds["plain_st"][1:])
    out: dict[str, object] = {
        "docs": len(docs), "passages": len(passages), "batch_size": batch_size, "trials": trials,
        "peer_batch_size_seconds": {k: round(v, 2) for k, v in tuning.items()}, "peer_batch_size": best,
        "plain_st_docs_per_s": round(len(docs) / peer_median, 2),
        "seconds": {k: [round(x, 2) for x in v[1:]] for k, v in seconds.items()},
    }
    for runtime in runtimes:
        median = statistics.median(seconds[runtime][1:])
        cosine = (vectors[runtime] * reference).sum(axis=1)
        out[runtime] = {"docs_per_s": round(len(docs) / median, 2), "ratio_vs_plain_st": round(peer_median / median, 3),
                        "min_cosine_vs_plain_st": round(float(cosine.min()), 6)}
    return out


def bench_ann(n: int, *, sets: list[str], threads: int) -> dict[str, object]:
    """The ``auto`` index at ``n`` vectors, built and tuned as ``dense.build`` does, on held-out queries."""
    out: dict[str, object] = {}
    for name in sets:
        data = dense_ann.VECTOR_SETS[name](n + 1000)
        out[name] = dense_ann.auto_default(data[:n], data[n:], threads=threads, trials=3)
    return out


def ndcg10(run: dict[str, list], qrels: dict[str, str], qids: list[str]) -> float:
    import ir_measures
    from ir_measures import nDCG

    qrel_list = [ir_measures.Qrel(qid, qrels[qid], 1) for qid in qids]
    scored = [ir_measures.ScoredDoc(qid, hit.docid, float(hit.score)) for qid in qids for hit in run.get(qid, [])]
    return round(float(ir_measures.calc_aggregate([nDCG @ 10], qrel_list, scored)[nDCG @ 10]), 4)


def bench_quality(
    collection: dense_collections.Collection, *, analyzer: str, runtimes: list[str], with_bm25: bool = True
) -> dict[str, object]:
    docs, dev, test, qrels = collection.docs, collection.dev, collection.test, collection.qrels
    test_ids = [qid for qid, _ in test]
    out: dict[str, object] = {"collection": collection.name, "docs": len(docs), "dev_queries": len(dev),
                              "test_queries": len(test)}
    with tempfile.TemporaryDirectory() as tmp:
        # Each runtime builds its index and encodes the queries itself; the first is the one fused below.
        for runtime in reversed(runtimes):
            started = time.perf_counter()
            report = dense.build(lambda: iter(docs), Path(tmp) / f"dense-{runtime}", progress=False,
                                 checkpoint_dir=Path(tmp) / f"ck-{runtime}", runtime=runtime, device="cpu")
            suffix = "" if runtime == runtimes[0] else f"_{runtime}"
            out[f"dense_build_docs_per_s{suffix}"] = round(len(docs) / (time.perf_counter() - started), 1)
            out[f"dense_passages{suffix}"] = report.stats["passages"]
            dense_searcher = dense.open(Path(tmp) / f"dense-{runtime}", report.to_dict())
            dense_runs = dense_searcher.batch_search(dev + test, k=100)
            out[f"ndcg@10_dense{suffix}"] = ndcg10(dense_runs, qrels, test_ids)
        if not with_bm25:
            return out
        try:
            from spacerini.backends import bm25

            bm25_report = bm25.build(lambda: iter(docs), Path(tmp) / "bm25", threads=os.cpu_count() or 1,
                                     progress=False, analyzer=analyzer)
            bm25_searcher = bm25.open(Path(tmp) / "bm25", bm25_report.to_dict())
            bm25_runs = bm25_searcher.batch_search(dev + test, k=100)
        except Exception as exc:  # noqa: BLE001 - report any reason the peer cannot run, and go on
            out["bm25_skipped"] = f"{type(exc).__name__}: {exc}"[:300]
            return out
        out["ndcg@10_bm25"] = ndcg10(bm25_runs, qrels, test_ids)

        def fused(method: str, alpha: float, queries: list[tuple[str, str]]) -> dict[str, list]:
            hybrid = HybridSearcher(bm25_searcher, dense_searcher, method=method, depth=100, alpha=alpha)
            return {qid: hybrid.fuse(bm25_runs.get(qid, []), dense_runs.get(qid, []), 100) for qid, _ in queries}

        out["ndcg@10_hybrid_rrf"] = ndcg10(fused("rrf", 0.5, test), qrels, test_ids)
        out["ndcg@10_hybrid_weighted_a0.5"] = ndcg10(fused("weighted", 0.5, test), qrels, test_ids)
        if dev:
            dev_ids = [qid for qid, _ in dev]
            grid = {round(a / 10, 1): ndcg10(fused("weighted", a / 10, dev), qrels, dev_ids) for a in range(11)}
            best = max(grid, key=lambda a: (grid[a], -abs(a - 0.5)))
            out["dev_ndcg@10_by_alpha"] = grid
            out["alpha_from_dev"] = best
            out["ndcg@10_hybrid_weighted_dev_alpha"] = ndcg10(fused("weighted", best, test), qrels, test_ids)
        # The fused lists above come from the same runs as search(); check one query end to end.
        qid, text = test[0]
        direct = HybridSearcher(bm25_searcher, dense_searcher, method="rrf", depth=100).search(text, k=10)
        out["fusion_matches_search"] = [h.docid for h in direct] == [h.docid for h in fused("rrf", 0.5, [(qid, text)])[qid][:10]]
        bm25_searcher.close()
    return out


def debian_paragraphs(n: int, *, seed: int) -> list[Doc]:
    """``n`` paragraphs drawn at random from the real-text corpus of ``benchmarks/debian_corpus.py``
    (Debian documentation and man pages on this machine; built once, 100k paragraphs)."""
    import random

    import debian_corpus

    with debian_corpus.build(100_000).open(encoding="utf-8") as handle:
        texts = [json.loads(line)["contents"] for line in handle]
    picked = random.Random(seed).sample(range(len(texts)), min(n, len(texts)))
    return [Doc(id=f"p{i}", text=texts[i]) for i in picked]


def corpus_documents(source: str, n: int, *, format: str | None, id_field: str | None, fields: str | None) -> list[Doc]:
    """The first ``n`` documents of any corpus ``spacerini index`` reads (``format``, ``id_field``
    and ``fields`` as its ``--format``, ``--id-field`` and ``--fields``).

    Raises:
        SystemExit: The corpus cannot be read (the library's error, on one line).
    """
    import itertools

    from spacerini.corpus import load_corpus
    from spacerini.errors import SpaceriniError

    try:
        corpus = load_corpus(source, format=format, id_field=id_field, fields=fields, progress=False)
        return list(itertools.islice(corpus, n))
    except SpaceriniError as exc:
        raise SystemExit(str(exc)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="encoding,ann,quality")
    parser.add_argument("--collections", default="manpages,stdlib")
    parser.add_argument("--encode-corpus", default="stdlib,lines",
                        help="stdlib functions, short text lines, debian paragraphs and/or a PATH to any corpus spacerini index reads")
    parser.add_argument("--encode-docs", type=int, default=160, help="stdlib functions to encode")
    parser.add_argument("--encode-lines", type=int, default=4000, help="text lines to encode")
    parser.add_argument("--encode-paras", type=int, default=400,
                        help="Debian paragraphs (--encode-corpus debian), or first documents of a PATH, to encode")
    parser.add_argument("--format", default=None, help="a PATH's format, as for spacerini index (e.g. code for a source folder)")
    parser.add_argument("--id-field", default=None, help="a PATH's id field (default: id/docid/_id/doc_id)")
    parser.add_argument("--fields", default=None, help="a PATH's contents fields, comma-separated (default: contents/text/content/body)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--ann-sets", default="minilm,text,gaussian")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="Faiss threads (flat and ANN alike)")
    parser.add_argument("--man-docs", type=int, default=1000)
    parser.add_argument("--runtimes", default="torch,onnx,onnx-int8", help="dense.build encoder runtimes to measure")
    parser.add_argument("--peer-batch-sizes", default="16,32,64", help="sentence-transformers batch sizes tried")
    parser.add_argument("--encode-threads", type=int, default=None, help="torch and ONNX Runtime threads")
    parser.add_argument("--no-bm25", action="store_true", help="quality: dense only")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    runtimes = args.runtimes.split(",")
    if args.encode_threads:
        import torch

        torch.set_num_threads(args.encode_threads)
        os.environ["SPACERINI_ONNX_THREADS"] = str(args.encode_threads)

    started = time.perf_counter()
    result: dict[str, Any] = {"bench": "dense", "cpus": os.cpu_count(), "python": sys.version.split()[0],
                              "load_before": os.getloadavg()}
    if "encoding" in parts:
        for corpus in args.encode_corpus.split(","):
            if corpus == "stdlib":
                docs = dense_collections.stdlib_functions(docs=args.encode_docs, seed=1).docs
            elif corpus == "debian":  # real text: paragraphs of the Debian documentation corpus
                docs = debian_paragraphs(args.encode_paras, seed=3)
            elif corpus == "lines":  # short natural-language lines (comments and docstrings), one per document
                docs = [Doc(id=f"l{i}", text=line) for i, line in enumerate(dense_ann.text_lines(args.encode_lines, seed=2))]
            elif Path(corpus).exists() or ":" in corpus:  # a file, a folder, hf:NAME, irds:NAME
                docs = corpus_documents(corpus, args.encode_paras, format=args.format, id_field=args.id_field,
                                        fields=args.fields)
            else:
                raise SystemExit(f"--encode-corpus {corpus}: not stdlib, lines, debian, nor a corpus path")
            result[f"encoding_{corpus}"] = bench_encoding(
                docs, batch_size=args.batch_size, trials=args.trials, runtimes=runtimes,
                peer_batch_sizes=[int(x) for x in args.peer_batch_sizes.split(",")],
            )
    if "ann" in parts:
        result["ann"] = bench_ann(args.vectors, sets=args.ann_sets.split(","), threads=args.threads)
    if "quality" in parts:
        for name in args.collections.split(","):
            if name == "manpages":
                try:
                    collection = dense_collections.manpages(docs=args.man_docs)
                except FileNotFoundError as exc:
                    result["quality_manpages"] = {"skipped": str(exc)}
                    continue
                result["quality_manpages"] = bench_quality(collection, analyzer="en", runtimes=runtimes,
                                                           with_bm25=not args.no_bm25)
            else:
                collection = dense_collections.stdlib_functions(docs=1200, queries=300, dev=100)
                result["quality_stdlib"] = bench_quality(collection, analyzer="code", runtimes=runtimes,
                                                         with_bm25=not args.no_bm25)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_after"] = os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
