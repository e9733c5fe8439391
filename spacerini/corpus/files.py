"""Readers for corpus files (JSON lines, JSON arrays, Parquet, CSV, TSV) and folders of them.

Every reader streams: it yields ``(record, path, line)`` one record at a time and never reads a
whole file into memory (except a JSON array written on one single line, which has no smaller
unit). Lines are 1-based; Parquet rows are numbered from 1.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from spacerini.corpus.base import CONTENTS_CANDIDATES, ID_CANDIDATES, LocatedRecords
from spacerini.errors import CorpusError, EmptyCorpusError, MalformedRecordError

logger = logging.getLogger(__name__)

#: File name endings -> format. Longest endings are matched first.
SUFFIXES: dict[str, str] = {
    ".jsonl.gz": "jsonl",
    ".ndjson.gz": "jsonl",
    ".json.gz": "json",
    ".csv.gz": "csv",
    ".tsv.gz": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}
#: The formats a file can be read as (``format=`` overrides the file name).
FILE_FORMATS: tuple[str, ...] = ("jsonl", "json", "parquet", "csv", "tsv")

_BOM = codecs.BOM_UTF8
_READ_CHUNK = 1 << 20


def format_of(path: Path) -> str | None:
    """Returns the format a file name implies, or None when it implies none."""
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return None


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")  # noqa: SIM115


def _decode(line: bytes, path: str, number: int, offset: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = " of the decompressed data" if path.lower().endswith(".gz") else ""
        if offset == 0 and line.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise MalformedRecordError(
                f"the file{where} is UTF-16 (it starts with a UTF-16 byte-order mark), not UTF-8; "
                f"re-encode it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8 {Path(path).name} > fixed",
                path=path,
                line=number,
            ) from None
        raise MalformedRecordError(
            f"invalid UTF-8 byte 0x{line[exc.start]:02x} at byte offset {offset + exc.start}{where}; "
            f"re-encode the file as UTF-8, e.g. iconv -f LATIN1 -t UTF-8 {Path(path).name} > fixed",
            path=path,
            line=number,
        ) from None


def _lines(path: Path) -> Iterator[tuple[str, int]]:
    """Yields (decoded line, 1-based line number) of a text file, checking UTF-8 line by line."""
    name = str(path)
    for raw, number, offset in _raw_lines(path):
        yield _decode(raw, name, number, offset), number


def _raw_lines(path: Path) -> Iterator[tuple[bytes, int, int]]:
    """Yields (line bytes without a leading BOM, 1-based line number, byte offset) of a file."""
    name = str(path)
    offset = 0
    try:
        with _open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                    offset += len(_BOM)
                yield raw, number, offset
                offset += len(raw)
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise MalformedRecordError(
            f"cannot read the file ({exc}); check that it is complete and not corrupt", path=name
        ) from None


# -- JSON ---------------------------------------------------------------------------------------
def _first_byte(path: Path) -> bytes:
    with _open_binary(path) as handle:
        head = handle.read(4096)
        while head:
            stripped = head.lstrip(b" \t\r\n" + _BOM)
            if stripped:
                return stripped[:1]
            head = handle.read(4096)
    return b""


def read_jsonl(path: Path) -> LocatedRecords:
    """Streams a JSON-lines file; blank lines are skipped.

    Raises:
        MalformedRecordError: A line is not valid JSON or not UTF-8.
    """
    name = str(path)
    is_json = format_of(path) == "json"
    for raw, number, offset in _raw_lines(path):
        record = fast_json_line(raw)
        if record is not None:
            yield record, name, number
            continue
        text = _decode(raw, name, number, offset)
        if not text.strip():
            continue
        yield parse_json_line(text, name, number, is_json=is_json), name, number


def _holds_float(value: Any) -> bool:
    if type(value) is float:
        return True
    if type(value) is dict:
        return any(_holds_float(v) for v in value.values())
    if type(value) is list:
        return any(_holds_float(v) for v in value)
    return False


def fast_json_line(raw: bytes) -> dict[str, Any] | None:
    """One JSON-lines record parsed by orjson (several times faster than :mod:`json`), or None
    when the line must go through :func:`parse_json_line` instead.

    The fast answer is always what ``json.loads(raw.decode("utf-8"))`` gives: orjson refuses
    every line that :func:`parse_json_line` would refuse (invalid UTF-8, malformed JSON, a lone
    surrogate escape), and the lines where the two parsers differ go the slow way too: NaN and
    Infinity, numbers out of a double's range, and any number orjson returns as a float (orjson
    reads an integer beyond 64 bits as a float, where :mod:`json` keeps it exact). Blank lines
    and records that are not objects also return None, so that the caller's usual checks see them.
    """
    try:
        record = orjson.loads(raw)
    except ValueError:
        return None
    if type(record) is not dict:
        return None
    for value in record.values():
        if type(value) is float or ((type(value) is dict or type(value) is list) and _holds_float(value)):
            return None
    return record


def parse_json_line(
    text: str, name: str, number: int, *, is_json: bool, line_of: Callable[[int], int] | None = None
) -> Any:
    """One JSON-lines record, checked as :func:`read_jsonl` checks it (valid JSON, no lone surrogates).

    Args:
        text: The line, decoded.
        name: The file, for errors.
        number: The line's number as counted by the reader.
        is_json: The file is named ``.json`` (the error's hint differs).
        line_of: Maps ``number`` to the line an error names (a reader of a byte range counts from
            the range's start and computes the file's line only when it needs it).

    Raises:
        MalformedRecordError: Not valid JSON, or a string holding a lone surrogate.
    """
    line = line_of or (lambda n: n)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = (
            "; a .json file must hold one JSON object per line or one top-level JSON array"
            if is_json
            else "; each line must be one complete JSON object: fix or remove the line"
        )
        raise MalformedRecordError(
            # The line's own newline would put an error at its end in column 1 of the next line.
            f"malformed JSON: {exc.msg} (column {min(exc.pos, len(text.rstrip(chr(13) + chr(10)))) + 1}){hint}",
            path=name,
            line=line(number),
        ) from None
    try:
        _check_surrogates(record, text, name, number)
    except MalformedRecordError as exc:
        if line_of is None:
            raise
        message = str(exc).removeprefix(f"{name}:{number}: ")
        raise MalformedRecordError(message, path=name, line=line(number)) from None
    return record


#: A JSON escape of a UTF-16 surrogate; only these can put a lone surrogate into decoded JSON.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _surrogate_path(value: Any, where: str = "") -> str | None:
    """The key path (``contents``, ``meta.title``, ``tags[2]``) of a string holding a lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "the value"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _surrogate_path(key, where) or _surrogate_path(item, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _surrogate_path(item, f"{where}[{i}]")
            if found:
                return found
    return None


def _check_surrogates(record: Any, text: str, path: str, line: int | None) -> None:
    """Rejects a record whose JSON escapes decode to a lone UTF-16 surrogate (not encodable as UTF-8).

    Raises:
        MalformedRecordError: Such a string, with the field that holds it.
    """
    if not _SURROGATE_ESCAPE.search(text):
        return
    where = _surrogate_path(record)
    if where is not None:
        raise MalformedRecordError(
            f"field {where!r} holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair), "
            "which is not text that UTF-8 can store: fix the escape or remove the line",
            path=path,
            line=line,
        )


def read_json_array(path: Path) -> LocatedRecords:
    """Streams the elements of a file holding one top-level JSON array.

    The file is read in chunks that end at line breaks (so no JSON token is ever cut) and the
    elements are decoded one by one, so memory holds about one chunk plus one element.

    Raises:
        MalformedRecordError: The JSON is malformed, truncated or not UTF-8.
    """
    name = str(path)
    decoder = json.JSONDecoder()
    buffer = ""
    pos = 0  # cursor in buffer
    mark, mark_line = 0, 1  # buffer[mark] is on line mark_line
    byte_offset = 0
    eof = False

    def line_at(index: int) -> int:
        nonlocal mark, mark_line
        mark_line += buffer.count("\n", mark, index)
        mark = index
        return mark_line

    def refill(at_least: int) -> None:
        nonlocal buffer, pos, mark, byte_offset, eof
        line_at(pos)
        buffer, mark, pos = buffer[pos:], 0, 0
        chunk = handle.read(max(_READ_CHUNK, at_least))
        if not chunk:
            eof = True
            return
        chunk += handle.readline()
        if byte_offset == 0 and chunk.startswith(_BOM):
            chunk = chunk[len(_BOM) :]
            byte_offset = len(_BOM)
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = line_at(len(buffer)) + chunk.count(b"\n", 0, exc.start)
            raise MalformedRecordError(
                f"invalid UTF-8 byte 0x{chunk[exc.start]:02x} at byte offset {byte_offset + exc.start}; "
                f"re-encode the file as UTF-8, e.g. iconv -f LATIN1 -t UTF-8 {path.name} > fixed",
                path=name,
                line=line,
            ) from None
        buffer += text
        byte_offset += len(chunk)

    def fail(message: str, index: int) -> MalformedRecordError:
        return MalformedRecordError(message, path=name, line=line_at(index))

    state = "start"  # start -> first -> after -> comma -> after ... -> end
    try:
        handle = _open_binary(path)
    except OSError as exc:
        raise MalformedRecordError(f"cannot read the file ({exc})", path=name) from None
    with handle:
        while True:
            pos = _WS.match(buffer, pos).end()
            if pos == len(buffer):
                if eof:
                    if state != "end":
                        raise fail("truncated JSON array: the closing ']' is missing", pos)
                    return
                refill(0)
                continue
            char = buffer[pos]
            if state == "start":
                if char != "[":
                    raise fail("a .json file must hold JSON lines or one top-level JSON array", pos)
                state, pos = "first", pos + 1
            elif state == "end":
                raise fail("extra data after the closing ']' of the JSON array", pos)
            elif state == "after":
                if char not in ",]":
                    raise fail("malformed JSON: expected ',' or ']' after an array element", pos)
                state, pos = ("comma" if char == "," else "end"), pos + 1
            elif char == "]":
                if state == "comma":
                    raise fail("malformed JSON: trailing comma before ']'", pos)
                state, pos = "end", pos + 1
            else:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                except json.JSONDecodeError as exc:
                    if not eof:  # the element may go on in the next chunk: read more, retry
                        refill(len(buffer))
                        continue
                    raise fail(f"malformed JSON: {exc.msg}", exc.pos) from None
                _check_surrogates(value, buffer[pos:end], name, line_at(pos))
                yield value, name, line_at(pos)
                state, pos = "after", end


_WS = re.compile(r"[ \t\r\n]*")


def read_json(path: Path) -> LocatedRecords:
    """Reads a ``.json`` file: one top-level array, or JSON lines."""
    if _first_byte(path) == b"[":
        return read_json_array(path)
    return read_jsonl(path)


# -- Parquet ------------------------------------------------------------------------------------
def read_parquet(path: Path, *, batch_size: int = 1024) -> LocatedRecords:
    """Streams the rows of a Parquet file batch by batch (rows numbered from 1).

    Raises:
        MalformedRecordError: The file is not a readable Parquet file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise MalformedRecordError(
            f"not a readable Parquet file ({exc}); check that it is complete", path=name
        ) from None
    row = 0
    with parquet:
        try:
            for batch in parquet.iter_batches(batch_size=batch_size):
                for record in batch.to_pylist():
                    row += 1
                    yield record, name, row
        except (pa.ArrowInvalid, OSError) as exc:
            raise MalformedRecordError(
                f"cannot read row group after row {row} ({exc})", path=name, line=row + 1
            ) from None


def parquet_rows(path: Path) -> int | None:
    """Returns the number of rows a Parquet file declares in its footer (None if unreadable)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowInvalid, OSError):
        return None


# -- CSV / TSV ----------------------------------------------------------------------------------
def _raise_field_size_limit() -> None:
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


#: The names a header row of a headerless-looking TSV may hold: such a row is a header.
_FIELD_NAMES = frozenset(name.lower() for name in (*ID_CANDIDATES, *CONTENTS_CANDIDATES))


def _is_document_line(cells: Sequence[str]) -> bool:
    """Whether the first row of a TSV file is a document, ``id<TAB>text``, rather than a header.

    It is when it has two cells, the first a non-empty id without whitespace, the second a text
    with whitespace in it (column names have none), and neither is a field name Spacerini looks
    for (``id``, ``docid``, ``contents``, ``text``...). That is the layout of MS MARCO's
    ``collection.tsv`` and of Pyserini's ``TsvCollection``.
    """
    if len(cells) != 2:
        return False
    doc_id, text = cells[0], cells[1].strip()
    if not doc_id or any(char.isspace() for char in doc_id):
        return False
    if doc_id.lower() in _FIELD_NAMES or text.lower() in _FIELD_NAMES:
        return False
    return any(char.isspace() for char in text)


def _read_headerless_tsv(path: Path) -> LocatedRecords:
    """Streams a TSV file of ``id<TAB>text`` lines with no header row, read literally.

    Quotes are plain text and a line is one record, as in Pyserini's ``TsvCollection`` and MS
    MARCO's files (whose passages may start with a quote). Records are ``{"id", "contents"}``.

    Raises:
        MalformedRecordError: A line with more or fewer than two cells, or bytes that are not UTF-8.
    """
    name = str(path)
    for text, number in _lines(path):
        line = text.rstrip("\r\n")
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != 2:
            raise MalformedRecordError(
                f"row has {len(cells)} cells; this TSV has no header row (its first line is a "
                "document), so every line must be `id<TAB>text`: remove the extra tabs, or add "
                "a header row naming the columns",
                path=name,
                line=number,
            )
        yield {"id": cells[0], "contents": cells[1]}, name, number


def read_delimited(path: Path, *, delimiter: str) -> LocatedRecords:
    """Streams a CSV or TSV file whose first row is a header; records are dicts of strings.

    The line of a record is the line it starts on (the header is line 1). A TSV file whose first
    line is a document rather than a header (``_is_document_line``: two cells, an id and a text
    with spaces, no known column name) is read as ``id<TAB>text`` lines with quotes as plain
    text (MS MARCO's ``collection.tsv``, Pyserini's ``TsvCollection``); records are then
    ``{"id", "contents"}``.

    Raises:
        MalformedRecordError: A row has more or fewer cells than the header, a CSV syntax error,
            or bytes that are not UTF-8.
    """
    _raise_field_size_limit()
    name = str(path)
    if delimiter == "\t":
        first = next((text for text, _ in _lines(path) if text.strip()), None)
        if first is not None and _is_document_line(first.rstrip("\r\n").split("\t")):
            logger.info(
                "%s has no header row (its first line is a document): reading `id<TAB>text` "
                "lines, quotes as plain text (MS MARCO, Pyserini's TsvCollection)",
                name,
            )
            yield from _read_headerless_tsv(path)
            return
    numbers: list[int] = [0]

    def text_lines() -> Iterator[str]:
        for text, number in _lines(path):
            numbers[0] = number
            yield text

    # strict: an unclosed quote must be an error, not a cell that swallows every later row.
    reader = csv.reader(text_lines(), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise MalformedRecordError(
            f"malformed header row ({exc}){_csv_hint(str(exc), delimiter)}", path=name, line=1
        ) from None
    duplicates = sorted({column for column in header if header.count(column) > 1})
    if duplicates:
        raise MalformedRecordError(
            f"the header repeats column(s) {', '.join(c or '(an empty name)' for c in duplicates)}; "
            "column names must be unique",
            path=name,
            line=1,
        )
    width = len(header)
    while True:
        start = numbers[0] + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise MalformedRecordError(
                f"malformed {'TSV' if delimiter == chr(9) else 'CSV'} row ({exc}){_csv_hint(str(exc), delimiter)}",
                path=name,
                line=start,
            ) from None
        if not cells:  # a blank line
            continue
        if len(cells) != width:
            raise MalformedRecordError(
                f"row has {len(cells)} cells but the header has {width} ({', '.join(header[:8])}); "
                "quote cells that contain the delimiter or a line break",
                path=name,
                line=start,
            )
        yield dict(zip(header, cells, strict=True)), name, start


def _csv_hint(message: str, delimiter: str) -> str:
    """What to do about a quoting error of :mod:`csv` (empty for other errors)."""
    if "unexpected end of data" in message:
        hint = "a quoted cell that starts here is never closed; add the closing '\"'"
    elif "expected after" in message:
        hint = "text follows the closing '\"' of a quoted cell; quote the whole cell"
    else:
        return ""
    hint += " and write a '\"' inside a quoted cell as '\"\"'"
    if delimiter == "\t":
        hint += " (a TSV cell that starts with '\"' is read as quoted, as Python's csv and pandas write them; if its quotes are plain text, convert the file to JSON lines)"
    return ": " + hint


# -- dispatch -----------------------------------------------------------------------------------
def reader_for(fmt: str) -> Callable[[Path], LocatedRecords]:
    """Returns the record reader of a file format."""
    if fmt == "jsonl":
        return read_jsonl
    if fmt == "json":
        return read_json
    if fmt == "parquet":
        return read_parquet
    if fmt == "csv":
        return lambda path: read_delimited(path, delimiter=",")
    if fmt == "tsv":
        return lambda path: read_delimited(path, delimiter="\t")
    raise CorpusError(f"unknown file format {fmt!r}: choose from {', '.join(FILE_FORMATS)}")


#: A bundle's manifest (spacerini.bundle.MANIFEST; not imported here, the corpus sits below the bundle).
_BUNDLE_MANIFEST = "spacerini.json"


def list_data_files(folder: Path, *, fmt: str | None = None) -> list[tuple[Path, str]]:
    """Lists the data files under a folder, recursively, in a deterministic (sorted) order.

    Hidden files and folders (names starting with ".") are ignored. Links to files and to
    folders are followed (a link back to a folder being walked is not walked twice). The walk
    keeps its own stack, so a tree of any depth is listed.

    Args:
        folder: The folder to walk.
        fmt: Read every file as this format, and list only files whose name has no other known
            format.

    Returns:
        (path, format) pairs sorted by their path relative to ``folder``.

    Raises:
        EmptyCorpusError: No data file is found.
        CorpusError: A folder below ``folder`` cannot be listed (its files would be lost), or
            ``folder`` is or holds a bundle.
    """
    found: list[tuple[tuple[str, ...], Path, str]] = []
    # Each level: (folder, the real folders on the way down to it, for links that loop).
    stack: list[tuple[Path, frozenset[tuple[int, int]]]] = [(folder, frozenset())]
    while stack:
        current, above = stack.pop()
        try:
            status = current.stat()
            with os.scandir(current) as scan:
                entries = list(scan)
        except OSError as exc:
            raise CorpusError(
                f"cannot list this folder ({exc.strerror or exc}); its files would be left out: "
                "fix its permissions, or move it out of the corpus folder",
                path=str(current),
            ) from None
        inside = above | {(status.st_dev, status.st_ino)}
        if any(entry.name == _BUNDLE_MANIFEST and entry.is_file() for entry in entries):
            # its manifest, charts and sidecars would be read as documents
            raise CorpusError(
                "a Spacerini bundle, not a folder of data files: pass the files it was built from "
                "(its spacerini.json names them)"
                if current == folder
                else "a Spacerini bundle inside the corpus folder: its files are not data; move it out of the folder",
                path=str(current),
            )
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            if is_dir:
                if entry.is_symlink():
                    try:
                        target = path.stat()
                    except OSError:
                        target = None
                    if target is not None and (target.st_dev, target.st_ino) in inside:
                        logger.warning("%s: not followed, it links back to a folder above it", path)
                        continue
                stack.append((path, inside))
                continue
            implied = format_of(path)
            if implied is None or (fmt is not None and implied != fmt and not _compatible(fmt, implied)):
                continue
            _check_regular(entry, path)
            found.append((path.relative_to(folder).parts, path, fmt or implied))
    if not found:
        wanted = sorted(s for s, f in SUFFIXES.items() if fmt is None or f == fmt or _compatible(fmt, f))
        raise EmptyCorpusError(
            f"no data files in this folder (looked for {', '.join(wanted)}, hidden files ignored); "
            "for a folder of source code pass --format code",
            path=str(folder),
        )
    found.sort(key=lambda item: item[0])
    return [(path, kind) for _, path, kind in found]


def _check_regular(entry: os.DirEntry[str], path: Path) -> None:
    """Refuses a data file that is not a regular file: reading a FIFO would wait forever."""
    try:
        if entry.is_file():  # follows links
            return
    except OSError:
        pass
    if entry.is_symlink():
        raise CorpusError(
            f"this link leads to no regular file ({os.readlink(path)}); fix it or remove it", path=str(path)
        )
    raise CorpusError(
        "not a regular file (a FIFO, socket or device): move it out of the corpus folder", path=str(path)
    )


def _compatible(fmt: str, implied: str) -> bool:
    return {fmt, implied} == {"json", "jsonl"}


class FileRecords:
    """A factory that streams the records of several files one after another.

    Attributes:
        files: The (path, format) pairs, in reading order (``--engine ray`` cuts them into chunks).
    """

    def __init__(self, files: Sequence[tuple[Path, str]]) -> None:
        self.files: tuple[tuple[Path, str], ...] = tuple(files)

    def __call__(self) -> LocatedRecords:
        for path, fmt in self.files:
            yield from reader_for(fmt)(path)


def file_records(files: Sequence[tuple[Path, str]]) -> Callable[[], LocatedRecords]:
    """Returns a factory that streams the records of several files one after another."""
    return FileRecords(files)


def check_file(path: Path) -> None:
    """Raises EmptyCorpusError when a file has no bytes at all."""
    if path.stat().st_size == 0:
        raise EmptyCorpusError("the file is empty", path=str(path))


def describe_files(folder: Path, files: Sequence[tuple[Path, str]]) -> dict[str, Any]:
    """Returns the manifest entries of a folder source (file count and formats)."""
    formats = sorted({fmt for _, fmt in files})
    return {"files": len(files), "file_formats": formats}
