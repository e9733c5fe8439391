"""ANN sweep for the dense backend: HNSW / HNSW-SQ8 / IVF recall@10 and QPS against exact flat search.

Two sets of 100k 384-d unit vectors (plus 1,000 held-out queries drawn the same way):

* ``text`` - real text, cheap vectors: 101k distinct natural-language lines (comments and
  docstring lines of 6-40 words) from the Python sources on this machine (standard library and
  site-packages, files visited in a seeded random order), each embedded as the mean of
  all-MiniLM-L6-v2's own *input* word-piece embeddings over its tokens, then L2-normalised.
  These are sentence vectors with the vocabulary geometry of the packaged model, but without
  its transformer layers: running the full model over 101k texts takes about an hour on the
  shared 2-core machine, so the full MiniLM outputs are not used here.
* ``minilm`` - the same lines, each encoded by the full all-MiniLM-L6-v2 (``Encoder.encode``,
  the vectors ``dense.build`` stores). About 13 minutes for 101k lines on the 2-core machine
  when it is quiet, so the vectors are cached under ``benchmarks/out/`` (never committed).
* ``gaussian`` - clustered synthetic vectors: a 1,000-component Gaussian mixture in a 48-d
  latent space, randomly projected to 384-d plus isotropic noise. Neighbourhoods overlap, so
  this is a harder case than real text.

Every index searches the same 1,000 queries as one batch (flat's best case: one BLAS matrix
product), with the same number of Faiss OpenMP threads as flat. Timings are interleaved
(flat, candidate, flat, candidate, ...) and the median of ``--trials`` is used for each, so a
burst of load from other processes on the shared machine hits both sides.

Usage: ``python benchmarks/dense_ann.py [--vectors 100000] [--sets minilm,text,gaussian] [--no-sweep]``;
prints one JSON object. Besides the sweep, each set gets an ``auto_default`` row: the index
``dense.build`` makes by default at this size, tuned to its target recall on its own passages
(``dense.build_index``), then measured on the held-out queries. ``benchmarks/dense_bench.py`` runs the default configuration as its ANN part.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_WORD = re.compile(r"[A-Za-z]{2,}")


def text_lines(n: int, *, seed: int = 0) -> list[str]:
    """``n`` distinct natural-language lines from the Python sources on this machine."""
    paths = []
    for key in ("stdlib", "purelib"):
        paths.extend(sorted(Path(sysconfig.get_paths()[key]).rglob("*.py")))
    random.Random(seed).shuffle(paths)
    seen: set[str] = set()
    lines: list[str] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for raw in text.splitlines():
            line = raw.strip().lstrip("#").strip()
            words = line.split()
            if not 6 <= len(words) <= 40 or len(_WORD.findall(line)) < 0.7 * len(words) or line in seen:
                continue
            seen.add(line)
            lines.append(line)
        if len(lines) >= n:
            break
    if len(lines) < n:
        raise RuntimeError(f"only {len(lines)} distinct text lines on this machine, wanted {n}")
    random.Random(seed + 1).shuffle(lines)
    return lines[:n]


def text_vectors(n: int, *, seed: int = 0) -> np.ndarray:
    """Mean of all-MiniLM-L6-v2 input word-piece embeddings over each line's tokens, unit length."""
    from spacerini.encoders import load_encoder

    enc = load_encoder(device="cpu")
    table = enc._model[0].auto_model.get_input_embeddings().weight.detach().cpu().numpy().astype(np.float32)
    ids = enc._tokenizer(text_lines(n, seed=seed), add_special_tokens=False, verbose=False)["input_ids"]
    x = np.empty((len(ids), table.shape[1]), dtype=np.float32)
    for start in range(0, len(ids), 10_000):  # blocks, so the gathered token rows stay small
        block = [row or [0] for row in ids[start : start + 10_000]]
        lengths = np.array([len(row) for row in block])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        gathered = table[np.concatenate([np.asarray(row, dtype=np.int64) for row in block])]
        x[start : start + len(block)] = np.add.reduceat(gathered, starts, axis=0) / lengths[:, None]
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def minilm_vectors(n: int, *, seed: int = 0) -> np.ndarray:
    """The full all-MiniLM-L6-v2 encoding of :func:`text_lines`, cached as ``.npy`` (no pickle)."""
    cache = Path(__file__).resolve().parent / "out" / f"minilm_{n}_{seed}.npy"
    if cache.exists():
        return np.load(cache, allow_pickle=False)
    from spacerini.encoders import load_encoder

    vectors = load_encoder(device="cpu").encode(text_lines(n, seed=seed), batch_size=64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npy")
    np.save(partial, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    partial.replace(cache)
    return vectors


VECTOR_SETS: dict[str, Callable[[int], np.ndarray]] = {}


def gaussian_vectors(n: int, *, dim: int = 384, latent: int = 48, clusters: int = 1000, spread: float = 1.2, seed: int = 0) -> np.ndarray:
    """Clustered synthetic unit vectors (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, latent)).astype(np.float32)
    z = centers[rng.integers(0, clusters, size=n)] + spread * rng.normal(size=(n, latent)).astype(np.float32)
    proj = rng.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    x = z @ proj + 0.1 * rng.normal(size=(n, dim)).astype(np.float32)
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


VECTOR_SETS.update(text=text_vectors, minilm=minilm_vectors, gaussian=gaussian_vectors)


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _flat(vectors: np.ndarray, queries: np.ndarray) -> tuple[Any, np.ndarray]:
    import faiss

    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    flat.search(queries[:10], 10)
    _, exact = flat.search(queries, 10)
    return flat, exact


def measure(index: Any, flat: Any, queries: np.ndarray, exact: np.ndarray, *, trials: int) -> dict[str, Any]:
    """Recall@10 of ``index`` against ``exact``, and its QPS against flat's, timed interleaved."""
    index.search(queries[:10], 10)
    _, got = index.search(queries, 10)
    recall = float(np.mean([len(set(got[i].tolist()) & set(exact[i].tolist())) / 10 for i in range(len(queries))]))
    flat_times, times = [], []
    for _ in range(trials):
        flat_times.append(_timed(lambda: flat.search(queries, 10)))
        times.append(_timed(lambda: index.search(queries, 10)))
    return {"recall_at_10": round(recall, 4), "qps": round(len(queries) / statistics.median(times), 1),
            "flat_qps": round(len(queries) / statistics.median(flat_times), 1),
            "qps_ratio_vs_flat": round(statistics.median(flat_times) / statistics.median(times), 2)}


def sweep(vectors: np.ndarray, queries: np.ndarray, configs: list[dict[str, Any]], *, threads: int, trials: int) -> dict[str, Any]:
    """Builds each configured index and measures recall@10 and QPS against flat, interleaved."""
    import faiss

    from spacerini.backends import dense

    faiss.omp_set_num_threads(threads)
    dim = vectors.shape[1]
    flat, exact = _flat(vectors, queries)
    rows = []
    for config in configs:
        kind = config["kind"]
        started = time.perf_counter()
        if kind in ("ivf", "ivfpq"):
            index = dense.make_index(faiss, kind, dim, nlist=config["nlist"])
            index.train(vectors[np.random.default_rng(0).choice(len(vectors), min(len(vectors), 64 * config["nlist"]), replace=False)])
        else:
            index = dense.make_index(faiss, kind, dim, hnsw_m=config["m"], ef_construction=config["ef_construction"])
            if kind == "hnsw_sq8":
                index.train(vectors)
        index.add(vectors)
        build_s = time.perf_counter() - started
        knob = "ef_search" if kind.startswith("hnsw") else "nprobe"
        for value in config[knob + "s"]:
            for factor in config.get("refine_factors", [None]):
                dense.set_search_param(faiss, index, kind, value, refine_factor=factor)
                row = {key: value for key, value in config.items() if not key.endswith("s") or key == "ef_constructions"}
                row.update({knob: value, "build_s": round(build_s, 1)})
                if factor is not None:
                    row["refine_factor"] = factor
                row.update(measure(index, flat, queries, exact, trials=trials))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return {"vectors": len(vectors), "dim": dim, "queries": len(queries), "threads": threads, "trials": trials, "rows": rows}


def auto_default(vectors: np.ndarray, queries: np.ndarray, *, threads: int, trials: int) -> dict[str, Any]:
    """What ``dense.build`` does by default at this size (``index="auto"``, tuned to its target
    recall on its own passages), measured on the held-out ``queries``."""
    import tempfile

    import faiss

    from spacerini.backends import dense

    faiss.omp_set_num_threads(threads)
    n = len(vectors)
    kind, _ = dense.auto_index(n)
    flat, exact = _flat(vectors, queries)
    with tempfile.TemporaryDirectory() as tmp:
        chunks = []
        for number, start in enumerate(range(0, n, 10_000)):
            vec_path, doc_path = dense._chunk_paths(Path(tmp), number)
            dense._save_npy(vec_path, vectors[start : start + 10_000])
            dense._save_npy(doc_path, np.arange(start, min(n, start + 10_000), dtype=np.int32))
            chunks.append((vec_path, doc_path))
        started = time.perf_counter()
        nlist = dense.default_nlist(n) if kind in ("ivf", "ivfpq") else None
        index, knobs, tuned = dense.build_index(
            faiss, kind, chunks, dim=vectors.shape[1], n_passages=n, hnsw_m=dense.HNSW_DEFAULTS["hnsw_m"],
            ef_construction=dense.HNSW_DEFAULTS["ef_construction"], nlist=nlist, gpus=0, progress=False, knobs={},
            target_recall=dense.DEFAULT_TARGET_RECALL,
        )
        build_s = time.perf_counter() - started
    row: dict[str, Any] = {"index": kind, "nlist": nlist, **knobs, "build_and_tune_s": round(build_s, 1),
                           "target_recall": dense.DEFAULT_TARGET_RECALL,
                           "sampled_recall": tuned.recall if tuned else None}
    row.update(measure(index, flat, queries, exact, trials=trials))
    return row


DEFAULT_CONFIGS: list[dict[str, Any]] = [
    {"kind": "ivfpq", "nlist": 1265, "nprobes": [48, 64, 96, 105, 128, 158], "refine_factors": [4, 8, 16]},
    {"kind": "hnsw", "m": 16, "ef_construction": 200, "ef_searchs": [32, 48, 64, 96, 128]},
    {"kind": "hnsw", "m": 32, "ef_construction": 80, "ef_searchs": [32, 48, 64, 96]},
    {"kind": "ivf", "nlist": 1265, "nprobes": [16, 32, 64]},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--sets", default="minilm,text,gaussian")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--no-sweep", action="store_true", help="Only the auto default (what dense.build does).")
    args = parser.parse_args()
    out: dict[str, Any] = {"bench": "dense_ann"}
    for name in args.sets.split(","):
        make = VECTOR_SETS[name]
        started = time.perf_counter()
        data = make(args.vectors + args.queries)
        prep = time.perf_counter() - started
        configs = [] if args.no_sweep else DEFAULT_CONFIGS
        result = sweep(data[: args.vectors], data[args.vectors :], configs, threads=args.threads, trials=args.trials)
        result["prepare_s"] = round(prep, 1)
        result["auto_default"] = auto_default(data[: args.vectors], data[args.vectors :], threads=args.threads, trials=args.trials)
        print(json.dumps({name: result["auto_default"]}), file=sys.stderr, flush=True)
        out[name] = result
    print(json.dumps(out))


if __name__ == "__main__":
    main()
