"""The bundle's docstore: every document's id, text, fields and meta, by row number and by id.

Rows keep corpus order; a row's number is the document's ordinal, which the backends use as
their internal doc number.

Layout (format 2, in the bundle's ``docs/`` folder):

* ``records.bin`` - the records in row order, in blocks of about :data:`BLOCK_BYTES`
  uncompressed bytes each, compressed with :data:`CODEC` (LZ4, raw blocks) (a block ends after the record that reaches the target, so a huge
  document is a block of its own). A block is a header of ``4 x int64`` per record (the byte
  lengths of id, fields, meta and text) followed by the records' bytes. Text and ids are UTF-8
  with ``surrogatepass``, so any Python string round-trips, lone surrogates included; fields and
  meta are JSON (an empty mapping is zero bytes).
* ``blocks.npy`` - int64 ``(blocks + 1, 3)``: each block's first row, its byte offset in
  ``records.bin`` and its offset in the uncompressed stream (the last line closes the last block).
* ``id_hash.npy`` / ``id_rows.npy`` - the id index: the 64-bit BLAKE2b hashes of the ids,
  sorted, and the row of each (``uint64``/``int64``). A lookup is one binary search on the
  memory-mapped hashes; the candidate row's record confirms the id (a collision costs one more).
* ``ids.zst`` - the ids in row order, one a line, as one zstd stream (for :meth:`ids`).
* ``lengths.npy`` - int64 UTF-8 length of every text (for :meth:`text_lengths`, shard sizing).
* ``docstore.json`` - format, document and block counts, block size, codec, and the size and
  SHA-256 of every other file of the docstore, computed while it was written.

Why this layout (measured on 100k paragraphs of Debian docs and man pages, 48 MB of text,
``benchmarks/api_latency.py``; figures in ``benchmarks/RESULTS.md``):

* **Random access must not decode what it does not return.** The format 1 store (one Parquet
  file, zstd, 2,048-row groups) decoded a whole row group per lookup (8 ms at 223 MB) and a
  top-10 touched about 4.5 groups. Now a lookup reads and decodes one block of 8 KiB.
* **LZ4 rather than zstd for the blocks.** On that text, 8 KiB blocks decode in 3.4 us with
  LZ4 and 22 us with zstd level 3 (4 KiB: 2.6 / 21 us; 16 KiB: 8 / 39 us), and under the load of
  a busy machine a whole ``get`` measured 35-45 us against 75-160 us. LZ4 keeps 0.43 of the
  text's size against zstd's 0.29 (Parquet's zstd: about 0.27) and writes in 0.6x the time.
  The API's latency is the goal here, so LZ4 it is; ``codec="zstd"`` remains for a smaller
  store (``docstore.json`` records the codec and the reader follows it). Uncompressed text
  would save the last microseconds but more than double the docstore on disk.
* **Opening costs nothing that grows with the corpus.** The old store built a Python dict of
  every id on the first lookup (0.2 s at 100k documents). Now only ``docstore.json`` and the
  small block table are read at open; the id index is memory-mapped and a lookup touches
  about log2(n) of its pages.
* **Memory stays flat.** Blocks are read with ``os.pread`` (page cache, not the process's
  RSS) and nothing is cached in the process, so RSS does not grow with the number of lookups.
* **A docstore keeps reading its own generation.** Its files are opened (or mapped) once, at
  open; a newer generation that replaces the folder (and deletes the old one) leaves them
  readable, and nothing is read by path later.
* **No pickle, no new dependency.** Plain ``.npy``/JSON, LZ4 and zstd through pyarrow's codecs.
* **Checksums while writing.** :class:`DocstoreWriter` hashes every byte it writes
  (:attr:`DocstoreWriter.checksums`), so publishing need not read the docstore again.

Format 1 docstores (``docs.parquet``, bundles built before) are still read: :class:`Docstore`
opens them with the old Parquet reader.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import struct
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import orjson

from spacerini.errors import BundleCorruptError
from spacerini.records import Doc

#: The current docstore format.
FORMAT = 2
#: Uncompressed bytes per block (a block ends after the record that reaches it).
BLOCK_BYTES = 8192
#: zstd level of the blocks when zstd is chosen (3: zstd's default).
ZSTD_LEVEL = 3
#: The default block codec (see the module docstring for the measurements).
CODEC = "lz4_raw"
META = "docstore.json"
RECORDS = "records.bin"
BLOCKS = "blocks.npy"
ID_HASH = "id_hash.npy"
ID_ROWS = "id_rows.npy"
IDS = "ids.zst"
LENGTHS = "lengths.npy"
#: The format 1 docstore (one Parquet file), still read.
FILENAME = "docs.parquet"
ROW_GROUP = 2048

_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
_HEADER = 4  # int64 lengths per record: id, fields, meta, text


def _id_hash(docid: str) -> int:
    return int.from_bytes(hashlib.blake2b(docid.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


#: Block codecs: pyarrow codec name and level.
CODECS: dict[str, int | None] = {"zstd": ZSTD_LEVEL, "lz4_raw": None}


def _codec(name: str) -> Any:
    import pyarrow as pa

    if name not in CODECS:
        raise ValueError(f"unknown docstore codec {name!r}")
    level = CODECS[name]
    return pa.Codec(name) if level is None else pa.Codec(name, compression_level=level)


class _HashingFile:
    """A binary file that SHA-256 hashes what is written to it (for the manifest's checksums)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BinaryIO = path.open("wb")
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self.closed = True
        self._fh.close()


class DocstoreWriter:
    """Streams docs into a format 2 docstore in ``folder`` (see the module docstring).

    Args:
        folder: The ``docs/`` folder of the bundle being built (created if needed).
        block_bytes: Uncompressed bytes per block.
        codec: ``"lz4_raw"`` (the default) or ``"zstd"`` (level :data:`ZSTD_LEVEL`: text at
            about 0.29 of its size instead of 0.43, blocks decode about 6x slower).

    Attributes:
        count: Documents added so far.
        text_bytes: UTF-8 bytes of their text.

    Example:
        >>> with DocstoreWriter(folder) as writer:  # doctest: +SKIP
        ...     for doc in docs:
        ...         writer.add(doc)
    """

    def __init__(self, folder: Path, *, block_bytes: int = BLOCK_BYTES, codec: str = CODEC) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / RECORDS
        self.count = 0
        self.text_bytes = 0
        self._block_bytes = block_bytes
        self._codec_name = codec
        self._codec = _codec(codec)
        self._records = _HashingFile(folder / RECORDS)
        import pyarrow as pa

        self._ids_file = _HashingFile(folder / IDS)
        self._ids = pa.CompressedOutputStream(pa.PythonFile(self._ids_file, mode="w"), "zstd")
        self._done: dict[str, _HashingFile] = {}
        self._lengths: list[int] = []  # the pending block's header
        self._parts: list[bytes] = []  # the pending block's record bytes
        self._pending = 0
        self._block_rows = array("q", [0])
        self._block_offsets = array("q", [0])
        self._block_raw = array("q", [0])
        self._text_lengths = array("q")
        self._hashes = bytearray()
        self._block_ids: list[bytes] = []
        self._newline_free = True
        self._closed = False

    def add(self, doc: Doc) -> None:
        """Appends one document."""
        # Per document only what must be: the rest is done once per block in _flush.
        docid = doc.id.encode("utf-8", "surrogatepass")
        text = doc.text.encode("utf-8", "surrogatepass")
        fields = _dump(doc.fields) if doc.fields else b""
        meta = _dump(doc.meta) if doc.meta else b""
        self._lengths += (len(docid), len(fields), len(meta), len(text))
        self._parts += (docid, fields, meta, text)
        self._block_ids.append(docid)
        self.count += 1
        self.text_bytes += len(text)
        self._pending += len(docid) + len(fields) + len(meta) + len(text) + 8 * _HEADER
        if self._pending >= self._block_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._lengths:
            return
        ids = self._block_ids
        blob = b"\n".join(ids) + b"\n"
        if blob.count(b"\n") != len(ids):
            self._newline_free = False
        self._ids.write(blob)
        blake2b = hashlib.blake2b
        self._hashes += b"".join([blake2b(d, digest_size=8).digest() for d in ids])
        self._text_lengths.extend(self._lengths[3::_HEADER])
        self._block_ids = []
        block = struct.pack(f"<{len(self._lengths)}q", *self._lengths) + b"".join(self._parts)
        self._records.write(self._codec.compress(block, asbytes=True))
        self._block_rows.append(self.count)
        self._block_offsets.append(self._records.size)
        self._block_raw.append(self._block_raw[-1] + len(block))
        self._lengths, self._parts, self._pending = [], [], 0

    def _save(self, name: str, values: Any) -> None:
        import numpy as np

        out = self._done[name] = _HashingFile(self.folder / name)
        try:
            np.lib.format.write_array(out, np.ascontiguousarray(values), allow_pickle=False)  # type: ignore[arg-type]
        finally:
            out.close()

    def close(self) -> None:
        """Writes the last block and the indexes, and closes every file."""
        import numpy as np

        if self._closed:
            return
        self._flush()
        self._records.close()
        self._ids.close()
        self._closed = True
        blocks = np.stack(
            [np.frombuffer(a, dtype=np.int64) for a in (self._block_rows, self._block_offsets, self._block_raw)], axis=1
        )
        self._save(BLOCKS, blocks)
        hashes = np.frombuffer(bytes(self._hashes), dtype="<u8")
        order = np.argsort(hashes, kind="stable")  # equal ids keep row order: the last one wins
        self._save(ID_HASH, hashes[order])
        self._save(ID_ROWS, order.astype(np.uint32 if self.count < 2**32 else np.int64))
        self._save(LENGTHS, np.frombuffer(self._text_lengths, dtype=np.int64))
        meta = {
            "format": FORMAT,
            "docs": self.count,
            "blocks": len(self._block_rows) - 1,
            "block_bytes": self._block_bytes,
            "codec": self._codec_name,
            "id_hash": "blake2b-64",
            "ids_newline_free": self._newline_free,
            # Hashed while written: publishing takes these instead of reading the files again.
            "checksums": self.checksums,
        }
        out = self._done[META] = _HashingFile(self.folder / META)
        out.write((json.dumps(meta, indent=2) + "\n").encode("utf-8"))
        out.close()

    @property
    def checksums(self) -> dict[str, dict[str, Any]]:
        """``{file name: {"size", "sha256"}}`` of every file written so far (all of them after
        :meth:`close`), hashed while it was written, in the manifest's checksum format."""
        files = [self._records, self._ids_file, *self._done.values()]
        return {f.path.name: {"size": f.size, "sha256": f.sha.hexdigest()} for f in sorted(files, key=lambda f: f.path.name)}

    def __enter__(self) -> DocstoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None or self._closed:
            self.close()
            return
        # The files are discarded with the folder of the failed build; just release them.
        self._closed = True
        self._records.close()
        self._ids.close()
        self._ids_file.close()


def written_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """The checksums a format 2 docstore recorded while it was written (see
    :attr:`DocstoreWriter.checksums`), by file name; empty for any other folder.

    :func:`spacerini.bundle.manifest._checksums` takes them for the files whose size still
    matches, so publishing a bundle does not read its docstore a second time.
    """
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    sums = meta.get("checksums") if isinstance(meta, dict) and meta.get("format") == FORMAT else None
    return dict(sums) if isinstance(sums, dict) else {}


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)  # one encoder: json.dumps with options builds one a call


