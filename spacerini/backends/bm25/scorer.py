"""Exact re-implementation of Lucene 9's ``BM25Similarity`` and Anserini's ranking, in numpy.

Nothing here touches Java. The sidecar (``bundle/bm25/``) holds the postings of the Lucene index
in CSR form, as plain ``.npy`` files opened with ``mmap_mode="r"``:

* ``terms.bin`` + ``terms_offsets.npy`` - the vocabulary, UTF-8, sorted by bytes;
* ``post_offsets.npy`` (V+1) - where each term's postings start (like every offsets file and
  ``lengths.npy``, int32 when the values fit, else int64: readers take either);
* ``post_docs.npy`` (int32) - row numbers (corpus order), ascending within a term;
* ``post_tfs.npy`` (uint8) - term frequencies; 255 means "look it up in ``post_tf_exc_pos.npy``
  (int64, the postings' positions, ascending) / ``post_tf_exc.npy`` (int32, their tfs)";
* ``norms.npy`` (uint8) - Lucene's one-byte norm of each row (``SmallFloat.intToByte4(length)``);
  a posting's score is computed from its tf and its row's norm as Lucene's ``BM25Scorer`` does,
  through ``BM25Similarity``'s 256-entry float32 cache: ``x = tf * cache[norm]``, then
  ``weight - weight / (1 + x)``, so the sidecar needs 5 bytes per posting (format 3; formats 1 and
  2 also stored ``post_x``/``post_s1`` floats and int32 tfs, 16 bytes: they still open, the floats
  unread);
* ``lengths.npy`` - each row's field length;
* ``ids.bin`` + ``ids_offsets.npy`` - the collection ids, and ``id_rank.npy``, each row's rank in
  the byte order of the ids (the order Lucene's ``SortField(id, STRING_VAL)`` uses for ties);
* ``meta.json`` - statistics and parameters.

The float arithmetic copies Lucene 9.9 (the version in Anserini 1.7.1) step by step in float32, so
scores are bit-identical:

* ``idf = (float) Math.log(1 + (docCount - docFreq + 0.5D) / (docFreq + 0.5D))``;
* ``weight = boost * idf`` where ``boost`` is how often the term occurs in the analyzed query
  (Anserini's ``BagOfWordsQueryGenerator`` wraps repeated terms in a ``BoostQuery``);
* ``avgdl = (float) (sumTotalTermFreq / (double) docCount)``;
* ``cache[i] = 1f / (k1 * ((1 - b) + b * LENGTH_TABLE[i] / avgdl))``;
* per term ``score = weight - weight / (1f + freq * cache[norm])``;
* per document the term scores are summed in double and cast to float (Lucene's disjunction
  scorers all do this). The sum is exact in double for any realistic query, so order is irrelevant.

Anserini's ``SearchCollection`` (and pyserini's ``LuceneSearcher``) then sort by (raw score desc,
collection id asc) and run ``ScoreTiesAdjusterReranker``: scores are rounded to 4 decimals (in
double) and each near-tie (a score within ``1e-4f`` of the previous, already adjusted one) loses
``1e-6f * dup``. The order is that of the raw scores: rounding never reorders hits.
:func:`adjust_ties` reproduces that loop, quirks included, vectorised (see
:func:`adjust_ties_segments`: the loop is only needed for hits whose lowering depends on the run
before them, and those reduce to an integer scan).

:meth:`ExactScorer.rank_many` scores a batch of queries at once, with the compiled kernel of
:mod:`spacerini.backends.bm25.kernel` (numba), or with numpy when numba is missing or
``use_kernel`` is ``False``; :meth:`ExactScorer.score` and :meth:`ExactScorer.top` do one query the
straightforward way. The numpy batch path and they are the references the kernel is tested against.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 3
#: Sidecar formats this code reads (1 and 2 hold int32 tfs and unused float columns).
READABLE_FORMATS = (1, 2, 3)
#: A stored tf of this value (format 3) means "in the exception list": the tf is >= 255.
TF_ESCAPE = 255
#: Postings per block of the compiled kernel's block-max table: ``2**BLOCK_BITS`` (as Lucene's
#: impacts, a block's largest ``x`` bounds the scores of its postings).
BLOCK_BITS = 6

logger = logging.getLogger(__name__)

_F32 = np.float32
_ONE = _F32(1.0)
_TIE = _F32(1e-4)
_DUP = _F32(1e-6)


# -- Lucene's SmallFloat (norm encoding) -----------------------------------------------------------
def _long_to_int4(i: int) -> int:
    num_bits = i.bit_length()
    if num_bits < 4:
        return i
    shift = num_bits - 4
    encoded = (i >> shift) & 0x07
    return encoded | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits = i & 0x07
    shift = (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_MAX_INT4 = _long_to_int4(2**31 - 1)
_NUM_FREE_VALUES = 255 - _MAX_INT4


def int_to_byte4(i: int) -> int:
    """Port of Lucene's ``SmallFloat.intToByte4``; returns the unsigned byte (0..255).

    Args:
        i: A non-negative int (a field length in tokens).
    """
    if i < 0:
        raise ValueError(f"length must be >= 0, got {i}")
    if i < _NUM_FREE_VALUES:
        return i
    return _NUM_FREE_VALUES + _long_to_int4(i - _NUM_FREE_VALUES)


def byte4_to_int(b: int) -> int:
    """Port of Lucene's ``SmallFloat.byte4ToInt`` for an unsigned byte (0..255)."""
    b &= 0xFF
    if b < _NUM_FREE_VALUES:
        return b
    return _NUM_FREE_VALUES + _int4_to_long(b - _NUM_FREE_VALUES)


#: ``BM25Similarity.LENGTH_TABLE``: the decoded length of each norm byte, as float32.
LENGTH_TABLE = np.array([byte4_to_int(i) for i in range(256)], dtype=np.float32)

#: Lengths below this encode to themselves; above it, ``int_to_byte4`` is applied element-wise.
_LENGTH_LUT_SIZE = 1 << 16
_LENGTH_LUT = np.array([int_to_byte4(i) for i in range(_LENGTH_LUT_SIZE)], dtype=np.uint8)


def encode_norms(lengths: np.ndarray) -> np.ndarray:
    """Vectorised ``SmallFloat.intToByte4`` over an array of lengths."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.empty(lengths.shape, dtype=np.uint8)
    small = lengths < _LENGTH_LUT_SIZE
    out[small] = _LENGTH_LUT[lengths[small]]
    for pos in np.flatnonzero(~small):
        out[pos] = int_to_byte4(int(lengths[pos]))
    return out


def norm_cache(k1: float, b: float, avgdl: np.float32) -> np.ndarray:
    """``BM25Similarity.scorer``'s 256-entry cache, computed in float32 like Java."""
    k1f, bf = _F32(k1), _F32(b)
    return (_ONE / (k1f * ((_ONE - bf) + bf * LENGTH_TABLE / _F32(avgdl)))).astype(np.float32)


def avg_field_length(sum_total_term_freq: int, doc_count: int) -> np.float32:
    """``(float) (sumTotalTermFreq / (double) docCount)`` (1 when the field is empty)."""
    if doc_count <= 0:
        return _F32(1.0)
    return _F32(sum_total_term_freq / float(doc_count))


def idf(doc_freq: int, doc_count: int) -> np.float32:
    """``BM25Similarity.idf``: ``(float) Math.log(1 + (docCount - docFreq + 0.5D) / (docFreq + 0.5D))``."""
    return _F32(math.log(1.0 + (doc_count - doc_freq + 0.5) / (doc_freq + 0.5)))


