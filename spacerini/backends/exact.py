"""Exact substring search on a byte-level suffix array ("was this exact text in the corpus?").

Layout of the backend folder::

    exact/
      meta.json            format version, shard table (docs, first doc, bytes per shard)
      docids.json          the doc ids in corpus order (one JSON list on one line)
      text_00000.bin       UTF-8 contents of the shard's docs, each followed by a 0xFF byte
      sa_00000.npy         int32 suffix array of text_00000.bin (pydivsufsort)
      starts_00000.npy     int64 byte offset of each doc of the shard in text_00000.bin

0xFF never occurs in UTF-8, so it separates documents: a query (always valid UTF-8) never
matches across a document boundary. A shard holds at most ``max_shard_bytes`` bytes (2 GiB - 1
by default, the int32 limit), so building needs memory for one shard and its suffix array
(5 bytes per byte of text), whatever the size of the corpus. Queries memory-map the text and the
suffix arrays and binary-search them.

Counts are byte-level and include overlapping occurrences. Since UTF-8 is self-synchronising, a
byte match of a valid UTF-8 query always starts on a character boundary, so byte counts equal
character counts. Offsets reported to the user are character offsets.
"""

from __future__ import annotations

import ctypes
import html
import json
import logging
import mmap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from spacerini.backends import DocsFactory, read_json
from spacerini.errors import BackendParameterError, BundleCorruptError, DocumentTooLargeError, QueryError
from spacerini.records import BuildReport, Hit

NAME = "exact"
FORMAT_VERSION = 1

#: The int32 suffix-array limit: no shard may hold more bytes than this.
MAX_SHARD_BYTES = 2**31 - 1
#: Longest query accepted (UTF-8 bytes).
MAX_QUERY_BYTES = 1 << 20
SEPARATOR = 0xFF

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExactHit:
    """One occurrence of an exact string.

    Attributes:
        docid: The document it occurs in.
        offset: Character offset of the occurrence in the document's text.
        snippet: HTML-escaped context with the match wrapped in ``<mark>``.
        rank: 1-based rank in the global order (document order, then offset).
    """

    docid: str
    offset: int
    snippet: str
    rank: int


@dataclass(frozen=True, slots=True)
class Span:
    """A maximal span of a query text that occurs verbatim in the corpus.

    Attributes:
        start: Character offset of the span in the query (inclusive).
        end: Character offset of the span in the query (exclusive).
        text: The span's text.
        count: Occurrences of the span in the corpus.
        docids: The first few documents (in corpus order) that contain it.
    """

    start: int
    end: int
    text: str
    count: int
    docids: tuple[str, ...]


# -- build ----------------------------------------------------------------------------------
def _encode_doc(text: str) -> bytes:
    # "replace" turns a lone surrogate into one "?" so character offsets stay the same.
    return text.encode("utf-8", errors="replace")


def _sort_into(text: bytearray, path: Path) -> None:
    """Writes the int32 suffix array of ``text`` to the ``.npy`` file ``path``.

    libdivsufsort sorts straight into a memory-mapped ``.npy`` file, which saves the copy and
    the write of a separate result array (a fifth of the build time); if pydivsufsort's bundled
    library cannot be reached, its public function is used instead.
    """
    n = len(text)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.int32, shape=(n,))
    try:
        from pydivsufsort.dll import libdivsufsort
    except (ImportError, OSError, StopIteration):  # pragma: no cover - depends on the wheel
        from pydivsufsort import divsufsort

        out[:] = divsufsort(text)
    else:
        inp = (ctypes.c_uint8 * n).from_buffer(text)
        try:
            rc = libdivsufsort.divsufsort(
                inp, out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), ctypes.c_int32(n)
            )
        finally:
            del inp  # releases the export of the bytearray
        if rc != 0:  # pragma: no cover - only on allocation failure
            raise MemoryError(f"libdivsufsort failed with code {rc} on a shard of {n} bytes")
    out.flush()
    del out


