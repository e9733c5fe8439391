"""Bundles: build a corpus into one folder of indexes, and open it again.

A bundle is built in a temporary folder beside its target and swapped into place only when it
is complete, so a crash or Ctrl-C leaves the previous bundle intact and no half-built one::

    bundle/
      spacerini.json   manifest: format version, source, fields, counts, backends + params, checksums
      docs/            docstore (Parquet)
      lucene/ bm25/    BM25 (Anserini index + fast scorer arrays)
      exact/ bloom/ owners/ dense/   other backends

Example:
    >>> from spacerini import build_bundle, open_bundle
    >>> build_bundle("corpus.jsonl", "my-bundle", backends=["bm25"])  # doctest: +SKIP
    >>> bundle = open_bundle("my-bundle")  # doctest: +SKIP
    >>> bundle.search("neural ranking", k=3)  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from spacerini import __version__
from spacerini.backends import REGISTRY, build_params, check_params, get_backend
from spacerini.docstore import Docstore, DocstoreWriter
from spacerini.errors import (
    BackendNotAvailableError,
    BackendParameterError,
    BundleCorruptError,
    BundleError,
    BundleNotFoundError,
    EmptyCorpusError,
    QueryError,
)
from spacerini.records import Doc, Hit, licence_and_language, top_counts

logger = logging.getLogger(__name__)

MANIFEST = "spacerini.json"
FORMAT_VERSION = 1
#: Longest query accepted, in characters. Longer ones get a QueryError (one clear line).
MAX_QUERY_CHARS = 10_000
#: Licence and language categories counted in the manifest; rarer ones are summed as "(other)".
MAX_CATEGORIES = 200
DEFAULT_BACKENDS: tuple[str, ...] = ("bm25",)
RANKED_BACKENDS = ("bm25", "dense", "hybrid", "exact")


# ------------------------------------------------------------------------------------- build
def build_bundle(
    source: Any,
    out: str | os.PathLike[str],
    *,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    backend_params: Mapping[str, Mapping[str, Any]] | None = None,
    format: str | None = None,
    id_field: str | None = None,
    fields: Sequence[str] | None = None,
    preprocess: Sequence[str] | str | None = None,
    preprocess_options: Mapping[str, Mapping[str, Any]] | None = None,
    threads: int = 1,
    progress: bool = True,
    finish_manifest: Callable[[dict[str, Any]], None] | None = None,
) -> Bundle:
    """Builds a bundle from a corpus, atomically.

    Args:
        source: A path or ``hf:`` spec (see :func:`spacerini.corpus.load_corpus`), a
            :class:`~spacerini.corpus.Corpus`, a ``datasets`` dataset, or an iterable of
            :class:`~spacerini.records.Doc`.
        out: The bundle folder. An existing bundle there is replaced only once the new one is
            complete; an existing folder that is not a bundle is never touched.
        backends: Registry keys of the backends to build, e.g. ``["bm25", "exact"]``.
        backend_params: Per-backend keyword options, e.g. ``{"bm25": {"k1": 1.2}}``.
        format: Source format override (``"code"`` for a folder of source code).
        id_field: The record field holding the document id.
        fields: The record fields joined with "\\n" into the indexed contents.
        preprocess: Steps applied in order before indexing, e.g. ``["dedup", "pii"]`` (see
            :mod:`spacerini.preprocess`); their reports go into the manifest.
        preprocess_options: Per-step options, e.g. ``{"near-dedup": {"threshold": 0.85}}``.
        threads: Threads for backends that can use them.
        progress: Show progress bars.
        finish_manifest: Called with the manifest, after every document is indexed and just
            before it is written, to amend it in place; :func:`optout` carries the rebuilt
            bundle's history over and records how many documents it removed.

    Returns:
        The opened bundle.

    Raises:
        BundleError: ``out`` exists and is not a bundle.
        CorpusError: The source cannot be read (one clear line naming file and line).
        BackendNotAvailableError: An unknown backend was named.
    """
    out_path = Path(out).expanduser().resolve()
    names = _check_backends(backends)
    params = {k: dict(v) for k, v in (backend_params or {}).items()}
    unknown = set(params) - set(names)
    if unknown:
        raise BackendNotAvailableError(f"parameters given for backends not being built: {', '.join(sorted(unknown))}")
    for name, given in params.items():
        check_params(name, given)  # a typo fails here, before any document is read
    if out_path.exists() and not (out_path / MANIFEST).is_file():
        if out_path.is_file() or any(out_path.iterdir()):
            raise BundleError(f"{out_path} exists and is not a Spacerini bundle: choose another --out or remove it")
    steps = _make_steps(preprocess, preprocess_options)  # bad names fail before any work is done
    corpus, source_info = _as_docs(source, format=format, id_field=id_field, fields=fields, progress=progress)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        started = time.perf_counter()
        docs: Iterable[Doc] = corpus
        if steps:
            from spacerini.preprocess import apply

            docs = apply(corpus, steps)
        licences: Counter[str] = Counter()
        languages: Counter[str] = Counter()
        with DocstoreWriter(tmp / "docs") as writer:
            for doc in docs:
                writer.add(doc)
                licence, language = licence_and_language(doc.meta, doc.fields)
                licences[licence] += 1
                languages[language] += 1
        if writer.count == 0:
            raise EmptyCorpusError(f"{source_info.get('source', 'the source')} holds no documents")
        describe = getattr(corpus, "describe", None)
        if describe is not None:  # after the pass, so skip counts and inclusions are filled in
            source_info = describe()
        skipped = getattr(corpus, "skipped", None)
        store = Docstore(tmp / "docs")
        reports: dict[str, Any] = {}
        for name in names:
            module = get_backend(name)
            folder = tmp / backend_folder(module, name)
            folder.mkdir()
            logger.info("building %s over %d documents", name, writer.count)
            report = module.build(
                store.iter_docs, folder, threads=threads, progress=progress, **params.get(name, {})
            )
            reports[name] = report.to_dict()
        manifest = {
            "format_version": FORMAT_VERSION,
            "spacerini_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "source": source_info,
            "counts": {
                "docs": writer.count,
                "text_bytes": writer.text_bytes,
                "licences": top_counts(licences, MAX_CATEGORIES),
                "languages": top_counts(languages, MAX_CATEGORIES),
            },
            "skipped": dict(skipped) if skipped else {},
            "backends": reports,
            "build_seconds": round(time.perf_counter() - started, 3),
            "preprocess": _step_reports(steps),
            "audit_log": [],
        }
        if finish_manifest is not None:
            finish_manifest(manifest)
        manifest["checksums"] = _checksums(tmp)
        _write_json(tmp / MANIFEST, manifest)
        _swap_into_place(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_bundle(out_path)


def optout(
    path: str | os.PathLike[str],
    *,
    owners: Sequence[str] | None = None,
    ids: Iterable[str] | None = None,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Removes opted-out owners' documents and listed ids from every backend of a bundle.

    The bundle is rebuilt from its own docstore without those documents, with the same backends
    and parameters, and swapped in atomically; afterwards no search, count, find, membership or
    owner query returns them. The manifest's ``audit_log`` records the removal (how many names,
    ids and documents, never who).

    Args:
        path: The bundle folder.
        owners: Owner names, matched case-insensitively against ``meta["owner"]``.
        ids: Document ids.
        threads: Threads for the rebuild.
        progress: Show progress bars.

    Returns:
        The audit entry that was recorded.

    Raises:
        PreprocessError: Neither owners nor ids were given.
        BundleNotFoundError: No bundle at ``path``.
    """
    from spacerini.preprocess import apply, make_steps

    old = open_bundle(path)
    steps = make_steps(["optout"], optout={"owners": list(owners or []), "ids": list(ids or [])})
    params: dict[str, dict[str, Any]] = {}
    for name, report in old.manifest["backends"].items():
        accepted = build_params(name)
        params[name] = {k: v for k, v in (report.get("params") or {}).items() if k in accepted}
    docs = apply(old.iter_docs(), steps)
    entry: dict[str, Any] = {
        "action": "optout",
        "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **{k: v for k, v in steps[0].report().get("params", {}).items() if k in ("owners", "ids")},
    }
    before = dict(old.manifest)

    def carry_over(manifest: dict[str, Any]) -> None:
        # The rebuilt bundle keeps its history; every document has passed the step by now.
        entry["removed"] = int(steps[0].report()["removed"])
        manifest["source"] = before.get("source", manifest["source"])
        manifest["preprocess"] = [*before.get("preprocess", []), *manifest["preprocess"]]
        manifest["audit_log"] = [*before.get("audit_log", []), entry]

    build_bundle(
        docs,  # a one-pass iterator: the loader keeps the record it peeks at
        old.path,
        backends=old.backends,
        backend_params=params,
        threads=threads,
        progress=progress,
        finish_manifest=carry_over,
    ).close()
    old.close()
    return entry