def adjust_ties(scores: np.ndarray) -> np.ndarray:
    """Anserini's ``ScoreTiesAdjusterReranker`` on scores already in rank order (float32).

    Each score becomes ``(float) (Math.round(s * 1e4) / 1e4)`` (in double, as the 1.7.1 bytecode
    does; older sources show float arithmetic, which rounds differently near .5); a score that is not
    more than ``1e-4f`` below the previous (adjusted) one is then lowered by ``1e-6f * dup`` in float,
    where ``dup`` counts the run.

    Args:
        scores: Raw float32 scores, best first.

    Returns:
        The adjusted float32 scores.
    """
    s = np.asarray(scores, dtype=np.float32)
    return adjust_ties_segments(s, [0, s.size])


def adjust_ties_segments(scores: np.ndarray, bounds: Sequence[int]) -> np.ndarray:
    """:func:`adjust_ties` on many ranked lists at once, concatenated.

    Args:
        scores: The raw float32 scores of all lists, each list best first.
        bounds: Where each list starts, plus the total length at the end (ascending).

    Returns:
        The adjusted float32 scores (a run of ties never crosses from one list into the next).
    """
    s = np.asarray(scores, dtype=np.float32)
    if s.size == 0:
        return s.copy()
    # Anserini 1.7.1's bytecode: (float) (Math.round((double) s * 1e4) / 1e4). The double product is
    # far below 2^52, so x + 0.5 is exact and floor() gives Math.round(double)'s half-up result.
    rounded = (np.floor(s.astype(np.float64) * 1e4 + 0.5) / 1e4).astype(np.float32)
    if rounded.size < 2:
        return rounded
    # Anserini's loop lowers hit i by 1e-6f * dup when out[i-1] - rounded[i] <= 1e-4f, where out[i-1]
    # is the previous hit's adjusted score and dup counts the hits lowered in a row (0 after a hit
    # that is not lowered). Lowering only lowers, and float subtraction is monotonic, so:
    # * a hit with rounded[i-1] - rounded[i] <= 1e-4f is always lowered;
    # * any other hit is lowered exactly when the previous dup reaches a threshold (found for all such
    #   hits at once by binary search), so only those hits need a scan, over ints.
    n = rounded.size
    index = np.arange(n, dtype=np.int64)
    first = np.zeros(n, dtype=bool)  # the first hit of a list has no previous one
    first[0] = True
    cuts = np.asarray(bounds[1:-1], dtype=np.int64)
    first[cuts[cuts < n]] = True
    near = np.zeros(n, dtype=bool)
    np.greater(rounded[:-1] - rounded[1:], _TIE, out=near[1:])
    np.logical_not(near, out=near)
    reset = first.copy()  # the hits that are not lowered
    other = np.flatnonzero(~near & ~first)
    if other.size:
        list_start = np.maximum.accumulate(np.where(first, index, 0))
        max_dup = other - 1 - list_start[other]  # the most hits in a row before hit i
        prev, cur = rounded[other - 1], rounded[other]
        lo = np.ones(other.size, dtype=np.int64)
        hi = max_dup + 1  # lo == hi == max_dup + 1 in the end: no dup lowers this hit
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            ok = ~(((prev - _DUP * mid.astype(np.float32)) - cur) > _TIE)
            hi = np.where(active & ok, mid, hi)
            lo = np.where(active & ~ok, mid + 1, lo)
        possible = lo <= max_dup
        reset[other[~possible]] = True
        scan, need = other[possible], lo[possible]
        if scan.size:
            last_reset = np.maximum.accumulate(np.where(reset, index, 0))[scan - 1]
            not_lowered: list[int] = []
            latest = -1
            for i, threshold, last in zip(scan.tolist(), need.tolist(), last_reset.tolist(), strict=True):
                if latest > last:
                    last = latest
                if i - 1 - last < threshold:
                    latest = i
                    not_lowered.append(i)
            reset[not_lowered] = True
    dup = index - np.maximum.accumulate(np.where(reset, index, 0))
    lowered = np.flatnonzero(dup)
    if lowered.size == 0:
        return rounded
    out = rounded.copy()
    out[lowered] = rounded[lowered] - _DUP * dup[lowered].astype(np.float32)
    return out


def _adjust_ties_loop(rounded: np.ndarray, bounds: Sequence[int]) -> np.ndarray:
    """Anserini's loop, hit by hit, on already rounded float32 scores (the reference)."""
    out = rounded.copy()
    ends = list(bounds)
    for a, n in zip(ends[:-1], ends[1:], strict=True):
        dup = 0
        for i in range(a + 1, n):
            if out[i - 1] - rounded[i] > _TIE:
                dup = 0
                continue
            dup += 1
            out[i] = rounded[i] - _DUP * _F32(dup)
    return out


def term_hash(term: bytes) -> int:
    """64-bit BLAKE2b hash of a term's UTF-8 bytes (the vocabulary's lookup key)."""
    return int.from_bytes(hashlib.blake2b(term, digest_size=8).digest(), "little")


def term_hashes(terms: Sequence[bytes]) -> np.ndarray:
    """:func:`term_hash` of each term, as uint64 (the digests read as one little-endian array:
    about twice as fast as an int per term on a vocabulary of 500k terms)."""
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(term, digest_size=8).digest() for term in terms])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


# -- the sidecar -----------------------------------------------------------------------------------
class SidecarWriter:
    """Accumulates per-document term vectors (in row order) and writes the CSR sidecar.

    Args:
        folder: Where to write (``bundle/bm25``); created if missing.
        k1: BM25 k1.
        b: BM25 b.
    """

    def __init__(self, folder: Path, *, k1: float, b: float) -> None:
        self.folder = Path(folder)
        self.k1 = float(k1)
        self.b = float(b)
        self._vocab: dict[str, int] = {}
        self._tids: list[np.ndarray] = []
        self._tfs: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._lengths: list[int] = []
        self._ids: list[bytes] = []

    @property
    def rows(self) -> int:
        """Rows added so far."""
        return len(self._lengths)

    def add_chunk(self, docids: Sequence[str], terms: list[str], tfs: np.ndarray, counts: np.ndarray) -> None:
        """Adds consecutive rows at once.

        Args:
            docids: The rows' collection ids, in order.
            terms: The rows' terms, concatenated (each row's terms distinct).
            tfs: The matching term frequencies (int32).
            counts: How many terms each row has.
        """
        first = len(self._lengths)
        self._ids.extend(d.encode("utf-8", "surrogatepass") for d in docids)
        vocab = self._vocab
        new = set(terms).difference(vocab)
        if new:
            vocab.update(zip(sorted(new), range(len(vocab), len(vocab) + len(new)), strict=True))
        counts = np.asarray(counts, dtype=np.int64)
        tfs = np.asarray(tfs, dtype=np.int32)
        local = np.repeat(np.arange(counts.size, dtype=np.int32), counts)
        lengths = np.bincount(local, weights=tfs, minlength=counts.size).astype(np.int64)
        self._lengths.extend(lengths.tolist())
        if terms:
            self._tids.append(np.fromiter(map(vocab.__getitem__, terms), dtype=np.int32, count=len(terms)))
            self._tfs.append(tfs)
            self._rows.append(local + np.int32(first))

    def write(
        self, *, extra: dict[str, Any] | None = None, log: Callable[[float], float] = math.log
    ) -> dict[str, Any]:
        """Writes all files and returns the statistics stored in ``meta.json``.

        Args:
            extra: More entries for ``meta.json``.
            log: The natural logarithm used for idf; pass Java's ``Math.log`` to be bit-exact with
                Lucene even where it and the C library disagree in the last place.
        """
        # Vocabulary sorted by UTF-8 bytes (the order Lucene's terms dictionary uses).
        terms_b = [t.encode("utf-8") for t in self._vocab]
        order = sorted(range(len(terms_b)), key=terms_b.__getitem__)
        remap = np.empty(len(order), dtype=np.int32)
        remap[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int32)
        if self._tids:
            tids = remap[np.concatenate(self._tids)]
            tfs = np.concatenate(self._tfs)
            rows = np.concatenate(self._rows)
        else:
            tids = np.zeros(0, dtype=np.int32)
            tfs = np.zeros(0, dtype=np.int32)
            rows = np.zeros(0, dtype=np.int32)
        self._tids, self._tfs, self._rows = [], [], []
        perm = np.argsort(tids, kind="stable")  # rows were added in order: stays ascending per term
        return write_sidecar(
            self.folder, k1=self.k1, b=self.b, ids=self._ids, lengths=np.asarray(self._lengths, dtype=np.int64),
            terms=[terms_b[i] for i in order], tids=tids[perm], tfs=tfs[perm], rows=rows[perm], extra=extra,
            log=log,
        )  # fmt: skip


