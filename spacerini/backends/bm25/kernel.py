"""Compiled (numba) BM25 ranking whose work follows the postings a query touches.

Why numba, and why this algorithm:

* **numba** (``@njit(nogil=True, cache=True)``) compiles these loops once per machine (the
  machine code is cached beside the module or in numba's user cache), needs no compiler at install
  time (it ships as wheels), and releases the GIL, so ``batch_search(threads=N)`` runs ``N``
  kernels at once. A C extension would be as fast but needs a compiler or per-platform wheels.
* **Scores from the sidecar's tfs and norm bytes.** A posting's score is Lucene's float32
  ``weight - weight / (1 + tf * cache[norm])`` (:func:`_x_at`); for the common case, a term that
  occurs once in the query, :func:`scores_once` computes them all at the first search and the
  kernel reads them (a division and two dependent loads per posting cost about 4x a read).
* **Most queries score every posting they touch**: each term's scores are added into a
  per-row double accumulator that the caller reuses (``whole``), the touched rows are remembered,
  and only they are moved into the top-``n`` heap and zeroed. No step costs the corpus size.
* **Queries over long postings can skip by block-max MaxScore** (:func:`_rank_blocks`). Each
  term's postings are cut into blocks of ``2**bits`` (64 by default, as Lucene's impacts); for
  each block :func:`block_table` keeps its largest ``x = tf * cache[norm]`` (computed in memory at
  the first pruned search: one pass over the postings). The rows are walked in windows that end
  where the first query term's current block ends (at least ``2**window_bits`` rows: fewer
  windows, each bound the largest of the blocks a term has there). A window whose terms' bounds
  sum *strictly* below the ``n``-th best score so far is skipped whole, postings unread; else
  MaxScore within it: the terms of smallest bounds whose bounds sum strictly below the ``n``-th
  score are non-essential (a row holding only them cannot enter), the essential terms' postings
  are added per row, and each non-essential term, largest bound first, drops the rows whose
  known score plus the bounds not yet added is strictly below the ``n``-th score, then adds its
  scores to the rest. Measured on 100k and 400k Debian paragraphs this pays at k=10 only (about
  20 % less CPU; at k=1000 the threshold stays low), so the callers send only small ``n`` there.

Why the answers are exactly the exhaustive ones (same rows, order and float32 scores):

* Each posting's score is Lucene's float32 ``weight - weight / (1 + x)`` (precomputed as ``s1``
  when the term occurs once in the query), and each row sums its term scores in double, in query
  term order, from 0, then rounds to float32: the numpy reference does the same sums in the same
  order.
* The pruned path adds a row's scores essential terms first, so it takes only queries for which
  :func:`sums_are_exact` proves that every such sum is exact in double (then any order gives the
  same double, the query-order one); the others score every posting in query order.
* A block's bound is built the same way from its largest ``x``. Float32 and double rounding are
  monotonic, and ``weight - weight / (1 + x)`` is non-decreasing in ``x`` through every rounded
  step, so a posting's score is never above its block's bound, and a sum of bounds (exact, as
  above) never below the sum of the scores they stand for: a window, a term or a row is
  dropped only when every row it could hold scores strictly below the ``n``-th.
* The best ``n`` are kept in a heap ordered by (score desc, rank of the collection id asc): the
  total order Anserini sorts by. Every pruning test is strict (a row scoring exactly the ``n``-th
  score could still win the tie by its id), so no row that belongs in the top ``n`` is skipped.
* :func:`finish` sorts each heap and applies Anserini's ``ScoreTiesAdjusterReranker`` loop as
  written (4-decimal rounding in double, then ``1e-6f`` per tie in float32).

``tests/backends/test_bm25_kernel.py`` compares the kernel, pruned and exhaustive, with the numpy
reference on random corpora full of ties at k = 1, 10, 100 and 1000, on a corpus where the
rows a non-strict test would skip tie the ``n``-th score and win by id, and on one whose sums
could round (not pruned).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(nogil=True, cache=True, inline="always")
def _x_at(p, d, tfs, exc_pos, exc_tf, escape, norms, cache):  # noqa: ANN001, ANN202 - numba signature
    """``tf * cache[norm]`` of posting ``p`` (row ``d``) in float32, as Lucene's ``BM25Scorer``."""
    tf = np.int64(tfs[p])
    if tf == escape:
        tf = np.int64(exc_tf[np.searchsorted(exc_pos, p)])
    return np.float32(tf) * cache[norms[d]]


