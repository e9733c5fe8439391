"""Build-time tuning of a dense index's search knobs to a recall target.

How many IVF lists to probe (and, for ``ivfpq``, how many candidates to re-rank), or how wide an
HNSW search must be, for a given recall depends on the vectors: the same ``nprobe`` that finds
97 % of the true neighbours of one encoder's sentence vectors finds 88 % on a more anisotropic
set (see benchmarks/RESULTS.md). So instead of a fixed default, :func:`tune` measures.

It samples stored passages as queries, finds each one's exact top ``k`` (leaving the passage
itself out) by a streamed brute-force scan, then searches the built index with a ladder of knob
values, from the benchmarked defaults up, and keeps the cheapest setting whose recall@``k`` on
the sample reaches the target. It never goes below the defaults: stored passages are easier
queries than real ones, which may lie off the passages' manifold, so the sample can only show
that a corpus needs a wider search, not that a narrower one is safe. Recall counts an answer as right when its exact score reaches the k-th true score,
so duplicate passages (equal scores) do not count as misses. Cost is measured: each setting that
first reaches the target at its ``refine_factor`` is timed (best of three) and the fastest wins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("spacerini.backends.dense")

#: Search-knob values tried, smallest first (each kind's ladder is cut at what makes sense).
NPROBE_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048)
EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
REFINE_FACTORS = (4, 8, 16, 32)


@dataclass
class Tuned:
    """The chosen search knobs and what they measured on the sample."""

    params: dict[str, int]
    recall: float
    queries: int
    tried: list[dict[str, Any]] = field(default_factory=list)


def sample_rows(n_passages: int, want: int, *, seed: int = 0) -> np.ndarray:
    """``want`` distinct passage rows, sorted, drawn reproducibly."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_passages, size=min(want, n_passages), replace=False))


def gather_rows(chunks: Sequence[tuple[Path, Path]], rows: np.ndarray) -> np.ndarray:
    """The vectors of the sorted passage ``rows``, read from the chunk files (memory-mapped)."""
    parts = []
    start = 0
    for vec_path, _ in chunks:
        vectors = np.load(vec_path, mmap_mode="r")
        stop = start + len(vectors)
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            parts.append(np.asarray(vectors[rows[lo:hi] - start], dtype=np.float32))
        start = stop
    return np.ascontiguousarray(np.concatenate(parts))