def write_sidecar(
    folder: Path,
    *,
    k1: float,
    b: float,
    ids: Sequence[bytes],
    lengths: np.ndarray,
    terms: Sequence[bytes],
    tids: np.ndarray,
    tfs: np.ndarray,
    rows: np.ndarray,
    extra: dict[str, Any] | None = None,
    log: Callable[[float], float] = math.log,
) -> dict[str, Any]:
    """Writes the sidecar from postings already grouped by term, and returns ``meta.json``'s content.

    Args:
        folder: Where to write; created if missing.
        k1: BM25 k1.
        b: BM25 b.
        ids: Each row's collection id, UTF-8.
        lengths: Each row's field length (the sum of its term frequencies), int64.
        terms: The vocabulary, sorted by bytes.
        tids: Each posting's term (index into ``terms``), ascending.
        tfs: Each posting's term frequency.
        rows: Each posting's row, ascending within a term.
        extra: More entries for ``meta.json``.
        log: The natural logarithm used for idf; pass Java's ``Math.log`` to be bit-exact with
            Lucene even where it and the C library disagree in the last place.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(lengths)
    lengths = np.asarray(lengths, dtype=np.int64)
    norms = encode_norms(lengths)
    doc_count = int(np.count_nonzero(lengths))
    sum_ttf = int(lengths.sum())
    avgdl = avg_field_length(sum_ttf, doc_count)

    _save_blob(folder, "terms", terms)
    hashes = term_hashes(terms)
    by_hash = np.argsort(hashes, kind="stable")
    np.save(folder / "terms_hash.npy", hashes[by_hash])
    np.save(folder / "terms_hash_ids.npy", by_hash.astype(np.int32))

    offsets = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(tids, minlength=len(terms)), out=offsets[1:])
    dfs = np.diff(offsets)
    unique_dfs = np.unique(dfs)
    idf_of = np.array(
        [np.float32(log(1.0 + (doc_count - int(df) + 0.5) / (int(df) + 0.5))) for df in unique_dfs],
        dtype=np.float32,
    )
    term_idf = idf_of[np.searchsorted(unique_dfs, dfs)] if dfs.size else np.zeros(0, dtype=np.float32)
    codes, exc_pos, exc_tf = encode_tfs(tfs)

    np.save(folder / "post_offsets.npy", _narrow(offsets))
    np.save(folder / "post_docs.npy", rows.astype(np.int32))
    np.save(folder / "post_tfs.npy", codes)
    np.save(folder / "post_tf_exc_pos.npy", exc_pos)
    np.save(folder / "post_tf_exc.npy", exc_tf)
    np.save(folder / "terms_idf.npy", term_idf.astype(np.float32))
    np.save(folder / "norms.npy", norms)
    np.save(folder / "lengths.npy", _narrow(lengths))
    _save_blob(folder, "ids", ids)
    id_order = sorted(range(n), key=ids.__getitem__)
    id_rank = np.empty(n, dtype=np.int32)
    id_rank[np.asarray(id_order, dtype=np.int64)] = np.arange(n, dtype=np.int32)
    np.save(folder / "id_rank.npy", id_rank)
    meta = {
        "format": FORMAT_VERSION,
        "k1": float(k1),
        "b": float(b),
        "rows": n,
        "doc_count": doc_count,
        "sum_total_term_freq": sum_ttf,
        "avgdl": float(avgdl),
        "terms": len(terms),
        "postings": int(rows.size),
    }
    if extra:
        meta.update(extra)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def encode_tfs(tfs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Term frequencies as one byte each, with an exception list for those >= :data:`TF_ESCAPE`.

    Args:
        tfs: Each posting's term frequency (>= 1).

    Returns:
        ``(codes, exception positions, exception tfs)``: uint8 codes (the tf, or
        :data:`TF_ESCAPE`), the positions of the escaped postings (int64, ascending) and their
        tfs (int32).

    Raises:
        ValueError: A tf is below 1 or above 2**31 - 1.
    """
    tfs = np.asarray(tfs)
    if tfs.size and (int(tfs.min()) < 1 or int(tfs.max()) > 2**31 - 1):
        raise ValueError(f"term frequencies must be in 1..2**31-1, got {int(tfs.min())}..{int(tfs.max())}")
    escaped = np.flatnonzero(tfs >= TF_ESCAPE)
    codes = np.minimum(tfs, TF_ESCAPE).astype(np.uint8)
    return codes, escaped.astype(np.int64), tfs[escaped].astype(np.int32)


def decode_tfs(codes: np.ndarray, start: int, exc_pos: np.ndarray, exc_tf: np.ndarray, escape: int) -> np.ndarray:
    """The int32 term frequencies of ``codes`` (postings ``start..start + len(codes)``).

    Args:
        codes: Stored tfs (uint8 codes in format 3, plain int32 before).
        start: The position of ``codes[0]`` among all postings.
        exc_pos, exc_tf: The exception list (empty before format 3).
        escape: The code that means "in the exception list" (-1: none).
    """
    out = codes.astype(np.int32)
    if escape >= 0 and exc_pos.size:
        hit = np.flatnonzero(codes == escape)
        if hit.size:
            out[hit] = exc_tf[np.searchsorted(exc_pos, hit + start)]
    return out


_KERNEL: list[Any] = []


def _kernel() -> Any:
    """The compiled kernel module, or ``None`` when numba cannot be imported (the numpy path ranks)."""
    if not _KERNEL:
        try:
            from spacerini.backends.bm25 import kernel
        except ImportError as exc:  # pragma: no cover - numba is a dependency
            logger.warning("numba is not available (%s): BM25 ranks with the slower numpy path", exc)
            kernel = None
        _KERNEL.append(kernel)
    return _KERNEL[0]


#: A chunk of fewer queries ranks on one thread (a parallel launch and an accumulator per thread
#: cost more than they save).
PARALLEL_MIN_QUERIES = 64
_PARALLEL: list[bool] = []


def parallel_threads(threads: int) -> int:
    """How many of numba's threads a ranking call may use: ``threads``, at most numba's own
    count, or 1 when numba has no thread-safe threading layer (TBB or OpenMP; its ``workqueue``
    layer aborts the process when two threads launch at once, as a server's do)."""
    if threads <= 1:
        return 1
    if not _PARALLEL:
        import numba

        ok = str(numba.config.THREADING_LAYER) != "workqueue"
        if ok:
            ok = False
            for pool in ("tbbpool", "omppool"):
                try:
                    importlib.import_module(f"numba.np.ufunc.{pool}")
                except ImportError:
                    continue
                ok = True
                break
        _PARALLEL.append(ok)
    if not _PARALLEL[0]:
        return 1
    import numba

    return max(1, min(threads, int(numba.config.NUMBA_NUM_THREADS)))


def _run_parallel(fn: Callable[..., Any], *args: Any, threads: int) -> Any:
    """Calls a ``parallel=True`` kernel on ``threads`` of numba's threads (numba's count is per
    calling thread: it is set for this call and put back)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, int(numba.config.NUMBA_NUM_THREADS))))
    try:
        return fn(*args)
    finally:
        numba.set_num_threads(before)


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view (the kernel is compiled once for read-only arrays, mmapped or not)."""
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


