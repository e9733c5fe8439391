"""Hybrid search: fuse the ranked lists of any two searchers (above the backends, not one of them).

Two fusion methods:

* ``"rrf"`` - reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009):
  ``score(d) = sum over lists of 1 / (rrf_k + rank(d))`` with ``rrf_k = 60``. It needs no score
  calibration, which is why it is the default: BM25 scores are unbounded, cosine scores are not.
* ``"weighted"`` - ``alpha * norm_a(d) + (1 - alpha) * norm_b(d)`` where ``norm`` is the min-max
  normalisation of each list's scores over its top ``depth`` hits (a list whose scores are all
  equal normalises to 1.0), and a document missing from a list gets 0 from it.

Each searcher is asked for ``max(depth, k)`` hits, whatever the offset, so that every page of a
query is cut from one fused list: no document shows on two pages or on none (the lists used to
grow with the offset, and a deeper fusion reorders its tail). Paging ends where the fused list
ends, after at most ``2 * max(depth, k)`` hits. Ties are broken by the best rank the document
reached in either list, then by doc id, so results are deterministic.

Example:
    >>> from spacerini.fusion import HybridSearcher
    >>> hybrid = HybridSearcher(bm25_searcher, dense_searcher, method="rrf")  # doctest: +SKIP
    >>> hybrid.search("neural ranking", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from spacerini.backends import BatchSearcher, Snippeter, check_batch
from spacerini.errors import BackendNotAvailableError, QueryError
from spacerini.records import Hit

NAME = "hybrid"
METHODS = ("rrf", "weighted")
#: The pair fused when a bundle is asked for ``backend="hybrid"``.
DEFAULT_PAIR = ("bm25", "dense")


def rrf_fuse(runs: Sequence[Sequence[Hit]], *, rrf_k: float = 60.0) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of ranked lists.

    Args:
        runs: Ranked lists of hits; each hit's ``rank`` (1-based) is used.
        rrf_k: The RRF constant.

    Returns:
        ``(docid, fused score)`` pairs, best first.
    """
    fused: dict[str, float] = {}
    for run in runs:
        for hit in run:
            fused[hit.docid] = fused.get(hit.docid, 0.0) + 1.0 / (rrf_k + hit.rank)
    return _ordered(fused, runs)


def weighted_fuse(a: Sequence[Hit], b: Sequence[Hit], *, alpha: float = 0.5) -> list[tuple[str, float]]:
    """Weighted sum of min-max normalised scores: ``alpha * a + (1 - alpha) * b``.

    Args:
        a: The first ranked list.
        b: The second ranked list.
        alpha: Weight of ``a``, in [0, 1].

    Returns:
        ``(docid, fused score)`` pairs, best first.
    """
    fused: dict[str, float] = {}
    for run, weight in ((a, alpha), (b, 1.0 - alpha)):
        for docid, norm in _minmax(run).items():
            fused[docid] = fused.get(docid, 0.0) + weight * norm
    return _ordered(fused, (a, b))


def _minmax(run: Sequence[Hit]) -> dict[str, float]:
    if not run:
        return {}
    scores = [hit.score for hit in run]
    low, high = min(scores), max(scores)
    if high == low:
        return {hit.docid: 1.0 for hit in run}
    return {hit.docid: (hit.score - low) / (high - low) for hit in run}


def _ordered(fused: Mapping[str, float], runs: Iterable[Sequence[Hit]]) -> list[tuple[str, float]]:
    """Fused scores best first; ties go to the best rank in any run, then to the docid."""
    best_rank: dict[str, int] = {}
    for run in runs:
        for hit in run:
            best_rank[hit.docid] = min(best_rank.get(hit.docid, hit.rank), hit.rank)
    return sorted(fused.items(), key=lambda item: (-item[1], best_rank[item[0]], item[0]))


