"""The :class:`Corpus` stream and the mapping from raw records to :class:`~spacerini.records.Doc`.

A corpus never holds its documents in memory: every ``iter()`` re-reads the source. What it does
keep while iterating is the set of ids seen so far (to catch duplicates) and a few counters.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, time
from typing import Any

from spacerini.errors import (
    CorpusError,
    DuplicateIdError,
    EmptyCorpusError,
    MalformedRecordError,
    MissingFieldError,
)
from spacerini.records import Doc

logger = logging.getLogger(__name__)

#: Id columns tried in this order when no ``id_field`` is given.
ID_CANDIDATES: tuple[str, ...] = ("id", "docid", "_id", "doc_id")
#: Contents columns tried in this order when no ``fields`` are given.
CONTENTS_CANDIDATES: tuple[str, ...] = ("contents", "text", "content", "body")
#: Columns of a tabular record that are provenance and also go into ``Doc.meta``.
META_COLUMNS: dict[str, str] = {
    "repo": "repo",
    "path": "path",
    "owner": "owner",
    "licence": "licence",
    "license": "licence",
    "language": "language",
    "swhid": "swhid",
}

#: Where a record came from: (file or source name, 1-based line or row number or None).
Location = tuple[str, int | None]
#: Raw records with their location, as a reader yields them.
LocatedRecords = Iterator[tuple[Any, str, int | None]]


def format_location(location: Location) -> str:
    """Returns ``path:line`` (or ``path`` when there is no line)."""
    path, line = location
    return f"{path}:{line}" if line is not None else path


def _display_value(value: Any) -> tuple[bool, Any]:
    """Returns (keep, JSON-serialisable value) for one column value kept for display."""
    if type(value) is str or value is None or isinstance(value, str | bool | int):
        return True, value
    if isinstance(value, float):
        return True, value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return True, value.isoformat()
    if isinstance(value, list | tuple) and len(value) <= MAX_LIST_ITEMS:
        # a list of co-owners, authors or tags (numpy arrays from Parquet are lists by then)
        items = [_display_value(item) for item in value]
        if all(keep and not isinstance(clean, list) for keep, clean in items):
            return True, [clean for _, clean in items]
    return False, None


#: Longest list of plain values (co-owners, tags) a column may hold to be kept for display.
MAX_LIST_ITEMS = 1_000


class Corpus:
    """A re-iterable stream of :class:`~spacerini.records.Doc` read from one source.

    Each ``iter()`` re-reads the source from the start, so memory stays bounded however large the
    corpus is. While iterating, the corpus checks that ids are unique (only the set of ids is
    kept) and counts what it skipped and why. Subclasses implement ``_located_docs``.

    Args:
        source: See ``source`` below.
        format: See ``format`` below.
        id_field: See ``id_field`` below.
        fields: See ``fields`` below.
        progress: Show a progress bar on stderr while iterating.
        total: The number of documents when known cheaply (gives the progress bar an end).
        extra: More JSON-serialisable entries for :meth:`describe`.

    Attributes:
        source: A short description of where the documents come from (stored in the manifest).
        format: The source format ("jsonl", "parquet", "csv", "hf", "code", ...).
        id_field: The column the ids come from.
        fields: The contents columns whose values make up ``Doc.text``.
        skipped: Counts of skipped inputs by reason, from the latest iteration.
        progress: Whether iterating shows a progress bar on stderr.
    """

    def __init__(
        self,
        *,
        source: str,
        format: str,
        id_field: str | None,
        fields: Sequence[str],
        progress: bool = True,
        total: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.format = format
        self.id_field = id_field
        self.fields: tuple[str, ...] = tuple(fields)
        self.progress = progress
        self.total = total
        self.skipped: dict[str, int] = {}
        self._extra: dict[str, Any] = dict(extra or {})

    # -- subclasses implement this ------------------------------------------------------------
    def _located_docs(self) -> Iterator[tuple[Doc, Location]]:
        """Yields each document with its location; counts skips into ``self.skipped``."""
        raise NotImplementedError

    def _can_rescan(self) -> bool:
        """Whether the source can be read a second time to locate a duplicate's first copy."""
        return True

    # -- public --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Doc]:
        """Streams the documents, checking ids are unique.

        Raises:
            DuplicateIdError: Two documents share an id.
            EmptyCorpusError: The source yields no documents at all.
            CorpusError: A record cannot be read (see the subclasses of ``CorpusError``).
        """
        return self._iterate()

    def _iterate(self) -> Iterator[Doc]:
        from tqdm import tqdm

        self.skipped = {}
        seen: set[str] = set()
        count = 0
        with tqdm(
            desc=f"loading {_short(self.source)}",
            unit=" docs",
            total=self.total,
            disable=not self.progress,
            file=sys.stderr,
            dynamic_ncols=True,
        ) as bar:
            for doc, location in self._located_docs():
                if doc.id in seen:
                    raise self._duplicate(doc.id, location)
                seen.add(doc.id)
                count += 1
                bar.update(1)
                yield doc
        if count == 0:
            raise EmptyCorpusError(f"{self.source} holds no documents{self._skip_note()}", path=None)
        if self.skipped:
            logger.warning(
                "%s: skipped %d file(s) (%s) of %d documents kept",
                self.source,
                sum(self.skipped.values()),
                ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skipped.items())),
                count,
            )
        else:
            logger.info("%s: %d documents", self.source, count)

    def describe(self) -> dict[str, Any]:
        """Returns a JSON-serialisable description for the bundle manifest."""
        return {
            "source": self.source,
            "format": self.format,
            "id_field": self.id_field,
            "fields": list(self.fields),
            **self._extra,
            "skipped": dict(sorted(self.skipped.items())),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, format={self.format!r}, "
            f"id_field={self.id_field!r}, fields={list(self.fields)!r})"
        )

    # -- helpers -------------------------------------------------------------------------------
    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _skip_note(self) -> str:
        if not self.skipped:
            return ""
        counts = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skipped.items()))
        return f" (everything was skipped: {counts})"

    def locate(self, doc_id: str) -> Location | None:
        """Where the document ``doc_id`` is in the source, found by reading it again (None when
        the source cannot be re-read or holds no such id)."""
        if not self._can_rescan():
            return None
        for doc, location in self._located_docs():
            if doc.id == doc_id:
                return location
        return None

    def _duplicate(self, doc_id: str, location: Location) -> DuplicateIdError:
        first = "an earlier record"
        if self._can_rescan():
            # Only the set of ids is kept while streaming; the first copy is found by re-reading.
            for other, other_location in self._located_docs():
                if other.id == doc_id:
                    first = format_location(other_location)
                    break
        return DuplicateIdError(
            f"duplicate id {doc_id!r} (first at {first}); ids must be unique: "
            "remove the duplicate or choose another id column with --id-field",
            path=location[0],
            line=location[1],
        )


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