def _save_blob(folder: Path, name: str, items: Sequence[bytes]) -> None:
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    if items:
        np.cumsum(np.fromiter((len(x) for x in items), dtype=np.int64, count=len(items)), out=offsets[1:])
    (folder / f"{name}.bin").write_bytes(b"".join(items))
    np.save(folder / f"{name}_offsets.npy", _narrow(offsets))


def _narrow(values: np.ndarray) -> np.ndarray:
    """``values`` (non-negative ints) as int32 when they fit: offsets and lengths stored in half
    the bytes (readers widen them with :func:`_load_wide`)."""
    values = np.asarray(values, dtype=np.int64)
    return values.astype(np.int32) if values.size == 0 or int(values.max()) < 2**31 else values


def _load_wide(path: Path) -> np.ndarray:
    """An int array stored as int32 or int64, as int64 (small arrays: offsets, read into memory
    when narrowed, memory-mapped otherwise)."""
    array = _load(path)
    return array if array.dtype == np.int64 else array.astype(np.int64)


def _load(path: Path) -> np.ndarray:
    """Memory-maps an ``.npy`` file as a plain ndarray view (memmap slicing is slow)."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    return array.view(np.ndarray) if isinstance(array, np.memmap) else array


class _Blob:
    """A read-only sequence of byte strings stored as one blob plus offsets (both mmapped)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.offsets = _load_wide(folder / f"{name}_offsets.npy")
        path = folder / f"{name}.bin"
        if path.stat().st_size:
            self.blob: np.ndarray | bytes = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)
        else:
            self.blob = b""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return bytes(self.blob[start:end])


@dataclass(frozen=True)
class Vocabulary:
    """A sidecar's vocabulary as arrays: what a shard contributes to the global document frequencies.

    Attributes:
        hashes: :func:`term_hash` of each term, ascending (uint64).
        hash_ids: The term id (vocabulary index) of each entry of ``hashes`` (int32).
        doc_freqs: Each term's document frequency, in vocabulary order (int64).
        blob: The terms' UTF-8 bytes, concatenated in vocabulary order (uint8).
        offsets: Where each term starts in ``blob``, plus the end (int64, V+1).
    """

    hashes: np.ndarray
    hash_ids: np.ndarray
    doc_freqs: np.ndarray
    blob: np.ndarray
    offsets: np.ndarray

    def term(self, tid: int) -> bytes:
        """The UTF-8 bytes of term ``tid``."""
        return bytes(self.blob[int(self.offsets[tid]) : int(self.offsets[tid + 1])])


def merge_doc_freqs(vocabs: Sequence[Vocabulary]) -> list[np.ndarray]:
    """Sums document frequencies over shards by term: each shard's terms get their global df.

    Terms are matched by their 64-bit hash (sorted arrays, one ``np.unique`` over all shards), and
    every match is then checked byte for byte, vectorised. Should two different terms share a
    hash, the exact (slower, per-term) merge by bytes runs instead, so the result never depends
    on the hash.

    Args:
        vocabs: Each shard's :class:`Vocabulary`.

    Returns:
        Per shard, the global document frequency of each of its terms, in its vocabulary order
        (int64).
    """
    if not vocabs:
        return []
    hashes = np.concatenate([v.hashes for v in vocabs])
    if hashes.size == 0:
        return [np.zeros(0, dtype=np.int64) for _ in vocabs]
    dfs = np.concatenate([v.doc_freqs[v.hash_ids] for v in vocabs]).astype(np.int64)
    sizes = [v.hashes.size for v in vocabs]
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # The sum of counts below 2**53 is exact in float64.
    total = np.bincount(inverse, weights=dfs.astype(np.float64)).astype(np.int64)
    if not _same_terms(vocabs, np.arange(hashes.size), first[inverse]):
        return _merge_doc_freqs_by_bytes(vocabs)
    out: list[np.ndarray] = []
    start = 0
    for vocab, size in zip(vocabs, sizes, strict=True):
        global_df = np.zeros(vocab.doc_freqs.size, dtype=np.int64)
        global_df[vocab.hash_ids] = total[inverse[start : start + size]]
        out.append(global_df)
        start += size
    return out


def _same_terms(vocabs: Sequence[Vocabulary], left: np.ndarray, right: np.ndarray) -> bool:
    """Whether entry ``left[i]`` and entry ``right[i]`` (indices into all shards' hash-ordered
    entries, concatenated) are the same term, for every ``i``."""
    check = left != right
    left, right = left[check], right[check]
    if left.size == 0:
        return True
    blob = (
        np.concatenate([v.blob for v in vocabs])
        if any(v.blob.size for v in vocabs)
        else np.zeros(0, np.uint8)
    )
    starts_parts, ends_parts = [], []
    base = 0
    for v in vocabs:
        starts_parts.append(v.offsets[:-1][v.hash_ids] + base)
        ends_parts.append(v.offsets[1:][v.hash_ids] + base)
        base += int(v.offsets[-1])
    starts = np.concatenate(starts_parts).astype(np.int64)
    lengths = np.concatenate(ends_parts).astype(np.int64) - starts
    if not np.array_equal(lengths[left], lengths[right]):
        return False
    sizes = lengths[left]
    total = int(sizes.sum())
    if total == 0:
        return True
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return bool(
        np.array_equal(
            blob[np.repeat(starts[left], sizes) + within], blob[np.repeat(starts[right], sizes) + within]
        )
    )


def _merge_doc_freqs_by_bytes(vocabs: Sequence[Vocabulary]) -> list[np.ndarray]:
    """:func:`merge_doc_freqs` with a dict keyed by each term's bytes (the reference; per term)."""
    total: dict[bytes, int] = {}
    for vocab in vocabs:
        for tid, df in enumerate(vocab.doc_freqs.tolist()):
            term = vocab.term(tid)
            total[term] = total.get(term, 0) + df
    return [np.array([total[v.term(tid)] for tid in range(v.doc_freqs.size)], dtype=np.int64) for v in vocabs]


#: ``(sidecar, its first row, term id, start, end)``: one term's postings in one sidecar.
_Span = tuple["ExactScorer", int, int, int, int]