def _write_shard(folder: Path, index: int, text: bytearray, starts: list[int]) -> float:
    """Writes one shard (text, suffix array, doc starts); returns the seconds spent sorting."""
    t0 = time.perf_counter()
    _sort_into(text, folder / f"sa_{index:05d}.npy")
    seconds = time.perf_counter() - t0
    with (folder / f"text_{index:05d}.bin").open("wb") as f:
        f.write(text)
    np.save(folder / f"starts_{index:05d}.npy", np.asarray(starts, dtype=np.int64))
    return seconds


def build(
    docs_factory: DocsFactory,
    folder: Path,
    *,
    progress: bool = True,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> BuildReport:
    """Builds the suffix-array shards of the corpus into ``folder``.

    Args:
        docs_factory: Returns a fresh iterator of docs (called once).
        folder: An empty folder to write into.
        progress: Show a progress bar.
        max_shard_bytes: Most bytes of text (separators included) per shard; at most 2 GiB - 1.

    Returns:
        The build report; ``params`` holds ``max_shard_bytes``, ``stats`` the byte and shard counts.

    Raises:
        DocumentTooLargeError: A single document is larger than 2 GiB - 1 bytes.
        ValueError: ``max_shard_bytes`` is not in 1 .. 2 GiB - 1.
    """
    from tqdm.auto import tqdm

    if not 1 <= max_shard_bytes <= MAX_SHARD_BYTES:
        raise ValueError(f"max_shard_bytes must be in 1..{MAX_SHARD_BYTES}, got {max_shard_bytes}")
    t_start = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    shards: list[dict[str, int]] = []
    sort_seconds = 0.0
    buf = bytearray()
    starts: list[int] = []
    first_doc = 0
    n_docs = 0
    total_bytes = 0

    def flush() -> None:
        nonlocal buf, starts, first_doc, sort_seconds
        if not starts:
            return
        sort_seconds += _write_shard(folder, len(shards), buf, starts)
        shards.append({"first_doc": first_doc, "docs": len(starts), "bytes": len(buf)})
        first_doc += len(starts)
        buf = bytearray()
        starts = []

    bar = tqdm(desc="exact: docs", unit="doc", disable=not progress)
    with (folder / "docids.json").open("w", encoding="utf-8") as ids_file:
        ids_file.write("[")
        for doc in docs_factory():
            data = _encode_doc(doc.text)
            size = len(data) + 1
            if size > MAX_SHARD_BYTES:
                raise DocumentTooLargeError(
                    f"document {doc.id!r} has {len(data)} bytes; the exact backend holds at most "
                    f"{MAX_SHARD_BYTES - 1} bytes per document: split it into records with ids of their own in "
                    "the source, or leave it out with `spacerini index ... --optout FILE` (FILE holding its id)",
                    doc_id=doc.id,
                )
            if starts and len(buf) + size > max_shard_bytes:
                flush()
            starts.append(len(buf))
            buf += data
            buf.append(SEPARATOR)
            ids_file.write(("," if n_docs else "") + json.dumps(doc.id, ensure_ascii=False))
            n_docs += 1
            total_bytes += len(data)
            bar.update(1)
        ids_file.write("]")
    flush()
    bar.close()

    meta = {"format": FORMAT_VERSION, "docs": n_docs, "shards": shards}
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    seconds = time.perf_counter() - t_start
    log.info("exact: %d docs, %d bytes, %d shards in %.1f s", n_docs, total_bytes, len(shards), seconds)
    return BuildReport(
        backend=NAME,
        docs=n_docs,
        seconds=seconds,
        params={"max_shard_bytes": max_shard_bytes},
        stats={
            "bytes": total_bytes,
            "shards": len(shards),
            "sort_seconds": round(sort_seconds, 3),
        },
    )


# -- search ---------------------------------------------------------------------------------
class _Shard:
    """One memory-mapped shard: text bytes, suffix array and doc starts."""

    def __init__(self, folder: Path, index: int, first_doc: int, docs: int) -> None:
        path = folder / f"text_{index:05d}.bin"
        with path.open("rb") as f:
            self.text = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.sa_array = np.load(folder / f"sa_{index:05d}.npy", mmap_mode="r")
        # A memoryview indexes to plain Python ints, several times faster than numpy scalars.
        self.sa = memoryview(self.sa_array)
        self.starts = np.load(folder / f"starts_{index:05d}.npy")
        self.first_doc = first_doc
        self.n = len(self.sa_array)
        if len(self.starts) != docs or self.n != len(self.text):
            raise BundleCorruptError(f"{path}: shard sizes do not match its suffix array or doc table")

    def _lower_bound(self, pat: bytes) -> int:
        """Returns the first suffix-array row whose suffix is not below ``pat``."""
        text, sa, m = self.text, self.sa, len(pat)
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) >> 1
            p = sa[mid]
            if text[p : p + m] < pat:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def range(self, pat: bytes) -> tuple[int, int]:
        """Returns ``[lo, hi)``: the suffix-array rows whose suffixes start with ``pat``."""
        text, sa, m = self.text, self.sa, len(pat)
        first = lo = self._lower_bound(pat)
        hi = self.n
        while lo < hi:
            mid = (lo + hi) >> 1
            p = sa[mid]
            if text[p : p + m] <= pat:
                lo = mid + 1
            else:
                hi = mid
        return first, lo

    def contains(self, pat: bytes) -> bool:
        """Returns whether ``pat`` occurs in the shard (one binary search)."""
        lo = self._lower_bound(pat)
        if lo == self.n:
            return False
        p = self.sa[lo]
        return self.text[p : p + len(pat)] == pat

    def positions(self, pat: bytes) -> np.ndarray:
        """Returns the sorted byte positions of ``pat`` in the shard."""
        lo, hi = self.range(pat)
        return np.sort(np.asarray(self.sa_array[lo:hi], dtype=np.int64))

    def doc_of(self, positions: np.ndarray) -> np.ndarray:
        """Maps byte positions to shard-local doc indexes."""
        return np.searchsorted(self.starts, positions, side="right") - 1

    def doc_end(self, local: int) -> int:
        """Byte offset of the separator that ends shard-local doc ``local``."""
        if local + 1 < len(self.starts):
            return int(self.starts[local + 1]) - 1
        return self.n - 1

    def close(self) -> None:
        self.sa.release()
        self.text.close()