@njit(nogil=True, cache=True, inline="always")
def _score(w, x):  # noqa: ANN001, ANN202 - numba signature
    """Lucene's ``BM25Scorer`` for a term of weight ``w`` and ``x = tf * cache[norm]``, in float32
    (the one place this expression is written: every path ranks with the same steps)."""
    return w - w / (np.float32(1.0) + x)


@njit(nogil=True, cache=True, inline="always")
def _accumulate(p0, p1, once, w, docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache, whole, touched, n):  # noqa: ANN001, ANN202
    """Adds postings ``p0..p1`` of a term of weight ``w`` to ``whole`` (float64, per row); a row
    seen for the first time is appended to ``touched`` (every term score is > 0: no branch to
    mispredict). Returns the new count of touched rows."""
    for p in range(p0, p1):
        d = docs[p]
        if once:
            s = s1[p]
        else:
            s = _score(w, _x_at(p, d, tfs, exc_pos, exc_tf, escape, norms, cache))
        v = whole[d]
        touched[n] = d
        n += np.int64(v == 0.0)
        whole[d] = v + np.float64(s)
    return n


@njit(nogil=True, cache=True)
def scores_once(offsets, idf, docs, tfs, exc_pos, exc_tf, escape, norms, cache):  # noqa: ANN001, ANN201
    """Every posting's score for a term that occurs once in the query (weight = idf), float32.

    The same float32 steps as :func:`rank_source` uses for any weight:
    ``idf - idf / (1 + tf * cache[norm])``.
    """
    out = np.empty(docs.size, np.float32)
    for t in range(offsets.size - 1):
        w = idf[t]
        for p in range(offsets[t], offsets[t + 1]):
            d = docs[p]
            out[p] = _score(w, _x_at(p, d, tfs, exc_pos, exc_tf, escape, norms, cache))
    return out


@njit(nogil=True, cache=True, inline="always")
def _offer(keys, size, key):  # noqa: ANN001, ANN202 - numba signature
    """Offers ``key`` to a min-heap of ``keys.size`` slots holding ``size``; returns the new size."""
    n = keys.size
    if size < n:
        c = size
        while c > 0:
            parent = (c - 1) >> 1
            if keys[parent] <= key:
                break
            keys[c] = keys[parent]
            c = parent
        keys[c] = key
        return size + 1
    if key <= keys[0]:
        return size
    c = 0
    while True:
        child = 2 * c + 1
        if child >= n:
            break
        if child + 1 < n and keys[child + 1] < keys[child]:
            child += 1
        if keys[child] >= key:
            break
        keys[c] = keys[child]
        c = child
    keys[c] = key
    return size


#: From this many hits per query on, a query scored whole selects its touched rows at once
#: (partition, then sort) rather than through the heap one by one.
_BULK = 512


@njit(nogil=True, cache=True, inline="always")
def _collect(acc, touched, n_touched, first, base, id_rank, keys, size, fbuf, ibuf, bulk):  # noqa: ANN001, ANN202
    """Moves the touched accumulators (rows ``first + d``) into the heap, zeroing them; returns its size.

    ``bulk``: select at once when the heap is large (the heap's order is kept: sorted ascending).

    A key is ``(score bits << 32) | (2**31 - 1 - id rank)``: positive float32 scores order like
    their bits, so the keys order like (score desc, id rank asc) reversed, and are distinct.
    """
    n = keys.size
    theta = np.float32(0.0)
    if size == n:
        ibuf[0] = np.int32(keys[0] >> 32)
        theta = fbuf[0]
    if bulk and n >= _BULK:
        cand = np.empty(size + n_touched, np.int64)
        cand[:size] = keys[:size]
        m = size
        for i in range(n_touched):
            d = touched[i]
            score = np.float32(acc[d])
            acc[d] = 0.0
            if size == n and score < theta:
                continue
            fbuf[0] = score
            cand[m] = (np.int64(ibuf[0]) << 32) | np.int64(0x7FFFFFFF - id_rank[base + first + d])
            m += 1
        if m > n:
            best = np.sort(np.partition(cand[:m], m - n)[m - n :])
        else:
            best = np.sort(cand[:m])
        keys[: best.size] = best  # ascending: a valid min-heap
        return best.size
    for i in range(n_touched):
        d = touched[i]
        score = np.float32(acc[d])
        acc[d] = 0.0
        if size == n and score < theta:
            continue  # the common case: no key to build
        fbuf[0] = score
        key = (np.int64(ibuf[0]) << 32) | np.int64(0x7FFFFFFF - id_rank[base + first + d])
        size = _offer(keys, size, key)
        if size == n:
            ibuf[0] = np.int32(keys[0] >> 32)
            theta = fbuf[0]
    return size


