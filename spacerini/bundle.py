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

import contextlib
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
from spacerini.display import plain_snippet
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
    wait: bool = True,
    finish_manifest: Callable[[dict[str, Any]], None] | None = None,
) -> Bundle:
    """Builds a bundle from a corpus, atomically.

    The build holds the bundle's exclusive lock (``.NAME.lock`` beside it) from start to
    finish, so two commands that change one bundle never interleave; each build writes a new
    generation (``manifest["generation"]``), which open :class:`Bundle` objects and running apps
    pick up within :data:`RELOAD_SECONDS`.

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
        wait: When another command is changing the bundle, wait for it (saying so in the log);
            when False, raise :class:`~spacerini.errors.BundleLockedError` at once.
        finish_manifest: Called with the manifest, after every document is indexed and just
            before it is written, to amend it in place; :func:`optout` carries the rebuilt
            bundle's history over and records how many documents it removed.

    Returns:
        The opened bundle.

    Raises:
        BundleError: ``out`` exists and is not a bundle.
        CorpusError: The source cannot be read (one clear line naming file and line).
        BackendNotAvailableError: An unknown backend was named.
        BundleLockedError: ``wait`` is False and another command holds the bundle's lock.
    """
    out_path = Path(out).expanduser().resolve()
    with bundle_lock(out_path, wait=wait):
        return _build_locked(
            source, out_path, backends=backends, backend_params=backend_params, format=format,
            id_field=id_field, fields=fields, preprocess=preprocess, preprocess_options=preprocess_options,
            threads=threads, progress=progress, finish_manifest=finish_manifest,
        )  # fmt: skip