class FieldMap:
    """Turns raw records (mappings) into :class:`Doc` with a fixed id column and contents columns.

    Args:
        id_field: The id column.
        fields: The contents columns, joined with ``"\\n"`` into ``Doc.text``.
    """

    def __init__(self, id_field: str, fields: Sequence[str]) -> None:
        self.id_field = id_field
        self.fields = tuple(fields)
        # Short contents columns such as a title stay displayable; the main text columns do not
        # (they are Doc.text already, and repeating them would double the docstore).
        self._skip = {id_field, *(f for f in self.fields if f in CONTENTS_CANDIDATES or len(self.fields) == 1)}
        self._dropped: set[str] = set()  # columns whose values are not kept for display (warned once)

    @classmethod
    def resolve(
        cls,
        first: Any,
        location: Location,
        *,
        id_field: str | None,
        fields: Sequence[str] | None,
    ) -> FieldMap:
        """Chooses the id and contents columns from the first record of a source.

        Raises:
            MalformedRecordError: The first record is not a mapping.
            MissingFieldError: No id or contents column can be found.
        """
        if isinstance(first, Doc):
            return DocPassThrough()
        record = _as_mapping(first, location)
        present = list(record)
        if id_field is None:
            id_field = next((name for name in ID_CANDIDATES if name in record), None)
            if id_field is None:
                raise MissingFieldError(
                    f"no id field: looked for {', '.join(ID_CANDIDATES)}; the record has "
                    f"{_names(present)}; pass --id-field NAME (Python: id_field=NAME)"
                    f"{_headerless_hint(location)}",
                    path=location[0],
                    line=location[1],
                )
        if fields is None:
            found = next((name for name in CONTENTS_CANDIDATES if name in record), None)
            if found is None:
                texts = [k for k, v in record.items() if isinstance(v, str) and k != id_field]
                hint = f" (text columns here: {_names(texts)})" if texts else ""
                raise MissingFieldError(
                    f"no contents field: looked for {', '.join(CONTENTS_CANDIDATES)}; the record has "
                    f"{_names(present)}; pass --fields NAME[,NAME...] (Python: fields=[...]){hint}",
                    path=location[0],
                    line=location[1],
                )
            fields = (found,)
        mapping = cls(id_field, fields)
        mapping.to_doc(record, location)  # fail early on the first record, with its location
        return mapping

    def to_doc(self, raw: Any, location: Location) -> Doc:
        """Maps one raw record to a :class:`Doc`.

        Raises:
            MalformedRecordError: Not a mapping, an empty or non-scalar id, or non-string contents.
            MissingFieldError: The id or a contents column is absent.
        """
        record = _as_mapping(raw, location)
        try:
            raw_id = record[self.id_field]
        except KeyError:
            raise MissingFieldError(
                f"no id field {self.id_field!r}; the record has {_names(list(record))}; "
                "pass --id-field NAME (Python: id_field=NAME)",
                path=location[0],
                line=location[1],
            ) from None
        doc_id = _id_string(raw_id, self.id_field, location)
        parts: list[str] = []
        for name in self.fields:
            try:
                value = record[name]
            except KeyError:
                raise MissingFieldError(
                    f"no contents field {name!r}; the record has {_names(list(record))}; "
                    "pass --fields NAME[,NAME...] (Python: fields=[...])",
                    path=location[0],
                    line=location[1],
                ) from None
            if value is None:
                continue
            if not isinstance(value, str):
                raise MalformedRecordError(
                    f"contents field {name!r} is {_type_name(value)}, not a string; "
                    "pick text columns with --fields",
                    path=location[0],
                    line=location[1],
                )
            parts.append(value)
        display: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for key, value in record.items():
            if key in self._skip or not isinstance(key, str):
                continue
            keep, clean = _display_value(value)
            if not keep:
                if key not in self._dropped:  # said once per column, never silently
                    self._dropped.add(key)
                    logger.warning(
                        "%s: column %r holds %s, which is not kept for display (only text, numbers, dates "
                        "and lists of up to %d of them are)",
                        format_location(location), key, _type_name(value), MAX_LIST_ITEMS,
                    )  # fmt: skip
                continue
            display[key] = clean
            meta_key = META_COLUMNS.get(key.lower())
            if meta_key is not None:
                meta[meta_key] = clean
        return Doc(id=doc_id, text="\n".join(parts), fields=display, meta=meta)