@njit(nogil=True, cache=True)
def block_table(offsets, docs, tfs, exc_pos, exc_tf, escape, norms, cache, bits):  # noqa: ANN001, ANN201
    """Each term's postings cut into blocks of ``2**bits`` (from its first posting): each block's largest ``x``.

    Args:
        offsets: Where each term's postings start (int64, V+1).
        docs: Each posting's row, ascending within a term (int32).
        tfs, exc_pos, exc_tf, escape: Each posting's tf (see
            :func:`~spacerini.backends.bm25.scorer.decode_tfs`).
        norms, cache: Each row's norm byte and the float32 norm cache: ``x = tf * cache[norm]``.
        bits: A block holds ``2**bits`` postings (the last block of a term fewer).

    Returns:
        ``(block_offsets, max_x, term_min_x, term_max_x)``: where each term's blocks start (int64,
        V+1); each block's largest ``x`` (float32; block ``j`` of term ``t`` is ``block_offsets[t]
        + j``, its postings start at ``offsets[t] + j * 2**bits``); each term's smallest and largest
        ``x`` (float32, V; for :func:`sums_are_exact`).
    """
    terms = offsets.size - 1
    width = np.int64(1) << bits
    block_offsets = np.empty(terms + 1, np.int64)
    block_offsets[0] = 0
    for t in range(terms):
        block_offsets[t + 1] = block_offsets[t] + ((offsets[t + 1] - offsets[t] + width - 1) >> bits)
    max_x = np.zeros(block_offsets[terms], np.float32)
    term_min_x = np.zeros(terms, np.float32)
    term_max_x = np.zeros(terms, np.float32)
    for t in range(terms):
        a, b = offsets[t], offsets[t + 1]
        j = block_offsets[t]
        low = np.float32(np.inf)
        for p0 in range(a, b, width):
            best = np.float32(0.0)
            for p in range(p0, min(b, p0 + width)):
                x = _x_at(p, docs[p], tfs, exc_pos, exc_tf, escape, norms, cache)
                if x > best:
                    best = x
                if x < low:
                    low = x
            max_x[j] = best
            if best > term_max_x[t]:
                term_max_x[t] = best
            j += 1
        term_min_x[t] = low if b > a else 0.0
    return block_offsets, max_x, term_min_x, term_max_x


@njit(nogil=True, cache=True, inline="always")
def sums_are_exact(t0, t1, t_tid, t_start, t_end, t_weight, term_min_x, term_max_x):  # noqa: ANN001, ANN201 - numba signature
    """Whether every sum of query ``t0:t1``'s term scores (and of bounds between them) is exact in double.

    Each term's scores lie between ``L`` (the smallest, from its smallest ``x``) and ``H`` (the
    largest): all are float32 multiples of ``2**(e - 23)`` where ``2**e <= L < 2**(e + 1)``, and a
    sum of ``m`` of them stays below ``m * H``; if that is at most ``L * 2**29`` (``< 2**(e + 30)``),
    every partial sum is a multiple of ``2**(e - 23)`` below ``2**(e + 30)``: it fits a double's
    53 bits, so no sum rounds, whatever the order. Realistic queries pass by orders of magnitude
    (scores span a few decades); the others are scored the exhaustive way, in query term order.
    """
    low = np.float64(np.inf)
    high = 0.0
    for t in range(t0, t1):
        if t_end[t] == t_start[t]:
            continue  # no postings here: adds nothing
        w = t_weight[t]
        lo_s = np.float64(_score(w, term_min_x[t_tid[t]]))
        hi_s = np.float64(_score(w, term_max_x[t_tid[t]]))
        low = min(low, lo_s)
        high = max(high, hi_s)
    return high == 0.0 or (low > 0.0 and np.float64(t1 - t0) * high <= low * 536870912.0)  # 2**29