_SCALARS = (str, int, bool, type(None))


def _dump(mapping: Any) -> bytes:
    """A document's fields or provenance as JSON bytes: by orjson (about 5x faster) when every
    value is a string, an integer, a boolean or None, which both write alike (a key that is not a
    string, or an integer beyond 64 bits, makes orjson refuse); by :mod:`json` with
    ``default=str`` otherwise (floats, where orjson writes NaN as null; lists; other types)."""
    if not mapping:
        return b""
    value = dict(mapping)
    scalars = _SCALARS
    for item in value.values():
        if type(item) not in scalars:
            break
    else:
        try:
            return orjson.dumps(value)
        except TypeError:  # orjson.JSONEncodeError: a lone surrogate, a huge integer, a key
            pass
    return _ENCODER.encode(value).encode("utf-8", "surrogatepass")


def _load(raw: bytes) -> MappingProxyType[str, Any]:
    return MappingProxyType(json.loads(raw.decode("utf-8", "surrogatepass"))) if raw else _EMPTY


def _to_doc(docid: str, text: str, fields: str | None, meta: str | None) -> Doc:
    return Doc(
        id=docid,
        text=text,
        fields=MappingProxyType(json.loads(fields)) if fields else _EMPTY,
        meta=MappingProxyType(json.loads(meta)) if meta else _EMPTY,
    )


