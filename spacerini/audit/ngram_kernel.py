"""The compiled passes of :class:`spacerini.audit.ngrams.NgramCounter` (numba, imported on first use).

One loop over a batch's UTF-8 bytes finds each token and hashes it (:func:`scan_tokens`); a
second numbers each token in a vocabulary hash table (keyed by the token's bytes, compared in
full, so ids are exact) and counts its unigram (:func:`number_tokens`). Then
the bigrams and trigrams of the batch's ids are counted in two more hash tables keyed by the
token ids themselves (not by hashes of them), split into buckets (see :func:`count_grams`).

Every table is open addressing with linear probing over rows of four uint64 words, so that one
probe reads one cache line. The passes are bound by memory latency, not by arithmetic, so each
one that probes a table asks for the row of the key :data:`AHEAD` places on before it probes
the current one (:func:`prefetch_row`), and the loads overlap:

* vocabulary: ``hash, id + 1 (0: empty), first 8 bytes (zero-padded), unigram count``; tokens
  never hold a zero byte, so for tokens of up to 7 bytes the padded prefix is the token itself;
  longer ones are compared with their bytes in the arena;
* bigrams: ``first id << 32 | second id, 0, 1 + first position, count``;
* trigrams: ``first id << 32 | second id, third id, 1 + first position, count``.

Ids are numbered in insertion order and n-grams keep their first position, which orders ties
as ``most_common`` does. The tokenizer stops before a token that could fill the vocabulary past
half and resumes there once the caller has grown it; the n-gram pass stops before a bucket
fills past three quarters and the caller grows the table and passes the rest again.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_SEED = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S32 = np.uint64(32)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)


#: How many keys ahead a hash-table pass asks for the row it will probe (:func:`prefetch_row`).
#: 16 was the fastest of 8, 16, 32 and 64 on the 20 MB audit corpus (bigram and trigram tables
#: of 64 and 128 MB: 17-19 ns an insert instead of 25-31 ns without prefetching).
AHEAD = 16


@intrinsic
def prefetch_row(typingctx, table, row):  # type: ignore[no-untyped-def]
    """Asks the processor to start loading row ``row`` of the 2-D ``table`` into its cache, for
    writing (LLVM's ``llvm.prefetch``: a hint, with no effect on what the program computes; on a
    processor without such an instruction it compiles to nothing).

    A hash-table pass whose probes miss the cache waits for memory at every key; issuing the
    load of the row for the key :data:`AHEAD` places later lets many loads overlap.
    """
    sig = types.void(table, row)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], zero])
        bytes_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [bytes_ptr, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, 1: for a write, 3: keep in every cache level, 1: data, not instructions)
        builder.call(fn, [builder.bitcast(ptr, bytes_ptr), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


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
    """The hash of an n-gram key ``(a, b)`` (``b`` is 0 for a bigram): one finaliser over both
    words (keys are compared in full, so two keys that share a hash only share a probe path)."""
    return fmix(a ^ (b * _M1 + _M2))


@nb.njit(cache=True, nogil=True)
def scan_tokens(
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    word: np.ndarray,
    tstart: np.ndarray,
    tlen: np.ndarray,
    thash: np.ndarray,
    tprefix: np.ndarray,
    doc_out: np.ndarray,
    per_doc: np.ndarray,
) -> int:
    """Finds the tokens of a batch (the first of two passes; :func:`number_tokens` is the second).

    Document ``d`` is ``data[starts[d]:ends[d]]``. Each token's start, length, hash (its bytes
    taken 8 at a time, little-endian, and mixed, then :func:`fmix` with the last, zero-padded
    word and the length), first 8 bytes (zero-padded) and document are
    written to the ``t*`` arrays and ``doc_out``; ``per_doc`` receives each document's token
    count. The arrays must hold every token (at most ``(bytes + 1) // 2 + documents``).

    Returns:
        The number of tokens.
    """
    m = 0
    for d in range(starts.size):
        hi = ends[d]
        i = starts[d]
        start_m = m
        while i < hi:
            if not word[data[i]]:
                i += 1
                continue
            j = i
            h = _SEED
            prefix = _ZERO
            chunk = _ZERO
            shift = np.uint64(0)
            while j < hi:
                c = data[j]
                if not word[c]:
                    break
                chunk |= np.uint64(c) << shift
                shift += np.uint64(8)
                j += 1
                if shift == np.uint64(64):
                    if j - i == 8:
                        prefix = chunk
                    h = (h ^ chunk) * _M1
                    h ^= h >> _S33
                    chunk = _ZERO
                    shift = np.uint64(0)
            length = j - i
            if length < 8:
                prefix = chunk
            tstart[m] = i
            tlen[m] = length
            thash[m] = fmix(h ^ chunk ^ (np.uint64(length) * _M2))
            tprefix[m] = prefix
            doc_out[m] = d
            m += 1
            i = j
        per_doc[d] = m - start_m
    return m


@nb.njit(cache=True, nogil=True)
def number_tokens(
    data: np.ndarray,
    tstart: np.ndarray,
    tlen: np.ndarray,
    thash: np.ndarray,
    tprefix: np.ndarray,
    first: int,
    vocab: np.ndarray,
    vstart: np.ndarray,
    vlen: np.ndarray,
    arena: np.ndarray,
    vused: np.ndarray,
    counting: bool,
    gid_out: np.ndarray,
) -> int:
    """Numbers tokens ``first ..`` of a batch found by :func:`scan_tokens` in the vocabulary,
    counting unigrams with ``counting``; ``gid_out`` receives each token's id.

    ``vused`` holds ``[vocabulary size, arena bytes used]``. The row of the token
    :data:`AHEAD` places on is prefetched, so that the vocabulary's cache misses overlap.

    Returns:
        The index of the first token not numbered: all of them (``tstart.size``), or fewer when
        the pass stopped before a token because the vocabulary could fill up past half (or the
        arena or the id arrays overflow): grow them and call again from there.
    """
    vmask = vocab.shape[0] - 1
    m = tstart.size
    for t in range(first, m):
        if t + AHEAD < m:
            prefetch_row(vocab, np.int64(thash[t + AHEAD] & np.uint64(vmask)))
        length = tlen[t]
        if (
            2 * (vused[0] + 1) > vocab.shape[0]
            or vused[0] + 1 > vstart.size
            or vused[1] + length > arena.size
        ):
            return t
        i = tstart[t]
        h = thash[t]
        prefix = tprefix[t]
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
        gid_out[t] = e
        if counting:
            vocab[slot, 3] += _ONE
    return m


@nb.njit(cache=True, nogil=True)
def text_stats(
    data: np.ndarray, offsets: np.ndarray, chars: np.ndarray, replacement: np.ndarray, surrogates: np.ndarray
) -> None:
    """Per document of a batch of UTF-8 text (``surrogatepass``): its characters (bytes that do
    not continue a character), its U+FFFD characters (``EF BF BD``) and its lone surrogates
    (``ED A0..BF ..``)."""
    for d in range(offsets.size - 1):
        n = 0
        bad = 0
        lone = 0
        hi = offsets[d + 1]
        for i in range(offsets[d], hi):
            c = data[i]
            if c < 0x80:
                n += 1
            elif c >= 0xC0:
                n += 1
                if c == 0xEF and i + 2 < hi and data[i + 1] == 0xBF and data[i + 2] == 0xBD:
                    bad += 1
                elif c == 0xED and i + 1 < hi and data[i + 1] >= 0xA0:
                    lone += 1
        chars[d] = n
        replacement[d] = bad
        surrogates[d] = lone


@nb.njit(cache=True, nogil=True)
def rehash(old: np.ndarray, new: np.ndarray) -> None:
    """Moves every row of the vocabulary ``old`` into the empty, larger ``new`` (rows hash by
    their stored hash)."""
    mask = new.shape[0] - 1
    for r in range(old.shape[0]):
        if old[r, 1] == _ZERO:
            continue
        h = old[r, 0]
        slot = np.int64(h & np.uint64(mask))
        while new[slot, 1] != _ZERO:
            slot = (slot + 1) & mask
        for w in range(4):
            new[slot, w] = old[r, w]


@nb.njit(cache=True, inline="always")
def _bucket(h: np.uint64, bits: int) -> np.int64:
    """The bucket of hash ``h`` among ``2**bits``: its top ``bits`` bits (a slot uses the low ones)."""
    if bits == 0:
        return np.int64(0)
    return np.int64(h >> np.uint64(64 - bits))


@nb.njit(cache=True, inline="always")
def _insert(
    table: np.ndarray,
    base: np.int64,
    mask: np.int64,
    h: np.uint64,
    a: np.uint64,
    b: np.uint64,
    entry: np.uint64,
    count: np.uint64,
) -> bool:
    """Adds ``count`` to key ``(a, b)`` in the bucket at ``base`` and keeps the smaller ``entry``;
    inserts the key when new. Returns whether it was new."""
    slot = np.int64(h & np.uint64(mask))
    while True:
        row = base + slot
        if table[row, 2] == _ZERO:
            table[row, 0] = a
            table[row, 1] = b
            table[row, 2] = entry
            table[row, 3] = count
            return True
        if table[row, 0] == a and table[row, 1] == b:
            table[row, 3] += count
            if entry < table[row, 2]:
                table[row, 2] = entry
            return False
        slot = (slot + 1) & mask


@nb.njit(cache=True, inline="always")
def _gram(gid: np.ndarray, t: int, n: int) -> tuple[np.uint64, np.uint64]:
    """The key ``(a, b)`` of the ``n``-gram (2 or 3) that ends at token ``t``: a bigram is two
    32-bit ids packed in ``a``; a trigram adds the third id as ``b``."""
    if n == 2:
        return (np.uint64(gid[t - 1]) << _S32) | np.uint64(gid[t]), _ZERO
    return (np.uint64(gid[t - 2]) << _S32) | np.uint64(gid[t - 1]), np.uint64(gid[t])


@nb.njit(cache=True, nogil=True)
def _count_runs(
    keys: np.ndarray, hist: np.ndarray, table: np.ndarray, rows: int, bits: int, used: np.ndarray
) -> int:
    """Inserts ``keys`` (rows ``a, b, 1 + position``, grouped by bucket: bucket ``i`` holds
    ``keys[hist[i]:hist[i + 1]]``) bucket by bucket; stops before a new key would fill its
    bucket past three quarters. Returns how many were counted.

    The row of the key :data:`AHEAD` places on is prefetched: a bucket is visited once a batch,
    so its rows are mostly not in the cache yet.
    """
    mask = np.int64(rows - 1)
    full = (3 * rows) // 4
    m = keys.shape[0]
    for i in range(hist.size - 1):
        base = np.int64(i) * rows
        for j in range(hist[i], hist[i + 1]):
            if used[i] >= full:
                return j
            if j + AHEAD < m:
                ahead = key_hash(keys[j + AHEAD, 0], keys[j + AHEAD, 1])
                prefetch_row(table, _bucket(ahead, bits) * rows + np.int64(ahead & np.uint64(mask)))
            a = keys[j, 0]
            b = keys[j, 1]
            if _insert(table, base, mask, key_hash(a, b), a, b, keys[j, 2], _ONE):
                used[i] += 1
    return m


@nb.njit(cache=True, nogil=True)
def count_grams(
    gid: np.ndarray,
    doc: np.ndarray,
    n: int,
    first: int,
    table: np.ndarray,
    rows: int,
    bits: int,
    used: np.ndarray,
    keys: np.ndarray,
) -> tuple[int, int]:
    """Counts the ``n``-grams (2 or 3) of a batch's token ids that lie within one document, in a
    table split into buckets.

    The table holds ``2**bits`` buckets of ``rows`` rows each (bucket ``i`` is rows
    ``i*rows .. (i+1)*rows - 1``), chosen by the top bits of an n-gram's hash; within its bucket a
    key is found by linear probing on the low bits. The n-grams are first regrouped by bucket (a
    counting sort straight from the token ids: one pass counts each bucket's n-grams, a second
    writes each key to its bucket's run), then counted bucket by bucket, so that the probes of a
    run stay inside one bucket of at most 1 MiB (in the processor's L2 cache) instead of hitting
    random lines of a table of hundreds of MB. Rows are ``key a, key b, entry, count``:
    ``entry`` is the smallest 1 + position seen (``first`` + the index in the batch of the
    n-gram's last token), the n-gram's first occurrence, so ties order as
    ``Counter.most_common`` orders them.

    ``used[i]`` counts bucket ``i``'s entries. The regrouped keys (rows ``a, b, 1 + position``)
    are written to ``keys``, a buffer the caller keeps from batch to batch (at least as many rows
    as the batch has n-grams), so that no batch allocates fresh memory. Stops before a new key
    would fill its bucket past three quarters. Returns how many n-grams were counted (-1: the
    buffer is too small) and how many there are: grow the table and pass the rest of ``keys``
    to :func:`count_keys`.
    """
    buckets = 1 << bits
    hist = np.zeros(buckets + 1, dtype=np.int64)
    for t in range(n - 1, gid.size):
        if doc[t - n + 1] == doc[t]:
            a, b = _gram(gid, t, n)
            hist[_bucket(key_hash(a, b), bits) + 1] += 1
    for i in range(buckets):
        hist[i + 1] += hist[i]
    fill = hist[:buckets].copy()
    m = hist[buckets]
    if keys.shape[0] < m:
        return -1, m
    for t in range(n - 1, gid.size):
        if doc[t - n + 1] == doc[t]:
            a, b = _gram(gid, t, n)
            i = _bucket(key_hash(a, b), bits)
            at = fill[i]
            fill[i] = at + 1
            keys[at, 0] = a
            keys[at, 1] = b
            keys[at, 2] = np.uint64(first + t + 1)
    return _count_runs(keys[:m], hist, table, rows, bits, used), m


@nb.njit(cache=True, nogil=True)
def count_keys(
    keys: np.ndarray, table: np.ndarray, rows: int, bits: int, used: np.ndarray
) -> tuple[int, np.ndarray]:
    """:func:`count_grams` for keys already made (the rest of a batch after the table grew):
    regroups them by bucket and counts them. Returns how many were counted and the regrouped keys."""
    buckets = 1 << bits
    m = keys.shape[0]
    hist = np.zeros(buckets + 1, dtype=np.int64)
    for j in range(m):
        hist[_bucket(key_hash(keys[j, 0], keys[j, 1]), bits) + 1] += 1
    for i in range(buckets):
        hist[i + 1] += hist[i]
    fill = hist[:buckets].copy()
    out = np.empty_like(keys)
    for j in range(m):
        i = _bucket(key_hash(keys[j, 0], keys[j, 1]), bits)
        at = fill[i]
        fill[i] = at + 1
        out[at, 0] = keys[j, 0]
        out[at, 1] = keys[j, 1]
        out[at, 2] = keys[j, 2]
    return _count_runs(out, hist, table, rows, bits, used), out


@nb.njit(cache=True, nogil=True)
def split_in_place(
    table: np.ndarray, rows: int, bits: int, new_rows: int, new_bits: int, used: np.ndarray
) -> None:
    """Doubles a table of ``2**bits`` buckets of ``rows`` rows in place, into ``2**new_bits``
    buckets of ``new_rows`` rows: either twice the rows per bucket or twice the buckets.

    ``table`` has already been enlarged to the new size (zeros after the old rows). Either way
    old bucket ``i`` becomes the new rows ``2*i*rows .. 2*(i+1)*rows - 1`` (one bucket of twice
    the rows, or buckets ``2i`` and ``2i+1``: the next bit of the hash), so going from the last
    bucket to the first, each one is copied aside, its new rows cleared and its entries put back:
    the rows it clears belong to buckets already moved. No second table is made, so the only
    fresh memory a growth touches is the added half (``used`` zeroed, filled per new bucket).
    """
    new_mask = np.int64(new_rows - 1)
    aside = np.empty((rows, 4), dtype=np.uint64)
    for i in range((1 << bits) - 1, -1, -1):
        base = np.int64(i) * rows
        for r in range(rows):
            for w in range(4):
                aside[r, w] = table[base + r, w]
        start = 2 * base
        for r in range(start, start + 2 * rows):
            for w in range(4):
                table[r, w] = _ZERO
        for r in range(rows):
            if aside[r, 2] == _ZERO:
                continue
            h = key_hash(aside[r, 0], aside[r, 1])
            j = _bucket(h, new_bits)
            _insert(
                table, np.int64(j) * new_rows, new_mask, h, aside[r, 0], aside[r, 1], aside[r, 2], aside[r, 3]
            )
            used[j] += 1


@nb.njit(cache=True, inline="always")
def _worse(c1: np.int64, e1: np.int64, c2: np.int64, e2: np.int64) -> bool:
    """Whether entry 1 ranks below entry 2: fewer occurrences, or as many and a later first one."""
    return c1 < c2 or (c1 == c2 and e1 > e2)


@nb.njit(cache=True, nogil=True)
def top_rows(table: np.ndarray, column: int, k: int) -> np.ndarray:
    """The rows of the ``k`` largest counts (column 3) of a table whose ``column`` holds
    entry + 1 (0: empty), commonest first, ties by the smaller entry (the earlier first
    occurrence), as ``Counter.most_common`` orders them: one pass with a heap of ``k``."""
    hc = np.empty(max(k, 1), dtype=np.int64)
    he = np.empty(max(k, 1), dtype=np.int64)
    hr = np.empty(max(k, 1), dtype=np.int64)
    size = 0
    if k <= 0:
        return hr[:0]
    for r in range(table.shape[0]):
        e = table[r, column]
        if e == _ZERO:
            continue
        c = np.int64(table[r, 3])
        ent = np.int64(e)
        if size < k:
            i = size  # sift up: the root is the worst kept
            size += 1
            while i > 0:
                parent = (i - 1) // 2
                if not _worse(c, ent, hc[parent], he[parent]):
                    break
                hc[i], he[i], hr[i] = hc[parent], he[parent], hr[parent]
                i = parent
            hc[i], he[i], hr[i] = c, ent, r
        elif _worse(hc[0], he[0], c, ent):
            i = 0  # sift down from the root
            while True:
                child = 2 * i + 1
                if child >= size:
                    break
                if child + 1 < size and _worse(hc[child + 1], he[child + 1], hc[child], he[child]):
                    child += 1
                if not _worse(hc[child], he[child], c, ent):
                    break
                hc[i], he[i], hr[i] = hc[child], he[child], hr[child]
                i = child
            hc[i], he[i], hr[i] = c, ent, r
    order = np.argsort(he[:size])  # entries are distinct: then a stable sort by count, descending
    order = order[np.argsort(-hc[:size][order], kind="mergesort")]
    return hr[:size][order]