def _concat_ranked(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joins ``(rows, scores, bounds)`` results of consecutive chunks of queries into one."""
    offsets = np.cumsum([0] + [int(p[2][-1]) for p in parts[:-1]])
    bounds = np.concatenate([parts[0][2][:1]] + [p[2][1:] + o for p, o in zip(parts, offsets, strict=True)])
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), bounds


#: What the kernel gets instead of a block table when no query of a call is pruned.
_NO_BLOCKS = (
    _read_only(np.zeros(1, np.int64)), _read_only(np.zeros(0, np.float32)), 0,
    _read_only(np.zeros(0, np.float32)), _read_only(np.zeros(0, np.float32)),
)  # fmt: skip


class _Ranker:
    """Batch ranking shared by one sidecar (:class:`ExactScorer`) and several (:class:`ShardedScorer`).

    Subclasses provide ``rows``, ``id_rank`` (each row's rank in the byte order of the collection
    ids), ``docids`` and ``_sources``: the ``(ExactScorer, first row)`` pairs whose postings
    are ranked together.
    """

    rows: int
    id_rank: np.ndarray

    #: Postings spans are cached for this many distinct terms (the cache is emptied when full).
    #: Each entry holds ~100-200 bytes, and a server sees new terms all the time (numbers, typos):
    #: 100,000 let a process grow ~12 MB over 60,000 queries with one new term each (4 % of a
    #: 300 MB server); at this size the cache stays under ~3 MB, and a miss costs a few
    #: microseconds.
    SPAN_CACHE = 16_384

    def docids(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """Returns the collection ids of ``rows``."""
        raise NotImplementedError

    def _find_spans(self, term: str) -> tuple[_Span, ...]:
        raise NotImplementedError

    def _spans(self, term: str) -> tuple[_Span, ...]:
        """Where ``term``'s postings are: ``(sidecar, its first row, term id, start, end)`` per
        sidecar holding it (cached: a query costs one dict lookup per term)."""
        cache = self._span_cache
        found = cache.get(term)
        if found is None:
            found = self._find_spans(term)
            if len(cache) >= self.SPAN_CACHE:
                cache.clear()  # a race here only costs a lookup: dict ops are atomic
            cache[term] = found
        return found

    #: Batch scoring accumulates at most this many (query, row) cells densely at once.
    DENSE_CELLS = 1 << 21
    #: A batch is scored densely when its postings times this cover all its (query, row) cells.
    DENSE_RATIO = 8

    def rank_many(
        self, queries: Sequence[Sequence[tuple[str, int]]], n: int
    ) -> list[tuple[list[str], list[float]]]:
        """Scores and ranks many queries: with the compiled kernel (see :attr:`use_kernel`), or
        with a few numpy operations per batch, as described here.

        Equivalent to :meth:`score` then :meth:`top` for each query (same rows, order and scores),
        but the per-query work is spread over whole-batch arrays: the postings of all queries are
        concatenated with a query index, summed per (query, row) in double (``np.bincount`` over
        ``query * rows + row``, densely when the batch's postings cover at least 1/8 of its cells,
        else after ``np.unique``), cut to each query's ``n`` best (ties with the ``n``-th kept),
        sorted once by (query, score desc, id rank) and tie-adjusted per query.

        Args:
            queries: Per query, (analyzed term, occurrences) pairs, distinct terms.
            n: Hits wanted per query.

        Returns:
            Per query, (collection ids, tie-adjusted scores) best first.
        """
        rows, scores, bounds = self.rank_arrays(queries, n)
        ids = self.docids(rows)
        values = scores.tolist()
        cuts = bounds.tolist()
        return [(ids[a:b], values[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def rank_arrays(
        self, queries: Sequence[Sequence[tuple[str, int]]], n: int, *, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`rank_many` as arrays: no per-hit Python object is built.

        Args:
            queries: Per query, (analyzed term, occurrences) pairs, distinct terms.
            n: Hits wanted per query.
            threads: Rank ranges of the queries at once on this many of numba's threads (see
                :func:`parallel_threads`); the hits are the same.

        Returns:
            ``(rows, scores, bounds)``: all queries' hits concatenated, best first within each
            query (rows int64, numbered as :meth:`docids` takes them; tie-adjusted float32
            scores), and where each query's hits start, plus the end (int64, ``len(queries)+1``).
        """
        nq = len(queries)
        if n <= 0 or not queries:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(nq + 1, np.int64)
        kernel = _kernel() if self.use_kernel else None
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if kernel is not None:
            n = min(n, max(1, self.rows))
            chunk = max(1, self.HEAP_CELLS // n)
            for first in range(0, nq, chunk):
                rows, _, adjusted, bounds = self._rank_chunk_kernel(
                    kernel, queries[first : first + chunk], n, threads=threads
                )
                parts.append((rows, adjusted, bounds))
        else:
            chunk = max(1, self.DENSE_CELLS // max(1, self.rows))
            for first in range(0, nq, chunk):
                rows, raw, cuts = self._raw_chunk(queries[first : first + chunk], n)
                parts.append(
                    (rows.astype(np.int64), adjust_ties_segments(raw, cuts), np.asarray(cuts, dtype=np.int64))
                )
        if len(parts) == 1:
            return parts[0]
        return _concat_ranked(parts)

    #: Rank with the compiled kernel (:mod:`~spacerini.backends.bm25.kernel`) when numba is
    #: available; ``False``: the numpy path (the reference the kernel is tested against).
    use_kernel = True
    #: Queries with at least ``PRUNE_MIN_POSTINGS`` postings in a sidecar, at most
    #: ``PRUNE_MAX_TERMS`` terms and at most ``PRUNE_MAX_HITS`` hits wanted go window by window with
    #: block-max MaxScore (:func:`~spacerini.backends.bm25.kernel._rank_blocks`; exact either way);
    #: the others score every posting. Measured on 100k and 400k Debian paragraphs (CPU time per
    #: query, 2 cores under load 11-14): at k=10 about 20 % less than scoring every posting on
    #: both; at k=100 the same; at k=1000 5-10 % more (its threshold stays low: few postings
    #: can be skipped), hence the hits limit.
    PRUNE_MIN_POSTINGS = 4096
    PRUNE_MAX_TERMS = 16
    PRUNE_MAX_HITS = 32
    #: The pruned path's windows span at least ``2**WINDOW_BITS`` rows (fewer windows: each costs a
    #: few operations per term; 2**11 measured best among 2**0 .. 2**17 at k=10).
    WINDOW_BITS = 11
    #: ``False``: never prune (for comparison).
    prune = True
    #: One kernel call keeps at most this many (query, hit) heap cells.
    HEAP_CELLS = 1 << 20

    def _row_of_rank(self) -> np.ndarray:
        """The row of each id rank (the inverse permutation of ``id_rank``), made once."""
        inverse = self.__dict__.get("_rows_by_rank")
        if inverse is None:
            inverse = np.empty(self.rows, dtype=np.int32)
            inverse[np.asarray(self.id_rank, dtype=np.int64)] = np.arange(self.rows, dtype=np.int32)
            inverse.flags.writeable = False
            self._rows_by_rank = inverse
        return inverse

    def _rank_chunk_kernel(
        self, kernel: Any, queries: Sequence[Sequence[tuple[str, int]]], n: int, *, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Ranks a chunk of queries with the compiled kernel: one call per sidecar, then one to sort.

        Returns:
            :func:`~spacerini.backends.bm25.kernel.finish`'s ``(rows, raw, adjusted, bounds)``.
        """
        nq = len(queries)
        spans = self._spans
        # Per sidecar: its first row and, per query term found in it, the query, term id, postings
        # and the term's count in the query (flat lists; weights are computed per sidecar below).
        found: dict[int, tuple[ExactScorer, int, Any, Any, Any, Any, Any]] = {}
        if isinstance(self, ExactScorer):
            # One sidecar: term ids from the cache, spans from the offsets, in whole arrays.
            term_id = self.term_id
            flat = [(qi, term_id(term), count) for qi, term_counts in enumerate(queries) for term, count in term_counts]
            if flat:
                cols = np.array(flat, dtype=np.int64).reshape(-1, 3)
                cols = cols[cols[:, 1] >= 0]
                if cols.size:
                    offsets = self.offsets
                    found[id(self)] = (
                        self, 0, cols[:, 0], cols[:, 1], offsets[cols[:, 1]], offsets[cols[:, 1] + 1], cols[:, 2]
                    )
        for qi, term_counts in enumerate(queries if not isinstance(self, ExactScorer) else ()):
            for term, count in term_counts:
                for source, base, tid, start, end in spans(term):
                    entry = found.get(id(source))
                    if entry is None:
                        entry = found[id(source)] = (source, base, [], [], [], [], [])
                    entry[2].append(qi)
                    entry[3].append(tid)
                    entry[4].append(start)
                    entry[5].append(end)
                    entry[6].append(count)
        keys = np.empty((nq, n), dtype=np.int64)
        sizes = np.zeros(nq, dtype=np.int64)
        id_rank = _read_only(self.id_rank)
        chunks = parallel_threads(threads) if nq >= PARALLEL_MIN_QUERIES else 1
        for source, base, qs, tid_list, starts, ends, count_list in sorted(
            found.values(), key=lambda e: e[1]
        ):
            tids = np.asarray(tid_list, dtype=np.int64)
            counts = np.asarray(count_list, dtype=np.int64)
            # Lucene's weight: count * idf (float32; count 1 leaves idf as it is).
            weights = (counts.astype(np.float32) * source.idf[tids]).astype(np.float32)
            q_ptr = np.zeros(nq + 1, dtype=np.int64)
            np.cumsum(np.bincount(np.asarray(qs, dtype=np.int64), minlength=nq), out=q_ptr[1:])
            pruned = self.prune and n <= self.PRUNE_MAX_HITS
            blocks = source.block_table() if pruned else _NO_BLOCKS
            whole = source._take_buffers()
            args = (
                *source.kernel_postings(), *blocks[:3], self.WINDOW_BITS, *blocks[3:], base, id_rank, q_ptr, tids,
                np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64), weights,
                (counts == 1).view(np.uint8), keys, sizes, self.PRUNE_MIN_POSTINGS if pruned else 2**62,
                self.PRUNE_MAX_TERMS, *whole,
            )  # fmt: skip
            if chunks > 1:
                _run_parallel(kernel.rank_source_parallel, *args, chunks, threads=chunks)
            else:
                kernel.rank_source(*args)
            source._give_buffers(whole)  # only after success: a failed call may leave it dirty
        return kernel.finish(keys, sizes, self._row_of_rank())

    def _raw_chunk(
        self, queries: Sequence[Sequence[tuple[str, int]]], n: int
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Ranks a chunk of queries: (rows, raw scores) in Anserini's order and each query's bounds.

        The postings come from every sidecar that :meth:`_spans` names: rows are numbered across
        them (a shard's row + its first row), as if they were one index.
        """
        rows = self.rows
        spans = self._spans
        doc_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        qkeys: list[int] = []
        lengths: list[int] = []
        for qi, term_counts in enumerate(queries):
            for term, count in term_counts:
                for source, base, tid, start, end in spans(term):
                    doc_parts.append(source.docs[start:end])
                    score_parts.append(source.term_scores(tid, start, end, count))
                    qkeys.append(qi * rows + base)
                    lengths.append(end - start)
        nq = len(queries)
        if not doc_parts:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32), [0] * (nq + 1)
        key = np.concatenate(doc_parts).astype(np.int64)
        key += np.repeat(np.asarray(qkeys, dtype=np.int64), lengths)
        weights = np.concatenate(score_parts)
        if key.size * self.DENSE_RATIO >= nq * rows:
            # Dense: Lucene sums a row's term scores in double; the sum is exact, so order is free.
            acc = np.bincount(key, weights=weights, minlength=nq * rows).astype(np.float32).reshape(nq, rows)
            # Every term score is > 0, so matches are the cells > 0. The n-th best score of every
            # step-th row is a lower bound of the n-th best of all rows: the cells above it hold the
            # n best with their ties, and only about step * n of them per query; the sort below cuts.
            threshold = np.full(nq, np.finfo(np.float32).smallest_subnormal, dtype=np.float32)
            step = max(1, min(8, rows // (4 * n)))
            sample = acc[:, ::step]
            m = sample.shape[1]
            if n < m:
                np.maximum(threshold, np.partition(sample, m - n, axis=1)[:, m - n], out=threshold)
            qs, cand_rows = np.nonzero(acc >= threshold[:, None])
            scores = acc[qs, cand_rows]
        else:
            keys, inverse = np.unique(key, return_inverse=True)
            scores = np.bincount(inverse, weights=weights, minlength=keys.size).astype(np.float32)
            qs = keys // rows
            cand_rows = keys - qs * rows
        # Order by (query, score desc, id rank). Scores are positive float32, whose bit patterns order
        # like their values, so (score desc, id rank) fits one int64; a stable sort by query follows
        # (a radix sort for int16). 4x faster than np.lexsort on the three keys.
        key2 = (np.int64(0x7FFFFFFF) - scores.view(np.int32).astype(np.int64)) << 32
        key2 |= self.id_rank[cand_rows]
        order = np.argsort(key2)
        qtype = np.int16 if nq <= np.iinfo(np.int16).max else np.int64
        order = order[np.argsort(qs[order].astype(qtype), kind="stable")]
        qs = qs[order]
        bounds = np.searchsorted(qs, np.arange(nq + 1))
        sizes = np.diff(bounds)
        if int(sizes.max()) > n:  # keep each query's n best
            pos = np.arange(qs.size) - np.repeat(bounds[:-1], sizes)
            order = order[pos < n]
            sizes = np.minimum(sizes, n)
            bounds = np.zeros(nq + 1, dtype=np.int64)
            np.cumsum(sizes, out=bounds[1:])
        return cand_rows[order], scores[order], bounds.tolist()


class ExactScorer(_Ranker):
    """Scores bag-of-words queries on the sidecar exactly as Lucene + Anserini would.

    By default it scores with the sidecar's own statistics; :meth:`use_global_stats` makes it
    score one shard of a larger collection with that collection's statistics instead.

    Args:
        folder: The sidecar folder written by :class:`SidecarWriter`.
    """

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        self.folder = folder
        self.meta: dict[str, Any] = json.loads((folder / "meta.json").read_text(encoding="utf-8"))

        fmt = self.meta.get("format")
        if fmt not in READABLE_FORMATS:
            raise ValueError(
                f"sidecar format {fmt!r} is not one this Spacerini reads ({', '.join(map(str, READABLE_FORMATS))}): "
                "rebuild the bundle with this version, or upgrade Spacerini"
            )
        self.offsets = _load_wide(folder / "post_offsets.npy")
        self.docs = _load(folder / "post_docs.npy")
        self.tfs = _load(folder / "post_tfs.npy")
        if fmt >= 3:
            self.tf_exc_pos = _load(folder / "post_tf_exc_pos.npy")
            self.tf_exc = _load(folder / "post_tf_exc.npy")
            self.tf_escape = TF_ESCAPE
        else:  # int32 tfs, no exceptions (post_x and post_s1 are what the cache gives anyway)
            self.tf_exc_pos = np.zeros(0, dtype=np.int64)
            self.tf_exc = np.zeros(0, dtype=np.int32)
            self.tf_escape = -1
        self.norms = _load(folder / "norms.npy")
        self.cache = norm_cache(
            float(self.meta["k1"]),
            float(self.meta["b"]),
            avg_field_length(int(self.meta["sum_total_term_freq"]), int(self.meta["doc_count"])),
        )
        self.idf = _load(folder / "terms_idf.npy")
        self.id_rank = _load(folder / "id_rank.npy")
        self._hashes = _load(folder / "terms_hash.npy")
        self._hash_ids = _load(folder / "terms_hash_ids.npy")
        self._terms = _Blob(folder, "terms")
        self._ids = _Blob(folder, "ids")
        self._id_list: np.ndarray | None = None  # object array of str
        self._id_lock = threading.Lock()
        self._term_cache: dict[str, int] = {}
        self.rows = int(self.meta["rows"])
        self.doc_count = int(self.meta["doc_count"])
        self._span_cache: dict[str, tuple[_Span, ...]] = {}
        self._blocks: tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray] | None = None
        self._s1: np.ndarray | None = None
        self._range_lock = threading.Lock()
        self._buffers: list[tuple[np.ndarray, np.ndarray]] = []  # see _take_buffers

    def _take_buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """A zeroed per-row accumulator and scratch array for one kernel call (reused: a query's
        cost stays that of its postings, not of clearing a corpus-sized array)."""
        with self._range_lock:
            if self._buffers:
                return self._buffers.pop()
        # One more scratch slot than rows: the kernel stores each posting's row before it knows
        # whether the row is new (no branch), so it may write one past the last new row.
        return np.zeros(self.rows, dtype=np.float64), np.empty(self.rows + 1, dtype=np.int32)

    def _give_buffers(self, buffers: tuple[np.ndarray, np.ndarray]) -> None:
        with self._range_lock:
            self._buffers.append(buffers)

    def block_table(self) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
        """The block-max table of the compiled kernel (see :func:`~spacerini.backends.bm25.kernel.block_table`).

        Computed at the first search, in one pass over the postings, and kept in memory: per
        block of ``2**BLOCK_BITS`` postings of a term, its largest ``x`` (float32), plus where each
        term's blocks start (int64). Recomputed after :meth:`use_global_stats` changes ``x``; not
        stored (it depends on the collection statistics a shard scores with).

        Returns:
            ``(block_offsets, block_max_x, bits, term_min_x, term_max_x)``.
        """
        table = self._blocks
        if table is None:
            with self._range_lock:
                if self._blocks is None:
                    kernel = _kernel()
                    if kernel is None:
                        raise RuntimeError("the block table needs numba")
                    bits = BLOCK_BITS
                    started = time.perf_counter()
                    arrays = kernel.block_table(_read_only(self.offsets), *self._tf_postings(), bits)
                    for array in arrays:
                        array.flags.writeable = False
                    self._blocks = (arrays[0], arrays[1], bits, arrays[2], arrays[3])
                    logger.debug(
                        "bm25: block table of %s in %.3f s (%d blocks)", self.folder, time.perf_counter() - started,
                        arrays[1].size,
                    )  # fmt: skip
                table = self._blocks
        return table

    def _tf_postings(self) -> tuple[Any, ...]:
        """``(docs, tfs, exc_pos, exc_tf, escape, norms, cache)``: what a score is computed from."""
        return (
            _read_only(self.docs), _read_only(self.tfs), _read_only(self.tf_exc_pos), _read_only(self.tf_exc),
            self.tf_escape, _read_only(self.norms), _read_only(self.cache),
        )  # fmt: skip

    def kernel_postings(self) -> tuple[Any, ...]:
        """``(docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache)``: what the kernel ranks from."""
        docs, *rest = self._tf_postings()
        return (docs, self.scores_once(), *rest)

    def scores_once(self) -> np.ndarray:
        """Every posting's score for a term that occurs once in a query (``idf - idf / (1 + x)``,
        float32), computed at the first search and kept in memory (4 bytes per posting).

        The sidecar stores tfs and norm bytes only (5 bytes per posting on disk); computing a
        score from them costs a division and two dependent loads per posting, about 4x the cost
        of reading it (measured on 100k Debian paragraphs: 170 vs 33 us per query at k=10), so
        the common case (every query term once) reads these. Recomputed after
        :meth:`use_global_stats` changes the statistics.
        """
        s1 = self._s1
        if s1 is None:
            with self._range_lock:
                if self._s1 is None:
                    kernel = _kernel()
                    started = time.perf_counter()
                    if kernel is not None:
                        s1 = kernel.scores_once(_read_only(self.offsets), _read_only(self.idf), *self._tf_postings())
                    else:
                        s1 = np.concatenate(
                            [np.zeros(0, np.float32)]
                            + [
                                self.term_scores(t, int(self.offsets[t]), int(self.offsets[t + 1]), 1)
                                for t in range(len(self.offsets) - 1)
                            ]
                        )
                    s1.flags.writeable = False
                    self._s1 = s1
                    logger.debug("bm25: scores of %s in %.3f s", self.folder, time.perf_counter() - started)
                s1 = self._s1
        return s1

    def x_of(self, start: int, end: int) -> np.ndarray:
        """``tf * cache[norm]`` (float32) of postings ``start..end``: Lucene's ``freq * cache[norm]``."""
        tfs = decode_tfs(self.tfs[start:end], start, self.tf_exc_pos, self.tf_exc, self.tf_escape)
        return (tfs.astype(np.float32) * self.cache[self.norms[self.docs[start:end]]]).astype(np.float32)

    def term_scores(self, tid: int, start: int, end: int, count: int) -> np.ndarray:
        """Lucene's float32 ``weight - weight / (1 + x)`` of postings ``start..end`` of term ``tid``
        occurring ``count`` times in the query (``weight = count * idf``)."""
        weight = _F32(count) * self.idf[tid]
        return (weight - weight / (_ONE + self.x_of(start, end))).astype(np.float32)

    # -- global statistics (shards) -------------------------------------------------------------
    def vocabulary(self) -> Vocabulary:
        """This sidecar's vocabulary and document frequencies (read from its files, mmapped)."""
        blob = self._terms.blob
        return Vocabulary(
            hashes=self._hashes,
            hash_ids=self._hash_ids,
            doc_freqs=np.diff(self.offsets),
            blob=blob if isinstance(blob, np.ndarray) else np.zeros(0, dtype=np.uint8),
            offsets=self._terms.offsets,
        )

    def use_global_stats(
        self,
        *,
        doc_count: int,
        sum_total_term_freq: int,
        doc_freqs: np.ndarray,
        log: Callable[[float], float] = math.log,
    ) -> bool:
        """Scores from now on with a whole collection's statistics, this sidecar being one shard.

        Lucene's BM25 reads three collection statistics: ``docCount`` and ``sumTotalTermFreq``
        (through avgdl, in the 256-entry norm cache) and each term's ``docFreq`` (in idf). A shard's
        document lengths, norms and term frequencies are its own whatever the split, so with the
        collection's statistics every per-term score is the float32 a single index computes: the
        256-entry norm cache is recomputed with the collection's avgdl and ``terms_idf`` with its
        document frequencies (in memory; the files stay as built, the postings memory-mapped).

        Args:
            doc_count: Documents with at least one term, in the whole collection.
            sum_total_term_freq: Terms in the whole collection.
            doc_freqs: The collection's document frequency of each of this sidecar's terms, in
                vocabulary order (see :func:`merge_doc_freqs`).
            log: The natural logarithm for idf (Java's ``Math.log`` for bit-exact scores).

        Returns:
            Whether the cache or the idfs changed (``False`` when the statistics are this
            sidecar's own).
        """
        doc_freqs = np.asarray(doc_freqs, dtype=np.int64)
        local_dfs = np.diff(self.offsets)
        if doc_freqs.shape != local_dfs.shape:
            raise ValueError(f"{doc_freqs.size} document frequencies for {local_dfs.size} terms")
        k1, b = float(self.meta["k1"]), float(self.meta["b"])
        cache = norm_cache(k1, b, avg_field_length(sum_total_term_freq, doc_count))
        unique_dfs = np.unique(doc_freqs)
        idf_of = np.array(
            [
                np.float32(log(1.0 + (doc_count - int(df) + 0.5) / (int(df) + 0.5)))
                for df in unique_dfs.tolist()
            ],
            dtype=np.float32,
        )
        term_idf = (
            idf_of[np.searchsorted(unique_dfs, doc_freqs)]
            if doc_freqs.size
            else np.zeros(0, dtype=np.float32)
        )
        self.doc_count = int(doc_count)
        if np.array_equal(cache, self.cache) and np.array_equal(term_idf, self.idf):
            return False
        if not np.array_equal(cache, self.cache):
            self._blocks = None  # its bounds were computed with the old cache
        self.cache, self.idf = cache, term_idf
        self._s1 = None
        return True

    # -- lookups ----------------------------------------------------------------------------------
    #: Term ids are cached for this many distinct terms (the cache is emptied when full; sized
    #: as :attr:`SPAN_CACHE`, so that RSS stays flat under queries with new terms).
    TERM_CACHE = 16_384

    def term_id(self, term: str) -> int:
        """Returns the id of ``term`` in the vocabulary, or -1."""
        tid = self._term_cache.get(term)
        if tid is None:
            tid = self._lookup(term)
            if len(self._term_cache) >= self.TERM_CACHE:
                self._term_cache.clear()  # a race here only costs a lookup: dict ops are atomic
            self._term_cache[term] = tid
        return tid

    def _lookup(self, term: str) -> int:
        key = term.encode("utf-8", "surrogatepass")
        h = np.uint64(term_hash(key))
        hashes = self._hashes
        i = int(np.searchsorted(hashes, h))
        while i < hashes.size and hashes[i] == h:
            tid = int(self._hash_ids[i])
            if self._terms[tid] == key:
                return tid
            i += 1
        return -1

    def _find_spans(self, term: str) -> tuple[_Span, ...]:
        tid = self.term_id(term)
        if tid < 0:
            return ()
        return ((self, 0, tid, int(self.offsets[tid]), int(self.offsets[tid + 1])),)

    def doc_freq(self, term: str) -> int:
        """Returns the number of rows containing ``term``."""
        tid = self.term_id(term)
        return 0 if tid < 0 else int(self.offsets[tid + 1] - self.offsets[tid])

    #: Up to this many rows, all ids are decoded once into a list (fast hits for large k).
    ID_CACHE_ROWS = 2_000_000

    def docid(self, row: int) -> str:
        """Returns the collection id of ``row``."""
        return self._ids[row].decode("utf-8", "surrogatepass")

    def docids(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """Returns the collection ids of ``rows``."""
        if self._id_list is None and self.rows <= self.ID_CACHE_ROWS:
            with self._id_lock:
                if self._id_list is None:
                    ids = np.empty(self.rows, dtype=object)
                    ids[:] = [self.docid(i) for i in range(self.rows)]
                    self._id_list = ids
        if self._id_list is not None:
            return self._id_list[np.asarray(rows, dtype=np.int64)].tolist()
        return [self.docid(int(r)) for r in rows]

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, term_counts: Iterable[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Scores every matching row.

        Args:
            term_counts: (analyzed term, occurrences in the analyzed query) pairs, distinct terms.

        Returns:
            (rows, float32 scores) of the rows that match at least one term, rows ascending.
        """
        found: list[tuple[int, int, int, int]] = []
        for term, count in term_counts:
            tid = self.term_id(term)
            if tid >= 0:
                found.append((int(self.offsets[tid]), int(self.offsets[tid + 1]), count, tid))
        if not found:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)

        def term_scores(start: int, end: int, count: int, tid: int) -> np.ndarray:
            return self.term_scores(tid, start, end, count)

        if len(found) == 1:
            start, end, count, tid = found[0]
            return self.docs[start:end], np.asarray(term_scores(start, end, count, tid), dtype=np.float32)
        total = sum(end - start for start, end, _, _ in found)
        if total * 8 >= self.rows:
            # Dense: Lucene sums a document's term scores in double; the sum is exact, so order is free.
            acc = np.zeros(self.rows, dtype=np.float64)
            for start, end, count, tid in found:
                acc[self.docs[start:end]] += term_scores(start, end, count, tid)
            rows = np.flatnonzero(acc)  # every term score is > 0: the matches are the non-zeros
            return rows.astype(np.int32), acc[rows].astype(np.float32)
        docs = np.concatenate([self.docs[start:end] for start, end, _, _ in found])
        scores = np.concatenate([term_scores(*f) for f in found])
        rows, inverse = np.unique(docs, return_inverse=True)
        acc = np.bincount(inverse, weights=scores, minlength=rows.size)
        return rows.astype(np.int32), acc.astype(np.float32)

    def top(self, rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns the best ``n`` (rows, tie-adjusted float32 scores) in Anserini's order.

        The order is raw score descending, then collection id ascending (byte order); the scores
        returned are those of :func:`adjust_ties`.
        """
        if n <= 0 or rows.size == 0:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        if rows.size > n:
            # Keep everything tied with the n-th best score so ids can break the tie.
            kth = np.partition(scores, rows.size - n)[rows.size - n]
            keep = scores >= kth
            rows, scores = rows[keep], scores[keep]
        order = np.lexsort((self.id_rank[rows], -scores))[:n]
        return rows[order], adjust_ties(scores[order])


class ShardedScorer(_Ranker):
    """Ranks over several sidecars (shards) as one index whose rows are theirs, shard after shard.

    Each shard must already score with the collection's statistics
    (:meth:`ExactScorer.use_global_stats`). A batch then gathers every query term's postings from
    every shard (rows offset by the shard's first row) and ranks them in the same numpy
    operations as one sidecar does, with ties broken by each id's rank among all shards' ids: so
    the hits, their order and their scores are those of one index over all the documents. The
    shards hold no document in common: their per-document sums never mix.

    Args:
        shards: The shards' scorers, in row order.

    Raises:
        ValueError: There is no shard, too many rows, or two shards hold the same collection id.
    """

    #: Batch scoring accumulates at most this many (query, row) cells densely at once.
    DENSE_CELLS = ExactScorer.DENSE_CELLS
    #: A batch is scored densely when its postings times this cover all its (query, row) cells.
    DENSE_RATIO = ExactScorer.DENSE_RATIO

    def __init__(self, shards: Sequence[ExactScorer]) -> None:
        if not shards:
            raise ValueError("no shards")
        self.shards = list(shards)
        sizes = np.array([s.rows for s in self.shards], dtype=np.int64)
        self.bases = np.zeros(len(self.shards) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.bases[1:])
        self.rows = int(self.bases[-1])
        if self.rows >= 2**31:
            raise ValueError(f"{self.rows:,} rows: ranks and rows are int32")
        self.doc_count = int(sum(s.doc_count for s in self.shards))
        self._span_cache: dict[str, tuple[_Span, ...]] = {}
        self._ids, self.id_rank = _global_id_ranks(self.shards)

    def _find_spans(self, term: str) -> tuple[_Span, ...]:
        return tuple(
            (shard, base, tid, start, end)
            for shard, base in zip(self.shards, self.bases[:-1].tolist(), strict=True)
            for _, _, tid, start, end in shard._spans(term)
        )

    def docids(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """Returns the collection ids of ``rows`` (numbered across the shards)."""
        return self._ids[np.asarray(rows, dtype=np.int64)].tolist()


def _global_id_ranks(shards: Sequence[ExactScorer]) -> tuple[np.ndarray, np.ndarray]:
    """All shards' ids (object array, shard after shard) and each one's rank in byte order.

    Lucene breaks ties by the id's ``BytesRef`` (UTF-8 bytes, unsigned); Python orders ``str`` by
    code point, which is the same order (surrogates included, as ``surrogatepass`` encodes them).
    Each shard's ids come sorted by its own ``id_rank``, so the concatenation is one sorted run
    per shard, which Python's sort merges.

    Raises:
        ValueError: Two shards hold the same id.
    """
    runs: list[str] = []
    where: list[np.ndarray] = []
    id_lists: list[np.ndarray] = []
    base = 0
    for shard in shards:
        ids = np.empty(shard.rows, dtype=object)
        ids[:] = [shard.docid(i) for i in range(shard.rows)]
        id_lists.append(ids)
        by_id = np.argsort(shard.id_rank, kind="stable")
        runs.extend(ids[by_id].tolist())
        where.append(by_id.astype(np.int64) + base)
        base += shard.rows
    order = sorted(range(len(runs)), key=runs.__getitem__)
    for i, j in zip(order, order[1:], strict=False):
        if runs[i] == runs[j]:
            raise ValueError(f"document id {runs[i]!r} is in two shards")
    rank = np.empty(base, dtype=np.int32)
    if base:
        rank[np.concatenate(where)[np.asarray(order, dtype=np.int64)]] = np.arange(base, dtype=np.int32)
    return np.concatenate(id_lists), rank