def validate_query(query: str | bytes, *, traced: bool = False) -> tuple[str, bytes]:
    """Checks an exact-search query and returns it as text and as UTF-8 bytes.

    Args:
        query: The text, or raw bytes that must be UTF-8.
        traced: A text to trace (membership, ``longest_matches``), for the messages.

    Returns:
        ``(text, utf8_bytes)``.

    Raises:
        QueryError: The query is empty, longer than 1 MiB, holds NUL bytes or is not valid UTF-8.
    """
    if isinstance(query, bytes | bytearray | memoryview):
        raw = bytes(query)
        if b"\x00" in raw:
            raise QueryError("query holds NUL bytes: binary input cannot be searched, give UTF-8 text")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise QueryError(
                f"query is not valid UTF-8 (bad byte at offset {exc.start}): binary input cannot be searched"
            ) from None
    elif isinstance(query, str):
        text = query
        if "\x00" in text:
            raise QueryError("query holds NUL characters: binary input cannot be searched, give text")
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise QueryError(f"query holds an unencodable character at offset {exc.start}") from None
    else:
        raise QueryError(f"query must be str or bytes, not {type(query).__name__}")
    if not raw:
        raise QueryError("empty query: give the exact text to look for")
    if len(raw) > MAX_QUERY_BYTES:
        if traced:
            raise QueryError(
                f"the text is {len(raw):,} bytes long; membership and tracing take at most "
                f"{MAX_QUERY_BYTES:,} bytes (1 MiB) at a time: split it into parts"
            )
        raise QueryError(f"query is {len(raw):,} bytes long; the exact backend accepts at most {MAX_QUERY_BYTES:,}")
    return text, raw


