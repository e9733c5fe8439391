"""The bundle's docstore: one Parquet file, the source of truth for display and rebuilds.

Columns: ``id`` (string), ``text`` (large string), ``fields`` and ``meta`` (JSON strings, so
that corpora with varying columns share one schema). Rows keep corpus order; a row's number is
the document's ordinal, which the backends use as their internal doc number.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

from spacerini.errors import BundleCorruptError
from spacerini.records import Doc

FILENAME = "docs.parquet"
ROW_GROUP = 2048


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.large_string()),
            ("fields", pa.string()),
            ("meta", pa.string()),
        ]
    )


class DocstoreWriter:
    """Streams docs into ``folder/docs.parquet`` in row groups of ``ROW_GROUP`` rows.

    Example:
        >>> with DocstoreWriter(folder) as writer:  # doctest: +SKIP
        ...     for doc in docs:
        ...         writer.add(doc)
    """

    def __init__(self, folder: Path) -> None:
        import pyarrow.parquet as pq

        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / FILENAME
        self._writer = pq.ParquetWriter(self.path, _schema(), compression="zstd")
        self._rows: dict[str, list[Any]] = {"id": [], "text": [], "fields": [], "meta": []}
        self.count = 0
        self.text_bytes = 0

    def add(self, doc: Doc) -> None:
        """Appends one document."""
        rows = self._rows
        rows["id"].append(doc.id)
        rows["text"].append(doc.text)
        rows["fields"].append(json.dumps(dict(doc.fields), ensure_ascii=False, default=str))
        rows["meta"].append(json.dumps(dict(doc.meta), ensure_ascii=False, default=str))
        self.count += 1
        self.text_bytes += len(doc.text.encode("utf-8", "surrogatepass"))
        if len(rows["id"]) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._rows["id"]:
            return
        table = pa.table(self._rows, schema=_schema())
        self._writer.write_table(table, row_group_size=ROW_GROUP)
        self._rows = {"id": [], "text": [], "fields": [], "meta": []}

    def close(self) -> None:
        """Flushes the last rows and closes the file."""
        self._flush()
        self._writer.close()

    def __enter__(self) -> DocstoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # A failure or Ctrl-C mid-add can leave the pending columns uneven: writing them would
        # raise an Arrow error in place of the real one. The file is discarded with its folder.
        self._rows = {"id": [], "text": [], "fields": [], "meta": []}
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - the original exception is what the caller must see
            pass


def _to_doc(docid: str, text: str, fields: str | None, meta: str | None) -> Doc:
    return Doc(
        id=docid,
        text=text,
        fields=MappingProxyType(json.loads(fields)) if fields else MappingProxyType({}),
        meta=MappingProxyType(json.loads(meta)) if meta else MappingProxyType({}),
    )


class Docstore:
    """Read access to a bundle's docstore: streaming, by row number and by id.

    Args:
        folder: The ``docs/`` folder of a bundle.
        cache_groups: How many decoded row groups to keep in memory (bounded LRU).

    Raises:
        BundleCorruptError: The Parquet file is missing or unreadable.
    """

    def __init__(self, folder: Path, *, cache_groups: int = 8) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = folder / FILENAME
        try:
            # One memory map for the docstore's life: every reader below reads these bytes, so a
            # docstore keeps reading its own generation after a newer bundle replaced the file.
            self._buffer = pa.memory_map(str(self.path), "r").read_buffer()
            self._file = pq.ParquetFile(pa.BufferReader(self._buffer))
        except (OSError, ValueError) as exc:
            raise BundleCorruptError(f"{self.path}: cannot read the docstore ({exc}); rebuild the bundle") from exc
        meta = self._file.metadata
        self._group_starts: list[int] = []
        start = 0
        for g in range(meta.num_row_groups):
            self._group_starts.append(start)
            start += meta.row_group(g).num_rows
        self._len = start
        self._cache: OrderedDict[int, dict[str, list[Any]]] = OrderedDict()
        self._cache_groups = cache_groups
        self._lock = threading.Lock()
        self._ids: list[str] | None = None
        self._row_of: dict[str, int] | None = None

    def __len__(self) -> int:
        return self._len

    def _reader(self) -> Any:
        """A reader of its own over the docstore's memory map (a stream needs its own position)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.ParquetFile(pa.BufferReader(self._buffer))

    def iter_docs(self, *, batch_size: int = ROW_GROUP, start: int = 0, stop: int | None = None) -> Iterator[Doc]:
        """Yields the documents of rows ``start .. stop - 1`` (default: all) in corpus order.

        Only the row groups that hold those rows are read (a shard of a sharded bundle reads
        its own range), one batch at a time.
        """
        stop = self._len if stop is None else min(stop, self._len)
        if start <= 0 and stop >= self._len:
            groups: list[int] | None = None
            first_row = 0
        else:
            import bisect

            if start >= stop:
                return
            g0 = bisect.bisect_right(self._group_starts, start) - 1
            g1 = bisect.bisect_right(self._group_starts, stop - 1) - 1
            groups = list(range(g0, g1 + 1))
            first_row = self._group_starts[g0]
        reader = self._reader()
        row = first_row
        for batch in reader.iter_batches(batch_size=batch_size, row_groups=groups):
            cols = batch.to_pydict()
            for docid, text, fields, meta in zip(cols["id"], cols["text"], cols["fields"], cols["meta"], strict=True):
                if start <= row < stop:
                    yield _to_doc(docid, text, fields, meta)
                row += 1
                if row >= stop:
                    return

    def text_lengths(self) -> list[int]:
        """The UTF-8 byte length of every document's text, in corpus order (for sizing shards)."""
        import pyarrow.compute as pc

        lengths: list[int] = []
        for batch in self._reader().iter_batches(columns=["text"]):
            lengths.extend(pc.binary_length(pc.cast(batch.column(0), "large_binary")).to_pylist())
        return lengths

    def ids(self) -> list[str]:
        """Returns all document ids in corpus order (loaded once, then cached)."""
        if self._ids is None:
            self._ids = self._file.read(columns=["id"]).column("id").to_pylist()
        return self._ids

    def row_of(self, docid: str) -> int:
        """Returns the row number of ``docid``.

        Raises:
            KeyError: No document has this id.
        """
        if self._row_of is None:
            self._row_of = {d: i for i, d in enumerate(self.ids())}
        return self._row_of[docid]

    def __contains__(self, docid: object) -> bool:
        try:
            self.row_of(docid)  # type: ignore[arg-type]
        except KeyError:
            return False
        return True

    def _group(self, g: int) -> dict[str, list[Any]]:
        with self._lock:
            cols = self._cache.get(g)
            if cols is not None:
                self._cache.move_to_end(g)
                return cols
            cols = self._file.read_row_group(g).to_pydict()
            self._cache[g] = cols
            if len(self._cache) > self._cache_groups:
                self._cache.popitem(last=False)
            return cols

    def by_row(self, row: int) -> Doc:
        """Returns the document at ``row`` (0-based, corpus order)."""
        if not 0 <= row < self._len:
            raise IndexError(f"row {row} out of range (0..{self._len - 1})")
        import bisect

        g = bisect.bisect_right(self._group_starts, row) - 1
        cols = self._group(g)
        i = row - self._group_starts[g]
        return _to_doc(cols["id"][i], cols["text"][i], cols["fields"][i], cols["meta"][i])

    def get(self, docid: str) -> Doc:
        """Returns the document with id ``docid``.

        Raises:
            KeyError: No document has this id.
        """
        return self.by_row(self.row_of(docid))

    def get_many(self, docids: Iterable[str]) -> list[Doc]:
        """Returns the documents for ``docids`` in the given order."""
        return [self.get(d) for d in docids]

    def iter_meta(self, *, columns: tuple[str, ...] = ("id", "fields", "meta")) -> Iterator[dict[str, Any]]:
        """Yields plain dicts of the light columns (no text), for statistics."""
        for batch in self._reader().iter_batches(columns=list(columns)):
            cols = batch.to_pydict()
            for i in range(batch.num_rows):
                yield {c: cols[c][i] for c in columns}