def _build_locked(
    source: Any,
    out_path: Path,
    *,
    backends: Sequence[str],
    backend_params: Mapping[str, Mapping[str, Any]] | None,
    format: str | None,
    id_field: str | None,
    fields: Sequence[str] | None,
    preprocess: Sequence[str] | str | None,
    preprocess_options: Mapping[str, Mapping[str, Any]] | None,
    threads: int,
    progress: bool,
    finish_manifest: Callable[[dict[str, Any]], None] | None,
    allow_empty: bool = False,
) -> Bundle:
    """:func:`build_bundle` once the caller holds the bundle's lock."""
    remove_stale(out_path, locked=True)
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

    generation = _previous_generation(out_path) + 1
    tmp = out_path.parent / f".{out_path.name}{_BUILDING}{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
        if writer.count == 0 and not allow_empty:
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
            if writer.count == 0:  # an opt-out removed everything: see spacerini.backends.empty
                reports[name] = {"params": dict(params.get(name, {})), "stats": {"docs": 0}, "empty": True}
                continue
            logger.info("building %s over %d documents", name, writer.count)
            report = module.build(
                store.iter_docs, folder, threads=threads, progress=progress, **params.get(name, {})
            )
            reports[name] = report.to_dict()
        manifest = {
            "format_version": FORMAT_VERSION,
            "generation": generation,
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
        previous = _swap_into_place(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if previous is not None:
        _discard(previous, out_path)
    return open_bundle(out_path)


def optout(
    path: str | os.PathLike[str],
    *,
    owners: Sequence[str] | None = None,
    ids: Iterable[str] | None = None,
    request_id: str | None = None,
    threads: int = 1,
    progress: bool = True,
    wait: bool = True,
) -> dict[str, Any]:
    """Removes opted-out owners' documents and listed ids from every backend of a bundle.

    Under the bundle's lock, the docstore is read and the bundle is rebuilt from it without
    those documents, with the same backends and parameters, and swapped in atomically; the old
    tree is deleted before this returns. Afterwards no search, count, find, membership or owner
    query returns them, and running apps switch to the new generation. The manifest's
    ``audit_log`` records the removal: how many names and ids, the request id, and the SHA-256
    of each removed document id, never a name or a text. An owner who owns every document can
    be removed: the result is an empty bundle.

    Args:
        path: The bundle folder.
        owners: Owner names, matched as the owner lookup matches them (case, accents and runs
            of whitespace or punctuation do not matter: "Jane  Doe" is "jane doe").
        ids: Document ids.
        request_id: The removal request this applies (recorded in the audit log).
        threads: Threads for the rebuild.
        progress: Show progress bars.
        wait: Wait for another command changing the bundle (else raise BundleLockedError).

    Returns:
        The audit entry that was recorded.

    Raises:
        PreprocessError: Neither owners nor ids were given.
        BundleNotFoundError: No bundle at ``path``.
        OwnerNotFoundError: No document matches any owner or id given; nothing was changed.
        BundleLockedError: ``wait`` is False and another command holds the lock.
    """
    from spacerini.errors import OwnerNotFoundError, PreprocessError

    wanted_owners = {_owner_key(o) for o in owners or () if _owner_key(o)}
    wanted_ids = {str(i).strip() for i in ids or () if str(i).strip()}
    if not wanted_owners and not wanted_ids:
        raise PreprocessError("opt-out needs at least one owner name or document id")
    root = Path(path).expanduser().resolve()
    with bundle_lock(root, wait=wait):
        old = open_bundle(root)  # read under the lock: a concurrent opt-out has finished by now
        try:
            removed, owners_found = _optout_matches(old, wanted_owners, wanted_ids)
            if not removed:
                what = " or ".join(
                    part for part in (
                        f"owner(s) {', '.join(sorted(wanted_owners))}" if wanted_owners else "",
                        f"{len(wanted_ids):,} listed id(s)" if wanted_ids else "",
                    ) if part
                )  # fmt: skip
                raise OwnerNotFoundError(
                    f"{root}: no document of {what} is in this bundle; nothing was changed "
                    "(owner names are matched as `spacerini owner` matches them)"
                )
            missing = wanted_owners - owners_found
            if missing:
                logger.warning("%d owner name(s) given have no document in %s", len(missing), root)
            params: dict[str, dict[str, Any]] = {}
            for name, report in old.manifest["backends"].items():
                accepted = build_params(name)
                params[name] = {k: v for k, v in (report.get("params") or {}).items() if k in accepted}
            entry: dict[str, Any] = {
                "action": "optout",
                "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "request_id": request_id,
                "owners": len(wanted_owners),
                "owners_not_found": len(missing),
                "ids": len(wanted_ids),
                "ids_not_found": len(wanted_ids - removed),
                "removed": len(removed),
                "removed_id_sha256": sorted(hashlib.sha256(d.encode("utf-8", "surrogatepass")).hexdigest() for d in removed),
            }
            before = dict(old.manifest)

            def carry_over(manifest: dict[str, Any]) -> None:
                manifest["source"] = before.get("source", manifest["source"])
                manifest["preprocess"] = list(before.get("preprocess", []))
                manifest["audit_log"] = [*before.get("audit_log", []), entry]

            docs = _StoredDocs(
                (doc for doc in old.iter_docs() if doc.id not in removed), before.get("source") or {}
            )
            _build_locked(
                docs, root, backends=old.backends, backend_params=params, format=None, id_field=None,
                fields=None, preprocess=None, preprocess_options=None, threads=threads, progress=progress,
                finish_manifest=carry_over, allow_empty=True,
            ).close()  # fmt: skip
        finally:
            old.close()
    return entry


def _owner_key(name: Any) -> str:
    """An owner name as the owner lookup compares it (:func:`spacerini.backends.owners.normalise`)."""
    from spacerini.backends.owners import normalise

    return normalise(str(name))


def _optout_matches(bundle: Bundle, owners: set[str], ids: set[str]) -> tuple[set[str], set[str]]:
    """The ids of the documents an opt-out removes, and which of ``owners`` own any document."""
    from spacerini.records import owner_names

    removed: set[str] = set()
    found: set[str] = set()
    for row in bundle.docstore.iter_meta():
        docid = row["id"]
        if docid in ids:
            removed.add(docid)
        if owners:
            meta = json.loads(row["meta"]) if row["meta"] else {}
            fields = json.loads(row["fields"]) if row["fields"] else {}
            names = owner_names(meta.get("owner")) or owner_names(fields.get("owner"))
            hit = {_owner_key(n) for n in names} & owners
            if hit:
                found |= hit
                removed.add(docid)
    return removed, found


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


class _StoredDocs:
    """Docs that come from a bundle's own docstore (an opt-out's rebuild): indexed as they are,
    without the loader's checks, which they passed when the bundle was first built."""

    def __init__(self, docs: Iterable[Doc], source: Mapping[str, Any]) -> None:
        self._docs = docs
        self._source = dict(source)

    def __iter__(self) -> Iterator[Doc]:
        return iter(self._docs)

    def describe(self) -> dict[str, Any]:
        return dict(self._source)


def _as_docs(
    source: Any, *, format: str | None, id_field: str | None, fields: Sequence[str] | None, progress: bool
) -> tuple[Iterable[Doc], dict[str, Any]]:
    from spacerini.corpus import Corpus, load_corpus

    if isinstance(source, Corpus | _StoredDocs):
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
_BUILDING = ".building-"
_OLD = ".old-"


def _swap_into_place(new: Path, target: Path) -> Path | None:
    """Moves the finished bundle ``new`` to ``target``, replacing an old bundle atomically.

    On Linux, ``renameat2(RENAME_EXCHANGE)`` swaps the two folders in one step, so there is no
    moment without a complete bundle at ``target``. Elsewhere two renames are used, and
    :func:`open_bundle` recovers from a crash between them.

    Returns:
        The folder now holding the previous bundle (for :func:`_discard`), or None.
    """
    if not target.exists():
        os.rename(new, target)
        return None
    if _exchange(new, target):
        return new  # `new` now holds the old bundle; a crash before it is deleted leaves a stale folder
    old = target.parent / f".{target.name}{_OLD}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    os.rename(new, target)
    return old


def _discard(previous: Path, target: Path) -> None:
    """Deletes the tree of the bundle just replaced (it may hold opted-out documents).

    Raises:
        BundleError: It could not be deleted; the new bundle is in place all the same.
    """
    try:
        shutil.rmtree(previous)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BundleError(
            f"{target} was replaced, but its previous version at {previous} could not be deleted ({exc}); delete it"
        ) from exc


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def lock_path(bundle: str | os.PathLike[str]) -> Path:
    """The lock file of a bundle: ``.NAME.lock`` beside the bundle folder (never inside it)."""
    root = Path(bundle).expanduser().resolve()
    return root.parent / f".{root.name}.lock"


@contextlib.contextmanager
def bundle_lock(bundle: str | os.PathLike[str], *, wait: bool = True) -> Iterator[None]:
    """Holds a bundle's exclusive lock: every command that changes the bundle takes it.

    The lock is an ``flock`` on ``.NAME.lock`` beside the bundle, so it is released by the
    kernel when its holder dies, even by ``kill -9``. Its holder deletes the file before it
    unlocks, so no lock file outlives the command; a waiter that then finds it locked a deleted
    file tries again on the path (the usual lock-file protocol; ``filelock`` keeps the file instead).

    Args:
        bundle: The bundle folder (it need not exist yet).
        wait: Wait for the holder to finish (logging once that it waits), or raise at once.

    Raises:
        BundleLockedError: ``wait`` is False and another command holds the lock.
    """
    import fcntl

    from spacerini.errors import BundleLockedError

    path = lock_path(bundle)
    path.parent.mkdir(parents=True, exist_ok=True)
    said = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                raise BundleLockedError(
                    f"{Path(bundle)}: another spacerini command is changing this bundle; "
                    "try again when it has finished, or leave out --no-wait to wait for it"
                ) from None
            if not said:
                logger.warning("%s: another spacerini command is changing this bundle; waiting for it to finish", bundle)
                said = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        held = os.fstat(fd)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # the holder we waited for deleted this file: lock the path anew
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)  # closing the last descriptor releases the flock


def remove_stale(bundle: str | os.PathLike[str], *, locked: bool = False) -> list[Path]:
    """Deletes what dead builds left beside a bundle: ``.NAME.building-PID-*`` and ``.NAME.old-PID-*``.

    A build killed by ``kill -9`` (or a crash between the swap and the delete) leaves such a
    folder; one of them may hold a bundle's pre-opt-out tree. Holding the bundle's lock, every
    such folder is stale (a build holds the lock while its folder exists); otherwise only those
    whose process is gone are removed.

    Returns:
        The folders removed.
    """
    root = Path(bundle).expanduser().resolve()
    if not root.parent.is_dir():
        return []
    removed = []
    for marker in (_BUILDING, _OLD):
        for folder in root.parent.glob(f".{glob_escape(root.name)}{marker}*"):
            pid = _pid_of(folder.name.rsplit(marker, 1)[1])
            if folder.is_dir() and (locked or pid is None or not _alive(pid)):
                if marker == _OLD and not root.exists():
                    continue  # the only copy of the bundle: open_bundle renames it back
                logger.warning("removing %s, left by an interrupted build", folder)
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    import glob

    return glob.escape(name)


def _pid_of(suffix: str) -> int | None:
    head = suffix.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _previous_generation(root: Path) -> int:
    """The generation of the bundle at ``root`` (0 when there is none, 1 for older bundles)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return int(manifest.get("generation", 1)) if isinstance(manifest, dict) else 0


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
        from spacerini.hub import resolve_hf_bundle

        path = resolve_hf_bundle(str(path))
    root = Path(path).expanduser()
    if not root.exists():
        _recover_interrupted_swap(root)
    if not root.is_dir():
        raise BundleNotFoundError(f"{root}: no bundle here; build one with `spacerini index SOURCE --out {root}`")
    remove_stale(root)
    manifest, key = _read_manifest(root, verify=verify)
    return Bundle(root, manifest, key=key)


def _read_manifest(root: Path, *, verify: bool = False) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Reads and validates ``root``'s manifest; returns it with the stat key of the file read."""
    manifest_path = root / MANIFEST
    try:
        with manifest_path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read()
    except FileNotFoundError:
        raise BundleNotFoundError(
            f"{root}: not a Spacerini bundle ({MANIFEST} is missing); build one with `spacerini index SOURCE --out {root}`"
        ) from None
    except IsADirectoryError:
        raise BundleCorruptError(f"{manifest_path}: unreadable manifest (a folder); rebuild the bundle") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleCorruptError(f"{manifest_path}: unreadable manifest ({exc}); rebuild the bundle") from exc
    if not isinstance(manifest, dict) or "backends" not in manifest or "checksums" not in manifest:
        raise BundleCorruptError(f"{manifest_path}: manifest lacks 'backends' or 'checksums'; rebuild the bundle")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleCorruptError(
            f"{manifest_path}: bundle format {version!r} is not supported by spacerini {__version__}; upgrade spacerini"
        )
    _check_files(root, manifest["checksums"], verify=verify)
    return manifest, _stat_key(st)


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _manifest_key(root: Path) -> tuple[int, ...] | None:
    try:
        return _stat_key(os.stat(root / MANIFEST))
    except OSError:
        return None


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
        """The Parquet docstore."""
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
                folder = self.path / backend_folder(module, backend)
                searcher = module.open(folder, self.manifest["backends"][backend], **self._open_params.get(backend, {}))
                self._searchers[backend] = self._check_current(searcher)
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
        self,
        query: str,
        *,
        k: int = 10,
        offset: int = 0,
        backend: str | None = None,
        snippets: bool = True,
        snippet_text: Callable[[Doc], str] | None = None,
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

        Raises:
            QueryError: Empty, too long, or bad k/offset.
            BackendNotAvailableError: The bundle lacks the backend.
        """
        query = check_query(query)
        _check_page(k, offset)
        name = backend or self.default_backend()
        searcher = self.searcher(name)
        hits = searcher.search(query, k=k, offset=offset)
        return [self._enrich(hit, query, searcher, snippets=snippets, snippet_text=snippet_text) for hit in hits]

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

    def batch_search_pairs(
        self, queries: Sequence[tuple[str, str]], *, k: int = 1000, backend: str | None = None, threads: int = 1
    ) -> dict[str, list[tuple[str, float]]]:
        """Like :meth:`batch_search`, as ``(docid, score)`` pairs in rank order: what a TREC run
        needs, without building a :class:`Hit` per result (most of the cost at k=1000).

        Raises:
            QueryError: A query is too long, or k is not positive.
        """
        name = backend or self.default_backend()
        pairs = getattr(self.searcher(name), "batch_search_pairs", None)
        if pairs is None:
            hits = self.batch_search(queries, k=k, backend=name, threads=threads)
            return {qid: [(h.docid, h.score) for h in hs] for qid, hs in hits.items()}
        _check_page(k, 0)
        for qid, text in queries:
            if len(text) > MAX_QUERY_CHARS:
                raise QueryError(f"query {qid!r} is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,}")
        return pairs(list(queries), k=k, threads=threads)

    def _enrich(
        self, hit: Hit, query: str, searcher: Any, *, snippets: bool, snippet_text: Callable[[Doc], str] | None
    ) -> Hit:
        try:
            doc = self.docstore.get(hit.docid)
        except KeyError:
            return hit
        snippet = hit.snippet
        if snippet_text is not None:
            snippet = ""  # a backend's own snippet (exact's) was cut from the raw text
        if snippets and not snippet:
            text = doc.text if snippet_text is None else snippet_text(doc)
            make = getattr(searcher, "snippet", None)
            snippet = make(query, text) if make is not None else plain_snippet(text)
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
        """A JSON-serialisable summary: path, generation, counts, source, backends and their params."""
        return {
            "path": str(self.path),
            "format_version": self.manifest.get("format_version"),
            "generation": self.generation,
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



class StaleGenerationError(BundleError):
    """A snapshot was asked to open files after a newer generation replaced them.

    :class:`Bundle` and :class:`~spacerini.service.Service` retry on the new generation.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: the bundle changed while it was being read; try again")


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

    def __init__(self, path: Path, manifest: Mapping[str, Any], *, key: tuple[int, ...] | None = None) -> None:
        self.path = path
        #: Options for hybrid search (``method="rrf"|"weighted"``, ``alpha``, ``depth``, ``rrf_k``).
        self.hybrid_params: dict[str, Any] = {}
        self._open_params: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._current = self._snapshot(manifest, key)
        self._retired: list[BundleSnapshot] = []
        self._checked = time.monotonic()

    def _snapshot(self, manifest: Mapping[str, Any], key: tuple[int, ...] | None) -> BundleSnapshot:
        return BundleSnapshot(
            self.path, manifest, key=key, hybrid_params=self.hybrid_params, open_params=self._open_params
        )

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
        self._close_retired()
        return True

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
        """The Parquet docstore of the generation in use."""
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
            KeyError: No such document.
        """
        return self._call("doc", docid)

    def search(self, query: str, **options: Any) -> list[Hit]:
        """Ranked search (see :meth:`BundleSnapshot.search`) on one generation."""
        return self._call("search", query, **options)

    def batch_search(self, queries: Sequence[tuple[str, str]], **options: Any) -> dict[str, list[Hit]]:
        """Many queries at once (see :meth:`BundleSnapshot.batch_search`) on one generation."""
        return self._call("batch_search", queries, **options)

    def batch_search_pairs(self, queries: Sequence[tuple[str, str]], **options: Any) -> dict[str, list[tuple[str, float]]]:
        """``(docid, score)`` pairs for many queries (see :meth:`BundleSnapshot.batch_search_pairs`)."""
        return self._call("batch_search_pairs", queries, **options)

    def iter_docs(self) -> Iterator[Doc]:
        """Streams every stored document of the generation in use, in corpus order."""
        with self.pin() as snap:
            yield from snap.iter_docs()

    def info(self) -> dict[str, Any]:
        """A JSON-serialisable summary: path, generation, counts, source, backends and their params."""
        return self.current().info()

    def close(self) -> None:
        """Closes every opened searcher, of this generation and of replaced ones."""
        self._current.close()
        self._close_retired(force=True)

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
