"""ir_datasets sources: ``irds:NAME`` (documents), its queries and qrels for ``eval``, and its
queries as a test set for ``contamination``.

``NAME`` is an ir_datasets id (``irds:msmarco-passage/dev/small``, ``irds:cranfield``) or a
dataset registered in this process with ``ir_datasets.registry.register``. Loading never
downloads: before anything is read, every file the part of the dataset in use (documents,
queries or qrels) needs is looked up in ir_datasets' cache (``IR_DATASETS_HOME``, default
``~/.ir_datasets``), and one that is missing and would have to come from the network fails with
one clear line (download it once with ``ir_datasets.load(NAME).docs_iter()`` or the
``ir_datasets`` command where there is a network). Files registered from local paths
(``ir_datasets.util.LocalDownload``, ``PackageDataFile``) are read where they are.

Documents become records ``{"id": doc_id, "text": ..., <other fields>}``: ``text`` is the
document's ``text`` field, else its ``body``, else ir_datasets' ``default_text()``; the other
fields with scalar values (title, url, ...) are kept, so ``--fields title,text`` works as for a
file. Documents are parsed from the source files: ir_datasets' own docstore (lz4-compressed
pickles) is not read.

``ir_datasets`` is imported only here, and only when such a source is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from spacerini.corpus.base import LocatedRecords
from spacerini.errors import (
    CorpusError,
    CorpusNotFoundError,
    DependencyMissingError,
    EvaluationError,
    SpaceriniError,
)

#: The prefix of an ir_datasets source.
PREFIX = "irds:"
_SCALARS = (str, int, float, bool)


def is_irds(source: object) -> bool:
    """Whether ``source`` names an ir_datasets dataset (``irds:NAME``)."""
    return isinstance(source, str) and source.startswith(PREFIX)


def parse_irds(source: str) -> str:
    """Returns the dataset id of ``irds:NAME``.

    Raises:
        CorpusNotFoundError: The name is empty.
    """
    name = source[len(PREFIX) :].strip() if source.startswith(PREFIX) else source.strip()
    if not name:
        raise CorpusNotFoundError(f"no dataset name in {source!r}; use irds:NAME (an ir_datasets id)")
    return name


def _ir_datasets() -> Any:
    try:
        import ir_datasets
    except ImportError as exc:  # pragma: no cover - ir-datasets is a core dependency
        raise DependencyMissingError("irds: sources need the 'ir-datasets' package: pip install ir-datasets") from exc
    return ir_datasets


def open_dataset(name: str) -> Any:
    """Looks up an ir_datasets dataset by id (nothing is read or downloaded).

    Raises:
        CorpusNotFoundError: ir_datasets knows no dataset by that id.
    """
    ir_datasets = _ir_datasets()
    try:
        return ir_datasets.load(name)
    except KeyError:
        raise CorpusNotFoundError(
            f"ir_datasets has no dataset {name!r}; check the id (https://ir-datasets.com) or register it "
            "with ir_datasets.registry.register"
        ) from None


def missing_files(handler: Any) -> list[str]:
    """The files a dataset part (its docs, queries or qrels handler) would have to download.

    Walks the handler's download chain: a ``Download`` whose cached copy exists, a ``Cache`` or
    extraction whose output exists, or a local file that exists needs nothing; a ``Download``
    with no cached copy and a network mirror is missing. Local files that do not exist are
    reported too (they would fail anyway).

    Returns:
        One description per missing file (its cache path or URL), empty when all is local.
    """
    from ir_datasets.util import fileio
    from ir_datasets.util.download import BaseDownload, Download, LocalDownload

    missing: list[str] = []
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if obj is None or depth > 12 or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, list | tuple | set):
            for item in obj:
                walk(item, depth + 1)
            return
        if isinstance(obj, dict):
            for item in obj.values():
                walk(item, depth + 1)
            return
        module = type(obj).__module__ or ""
        if not module.startswith("ir_datasets"):
            return
        if isinstance(obj, Download):
            cached = obj.path(force=False) if obj._cache_path is not None else None
            if cached is not None and Path(cached).exists():
                return
            local = [m for m in obj.mirrors if isinstance(m, LocalDownload)]
            if local and any(m.path(force=False).exists() for m in local):
                return
            remote = [getattr(m, "url", getattr(m, "uri", type(m).__name__)) for m in obj.mirrors]
            missing.append(str(cached or (remote[0] if remote else "a download")))
            return
        if isinstance(obj, LocalDownload):
            if not obj.path(force=False).exists():
                missing.append(str(obj.path(force=False)))
            return
        if isinstance(obj, BaseDownload):  # a network stream (requests, Google Drive, a bucket)
            missing.append(str(getattr(obj, "url", getattr(obj, "uri", type(obj).__name__))))
            return
        if isinstance(obj, fileio.PackageDataFile | fileio.StringFile):
            return
        done = None
        if isinstance(obj, fileio.Cache | fileio.RelativePath):
            done = obj._path if isinstance(obj, fileio.Cache) else None
        elif isinstance(obj, fileio.TarExtractAll):
            done = obj._extract_path
        elif isinstance(obj, fileio.ZipExtractCache):
            done = getattr(obj, "extract_path", None) or getattr(obj, "_extract_path", None)
        elif isinstance(obj, fileio.ReTar):
            done = obj._output_file
        if done is not None and Path(done).exists():
            return
        for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
            walk(value, depth + 1)

    walk(handler, 0)
    return missing


def _check_cached(name: str, part: str, handler: Any) -> None:
    missing = missing_files(handler)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CorpusNotFoundError(
            f"irds:{name} {part} are not in the local ir_datasets cache ({missing[0]}{more} missing) and "
            f"spacerini does not download: fetch them once where there is a network (ir_datasets.load({name!r})"
            f".{part}_iter()), or point IR_DATASETS_HOME at a cache that has them"
        )


def _handler(dataset: Any, name: str, part: str, error: type[Exception]) -> Any:
    has = getattr(dataset, f"has_{part}", None)
    if has is None or not has():
        raise error(f"irds:{name} has no {part}")
    return getattr(dataset, f"{part}_handler")()


def _raw_iter(handler: Any, part: str) -> Iterator[Any]:
    """Iterates a handler's records from the source files (past ir_datasets' pickled docstore)."""
    method = getattr(type(handler), f"{part}_iter", None)
    raw = getattr(method, "__wrapped__", None)
    return iter(raw(handler) if raw is not None else getattr(handler, f"{part}_iter")())


def _text_of(record: Any) -> str:
    for key in ("text", "body"):
        value = getattr(record, key, None)
        if isinstance(value, str):
            return value
    default = getattr(record, "default_text", None)
    return str(default()) if callable(default) else ""


def doc_record(doc: Any) -> dict[str, Any]:
    """An ir_datasets document as a record: ``id``, ``text`` and its other scalar fields."""
    row: dict[str, Any] = {"id": str(doc.doc_id), "text": _text_of(doc)}
    for key in getattr(doc, "_fields", ()):
        if key in ("doc_id", "text"):
            continue
        value = getattr(doc, key)
        if value is None or isinstance(value, _SCALARS):
            row.setdefault(key, value)
    return row


def open_docs(source: str) -> tuple[str, Callable[[], LocatedRecords], int | None]:
    """Opens the documents of ``irds:NAME`` (checked to be in the cache first).

    Returns:
        The dataset id, a factory of located records, and the document count if ir_datasets
        knows it (else None).

    Raises:
        CorpusNotFoundError: Unknown dataset, no documents, or documents not in the cache.
    """
    name = parse_irds(source)
    dataset = open_dataset(name)
    handler = _handler(dataset, name, "docs", CorpusNotFoundError)
    _check_cached(name, "docs", handler)
    label = f"{PREFIX}{name}"

    def records() -> LocatedRecords:
        for number, doc in enumerate(_records(name, handler, "docs", "document"), 1):
            yield doc_record(doc), label, number

    total = None
    try:
        count = dataset.metadata().get("docs", {}).get("count")
        total = int(count) if isinstance(count, int) else None
    except Exception:  # metadata is optional, and custom datasets have none
        total = None
    return name, records, total


def open_queries(source: str) -> Callable[[], LocatedRecords]:
    """Opens the queries of ``irds:NAME`` as records (a test set: ``spacerini contamination``),
    checked to be in the cache first.

    Each query becomes ``{"id": query_id, "text": ..., <other scalar fields>}``, ``text`` as for
    documents (its ``text`` field, else ``default_text()``).

    Returns:
        A factory of located records (``irds:NAME`` and the query's number).

    Raises:
        CorpusNotFoundError: Unknown dataset, no queries, or queries not in the cache.
    """
    name = parse_irds(source)
    dataset = open_dataset(name)
    has = getattr(dataset, "has_queries", None)
    if has is None or not has():
        raise CorpusNotFoundError(
            f"irds:{name} has no queries: an ir_datasets test set is read as its queries; "
            "export the texts to check to a JSONL file instead"
        )
    handler = dataset.queries_handler()
    _check_cached(name, "queries", handler)
    label = f"{PREFIX}{name}"

    def records() -> LocatedRecords:
        for number, query in enumerate(_records(name, handler, "queries", "query"), 1):
            row: dict[str, Any] = {"id": str(query.query_id), "text": _text_of(query)}
            for key in getattr(query, "_fields", ()):
                value = getattr(query, key)
                if key not in ("query_id", "text") and (value is None or isinstance(value, _SCALARS)):
                    row.setdefault(key, value)
            yield row, label, number

    return records


def _read_error(name: str, what: str, number: int, exc: BaseException) -> CorpusError:
    """One line for a record that ir_datasets could not read: which one, why, and what to do."""
    text = str(exc).strip().splitlines()
    why = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    try:
        from ir_datasets.util import home_path

        cache = f" under {Path(home_path()) / name.split('/')[0]}"
    except Exception:  # noqa: BLE001 - the hint is optional
        cache = ""
    return CorpusError(
        f"ir_datasets could not read {what} {number} ({why}); if its files in the ir_datasets cache{cache} are "
        "damaged (an interrupted download), delete them and fetch them again where there is a network",
        path=f"{PREFIX}{name}",
    )


def _records(name: str, handler: Any, part: str, what: str) -> Iterator[Any]:
    """A handler's records, each read error turned into one :class:`CorpusError` line."""
    rows: Iterator[Any] | None = None
    number = 0
    while True:
        try:
            if rows is None:  # some handlers open their files when called, others on the first next()
                rows = _raw_iter(handler, part)
            record = next(rows)
        except StopIteration:
            return
        except SpaceriniError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged cache file raises tarfile, zipfile, gzip, lz4 errors
            raise _read_error(name, what, number + 1, exc) from None
        number += 1
        yield record


def read_queries(source: str) -> list[tuple[str, str]]:
    """The queries of ``irds:NAME`` as ``(qid, text)`` pairs (text: ``default_text()``).

    Raises:
        CorpusNotFoundError: Unknown dataset or queries not in the cache.
        EvaluationError: The dataset has no queries, or duplicate query ids.
    """
    name = parse_irds(source)
    handler = _handler(open_dataset(name), name, "queries", EvaluationError)
    _check_cached(name, "queries", handler)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for query in _records(name, handler, "queries", "query"):
        qid = str(query.query_id)
        if qid in seen:
            raise EvaluationError(f"irds:{name}: duplicate query id {qid!r}")
        seen.add(qid)
        default = getattr(query, "default_text", None)
        text = default() if callable(default) else getattr(query, "text", "")
        out.append((qid, " ".join(str(text).split())))
    if not out:
        raise EvaluationError(f"irds:{name} has no queries")
    return out


def read_qrels(source: str) -> dict[str, dict[str, int]]:
    """The relevance judgments of ``irds:NAME`` as ``{qid: {docid: relevance}}``.

    Raises:
        CorpusNotFoundError: Unknown dataset or qrels not in the cache.
        EvaluationError: The dataset has no qrels.
    """
    name = parse_irds(source)
    handler = _handler(open_dataset(name), name, "qrels", EvaluationError)
    _check_cached(name, "qrels", handler)
    qrels: dict[str, dict[str, int]] = {}
    for qrel in _records(name, handler, "qrels", "judgment"):
        qrels.setdefault(str(qrel.query_id), {})[str(qrel.doc_id)] = int(qrel.relevance)
    if not qrels:
        raise EvaluationError(f"irds:{name} has no qrels")
    return qrels
