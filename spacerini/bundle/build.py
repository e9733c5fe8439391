"""Building a bundle: the corpus through the preprocessing steps into every backend, atomically."""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import logging
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from spacerini import __version__
from spacerini.backends import REGISTRY, check_params, get_backend, run_build
from spacerini.bundle.manifest import (
    DEFAULT_BACKENDS,
    FORMAT_VERSION,
    MANIFEST,
    MAX_CATEGORIES,
    _previous_generation,
    backend_folder,
)
from spacerini.bundle.open import Bundle, open_bundle
from spacerini.bundle.publish import building_folder, bundle_lock, publish, remove_stale, remove_tree
from spacerini.bundle.shards import build_sharded, is_shardable
from spacerini.bundle.shards import check_options as check_shard_options
from spacerini.bundle.shards import plan as plan_shards
from spacerini.docstore import Docstore, DocstoreWriter
from spacerini.errors import (
    BackendNotAvailableError,
    BackendParameterError,
    BundleError,
    CorpusError,
    DocumentTooLargeError,
    EmptyCorpusError,
    SpaceriniError,
)
from spacerini.progress import wanted
from spacerini.records import Doc, licence_and_language, top_counts

logger = logging.getLogger(__name__)


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
    shards: int | None = None,
    shard_size: str | int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    memory_budget: str | int | None = None,
    finish_manifest: Callable[[dict[str, Any]], None] | None = None,
) -> Bundle:
    """Builds a bundle from a corpus, atomically.

    The build holds the bundle's exclusive lock (``.NAME.lock`` beside it) from start to
    finish, so two commands that change one bundle never interleave; each build writes a new
    generation (``manifest["generation"]``), which open :class:`Bundle` objects and running apps
    pick up within :data:`RELOAD_SECONDS`.

    Args:
        source: A path or ``hf:`` spec (see :func:`spacerini.corpus.load_corpus`), a
            :class:`~spacerini.corpus.Corpus`, a ``datasets`` dataset, an iterable of
            :class:`~spacerini.records.Doc`, or a binary stream such as ``sys.stdin.buffer``
            (read as ``format``, or sniffed when it is JSON or Parquet; it is spooled to a file in
            the build's temporary folder, as the loader reads a corpus more than once, and named
            ``<stdin>`` in errors and in the manifest).
        out: The bundle folder. An existing bundle there is replaced only once the new one is
            complete; an existing folder that is not a bundle is never touched. A symbolic link
            whose target does not exist is refused (its target's folders are not created).
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
        shards: Split the corpus into this many contiguous shards (see
            :mod:`spacerini.bundle.shards`); every answer equals the unsharded one.
        shard_size: Or split it by size: documents (``50000``) or bytes of text (``"2GB"``).
        engine: Where shard indexes are built: ``"local"`` (this process) or ``"ray"`` (a Ray
            cluster, the ``[distributed]`` extra; see :mod:`spacerini.distributed`).
        ray_address: The Ray cluster to join (default: Ray starts embedded on this machine).
        memory_budget: Memory each Ray worker may use, e.g. ``"2GB"``.
        finish_manifest: Called with the manifest, after every document is indexed and just
            before it is written, to amend it in place; :func:`optout` carries the rebuilt
            bundle's history over and records how many documents it removed.

    Returns:
        The opened bundle.

    Raises:
        BundleError: ``out`` exists and is not a bundle, or it (or a folder above it) is a
            symbolic link to nothing.
        CorpusError: The source cannot be read (one clear line naming file and line), or a
            stream's format is not given and cannot be sniffed.
        BackendNotAvailableError: An unknown backend was named.
        BundleLockedError: ``wait`` is False and another command holds the bundle's lock.
    """
    check_not_dangling(out)
    out_path = Path(out).expanduser().resolve()
    with bundle_lock(out_path, wait=wait):
        return _build_locked(
            source, out_path, backends=backends, backend_params=backend_params, format=format,
            id_field=id_field, fields=fields, preprocess=preprocess, preprocess_options=preprocess_options,
            threads=threads, progress=wanted(progress), finish_manifest=finish_manifest, shards=shards,
            shard_size=shard_size, engine=engine, ray_address=ray_address, memory_budget=memory_budget,
        )  # fmt: skip