@njit(nogil=True, cache=True)
def _rank_blocks(  # noqa: ANN201, C901, PLR0912, PLR0913, PLR0915 - one kernel, numba signature
    docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache, block_offsets, block_max_x, bits,  # noqa: ANN001
    window_bits, base, id_rank, t_tid, t_start, t_end, t_weight, t_once, t0, t1, keys, size,  # noqa: ANN001
    pos, bend, blast, wend, bbound, present, flag, srt, whole, whole_touched, fbuf, ibuf,  # noqa: ANN001
):  # fmt: skip
    """One query, window by window, skipping by block-max MaxScore; returns the heap's size.

    Only for queries whose row sums are exact in double whatever their order (see
    :func:`sums_are_exact`): the essential terms' postings are added term by term, the others
    after, and bounds are sums of block bounds.

    The rows are walked in windows: a window ends where the first of the query terms' current
    blocks ends, so each term has at most one block there, whose bound holds for every row of the
    window. A window whose bounds (of the terms with postings in it) sum strictly below the
    ``n``-th score is skipped whole (no posting read). Otherwise MaxScore within it: the terms of
    smallest bounds whose bounds sum strictly below the ``n``-th score are non-essential; the
    essential terms' postings in the window are added into ``whole``, one slot per row; then,
    largest bound first, each non-essential term drops the rows whose known score plus the
    bounds of the terms not yet added falls strictly below the ``n``-th score and adds its scores
    to the others (binary search per row when they are few, else one pass over its postings).
    A row tied with the ``n``-th score is never dropped: it can still win by id.
    """
    m = t1 - t0
    n = keys.size
    big = np.int64(1) << 62
    theta = np.float32(0.0)  # the n-th score once the heap is full (every score is > 0)
    if size == n:
        ibuf[0] = np.int32(keys[0] >> 32)
        theta = fbuf[0]
    width = np.int64(1) << bits
    for i in range(m):
        t = t0 + i
        a = t_start[t]
        pos[i] = a
        e = min(a + width, t_end[t])
        bend[i] = e
        blast[i] = docs[e - 1] if e > a else -1
    while True:
        # The window: from the first row any term still holds, to where the first of the terms'
        # current blocks ends, but at least 2**window_bits rows (fewer, wider windows: each costs
        # a few operations per term; a term's bound there is the largest of its blocks' bounds).
        lo = big
        hi = big
        for i in range(m):
            if pos[i] < t_end[t0 + i]:
                lo = min(lo, np.int64(docs[pos[i]]))
                hi = min(hi, blast[i])
        if hi == big:
            break
        hi = max(hi + 1, lo + (np.int64(1) << window_bits))
        npres = 0
        wb = 0.0
        for i in range(m):
            flag[i] = 0
            present[i] = 0
            p = pos[i]
            t = t0 + i
            if p < t_end[t] and docs[p] < hi:
                present[i] = 1
                srt[npres] = i
                npres += 1
                a = t_start[t]
                j = block_offsets[t_tid[t]] + ((p - a) >> bits)
                mx = block_max_x[j]
                e = bend[i]
                while e < t_end[t] and docs[e] < hi:  # the next block starts in the window too
                    j += 1
                    mx = max(mx, block_max_x[j])
                    e = min(e + width, t_end[t])
                if docs[e - 1] >= hi:  # the first posting at or past the window's end
                    p = max(p, e - 1 - ((e - 1 - a) & (width - 1)))  # the last block's start
                    while p < e:
                        mid = (p + e) >> 1
                        if docs[mid] < hi:
                            p = mid + 1
                        else:
                            e = mid
                wend[i] = e
                w = t_weight[t]
                bbound[i] = _score(w, mx)
                wb += np.float64(bbound[i])
        ne = 0
        ne_sum = 0.0
        if theta > 0.0:
            if np.float32(wb) < theta:
                npres = 0  # skip the window: no row in it can enter
            elif npres >= 2:
                for a_ in range(1, npres):  # insertion sort of the present terms by bound
                    v_ = srt[a_]
                    b_ = a_ - 1
                    while b_ >= 0 and bbound[srt[b_]] > bbound[v_]:
                        srt[b_ + 1] = srt[b_]
                        b_ -= 1
                    srt[b_ + 1] = v_
                for a_ in range(npres - 1):  # at least one essential term
                    v = ne_sum + np.float64(bbound[srt[a_]])
                    if not (np.float32(v) < theta):
                        break
                    ne_sum = v
                    flag[srt[a_]] = 1
                    ne = a_ + 1
        if npres > 0:
            # The essential terms' postings in the window, added up per row.
            alive = 0
            for i in range(m):
                if present[i] and flag[i] == 0:
                    t = t0 + i
                    alive = _accumulate(
                        pos[i], wend[i], t_once[t], t_weight[t], docs, s1, tfs, exc_pos, exc_tf, escape, norms,
                        cache, whole, whole_touched, alive,
                    )  # fmt: skip
            rest = ne_sum
            for a_ in range(ne - 1, -1, -1):  # the non-essential terms, largest bound first
                # Drop the rows whose known score plus the bounds of the terms not added yet (each
                # >= the score it stands for; sums exact) is strictly below the n-th score.
                j = 0
                for c in range(alive):
                    d = whole_touched[c]
                    v = whole[d]
                    if np.float32(v + rest) < theta:
                        whole[d] = 0.0
                    else:
                        whole_touched[j] = d
                        j += 1
                alive = j
                if alive == 0:
                    break
                i = srt[a_]
                rest -= np.float64(bbound[i])
                t = t0 + i
                w = t_weight[t]
                once = t_once[t]
                a = pos[i]
                e = wend[i]
                if alive * 8 < e - a:  # few rows: look each up
                    for c in range(alive):
                        d = whole_touched[c]
                        lo = a
                        hi_ = e
                        while lo < hi_:
                            mid = (lo + hi_) >> 1
                            if docs[mid] < d:
                                lo = mid + 1
                            else:
                                hi_ = mid
                        if lo < e and docs[lo] == d:
                            if once:
                                s = s1[lo]
                            else:
                                s = _score(w, _x_at(lo, d, tfs, exc_pos, exc_tf, escape, norms, cache))
                            whole[d] += np.float64(s)
                else:  # one pass over the term's postings in the window, adding to live rows only
                    for p in range(a, e):
                        d = docs[p]
                        if once:
                            s = s1[p]
                        else:
                            s = _score(w, _x_at(p, d, tfs, exc_pos, exc_tf, escape, norms, cache))
                        v = whole[d]
                        whole[d] = v + np.float64(s) * (v > 0.0)
            for c in range(alive):
                d = whole_touched[c]
                score = np.float32(whole[d])
                whole[d] = 0.0
                if score < theta:
                    continue
                fbuf[0] = score
                size = _offer(
                    keys, size, (np.int64(ibuf[0]) << 32) | np.int64(0x7FFFFFFF - id_rank[base + d])
                )
                if size == n:
                    ibuf[0] = np.int32(keys[0] >> 32)
                    theta = fbuf[0]
        # Every present term past the window, into the block holding its next posting.
        for i in range(m):
            if present[i]:
                t = t0 + i
                p = wend[i]
                pos[i] = p
                if p >= bend[i] and p < t_end[t]:
                    a = t_start[t]
                    e = min(a + (((p - a) >> bits) + 1) * width, t_end[t])
                    bend[i] = e
                    blast[i] = docs[e - 1]
    return size


