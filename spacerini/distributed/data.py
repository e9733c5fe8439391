"""Reading and preprocessing on Ray Data (``--engine ray``): the same documents, in the same order,
with the same step reports as the local build.

How a corpus goes through Ray:

* **Reading.** The source is opened by :func:`spacerini.corpus.load_corpus` on the driver as
  always (it checks the source and resolves the id and contents columns from the first record),
  then cut into *chunks* that Ray Data reads in parallel, streaming: line-aligned byte ranges of
  a JSON-lines file, row groups of a Parquet file, row ranges of a ``save_to_disk`` dataset
  (``hf:/path``), and whole files for what cannot be split (gzip, a JSON array, CSV/TSV). Each
  chunk is parsed by the local readers' own code, so every record becomes the same
  :class:`~spacerini.records.Doc` and every bad record the same one-line error (file and
  line). Ray's own ``read_json`` is not used: pyarrow's JSON reader unifies a schema over
  each block (a key absent from a record comes back as ``null``, which changes the display
  fields and hides a missing id) and cannot name the line of a bad record. Sources that cannot
  be cut (a Hub dataset streamed over the network, a folder of code, Python objects) are read
  by the local loader on the driver and handed to Ray in blocks; a log line says so.
* **Order.** Every document carries a key, ``chunk << 40 | record``, that sorts as the local
  loader reads (file order, then line order). Duplicate ids are found by a group-by on the id;
  the error raised is the one the local loader meets first in that order.
* **Per-document steps** (pii, licence, language, quality, optout) run in ``map_batches``; each
  batch sends back its counts, and the driver sums them into the step object itself, so
  :meth:`~spacerini.preprocess.base.BaseStep.report` gives the local report (examples are the
  first ones by key, label tallies keep the first labels by key).
* **Exact dedup** hashes each text in ``map_batches`` and groups by the hash; each group keeps
  its smallest key, as the local step keeps the first copy.
* **Near-dedup** computes MinHash signatures in ``map_batches`` and shuffles them by LSH band
  key; each bucket with two or more documents sends back only integers: its members and the
  pairs (earlier, later) whose estimated Jaccard similarity reaches the threshold. The driver
  replays the local greedy decision over that sparse graph in key order
  (:func:`replay_near_dedup`): a document is dropped when an earlier *kept* document is among its
  candidates, matched to the smallest such one, exactly as :class:`~spacerini.preprocess.dedup.NearDedup`.
* **Writing.** The documents left are sorted by key and stream into the docstore on the driver.

Steps run in the order given, as locally (``pii`` before ``dedup`` changes the hashes).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spacerini import errors
from spacerini.errors import BundleError, CorpusError, DuplicateIdError, SpaceriniError
from spacerini.records import Doc

logger = logging.getLogger(__name__)

#: Bits of a document key given to the record number inside its chunk.
KEY_SHIFT = 40
#: Bytes of a JSON-lines file per chunk at most (a line is never cut).
CHUNK_BYTES = 64 * 2**20
#: Bytes of a JSON-lines file per chunk at least, when chunks are made smaller to spread a small
#: corpus over every CPU (each chunk is a Ray task).
MIN_CHUNK_BYTES = 4 * 2**20
#: Rows of a saved dataset per chunk.
CHUNK_ROWS = 100_000
#: Documents per block handed to Ray by a source read on the driver.
DRIVER_BLOCK = 5_000
#: Documents per batch of the per-document steps.
BATCH = 1_000

DOC_COLUMNS = ("key", "id", "text", "fields", "meta")
#: Columns of the streaming pipeline: a document (``kept`` 0 when a step removed it: only its id
#: and line are left), a record that cannot be read (``error``) or a block's step counters (``side``).
STREAM_COLUMNS = (*DOC_COLUMNS, "line", "error", "side", "kept")
_PER_DOC = ("pii", "licence", "language", "quality", "optout")


@dataclass(frozen=True)
class Chunk:
    """One unit of reading: a byte range, a run of row groups, a row range or a whole file.

    Attributes:
        index: Position in the corpus (the high bits of every key it yields).
        path: The file (or saved-dataset folder).
        kind: "lines" (byte range of JSON lines), "parquet" (row groups), "saved" (rows of a
            ``save_to_disk`` dataset) or "file" (the whole file, read by the local reader).
        fmt: The file format ("jsonl", "json", "parquet", "csv", "tsv", "hf").
        start: First byte, row group or row.
        end: End (exclusive) byte, row group or row.
        first_row: For "parquet": rows of the file before ``start`` (row numbers go on from it).
        split: For "saved": the split read.
    """

    index: int
    path: str
    kind: str
    fmt: str
    start: int = 0
    end: int = 0
    first_row: int = 0
    split: str | None = None


# ----------------------------------------------------------------------------------- planning
def plan_chunks(corpus: Any, *, chunk_bytes: int | None = None) -> list[Chunk] | None:
    """Cuts an opened corpus into chunks Ray Data reads in parallel.

    Args:
        corpus: The corpus :func:`~spacerini.corpus.load_corpus` opened (its files, or its saved
            dataset, are read again chunk by chunk).
        chunk_bytes: Bytes per chunk of a JSON-lines file (default :data:`CHUNK_BYTES`).

    Returns:
        The chunks in corpus order, or None when the corpus must be read on the driver (a Hub
        dataset, a code folder, Python objects).
    """
    from spacerini.corpus import files, hf
    from spacerini.corpus.base import TableCorpus

    if not isinstance(corpus, TableCorpus):
        return None
    records = corpus._records
    if isinstance(records, files.FileRecords):
        chunks: list[Chunk] = []
        chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        for file, fmt in records.files:
            for piece in _file_chunks(Path(file), fmt, chunk_bytes):
                chunks.append(Chunk(len(chunks), *piece))
        return chunks
    described = corpus.describe()
    folder = described.get("dataset")
    if corpus.format == "hf" and isinstance(folder, str) and hf.is_saved_dataset(Path(folder)):
        return _saved_chunks(Path(folder), described.get("split"))
    return None


def _file_chunks(file: Path, fmt: str, chunk_bytes: int) -> Iterator[tuple[Any, ...]]:
    from spacerini.corpus import files

    name = str(file)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(file).metadata
        except (pa.ArrowInvalid, OSError):
            yield name, "file", fmt  # the local reader says why it cannot be read
            return
        before = 0
        for group in range(meta.num_row_groups):
            yield name, "parquet", fmt, group, group + 1, before
            before += meta.row_group(group).num_rows
        return
    splittable = fmt == "jsonl" or (fmt == "json" and files._first_byte(file) != b"[")
    if not splittable or file.name.lower().endswith(".gz"):
        yield name, "file", fmt
        return
    size = file.stat().st_size
    start = 0
    with open(file, "rb") as handle:
        while start < size:
            end = start + chunk_bytes
            if end < size:
                handle.seek(end - 1)
                handle.readline()  # the chunk ends after the line holding byte end-1
                end = handle.tell()
            end = min(end, size)
            yield name, "lines", fmt, start, end
            start = end


def _saved_chunks(folder: Path, split: str | None) -> list[Chunk]:
    from spacerini.corpus import hf

    dataset, chosen = hf.load_saved(folder, split)
    rows = len(dataset)
    return [
        Chunk(i, str(folder), "saved", "hf", start, min(start + CHUNK_ROWS, rows), split=chosen)
        for i, start in enumerate(range(0, rows, CHUNK_ROWS))
    ]


# ------------------------------------------------------------------------------------ reading
def _chunk_records(chunk: Chunk) -> Iterator[tuple[Any, str, int | None]]:
    """The raw records of a chunk with their (path, line), as the local readers give them."""
    from spacerini.corpus import files

    path = Path(chunk.path)
    if chunk.kind == "file":
        yield from files.reader_for(chunk.fmt)(path)
    elif chunk.kind == "lines":
        yield from _read_lines(chunk)
    elif chunk.kind == "parquet":
        yield from _read_row_groups(chunk)
    elif chunk.kind == "saved":
        from spacerini.corpus import hf

        dataset, _ = hf.load_saved(path, chunk.split)
        rows = hf._unbatch(dataset.select(range(chunk.start, chunk.end)).iter(batch_size=1000))
        for number, row in enumerate(rows, start=chunk.start + 1):
            yield row, chunk.path, number
    else:  # pragma: no cover - plan_chunks makes only the kinds above
        raise BundleError(f"unknown chunk kind {chunk.kind!r}")


def _read_lines(chunk: Chunk) -> Iterator[tuple[Any, str, int | None]]:
    """:func:`spacerini.corpus.files.read_jsonl` over a byte range; line numbers are counted
    within the range and made absolute (by counting the lines before it) only for an error."""
    from spacerini.corpus import files

    name = chunk.path
    is_json = files.format_of(Path(name)) == "json"
    offset = chunk.start
    with open(name, "rb") as handle:
        handle.seek(chunk.start)
        number = 0
        for raw in handle:
            if offset >= chunk.end:
                break
            number += 1
            line_offset = offset
            if offset == 0 and raw.startswith(files._BOM):
                raw = raw[len(files._BOM) :]
                line_offset += len(files._BOM)
            offset = line_offset + len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                files._decode(raw, name, _absolute_line(chunk, number), line_offset)
                raise  # pragma: no cover - _decode raised
            if not text.strip():
                continue
            line_of = functools.partial(_absolute_line, chunk)
            yield files.parse_json_line(text, name, number, is_json=is_json, line_of=line_of), name, number


def _absolute_line(chunk: Chunk, number: int) -> int:
    if chunk.start == 0:
        return number
    before = 0
    with open(chunk.path, "rb") as handle:
        left = chunk.start
        while left > 0:
            block = handle.read(min(left, 1 << 20))
            if not block:
                break
            before += block.count(b"\n")
            left -= len(block)
    return before + number


def _read_row_groups(chunk: Chunk) -> Iterator[tuple[Any, str, int | None]]:
    """:func:`spacerini.corpus.files.read_parquet` over a run of row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = chunk.first_row
    with pq.ParquetFile(chunk.path) as parquet:
        try:
            for batch in parquet.iter_batches(batch_size=1024, row_groups=list(range(chunk.start, chunk.end))):
                for record in batch.to_pylist():
                    row += 1
                    yield record, chunk.path, row
        except (pa.ArrowInvalid, OSError) as exc:
            raise errors.MalformedRecordError(
                f"cannot read row group after row {row} ({exc})", path=chunk.path, line=row + 1
            ) from None