def backend_folder(module: Any, name: str) -> str:
    """The bundle sub-folder a backend owns: its ``FOLDER`` (bm25 owns ``lucene/``) or its name."""
    return str(getattr(module, "FOLDER", name))


def _make_steps(names: Sequence[str] | str | None, options: Mapping[str, Mapping[str, Any]] | None) -> list[Any]:
    if not names:
        if options:
            raise BackendNotAvailableError("preprocess options given without --preprocess steps")
        return []
    from spacerini.preprocess import make_steps

    return make_steps(names, **dict(options or {}))


def _step_reports(steps: Sequence[Any]) -> list[dict[str, Any]]:
    if not steps:
        return []
    from spacerini.preprocess import reports

    return reports(steps)


def _check_backends(backends: Sequence[str] | str) -> list[str]:
    if isinstance(backends, str):
        backends = [b for b in backends.split(",") if b.strip()]
    names = []
    for name in backends:
        name = name.strip()
        if name not in REGISTRY:
            raise BackendNotAvailableError(f"unknown backend {name!r}: choose from {', '.join(REGISTRY)}")
        if name not in names:
            names.append(name)
    if not names:
        raise BackendNotAvailableError(f"no backend chosen: choose from {', '.join(REGISTRY)}")
    return names


def _as_docs(
    source: Any, *, format: str | None, id_field: str | None, fields: Sequence[str] | None, progress: bool
) -> tuple[Iterable[Doc], dict[str, Any]]:
    from spacerini.corpus import Corpus, load_corpus

    if isinstance(source, Corpus):
        return source, source.describe()
    # A path, an hf: spec, a datasets object, or an iterable of Doc/dicts from Python.
    corpus = load_corpus(source, format=format, id_field=id_field, fields=fields, progress=progress)
    return corpus, corpus.describe()