def _with_location(exc: DocumentTooLargeError, corpus: Any) -> DocumentTooLargeError | None:
    """``exc`` again, naming the file and line of its document (a backend sees only the id), or
    None when that is unknown or already named."""
    locate = getattr(corpus, "locate", None)
    if exc.path is not None or exc.doc_id is None or locate is None:
        return None
    location = locate(exc.doc_id)
    if location is None:
        return None
    path, line = location
    return DocumentTooLargeError(exc.detail, path=path, line=line, doc_id=exc.doc_id)


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
    shards: int | None = None,
    shard_size: str | int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    memory_budget: str | int | None = None,
) -> Bundle:
    """:func:`build_bundle` once the caller holds the bundle's lock."""
    if engine not in ("local", "ray"):
        raise BackendParameterError(f"unknown engine {engine!r}: choose local or ray")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BackendParameterError(f"threads must be a positive integer, not {threads!r}")
    check_shard_options(
        shards=shards, shard_size=shard_size, engine=engine, ray_address=ray_address, memory_budget=memory_budget
    )
    remove_stale(out_path, locked=True)
    names = _check_backends(backends)
    params = _check_backend_params(backend_params)
    unknown = set(params) - set(names)
    if unknown:
        raise BackendNotAvailableError(f"parameters given for backends not being built: {', '.join(sorted(unknown))}")
    for name, given in params.items():
        check_params(name, given)  # a typo fails here, before any document is read
    if out_path.exists() and not (out_path / MANIFEST).is_file():
        if out_path.is_file() or any(out_path.iterdir()):
            raise BundleError(f"{out_path} exists and is not a Spacerini bundle: choose another --out or remove it")
    steps = _make_steps(preprocess, preprocess_options)  # bad names fail before any work is done
    from_stream = _is_stream(source)
    corpus: Iterable[Doc] = ()
    source_info: dict[str, Any] = {}
    if not from_stream:  # a stream is read once the build's folder, where it is spooled, exists
        corpus, source_info = _as_docs(source, format=format, id_field=id_field, fields=fields, progress=progress)

    generation = _previous_generation(out_path) + 1
    from spacerini.bundle.optout import EarlierOptouts, optout_key_path

    # A rebuild over an existing bundle never brings back what its opt-outs removed. An opt-out's
    # own rebuild reads the bundle's docstore, which they have already left (and writes the log).
    earlier = None if isinstance(source, _StoredDocs) else EarlierOptouts.of(out_path)
    if earlier is not None and earlier.owners_unmatched:
        logger.warning(
            "%s: earlier opt-outs named owners, but their key (%s) is gone: the documents they removed stay out, "
            "new documents of those owners cannot be recognised; restore the key, or opt them out again",
            out_path, optout_key_path(out_path),
        )  # fmt: skip
    tmp = building_folder(out_path)
    spool = tmp / _SPOOL
    ray_session = contextlib.ExitStack()
    try:
        if from_stream:
            file, format = _spool(source, spool, format=format)
            corpus, source_info = _as_docs(str(file), format=format, id_field=id_field, fields=fields, progress=progress)
            source_info["source"] = STDIN_NAME
        started = time.perf_counter()
        licences: Counter[str] = Counter()
        languages: Counter[str] = Counter()
        if engine == "ray":  # one Ray start for reading, preprocessing and every backend
            from spacerini.distributed import session

            ray_session.enter_context(session(address=ray_address, threads=threads))
        # bm25 of a one-shard local build indexes while the corpus is read and the docstore
        # written (Lucene's threads beside this one), instead of reading the docstore again after.
        known_sums: dict[str, dict[str, Any]] = {}
        streamed = _streamed_backends(
            names, params, tmp, engine=engine, shards=shards, shard_size=shard_size, threads=threads, progress=progress
        )
        stream_stack = contextlib.ExitStack()
        for stream in streamed.values():
            stream_stack.callback(stream.abort)  # on any failure; a no-op once finished
        with stream_stack, DocstoreWriter(tmp / "docs") as writer:
            streams = list(streamed.values())

            def add(doc: Doc) -> None:
                if earlier and earlier.removes(doc):
                    return
                writer.add(doc)
                for stream in streams:
                    stream.add(doc)
                licence, language = licence_and_language(doc.meta, doc.fields)
                licences[licence] += 1
                languages[language] += 1

            if engine == "ray":  # reading and preprocessing on Ray Data: see spacerini.distributed.data
                from spacerini.distributed.data import ingest

                ingest(corpus, steps, add=add)
            else:
                docs: Iterable[Doc] = corpus
                if steps:
                    from spacerini.preprocess import apply

                    docs = apply(corpus, steps)
                for doc in docs:
                    add(doc)
            if writer.count == 0 and not allow_empty and not (earlier and earlier.left_out):
                raise EmptyCorpusError(_nothing_left(source_info, steps))
            if writer.count == 0:  # opt-outs removed everything: the backends get empty folders
                for stream in streamed.values():
                    stream.abort()
                    shutil.rmtree(stream.folder, ignore_errors=True)
                streamed = {}
            for stream in streamed.values():
                stream.end_input()  # Lucene's tail (flush, commit, postings dump) runs while the docstore closes
            writer.close()
            prebuilt = {name: stream.finish().to_dict() for name, stream in streamed.items()}
            for stream in streamed.values():  # hashed while written: publishing does not read them again
                folder = stream.folder.relative_to(tmp).as_posix()
                known_sums.update({f"{folder}/{name}": info for name, info in stream.checksums.items()})
        describe = getattr(corpus, "describe", None)
        if describe is not None:  # after the pass, so skip counts and inclusions are filled in
            source_info = describe()
            if from_stream:
                source_info["source"] = STDIN_NAME
        skipped = getattr(corpus, "skipped", None)
        store = Docstore(tmp / "docs")
        layout = plan_shards(store, shards=shards, shard_size=shard_size)
        if shards is not None and shards > writer.count > 0:  # plan_shards makes at most one per document
            made = "one shard" if len(layout) == 1 else f"{len(layout):,} shards of one document each"
            logger.warning(
                "--shards %s is more than the %s document%s in the corpus: the bundle has %s",
                f"{shards:,}", f"{writer.count:,}", "" if writer.count == 1 else "s", made,
            )  # fmt: skip
        reports: dict[str, Any] = {}
        engine_session: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if engine == "ray" and len(layout) > 1:  # one Ray start (and warm workers) for every backend
            from spacerini.distributed import session

            engine_session = session(address=ray_address, threads=threads)
        with engine_session:
            _build_backends(
                names, params, store, layout, tmp, writer.count, reports, threads=threads, progress=progress,
                engine=engine, ray_address=ray_address, memory_budget=memory_budget, prebuilt=prebuilt,
            )  # fmt: skip
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
            "shards": [shard.to_dict() for shard in layout],
            "build_seconds": round(time.perf_counter() - started, 3),
            "preprocess": _step_reports(steps),
            "audit_log": [],
        }
        if earlier is not None:
            manifest["audit_log"] = list(earlier.audit_log)
            if earlier.left_out:
                logger.warning(
                    "left out %d document(s) that earlier opt-outs removed from %s (its audit log lists them)",
                    earlier.left_out, out_path,
                )  # fmt: skip
                manifest["audit_log"].append(earlier.entry())
        if finish_manifest is not None:
            finish_manifest(manifest)
        if from_stream:  # no longer read (a too-large document's line is found in it until here)
            remove_tree(spool)
    except BaseException as exc:
        located = _with_location(exc, corpus) if isinstance(exc, DocumentTooLargeError) else None
        remove_tree(tmp)
        if from_stream:
            _name_stdin(located or exc, spool)
        if located is not None:
            raise located from None
        raise
    finally:
        ray_session.close()
    publish(tmp, out_path, manifest, known=known_sums)
    return open_bundle(out_path)


