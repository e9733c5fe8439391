"""The compiled near-duplicate pass of :func:`spacerini.audit.analyze.analyze` (numba, imported on first use).

One call per batch (:func:`cluster_batch`) computes each document's MinHash signature from its
token ids, hashes its LSH bands and clusters it against the documents kept so far, all without
the GIL and without a Python call per document. The numbers are those of the numpy version it
replaced (same hash functions, same permutations, same clustering order):

* a token's hash is ``fmix64(id * mix0 + mix1)``; a shingle (word 5-gram, or all the tokens of a
  shorter document) is ``sum(token hash * position[j]) + length``, and its 32-bit hash the top
  half of ``fmix64`` of that;
* permutation ``p`` maps a shingle hash ``h`` to ``a[p] * h + b[p]`` modulo 2**32; a signature
  holds the minimum of each over the document's shingles;
* band ``k``'s key is ``fmix64(sum(signature[k * rows + r] * band_mult[r]) + band_salt[k])``;
* a document joins the first kept document (in the order they were kept) that shares a band
  key with it and agrees with it on at least ``threshold`` of the signature's positions;
  otherwise it is kept, and its band keys point at it.

State lives in arrays the caller owns and grows (:class:`spacerini.audit.analyze._NearDups`):
the kept signatures, each kept document's bytes and cluster size, and the band keys in an
open-addressing table whose rows head linked lists of kept documents.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from spacerini.audit.ngram_kernel import fmix

_ZERO = np.uint64(0)
_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@nb.njit(cache=True, nogil=True)
def _shingle_hash(th: np.ndarray, s: int, count: int, position: np.ndarray) -> np.uint64:
    h = _ZERO
    for j in range(count):
        h += th[s + j] * position[j]
    return fmix(h + np.uint64(count)) >> _S32


@nb.njit(cache=True, nogil=True)
def cluster_batch(
    gid: np.ndarray,
    doc: np.ndarray,
    nbytes: np.ndarray,
    mix: np.ndarray,
    position: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    band_mult: np.ndarray,
    band_salt: np.ndarray,
    threshold: float,
    sigs: np.ndarray,
    own_bytes: np.ndarray,
    cl_docs: np.ndarray,
    cl_bytes: np.ndarray,
    keys: np.ndarray,
    heads: np.ndarray,
    lrow: np.ndarray,
    lnext: np.ndarray,
    state: np.ndarray,
) -> None:
    """Clusters the documents of one batch.

    Args:
        gid: Token ids of the batch, grouped by document in order.
        doc: The document (index in the batch) of each token.
        nbytes: Bytes of each document of the batch.
        mix, position, a, b, band_mult, band_salt: The hash parameters (see the module docstring).
        threshold: Fraction of equal signature positions that makes two documents near-duplicates.
        sigs: ``(capacity, permutations)`` signatures of the kept documents.
        own_bytes, cl_docs, cl_bytes: Per kept document: its bytes, and the members (itself
            included) and bytes of its cluster (0 while it has no other member).
        keys, heads: The band-key table (power-of-two size; ``heads`` -1 marks an empty row).
        lrow, lnext: The linked lists of kept documents per band key (-1 ends a list).
        state: ``[kept documents, list entries used, band keys used]``.

    The caller makes room first: ``capacity >= kept + documents of the batch``, list room for
    ``bands`` more entries per document, and a table at most half full after as many new keys.
    """
    perms = a.size
    n = position.size
    rows = band_mult.size
    bands = band_salt.size
    tmask = keys.size - 1
    m = gid.size
    th = np.empty(m, dtype=np.uint64)
    for t in range(m):
        th[t] = fmix(np.uint64(gid[t]) * mix[0] + mix[1])
    sig = np.empty(perms, dtype=np.uint32)
    wide = np.empty(perms, dtype=np.uint64)
    bkeys = np.empty(bands, dtype=np.uint64)
    bslot = np.empty(bands, dtype=np.int64)
    fresh = np.empty(bands, dtype=np.bool_)
    cand = np.empty(max(state[1], 1), dtype=np.int64)
    s = 0
    while s < m:
        d = doc[s]
        e = s
        while e < m and doc[e] == d:
            e += 1
        count = e - s
        for p in range(perms):
            wide[p] = _LOW32
        if count >= n:
            for t in range(s, e - n + 1):
                h = _shingle_hash(th, t, n, position)
                for p in range(perms):
                    v = (a[p] * h + b[p]) & _LOW32
                    if v < wide[p]:
                        wide[p] = v
        else:
            h = _shingle_hash(th, s, count, position)
            for p in range(perms):
                wide[p] = (a[p] * h + b[p]) & _LOW32
        for p in range(perms):
            sig[p] = np.uint32(wide[p])
        # Band keys, and the kept documents under them (each key's list once).
        c = 0
        for k in range(bands):
            acc = _ZERO
            for r in range(rows):
                acc += wide[k * rows + r] * band_mult[r]
            key = fmix(acc + band_salt[k])
            bkeys[k] = key
            slot = np.int64(key & np.uint64(tmask))
            while heads[slot] >= 0 and keys[slot] != key:
                slot = (slot + 1) & tmask
            bslot[k] = slot
            repeat = False
            for q in range(k):
                if bkeys[q] == key:
                    repeat = True
                    break
            fresh[k] = not repeat
            if repeat:
                continue
            node = heads[slot]
            while node >= 0:
                cand[c] = lrow[node]
                c += 1
                node = lnext[node]
        head = np.int64(-1)
        if c:
            found = np.sort(cand[:c])
            last = np.int64(-1)
            for i in range(c):
                row = found[i]
                if row == last:
                    continue
                last = row
                same = 0
                for p in range(perms):
                    if sigs[row, p] == sig[p]:
                        same += 1
                if np.float64(same) / perms >= threshold:
                    head = row
                    break
        size = nbytes[d]
        if head >= 0:
            if cl_docs[head] == 0:
                cl_docs[head] = 1
                cl_bytes[head] = own_bytes[head]
            cl_docs[head] += 1
            cl_bytes[head] += size
        else:
            row = state[0]
            state[0] = row + 1
            sigs[row, :] = sig
            own_bytes[row] = size
            for k in range(bands):
                if not fresh[k]:
                    continue
                slot = bslot[k]
                if heads[slot] < 0:
                    keys[slot] = bkeys[k]
                    state[2] += 1
                entry = state[1]
                state[1] = entry + 1
                if entry >= cand.size:  # the candidate buffer holds every list entry
                    grown = np.empty(2 * cand.size + 1, dtype=np.int64)
                    cand = grown
                lrow[entry] = row
                lnext[entry] = heads[slot]
                heads[slot] = entry
        s = e


@nb.njit(cache=True, nogil=True)
def rehash_keys(keys: np.ndarray, heads: np.ndarray, new_keys: np.ndarray, new_heads: np.ndarray) -> None:
    """Moves the band-key table into the empty, larger ``new_keys``/``new_heads``."""
    mask = new_keys.size - 1
    for r in range(keys.size):
        if heads[r] < 0:
            continue
        slot = np.int64(keys[r] & np.uint64(mask))
        while new_heads[slot] >= 0:
            slot = (slot + 1) & mask
        new_keys[slot] = keys[r]
        new_heads[slot] = heads[r]