def _error_record(exc: SpaceriniError) -> str:
    return json.dumps({
        "class": type(exc).__name__, "message": errors_line(exc),
        "path": getattr(exc, "path", None), "line": getattr(exc, "line", None),
    })  # fmt: skip


def errors_line(exc: BaseException) -> str:
    """The first line of an error's message."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _doc_columns() -> dict[str, list[Any]]:
    return {name: [] for name in (*DOC_COLUMNS, "line", "error")}


def _encode(mapping: Any) -> str:
    # As the docstore stores them, so what comes out of Ray is what the docstore would hold.
    return json.dumps(dict(mapping), ensure_ascii=False, default=str) if mapping else ""


def _decode_mapping(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


def _table(columns: dict[str, list[Any]]) -> Any:
    import pyarrow as pa

    types = {"key": pa.int64(), "id": pa.string(), "text": pa.string(), "fields": pa.string(),
             "meta": pa.string(), "line": pa.int64(), "error": pa.string()}  # fmt: skip
    return pa.table({name: pa.array(values, type=types[name]) for name, values in columns.items()})


def _read_chunk_batch(batch: dict[str, Any], field_map: Any) -> Iterator[Any]:
    """Ray Data UDF: reads the chunks of a batch into document rows (and at most one error row each)."""
    for spec in batch["chunk"]:
        chunk = Chunk(**json.loads(spec))
        columns = _doc_columns()
        base = chunk.index << KEY_SHIFT
        record = 0
        try:
            for raw, path, line in _chunk_records(chunk):
                try:
                    doc = field_map.to_doc(raw, (path, line))
                except CorpusError as exc:
                    raise _relocated(exc, chunk) from None
                for name, value in zip(
                    (*DOC_COLUMNS, "line", "error"),
                    (base | record, doc.id, doc.text, _encode(doc.fields), _encode(doc.meta), line or 0, ""),
                    strict=True,
                ):
                    columns[name].append(value)
                record += 1
                if len(columns["key"]) >= BATCH:
                    yield _table(columns)
                    columns = _doc_columns()
        except SpaceriniError as exc:
            for name, value in zip(
                (*DOC_COLUMNS, "line", "error"), (base | record, "", "", "", "", 0, _error_record(exc)), strict=True
            ):
                columns[name].append(value)
        if columns["key"]:
            yield _table(columns)


def _read_and_process(batch: dict[str, Any], field_map: Any, steps: list[Any]) -> Iterator[Any]:
    """Ray Data UDF of the streaming pipeline: reads the chunks of a batch and runs the
    per-document steps on each block read; every block comes out in :data:`STREAM_COLUMNS`."""
    for table in _read_chunk_batch(batch, field_map):
        yield _process_block(table, steps)


def _process_block(table: Any, steps: Sequence[Any]) -> Any:
    """One block read (documents in key order, perhaps an error row last) after the steps, with
    the ``side`` and ``kept`` columns of :data:`STREAM_COLUMNS` (and one row of counters)."""
    import pyarrow as pa

    if not steps:
        rows = table.num_rows
        return table.append_column("side", pa.array([""] * rows, type=pa.string())).append_column(
            "kept", pa.array([1] * rows, type=pa.int8())
        )
    rows = table.to_pydict()
    docs = [i for i, error in enumerate(rows["error"]) if not error]
    outcome, partials = _run_steps({name: [rows[name][i] for i in docs] for name in DOC_COLUMNS}, steps)
    after = dict(zip(docs, outcome, strict=True))
    columns: dict[str, list[Any]] = {name: [] for name in STREAM_COLUMNS}

    def add(*values: Any) -> None:
        for name, value in zip(STREAM_COLUMNS, values, strict=True):
            columns[name].append(value)

    for i, key in enumerate(rows["key"]):
        line, error = rows["line"][i], rows["error"][i]
        if error:
            add(key, "", "", "", "", line, error, "", 0)
            continue
        doc = after[i]
        if doc is None:  # removed by a step: its id still counts for the duplicate check
            add(key, rows["id"][i], "", "", "", line, "", "", 0)
        else:
            add(key, doc.id, doc.text, _encode(doc.fields), _encode(doc.meta), line, "", "", 1)
    add(rows["key"][0] if rows["key"] else 0, "", "", "", "", 0, "", json.dumps(partials), 0)
    types = {"key": pa.int64(), "line": pa.int64(), "kept": pa.int8()}
    return pa.table({name: pa.array(values, type=types.get(name, pa.string())) for name, values in columns.items()})


def _repeated(batch: Any) -> Any:
    """Ray Data UDF over ``groupby("id").count()``: the ids counted more than once."""
    import pyarrow.compute as pc

    return batch.filter(pc.greater(batch.column("count()"), 1)).select(["id"])


def _with_ids(batch: Any, ids: list[str]) -> Any:
    """Ray Data UDF: the key, id and line of the rows whose id is one of ``ids``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return batch.filter(pc.is_in(batch.column("id"), value_set=pa.array(ids, type=pa.string()))).select(
        ["key", "id", "line"]
    )


