"""Exact word n-gram counts (n = 1, 2, 3) over a stream of document batches, vectorised.

Tokens are maximal runs of word bytes: ASCII letters, digits, ``_`` and every non-ASCII byte
(so a run of non-ASCII letters is one token), the tokens of :mod:`spacerini.preprocess.dedup`.
Case is kept; punctuation and white space only separate tokens; an n-gram never spans two
documents. On the decoded text, ``re.findall(r"[A-Za-z0-9_\\u0080-\\U0010ffff]+", text)`` gives
the same tokens, and a ``collections.Counter`` over them the same counts.

How it counts, with no Python loop per token: a batch arrives as one UTF-8 buffer with Arrow's
offsets. numpy finds the token boundaries, packs the word bytes into an Arrow string array of
tokens (no copy of a token), and Arrow's dictionary encoding numbers them; each batch's distinct
tokens get global ids (in order of first occurrence) from one dict. Unigrams are counted with
``bincount``; bigram keys pack two ids into 64 bits, trigram keys three 21-bit ids, so keys are
the n-grams themselves, not hashes, and counts are exact. Each batch's keys are reduced (in a hash
table) to ``(key, count, first occurrence)`` runs that merge as they grow. Trigrams with a token id
beyond 2**21 (after two million distinct tokens) are counted in a plain dict instead.

Ties are ordered by first occurrence, as ``Counter.most_common`` orders them.

Memory: the vocabulary, plus 24 bytes per distinct bigram and trigram.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: Byte classes of a token (see the module docstring).
WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_":
    WORD_BYTE[_c] = True
WORD_BYTE[0x80:] = True
#: The same tokens, on text.
WORD = re.compile(r"[A-Za-z0-9_\u0080-\U0010ffff]+")

#: Bits per token id in a packed trigram key.
ID_BITS = 21
_ID_LIMIT = 1 << ID_BITS
#: Keys buffered before they are sorted into a run.
_FLUSH = 4_000_000


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


@dataclass(frozen=True, slots=True)
class _Run:
    keys: np.ndarray  # unique uint64 keys (in no particular order)
    counts: np.ndarray  # int64
    first: np.ndarray  # int64 global token index of the first occurrence


def _reduce(keys: np.ndarray, counts: np.ndarray | None, first: np.ndarray) -> _Run:
    """Sums the counts of equal keys and keeps their first occurrence (a hash table: pandas'
    ``factorize``, two to four times faster than sorting here)."""
    import pandas as pd

    codes, uniques = pd.factorize(keys)
    summed = np.bincount(codes) if counts is None else np.bincount(codes, weights=counts).astype(np.int64)
    firsts = np.full(len(uniques), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(firsts, codes, first)
    return _Run(np.asarray(uniques, dtype=np.uint64), summed.astype(np.int64), firsts)


class _Table:
    """Exact counts of packed n-gram keys: sorted runs, merged as they grow (a small LSM tree)."""

    def __init__(self) -> None:
        self.runs: list[_Run] = []
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, keys: np.ndarray, first: np.ndarray) -> None:
        self._pending.append((keys, first))
        self._pending_size += keys.size
        if self._pending_size >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([p[0] for p in self._pending])
        first = np.concatenate([p[1] for p in self._pending])
        self._pending, self._pending_size = [], 0
        self.runs.append(_reduce(keys, None, first))
        while len(self.runs) > 1 and self.runs[-2].keys.size <= 2 * self.runs[-1].keys.size:
            b, a = self.runs.pop(), self.runs.pop()
            self.runs.append(self._merge(a, b))

    @staticmethod
    def _merge(a: _Run, b: _Run) -> _Run:
        return _reduce(
            np.concatenate((a.keys, b.keys)),
            np.concatenate((a.counts, b.counts)),
            np.concatenate((a.first, b.first)),
        )

    def final(self) -> _Run:
        self.flush()
        while len(self.runs) > 1:
            b, a = self.runs.pop(), self.runs.pop()
            self.runs.append(self._merge(a, b))
        if not self.runs:
            e = np.empty(0, dtype=np.int64)
            return _Run(e.astype(np.uint64), e, e)
        return self.runs[0]


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

    def __init__(self, *, count: bool = True) -> None:
        #: Whether n-grams are counted (False: only tokens are numbered, for :attr:`last`).
        self.count = count
        #: ``(token ids, document of each token)`` of the latest batch.
        self.last: tuple[np.ndarray, np.ndarray] = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        self.vocab: dict[bytes, int] = {}
        self.words: list[str] = []
        self._unigrams = np.zeros(1024, dtype=np.int64)
        self._bigrams = _Table()
        self._trigrams = _Table()
        self._overflow: dict[tuple[int, int, int], list[int]] = {}
        self.tokens_seen = 0
        self.totals = {1: 0, 2: 0, 3: 0}

    def add(self, data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Counts the n-grams of one batch.

        Args:
            data: The batch's UTF-8 bytes (uint8).
            offsets: ``docs + 1`` offsets into ``data`` (Arrow's layout), starting at 0.

        Returns:
            The number of tokens of each document of the batch.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        docs = len(offsets) - 1
        mask, starts, ends = token_bounds(data, offsets)
        m = int(starts.size)
        if m == 0:
            self.last = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
            return np.zeros(docs, dtype=np.int64)
        # Word bytes packed together: the tokens become contiguous, an Arrow string array as is.
        tok_offsets = np.empty(m + 1, dtype=np.int64)
        tok_offsets[0] = 0
        np.cumsum(ends - starts, out=tok_offsets[1:])
        packed = data[mask]
        # Binary, not string: a lone surrogate (stored with "surrogatepass") is not valid UTF-8.
        tokens = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), m, [None, pa.py_buffer(tok_offsets), pa.py_buffer(packed)]
        )
        encoded = pc.dictionary_encode(tokens)
        local = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        vocab, words = self.vocab, self.words
        ids = np.empty(len(encoded.dictionary), dtype=np.int64)
        # Keyed by the UTF-8 bytes: only a new token is decoded.
        for i, raw in enumerate(encoded.dictionary.to_pylist()):
            found = vocab.get(raw)
            if found is None:
                found = vocab[raw] = len(words)
                words.append(raw.decode("utf-8", "surrogatepass"))
            ids[i] = found
        gid = ids[local]
        doc = np.searchsorted(offsets, starts, side="right") - 1
        self.last = (gid, doc)
        if not self.count:
            self.tokens_seen += m
            return np.bincount(doc, minlength=docs)
        if len(words) > self._unigrams.size:
            grown = np.zeros(max(len(words), 2 * self._unigrams.size), dtype=np.int64)
            grown[: self._unigrams.size] = self._unigrams
            self._unigrams = grown
        self._unigrams[: len(words)] += np.bincount(gid, minlength=len(words))
        self.totals[1] += m
        base = self.tokens_seen
        u = gid.astype(np.uint64)
        # Keys over contiguous slices; the few n-grams that span two documents are dropped after.
        if m >= 2:
            keys = (u[:-1] << np.uint64(32)) | u[1:]
            first = np.arange(base, base + m - 1, dtype=np.int64)
            same = doc[:-1] == doc[1:]
            if not same.all():
                keys, first = keys[same], first[same]
            self._bigrams.add(keys, first)
            self.totals[2] += int(keys.size)
        if m >= 3:
            keys = (u[:-2] << np.uint64(2 * ID_BITS)) | (u[1:-1] << np.uint64(ID_BITS)) | u[2:]
            first = np.arange(base, base + m - 2, dtype=np.int64)
            same = doc[:-2] == doc[2:]
            if len(words) > _ID_LIMIT:  # some ids no longer fit in 21 bits: those trigrams go to a dict
                big = (gid[:-2] >= _ID_LIMIT) | (gid[1:-1] >= _ID_LIMIT) | (gid[2:] >= _ID_LIMIT)
                for j in np.flatnonzero(big & same).tolist():
                    key = (int(gid[j]), int(gid[j + 1]), int(gid[j + 2]))
                    entry = self._overflow.get(key)
                    if entry is None:
                        self._overflow[key] = [1, base + j]
                    else:
                        entry[0] += 1
                self.totals[3] += int(np.count_nonzero(big & same))
                same = same & ~big
            if not same.all():
                keys, first = keys[same], first[same]
            self._trigrams.add(keys, first)
            self.totals[3] += int(keys.size)
        self.tokens_seen += m
        return np.bincount(doc, minlength=docs)

    def distinct(self) -> dict[int, int]:
        """Distinct n-grams per n (call after the last :meth:`add`)."""
        return {
            1: len(self.words),
            2: int(self._bigrams.final().keys.size),
            3: int(self._trigrams.final().keys.size) + len(self._overflow),
        }

    @staticmethod
    def _order(counts: np.ndarray, first: np.ndarray, k: int) -> np.ndarray:
        """Indexes of the ``k`` largest counts, ties by earliest first occurrence."""
        if k <= 0:
            return np.empty(0, dtype=np.int64)
        if counts.size > k:
            kth = np.partition(counts, counts.size - k)[counts.size - k]
            pick = np.flatnonzero(counts >= kth)
        else:
            pick = np.arange(counts.size)
        return pick[np.lexsort((first[pick], -counts[pick]))][:k]

    def _names(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[i] for i in ids)

    def top(self, k: int) -> dict[int, list[NgramCount]]:
        """The ``k`` commonest n-grams of each n, commonest first, ties in order of first occurrence."""
        out: dict[int, list[NgramCount]] = {}
        counts = self._unigrams[: len(self.words)]
        # Ids are numbered in order of first occurrence, so the id breaks ties.
        order = self._order(counts, np.arange(counts.size), k)
        out[1] = [NgramCount(self.words[i], int(counts[i])) for i in order.tolist() if counts[i] > 0]
        run = self._bigrams.final()
        order = self._order(run.counts, run.first, k)
        out[2] = [
            NgramCount(self._names((int(key) >> 32, int(key) & 0xFFFFFFFF)), int(run.counts[i]))
            for i, key in zip(order.tolist(), run.keys[order].tolist(), strict=True)
        ]
        run = self._trigrams.final()
        mask = _ID_LIMIT - 1
        order = self._order(run.counts, run.first, k)
        rows = [
            (int(run.counts[i]), int(run.first[i]), (key >> 2 * ID_BITS, (key >> ID_BITS) & mask, key & mask))
            for i, key in zip(order.tolist(), run.keys[order].tolist(), strict=True)
        ]
        rows.extend((c, f, key) for key, (c, f) in self._overflow.items())
        rows.sort(key=lambda r: (-r[0], r[1]))
        out[3] = [NgramCount(self._names(ids), count) for count, _, ids in rows[:k]]
        return out


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (an avalanching bijection), element-wise, wrapping."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xC4CEB9FE1A85EC53)
        return h ^ (h >> np.uint64(33))