class DocPassThrough(FieldMap):
    """Takes :class:`Doc` records from Python as they are (checking only their type and id)."""

    def __init__(self) -> None:
        super().__init__("id", ("text",))

    def to_doc(self, raw: Any, location: Location) -> Doc:
        """Returns ``raw`` when it is a Doc with a non-empty string id and string text.

        Raises:
            MalformedRecordError: ``raw`` is not a Doc, or its id or text is unusable.
        """
        if not isinstance(raw, Doc):
            raise MalformedRecordError(
                f"record is {_type_name(raw)} but the first record was a Doc; pass only Doc objects or only dicts",
                path=location[0],
                line=location[1],
            )
        if not isinstance(raw.id, str) or not raw.id.strip():
            raise MalformedRecordError(
                f"Doc id {raw.id!r} is not a non-empty string", path=location[0], line=location[1]
            )
        if not isinstance(raw.text, str):
            raise MalformedRecordError(
                f"Doc text is {_type_name(raw.text)}, not a string", path=location[0], line=location[1]
            )
        return raw


def _as_mapping(raw: Any, location: Location) -> Mapping[str, Any]:
    if type(raw) is dict or isinstance(raw, Mapping):
        return raw
    raise MalformedRecordError(
        f"record is {_type_name(raw)}, not an object; each record must be one object such as "
        '{"id": "d1", "contents": "..."}',
        path=location[0],
        line=location[1],
    )