class HybridSearcher:
    """Fuses two searchers' ranked lists; same ``search`` / ``batch_search`` API as a backend.

    Args:
        a: The first searcher (for a bundle: BM25).
        b: The second searcher (for a bundle: dense).
        method: ``"rrf"`` or ``"weighted"``.
        depth: Hits fetched from each searcher before fusing (at least ``k``; the same for
            every page of a query).
        rrf_k: The RRF constant.
        alpha: Weight of ``a`` for ``"weighted"``, in [0, 1].

    Raises:
        ValueError: Unknown method or out-of-range parameter.
    """

    def __init__(
        self, a: Any, b: Any, *, method: str = "rrf", depth: int = 100, rrf_k: float = 60.0, alpha: float = 0.5
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        if rrf_k < 0:
            raise ValueError(f"rrf_k must be >= 0, not {rrf_k!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], not {alpha!r}")
        self.a, self.b = a, b
        self.method, self.depth, self.rrf_k, self.alpha = method, depth, float(rrf_k), float(alpha)

    def __repr__(self) -> str:
        return f"HybridSearcher({self.a!r}, {self.b!r}, method={self.method!r}, depth={self.depth})"

    def fuse(self, a: Sequence[Hit], b: Sequence[Hit], n: int) -> list[Hit]:
        """Fuses two ranked lists and returns the top ``n`` as hybrid hits."""
        if self.method == "rrf":
            fused = rrf_fuse([a, b], rrf_k=self.rrf_k)
        else:
            fused = weighted_fuse(a, b, alpha=self.alpha)
        return [
            Hit(docid=docid, score=round(score, 6), rank=rank, backend=NAME)
            for rank, (docid, score) in enumerate(fused[:n], start=1)
        ]

    def search(self, query: str, k: int = 10, offset: int = 0) -> list[Hit]:
        """Returns fused hits ``offset+1 .. offset+k`` with global ranks (fewer, or none, past
        the end of the fused list: see the module's notes on paging).

        A query one searcher rejects (for example only stopwords for BM25) is answered by the
        other alone.

        Raises:
            QueryError: Both searchers reject the query, or k/offset are out of range.
        """
        if k < 1 or offset < 0:
            raise QueryError(f"need k >= 1 and offset >= 0, got k={k}, offset={offset}")
        depth = max(self.depth, k)  # not offset + k: every page comes from the same fused list
        a_hits, a_err = _try(lambda: self.a.search(query, k=depth))
        b_hits, b_err = _try(lambda: self.b.search(query, k=depth))
        if a_err is not None and b_err is not None:
            raise a_err
        return self.fuse(a_hits, b_hits, offset + k)[offset:]

    def batch_search(
        self, queries: Sequence[tuple[str, str]], *, k: int = 1000, threads: int = 1
    ) -> dict[str, list[Hit]]:
        """Searches many ``(qid, text)`` queries; returns ``{qid: fused hits}``.

        Raises:
            QueryError: ``k`` is not positive, a query is empty, or both searchers reject one.
        """
        check_batch(queries, k)
        depth = max(self.depth, k)
        runs_a, errors_a = _batch(self.a, queries, depth, threads)
        runs_b, errors_b = _batch(self.b, queries, depth, threads)
        for qid in errors_a.keys() & errors_b.keys():
            raise errors_a[qid]
        return {qid: self.fuse(runs_a.get(qid, []), runs_b.get(qid, []), k) for qid, _ in queries}

    def snippet(self, query: str, text: str, *, width: int = 240) -> str:
        """A highlighted snippet from the first searcher that makes them (BM25 does), else plain text."""
        for searcher in (self.a, self.b):
            if isinstance(searcher, Snippeter):
                return searcher.snippet(query, text, width=width)
        from spacerini.display import plain_snippet

        return plain_snippet(text, width=width)

    def close(self) -> None:
        """Does nothing: the fused searchers belong to whoever opened them (the bundle)."""


def _try(call: Any) -> tuple[list[Hit], QueryError | None]:
    try:
        return list(call()), None
    except QueryError as exc:
        return [], exc


def _batch(
    searcher: Any, queries: Sequence[tuple[str, str]], depth: int, threads: int
) -> tuple[dict[str, list[Hit]], dict[str, QueryError]]:
    """Runs a batch; returns the hits and, per query the searcher rejected, its error."""
    if isinstance(searcher, BatchSearcher):
        try:
            return searcher.batch_search(list(queries), k=depth, threads=threads), {}
        except QueryError:
            pass  # one rejected query fails a whole batch: go one query at a time
    out: dict[str, list[Hit]] = {}
    errors: dict[str, QueryError] = {}
    for qid, text in queries:
        hits, err = _try(lambda text=text: searcher.search(text, k=depth))
        out[qid] = hits
        if err is not None:
            errors[qid] = err
    return out, errors


def open_hybrid(bundle: Any, *, backends: Sequence[str] = DEFAULT_PAIR, **params: Any) -> HybridSearcher:
    """Builds the hybrid searcher of a bundle from two of its searchers.

    Args:
        bundle: An opened :class:`spacerini.bundle.Bundle`.
        backends: The two backends to fuse, default ``("bm25", "dense")``.
        **params: :class:`HybridSearcher` options (``method``, ``depth``, ``rrf_k``, ``alpha``).

    Raises:
        BackendNotAvailableError: The bundle lacks one of the two backends.
    """
    names = list(backends)
    if len(names) != 2:
        raise ValueError(f"hybrid search fuses exactly two backends, got {names}")
    have = list(bundle.manifest["backends"])
    missing = [name for name in names if name not in have]
    if missing:
        raise BackendNotAvailableError(
            f"{bundle.path}: hybrid search needs the {' and '.join(names)} backends; this bundle lacks "
            f"{', '.join(missing)}; rebuild with `spacerini index ... --backends {','.join(dict.fromkeys([*have, *names]))}`"
        )
    return HybridSearcher(bundle.searcher(names[0]), bundle.searcher(names[1]), **params)