@njit(nogil=True, cache=True)
def rank_source(  # noqa: ANN201, PLR0913 - one kernel, numba signature
    docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache, block_offsets, block_max_x, bits, window_bits,  # noqa: ANN001
    term_min_x, term_max_x, base, id_rank, q_ptr, t_tid, t_start, t_end, t_weight, t_once, heap_keys, heap_size,  # noqa: ANN001, E501
    prune_min, prune_terms, whole, whole_touched,  # noqa: ANN001
):  # fmt: skip
    """Adds one sidecar's postings to the running top-``n`` heaps of a chunk of queries.

    Args:
        docs, tfs, exc_pos, exc_tf, escape: The sidecar's postings (rows; tfs, see
            :func:`~spacerini.backends.bm25.scorer.decode_tfs`).
        s1: Each posting's score when its term occurs once in the query (:func:`scores_once`).
        norms, cache: Each row's norm byte and the float32 norm cache.
        block_offsets, block_max_x, bits: Its :func:`block_table` (blocks of ``2**bits`` postings).
        base: The sidecar's first row among all sidecars ranked together.
        id_rank: Each row's rank in the collection ids' byte order, over all sidecars (int32).
        q_ptr: Query ``q``'s terms are ``q_ptr[q]:q_ptr[q+1]`` of the ``t_*`` arrays (int64).
        t_tid: Each term's id in this sidecar.
        t_start, t_end: Its postings (int64).
        t_weight: Lucene's float32 weight (``count * idf``).
        t_once: 1 when the term occurs once in the query (its scores are ``s1``).
        heap_keys, heap_size: Each query's min-heap of ``(score bits << 32) | (2**31 - 1 - id
            rank)`` keys; updated in place.
        prune_min, prune_terms: Queries with at least ``prune_min`` postings here and at most
            ``prune_terms`` terms go document at a time with block-max MaxScore
            (:func:`_rank_blocks`); the others score every posting (cheaper when the postings
            are few).
        whole, whole_touched: A zeroed float64 accumulator, one slot per row, and an int32
            scratch array of one slot more (the caller reuses them: they are left zeroed).
    """
    _rank_queries(
        0, q_ptr.size - 1, docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache, block_offsets, block_max_x, bits, window_bits, term_min_x, term_max_x, base, id_rank, q_ptr, t_tid, t_start, t_end, t_weight, t_once, heap_keys, heap_size, prune_min, prune_terms, whole, whole_touched,
    )  # fmt: skip


