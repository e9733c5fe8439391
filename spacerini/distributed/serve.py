"""Serving a sharded bundle from Ray actors: ``spacerini serve B --engine ray [--ray-address ADDR]``.

A bundle too large for one machine keeps its BM25 and exact indexes per shard
(``shards/NNNNN/<folder>``, see :mod:`spacerini.bundle.shards`). With the Ray engine each shard's
searchers live in a Ray actor on some node of the cluster (one actor per shard, or per group of
contiguous shards: ``shards_per_actor``), and the searchers the bundle hands out in this process
(:class:`RayBM25Searcher`, :class:`RayExactSearcher`) send each query to every actor and merge
their answers exactly as the in-process fan-out does, so every answer (ids, order, scores,
counts, occurrences, snippets) equals ``--engine local``'s:

* **BM25.** The collection's statistics (document count, total term frequency, each term's
  document frequency summed over shards: :func:`~spacerini.backends.bm25.shard_stats`,
  :func:`~spacerini.backends.bm25.scorer.merge_doc_freqs`) are computed once, here, and sent to
  the actors, which score their shards with them
  (:meth:`~spacerini.backends.bm25.scorer.ExactScorer.use_global_stats`): every per-document score
  is the single index's float32. Each actor returns its ``offset + k`` best rows with their raw
  scores; the driver merges them by (score desc, id byte order), then applies Anserini's tie
  adjustment (:func:`~spacerini.backends.bm25.scorer.adjust_ties`) to the merged list, as one
  index would. Query analysis and snippets stay in this process (the first shard's analyzer;
  all shards share one).
* **Exact.** Counts sum over actors. ``find`` asks each actor for its count, then only the actors
  that hold the page for their part of it, in corpus order. ``search`` merges by count, then
  corpus order. ``longest_matches`` takes, for every start in the text, the longest match any
  actor has (the corpus holds a string when one shard does), then sums counts and lists first
  documents in corpus order.

Generations: the actors belong to one generation of the bundle. A new generation (a rebuild, an
opt-out) gets new actors when it is first searched; the old ones are killed when the old
generation's snapshot is closed (:data:`~spacerini.bundle.open.RETIRE_SECONDS` after the
switch, or at :meth:`~spacerini.bundle.open.Bundle.close`). Closing the bundle kills every actor
and stops an embedded Ray it started.

The bundle must be on storage every node sees (as for a Ray build); this process reads the
docstore and each shard's BM25 vocabulary (not its postings), the actors read the rest. Errors
raised in an actor come back as the same :class:`~spacerini.errors.SpaceriniError` class and
one-line message; an actor lost with its node makes queries fail with one line until the bundle
is reopened.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import numpy as np

from spacerini.backends import check_batch
from spacerini.backends.bm25 import NAME as BM25
from spacerini.backends.bm25 import BM25Searcher, shard_stats
from spacerini.backends.bm25.scorer import adjust_ties, merge_doc_freqs
from spacerini.backends.exact import NAME as EXACT
from spacerini.backends.exact import ExactHit, Span, char_bounds, match_runs, run_lengths, validate_query
from spacerini.bundle.shards import fanout_folders, open_fanout
from spacerini.distributed.engine import _import_ray, _rebuild_error, _worker_env, session
from spacerini.errors import (
    BackendParameterError,
    BundleCorruptError,
    BundleError,
    QueryError,
    SpaceriniError,
    one_line,
)
from spacerini.records import Hit

logger = logging.getLogger(__name__)

#: CPUs each shard actor reserves: it waits for queries most of the time.
ACTOR_CPUS = 0.25
#: Queries one actor answers at once (threads in the actor; the indexes are read-only).
ACTOR_CONCURRENCY = 4
#: Seconds the shard actors have to start and open their shards.
START_TIMEOUT = 180.0
#: JVM heap of an actor: BM25 actors start Java only for Lucene's ``Math.log``.
ACTOR_JVM_HEAP = "128m"
#: Queries sent to the actors in one call by ``batch_search`` (bounds the replies' size).
BATCH = 256

#: The fan-out backends whose shards the actors serve; any other is opened in this process.
SERVED = (BM25, EXACT)


class RayServing:
    """The Ray engine of an opened bundle: a Ray connection and the shard actors of each generation.

    Pass it to :func:`~spacerini.bundle.open.open_bundle` as ``engine=`` (``engine="ray"`` makes one
    with the defaults). Thread-safe.

    Args:
        address: The Ray cluster to join (``"HOST:PORT"``, ``"auto"``); ``None`` starts Ray embedded
            on this machine (with this machine's CPUs), stopped again by :meth:`close`. A Ray
            connection already open in this process is used as it is and left open.
        shards_per_actor: Contiguous shards served by one actor. ``None`` (the default): one
            shard per actor, or as few more as make the actors fit in half the cluster's CPUs
            (the other half lets a new generation's actors start while the old ones still serve;
            actors that do not fit would wait for CPUs that never come free).
        actor_cpus: CPUs each actor reserves (Ray places actors where they fit, spread over nodes).

    Raises:
        DependencyMissingError: Ray is not installed (the ``[distributed]`` extra).
        BackendParameterError: A bad ``shards_per_actor`` or ``actor_cpus``.
        BundleError: The cluster cannot be joined or Ray cannot start.
    """

    def __init__(
        self, *, address: str | None = None, shards_per_actor: int | None = None, actor_cpus: float = ACTOR_CPUS
    ) -> None:
        if shards_per_actor is not None and (
            isinstance(shards_per_actor, bool) or not isinstance(shards_per_actor, int) or shards_per_actor < 1
        ):
            raise BackendParameterError(f"shards_per_actor must be a positive integer, not {shards_per_actor!r}")
        if not actor_cpus > 0:
            raise BackendParameterError(f"actor_cpus must be positive, not {actor_cpus!r}")
        self.address = address
        self.shards_per_actor = shards_per_actor
        self.actor_cpus = float(actor_cpus)
        self._ray = _import_ray()
        self._stack = ExitStack()
        self._stack.enter_context(session(address=address, threads=os.cpu_count() or 1))
        self._pools: dict[tuple[Any, ...], _ShardActors] = {}
        self._lock = threading.RLock()  # a pool that fails to start forgets itself while it is held

    def __repr__(self) -> str:
        return f"RayServing(address={self.address!r}, shards_per_actor={self.shards_per_actor}, generations={len(self._pools)})"

    def open_fanout(
        self, module: Any, root: Path, folder_name: str, report: Mapping[str, Any], *, key: Any, **options: Any
    ) -> Any:
        """Opens a fan-out backend's shards: bm25 and exact in Ray actors, any other in this process.

        Args:
            module: The backend module.
            root: The bundle folder.
            folder_name: The backend's folder inside each shard.
            report: The backend's manifest entry (with its ``shards`` list).
            key: Names the bundle generation: searchers opened with the same key share its actors.
            **options: The backend's search-time options.

        Raises:
            BundleCorruptError, BundleError: As the in-process ``open_shards``; or the actors
                could not start.
        """
        name = getattr(module, "NAME", "")
        if name not in SERVED:
            return open_fanout(module, root, folder_name, report, **options)
        folders = fanout_folders(root, folder_name, report)
        reports = list(report["shards"])
        pool = self._acquire((str(root), key), root, len(folders))
        try:
            if name == BM25:
                return RayBM25Searcher(pool, folders, reports, **options)
            if options:
                raise BackendParameterError(f"backend {EXACT!r} has no open option(s) {', '.join(sorted(options))}")
            return RayExactSearcher(pool, folders, reports)
        except BaseException:
            pool.release()
            raise

    def _acquire(self, key: tuple[Any, ...], root: Path, shards: int) -> _ShardActors:
        with self._lock:
            pool = self._pools.get(key)
            if pool is None or pool.dead:
                pool = self._pools[key] = _ShardActors(
                    self._ray, root, shards, self._per_actor(shards), self.actor_cpus, on_empty=self._forget
                )
            elif pool.shards != shards:
                raise BundleCorruptError(f"{root}: the backends list {pool.shards} and {shards} shards")
            pool.refs += 1
            return pool

    def _per_actor(self, shards: int) -> int:
        """Shards per actor: as given, or the fewest that fit the actors in half the cluster's CPUs."""
        if self.shards_per_actor is not None:
            return self.shards_per_actor
        cpus = float(self._ray.cluster_resources().get("CPU", 0))
        actors = max(1, min(shards, int(cpus / 2 / self.actor_cpus)))
        return -(-shards // actors)

    def _forget(self, pool: _ShardActors) -> None:
        with self._lock:
            for key, value in list(self._pools.items()):
                if value is pool:
                    del self._pools[key]

    def actor_nodes(self) -> list[str]:
        """The Ray node id of every live shard actor (of every generation still open)."""
        with self._lock:
            pools = list(self._pools.values())
        return [node for pool in pools for node in pool.nodes]

    def close(self) -> None:
        """Kills every shard actor and stops an embedded Ray this object started."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.kill()
        self._stack.close()


# -- the actors' side, seen from the driver --------------------------------------------------------
class _ShardActors:
    """The actors of one bundle generation, shared by its searchers (killed when the last closes)."""

    def __init__(
        self,
        ray: Any,
        root: Path,
        shards: int,
        shards_per_actor: int,
        actor_cpus: float,
        *,
        on_empty: Callable[[_ShardActors], None],
    ) -> None:
        self._ray = ray
        self.root = root
        self.shards = shards
        self.actor_cpus = actor_cpus
        self.refs = 0
        self.dead = False
        self._on_empty = on_empty
        self._lock = threading.Lock()
        #: The shards of each actor, in corpus order: contiguous runs of ``shards_per_actor``.
        self.groups = [range(i, min(i + shards_per_actor, shards)) for i in range(0, shards, shards_per_actor)]
        env = {**_worker_env(None), "SPACERINI_JVM_HEAP": ACTOR_JVM_HEAP}
        remote = _actor_class(ray).options(
            num_cpus=actor_cpus,
            scheduling_strategy="SPREAD",
            max_concurrency=ACTOR_CONCURRENCY,
            runtime_env={"env_vars": env},
        )
        self.actors = [remote.remote(str(root)) for _ in self.groups]
        try:
            self.nodes: list[str] = self.call("node", timeout=START_TIMEOUT)
        except BaseException:
            self.kill()
            raise
        logger.info(
            "%s: %d shards served by %d Ray actors on %d nodes",
            root, shards, len(self.actors), len(set(self.nodes)),
        )  # fmt: skip

    def call(
        self,
        method: str,
        *args: Any,
        per_actor: Sequence[tuple[Any, ...]] | Mapping[int, tuple[Any, ...]] | None = None,
        only: Sequence[int] | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """Calls ``method`` on the actors (all, or those in ``only``) at once; their results in order.

        Args:
            method: The actor method.
            *args: Arguments for every actor, after ``per_actor``'s.
            per_actor: Each actor's own leading arguments (indexed like :attr:`groups`).
            only: Indexes of the actors to call.
            timeout: Seconds to wait for all of them.

        Raises:
            SpaceriniError: An actor raised it (the same class and one-line message).
            BundleError: An actor died, or did not answer within ``timeout``.
        """
        ray = self._ray
        which = range(len(self.actors)) if only is None else only
        refs = [
            getattr(self.actors[i], method).remote(*(per_actor[i] if per_actor is not None else ()), *args)
            for i in which
        ]  # fmt: skip
        try:
            records = ray.get(refs, timeout=timeout)
        except ray.exceptions.GetTimeoutError as exc:
            for ref in refs:
                with suppress(Exception):  # an actor that never started has nothing to cancel
                    ray.cancel(ref)
            raise BundleError(
                f"{len(refs)} Ray shard actors did not answer {method} within {timeout:.0f} s "
                f"(each reserves num_cpus={self.actor_cpus}): is the cluster full?"
            ) from exc
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None)
            detail = one_line(cause) if isinstance(cause, BaseException) else one_line(exc)
            raise BundleError(
                f"a shard actor of {self.root} failed on Ray: {type(cause or exc).__name__}: {detail}"
            ) from exc
        out = []
        for record in records:
            if "error" in record:
                raise _rebuild_error(record)
            out.append(record["result"])
        return out

    def release(self) -> None:
        """One searcher fewer; the last one kills the actors."""
        with self._lock:
            self.refs -= 1
            last = self.refs <= 0
        if last:
            self.kill()

    def kill(self) -> None:
        """Kills the actors (their shards' memory maps go with them)."""
        with self._lock:
            if self.dead:
                return
            self.dead = True
        for actor in self.actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone with its node, or Ray already shut down
                logger.debug("shard actor already gone", exc_info=True)
        self._on_empty(self)


class RayBM25Searcher(BM25Searcher):
    """BM25 search over shards served by Ray actors, with the answers of one index over them all.

    Analysis and snippets are :class:`~spacerini.backends.bm25.BM25Searcher`'s, here, with the
    first shard's analyzer; ranking happens in the actors (see the module's docstring).

    Args:
        pool: The generation's actors.
        folders: Each shard's bm25 folder, in shard order.
        reports: Each shard's manifest entry.
        scorer: Only ``"exact"`` (as :func:`~spacerini.backends.bm25.open_shards`).

    Raises:
        BundleCorruptError: A shard is missing or unreadable, or the shards were built differently.
        BundleError: No shards, another scorer, or the actors failed.
    """

    def __init__(
        self, pool: _ShardActors, folders: Sequence[Path], reports: Sequence[Mapping[str, Any]], *, scorer: str = "exact"
    ) -> None:
        folders = [Path(f) for f in folders]
        reports = list(reports)
        if not folders:
            raise BundleError("open_shards needs at least one shard")
        if scorer != "exact":
            raise BundleError(f"sharded bm25 search needs scorer='exact', got {scorer!r}")
        stats = [shard_stats(f, r) for f, r in zip(folders, reports, strict=True)]
        params = [{key: s[key] for key in ("analyzer", "k1", "b")} for s in stats]
        for built, folder in zip(params[1:], folders[1:], strict=True):
            if built != params[0]:
                raise BundleCorruptError(
                    f"the bm25 shards were built differently: {folders[0]} with {params[0]}, "
                    f"{folder} with {built}; rebuild them with one analyzer, k1 and b"
                )
        super().__init__(folders[0], reports[0], scorer="exact")
        self._exact = None  # ranking is the actors' (a stray call to the in-process path fails)
        self.shard_dirs = folders
        self.doc_count = sum(int(s["doc_count"]) for s in stats)
        self.sum_total_term_freq = sum(int(s["sum_total_term_freq"]) for s in stats)
        doc_freqs = merge_doc_freqs([s["vocabulary"] for s in stats])
        del stats  # the driver keeps no shard's vocabulary mapped
        self._pool = pool
        pool.call(
            "open_bm25", self.doc_count, self.sum_total_term_freq,
            per_actor=[([str(folders[i]) for i in g], [reports[i] for i in g], [doc_freqs[i] for i in g]) for g in pool.groups],
            timeout=START_TIMEOUT,
        )  # fmt: skip

    def _ranked(self, query: str, n: int, skip: int = 0) -> list[Hit]:
        """:meth:`BM25Searcher.search`'s ranking (after its checks), by the actors."""
        ((ids, scores),) = self._rank([self._count_terms(self.analyze(query))], n)
        return _bm25_hits(ids[skip:], scores[skip:], skip)

    def batch_search(self, queries: Sequence[tuple[str, str]], *, k: int = 1000, threads: int = 1) -> dict[str, list[Hit]]:
        """Searches many ``(qid, text)`` queries; returns ``{qid: hits}``.

        ``threads`` is accepted for the :class:`~spacerini.backends.BatchSearcher` interface; the
        actors rank in parallel whatever it is.

        Raises:
            QueryError: A query is empty or has too many terms.
        """
        return {qid: _bm25_hits(ids, scores, 0) for qid, (ids, scores) in self._ranked_batch(queries, k).items()}

    def batch_search_pairs(
        self, queries: Sequence[tuple[str, str]], *, k: int = 1000, threads: int = 1
    ) -> dict[str, list[tuple[str, float]]]:
        """Like :meth:`batch_search`, as ``(docid, score)`` pairs in rank order.

        Raises:
            QueryError: A query is empty or has too many terms.
        """
        return {qid: list(zip(ids, scores, strict=True)) for qid, (ids, scores) in self._ranked_batch(queries, k).items()}

    def _ranked_batch(self, queries: Sequence[tuple[str, str]], k: int) -> dict[str, tuple[list[str], list[float]]]:
        check_batch(queries, k, min_k=0)
        terms = [self._count_terms(self.analyze(text)) for _, text in queries]
        ranked: list[tuple[list[str], list[float]]] = []
        for first in range(0, len(terms), BATCH):
            ranked.extend(self._rank(terms[first : first + BATCH], k))
        return {qid: result for (qid, _), result in zip(queries, ranked, strict=True)}

    def _rank(self, queries: list[list[tuple[str, int]]], n: int) -> list[tuple[list[str], list[float]]]:
        """Per query, the ``n`` best (ids, tie-adjusted scores) over all shards."""
        if n <= 0 or not queries:
            return [([], []) for _ in queries]
        per_actor = self._pool.call("rank", queries, n)
        return [merge_ranked([answers[q] for answers in per_actor], n) for q in range(len(queries))]

    def close(self) -> None:
        """Releases this searcher's hold on the actors (the last one kills them)."""
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.release()
        super().close()


def merge_ranked(parts: Sequence[tuple[Sequence[str], Sequence[float]]], n: int) -> tuple[list[str], list[float]]:
    """Merges per-shard BM25 top lists into one index's top ``n``.

    Args:
        parts: Per shard (or group of shards), its best ids with their raw float32 scores, in
            Anserini's order (raw score desc, id byte order); each holds at least its own best ``n``.
        n: Hits wanted.

    Returns:
        The ``n`` best ids overall in Anserini's order and their tie-adjusted scores (Anserini's
        ``ScoreTiesAdjusterReranker`` over the merged list, as one index ranks them).
    """
    ids = [docid for part_ids, _ in parts for docid in part_ids]
    raw = np.asarray([score for _, part_scores in parts for score in part_scores], dtype=np.float32)
    values = raw.tolist()
    # Python orders str by code point, which is the byte order of their UTF-8 (Lucene's BytesRef).
    order = sorted(range(len(ids)), key=lambda i: (-values[i], ids[i]))[:n]
    adjusted = adjust_ties(raw[np.asarray(order, dtype=np.int64)]).tolist() if order else []
    return [ids[i] for i in order], adjusted


def _bm25_hits(ids: Sequence[str], scores: Sequence[float], skip: int) -> list[Hit]:
    return [Hit(docid=d, score=s, rank=skip + i, backend=BM25) for i, (d, s) in enumerate(zip(ids, scores, strict=True), 1)]


class RayExactSearcher:
    """Exact text over shards served by Ray actors, answering as one index over them all.

    Offers what :class:`~spacerini.backends.exact.ExactSearcher` offers to the bundle and the
    service: ``count``, ``find``, ``search`` and ``longest_matches``.

    Args:
        pool: The generation's actors.
        folders: Each shard's exact folder, in shard order.
        reports: Each shard's manifest entry.

    Raises:
        BundleCorruptError: A shard is missing, inconsistent, or holds another count of documents
            than its report says.
        BundleError: The actors failed.
    """

    def __init__(self, pool: _ShardActors, folders: Sequence[Path], reports: Sequence[Mapping[str, Any]]) -> None:
        if len(folders) != len(reports):
            raise BundleCorruptError(f"{len(folders)} exact shard folders but {len(reports)} shard reports")
        self._pool: _ShardActors | None = pool
        pool.call(
            "open_exact",
            per_actor=[([str(folders[i]) for i in g], [reports[i] for i in g]) for g in pool.groups],
            timeout=START_TIMEOUT,
        )

    def _actors(self) -> _ShardActors:
        if self._pool is None:
            raise BundleError("the searcher is closed")
        return self._pool

    def count(self, text: str | bytes) -> int:
        """Returns the occurrences of ``text`` in the corpus (overlapping ones included).

        Raises:
            QueryError: See :func:`~spacerini.backends.exact.validate_query`.
        """
        _, pat = validate_query(text)
        return sum(self._actors().call("exact_count", pat))

    def find(self, text: str | bytes, *, k: int = 10, offset: int = 0, context: int = 80) -> list[ExactHit]:
        """Returns occurrences ``offset+1 .. offset+k`` in document order, then offset order.

        Raises:
            QueryError: See :func:`~spacerini.backends.exact.validate_query`; or ``k``/``offset``
                are negative.
        """
        _, pat = validate_query(text)
        if k < 0 or offset < 0:
            raise QueryError("k and offset must not be negative")
        if k == 0:
            return []
        pool = self._actors()
        pages: list[tuple[int, int, int]] = []  # (actor, skip, take) in corpus order
        skip, left = offset, k
        for actor, count in enumerate(pool.call("exact_count", pat)):
            if left <= 0:
                break
            if skip >= count:
                skip -= count
                continue
            take = min(left, count - skip)
            pages.append((actor, skip, take))
            skip, left = 0, left - take
        if not pages:
            return []
        found = pool.call(
            "exact_find", pat, context,
            per_actor={a: (s, t) for a, s, t in pages},
            only=[a for a, _, _ in pages],
        )  # fmt: skip
        rows = [row for page in found for row in page]
        return [ExactHit(docid, char_offset, snippet, offset + i) for i, (docid, char_offset, snippet) in enumerate(rows, 1)]

    def search(self, query: str, k: int = 10, offset: int = 0) -> list[Hit]:
        """Ranks the documents that contain ``query`` verbatim by its number of occurrences.

        Ties keep corpus order, as in :meth:`~spacerini.backends.exact.ExactSearcher.search`.

        Raises:
            QueryError: See :func:`~spacerini.backends.exact.validate_query`; or ``k``/``offset``
                are negative.
        """
        validate_query(query)
        if k < 0 or offset < 0:
            raise QueryError("k and offset must not be negative")
        if k == 0:
            return []
        per_actor = self._actors().call("exact_search", query, offset + k)
        merged = sorted(
            ((score, actor, i, docid, snippet) for actor, rows in enumerate(per_actor) for i, (docid, score, snippet) in enumerate(rows)),
            key=lambda row: (-row[0], row[1], row[2]),
        )[offset : offset + k]  # fmt: skip
        return [
            Hit(docid=docid, score=score, rank=rank, snippet=snippet, backend=EXACT)
            for rank, (score, _, _, docid, snippet) in enumerate(merged, offset + 1)
        ]

    def longest_matches(self, text: str | bytes, *, min_len: int = 20, max_docs: int = 5) -> list[Span]:
        """Returns the maximal spans of ``text`` that occur verbatim in the corpus.

        See :meth:`~spacerini.backends.exact.ExactSearcher.longest_matches`: the same spans, counts
        and documents.

        Raises:
            QueryError: See :func:`~spacerini.backends.exact.validate_query`; or ``min_len`` < 1.
        """
        query, raw = validate_query(text, traced=True)
        if min_len < 1:
            raise QueryError("min_len must be at least 1")
        pool = self._actors()
        # The longest prefix at each start found in the corpus is the longest found in any shard.
        lengths = [max(column) for column in zip(*pool.call("exact_lengths", raw), strict=True)]
        bounds = char_bounds(raw)
        found: list[tuple[int, int]] = []
        max_end = 0
        for i, length in enumerate(lengths):
            end = i + length
            if length >= min_len and end > max_end:
                found.append((i, end))
            max_end = max(max_end, end)
        if not found:
            return []
        patterns = [raw[bounds[i] : bounds[end]] for i, end in found]
        per_actor = pool.call("exact_spans", patterns, max_docs)
        spans = []
        for j, (i, end) in enumerate(found):
            docids = [d for answers in per_actor for d in answers[j][1]][:max_docs]
            count = sum(answers[j][0] for answers in per_actor)
            spans.append(Span(i, end, query[i:end], count, tuple(docids)))
        return spans

    def close(self) -> None:
        """Releases this searcher's hold on the actors (the last one kills them)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.release()

    def __enter__(self) -> RayExactSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- in the actor ------------------------------------------------------------------------------------
def _answer(method: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """An actor method's result as a record; an error Spacerini raises as its class and one line."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return {"result": method(*args, **kwargs)}
        except SpaceriniError as exc:
            return {"error": type(exc).__name__, "message": one_line(exc)}

    return wrapper


class _ShardServer:
    """A Ray actor: the BM25 scorers and the exact index of one group of contiguous shards."""

    def __init__(self, root: str) -> None:
        from spacerini.memory import start_trimming

        self.root = Path(root)
        self._bm25: list[Any] = []
        self._exact: Any = None
        start_trimming()  # a long-lived server process, as `spacerini serve`'s

    @_answer
    def node(self) -> str:
        import ray

        node = ray.get_runtime_context().get_node_id()
        if not self.root.is_dir():
            raise BundleError(
                f"{self.root} is not visible on Ray node {node[:12]}: "
                "a bundle served with --engine ray must be on storage that every node of the cluster sees"
            )
        return node

    @_answer
    def open_bm25(
        self, folders: list[str], reports: list[Mapping[str, Any]], doc_freqs: list[np.ndarray],
        doc_count: int, sum_total_term_freq: int,
    ) -> int:  # fmt: skip
        from spacerini.backends.bm25 import _open_shard_scorer
        from spacerini.backends.bm25.lucene import java_log

        log = java_log()  # Lucene's idf uses Java's Math.log
        scorers = []
        for folder, report, dfs in zip(folders, reports, doc_freqs, strict=True):
            scorer, _ = _open_shard_scorer(Path(folder), report)
            scorer.use_global_stats(doc_count=doc_count, sum_total_term_freq=sum_total_term_freq, doc_freqs=dfs, log=log)
            scorers.append(scorer)
        self._bm25 = scorers
        return len(scorers)

    @_answer
    def rank(self, queries: list[list[tuple[str, int]]], n: int) -> list[tuple[list[str], np.ndarray]]:
        """Per query, this actor's ``n`` best (ids, raw float32 scores) in Anserini's order."""
        if not self._bm25:
            raise BundleError("this shard actor has no bm25 index open")
        out = []
        for terms in queries:
            parts = [_shard_top(scorer, terms, n) for scorer in self._bm25]
            if len(parts) == 1:
                out.append(parts[0])
                continue
            ids = [d for part_ids, _ in parts for d in part_ids]
            raw = np.concatenate([scores for _, scores in parts])
            values = raw.tolist()
            order = sorted(range(len(ids)), key=lambda i: (-values[i], ids[i]))[:n]
            out.append(([ids[i] for i in order], raw[np.asarray(order, dtype=np.int64)]))
        return out

    @_answer
    def open_exact(self, folders: list[str], reports: list[Mapping[str, Any]]) -> int:
        from spacerini.backends.exact import open_shards

        self._exact = open_shards([Path(f) for f in folders], reports)
        return len(self._exact.docids)

    def _exact_index(self) -> Any:
        if self._exact is None:
            raise BundleError("this shard actor has no exact index open")
        return self._exact

    @_answer
    def exact_count(self, pat: bytes) -> int:
        return int(self._exact_index().count(pat))

    @_answer
    def exact_find(self, skip: int, take: int, pat: bytes, context: int) -> list[tuple[str, int, str]]:
        hits = self._exact_index().find(pat, k=take, offset=skip, context=context)
        return [(h.docid, h.offset, h.snippet) for h in hits]

    @_answer
    def exact_search(self, query: str, n: int) -> list[tuple[str, float, str]]:
        return [(h.docid, h.score, h.snippet) for h in self._exact_index().search(query, k=n)]

    @_answer
    def exact_lengths(self, raw: bytes) -> list[int]:
        """For each character of the text, the longest match starting there in these shards.

        Matching statistics, as in ``ExactSearcher.longest_matches``: the match at ``i + 1`` is at
        least the one at ``i`` minus one character.
        """
        index = self._exact_index()
        bounds = char_bounds(raw)
        n = len(bounds) - 1
        return run_lengths(match_runs(n, index.char_occurs(raw, bounds)), n)

    @_answer
    def exact_spans(self, patterns: list[bytes], max_docs: int) -> list[tuple[int, tuple[str, ...]]]:
        index = self._exact_index()
        return [(int(index._count(pat)), index._first_docs(pat, max_docs)) for pat in patterns]


def _shard_top(scorer: Any, terms: list[tuple[str, int]], n: int) -> tuple[list[str], np.ndarray]:
    """A shard's ``n`` best (ids, raw float32 scores): raw score desc, then id byte order."""
    rows, scores = scorer.score(terms)
    if rows.size > n:
        kth = np.partition(scores, rows.size - n)[rows.size - n]  # ties with the n-th stay for the id order
        keep = scores >= kth
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((scorer.id_rank[rows], -scores))[:n]
    return scorer.docids(rows[order]), np.asarray(scores[order], dtype=np.float32)


@functools.cache
def _actor_class(ray: Any) -> Any:
    return ray.remote(_ShardServer)