def _checksums(folder: Path) -> dict[str, dict[str, Any]]:
    sums: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sums[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _checksums_of(path)}
    return sums


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


_RENAME_EXCHANGE = 2


def _swap_into_place(new: Path, target: Path) -> None:
    """Moves the finished bundle ``new`` to ``target``, replacing an old bundle atomically.

    On Linux, ``renameat2(RENAME_EXCHANGE)`` swaps the two folders in one step, so there is no
    moment without a complete bundle at ``target``. Elsewhere two renames are used, and
    :func:`open_bundle` recovers from a crash between them.
    """
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old bundle
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


# -------------------------------------------------------------------------------------- open
def open_bundle(path: str | os.PathLike[str], *, verify: bool = False) -> Bundle:
    """Opens and validates a bundle.

    Args:
        path: The bundle folder, or ``hf:OWNER/NAME`` for a bundle pushed to a dataset repo.
        verify: Also check every file's SHA-256 (slow on big bundles); sizes are always checked.

    Raises:
        BundleNotFoundError: No folder or no manifest at ``path``.
        BundleCorruptError: The manifest is unreadable, from a newer format, or files are
            missing, truncated or (with ``verify``) altered.
    """
    if str(path).startswith("hf:"):
        from spacerini.deploy import resolve_hf_bundle

        path = resolve_hf_bundle(str(path))
    root = Path(path).expanduser()
    if not root.exists():
        _recover_interrupted_swap(root)
    if not root.is_dir():
        raise BundleNotFoundError(f"{root}: no bundle here; build one with `spacerini index SOURCE --out {root}`")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleNotFoundError(
            f"{root}: not a Spacerini bundle ({MANIFEST} is missing); build one with `spacerini index SOURCE --out {root}`"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleCorruptError(f"{manifest_path}: unreadable manifest ({exc}); rebuild the bundle") from exc
    if not isinstance(manifest, dict) or "backends" not in manifest or "checksums" not in manifest:
        raise BundleCorruptError(f"{manifest_path}: manifest lacks 'backends' or 'checksums'; rebuild the bundle")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleCorruptError(
            f"{manifest_path}: bundle format {version!r} is not supported by spacerini {__version__}; upgrade spacerini"
        )
    _check_files(root, manifest["checksums"], verify=verify)
    return Bundle(root, manifest)


def _recover_interrupted_swap(root: Path) -> None:
    olds = sorted(root.parent.glob(f".{root.name}.old-*")) if root.parent.exists() else []
    if olds and (olds[-1] / MANIFEST).is_file():
        logger.warning("recovering %s from an interrupted swap", root)
        os.rename(olds[-1], root)


def _check_files(root: Path, checksums: Mapping[str, Any], *, verify: bool) -> None:
    for rel, info in checksums.items():
        p = root / rel
        if not p.is_file():
            raise BundleCorruptError(f"{root}: file {rel} is missing; rebuild the bundle")
        if p.stat().st_size != info.get("size"):
            raise BundleCorruptError(
                f"{root}: file {rel} has {p.stat().st_size} bytes, the manifest says {info.get('size')}; rebuild the bundle"
            )
        if verify:
            actual = _checksums_of(p)
            if actual != info.get("sha256"):
                raise BundleCorruptError(f"{root}: file {rel} fails its SHA-256 checksum; rebuild the bundle")


def _checksums_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Bundle:
    """An opened bundle: the docstore plus a searcher per backend, opened on first use.

    Use :func:`open_bundle` rather than this constructor. Thread-safe for searching.
    """

    def __init__(self, path: Path, manifest: Mapping[str, Any]) -> None:
        self.path = path
        self.manifest: Mapping[str, Any] = MappingProxyType(dict(manifest))
        self._searchers: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: Options for hybrid search (``method="rrf"|"weighted"``, ``alpha``, ``depth``, ``rrf_k``).
        self.hybrid_params: dict[str, Any] = {}
        self._open_params: dict[str, dict[str, Any]] = {}
        self._docstore: Docstore | None = None

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, docs={len(self)}, backends={self.backends})"

    def __len__(self) -> int:
        return int(self.manifest["counts"]["docs"])

    @property
    def backends(self) -> list[str]:
        """The backends this bundle was built with."""
        return list(self.manifest["backends"])

    @property
    def docstore(self) -> Docstore:
        """The Parquet docstore."""
        if self._docstore is None:
            self._docstore = Docstore(self.path / "docs")
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
                from spacerini.backends.hybrid import open_hybrid

                searcher = open_hybrid(self, **self.hybrid_params)  # opens bm25 and dense first
                with self._lock:
                    searcher = self._searchers.setdefault("hybrid", searcher)
            return searcher
        if backend not in self.manifest["backends"]:
            raise BackendNotAvailableError(
                f"{self.path}: this bundle has no {backend!r} backend (it has {', '.join(self.backends)}); "
                f"rebuild with `spacerini index ... --backends {','.join([*self.backends, backend])}`"
            )
        with self._lock:
            searcher = self._searchers.get(backend)
            if searcher is None:
                module = get_backend(backend)
                folder = self.path / backend_folder(module, backend)
                searcher = module.open(folder, self.manifest["backends"][backend], **self._open_params.get(backend, {}))
                self._searchers[backend] = searcher
            return searcher

    def configure(self, backend: str, **params: Any) -> None:
        """Sets search-time options of ``backend``, used from its next search on.

        They are the keyword options of the backend's ``open``, e.g.
        ``bundle.configure("dense", ef_search=256)`` or ``bundle.configure("dense", nprobe=64)``;
        ``None`` values are ignored. A searcher already open is closed and reopened with them.

        Raises:
            BackendParameterError: ``backend`` has no such option.
        """
        from spacerini.backends import open_params

        params = {key: value for key, value in params.items() if value is not None}
        unknown = set(params) - open_params(backend)
        if unknown:
            raise BackendParameterError(
                f"backend {backend!r} has no search option(s) {', '.join(sorted(unknown))}"
                f" (it has: {', '.join(sorted(open_params(backend))) or 'none'})"
            )
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
            KeyError: No such document.
        """
        return self.docstore.get(docid)

    def search(
        self, query: str, *, k: int = 10, offset: int = 0, backend: str | None = None, snippets: bool = True
    ) -> list[Hit]:
        """Ranked search with stored fields, provenance and highlighted snippets.

        Args:
            query: Free text. Lucene syntax is treated as plain words.
            k: Number of hits to return (page size).
            offset: Number of hits to skip (pagination); ranks stay global.
            backend: ``"bm25"`` (default when present), ``"dense"``, ``"hybrid"`` or ``"exact"``.
            snippets: Add a highlighted snippet to each hit.

        Raises:
            QueryError: Empty, too long, or bad k/offset.
            BackendNotAvailableError: The bundle lacks the backend.
        """
        query = check_query(query)
        _check_page(k, offset)
        name = backend or self.default_backend()
        searcher = self.searcher(name)
        hits = searcher.search(query, k=k, offset=offset)
        return [self._enrich(hit, query, searcher, snippets=snippets) for hit in hits]

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
            QueryError: A query is too long, or k is not positive.
        """
        _check_page(k, 0)
        for qid, text in queries:
            if len(text) > MAX_QUERY_CHARS:
                raise QueryError(f"query {qid!r} is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,}")
        name = backend or self.default_backend()
        searcher = self.searcher(name)
        batch = getattr(searcher, "batch_search", None)
        if batch is not None:
            return batch(list(queries), k=k, threads=threads)
        return {qid: (searcher.search(text, k=k) if text.strip() else []) for qid, text in queries}

    def _enrich(self, hit: Hit, query: str, searcher: Any, *, snippets: bool) -> Hit:
        try:
            doc = self.docstore.get(hit.docid)
        except KeyError:
            return hit
        snippet = hit.snippet
        if snippets and not snippet:
            make = getattr(searcher, "snippet", None)
            snippet = make(query, doc.text) if make is not None else plain_snippet(doc.text)
        return Hit(
            docid=hit.docid,
            score=hit.score,
            rank=hit.rank,
            snippet=snippet,
            fields=doc.fields,
            meta=doc.meta,
            backend=hit.backend,
        )

    def iter_docs(self) -> Iterator[Doc]:
        """Streams every stored document in corpus order."""
        return self.docstore.iter_docs()

    def info(self) -> dict[str, Any]:
        """A JSON-serialisable summary: path, counts, source, backends and their params."""
        return {
            "path": str(self.path),
            "format_version": self.manifest.get("format_version"),
            "created": self.manifest.get("created"),
            "source": self.manifest.get("source"),
            "counts": self.manifest.get("counts"),
            "backends": {
                name: {"params": rep.get("params", {}), "stats": rep.get("stats", {}), "seconds": rep.get("seconds")}
                for name, rep in self.manifest["backends"].items()
            },
        }

    def close(self) -> None:
        """Closes every opened searcher."""
        with self._lock:
            for searcher in self._searchers.values():
                close: Callable[[], None] | None = getattr(searcher, "close", None)
                if close is not None:
                    close()
            self._searchers.clear()

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
    return query


def _check_page(k: int, offset: int) -> None:
    if not isinstance(k, int) or k < 1 or k > 10_000:
        raise QueryError(f"k must be an integer between 1 and 10000, not {k!r}")
    if not isinstance(offset, int) or offset < 0 or offset > 100_000:
        raise QueryError(f"offset must be an integer between 0 and 100000, not {offset!r}")


def plain_snippet(text: str, *, width: int = 240) -> str:
    """The first ``width`` characters of ``text``, HTML-escaped, for backends without highlighting."""
    import html

    cut = text[:width]
    return html.escape(cut) + ("…" if len(text) > width else "")