@njit(nogil=True, cache=True, parallel=True)
def rank_source_parallel(  # noqa: ANN201, PLR0913 - one kernel, numba signature
    docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache, block_offsets, block_max_x, bits, window_bits,  # noqa: ANN001
    term_min_x, term_max_x, base, id_rank, q_ptr, t_tid, t_start, t_end, t_weight, t_once, heap_keys, heap_size,  # noqa: ANN001, E501
    prune_min, prune_terms, whole, whole_touched, chunks,  # noqa: ANN001
):  # fmt: skip
    """:func:`rank_source` with the queries cut into ``chunks`` ranges ranked at once, on numba's
    threads (each range with an accumulator of its own; the first uses ``whole`` and
    ``whole_touched``). Every query is ranked by the same steps, so the heaps are the same."""
    nq = q_ptr.size - 1
    step = (nq + chunks - 1) // chunks
    for c in prange(chunks):
        lo = c * step
        hi = min(nq, lo + step)
        if lo < hi:
            if c == 0:
                acc, acc_touched = whole, whole_touched
            else:
                acc = np.zeros(whole.size, np.float64)
                acc_touched = np.empty(whole_touched.size, np.int32)
            _rank_queries(
                lo, hi, docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache, block_offsets, block_max_x, bits, window_bits, term_min_x, term_max_x, base, id_rank, q_ptr, t_tid, t_start, t_end, t_weight, t_once, heap_keys, heap_size, prune_min, prune_terms, acc, acc_touched,
            )  # fmt: skip