class Docstore:
    """Read access to a bundle's docstore: streaming, by row number and by id. Thread-safe.

    ``Docstore(folder)`` opens a format 2 store, or a format 1 store (``docs.parquet``) through
    the old Parquet reader.

    Args:
        folder: The ``docs/`` folder of a bundle.

    Raises:
        BundleCorruptError: The docstore's files are missing, unreadable or inconsistent.
    """

    def __new__(cls, folder: Path, **options: Any) -> Docstore:
        if cls is Docstore and not (folder / META).is_file() and (folder / FILENAME).is_file():
            return super().__new__(ParquetDocstore)
        return super().__new__(cls)

    def __init__(self, folder: Path) -> None:
        import numpy as np

        self.path = folder / RECORDS
        self._folder = folder
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("codec") not in CODECS:
                raise ValueError(f"unsupported docstore format {meta.get('format') if isinstance(meta, dict) else meta!r}")
            self._len = int(meta["docs"])
            # Opened once: this docstore reads these files even after a newer generation replaced them.
            self._fh = (folder / RECORDS).open("rb")
            self._fd = self._fh.fileno()
            self._size = os.fstat(self._fd).st_size
            blocks = np.load(folder / BLOCKS, allow_pickle=False)
            # Plain ndarray views of the maps: np.memmap's own indexing costs microseconds a call.
            self._hashes = np.load(folder / ID_HASH, mmap_mode="r", allow_pickle=False).view(np.ndarray)
            self._hash_rows = np.load(folder / ID_ROWS, mmap_mode="r", allow_pickle=False).view(np.ndarray)
            self._text_lengths = np.load(folder / LENGTHS, mmap_mode="r", allow_pickle=False).view(np.ndarray)
            self._ids_fh = (folder / IDS).open("rb")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BundleCorruptError(f"{folder}: cannot read the docstore ({exc}); rebuild the bundle") from exc
        if (
            blocks.ndim != 2
            or blocks.shape != (int(meta.get("blocks", -1)) + 1, 3)
            or int(blocks[-1, 0]) != self._len
            or int(blocks[-1, 1]) != self._size
            or len(self._hashes) != self._len
            or len(self._hash_rows) != self._len
            or len(self._text_lengths) != self._len
        ):
            raise BundleCorruptError(f"{folder}: the docstore's index does not match its records; rebuild the bundle")
        self._meta = meta
        self._blocks = blocks
        self._block_rows = blocks[:, 0].copy()
        self._n_blocks = len(blocks) - 1
        self._codec = _codec(meta["codec"])
        self._ids: list[str] | None = None

    def __len__(self) -> int:
        return self._len

    # -- blocks ---------------------------------------------------------------------------------
    def _block(self, b: int) -> tuple[bytes, list[int], int]:
        """Block ``b``: its decoded bytes, its records' lengths and its first row."""
        (first, start, raw_start), (end_row, end, raw_end) = self._blocks[b : b + 2].tolist()
        raw = os.pread(self._fd, end - start, start)
        if len(raw) != end - start:
            raise BundleCorruptError(f"{self.path}: truncated docstore; rebuild the bundle")
        rows = end_row - first
        try:
            head = self._codec.decompress(raw, decompressed_size=raw_end - raw_start, asbytes=True)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises its own OSError/ArrowException kinds
            raise BundleCorruptError(f"{self.path}: block {b} is corrupt ({exc}); rebuild the bundle") from exc
        try:
            lengths = list(struct.unpack_from(f"<{rows * _HEADER}q", head))
        except struct.error:
            lengths = []
        if len(lengths) != rows * _HEADER or 8 * len(lengths) + sum(lengths) != len(head):
            raise BundleCorruptError(f"{self.path}: block {b} is corrupt; rebuild the bundle")
        return head, lengths, first

    @staticmethod
    def _record(data: bytes, lengths: list[int], i: int) -> Doc:
        pos = 8 * len(lengths) + sum(lengths[: i * _HEADER])
        n_id, n_fields, n_meta, n_text = lengths[i * _HEADER : i * _HEADER + _HEADER]
        docid = data[pos : pos + n_id].decode("utf-8", "surrogatepass")
        pos += n_id
        fields = _load(data[pos : pos + n_fields])
        pos += n_fields
        meta = _load(data[pos : pos + n_meta])
        pos += n_meta
        return Doc(id=docid, text=data[pos : pos + n_text].decode("utf-8", "surrogatepass"), fields=fields, meta=meta)

    def _block_of(self, row: int) -> int:
        return int(self._block_rows.searchsorted(row, side="right")) - 1

    # -- random access --------------------------------------------------------------------------
    def by_row(self, row: int) -> Doc:
        """Returns the document at ``row`` (0-based, corpus order).

        Raises:
            IndexError: No such row.
        """
        if not 0 <= row < self._len:
            raise IndexError(f"row {row} out of range (0..{self._len - 1})")
        data, lengths, first = self._block(self._block_of(row))
        return self._record(data, lengths, row - first)

    def _light(self, row: int) -> tuple[str, bytes, bytes]:
        """The id, fields and meta (JSON bytes) of ``row``, without decoding its text."""
        data, lengths, first = self._block(self._block_of(row))
        i = (row - first) * _HEADER
        pos = 8 * len(lengths) + sum(lengths[:i])
        n_id, n_fields, n_meta = lengths[i : i + 3]
        fields_at = pos + n_id
        meta_at = fields_at + n_fields
        docid = data[pos:fields_at].decode("utf-8", "surrogatepass")
        return docid, data[fields_at:meta_at], data[meta_at : meta_at + n_meta]

    def _id_at(self, row: int) -> str:
        return self._light(row)[0]

    def display(self, docid: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """The fields and meta of ``docid`` (what a hit shows), without decoding its text.

        Raises:
            KeyError: No document has this id.
        """
        found = None
        if isinstance(docid, str):
            for row in self._candidates(docid):  # in row order: the last document with this id wins
                light = self._light(row)
                if light[0] == docid:
                    found = light
        if found is None:
            raise KeyError(docid)
        return _load(found[1]), _load(found[2])

    def _candidates(self, docid: str) -> list[int]:
        import numpy as np

        h = _id_hash(docid)
        i = int(self._hashes.searchsorted(np.uint64(h), side="left"))
        rows = []
        while i < self._len and int(self._hashes[i]) == h:
            rows.append(int(self._hash_rows[i]))
            i += 1
        return rows

    def _find(self, docid: str) -> Doc | None:
        found = None
        for row in self._candidates(docid):  # in row order: the last document with this id wins
            doc = self.by_row(row)
            if doc.id == docid:
                found = doc
        return found

    def row_of(self, docid: str) -> int:
        """Returns the row number of ``docid``.

        Raises:
            KeyError: No document has this id.
        """
        if not isinstance(docid, str):
            raise KeyError(docid)
        found = -1
        for row in self._candidates(docid):
            if self._id_at(row) == docid:
                found = row
        if found < 0:
            raise KeyError(docid)
        return found

    def __contains__(self, docid: object) -> bool:
        return isinstance(docid, str) and self._find(docid) is not None

    def get(self, docid: str) -> Doc:
        """Returns the document with id ``docid``.

        Raises:
            KeyError: No document has this id.
        """
        doc = self._find(docid) if isinstance(docid, str) else None
        if doc is None:
            raise KeyError(docid)
        return doc

    def get_many(self, docids: Iterable[str]) -> list[Doc]:
        """Returns the documents for ``docids`` in the given order.

        Raises:
            KeyError: One of them is not in the docstore.
        """
        return [self.get(d) for d in docids]

    # -- streaming ------------------------------------------------------------------------------
    def _iter_blocks(self, start: int, stop: int) -> Iterator[tuple[bytes, list[int], int]]:
        for b in range(self._block_of(start), self._n_blocks):
            block = self._block(b)
            yield block
            if int(self._block_rows[b + 1]) >= stop:
                return

    def iter_docs(self, *, batch_size: int = ROW_GROUP, start: int = 0, stop: int | None = None) -> Iterator[Doc]:
        """Yields the documents of rows ``start .. stop - 1`` (default: all) in corpus order.

        Only the blocks that hold those rows are read, one at a time (a shard of a sharded
        bundle reads its own range). ``batch_size`` is accepted for the format 1 reader's
        callers; blocks set the unit of reading here.
        """
        del batch_size
        stop = self._len if stop is None else min(stop, self._len)
        start = max(start, 0)
        if start >= stop:
            return
        for data, lengths, first in self._iter_blocks(start, stop):
            for i in range(max(start - first, 0), min(len(lengths) // _HEADER, stop - first)):
                yield self._record(data, lengths, i)

    def text_lengths(self) -> list[int]:
        """The UTF-8 byte length of every document's text, in corpus order (for sizing shards)."""
        return self._text_lengths.tolist()

    def ids(self) -> list[str]:
        """Returns all document ids in corpus order (loaded once, then cached)."""
        if self._ids is None:
            import pyarrow as pa

            if self._meta.get("ids_newline_free"):
                try:
                    fd = self._ids_fh.fileno()
                    raw = os.pread(fd, os.fstat(fd).st_size, 0)
                    with pa.CompressedInputStream(pa.BufferReader(raw), "zstd") as stream:
                        blob = stream.read()
                except (OSError, pa.ArrowException) as exc:
                    raise BundleCorruptError(f"{self._folder / IDS}: unreadable ({exc}); rebuild the bundle") from exc
                ids = blob.decode("utf-8", "surrogatepass").split("\n")[:-1]
            else:  # an id holds a line break: read them from the records
                ids = [row["id"] for row in self.iter_meta(columns=("id",))]
            if len(ids) != self._len:
                raise BundleCorruptError(f"{self._folder}: {IDS} holds {len(ids)} ids, not {self._len}; rebuild the bundle")
            self._ids = ids
        return self._ids

    def iter_parts(self) -> Iterator[tuple[list[bytes], list[tuple[int, bytes]]]]:
        """Yields every document's raw parts, one list per stored block, in corpus order.

        Each item is ``(texts, provenance)``: the documents' texts as UTF-8 bytes (not decoded),
        and for each document ``(bytes of its fields JSON, its fields and meta JSON side by
        side)``, the key a report groups equal provenance by without parsing it once per
        document. Nothing is decoded, which is what a pass over the whole corpus (``analyze``)
        wants; :meth:`iter_docs` gives :class:`~spacerini.records.Doc` objects instead.
        """
        import numpy as np

        for head, lengths, _first in self._iter_blocks(0, self._len):
            rows = len(lengths) // _HEADER
            sizes = np.frombuffer(head, dtype="<i8", count=_HEADER * rows).reshape(rows, _HEADER)
            starts = 8 * _HEADER * rows + np.concatenate(([0], np.cumsum(sizes.sum(axis=1))[:-1]))
            prov = starts + sizes[:, 0]
            text = prov + sizes[:, 1] + sizes[:, 2]
            end = text + sizes[:, 3]
            texts = [head[a:b] for a, b in zip(text.tolist(), end.tolist(), strict=True)]
            provenance = list(
                zip(
                    sizes[:, 1].tolist(),
                    (head[a:b] for a, b in zip(prov.tolist(), text.tolist(), strict=True)),
                    strict=True,
                )
            )
            yield texts, provenance

    def iter_meta(self, *, columns: tuple[str, ...] = ("id", "fields", "meta")) -> Iterator[dict[str, Any]]:
        """Yields plain dicts of the light columns (no text), for statistics: ``id``, and
        ``fields``/``meta`` as JSON strings (``"{}"`` when empty)."""
        for data, lengths, _first in self._iter_blocks(0, self._len):
            pos = 8 * len(lengths)
            for i in range(0, len(lengths), _HEADER):
                n_id, n_fields, n_meta, n_text = lengths[i : i + _HEADER]
                values = {
                    "id": data[pos : pos + n_id],
                    "fields": data[pos + n_id : pos + n_id + n_fields] or b"{}",
                    "meta": data[pos + n_id + n_fields : pos + n_id + n_fields + n_meta] or b"{}",
                }
                pos += n_id + n_fields + n_meta + n_text
                yield {c: values[c].decode("utf-8", "surrogatepass") for c in columns}

    def close(self) -> None:
        """Closes the docstore's files (it is unusable after)."""
        self._fh.close()
        self._ids_fh.close()


class ParquetDocstore(Docstore):
    """A format 1 docstore (``docs.parquet``, zstd, row groups of :data:`ROW_GROUP` rows), read-only.

    Columns: ``id`` (string), ``text`` (large string), ``fields`` and ``meta`` (JSON strings).
    Each lookup decodes a whole row group (a bounded LRU keeps ``cache_groups`` of them).

    Args:
        folder: The ``docs/`` folder of a bundle.
        cache_groups: How many decoded row groups to keep in memory.

    Raises:
        BundleCorruptError: The Parquet file is missing or unreadable.
    """

    def __init__(self, folder: Path, *, cache_groups: int = 8) -> None:  # noqa: D107
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = folder / FILENAME
        self._folder = folder
        try:
            # One memory map for the docstore's life, as for format 2 files (see Docstore).
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

    def _reader(self) -> Any:
        """A reader of its own over the docstore's memory map (a stream needs its own position)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.ParquetFile(pa.BufferReader(self._buffer))

    def iter_docs(self, *, batch_size: int = ROW_GROUP, start: int = 0, stop: int | None = None) -> Iterator[Doc]:
        """Yields the documents of rows ``start .. stop - 1`` (default: all) in corpus order."""
        stop = self._len if stop is None else min(stop, self._len)
        if start <= 0 and stop >= self._len:
            groups: list[int] | None = None
            first_row = 0
        else:
            if start >= stop:
                return
            g0 = bisect.bisect_right(self._group_starts, start) - 1
            g1 = bisect.bisect_right(self._group_starts, stop - 1) - 1
            groups = list(range(g0, g1 + 1))
            first_row = self._group_starts[g0]
        row = first_row
        for batch in self._reader().iter_batches(batch_size=batch_size, row_groups=groups):
            cols = batch.to_pydict()
            for docid, text, fields, meta in zip(cols["id"], cols["text"], cols["fields"], cols["meta"], strict=True):
                if start <= row < stop:
                    yield _to_doc(docid, text, fields, meta)
                row += 1
                if row >= stop:
                    return

    def text_lengths(self) -> list[int]:
        """The UTF-8 byte length of every document's text, in corpus order."""
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
        except (KeyError, TypeError):
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

    def iter_parts(self) -> Iterator[tuple[list[bytes], list[tuple[int, bytes]]]]:
        """Yields every document's raw parts, one list per Parquet batch, as :meth:`Docstore.iter_parts`
        does (texts as UTF-8 bytes; the fields and meta JSON side by side, an empty one as no bytes)."""

        def raw(value: str | None) -> bytes:
            return b"" if not value or value == "{}" else value.encode("utf-8", "surrogatepass")

        for batch in self._reader().iter_batches(columns=["text", "fields", "meta"]):
            cols = batch.to_pydict()
            texts = [text.encode("utf-8", "surrogatepass") for text in cols["text"]]
            provenance = []
            for fields, meta in zip(cols["fields"], cols["meta"], strict=True):
                head = raw(fields)
                provenance.append((len(head), head + raw(meta)))
            yield texts, provenance

    def iter_meta(self, *, columns: tuple[str, ...] = ("id", "fields", "meta")) -> Iterator[dict[str, Any]]:
        """Yields plain dicts of the light columns (no text), for statistics."""
        for batch in self._reader().iter_batches(columns=list(columns)):
            cols = batch.to_pydict()
            for i in range(batch.num_rows):
                yield {c: cols[c][i] for c in columns}

    def display(self, docid: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """The fields and meta of ``docid``.

        Raises:
            KeyError: No document has this id.
        """
        doc = self.get(docid)
        return doc.fields, doc.meta

    def close(self) -> None:
        """Drops the cached row groups (the memory map goes with the object)."""
        self._cache.clear()
