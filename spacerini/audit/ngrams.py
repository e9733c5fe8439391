"""Exact word n-gram counts (n = 1, 2, 3) over a stream of document batches, compiled.

Tokens are maximal runs of word bytes: ASCII letters, digits, ``_`` and every non-ASCII byte
(so a run of non-ASCII letters is one token), the tokens of :mod:`spacerini.preprocess.dedup`.
Case is kept; punctuation and white space only separate tokens; an n-gram never spans two
documents. On the decoded text, ``re.findall(r"[A-Za-z0-9_\\u0080-\\U0010ffff]+", text)`` gives
the same tokens, and a ``collections.Counter`` over them the same counts.

How it counts: a batch arrives as one UTF-8 buffer with Arrow's offsets, and one compiled pass
(:mod:`spacerini.audit.ngram_kernel`, numba) walks its bytes once, finding and hashing each
token. Each token is then looked up by its bytes in a vocabulary hash table (ids in order of
first occurrence), the row of a later token prefetched; its unigram count is incremented. The
bigrams and trigrams are then counted in two hash tables keyed by the token ids themselves (a bigram by two 32-bit ids packed in 64 bits, a trigram by that and the third
id), so keys are the n-grams, not hashes of them, and counts are exact. Each table is split
into buckets of at most 1 MiB by the top bits of the key's hash, and a batch's n-grams are
grouped by bucket before they are counted, so that the table's random accesses stay in the
processor's cache one bucket at a time: at 38 MB of text this made counting 1.7x faster than
one flat table, whose probes each missed the cache. Every entry keeps the position of its first
occurrence: ties are ordered by first occurrence, as ``Counter.most_common`` orders them, and
the top ``k`` are picked in one compiled pass over a table (a heap of ``k``). With ``threads=2``
the bigrams are counted on a second thread while the trigrams are counted on the calling one
(the compiled loops release the GIL).

Memory: the vocabulary (its bytes plus 64 to 128 bytes per distinct token), and 43 to 128 bytes
per distinct bigram and trigram (32-byte rows in tables kept between a quarter and three
quarters full); the Arrow/pandas counter this replaced took 24 bytes per distinct n-gram.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: Byte classes of a token (see the module docstring).
WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_":
    WORD_BYTE[_c] = True
WORD_BYTE[0x80:] = True
#: The same tokens, on text.
WORD = re.compile(r"[A-Za-z0-9_\u0080-\U0010ffff]+")

#: Batches of fewer tokens count their bigrams and trigrams on one thread.
_THREADED_TOKENS = 1 << 14
#: Initial table sizes (powers of two; they double as needed).
_INITIAL = 1 << 14
_EMPTY = -1


@dataclass(frozen=True, slots=True)
class NgramCount:
    """One of the commonest n-grams.

    Attributes:
        ngram: Its tokens joined with one space.
        count: Occurrences in the corpus.
    """

    ngram: str
    count: int


def token_bounds(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finds the tokens of a batch.

    Args:
        data: The batch's UTF-8 bytes (uint8).
        offsets: ``docs + 1`` int64 offsets: document ``i`` is ``data[offsets[i]:offsets[i+1]]``.

    Returns:
        ``(mask, starts, ends)``: which bytes are word bytes, and each token's byte span.
    """
    size = int(data.size)
    mask = WORD_BYTE[data]
    if size == 0:
        empty = np.empty(0, dtype=np.int64)
        return mask, empty, empty
    edges = np.diff(mask.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    # A document that ends in a word byte followed by one that starts with one: split the token.
    inner = np.asarray(offsets[1:-1], dtype=np.int64)
    inner = inner[(inner > 0) & (inner < size)]
    cut = inner[mask[inner - 1] & mask[inner]] if inner.size else inner
    if cut.size:
        cut = np.unique(cut)  # neither a start nor an end yet: insert both, in order, in O(n)
        starts = np.insert(starts, np.searchsorted(starts, cut), cut)
        ends = np.insert(ends, np.searchsorted(ends, cut), cut)
    return mask, starts, ends


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` copied into a new array of at least ``size`` elements (at least doubled)."""
    out = np.empty(max(size, 2 * array.size), dtype=array.dtype)
    out[: array.size] = array
    return out


def _table(rows: int) -> np.ndarray:
    return np.zeros((rows, 4), dtype=np.uint64)


def _room(table: np.ndarray, entries: int) -> np.ndarray:
    """The vocabulary ``table``, or a larger copy (rehashed) in which ``entries`` rows keep it at
    most half full."""
    from spacerini.audit.ngram_kernel import rehash

    if 2 * entries <= table.shape[0]:
        return table
    rows = max(2 * table.shape[0], 1 << int(2 * entries - 1).bit_length())  # a power of two
    new = _table(rows)
    rehash(table, new)
    return new


#: Load an n-gram table may reach with every n-gram of the next batch new (each bucket stops
#: the pass at three quarters). Two thirds rather than a half: on the 20 MB audit corpus the
#: bigram table stays at 2**21 rows instead of 2**22, and the system time of first touching
#: fresh pages (slow on this VM) fell from 0.30-0.45 s to 0.07-0.25 s in an A/B under load;
#: probing a fuller bucket costs little, since a bucket is in the L2 cache.
_FILL = 2 / 3
#: Rows per bucket of an n-gram table, at most: 32 B rows, so a bucket fits in 1 MiB of L2 cache.
_BUCKET_ROWS = 1 << 15


class _Grams:
    """One n-gram table of :mod:`~spacerini.audit.ngram_kernel`: ``2**bits`` buckets of ``rows`` rows."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rows = _INITIAL
        self.bits = 0
        self.table = _table(self.rows)
        self.used = np.zeros(1, dtype=np.int64)
        self._keys = np.empty((0, 3), dtype=np.uint64)  # a batch's regrouped keys (reused)

    @property
    def entries(self) -> int:
        return int(self.used.sum())

    def _grow(self, adding: int) -> None:
        """Doubles the rows per bucket (up to ``_BUCKET_ROWS``), then the buckets, so that
        ``adding`` more entries spread evenly leave the table at most ``_FILL`` full (a bucket that
        would still fill past three quarters triggers another growth). The table grows in place
        (``ndarray.resize``: a large one is remapped, not copied) and each doubling moves the
        entries within it, so no second table is touched."""
        from spacerini.audit.ngram_kernel import split_in_place

        need = self.entries + adding
        grown = False
        while not grown or need > _FILL * (self.rows << self.bits):
            rows, bits = (
                (self.rows * 2, self.bits) if self.rows < _BUCKET_ROWS else (self.rows, self.bits + 1)
            )
            self.table.resize((rows << bits, 4), refcheck=False)  # the table is never viewed elsewhere
            used = np.zeros(1 << bits, dtype=np.int64)
            split_in_place(self.table, self.rows, self.bits, rows, bits, used)
            self.rows, self.bits, self.used = rows, bits, used
            grown = True

    def add(self, gid: np.ndarray, doc: np.ndarray, first: int, grams: int) -> None:
        """Counts the batch's ``grams`` n-grams (``first``: the position of its first token in the stream)."""
        from spacerini.audit.ngram_kernel import count_grams, count_keys

        if self.entries + grams > _FILL * (self.rows << self.bits):
            self._grow(grams)  # room for every n-gram of the batch being new
        if self._keys.shape[0] < grams:
            self._keys = np.empty((max(grams, 2 * self._keys.shape[0]), 3), dtype=np.uint64)
        done, m = count_grams(
            gid, doc, self.n, first, self.table, self.rows, self.bits, self.used, self._keys
        )
        if done < 0 or m != grams:
            raise RuntimeError(f"{m} {self.n}-grams in the batch, not {grams}")  # a bug, not bad input
        keys = self._keys[:m]
        while done < keys.shape[0]:
            keys = keys[done:]
            self._grow(keys.shape[0])
            done, keys = count_keys(keys, self.table, self.rows, self.bits, self.used)


class NgramCounter:
    """Counts word unigrams, bigrams and trigrams exactly over batches of documents.

    Example:
        >>> import numpy as np
        >>> counter = NgramCounter()
        >>> counter.add(np.frombuffer(b"a b a b", dtype=np.uint8), np.array([0, 7])).tolist()
        [4]
        >>> counter.top(1)[2]
        [NgramCount(ngram='a b', count=2)]
    """

    def __init__(self, *, count: bool = True, threads: int = 1) -> None:
        #: Whether n-grams are counted (False: only tokens are numbered, for :attr:`last`).
        self.count = count
        #: 2: bigrams are counted on a second thread while this one counts trigrams (the compiled
        #: loops release the GIL); 1 (the default): one thread. On the shared 2-core machine two
        #: threads were not faster (load 6-13), so they are an option, measured by
        #: ``benchmarks/audit_bench.py``, not the default.
        self.threads = max(1, min(2, int(threads)))
        self._pool: ThreadPoolExecutor | None = None
        #: ``(token ids, document of each token)`` of the latest batch.
        self.last: tuple[np.ndarray, np.ndarray] = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        self._vocab = _table(_INITIAL)
        self._vstart = np.empty(_INITIAL // 2, dtype=np.int64)
        self._vlen = np.empty(_INITIAL // 2, dtype=np.int64)
        self._arena = np.empty(1 << 16, dtype=np.uint8)
        self._vused = np.zeros(2, dtype=np.int64)  # vocabulary size, arena bytes used
        # Each token of a batch: start, length, hash and first 8 bytes (ngram_kernel.scan_tokens).
        self._spans = np.empty((4, 0), dtype=np.int64)
        self._bigrams = _Grams(2)
        self._trigrams = _Grams(3)
        self._words: list[str] = []
        self.tokens_seen = 0
        self.totals = {1: 0, 2: 0, 3: 0}

    @property
    def words(self) -> list[str]:
        """Every distinct token, by id (decoded on demand)."""
        n = int(self._vused[0])
        if len(self._words) < n:
            arena, start, length = self._arena, self._vstart, self._vlen
            for i in range(len(self._words), n):
                raw = arena[start[i] : start[i] + length[i]].tobytes()
                self._words.append(raw.decode("utf-8", "surrogatepass"))
        return self._words

    def _grow(self, left: int) -> None:
        """Doubles whatever table the pass stopped for (``left``: bytes of the batch not yet read)."""
        n = int(self._vused[0])
        if n + 1 > self._vstart.size:
            self._vstart = _grown(self._vstart, n + 1)
            self._vlen = _grown(self._vlen, n + 1)
        self._vocab = _room(self._vocab, n + 1)
        if int(self._vused[1]) + left > self._arena.size:
            self._arena = _grown(self._arena, int(self._vused[1]) + left)

    def add(self, data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Counts the n-grams of one batch.

        Args:
            data: The batch's UTF-8 bytes (uint8).
            offsets: ``docs + 1`` offsets into ``data`` (Arrow's layout), starting at 0.

        Returns:
            The number of tokens of each document of the batch.
        """
        from spacerini.audit.ngram_kernel import number_tokens, scan_tokens

        data = np.ascontiguousarray(data, dtype=np.uint8)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        docs = len(offsets) - 1
        most = (int(data.size) + 1) // 2 + docs  # tokens: separated by a byte or a document boundary
        if self._spans.shape[1] < most:  # reused from batch to batch: no fresh pages per batch
            self._spans = np.empty((4, max(most, 2 * self._spans.shape[1])), dtype=np.int64)
        tstart, tlen = self._spans[0], self._spans[1]
        thash, tprefix = self._spans[2].view(np.uint64), self._spans[3].view(np.uint64)
        doc = np.empty(most, dtype=np.int64)  # fresh: ``last`` is read by MinHash on another thread
        per_doc = np.zeros(docs, dtype=np.int64)
        m = scan_tokens(
            data, offsets[:-1], offsets[1:], WORD_BYTE, tstart, tlen, thash, tprefix, doc, per_doc
        )
        tstart, tlen, thash, tprefix = tstart[:m], tlen[:m], thash[:m], tprefix[:m]
        gid = np.empty(m, dtype=np.int64)
        done = 0
        while True:
            done = number_tokens(
                data, tstart, tlen, thash, tprefix, done,
                self._vocab, self._vstart, self._vlen, self._arena, self._vused, self.count, gid,
            )  # fmt: skip
            if done >= m:
                break
            self._grow(int(data.size - tstart[done]))
        doc = doc[:m]
        self.last = (gid, doc)
        self.tokens_seen += m
        if self.count:
            first = self.tokens_seen - m
            bi = int(np.maximum(per_doc - 1, 0).sum())
            tri = int(np.maximum(per_doc - 2, 0).sum())
            if self.threads > 1 and m > _THREADED_TOKENS:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacerini-ngrams")
                    weakref.finalize(self, self._pool.shutdown, wait=False)
                bigrams = self._pool.submit(self._bigrams.add, gid, doc, first, bi)
                try:
                    self._trigrams.add(gid, doc, first, tri)
                finally:
                    bigrams.result()
            else:
                self._bigrams.add(gid, doc, first, bi)
                self._trigrams.add(gid, doc, first, tri)
            self.totals[1] += m
            self.totals[2] += bi
            self.totals[3] += tri
        return per_doc

    def distinct(self) -> dict[int, int]:
        """Distinct n-grams per n (call after the last :meth:`add`)."""
        return {1: int(self._vused[0]), 2: self._bigrams.entries, 3: self._trigrams.entries}

    def _word(self, i: int) -> str:
        start = int(self._vstart[i])
        return self._arena[start : start + int(self._vlen[i])].tobytes().decode("utf-8", "surrogatepass")

    def _names(self, ids: Iterable[int]) -> str:
        return " ".join(self._word(i) for i in ids)

    def top(self, k: int) -> dict[int, list[NgramCount]]:
        """The ``k`` commonest n-grams of each n, commonest first, ties in order of first occurrence."""
        from spacerini.audit.ngram_kernel import top_rows

        out: dict[int, list[NgramCount]] = {1: [], 2: [], 3: []}
        if not self.count:
            return out
        vocab = self._vocab
        out[1] = [
            NgramCount(self._word(int(vocab[r, 1]) - 1), int(vocab[r, 3]))
            for r in top_rows(vocab, 1, k).tolist()
        ]
        low = (1 << 32) - 1
        for n, grams in ((2, self._bigrams), (3, self._trigrams)):
            table = grams.table
            found = []
            for r in top_rows(table, 2, k).tolist():
                a, b = int(table[r, 0]), int(table[r, 1])
                ids = (a >> 32, a & low) if n == 2 else (a >> 32, a & low, b)
                found.append(NgramCount(self._names(ids), int(table[r, 3])))
            out[n] = found
        return out


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (an avalanching bijection), element-wise, wrapping."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xC4CEB9FE1A85EC53)
        return h ^ (h >> np.uint64(33))
