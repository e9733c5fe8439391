"""The compiled pass of :class:`spacerini.audit.ngrams.NgramCounter` (numba, imported on first use).

One loop over a batch's UTF-8 bytes finds each token, numbers it in a vocabulary hash table
(keyed by the token's bytes, compared in full, so ids are exact) and counts its unigram, the
bigram it ends and the trigram it ends, in two more hash tables keyed by the token ids
themselves (not by hashes of them).

Every table is open addressing with linear probing over rows of four uint64 words, so that one
probe reads one cache line (the pass is bound by memory latency, not by arithmetic):

* vocabulary: ``hash, id + 1 (0: empty), first 8 bytes (zero-padded), unigram count``; tokens
  never hold a zero byte, so for tokens of up to 7 bytes the padded prefix is the token itself;
  longer ones are compared with their bytes in the arena;
* bigrams: ``first id << 32 | second id, 0, entry + 1, count``;
* trigrams: ``first id << 32 | second id, third id, entry + 1, count``.

Ids and entries are numbered in insertion order, which is the order of first occurrence (ties
of ``most_common``). The tokenizer stops before a token that could fill the vocabulary past
half and resumes there once the caller has grown it; the bigram and trigram passes (tight loops
over the batch's ids, run after the tokenizer) get room for one new entry per token first
(see ``NgramCounter.add``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S32 = np.uint64(32)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)


@nb.njit(cache=True, inline="always")
def fmix(h: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finaliser."""
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    h ^= h >> _S33
    return h


@nb.njit(cache=True, inline="always")
def key_hash(a: np.uint64, b: np.uint64) -> np.uint64:
    """The hash of an n-gram key ``(a, b)``."""
    return fmix(a ^ fmix(b + _M2))


@nb.njit(cache=True, inline="always")
def _count_key(table: np.ndarray, a: np.uint64, b: np.uint64, used: np.ndarray) -> None:
    """Adds one to key ``(a, b)``, inserting it when new (``used[0]`` counts entries)."""
    mask = table.shape[0] - 1
    slot = np.int64(key_hash(a, b) & np.uint64(mask))
    while True:
        if table[slot, 2] == _ZERO:
            used[0] += 1
            table[slot, 0] = a
            table[slot, 1] = b
            table[slot, 2] = np.uint64(used[0])
            table[slot, 3] = _ONE
            return
        if table[slot, 0] == a and table[slot, 1] == b:
            table[slot, 3] += _ONE
            return
        slot = (slot + 1) & mask


@nb.njit(cache=True)
def count_batch(
    data: np.ndarray,
    offsets: np.ndarray,
    word: np.ndarray,
    vocab: np.ndarray,
    vstart: np.ndarray,
    vlen: np.ndarray,
    arena: np.ndarray,
    vused: np.ndarray,
    counting: bool,
    gid_out: np.ndarray,
    doc_out: np.ndarray,
    per_doc: np.ndarray,
    state: np.ndarray,
) -> bool:
    """Tokenizes and numbers a batch, or the rest of it, counting unigrams with ``counting``.

    ``vused`` holds ``[vocabulary size, arena bytes used]``. ``gid_out``/``doc_out`` receive each token's id and document,
    ``per_doc`` each document's token count. ``state`` is where the pass is: ``[document, byte
    (-1: the document's start), previous id, the one before, tokens written, tokens written
    before the document]``, all zero but ``byte = -1`` for a fresh batch.

    Returns:
        True when the batch is done; False when the pass stopped before a token because the
        vocabulary could fill up past half (or the arena or the id arrays overflow): grow them
        and call again with the same ``state``.
    """
    vmask = vocab.shape[0] - 1
    m = state[4]
    d = state[0]
    while d < offsets.size - 1:
        hi = offsets[d + 1]
        if state[1] < 0:
            i = offsets[d]
            p1 = np.int64(-1)
            p2 = np.int64(-1)
            start_m = m
        else:
            i = state[1]
            p1 = state[2]
            p2 = state[3]
            start_m = state[5]
            state[1] = -1
        while i < hi:
            if not word[data[i]]:
                i += 1
                continue
            j = i
            h = _FNV_OFFSET
            prefix = _ZERO
            while j < hi and word[data[j]]:
                c = np.uint64(data[j])
                h = (h ^ c) * _FNV_PRIME
                if j - i < 8:
                    prefix |= c << np.uint64(8 * (j - i))
                j += 1
            length = j - i
            if (
                2 * (vused[0] + 1) > vocab.shape[0]
                or vused[0] + 1 > vstart.size
                or vused[1] + length > arena.size
            ):
                state[0] = d
                state[1] = i
                state[2] = p1
                state[3] = p2
                state[4] = m
                state[5] = start_m
                return False
            h = fmix(h)
            slot = np.int64(h & np.uint64(vmask))
            while True:
                if vocab[slot, 1] == _ZERO:
                    e = vused[0]
                    vused[0] += 1
                    at = vused[1]
                    for q in range(length):
                        arena[at + q] = data[i + q]
                    vused[1] = at + length
                    vstart[e] = at
                    vlen[e] = length
                    vocab[slot, 0] = h
                    vocab[slot, 1] = np.uint64(e + 1)
                    vocab[slot, 2] = prefix
                    break
                if vocab[slot, 0] == h and vocab[slot, 2] == prefix:
                    e = np.int64(vocab[slot, 1]) - 1
                    if length < 8:
                        break
                    if vlen[e] == length:
                        s = vstart[e]
                        same = True
                        for q in range(8, length):
                            if arena[s + q] != data[i + q]:
                                same = False
                                break
                        if same:
                            break
                slot = (slot + 1) & vmask
            gid_out[m] = e
            doc_out[m] = d
            m += 1
            if counting:
                vocab[slot, 3] += _ONE
            p2 = p1
            p1 = e
            i = j
        per_doc[d] = m - start_m
        d += 1
    state[0] = d
    state[4] = m
    return True


@nb.njit(cache=True)
def count_ngrams(gid: np.ndarray, doc: np.ndarray, n: int, table: np.ndarray, used: np.ndarray) -> None:
    """Counts the ``n``-grams (2 or 3) of a batch's token ids that lie within one document.

    A tight loop of its own (not inside the tokenizer's), so that the processor overlaps the
    cache misses of successive table probes. The caller leaves room for one new entry per token.
    """
    for t in range(n - 1, gid.size):
        if doc[t - n + 1] != doc[t]:
            continue
        if n == 2:
            _count_key(table, (np.uint64(gid[t - 1]) << _S32) | np.uint64(gid[t]), _ZERO, used)
        else:
            _count_key(table, (np.uint64(gid[t - 2]) << _S32) | np.uint64(gid[t - 1]), np.uint64(gid[t]), used)


@nb.njit(cache=True)
def rehash(old: np.ndarray, new: np.ndarray, vocabulary: bool) -> None:
    """Moves every row of ``old`` into the empty, larger ``new`` (vocabulary rows hash by their
    stored hash, n-gram rows by their key)."""
    mask = new.shape[0] - 1
    for r in range(old.shape[0]):
        if (old[r, 1] if vocabulary else old[r, 2]) == _ZERO:
            continue
        h = old[r, 0] if vocabulary else key_hash(old[r, 0], old[r, 1])
        slot = np.int64(h & np.uint64(mask))
        while (new[slot, 1] if vocabulary else new[slot, 2]) != _ZERO:
            slot = (slot + 1) & mask
        for w in range(4):
            new[slot, w] = old[r, w]