def char_bounds(raw: bytes) -> list[int]:
    """The byte offset of each character of UTF-8 ``raw``, then ``len(raw)``."""
    arr = np.frombuffer(raw, dtype=np.uint8)
    return np.append(np.flatnonzero((arr & 0xC0) != 0x80), len(raw)).tolist()


def match_runs(n: int, occurs: Callable[[int, int], bool]) -> list[tuple[int, int]]:
    """Where the longest match found in the corpus reaches further than from any earlier start.

    The text is ``n`` units (characters, or word tokens); ``occurs(a, b)`` says whether the
    corpus holds units ``a`` to ``b`` (``b`` excluded; true when ``b <= a``). With ``end(i)`` the
    end of the longest match at unit ``i``, ``end`` never decreases (a match at ``i`` less its
    first unit is a match at ``i + 1``). So the starts that reach further than every earlier one,
    with their ends, give every ``end(i)``: between two such starts it stays that of the first.
    Each is found by binary search (the first start after ``i`` whose match passes ``end(i)``:
    "units ``j`` to ``end(i) + 1`` occur" holds from some ``j`` on), and each end by galloping.
    So a text copied whole from the corpus costs a few dozen searches, not one search of its
    whole length per unit (23 s for a copied 100 KB file, now 0.04 s).

    Returns:
        ``(start, end)`` pairs, starts increasing, ends strictly increasing; the first start is
        0 (an end equal to its start: no match there) and the last end is ``n``; none when
        ``n`` is 0.
    """

    def reach(start: int, known: int) -> int:
        """The end of the longest match at ``start``, knowing the text up to ``known`` occurs."""
        good, step = known, 1
        while good < n:
            probe = min(good + step, n)
            if not occurs(start, probe):
                bad = probe
                while bad - good > 1:
                    mid = (good + bad) // 2
                    if occurs(start, mid):
                        good = mid
                    else:
                        bad = mid
                return good
            good, step = probe, step * 2
        return good

    if n == 0:
        return []
    runs = [(0, reach(0, 0))]
    start, end = runs[0]
    while end < n:
        lo, hi = start + 1, end + 1  # from end + 1 on, the text up to end + 1 occurs (it is empty)
        while lo < hi:
            mid = (lo + hi) // 2
            if occurs(mid, end + 1):
                hi = mid
            else:
                lo = mid + 1
        start, end = lo, reach(lo, end + 1)
        runs.append((start, end))
    return runs


#: Suffix-array rows read at a time when a page of ``find`` picks its positions: a common pattern
#: (" " or "e") has tens of millions of rows, which copied at once cost 8 bytes each per request.
FIND_CHUNK = 1 << 20


def _smallest(sa: np.ndarray, lo: int, hi: int, need: int) -> np.ndarray:
    """The ``need`` smallest values of ``sa[lo:hi]`` (all of them when fewer), as int64, unsorted.

    A partition is O(n) where sorting all of them was O(n log n) (16M positions of "e": 0.1 s
    instead of 1.4 s); rows are read ``FIND_CHUNK`` at a time, so memory stays bounded by the
    chunk and ``need`` whatever the range.
    """
    best = np.empty(0, dtype=np.int64)
    for start in range(lo, hi, FIND_CHUNK):
        chunk = np.asarray(sa[start : min(start + FIND_CHUNK, hi)], dtype=np.int64)
        both = np.concatenate((best, chunk)) if best.size else chunk
        best = np.partition(both, need - 1)[:need] if need < both.size else both
    return best