def _relocated(exc: CorpusError, chunk: Chunk) -> CorpusError:
    """The error with its line counted from the start of the file (a "lines" chunk counts from its own start)."""
    if chunk.kind != "lines" or chunk.start == 0 or exc.line is None or exc.path is None:
        return exc
    message = errors_line(exc).removeprefix(f"{exc.path}:{exc.line}: ")
    return type(exc)(message, path=exc.path, line=_absolute_line(chunk, exc.line))


def _rebuild_error(record: str) -> SpaceriniError:
    data = json.loads(record)
    cls = getattr(errors, data["class"], None)
    message = data["message"]
    if isinstance(cls, type) and issubclass(cls, SpaceriniError):
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        if isinstance(error, CorpusError):
            error.path, error.line = data.get("path"), data.get("line")
        return error
    return BundleError(message)


# ------------------------------------------------------------------------------ the pipeline
class RayIngest:
    """Reads a corpus and runs preprocessing steps on Ray Data; then streams the documents out.

    Args:
        corpus: The corpus the local loader opened (checked, columns resolved), or any iterable
            of documents (read here and handed to Ray).
        steps: The preprocess steps, in order; their state is filled in so that their
            ``report()`` equals the local one.
        chunk_bytes: Bytes per chunk of a JSON-lines file (default: :data:`CHUNK_BYTES`, or less
            so that every CPU reads; see :meth:`_chunk_bytes`).
        runtime_env: Ray runtime environment of the tasks (default: this checkout importable,
            unless the Ray job already is; see :func:`spacerini.distributed.engine.task_runtime_env`).
    """

    def __init__(
        self,
        corpus: Iterable[Doc],
        steps: Sequence[Any],
        *,
        chunk_bytes: int | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        self.corpus = corpus
        self.steps = list(steps)
        self.chunk_bytes = chunk_bytes
        if runtime_env is None:
            from spacerini.distributed.engine import task_runtime_env

            runtime_env = task_runtime_env(None)
        self.runtime_env = runtime_env
        self.chunks: list[Chunk] | None = None

    # -- public ------------------------------------------------------------------------------
    def docs(self) -> Iterator[Doc]:
        """Runs the whole pipeline and yields the documents that come out, in corpus order.

        Without a global step (dedup, near-dedup) the corpus goes through one streaming Ray Data
        pipeline (:meth:`_streamed`); with one, it is read and checked first (:meth:`_load`).

        Raises:
            CorpusError: A record cannot be read, or two share an id (the error the local loader
                would meet first).
            BundleError: A Ray task failed in Ray itself.
        """
        import ray

        restore = _quiet_ray_data()
        try:
            segments = _segments(self.steps)
            if all(kind == "per-doc" for kind, _ in segments):
                self.chunks = plan_chunks(self.corpus, chunk_bytes=self._chunk_bytes())
                if self.chunks is not None:
                    yield from self._streamed([step for _, group in segments for step in group])
                    return
            clock = time.perf_counter()
            ds = self._load()
            logger.info("ray: read in %.1f s", time.perf_counter() - clock)
            for kind, group in segments:
                clock = time.perf_counter()
                ds = self._per_doc(ds, group) if kind == "per-doc" else self._global(ds, group[0])
                logger.info("ray: %s in %.1f s", ", ".join(step.name for step in group), time.perf_counter() - clock)
            yield from self._stream(ds)
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SpaceriniError):
                raise _rebuild_error(_error_record(cause)) from None
            raise BundleError(f"reading or preprocessing on Ray failed: {errors_line(cause or exc)}") from exc
        finally:
            restore()

    # -- the streaming pipeline ------------------------------------------------------------------
    def _chunk_bytes(self) -> int:
        """Bytes per JSON-lines chunk: :data:`CHUNK_BYTES`, or less so that every CPU of the cluster
        reads (two chunks per CPU, none under :data:`MIN_CHUNK_BYTES`), unless one was given."""
        if self.chunk_bytes is not None:
            return self.chunk_bytes
        import ray

        from spacerini.corpus import files

        records = getattr(self.corpus, "_records", None)
        total = 0
        if isinstance(records, files.FileRecords):
            total = sum(Path(file).stat().st_size for file, _ in records.files)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return min(CHUNK_BYTES, max(MIN_CHUNK_BYTES, -(-total // (2 * cpus))))

    def _streamed(self, steps: Sequence[Any]) -> Iterator[Doc]:
        """Reads the chunks and runs the per-document steps in one Ray Data pipeline, streaming.

        One stage (a task per chunk) parses the records and runs the steps on each block it
        reads; the blocks come back in chunk order (``preserve_order``) while later chunks are
        still being read, and the documents go out as they arrive: nothing is materialized,
        shuffled or sorted. This driver meets the records in the local loader's order, so it
        makes the local loader's checks itself: the first bad record or repeated id (a set of
        the ids seen, as the local loader keeps; documents a step removed still come back as
        their id, since the local loader sees them before the steps do) raises the local error.
        """
        import ray

        assert self.chunks is not None  # noqa: S101 - planned by docs()
        clock = time.perf_counter()
        items = [{"chunk": json.dumps(chunk.__dict__)} for chunk in self.chunks]
        logger.info(
            "ray: reading %d chunks of %s with Ray Data%s, streaming", len(items), getattr(self.corpus, "source", ""),
            f" and running {', '.join(step.name for step in steps)} on them" if steps else "",
        )  # fmt: skip
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _read_and_process, batch_size=1, batch_format="numpy", runtime_env=self.runtime_env,
            fn_kwargs={"field_map": self.corpus._map, "steps": list(steps)},
        )  # fmt: skip
        seen: set[str] = set()
        partials: list[list[dict[str, Any]]] = []
        last, count = -1, 0
        batches = ds.iter_batches(batch_size=None, batch_format="pyarrow")
        try:
            for batch in batches:
                rows = batch.to_pydict()
                for key, doc_id, text, fields, meta, line, error, side, kept in zip(
                    *(rows[name] for name in STREAM_COLUMNS), strict=True
                ):
                    if side:
                        partials.append(json.loads(side))
                        continue
                    if key <= last:  # pragma: no cover - Ray Data broke the order it promised
                        raise BundleError("Ray Data returned documents out of order: rebuild with --engine local")
                    last = key
                    if error:
                        raise _rebuild_error(error)
                    if doc_id in seen:
                        raise self._duplicate(doc_id, key, line)
                    seen.add(doc_id)
                    if kept:
                        count += 1
                        yield Doc(id=doc_id, text=text, fields=_decode_mapping(fields), meta=_decode_mapping(meta))
        finally:
            # An error, or a consumer that stops early, leaves the iterator suspended: close it,
            # so Ray Data's executor stops and drops its object references now, while Ray is up
            # (one dropped after ray.shutdown() makes Ray end the whole process).
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        for i, step in enumerate(steps):
            _merge_partials(step, [part[i] for part in partials])
        logger.info("ray: read%s %d documents in %.1f s, streaming", " and preprocessed" if steps else "", count,
                    time.perf_counter() - clock)  # fmt: skip

    def _duplicate(self, doc_id: str, key: int, line: int) -> DuplicateIdError:
        """The local loader's error for a repeated id: it names where the id was first seen,
        found (as the local loader does) by reading again, here the chunks up to this one."""
        import ray

        assert self.chunks is not None  # noqa: S101 - only called while streaming chunks
        items = [{"chunk": json.dumps(chunk.__dict__)} for chunk in self.chunks[: (key >> KEY_SHIFT) + 1]]
        rows = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _read_chunk_batch, batch_size=1, fn_kwargs={"field_map": self.corpus._map}, batch_format="numpy",
            runtime_env=self.runtime_env,
        ).map_batches(_with_ids, batch_format="pyarrow", fn_kwargs={"ids": [doc_id]}).take_all()  # fmt: skip
        first_key, first_line = min((row["key"], row["line"]) for row in rows)
        where = self._location(key, line)
        return DuplicateIdError(
            f"duplicate id {doc_id!r} (first at {self._location(first_key, first_line)}); ids must be unique: "
            "remove the duplicate or choose another id column with --id-field",
            path=where.rsplit(":", 1)[0], line=int(where.rsplit(":", 1)[1]),
        )  # fmt: skip

    # -- reading -----------------------------------------------------------------------------
    def _load(self) -> Any:
        import ray

        self.chunks = plan_chunks(self.corpus, chunk_bytes=self._chunk_bytes())
        if self.chunks is None:
            logger.info(
                "ray: %s cannot be cut into chunks Ray Data reads (a Hub stream, code or Python objects): "
                "the local loader reads it here and hands it to Ray in blocks of %d documents",
                getattr(self.corpus, "source", "the source"), DRIVER_BLOCK,
            )  # fmt: skip
            return self._from_driver()
        field_map = self.corpus._map
        items = [{"chunk": json.dumps(chunk.__dict__)} for chunk in self.chunks]
        logger.info("ray: reading %d chunks of %s with Ray Data", len(items), getattr(self.corpus, "source", ""))
        read = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _read_chunk_batch, batch_size=1, fn_kwargs={"field_map": field_map}, batch_format="numpy",
            runtime_env=self.runtime_env,
        ).materialize()  # fmt: skip
        self._check_loaded(read)
        return read.filter(expr="error == ''").select_columns(list(DOC_COLUMNS))

    def _from_driver(self) -> Any:
        import ray

        refs = []
        columns = {name: [] for name in DOC_COLUMNS}
        for number, doc in enumerate(self.corpus):
            for name, value in zip(DOC_COLUMNS, (number, doc.id, doc.text, _encode(doc.fields), _encode(doc.meta)), strict=True):
                columns[name].append(value)
            if len(columns["key"]) >= DRIVER_BLOCK:
                refs.append(ray.put(_doc_table(columns)))
                columns = {name: [] for name in DOC_COLUMNS}
        if columns["key"] or not refs:
            refs.append(ray.put(_doc_table(columns)))
        return ray.data.from_arrow_refs(refs)

    def _check_loaded(self, read: Any) -> None:
        """Raises the first error in corpus order: a record that cannot be read, or a duplicate id."""
        failures = read.filter(expr="error != ''").select_columns(["key", "error"]).take_all()
        first_error = min(failures, key=lambda row: row["key"]) if failures else None
        counts = read.filter(expr="error == ''").groupby("id", num_partitions=_partitions(read)).count()
        dup_ids = {row["id"] for row in counts.map_batches(_repeated, batch_format="pyarrow").take_all()}
        duplicate: tuple[int, DuplicateIdError] | None = None
        if dup_ids:
            rows = read.filter(expr="error == ''").map_batches(
                _with_ids, batch_format="pyarrow", fn_kwargs={"ids": sorted(dup_ids)}
            ).take_all()
            by_id: dict[str, list[tuple[int, int]]] = {}
            for row in rows:
                by_id.setdefault(row["id"], []).append((row["key"], row["line"]))
            for doc_id, places in by_id.items():
                places.sort()
                (_, line1), (key2, line2) = places[0], places[1]
                if duplicate is None or key2 < duplicate[0]:
                    first = self._location(places[0][0], line1)
                    where = self._location(key2, line2)
                    duplicate = (key2, DuplicateIdError(
                        f"duplicate id {doc_id!r} (first at {first}); ids must be unique: "
                        "remove the duplicate or choose another id column with --id-field",
                        path=where.rsplit(":", 1)[0], line=int(where.rsplit(":", 1)[1]),
                    ))  # fmt: skip
        if first_error is not None and (duplicate is None or first_error["key"] < duplicate[0]):
            raise _rebuild_error(first_error["error"])
        if duplicate is not None:
            raise duplicate[1]

    def _location(self, key: int, line: int) -> str:
        assert self.chunks is not None  # noqa: S101 - only called after planning
        chunk = self.chunks[key >> KEY_SHIFT]
        if chunk.kind == "lines":
            line = _absolute_line(chunk, line)
        return f"{chunk.path}:{line}"

    # -- per-document steps --------------------------------------------------------------------
    def _per_doc(self, ds: Any, steps: Sequence[Any]) -> Any:
        out = ds.map_batches(
            _per_doc_batch, batch_size=BATCH, batch_format="pyarrow", fn_kwargs={"steps": list(steps)},
            runtime_env=self.runtime_env,
        ).materialize()  # fmt: skip
        partials = [json.loads(row["side"]) for row in out.filter(expr="side != ''").select_columns(["side"]).take_all()]
        for i, step in enumerate(steps):
            _merge_partials(step, [p[i] for p in partials])
        return out.filter(expr="side == ''").select_columns(list(DOC_COLUMNS))

    # -- global steps ----------------------------------------------------------------------------
    def _global(self, ds: Any, step: Any) -> Any:
        if step.name == "dedup":
            return self._exact_dedup(ds, step)
        return self._near_dedup(ds, step)

    def _exact_dedup(self, ds: Any, step: Any) -> Any:
        from ray.data.aggregate import Count, Sum

        started = time.perf_counter()
        kept = ds.map_batches(
            _hash_batch, batch_format="pyarrow", fn_kwargs={"step": step}, runtime_env=self.runtime_env
        ).groupby("hash", num_partitions=_partitions(ds)).map_groups(_keep_first, batch_format="pyarrow", runtime_env=self.runtime_env).materialize()
        totals = kept.aggregate(Count(), Sum("size"), Sum("chars"), Sum("has_cluster"))
        docs_out, docs_in = totals["count()"], int(totals["sum(size)"] or 0)
        # The first clusters by their first removal: each block's first ones, then the first of those.
        firsts = kept.map_batches(_first_clusters, batch_format="pyarrow", fn_kwargs={"cap": _cluster_cap()}).take_all()
        finish_exact_dedup(step, docs_in=docs_in, docs_out=docs_out, chars=int(totals["sum(chars)"] or 0),
                           clusters=int(totals["sum(has_cluster)"] or 0), firsts=firsts)  # fmt: skip
        step.seconds = time.perf_counter() - started
        return kept.select_columns(list(DOC_COLUMNS))

    def _near_dedup(self, ds: Any, step: Any) -> Any:
        from ray.data.aggregate import Count, Sum

        started = time.perf_counter()
        sketched = ds.map_batches(
            _sketch_batch, batch_format="pyarrow", fn_kwargs={"step": step}, runtime_env=self.runtime_env
        ).materialize()
        totals = sketched.aggregate(Count(), Sum("first"), Sum("chars"), Sum("no_tokens"))
        docs_in, empty = int(totals["sum(first)"] or 0), int(totals["sum(no_tokens)"] or 0)
        total_entries = totals["count()"] - empty
        buckets = sketched.filter(expr="no_tokens == 0").groupby("band", num_partitions=_partitions(sketched)).map_groups(
            _bucket_pairs, batch_format="pyarrow", fn_kwargs={"threshold": step.threshold, "verify": step.verify},
            runtime_env=self.runtime_env,
        ).take_all()  # fmt: skip
        members = [np.frombuffer(row["members"], dtype=np.int64) for row in buckets]
        distinct = [np.frombuffer(row["distinct_keys"], dtype=np.int64) for row in buckets]
        pairs = [np.frombuffer(row["pairs"], dtype=np.int64).reshape(-1, 2) for row in buckets]
        result = replay_near_dedup(pairs)
        dropped = np.fromiter(sorted(result), dtype=np.int64, count=len(result))
        buckets_kept = _bucket_count(total_entries, members, distinct, result)
        # The ids the report names: kept documents of the first clusters, removed ones and examples.
        wanted = _near_report_keys(result)
        chars = int(totals["sum(chars)"] or 0)
        names = {}
        if wanted:
            wanted_array = np.array(sorted(wanted), dtype=np.int64)
            named = ds.map_batches(
                _select_keys, batch_format="pyarrow", fn_kwargs={"keys": wanted_array}
            ).select_columns(["key", "id"]).take_all()
            names = {row["key"]: row["id"] for row in named}
        step._reset_counts()
        step._reset()
        step.docs_in, step.bytes_in = docs_in, chars
        step.docs_out = docs_in - len(result)
        for key in sorted(result):
            step.removed["near_duplicate"] += 1
            step._example("near_duplicate", names.get(key, ""))
            match = result[key]
            step._clusters.add(match, names.get(match, ""), names.get(key, ""))
        step._ids = _Sized(docs_in - empty - len(result))
        step._buckets = _Sized(buckets_kept)
        step._empty = empty
        step.seconds = time.perf_counter() - started
        if not len(dropped):
            return ds
        return ds.map_batches(
            _drop_keys, batch_format="pyarrow", fn_kwargs={"dropped": dropped}, runtime_env=self.runtime_env
        )

    # -- writing -----------------------------------------------------------------------------
    def _stream(self, ds: Any) -> Iterator[Doc]:
        last = -1
        ds = ds.materialize()
        if ds.count() == 0:  # everything was removed (sorting nothing fails in Ray)
            return
        for batch in ds.sort("key").iter_batches(batch_size=BATCH, batch_format="pyarrow"):
            rows = batch.to_pydict()
            for key, doc_id, text, fields, meta in zip(*(rows[name] for name in DOC_COLUMNS), strict=True):
                if key <= last:  # pragma: no cover - Ray Data broke the order it promised
                    raise BundleError("Ray Data returned documents out of order: rebuild with --engine local")
                last = key
                yield Doc(id=doc_id, text=text, fields=_decode_mapping(fields), meta=_decode_mapping(meta))


