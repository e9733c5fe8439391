"""Opening a bundle: validation, and the generation-following :class:`Bundle` and its snapshots."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from spacerini.backends import REGISTRY, BatchSearcher, Snippeter, check_text, get_backend
from spacerini.bundle.manifest import (
    MAX_QUERY_CHARS,
    RANKED_BACKENDS,
    _manifest_key,
    _read_manifest,
    backend_folder,
)
from spacerini.bundle.publish import _recover_interrupted_swap, remove_stale
from spacerini.bundle.shards import open_fanout
from spacerini.display import plain_snippet
from spacerini.docstore import Docstore
from spacerini.errors import (
    BackendNotAvailableError,
    BackendParameterError,
    BundleError,
    BundleNotFoundError,
    DocNotFoundError,
    QueryError,
    UsageError,
)
from spacerini.records import Doc, Hit

logger = logging.getLogger(__name__)


# -------------------------------------------------------------------------------------- open
def open_bundle(
    path: str | os.PathLike[str],
    *,
    verify: bool = False,
    engine: str | Any = "local",
    ray_address: str | None = None,
) -> Bundle:
    """Opens and validates a bundle.

    Args:
        path: The bundle folder, or ``hf:OWNER/NAME`` for a bundle pushed to a dataset repo.
        verify: Also check every file's SHA-256 (slow on big bundles); sizes are always checked.
        engine: Where a sharded bundle's shards are searched: ``"local"`` (in this process) or
            ``"ray"`` (BM25 and exact shards in Ray actors, with the same answers; see
            :mod:`spacerini.distributed.serve`), or a
            :class:`~spacerini.distributed.serve.RayServing` to use. :meth:`Bundle.close`
            kills the actors and stops a Ray it started.
        ray_address: The Ray cluster to join with ``engine="ray"`` (default: start Ray on this machine).

    Raises:
        BundleNotFoundError: No folder or no manifest at ``path``.
        BundleCorruptError: The manifest is unreadable, from a newer format, or files are
            missing, truncated or (with ``verify``) altered.
        BackendParameterError: An unknown engine, or ``ray_address`` without ``engine="ray"``.
        DependencyMissingError: ``engine="ray"`` without the ``[distributed]`` extra.
        UsageError: ``path`` is not a path or a string.
    """
    if not isinstance(path, str | os.PathLike):
        raise UsageError(f"open_bundle needs the bundle's folder as a path or string, not {type(path).__name__}")
    if str(path).startswith("hf:"):
        from spacerini.hub import resolve_hf_bundle

        path = resolve_hf_bundle(str(path))
    root = Path(path).expanduser()
    if not root.exists():
        _recover_interrupted_swap(root)
    if root.is_file():  # a corpus file given where a bundle goes
        raise BundleNotFoundError(
            f"{root}: a file, not a bundle folder; build a bundle from it with "
            f"`spacerini index {root} --out BUNDLE` and pass BUNDLE"
        )
    if not root.is_dir():
        raise BundleNotFoundError(f"{root}: no bundle here; build one with `spacerini index SOURCE --out {root}`")
    remove_stale(root)
    manifest, key = _read_manifest(root, verify=verify)
    if engine == "local":
        if ray_address is not None:
            raise BackendParameterError("--ray-address needs --engine ray")
        return Bundle(root, manifest, key=key)
    if engine != "ray":
        if isinstance(engine, str) or not callable(getattr(engine, "open_fanout", None)):
            raise BackendParameterError(f"unknown engine {engine!r}: choose local or ray")
        return Bundle(root, manifest, key=key, engine=engine)
    from spacerini.distributed.serve import RayServing

    serving = RayServing(address=ray_address)
    try:
        return Bundle(root, manifest, key=key, engine=serving)
    except BaseException:
        serving.close()
        raise


class BundleSnapshot:
    """One generation of a bundle: its manifest, docstore and searchers, opened on first use.

    Every answer computed on one snapshot comes from one generation: a searcher that it opens
    after a newer generation was swapped in is refused (:class:`StaleGenerationError`), and the
    :class:`Bundle` that owns it retries on the new one. Thread-safe for searching.
    """

    def __init__(
        self,
        path: Path,
        manifest: Mapping[str, Any],
        *,
        key: tuple[int, ...] | None = None,
        hybrid_params: dict[str, Any] | None = None,
        open_params: dict[str, dict[str, Any]] | None = None,
        engine: Any = None,
    ) -> None:
        self.path = path
        self.manifest: Mapping[str, Any] = MappingProxyType(dict(manifest))
        self.key = key
        self._searchers: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: Options for hybrid search (``method="rrf"|"weighted"``, ``alpha``, ``depth``, ``rrf_k``).
        self.hybrid_params: dict[str, Any] = {} if hybrid_params is None else hybrid_params
        self._open_params: dict[str, dict[str, Any]] = {} if open_params is None else open_params
        self._docstore: Docstore | None = None
        self._engine = engine  # opens fan-out shards elsewhere (Ray actors); None: in this process
        self.users = 0
        self.retired_at: float | None = None

    def __repr__(self) -> str:
        return f"BundleSnapshot({str(self.path)!r}, generation={self.generation}, docs={len(self)})"

    @property
    def generation(self) -> int:
        """The generation number in the manifest (1 for bundles built before generations)."""
        return int(self.manifest.get("generation", 1))

    def _check_current(self, opened: Any) -> Any:
        """Returns ``opened`` if the files it read are still this generation's, else closes it and raises."""
        if self.key is not None and _manifest_key(self.path) != self.key:
            close: Callable[[], None] | None = getattr(opened, "close", None)
            if close is not None:
                close()
            raise StaleGenerationError(self.path)
        return opened

    def __len__(self) -> int:
        return int(self.manifest["counts"]["docs"])

    @property
    def backends(self) -> list[str]:
        """The backends this bundle was built with."""
        return list(self.manifest["backends"])

    def _get_docstore(self) -> Docstore:
        return self.docstore

    @property
    def docstore(self) -> Docstore:
        """The docstore (see :mod:`spacerini.docstore`)."""
        if self._docstore is None:
            with self._lock:
                if self._docstore is None:
                    self._docstore = self._check_current(Docstore(self.path / "docs"))
        return self._docstore

    def searcher(self, backend: str) -> Any:
        """Returns the (cached) searcher of ``backend``.

        Raises:
            BackendNotAvailableError: The bundle was built without it.
        """
        if backend == "hybrid":
            with self._lock:
                searcher = self._searchers.get("hybrid")
            if searcher is None:
                from spacerini.fusion import open_hybrid

                searcher = open_hybrid(self, **self.hybrid_params)  # opens bm25 and dense first
                with self._lock:
                    searcher = self._searchers.setdefault("hybrid", searcher)
            return searcher
        if backend not in self.manifest["backends"] and backend not in REGISTRY:
            raise BackendNotAvailableError(
                f"unknown backend {backend!r}: this bundle has {', '.join(self.backends)}"
                + (" (and hybrid)" if {"bm25", "dense"} <= set(self.backends) else "")
            )
        if backend not in self.manifest["backends"]:
            raise BackendNotAvailableError(
                f"{self.path}: this bundle has no {backend!r} backend (it has {', '.join(self.backends)}); "
                f"rebuild with `spacerini index ... --backends {','.join([*self.backends, backend])}`"
            )
        with self._lock:
            searcher = self._searchers.get(backend)
            if searcher is None and self.manifest["backends"][backend].get("empty"):
                from spacerini.backends.empty import EmptySearcher

                searcher = self._searchers[backend] = EmptySearcher(backend, self.manifest["backends"][backend])
            if searcher is None:
                module = get_backend(backend)
                report = self.manifest["backends"][backend]
                options = self._open_params.get(backend, {})
                if report.get("shards") and self._engine is not None:  # shards served by the engine
                    searcher = self._engine.open_fanout(
                        module, self.path, backend_folder(module, backend), report, key=self.key, **options
                    )
                elif report.get("shards"):  # fanned out over the bundle's shards
                    searcher = open_fanout(module, self.path, backend_folder(module, backend), report, **options)
                else:
                    searcher = module.open(self.path / backend_folder(module, backend), report, **options)
                self._searchers[backend] = self._check_current(searcher)
            return searcher

    def configure(self, backend: str, **params: Any) -> None:
        """Sets search-time options of ``backend``, used from its next search on.

        They are the keyword options of the backend's ``open``, e.g.
        ``bundle.configure("dense", ef_search=256)`` or ``bundle.configure("dense", nprobe=64)``;
        ``None`` values are ignored. A searcher already open is closed and reopened with them.

        Raises:
            BackendParameterError: ``backend`` has no such option, or a value is out of range.
        """
        from spacerini.backends.options import check_search_options

        params = {key: value for key, value in params.items() if value is not None}
        check_search_options(backend, params)  # names, types and ranges, as the CLI flags declare them
        with self._lock:
            self._open_params[backend] = {**self._open_params.get(backend, {}), **params}
            stale = [self._searchers.pop(name) for name in (backend, "hybrid") if name in self._searchers]
        for searcher in stale:
            close: Callable[[], None] | None = getattr(searcher, "close", None)
            if close is not None:
                close()

    def default_backend(self) -> str:
        """The ranked backend used when none is named: bm25, else the first ranked one."""
        for name in RANKED_BACKENDS:
            if name in self.manifest["backends"]:
                return name  # "hybrid" is never in the manifest: it is built from bm25 + dense
        raise BackendNotAvailableError(f"{self.path}: this bundle has no ranked backend (bm25, dense or exact)")

    def doc(self, docid: str) -> Doc:
        """Returns the stored document ``docid``.

        Raises:
            DocNotFoundError: No such document (a ``KeyError`` too).
        """
        try:
            return self.docstore.get(docid)
        except KeyError:
            raise DocNotFoundError(
                f"{self.path}: no document with id {docid!r} in this bundle "
                f"({len(self):,} documents); ids are the strings of the corpus's id field"
            ) from None

    def _ranked_backend(self, backend: str | None) -> str:
        """``backend`` (or the default), refused when it is a backend that does not rank."""
        name = backend or self.default_backend()
        if name in REGISTRY and name not in RANKED_BACKENDS:
            ranked = [b for b in RANKED_BACKENDS if b in self.manifest["backends"]]
            raise BackendNotAvailableError(
                f"the {name!r} backend does not rank documents, so it cannot search: use backend="
                + (" or ".join(repr(b) for b in ranked) if ranked else "'bm25' (rebuild with it)")
                + {"bloom": " (for membership use `spacerini member`)", "owners": " (for owners use `spacerini owner`)"}.get(name, "")
            )
        return name

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        offset: int = 0,
        backend: str | None = None,
        snippets: bool = True,
        snippet_text: Callable[[Doc], str] | None = None,
        snippet_redact: Callable[[str, int, int], str] | None = None,
    ) -> list[Hit]:
        """Ranked search with stored fields, provenance and highlighted snippets.

        Args:
            query: Free text. Lucene syntax is treated as plain words.
            k: Number of hits to return (page size).
            offset: Number of hits to skip (pagination); ranks stay global.
            backend: ``"bm25"`` (default when present), ``"dense"``, ``"hybrid"`` or ``"exact"``.
            snippets: Add a highlighted snippet to each hit.
            snippet_text: The text a hit's snippet is cut from (default: the document's text);
                the service passes the redacted text, so that no secret is cut in half.
            snippet_redact: ``redact(text, lo, hi)``, a window of a document's text redacted
                (:func:`spacerini.display.redacted_window`): a searcher whose snippets can use it
                (``redacts_snippet_windows``, BM25's) gets the document's own text and redacts
                only the window it shows, instead of ``snippet_text``'s whole redacted text.

        Raises:
            QueryError: Empty, too long, or bad k/offset.
            BackendNotAvailableError: The bundle lacks the backend.
        """
        query = check_query(query)
        _check_page(k, offset)
        name = self._ranked_backend(backend)
        searcher = self.searcher(name)
        hits = searcher.search(query, k=k, offset=offset)
        # Checking the Snippeter protocol costs ~35 us (typing walks the class): once per page.
        cut = searcher.snippet if isinstance(searcher, Snippeter) else None
        if cut is not None and snippet_redact is not None and getattr(searcher, "redacts_snippet_windows", False):
            cut = functools.partial(cut, redact=snippet_redact)
            snippet_text = None
        return [self._enrich(hit, query, cut, snippets=snippets, snippet_text=snippet_text) for hit in hits]

    def batch_search(
        self,
        queries: Sequence[tuple[str, str]],
        *,
        k: int = 1000,
        backend: str | None = None,
        threads: int = 1,
        progress: bool = False,
    ) -> dict[str, list[Hit]]:
        """Searches many ``(qid, text)`` queries; hits carry docid, score and rank only.

        Raises:
            QueryError: ``queries`` is not a list of ``(qid, text)`` pairs (a dict is refused:
                pass ``list(d.items())``), a qid repeats, a text is not a string or too long,
                or k or threads is out of range.
        """
        queries, name = self._batch_args(queries, k, backend, threads)
        return self._batch_hits(queries, k, name, threads)

    def _batch_args(
        self, queries: Any, k: int, backend: str | None, threads: int
    ) -> tuple[list[tuple[str, str]], str]:
        """The checks of every batch call, made once: the queries as a list, and the backend."""
        _check_page(k, 0)
        _check_threads(threads)
        return check_queries(queries), self._ranked_backend(backend)

    def _batch_hits(self, queries: list[tuple[str, str]], k: int, name: str, threads: int) -> dict[str, list[Hit]]:
        searcher = self.searcher(name)
        if isinstance(searcher, BatchSearcher):
            return searcher.batch_search(queries, k=k, threads=threads)
        return {qid: searcher.search(text, k=k) for qid, text in queries}

    def _batch_pairs(
        self, queries: list[tuple[str, str]], k: int, name: str, threads: int
    ) -> dict[str, list[tuple[str, float]]]:
        pairs = getattr(self.searcher(name), "batch_search_pairs", None)
        if pairs is None:
            hits = self._batch_hits(queries, k, name, threads)
            return {qid: [(h.docid, h.score) for h in hs] for qid, hs in hits.items()}
        return pairs(queries, k=k, threads=threads)

    def batch_search_pairs(
        self, queries: Sequence[tuple[str, str]], *, k: int = 1000, backend: str | None = None, threads: int = 1
    ) -> dict[str, list[tuple[str, float]]]:
        """Like :meth:`batch_search`, as ``(docid, score)`` pairs in rank order: what a TREC run
        needs, without building a :class:`Hit` per result (most of the cost at k=1000).

        Raises:
            QueryError: As :meth:`batch_search`.
        """
        queries, name = self._batch_args(queries, k, backend, threads)
        return self._batch_pairs(queries, k, name, threads)

    def batch_search_trec(
        self, queries: Sequence[tuple[str, str]], *, k: int = 1000, backend: str | None = None, threads: int = 1
    ) -> Any:
        """What a TREC run of ``queries`` needs, by the fastest path the backend has: an object
        with ``trec_lines(tag=...)`` (bm25's arrays: no per-hit object at all) or, for other
        backends, the ``{qid: pairs}`` of :meth:`batch_search_pairs`. Either goes to
        :func:`spacerini.eval.write_trec_run`.

        Raises:
            QueryError: As :meth:`batch_search`.
        """
        queries, name = self._batch_args(queries, k, backend, threads)
        searcher = self.searcher(name)
        if not getattr(searcher, "ranks_arrays", False):
            return self._batch_pairs(queries, k, name, threads)
        return searcher.batch_search_arrays(queries, k=k, threads=threads)

    def _enrich(
        self,
        hit: Hit,
        query: str,
        cut: Callable[[str, str], str] | None,
        *,
        snippets: bool,
        snippet_text: Callable[[Doc], str] | None,
    ) -> Hit:
        snippet = hit.snippet
        if snippet_text is not None:
            snippet = ""  # a backend's own snippet (exact's) was cut from the raw text
        need_text = snippets and not snippet
        try:
            if need_text:
                doc = self.docstore.get(hit.docid)
                fields, meta = doc.fields, doc.meta
            else:  # no text needed: a long document's text is not decoded
                fields, meta = self.docstore.display(hit.docid)
        except KeyError:
            return hit
        if need_text:
            text = doc.text if snippet_text is None else snippet_text(doc)
            snippet = cut(query, text) if cut is not None else plain_snippet(text)
        return Hit(
            docid=hit.docid,
            score=hit.score,
            rank=hit.rank,
            snippet=snippet,
            fields=fields,
            meta=meta,
            backend=hit.backend,
        )

    def iter_docs(self) -> Iterator[Doc]:
        """Streams every stored document in corpus order."""
        return self.docstore.iter_docs()

    def info(self) -> dict[str, Any]:
        """A JSON-serialisable summary: path, generation, counts, source, backends and their params."""
        return {
            "path": str(self.path),
            "format_version": self.manifest.get("format_version"),
            "generation": self.generation,
            "shards": list(self.manifest.get("shards") or [{"id": 0, "first_doc": 0, "docs": len(self), "folder": ""}]),
            "created": self.manifest.get("created"),
            "source": self.manifest.get("source"),
            "counts": self.manifest.get("counts"),
            "backends": {
                name: {"params": rep.get("params", {}), "stats": rep.get("stats", {}), "seconds": rep.get("seconds")}
                for name, rep in self.manifest["backends"].items()
            },
        }

    def close(self) -> None:
        """Closes every opened searcher and the docstore's files (reopened if used again)."""
        with self._lock:
            for searcher in self._searchers.values():
                close: Callable[[], None] | None = getattr(searcher, "close", None)
                if close is not None:
                    close()
            self._searchers.clear()
            docstore, self._docstore = self._docstore, None
        close_docstore: Callable[[], None] | None = getattr(docstore, "close", None)
        if close_docstore is not None:
            close_docstore()