def run_lengths(runs: Sequence[tuple[int, int]], n: int) -> list[int]:
    """The longest match at every unit, ``end(i) - i``, from :func:`match_runs` of ``n`` units."""
    lengths: list[int] = []
    for (start, end), (after, _) in zip(runs, [*runs[1:], (n, 0)][: len(runs)], strict=True):
        lengths.extend(range(end - start, end - after, -1))  # the end stays until the next run
    return lengths


def _check_counts(**values: Any) -> None:
    """Raises QueryError unless every value is a non-negative integer (a float or a string would
    otherwise fail deep inside as a TypeError, and True would page as 1)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise QueryError(f"{name} must be an integer and must not be negative, not {value!r}")


class ExactSearcher:
    """Counts, finds and traces exact strings in the corpus.

    Args:
        folder: The backend folder written by :func:`build`, or the folders of a bundle's
            shards in corpus order (each built by :func:`build` over its contiguous range of
            documents): their suffix-array shards are read as one corpus, with global document
            numbers, so every answer equals the one of a single folder built over all documents.
    """

    def __init__(self, folder: Path | Sequence[Path]) -> None:
        folders = [Path(folder)] if isinstance(folder, str | PathLike) else [Path(f) for f in folder]
        self.docids: list[str] = []
        self.shards: list[_Shard] = []
        #: Documents of each folder read, in order.
        self.folder_docs: list[int] = []
        for path in folders:
            self._add_folder(path)

    def _add_folder(self, folder: Path) -> None:
        """Appends the shards of one backend folder, numbering its docs after those already read."""
        meta = read_json(folder, "meta.json", what="the exact index's parameters")
        docids = read_json(folder, "docids.json", what="the exact index's document ids")
        if meta.get("format") != FORMAT_VERSION or not isinstance(docids, list) or len(docids) != meta.get("docs"):
            self.close()
            raise BundleCorruptError(f"{folder}: exact index format or doc count does not match")
        base = len(self.docids)
        try:
            for i, s in enumerate(meta["shards"]):
                self.shards.append(_Shard(folder, i, base + s["first_doc"], s["docs"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.close()
            raise BundleCorruptError(f"{folder}: cannot open the exact index shards: {exc}") from exc
        self.docids.extend(docids)
        self.folder_docs.append(len(docids))

    # -- counting ---------------------------------------------------------------------------
    def count(self, text: str | bytes) -> int:
        """Returns the occurrences of ``text`` in the corpus (overlapping ones included).

        Raises:
            QueryError: See :func:`validate_query`.
        """
        _, pat = validate_query(text)
        return self._count(pat)

    def _count(self, pat: bytes) -> int:
        total = 0
        for shard in self.shards:
            lo, hi = shard.range(pat)
            total += hi - lo
        return total

    def _contains(self, pat: bytes) -> bool:
        return any(shard.contains(pat) for shard in self.shards)

    # -- finding ----------------------------------------------------------------------------
    def find(self, text: str | bytes, *, k: int = 10, offset: int = 0, context: int = 80) -> list[ExactHit]:
        """Returns occurrences ``offset+1 .. offset+k`` in document order, then offset order.

        Args:
            text: The exact text.
            k: Page size.
            offset: Occurrences to skip.
            context: Characters of context on each side of the match in the snippet.

        Returns:
            At most ``k`` hits; use :meth:`count` for the total.

        Raises:
            QueryError: See :func:`validate_query`; or ``k``, ``offset`` or ``context`` is not a
                non-negative integer.
        """
        _, pat = validate_query(text)
        _check_counts(k=k, offset=offset, context=context)
        hits: list[ExactHit] = []
        skip = offset
        for shard in self.shards:
            if len(hits) >= k:
                break
            lo, hi = shard.range(pat)
            if skip >= hi - lo:
                skip -= hi - lo
                continue
            # Only the first ``need`` positions in text order are needed: a partition is O(n) where
            # sorting all of them was O(n log n) (16M positions of "e": 0.1 s instead of 1.4 s).
            need = skip + k - len(hits)
            page = np.sort(_smallest(shard.sa_array, lo, hi, need))[skip:]
            skip = 0
            for pos, local in zip(page.tolist(), shard.doc_of(page).tolist(), strict=True):
                docid, char_offset, snippet = self._locate(shard, pos, local, len(pat), context)
                hits.append(ExactHit(docid, char_offset, snippet, offset + len(hits) + 1))
        return hits

    def _locate(self, shard: _Shard, pos: int, local: int, m: int, context: int) -> tuple[str, int, str]:
        """Returns ``(docid, char offset, snippet)`` of the match at byte ``pos``."""
        start = int(shard.starts[local])
        end = shard.doc_end(local)
        char_offset = len(shard.text[start:pos].decode("utf-8"))
        # A UTF-8 character has at most 4 bytes; "ignore" drops a character cut at the window edge.
        left = shard.text[max(start, pos - 4 * context) : pos].decode("utf-8", errors="ignore")
        match = shard.text[pos : pos + m].decode("utf-8")
        right = shard.text[pos + m : min(end, pos + m + 4 * context)].decode("utf-8", errors="ignore")
        left = left[-context:] if context else ""
        right = right[:context]
        snippet = f"{html.escape(left)}<mark>{html.escape(match)}</mark>{html.escape(right)}"
        return self.docids[shard.first_doc + local], char_offset, snippet

    def search(self, query: str, k: int = 10, offset: int = 0) -> list[Hit]:
        """Ranks the documents that contain ``query`` verbatim by its number of occurrences.

        Ties keep corpus order. The score is the occurrence count; the snippet shows the first
        occurrence in the document.

        Raises:
            QueryError: See :func:`validate_query`; or ``k``/``offset`` is not a non-negative integer.
        """
        _, pat = validate_query(query)
        _check_counts(k=k, offset=offset)
        docs_parts, counts_parts, first_parts, shard_parts = [], [], [], []
        for si, shard in enumerate(self.shards):
            positions = shard.positions(pat)
            if not len(positions):
                continue
            local = shard.doc_of(positions)
            uniq, first, counts = np.unique(local, return_index=True, return_counts=True)
            docs_parts.append(uniq + shard.first_doc)
            counts_parts.append(counts)
            first_parts.append(positions[first])
            shard_parts.append(np.full(len(uniq), si))
        if not docs_parts:
            return []
        docs = np.concatenate(docs_parts)
        counts = np.concatenate(counts_parts)
        firsts = np.concatenate(first_parts)
        shard_of = np.concatenate(shard_parts)
        order = np.lexsort((docs, -counts))[offset : offset + k]
        hits = []
        for rank, i in enumerate(order.tolist(), start=offset + 1):
            shard = self.shards[int(shard_of[i])]
            local = int(docs[i]) - shard.first_doc
            docid, _, snippet = self._locate(shard, int(firsts[i]), local, len(pat), 40)
            hits.append(Hit(docid=docid, score=float(counts[i]), rank=rank, snippet=snippet, backend=NAME))
        return hits

    # -- tracing ----------------------------------------------------------------------------
    def longest_matches(self, text: str | bytes, *, min_len: int = 20, max_docs: int = 5) -> list[Span]:
        """Returns the maximal spans of ``text`` that occur verbatim in the corpus.

        For each start position the longest prefix found in the corpus is computed (matching
        statistics: the match at ``i + 1`` is at least the match at ``i`` minus one, so the work
        is linear in the query length). A span is kept when it is at least ``min_len``
        characters long and not contained in the span of an earlier start.

        Args:
            text: The text to trace (for example a model's output).
            min_len: Shortest span reported, in characters.
            max_docs: Documents listed per span.

        Returns:
            Spans in order of their start, in character offsets of ``text``.

        Raises:
            QueryError: See :func:`validate_query`; or ``min_len`` < 1.
        """
        query, raw = validate_query(text, traced=True)
        if min_len < 1:
            raise QueryError("min_len must be at least 1")
        bounds = char_bounds(raw)
        spans: list[Span] = []
        for i, end in match_runs(len(query), self.char_occurs(raw, bounds)):
            if end - i >= min_len:
                pat = raw[bounds[i] : bounds[end]]
                spans.append(Span(i, end, query[i:end], self._count(pat), self._first_docs(pat, max_docs)))
        return spans

    def char_occurs(self, raw: bytes, bounds: Sequence[int]) -> Callable[[int, int], bool]:
        """``occurs(a, b)`` of :func:`match_runs` for the characters of ``raw`` (``char_bounds``)."""
        return lambda a, b: b <= a or self._contains(raw[bounds[a] : bounds[b]])

    def _first_docs(self, pat: bytes, limit: int) -> tuple[str, ...]:
        out: list[str] = []
        for shard in self.shards:
            positions = shard.positions(pat)
            if not len(positions):
                continue
            for local in np.unique(shard.doc_of(positions))[: limit - len(out)].tolist():
                out.append(self.docids[shard.first_doc + local])
            if len(out) >= limit:
                break
        return tuple(out)

    def close(self) -> None:
        """Unmaps the shards."""
        for shard in self.shards:
            shard.close()
        self.shards = []

    def __enter__(self) -> ExactSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(folder: Path, report: Mapping[str, Any]) -> ExactSearcher:
    """Opens the exact index in ``folder``.

    Args:
        folder: The backend folder.
        report: The backend's manifest entry (unused: the folder describes itself).

    Raises:
        BundleCorruptError: The files are missing or inconsistent.
    """
    return ExactSearcher(Path(folder))


def open_shards(
    folders: Sequence[Path], reports: Sequence[Mapping[str, Any]], **open_options: Any
) -> ExactSearcher:
    """Opens the exact indexes of a sharded bundle as one index over the whole corpus.

    Shard ``i`` holds the documents with global row numbers ``first_doc_i .. first_doc_i +
    docs_i - 1``, in corpus order, and its folder was written by :func:`build` over just those
    documents. Every answer (``count``, ``find``, ``search``, ``longest_matches``) equals the
    one of an index built over all documents at once: counts sum over shards, occurrences come
    in global document order then offset order, ties in ``search`` keep corpus order.

    Args:
        folders: The shards' backend folders, in corpus order.
        reports: The shards' manifest entries (``BuildReport.to_dict()``), in the same order.
            An entry marked ``"empty"`` (a shard left with no documents) is skipped; where an
            entry gives ``docs``, it must match the folder's.
        **open_options: None are accepted (the exact backend has no search-time options).

    Returns:
        One searcher over all shards.

    Raises:
        BackendParameterError: An open option is given.
        BundleCorruptError: ``folders`` and ``reports`` differ in length, a folder is missing or
            inconsistent, or its doc count differs from its report's.
    """
    if open_options:
        raise BackendParameterError(f"backend {NAME!r} has no open option(s) {', '.join(sorted(open_options))}")
    if len(folders) != len(reports):
        raise BundleCorruptError(f"{len(folders)} exact shard folders but {len(reports)} shard reports")
    kept = [(Path(f), r) for f, r in zip(folders, reports, strict=True) if not r.get("empty")]
    searcher = ExactSearcher([folder for folder, _ in kept])
    # A shard list out of order or out of date shows as a doc count that differs from the report's.
    for (folder, report), docs in zip(kept, searcher.folder_docs, strict=True):
        if report.get("docs") is not None and report.get("docs") != docs:
            searcher.close()
            raise BundleCorruptError(
                f"{folder}: the shard report says {report.get('docs')} documents, the exact index holds {docs}"
            )
    return searcher