#: Bytes of a shuffle partition to aim for.
PARTITION_BYTES = 256 * 2**20


def _partitions(ds: Any) -> int:
    """Partitions of a group-by: two per CPU of the cluster, more when the data is large.

    Ray Data's default (200) costs a task or more each, which dominates a small build.
    """
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    try:
        size = ds.size_bytes() if hasattr(ds, "_plan") and ds._plan.has_computed_output() else 0
    except Exception:  # noqa: BLE001 - only a hint
        size = 0
    return max(1, min(1000, max(2 * cpus, -(-size // PARTITION_BYTES))))


def _quiet_ray_data() -> Callable[[], None]:
    """Sets Ray Data up for the ingest (no progress bars, blocks in order); returns the undo."""
    from ray.data import DataContext

    context = DataContext.get_current()
    data_logger = logging.getLogger("ray.data")
    saved = (context.enable_progress_bars, context.execution_options.preserve_order,
             context.print_on_execution_start, data_logger.level)  # fmt: skip
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True
    context.print_on_execution_start = False
    data_logger.setLevel(logging.ERROR)  # its warnings (no progress bars, CPUs busy) are not the user's to act on

    def restore() -> None:
        context.enable_progress_bars, context.execution_options.preserve_order = saved[0], saved[1]
        context.print_on_execution_start = saved[2]
        data_logger.setLevel(saved[3])

    return restore


def _doc_table(columns: dict[str, list[Any]]) -> Any:
    import pyarrow as pa

    types = {"key": pa.int64(), "id": pa.string(), "text": pa.string(), "fields": pa.string(), "meta": pa.string()}
    return pa.table({name: pa.array(columns[name], type=types[name]) for name in DOC_COLUMNS})


def _segments(steps: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    """Groups steps into runs of per-document steps (one map_batches) and single global steps."""
    out: list[tuple[str, list[Any]]] = []
    for step in steps:
        if step.name in ("dedup", "near-dedup"):
            out.append(("global", [step]))
        elif step.name in _PER_DOC:
            if out and out[-1][0] == "per-doc":
                out[-1][1].append(step)
            else:
                out.append(("per-doc", [step]))
        else:
            raise BundleError(f"preprocess step {step.name!r} cannot run on Ray: use --engine local")
    return out


class _Sized:
    """Stands in for a collection a step's report only takes the length of."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _cluster_cap() -> int:
    from spacerini.preprocess.dedup import MAX_CLUSTERS

    return MAX_CLUSTERS


# ----------------------------------------------------------------------- per-document steps
class _KeyedTally:
    """A :class:`~spacerini.preprocess.filters._Tally` without a cap that remembers the first key of each label."""

    def __init__(self, current: list[int]) -> None:
        self.current = current
        self.counts: dict[str, list[int]] = {}

    def add(self, label: str) -> None:
        entry = self.counts.get(label)
        if entry is None:
            self.counts[label] = [1, self.current[0]]
        else:
            entry[0] += 1


def _per_doc_batch(batch: Any, steps: list[Any]) -> Any:
    """Ray Data UDF: runs a chain of per-document steps over a batch; adds one row of counts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # In key order, so the first examples and labels of a batch are its smallest keys.
    rows = batch.take(pc.sort_indices(batch, sort_keys=[("key", "ascending")])).to_pydict()
    outcome, partials = _run_steps(rows, steps)
    columns = {name: [] for name in (*DOC_COLUMNS, "side")}
    for key, doc in zip(rows["key"], outcome, strict=True):
        if doc is not None:
            for name, value in zip(DOC_COLUMNS, (key, doc.id, doc.text, _encode(doc.fields), _encode(doc.meta)), strict=True):
                columns[name].append(value)
            columns["side"].append("")
    first = rows["key"][0] if rows["key"] else 0
    for name, value in zip(DOC_COLUMNS, (first, "", "", "", ""), strict=True):
        columns[name].append(value)
    columns["side"].append(json.dumps(partials))
    return pa.table({name: pa.array(values, type=pa.int64() if name == "key" else pa.string())
                     for name, values in columns.items()})  # fmt: skip


def _run_steps(rows: dict[str, list[Any]], steps: Sequence[Any]) -> tuple[list[Doc | None], list[dict[str, Any]]]:
    """Runs a chain of per-document steps over rows in key order, as the local steps would.

    Args:
        rows: Columns :data:`DOC_COLUMNS` (at least), in key order.
        steps: The per-document steps (their counters are reset and refilled here).

    Returns:
        Each row's document after the steps (None: a step removed it), and each step's counters
        for this batch (see :func:`_partial`).
    """
    current = [0]
    examples: list[dict[str, list[tuple[int, str]]]] = []
    for step in steps:
        step._reset_counts()
        step._reset()
        found: dict[str, list[tuple[int, str]]] = {}
        examples.append(found)

        def record(reason: str, docid: str, found: dict[str, list[tuple[int, str]]] = found) -> None:
            ids = found.setdefault(reason, [])
            if len(ids) < _max_examples():
                ids.append((current[0], docid))

        step._example = record
        if hasattr(step, "_seen"):
            step._seen = _KeyedTally(current)
    outcome: list[Doc | None] = []
    clock = time.perf_counter
    for key, doc_id, text, fields, meta in zip(*(rows[name] for name in DOC_COLUMNS), strict=True):
        current[0] = key
        doc: Doc | None = Doc(id=doc_id, text=text, fields=_decode_mapping(fields), meta=_decode_mapping(meta))
        for step in steps:
            started = clock()
            step.docs_in += 1
            step.bytes_in += len(doc.text)
            doc = step._process(doc)
            step.seconds += clock() - started
            if doc is None:
                break
            step.docs_out += 1
        outcome.append(doc)
    return outcome, [_partial(step, found) for step, found in zip(steps, examples, strict=True)]


def _max_examples() -> int:
    from spacerini.preprocess.base import MAX_EXAMPLES

    return MAX_EXAMPLES


def _partial(step: Any, examples: dict[str, list[tuple[int, str]]]) -> dict[str, Any]:
    """What one batch did in one step: the counters the step's report is made of."""
    out: dict[str, Any] = {
        "docs_in": step.docs_in, "docs_out": step.docs_out, "removed": dict(step.removed),
        "changed": dict(step.changed), "examples": examples, "seconds": step.seconds, "bytes_in": step.bytes_in,
    }  # fmt: skip
    if step.name == "pii":
        out["found"] = dict(step._found)
        out["docs_with_pii"] = step._docs_with_pii
    elif step.name == "optout":
        out["ids_found"] = sorted(step._ids_found)
    elif step.name == "quality":
        out["skipped"] = step._skipped
    if isinstance(getattr(step, "_seen", None), _KeyedTally):
        out["seen"] = step._seen.counts
    return out


def _merge_partials(step: Any, partials: Sequence[dict[str, Any]]) -> None:
    """Sums the batches' counters into the step itself, so ``step.report()`` is the local report."""
    step._reset_counts()
    step._reset()
    examples: dict[str, list[tuple[int, str]]] = {}
    seen: dict[str, list[int]] = {}
    for part in partials:
        step.docs_in += part["docs_in"]
        step.docs_out += part["docs_out"]
        step.removed.update(part["removed"])
        step.changed.update(part["changed"])
        step.seconds += part["seconds"]
        step.bytes_in += part["bytes_in"]
        for reason, items in part["examples"].items():
            examples.setdefault(reason, []).extend((int(k), str(i)) for k, i in items)
        for label, (count, first) in part.get("seen", {}).items():
            entry = seen.get(label)
            if entry is None:
                seen[label] = [count, first]
            else:
                entry[0] += count
                entry[1] = min(entry[1], first)
        if step.name == "pii":
            step._found.update(part["found"])
            step._docs_with_pii += part["docs_with_pii"]
        elif step.name == "optout":
            step._ids_found.update(part["ids_found"])
        elif step.name == "quality":
            step._skipped += part["skipped"]
    limit = _max_examples()
    step.examples = {reason: [i for _, i in sorted(items)[:limit]] for reason, items in examples.items()}
    if hasattr(step, "_seen"):
        tally = type(step._seen)()
        for label, (count, _) in sorted(seen.items(), key=lambda kv: kv[1][1]):
            if len(tally.counts) < tally.cap:
                tally.counts[label] = count
            else:
                tally.other += count
        step._seen = tally


# ------------------------------------------------------------------------------- exact dedup
def _hash_batch(batch: Any, step: Any) -> Any:
    """Ray Data UDF: adds the step's content hash (hex) and the text length in characters."""
    import pyarrow as pa

    texts = batch.column("text").to_pylist()
    hashes = [step._key(text).hex() for text in texts]
    return batch.append_column("hash", pa.array(hashes, type=pa.string())).append_column(
        "chars", pa.array([len(t) for t in texts], type=pa.int64())
    )


def _keep_first(group: Any) -> Any:
    """Ray Data UDF over one hash group: keeps the smallest key; describes the cluster, if any."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from spacerini.preprocess.dedup import MAX_CLUSTER_IDS

    order = pc.sort_indices(group, sort_keys=[("key", "ascending")])
    group = group.take(order)
    kept = group.slice(0, 1).select(list(DOC_COLUMNS))
    kept = kept.append_column("size", pa.array([group.num_rows], type=pa.int64())).append_column(
        "chars", pa.array([pc.sum(group.column("chars")).as_py() or 0], type=pa.int64())
    ).append_column("has_cluster", pa.array([int(group.num_rows > 1)], type=pa.int64()))
    first, cluster = -1, ""
    if group.num_rows > 1:
        keys = group.column("key").to_pylist()
        ids = group.column("id").to_pylist()
        first = keys[1]
        cluster = json.dumps({
            "kept": ids[0], "size": group.num_rows, "removed": ids[1 : 1 + MAX_CLUSTER_IDS],
            "removed_keys": keys[1 : 1 + _max_examples()],
        })  # fmt: skip
    return kept.append_column("removed_first", pa.array([first], type=pa.int64())).append_column(
        "cluster", pa.array([cluster], type=pa.string())
    )


def _first_clusters(batch: Any, cap: int) -> Any:
    """Ray Data UDF: the ``cap`` clusters of a block whose first removal comes first."""
    import pyarrow.compute as pc

    found = batch.filter(pc.greater_equal(batch.column("removed_first"), 0))
    order = pc.sort_indices(found, sort_keys=[("removed_first", "ascending")])
    return found.take(order).slice(0, cap).select(["removed_first", "cluster"])


def finish_exact_dedup(step: Any, *, docs_in: int, docs_out: int, chars: int, clusters: int,
                       firsts: Sequence[dict[str, Any]]) -> None:  # fmt: skip
    """Sets an :class:`~spacerini.preprocess.dedup.ExactDedup` step's state from the group-by's results.

    Args:
        step: The step (its ``report()`` is then the local one, but for ``seconds``).
        docs_in: Documents that went into the group-by.
        docs_out: Groups (documents kept).
        chars: Characters of the texts that went in.
        clusters: Groups of two or more documents.
        firsts: Rows of ``removed_first`` and ``cluster`` (from :func:`_keep_first`) of at least the
            first :data:`~spacerini.preprocess.dedup.MAX_CLUSTERS` clusters by first removal.
    """
    top = sorted(firsts, key=lambda row: row["removed_first"])[: _cluster_cap()]
    step._reset_counts()
    step._reset()
    step.docs_in, step.docs_out, step.bytes_in = docs_in, docs_out, chars
    _fill_clusters(step, [json.loads(row["cluster"]) for row in top], clusters, reason="exact_duplicate",
                   removed=docs_in - docs_out)  # fmt: skip
    step._seen = _Sized(docs_out)


def _fill_clusters(step: Any, clusters: Sequence[dict[str, Any]], total: int, *, reason: str, removed: int) -> None:
    """Sets an exact-dedup step's removal counts, examples and clusters from the first clusters."""
    from spacerini.preprocess.dedup import _Clusters

    if removed:
        step.removed[reason] = removed
        firsts = sorted(
            (key, doc_id) for cluster in clusters for key, doc_id in zip(cluster["removed_keys"], cluster["removed"], strict=False)
        )
        step.examples[reason] = [doc_id for _, doc_id in firsts[: _max_examples()]]
    report = _Clusters()
    report.total = total
    for i, cluster in enumerate(clusters):
        report.kept[i] = {"kept": cluster["kept"], "removed": cluster["removed"], "size": cluster["size"]}
    step._clusters = report


# -------------------------------------------------------------------------------- near dedup
def _sketch_batch(batch: Any, step: Any) -> Any:
    """Ray Data UDF: one row per (document, distinct LSH band key), with the document's signature;
    a document without tokens gets one row with ``no_tokens == 1``. The first row of each
    document carries its length in characters and ``first == 1`` (for the step's counts)."""
    import pyarrow as pa

    hasher = step.hasher
    out: dict[str, list[Any]] = {name: [] for name in ("band", "key", "signature", "distinct", "first", "chars", "no_tokens")}

    def row(*values: Any) -> None:
        for name, value in zip(out, values, strict=True):
            out[name].append(value)

    for key, text in zip(batch.column("key").to_pylist(), batch.column("text").to_pylist(), strict=True):
        signature = hasher.signature(text)
        if np.array_equal(signature, hasher.empty):
            row(0, key, b"", 0, 1, len(text), 1)
            continue
        band_keys = list(dict.fromkeys(step.band_keys(signature)))
        raw = signature.tobytes() if step.verify else b""
        for i, band in enumerate(band_keys):
            row(band, key, raw, len(band_keys), int(i == 0), len(text) if i == 0 else 0, 0)
    types = {"band": pa.uint64(), "key": pa.int64(), "signature": pa.binary(), "distinct": pa.int64(),
             "first": pa.int64(), "chars": pa.int64(), "no_tokens": pa.int64()}  # fmt: skip
    return pa.table({name: pa.array(values, type=types[name]) for name, values in out.items()})


def _bucket_pairs(group: Any, threshold: float, verify: bool) -> Any:
    """Ray Data UDF over one LSH bucket: its members and the candidate pairs (earlier, later) that
    NearDedup would see as a match (estimated Jaccard >= threshold with ``verify``)."""
    import pyarrow as pa

    empty = pa.table({
        "members": pa.array([], type=pa.binary()), "distinct_keys": pa.array([], type=pa.binary()),
        "pairs": pa.array([], type=pa.binary()),
    })  # fmt: skip
    if group.num_rows < 2:
        return empty
    keys = np.asarray(group.column("key").to_numpy(), dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    distinct = np.asarray(group.column("distinct").to_numpy(), dtype=np.int64)[order]
    pairs: list[np.ndarray] = []
    if verify:
        raw = group.column("signature").to_pylist()
        sigs = np.stack([np.frombuffer(raw[i], dtype=np.uint32) for i in order])
        for i in range(1, len(keys)):
            similarity = (sigs[:i] == sigs[i]).mean(axis=1)
            hits = np.flatnonzero(similarity >= threshold)
            if hits.size:
                pairs.append(np.stack([keys[hits], np.full(hits.size, keys[i])], axis=1))
    else:
        earlier, later = np.triu_indices(len(keys), k=1)
        pairs.append(np.stack([keys[earlier], keys[later]], axis=1))
    flat = np.concatenate(pairs).astype(np.int64) if pairs else np.empty((0, 2), dtype=np.int64)
    return pa.table({
        "members": pa.array([keys.tobytes()], type=pa.binary()),
        "distinct_keys": pa.array([distinct.tobytes()], type=pa.binary()),
        "pairs": pa.array([flat.tobytes()], type=pa.binary()),
    })  # fmt: skip


def replay_near_dedup(pairs: Iterable[np.ndarray] | np.ndarray) -> dict[int, int]:
    """Replays :class:`~spacerini.preprocess.dedup.NearDedup`'s greedy decision over candidate pairs.

    NearDedup reads documents in order and drops one when a document kept before it shares an
    LSH bucket with it (and, with ``verify``, has an estimated Jaccard similarity at least the
    threshold), matching it to the smallest such kept document. Given every such pair, that
    decision depends only on which earlier documents were kept, so it can be replayed here in key
    order without the texts or signatures.

    Args:
        pairs: Arrays of shape (n, 2) of (earlier key, later key): the candidate matches (with
            repeats, e.g. a pair that shares several bands).

    Returns:
        ``{dropped key: key of the kept document it matched}``.
    """
    parts = [np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in (pairs if not isinstance(pairs, np.ndarray) else [pairs])]
    edges = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    if not len(edges):
        return {}
    edges = np.unique(edges, axis=0)
    order = np.lexsort((edges[:, 0], edges[:, 1]))  # by later key, then earlier key
    edges = edges[order]
    later = edges[:, 1]
    starts = np.flatnonzero(np.r_[True, later[1:] != later[:-1]])
    ends = np.r_[starts[1:], len(edges)]
    dropped: dict[int, int] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        doc = int(later[start])
        for earlier in edges[start:end, 0].tolist():  # ascending: the first kept one is the match
            if earlier not in dropped:
                dropped[doc] = earlier
                break
    return dropped


def _bucket_count(total_entries: int, members: Sequence[np.ndarray], distinct: Sequence[np.ndarray],
                  dropped: dict[int, int]) -> int:  # fmt: skip
    """NearDedup's ``buckets``: the LSH keys of the kept documents, counted without the singletons.

    Every (document, distinct band key) entry is in one bucket. A bucket of one document counts
    when that document is kept; a larger bucket counts when any member is kept.
    """
    in_shared: Counter[int] = Counter()
    distinct_of: dict[int, int] = {}
    shared_entries = 0
    counted = 0
    for keys, nds in zip(members, distinct, strict=True):
        shared_entries += len(keys)
        in_shared.update(keys.tolist())
        if any(int(k) not in dropped for k in keys.tolist()):
            counted += 1
        for k, n in zip(keys.tolist(), nds.tolist(), strict=True):
            distinct_of[k] = n
    singles = total_entries - shared_entries
    singles_of_dropped = sum(distinct_of[k] - in_shared[k] for k in dropped)
    return singles - singles_of_dropped + counted


def _near_report_keys(dropped: dict[int, int]) -> set[int]:
    from spacerini.preprocess.dedup import MAX_CLUSTER_IDS, MAX_CLUSTERS

    wanted: set[int] = set()
    per_cluster: dict[int, int] = {}
    for key in sorted(dropped):
        match = dropped[key]
        if match not in per_cluster:
            if len(per_cluster) >= MAX_CLUSTERS:
                continue
            per_cluster[match] = 0
            wanted.add(match)
        if per_cluster[match] < MAX_CLUSTER_IDS:
            per_cluster[match] += 1
            wanted.add(key)
    wanted.update(sorted(dropped)[: _max_examples()])
    return wanted


def _select_keys(batch: Any, keys: np.ndarray) -> Any:
    import pyarrow as pa

    mask = np.isin(np.asarray(batch.column("key").to_numpy(), dtype=np.int64), keys)
    return batch.filter(pa.array(mask))


def _drop_keys(batch: Any, dropped: np.ndarray) -> Any:
    import pyarrow as pa

    mask = ~np.isin(np.asarray(batch.column("key").to_numpy(), dtype=np.int64), dropped)
    return batch.filter(pa.array(mask))


# ------------------------------------------------------------------------------ entry point
def ingest(corpus: Iterable[Doc], steps: Sequence[Any], *, add: Callable[[Doc], None]) -> None:
    """Reads ``corpus`` and runs ``steps`` on Ray Data, passing each document left to ``add`` in order.

    Must run inside :func:`spacerini.distributed.session` (or any open Ray connection).

    Args:
        corpus: The corpus :func:`~spacerini.corpus.load_corpus` opened (or any iterable of documents).
        steps: The preprocess steps, in order; afterwards their reports equal the local ones.
        add: Called with each document, in corpus order (e.g. ``DocstoreWriter.add``).
    """
    for doc in RayIngest(corpus, steps).docs():
        add(doc)