class StaleGenerationError(BundleError):
    """A snapshot was asked to open files after a newer generation replaced them.

    :class:`Bundle` and :class:`~spacerini.service.Service` retry on the new generation.
    """

    def __init__(self, path: Path) -> None:
        # The folder's name only: the app shows this line to visitors, who must not learn paths.
        super().__init__(f"{Path(path).name}: the bundle changed while it was being read; try again")


#: How often (seconds) an open :class:`Bundle` checks whether a new generation was published.
RELOAD_SECONDS = 0.5
#: How long a replaced snapshot stays open for answers in flight before it is closed.
RETIRE_SECONDS = 30.0


class Bundle:
    """An opened bundle that follows its generations: searches always see one complete version.

    Each change to the bundle on disk (a rebuild, an opt-out) publishes a new generation. A
    ``Bundle`` notices it within :data:`RELOAD_SECONDS` of the next call (or at once with
    :meth:`reload`) and switches every backend together: a call that started on the old
    generation finishes on it, and no answer mixes two. Use :func:`open_bundle` rather than
    this constructor. Thread-safe for searching.

    Example:
        >>> bundle = open_bundle("my-bundle")  # doctest: +SKIP
        >>> with bundle.pin() as snapshot:  # several calls answered by one generation
        ...     hits = snapshot.search("ranking")
        ...     doc = snapshot.doc(hits[0].docid)
    """

    def __init__(
        self, path: Path, manifest: Mapping[str, Any], *, key: tuple[int, ...] | None = None, engine: Any = None
    ) -> None:
        self.path = path
        #: Where fan-out shards are searched (a :class:`~spacerini.distributed.serve.RayServing`), or None.
        self.engine = engine
        #: Options for hybrid search (``method="rrf"|"weighted"``, ``alpha``, ``depth``, ``rrf_k``).
        self.hybrid_params: dict[str, Any] = {}
        self._open_params: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._current = self._snapshot(manifest, key)
        self._retired: list[BundleSnapshot] = []
        self._retire_timer: threading.Timer | None = None
        self._checked = time.monotonic()

    def _snapshot(self, manifest: Mapping[str, Any], key: tuple[int, ...] | None) -> BundleSnapshot:
        return BundleSnapshot(
            self.path, manifest, key=key, hybrid_params=self.hybrid_params, open_params=self._open_params,
            engine=self.engine,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, generation={self.generation}, docs={len(self)}, backends={self.backends})"

    # -- generations ------------------------------------------------------------------------
    def reload(self) -> bool:
        """Switches to the generation on disk now, if it is newer than the one in use.

        Returns:
            True when a new generation was loaded.

        Raises:
            BundleNotFoundError, BundleCorruptError: The bundle on disk cannot be opened; the
                generation in use stays.
        """
        with self._lock:
            self._checked = time.monotonic()
            if _manifest_key(self.path) == self._current.key:
                return False
        manifest, key = _read_manifest(self.path)
        with self._lock:
            if key == self._current.key:
                return False
            old, self._current = self._current, self._snapshot(manifest, key)
            old.retired_at = time.monotonic()
            self._retired.append(old)
            logger.info("%s: now serving generation %s (was %s)", self.path, self._current.generation, old.generation)
            self._schedule_close()
        self._close_retired()
        return True

    def _schedule_close(self) -> None:
        """Closes the replaced generations once their grace period is over, even when no call
        comes: an idle server must not keep the files of an old generation (those of documents
        an opt-out removed, deleted from disk but still open) indefinitely. Called with the lock held."""
        if self._retire_timer is not None:
            self._retire_timer.cancel()
        timer = self._retire_timer = threading.Timer(RETIRE_SECONDS + 0.05, self._close_retired)
        timer.daemon = True
        timer.name = "spacerini-retire"
        timer.start()

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._checked < RELOAD_SECONDS:
            return
        try:
            self.reload()
        except BundleError as exc:  # keep answering from the generation in use
            logger.warning("%s: cannot load the new version yet (%s)", self.path, exc)

    def _close_retired(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            done = [
                s for s in self._retired
                if force or (s.users == 0 and s.retired_at is not None and now - s.retired_at >= RETIRE_SECONDS)
            ]  # fmt: skip
            self._retired = [s for s in self._retired if s not in done]
        for snap in done:
            snap.close()

    @contextlib.contextmanager
    def pin(self) -> Iterator[BundleSnapshot]:
        """The current generation, kept open (and unchanged) for the ``with`` block."""
        self._maybe_reload()
        with self._lock:
            snap = self._current
            snap.users += 1
        try:
            yield snap
        finally:
            with self._lock:
                snap.users -= 1
            if self._retired:
                self._close_retired()

    def current(self) -> BundleSnapshot:
        """The generation in use, after checking for a newer one (see :meth:`pin` to hold it)."""
        self._maybe_reload()
        return self._current

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        for attempt in (0, 1):
            try:
                with self.pin() as snap:
                    return getattr(snap, method)(*args, **kwargs)
            except StaleGenerationError:
                if attempt:
                    raise
                self.reload()
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def generation(self) -> int:
        """The generation in use (``manifest["generation"]``; 1 for bundles built before them)."""
        return self.current().generation

    @property
    def manifest(self) -> Mapping[str, Any]:
        """The manifest of the generation in use."""
        return self.current().manifest

    # -- the snapshot's API, on the current generation ----------------------------------------
    def __len__(self) -> int:
        return len(self.current())

    @property
    def backends(self) -> list[str]:
        """The backends this bundle was built with."""
        return self.current().backends

    @property
    def docstore(self) -> Docstore:
        """The docstore of the generation in use."""
        return self._call("_get_docstore")

    def searcher(self, backend: str) -> Any:
        """Returns the (cached) searcher of ``backend`` in the generation in use.

        Raises:
            BackendNotAvailableError: The bundle was built without it.
        """
        return self._call("searcher", backend)

    def configure(self, backend: str, **params: Any) -> None:
        """Sets search-time options of ``backend`` (see :meth:`BundleSnapshot.configure`)."""
        self.current().configure(backend, **params)

    def default_backend(self) -> str:
        """The ranked backend used when none is named: bm25, else the first ranked one."""
        return self.current().default_backend()

    def doc(self, docid: str) -> Doc:
        """Returns the stored document ``docid``.

        Raises:
            DocNotFoundError: No such document (a ``KeyError`` too).
        """
        return self._call("doc", docid)

    def __getitem__(self, docid: str) -> Doc:
        """``bundle[docid]``: :meth:`doc`, as a mapping reads.

        Raises:
            DocNotFoundError: No such document (a ``KeyError`` too).
        """
        return self.doc(docid)

    def __contains__(self, docid: object) -> bool:
        """``docid in bundle``: whether the generation in use holds the document."""
        return isinstance(docid, str) and docid in self.docstore

    def __iter__(self) -> Iterator[Doc]:
        """``for doc in bundle``: :meth:`iter_docs` (documents, in corpus order; not ids, unlike
        a mapping, because a bundle is read as a corpus)."""
        return self.iter_docs()

    def search(self, query: str, **options: Any) -> list[Hit]:
        """Ranked search (see :meth:`BundleSnapshot.search`) on one generation."""
        return self._call("search", query, **options)

    def batch_search(self, queries: Sequence[tuple[str, str]], **options: Any) -> dict[str, list[Hit]]:
        """Many queries at once (see :meth:`BundleSnapshot.batch_search`) on one generation."""
        return self._call("batch_search", _read_once(queries), **options)

    def batch_search_pairs(self, queries: Sequence[tuple[str, str]], **options: Any) -> dict[str, list[tuple[str, float]]]:
        """``(docid, score)`` pairs for many queries (see :meth:`BundleSnapshot.batch_search_pairs`)."""
        return self._call("batch_search_pairs", _read_once(queries), **options)

    def batch_search_trec(self, queries: Sequence[tuple[str, str]], **options: Any) -> Any:
        """A TREC run's hits by the fastest path (see :meth:`BundleSnapshot.batch_search_trec`)."""
        return self._call("batch_search_trec", _read_once(queries), **options)

    def iter_docs(self) -> Iterator[Doc]:
        """Streams every stored document of the generation in use, in corpus order."""
        with self.pin() as snap:
            yield from snap.iter_docs()

    def info(self) -> dict[str, Any]:
        """A JSON-serialisable summary: path, generation, counts, source, backends and their params."""
        return self.current().info()

    def close(self) -> None:
        """Closes every opened searcher, of this generation and of replaced ones, and the engine."""
        with self._lock:
            timer, self._retire_timer = self._retire_timer, None
        if timer is not None:
            timer.cancel()
        self._current.close()
        self._close_retired(force=True)
        if self.engine is not None:
            self.engine.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_query(query: Any) -> str:
    """Validates a free-text query and returns it.

    Raises:
        QueryError: Not a string, empty/whitespace, or longer than ``MAX_QUERY_CHARS``.
    """
    if not isinstance(query, str):
        raise QueryError(f"the query must be text, not {type(query).__name__}")
    if not query.strip():
        raise QueryError("the query is empty: type some words to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(
            f"the query is {len(query):,} characters long; the limit is {MAX_QUERY_CHARS:,}: shorten it "
            "(to test whether a long text is in the corpus, use `spacerini member`)"
        )
    if "\x00" in query:
        raise QueryError("the query holds NUL bytes: pass text, not binary data")
    check_text(query)
    return query


def check_queries(queries: Any) -> list[tuple[str, str]]:
    """Validates the ``(qid, text)`` pairs of a batch search and returns them as a list.

    A generator is read once, here, so the search sees every query.

    Raises:
        QueryError: Not a list of pairs (a dict or a string is refused), a qid that is empty,
            not a string or an integer, or repeated (``{qid: hits}`` would keep only one), or a
            text that is not a string, is blank (every backend refuses it alike) or is longer
            than ``MAX_QUERY_CHARS``.
    """
    if isinstance(queries, Mapping):
        raise QueryError("queries must be a list of (qid, text) pairs, not a dict: pass list(queries.items())")
    if isinstance(queries, str | bytes) or not hasattr(queries, "__iter__"):
        raise QueryError(f"queries must be a list of (qid, text) pairs, not {type(queries).__name__}")
    out = list(queries)  # a generator is read once, here
    limit = MAX_QUERY_CHARS
    # Exact types first (a batch is thousands of queries): the slower checks only name a fault.
    for n, pair in enumerate(out, start=1):
        if (type(pair) is tuple or type(pair) is list) and len(pair) == 2:
            qid, text = pair
            if (
                type(text) is str
                and len(text) <= limit
                and text.strip()
                and "\x00" not in text
                and (type(qid) is str and qid.strip() or type(qid) is int)
            ):
                if not text.isascii():  # one flag read for the common case
                    check_text(text, qid)
                continue
        _bad_query(n, pair)
    qids = [pair[0] for pair in out]
    if len(set(qids)) != len(qids):
        seen: dict[Any, int] = {}
        for n, qid in enumerate(qids, start=1):
            if qid in seen:
                raise QueryError(
                    f"query {n} repeats qid {qid!r} (first at query {seen[qid]}); qids must be unique, "
                    "as the results are keyed by them"
                )
            seen[qid] = n
    return [(qid, text) for qid, text in out] if any(type(pair) is not tuple for pair in out) else out


def _read_once(queries: Any) -> Any:
    """``queries`` as a list when it is an iterator (a generator), so that a retry on a newer
    generation sees every query; anything else as it is, for :func:`check_queries` to judge."""
    return list(queries) if isinstance(queries, Iterator) else queries


def _bad_query(n: int, pair: Any) -> None:
    """Raises the :class:`QueryError` that says what is wrong with query ``n``, ``pair`` (or
    returns, for a pair that passes the full checks: a str subclass, say)."""
    if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise QueryError(f"query {n} is {pair!r:.60}, not a (qid, text) pair")
    qid, text = pair
    if isinstance(qid, bool) or not isinstance(qid, str | int) or (isinstance(qid, str) and not qid.strip()):
        raise QueryError(f"query {n} has qid {qid!r:.60}: a qid must be a non-empty string (or an integer)")
    if not isinstance(text, str):
        raise QueryError(f"query {qid!r} must be text, not {type(text).__name__}")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"query {qid!r} is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,}")
    if not text.strip():
        raise QueryError(f"query {qid!r} is empty: give it some text, or leave it out of the batch")
    if "\x00" in text:  # as a single query (check_query): binary data, not text
        raise QueryError(f"query {qid!r} holds NUL bytes: pass text, not binary data", qid=qid)
    check_text(text, qid)


def _check_threads(threads: int) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise QueryError(f"threads must be a positive integer, not {threads!r}")


def _check_page(k: int, offset: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k > 10_000:
        raise QueryError(f"k must be an integer between 1 and 10000, not {k!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 or offset > 100_000:
        raise QueryError(f"offset must be an integer between 0 and 100000, not {offset!r}")