@njit(nogil=True, cache=True)
def _rank_queries(  # noqa: ANN202, PLR0913 - one kernel, numba signature
    q_lo, q_hi,  # noqa: ANN001
    docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache, block_offsets, block_max_x, bits, window_bits,  # noqa: ANN001
    term_min_x, term_max_x, base, id_rank, q_ptr, t_tid, t_start, t_end, t_weight, t_once, heap_keys, heap_size,  # noqa: ANN001, E501
    prune_min, prune_terms, whole, whole_touched,  # noqa: ANN001
):  # fmt: skip
    """:func:`rank_source` for queries ``q_lo .. q_hi - 1``."""
    fbuf = np.empty(1, np.float32)
    ibuf = fbuf.view(np.int32)
    slots = 1
    for q in range(q_lo, q_hi):
        slots = max(slots, min(q_ptr[q + 1] - q_ptr[q], prune_terms))
    pos = np.empty(slots, np.int64)
    bend = np.empty(slots, np.int64)
    blast = np.empty(slots, np.int64)
    wend = np.empty(slots, np.int64)
    bbound = np.empty(slots, np.float32)
    present = np.zeros(slots, np.uint8)
    flag = np.zeros(slots, np.uint8)  # 1: a non-essential term in the current window
    srt = np.empty(slots, np.int64)
    for q in range(q_lo, q_hi):
        t0, t1 = q_ptr[q], q_ptr[q + 1]
        if t0 == t1:
            continue
        keys = heap_keys[q]
        postings = 0
        for t in range(t0, t1):
            postings += t_end[t] - t_start[t]
        if (
            postings >= prune_min
            and t1 - t0 <= prune_terms
            and sums_are_exact(t0, t1, t_tid, t_start, t_end, t_weight, term_min_x, term_max_x)
        ):
            heap_size[q] = _rank_blocks(
                docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache, block_offsets, block_max_x, bits,
                window_bits, base, id_rank, t_tid, t_start, t_end, t_weight, t_once, t0, t1, keys, heap_size[q],
                pos, bend, blast, wend, bbound, present, flag, srt, whole, whole_touched, fbuf, ibuf,
            )  # fmt: skip
            continue
        # Every posting, into an accumulator over the whole sidecar: no bounds to compute.
        n_touched = 0
        for t in range(t0, t1):
            n_touched = _accumulate(
                t_start[t], t_end[t], t_once[t], t_weight[t], docs, s1, tfs, exc_pos, exc_tf, escape, norms,
                cache, whole, whole_touched, n_touched,
            )  # fmt: skip
        heap_size[q] = _collect(
            whole, whole_touched, n_touched, 0, base, id_rank, keys, heap_size[q], fbuf, ibuf, True
        )


@njit(nogil=True, cache=True)
def finish(heap_keys, heap_size, row_of_rank):  # noqa: ANN001, ANN201 - numba signature
    """Sorts each query's heap best first and applies Anserini's tie adjustment.

    Args:
        heap_keys, heap_size: The heaps :func:`rank_source` filled.
        row_of_rank: The row of each id rank (the inverse of ``id_rank``).

    Returns:
        ``(rows, raw scores, adjusted scores, bounds)``: all queries' hits concatenated (int64,
        float32, float32) and where each query's start, plus the end (int64, nq+1).
    """
    nq = heap_size.size
    bounds = np.zeros(nq + 1, np.int64)
    for q in range(nq):
        bounds[q + 1] = bounds[q] + heap_size[q]
    total = bounds[nq]
    rows = np.empty(total, np.int64)
    raw = np.empty(total, np.float32)
    adjusted = np.empty(total, np.float32)
    fbuf = np.empty(1, np.float32)
    ibuf = fbuf.view(np.int32)
    tie = np.float32(1e-4)
    dup_step = np.float32(1e-6)
    for q in range(nq):
        size = heap_size[q]
        ordered = heap_keys[q, :size]
        for i in range(1, size):
            if ordered[i - 1] > ordered[i]:  # a heap; a bulk selection left it sorted already
                ordered = np.sort(ordered)  # distinct keys: ids are unique
                break
        a = bounds[q]
        for i in range(size):
            key = ordered[size - 1 - i]
            rows[a + i] = row_of_rank[0x7FFFFFFF - (key & 0xFFFFFFFF)]
            ibuf[0] = np.int32(key >> 32)
            raw[a + i] = fbuf[0]
        # ScoreTiesAdjusterReranker: (float) (Math.round(s * 1e4) / 1e4) in double, then each score
        # within 1e-4f of the previous adjusted one is lowered by 1e-6f * dup.
        dup = 0
        for i in range(size):
            rounded = np.float32(np.floor(np.float64(raw[a + i]) * 1e4 + 0.5) / 1e4)
            if i > 0 and not (adjusted[a + i - 1] - rounded > tie):
                dup += 1
                adjusted[a + i] = rounded - dup_step * np.float32(dup)
            else:
                dup = 0
                adjusted[a + i] = rounded
    return rows, raw, adjusted, bounds