def _build_backends(
    names: Sequence[str],
    params: Mapping[str, Mapping[str, Any]],
    store: Docstore,
    layout: Sequence[Any],
    tmp: Path,
    count: int,
    reports: dict[str, Any],
    *,
    threads: int,
    progress: bool,
    engine: str,
    ray_address: str | None,
    memory_budget: str | int | None,
    prebuilt: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """Builds every backend into ``tmp`` (shard by shard where the bundle has shards) and fills
    ``reports`` with their manifest entries; ``prebuilt`` holds the reports of backends already
    built while the docstore was written (see :func:`_streamed_backends`)."""
    for name in names:
        if prebuilt and name in prebuilt:
            reports[name] = prebuilt[name]
            continue
        module = get_backend(name)
        folder = tmp / backend_folder(module, name)
        if count == 0:  # an opt-out removed everything: see spacerini.backends.empty
            folder.mkdir()
            reports[name] = {"params": dict(params.get(name, {})), "stats": {"docs": 0}, "empty": True}
            continue
        if len(layout) > 1 and is_shardable(module):
            reports[name] = build_sharded(
                name, module, store, layout, tmp, backend_folder(module, name), params.get(name, {}),
                threads=threads, progress=progress, engine=engine, ray_address=ray_address,
                memory_budget=memory_budget,
            )  # fmt: skip
            continue
        folder.mkdir()
        logger.info("building %s over %d documents", name, count)
        report = run_build(module, store.iter_docs, folder, threads=threads, progress=progress, **params.get(name, {}))
        reports[name] = report.to_dict()


def _streamed_backends(
    names: Sequence[str],
    params: Mapping[str, Mapping[str, Any]],
    tmp: Path,
    *,
    engine: str,
    shards: int | None,
    shard_size: str | int | None,
    threads: int,
    progress: bool,
) -> dict[str, Any]:
    """Writers of the backends that index while the corpus is read: bm25 (see
    :class:`spacerini.backends.bm25.writer.BM25Writer`) when the build is local and has one shard."""
    if "bm25" not in names or engine != "local" or shard_size is not None or shards not in (None, 1):
        return {}
    from spacerini.backends.bm25.writer import BM25Writer

    module = get_backend("bm25")
    folder = tmp / backend_folder(module, "bm25")
    return {"bm25": BM25Writer(folder, threads=threads, progress=progress, **dict(params.get("bm25", {})))}


def _make_steps(names: Sequence[str] | str | None, options: Mapping[str, Mapping[str, Any]] | None) -> list[Any]:
    if not names:
        if options:
            raise BackendNotAvailableError("preprocess options given without --preprocess steps")
        return []
    from spacerini.preprocess import make_steps

    return make_steps(names, **dict(options or {}))


def _nothing_left(source_info: Mapping[str, Any], steps: Sequence[Any]) -> str:
    """Why a build has no document: the source holds none, or the preprocessing removed them all."""
    source = source_info.get("source", "the source")
    read = getattr(steps[0], "docs_in", 0) if steps else 0
    if not read:
        return f"{source} holds no documents"
    removed = ", ".join(
        f"{report['name']} removed {report['removed']:,}" for report in _step_reports(steps) if report.get("removed")
    )  # fmt: skip
    return f"the preprocessing removed all {read:,} documents of {source} ({removed}): check its steps and options"


def _step_reports(steps: Sequence[Any]) -> list[dict[str, Any]]:
    if not steps:
        return []
    from spacerini.preprocess import reports

    return reports(steps)


def _check_backend_params(given: Any) -> dict[str, dict[str, Any]]:
    """``backend_params`` as plain dicts, refused (before any work) unless a mapping of mappings."""
    if given is None:
        return {}
    example = "e.g. {'bm25': {'k1': 1.2}}"
    if not isinstance(given, Mapping):
        raise BackendParameterError(f"backend_params must map backend names to options, {example}; not {type(given).__name__}")
    for name, options in given.items():
        if not isinstance(options, Mapping):
            raise BackendParameterError(
                f"backend_params[{name!r}] must be a mapping of options, {example}; not {type(options).__name__}"
            )
    return {name: dict(options) for name, options in given.items()}


def _check_backends(backends: Sequence[str] | str) -> list[str]:
    if isinstance(backends, str):
        backends = [b for b in backends.split(",") if b.strip()]
    if not isinstance(backends, Iterable):
        raise BackendNotAvailableError(
            f"backends must be a list of backend names such as ['bm25', 'exact'], not {type(backends).__name__}"
        )
    names = []
    for name in backends:
        if not isinstance(name, str):
            raise BackendNotAvailableError(f"backend names are strings such as 'bm25', not {name!r}")
        name = name.strip()
        if name not in REGISTRY:
            raise BackendNotAvailableError(f"unknown backend {name!r}: choose from {', '.join(REGISTRY)}")
        if name not in names:
            names.append(name)
    if not names:
        raise BackendNotAvailableError(f"no backend chosen: choose from {', '.join(REGISTRY)}")
    return names


def check_not_dangling(out: str | os.PathLike[str]) -> None:
    """Refuses a bundle folder that is, or lies under, a symbolic link whose target does not
    exist: building through it would create the target and its missing folders, a place the
    user never named.

    Raises:
        BundleError: ``out`` or a folder above it is such a link.
    """
    path = Path(out).expanduser().absolute()
    for link in (path, *path.parents):
        if not link.is_symlink():
            continue
        try:
            link.stat()
        except FileNotFoundError:
            shown = out if link == path else link
            raise BundleError(
                f"{os.fspath(shown)}: a symbolic link to {os.readlink(link)}, which does not exist (nothing was "
                "created); remove the link or point it at a folder that exists"
            ) from None
        except OSError:  # a link loop or a folder that cannot be read: the build names it
            return


#: How a stream source (standard input) is named in errors and in the manifest.
STDIN_NAME = "<stdin>"
#: The folder in a build's temporary folder that a stream source is spooled to.
_SPOOL = ".stdin"
_SNIFF_BYTES = 1 << 16
_STREAM_FORMATS = ("jsonl", "json", "parquet", "csv", "tsv")


def _is_stream(source: Any) -> bool:
    return isinstance(source, io.IOBase)


def _chunks(stream: Any) -> Iterator[bytes]:
    """The bytes of a binary or text stream (a text one's underlying bytes where it has them)."""
    stream = getattr(stream, "buffer", stream)
    while chunk := stream.read(1 << 20):
        yield chunk.encode("utf-8", "surrogateescape") if isinstance(chunk, str) else chunk


def _sniff(head: bytes) -> str | None:
    """The format the first bytes of a stream show: Parquet, a JSON array, or JSON lines."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x1f\x8b"):  # gzip: look at what it holds
        import zlib

        with contextlib.suppress(zlib.error):
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _SNIFF_BYTES)
    first = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1]
    return {b"{": "jsonl", b"[": "json"}.get(first)


def _spool(stream: Any, folder: Path, *, format: str | None) -> tuple[Path, str]:
    """Copies a stream into a file in ``folder`` (the loader reads a corpus more than once).

    Returns:
        The file and its format: ``format``, or the one its first bytes show.

    Raises:
        CorpusError: A format that is no single file's, or none given and none shown.
        EmptyCorpusError: The stream holds nothing.
    """
    if format is not None and format not in _STREAM_FORMATS:
        raise CorpusError(
            f"format {format!r} cannot be read from standard input: give one of {', '.join(_STREAM_FORMATS)}, "
            "or a path instead of -",
            path=STDIN_NAME,
        )
    chunks = _chunks(stream)
    head = b""
    for chunk in chunks:  # enough to sniff, before the rest is copied
        head += chunk
        if len(head) >= _SNIFF_BYTES:
            break
    if not head:
        raise EmptyCorpusError("empty: pipe a corpus in, e.g. spacerini index - --out BUNDLE < corpus.jsonl", path=STDIN_NAME)
    kind = format or _sniff(head)
    if kind is None:
        raise CorpusError(
            f"cannot tell its format (neither JSON nor Parquet): give --format {'|'.join(_STREAM_FORMATS)}",
            path=STDIN_NAME,
        )
    gz = ".gz" if head.startswith(b"\x1f\x8b") and kind != "parquet" else ""
    folder.mkdir()
    file = folder / f"stdin.{kind}{gz}"
    with file.open("wb") as out:
        out.write(head)
        for chunk in chunks:
            out.write(chunk)
    return file, kind


def _name_stdin(exc: BaseException, spool: Path) -> None:
    """Names standard input in ``exc``'s message, not the file in ``spool`` it was copied to."""
    if not isinstance(exc, SpaceriniError):
        return
    where = str(spool / "stdin.")
    pattern = re.compile(re.escape(where) + r"[a-z.]+")
    if isinstance(exc, CorpusError) and exc.path is not None:
        exc.path = pattern.sub(STDIN_NAME, exc.path)
    exc.args = tuple(pattern.sub(STDIN_NAME, a) if isinstance(a, str) else a for a in exc.args)


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