def exact_kth_scores(
    faiss: Any, chunks: Sequence[tuple[Path, Path]], queries: np.ndarray, rows: np.ndarray, k: int
) -> np.ndarray:
    """Each query's k-th best inner product over all passages but its own row (streamed by chunk)."""
    best = np.full((len(queries), k + 1), -np.inf, dtype=np.float32)
    start = 0
    for vec_path, _ in chunks:
        vectors = np.ascontiguousarray(np.load(vec_path), dtype=np.float32)
        if len(vectors):
            scores, found = faiss.knn(queries, vectors, min(k + 1, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
            scores = np.where(found + start == rows[:, None], -np.inf, scores)  # leave each query's own row out
            merged = np.concatenate([best, scores], axis=1)
            best = -np.sort(-merged, axis=1)[:, : k + 1]
        start += len(vectors)
    return best[:, k - 1]


def _recall(index: Any, queries: np.ndarray, rows: np.ndarray, kth: np.ndarray, k: int) -> float:
    scores, found = index.search(queries, k + 1)
    scores = np.where(found == rows[:, None], -np.inf, scores)  # the query's own row is not an answer
    hits = (scores >= kth[:, None] - 1e-5) & (found >= 0)
    return float(np.minimum(hits.sum(axis=1), k).mean() / k)


def _best_time(call: Callable[[], Any]) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def tune(
    faiss: Any,
    index: Any,
    kind: str,
    chunks: Sequence[tuple[Path, Path]],
    *,
    n_passages: int,
    target: float,
    set_knobs: Callable[[Any, dict[str, int]], None],
    floor: dict[str, int],
    sample: int = 1000,
    k: int = 10,
) -> Tuned:
    """Finds the cheapest search knobs of ``index`` whose sampled recall@``k`` reaches ``target``.

    Args:
        faiss: The faiss module.
        index: The built CPU index (``ivf``, ``ivfpq`` or ``hnsw``).
        kind: Its kind.
        chunks: The (vectors, passage->doc) chunk files the index was built from, in order.
        n_passages: Vectors in the index.
        target: Recall@``k`` to reach, in (0, 1].
        set_knobs: Applies a knob setting (``nprobe``/``refine_factor`` or ``ef_search``) to ``index``.
        floor: The smallest value of each knob tried (the defaults).
        sample: Stored passages used as queries.
        k: Depth of the recall measure.

    Returns:
        The chosen knobs, their sampled recall, and every setting tried.
    """
    rows = sample_rows(n_passages, sample)
    queries = gather_rows(chunks, rows)
    kth = exact_kth_scores(faiss, chunks, queries, rows, k)
    tried: list[dict[str, Any]] = []

    def measure(knobs: dict[str, int]) -> float:
        set_knobs(index, knobs)
        recall = _recall(index, queries, rows, kth, k)
        tried.append({**knobs, "recall": round(recall, 4)})
        return recall

    if kind == "hnsw":
        start = floor["ef_search"]
        families: list[tuple[dict[str, int], str, list[int]]] = [
            ({}, "ef_search", sorted({start} | {e for e in EF_LADDER if e > start}))
        ]
    else:
        nlist = int(faiss.extract_index_ivf(index).nlist)
        start = min(floor["nprobe"], nlist)
        ladder = sorted({start, nlist} | {p for p in NPROBE_LADDER if start < p < nlist})
        if kind == "ivfpq":
            least = floor["refine_factor"]
            factors: Sequence[int | None] = sorted({least} | {f for f in REFINE_FACTORS if f > least})
        else:
            factors = (None,)
        families = [({"refine_factor": f} if f else {}, "nprobe", ladder) for f in factors]

    reaching: list[tuple[dict[str, int], float]] = []
    best_seen: tuple[float, dict[str, int]] = (-1.0, {})
    for fixed, knob, ladder in families:
        lo, hi = 0, len(ladder) - 1
        recalls = {hi: measure({**fixed, knob: ladder[hi]})}  # ladder position -> sampled recall
        if recalls[hi] > best_seen[0]:
            best_seen = (recalls[hi], {**fixed, knob: ladder[hi]})
        if recalls[hi] < target:
            continue  # even the widest search of this family misses the target
        while lo < hi:  # smallest ladder value reaching the target (recall grows with it)
            mid = (lo + hi) // 2
            recalls[mid] = measure({**fixed, knob: ladder[mid]})
            if recalls[mid] >= target:
                hi = mid
            else:
                lo = mid + 1
        reaching.append(({**fixed, knob: ladder[hi]}, recalls[hi]))  # measured in the search above
    if not reaching:
        recall, knobs = best_seen
        logger.warning(
            "dense: no %s search setting reached recall@%d %.3f on %d sampled passages; using the widest (%s, recall %.3f)",
            kind, k, target, len(rows), knobs, recall,
        )
        set_knobs(index, knobs)
        return Tuned(params=knobs, recall=round(recall, 4), queries=len(rows), tried=tried)
    timed = []
    for knobs, recall in reaching:
        set_knobs(index, knobs)
        timed.append((_best_time(lambda: index.search(queries, k + 1)), knobs, recall))
        tried.append({**knobs, "seconds": round(timed[-1][0], 4)})
    _, knobs, recall = min(timed, key=lambda item: item[0])
    set_knobs(index, knobs)
    return Tuned(params=knobs, recall=round(recall, 4), queries=len(rows), tried=tried)