def _id_string(raw_id: Any, id_field: str, location: Location) -> str:
    if type(raw_id) is str and raw_id and not raw_id[0].isspace():
        return raw_id
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        if raw_id is None:
            raise MissingFieldError(
                f"id field {id_field!r} is null; every record needs an id (or choose --id-field)",
                path=location[0],
                line=location[1],
            )
        raise MalformedRecordError(
            f"id field {id_field!r} is {_type_name(raw_id)}; ids must be strings or integers "
            "(choose another column with --id-field)",
            path=location[0],
            line=location[1],
        )
    doc_id = str(raw_id)
    if not doc_id.strip():
        raise MalformedRecordError(
            f"empty id in field {id_field!r}; every record needs a non-empty id",
            path=location[0],
            line=location[1],
        )
    return doc_id


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    return f"a {type(value).__name__}"


def _headerless_hint(location: Location) -> str:
    """For a TSV file: how to have its lines read as ``id<TAB>text`` when it has no header."""
    if not str(location[0]).lower().endswith((".tsv", ".tsv.gz")):
        return ""
    return (
        "; if this TSV has no header row and each line is `id<TAB>text`, add the header line "
        "`id<TAB>contents` (a headerless TSV is recognised only when its first text has a space "
        "in it; --id-field would read its first document as the header)"
    )


def _names(names: Sequence[Any], limit: int = 12) -> str:
    shown = [str(n) for n in names[:limit]]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return (", ".join(shown) + more) if shown else "no fields"


class TableCorpus(Corpus):
    """A corpus of records (rows/objects) from files, a dataset or a Python iterable.

    Args:
        records: Returns a fresh iterator of ``(record, path, line)`` on each call.
        source: See :class:`Corpus`.
        format: See :class:`Corpus`.
        id_field: The id column, or None to pick the first of ``ID_CANDIDATES`` present.
        fields: The contents columns, or None to pick the first of ``CONTENTS_CANDIDATES``.
        progress: Show a progress bar while iterating.
        total: The number of records when known cheaply (for the progress bar).
        extra: More JSON-serialisable entries for :meth:`describe`.
        rescan: Whether ``records`` can be called again (False for one-shot iterators).

    Raises:
        EmptyCorpusError: The source yields no records.
        MissingFieldError: No id or contents column can be found in the first record.
    """

    def __init__(
        self,
        records: Callable[[], LocatedRecords],
        *,
        source: str,
        format: str,
        id_field: str | None,
        fields: Sequence[str] | None,
        progress: bool = True,
        total: int | None = None,
        extra: Mapping[str, Any] | None = None,
        rescan: bool = True,
        empty_path: str | None = None,
    ) -> None:
        self._records = records
        self._rescan = rescan
        it = records()
        try:
            first, path, line = next(it)
        except StopIteration:
            raise EmptyCorpusError(
                "holds no records; check the file, or the split/config of the dataset",
                path=empty_path or source,
            ) from None
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        self._map = FieldMap.resolve(first, (path, line), id_field=id_field, fields=fields)
        super().__init__(
            source=source,
            format=format,
            id_field=self._map.id_field,
            fields=self._map.fields,
            progress=progress,
            total=total,
            extra=extra,
        )

    def _can_rescan(self) -> bool:
        return self._rescan

    def _located_docs(self) -> Iterator[tuple[Doc, Location]]:
        to_doc = self._map.to_doc
        for record, path, line in self._records():
            location = (path, line)
            yield to_doc(record, location), location


def iterable_records(rows: Iterable[Any], name: str) -> Callable[[], LocatedRecords]:
    """Wraps a Python iterable (or one-shot iterator) of dicts as a record factory.

    A one-shot iterator can be read once only: the first record, read to resolve the fields, is
    kept and replayed; a second full pass raises :class:`CorpusError`.
    """
    if iter(rows) is not rows:  # a re-iterable container

        def again() -> LocatedRecords:
            for number, row in enumerate(rows, start=1):
                yield row, name, number

        return again

    state = {"passes": 0}
    head: list[Any] = []

    def once() -> LocatedRecords:
        state["passes"] += 1
        if state["passes"] == 1:  # the peek that resolves the fields: keep the first row
            for row in rows:
                head.append(row)
                yield row, name, 1
                return
            return
        if state["passes"] > 2:
            raise CorpusError(
                "a one-shot iterator can be read only once; pass a list, a callable that returns a "
                "fresh iterator, or a datasets.Dataset",
                path=name,
            )
        yield from ((row, name, number) for number, row in enumerate(head, start=1))
        start = len(head) + 1
        yield from ((row, name, number) for number, row in enumerate(rows, start=start))

    return once
