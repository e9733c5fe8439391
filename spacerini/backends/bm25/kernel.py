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
* **Queries over long postings can go range by range.** The rows are cut into ranges of
  ``2**bits`` rows (1,024 by default); for each term with many postings, :func:`range_table`
  keeps, per range holding some of them, where they start and their largest
  ``x = tf * cache[norm]``. Such a query sums per range each term's largest possible score there
  (an upper bound of every row's score in the range), scores whole ranges in decreasing order of
  that bound, and stops as soon as a range's bound is *strictly* below the ``n``-th best score
  found so far (the "range-based" form of block-max pruning). Within a range, once the heap is
  full, it applies MaxScore: the terms of smallest range bounds whose bounds sum strictly below
  the ``n``-th score are non-essential (a row holding only them cannot enter), so only the rows
  of the other terms are candidates; each candidate looks the non-essential terms up (binary
  search, largest bound first) and is dropped as soon as its known scores plus the remaining
  bounds fall strictly below the ``n``-th score. Measured on real text this pays off for
  one-term queries only (the callers send only those there, ``prune_terms``); tests force every
  query through it.

Why the answers are exactly the exhaustive ones (same rows, order and float32 scores):

* Each posting's score is Lucene's float32 ``weight - weight / (1 + x)`` (precomputed as ``s1``
  when the term occurs once in the query), and each row sums its term scores in double, in query
  term order, from 0, then rounds to float32: the numpy reference does the same sums in the same
  order.
* A range's bound is built the same way from each term's largest ``x`` in that range. Float32 and
  double rounding are monotonic, and ``weight - weight / (1 + x)`` is non-decreasing in ``x``
  through every rounded step, so a row's score is never above its range's bound (a term the row
  lacks adds 0, below the bound's term). MaxScore's bounds (a row's known scores and the other
  terms' range bounds) are summed in the same query term order, so every partial sum, and the
  float32 rounding, stays at or above the row's own: a row is dropped only when its score is
  strictly below the ``n``-th. Scores themselves are always summed in query term order from 0,
  so a candidate's score equals the exhaustive one bit for bit.
* The best ``n`` are kept in a heap ordered by (score desc, rank of the collection id asc): the
  total order Anserini sorts by. A range is skipped only when its bound is strictly below the
  ``n``-th score (a row scoring exactly that could still win the tie by its id), so no row that
  belongs in the top ``n`` is ever skipped.
* :func:`finish` sorts each heap and applies Anserini's ``ScoreTiesAdjusterReranker`` loop as
  written (4-decimal rounding in double, then ``1e-6f`` per tie in float32).

``tests/backends/test_bm25_kernel.py`` compares the kernel, pruned and exhaustive, with the numpy
reference on random corpora full of ties at k = 1, 10, 100 and 1000, and on a corpus where the
rows skipped by a non-strict test would tie the ``n``-th score and win by id.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, inline="always")
def _x_at(p, d, tfs, exc_pos, exc_tf, escape, norms, cache):  # noqa: ANN001, ANN202 - numba signature
    """``tf * cache[norm]`` of posting ``p`` (row ``d``) in float32, as Lucene's ``BM25Scorer``."""
    tf = np.int64(tfs[p])
    if tf == escape:
        tf = np.int64(exc_tf[np.searchsorted(exc_pos, p)])
    return np.float32(tf) * cache[norms[d]]


@njit(nogil=True, cache=True)
def range_table(offsets, docs, tfs, exc_pos, exc_tf, escape, norms, cache, bits, min_df):  # noqa: ANN001, ANN201
    """Per term with at least ``min_df`` postings: one entry per row range holding its postings.

    Args:
        offsets: Where each term's postings start (int64, V+1).
        docs: Each posting's row, ascending within a term (int32).
        tfs, exc_pos, exc_tf, escape: Each posting's tf (see
            :func:`~spacerini.backends.bm25.scorer.decode_tfs`).
        norms, cache: Each row's norm byte and the float32 norm cache: ``x = tf * cache[norm]``.
        bits: A range holds ``2**bits`` rows.
        min_df: Terms with fewer postings get no entries.

    Returns:
        ``(entry_offsets, range_ids, starts, max_x)``: where each term's entries start (int64, V+1);
        each entry's range (int32), first posting relative to the term's first posting (int32)
        and largest ``x`` (float32).
    """
    terms = offsets.size - 1
    entry_offsets = np.zeros(terms + 1, np.int64)
    for t in range(terms):
        a, b = offsets[t], offsets[t + 1]
        count = 0
        if b - a >= min_df:
            last = -1
            for p in range(a, b):
                r = docs[p] >> bits
                if r != last:
                    count += 1
                    last = r
        entry_offsets[t + 1] = entry_offsets[t] + count
    size = entry_offsets[terms]
    range_ids = np.empty(size, np.int32)
    starts = np.empty(size, np.int32)
    max_x = np.empty(size, np.float32)
    for t in range(terms):
        a, b = offsets[t], offsets[t + 1]
        if b - a < min_df:
            continue
        e = entry_offsets[t] - 1
        last = -1
        for p in range(a, b):
            d = docs[p]
            r = d >> bits
            x = _x_at(p, d, tfs, exc_pos, exc_tf, escape, norms, cache)
            if r != last:
                e += 1
                range_ids[e] = r
                starts[e] = p - a
                max_x[e] = x
                last = r
            elif x > max_x[e]:
                max_x[e] = x
    return entry_offsets, range_ids, starts, max_x


@njit(nogil=True, cache=True)
def scores_once(offsets, idf, docs, tfs, exc_pos, exc_tf, escape, norms, cache):  # noqa: ANN001, ANN201
    """Every posting's score for a term that occurs once in the query (weight = idf), float32.

    The same float32 steps as :func:`rank_source` uses for any weight:
    ``idf - idf / (1 + tf * cache[norm])``.
    """
    one = np.float32(1.0)
    out = np.empty(docs.size, np.float32)
    for t in range(offsets.size - 1):
        w = idf[t]
        for p in range(offsets[t], offsets[t + 1]):
            d = docs[p]
            out[p] = w - w / (one + _x_at(p, d, tfs, exc_pos, exc_tf, escape, norms, cache))
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


@njit(nogil=True, cache=True, inline="always")
def _theta(keys, size, fbuf, ibuf):  # noqa: ANN001, ANN202 - numba signature
    """The ``n``-th best score so far (0 while the heap is not full: every score is > 0)."""
    if size < keys.size:
        return np.float32(0.0)
    ibuf[0] = np.int32(keys[0] >> 32)
    return fbuf[0]


@njit(nogil=True, cache=True)
def rank_source(  # noqa: ANN201, C901, PLR0912, PLR0913, PLR0915 - one kernel, numba signature
    docs, s1, tfs, exc_pos, exc_tf, escape, norms, cache,  # noqa: ANN001
    entry_offsets, range_ids, starts, max_x, bits, n_ranges, n_rows, base, id_rank,  # noqa: ANN001
    q_ptr, t_tid, t_start, t_end, t_weight, t_once, heap_keys, heap_size, prune_min, prune_terms,  # noqa: ANN001
    whole, whole_touched,  # noqa: ANN001
):  # fmt: skip
    """Adds one sidecar's postings to the running top-``n`` heaps of a chunk of queries.

    Args:
        docs, tfs, exc_pos, exc_tf, escape: The sidecar's postings (rows; tfs, see
            :func:`~spacerini.backends.bm25.scorer.decode_tfs`).
        s1: Each posting's score when its term occurs once in the query (:func:`scores_once`).
        norms, cache: Each row's norm byte and the float32 norm cache.
        entry_offsets, range_ids, starts, max_x: Its :func:`range_table`.
        bits: A range holds ``2**bits`` rows.
        n_ranges: Ranges in the sidecar (``ceil(rows / 2**bits)``).
        n_rows: Rows in the sidecar.
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
            ``prune_terms`` terms go range by range, skipping ranges and rows whose bound is
            below the ``n``-th score; the others score every posting (cheaper when the postings
            are few).
        whole, whole_touched: A zeroed float64 accumulator, one slot per row, and an int32
            scratch array of one slot more (the caller reuses them: they are left zeroed).
    """
    one = np.float32(1.0)
    width = 1 << bits
    acc = np.zeros(width, np.float64)
    touched = np.empty(width + 1, np.int32)  # one spare slot: see whole_touched
    ub = np.zeros(n_ranges, np.float64)
    listed = np.empty(n_ranges, np.int32)
    fbuf = np.empty(1, np.float32)
    ibuf = fbuf.view(np.int32)
    max_terms = 1
    for q in range(q_ptr.size - 1):
        max_terms = max(max_terms, min(q_ptr[q + 1] - q_ptr[q], prune_terms))
    # Range-wise MaxScore scratch: per term slot, its score at each row of the range (float32, 0
    # when absent: kept zeroed), its entry in the range, bound, role and lookup cursor.
    sc = np.zeros((max_terms, width), np.float32)
    mark = np.zeros(width, np.uint8)
    pj = np.empty(max_terms, np.int64)
    tb = np.zeros(max_terms, np.float32)
    flag = np.zeros(max_terms, np.uint8)  # 0 essential, 1 non-essential not looked up, 2 looked up
    srt = np.empty(max_terms, np.int64)
    cur = np.empty(max_terms, np.int64)
    for q in range(q_ptr.size - 1):
        t0, t1 = q_ptr[q], q_ptr[q + 1]
        if t0 == t1:
            continue
        keys = heap_keys[q]
        postings = 0
        for t in range(t0, t1):
            postings += t_end[t] - t_start[t]
        if postings < prune_min or t1 - t0 > prune_terms or n_ranges <= 2:
            # Every posting, into an accumulator over the whole sidecar: no bounds to compute.
            n_touched = 0
            for t in range(t0, t1):
                w = t_weight[t]
                once = t_once[t]
                for p in range(t_start[t], t_end[t]):
                    d = docs[p]
                    if once:
                        s = s1[p]
                    else:
                        s = w - w / (one + _x_at(p, d, tfs, exc_pos, exc_tf, escape, norms, cache))
                    v = whole[d]
                    whole_touched[n_touched] = d  # kept only when new (every term score is > 0):
                    n_touched += np.int64(v == 0.0)  # no branch to mispredict
                    whole[d] = v + np.float64(s)
            heap_size[q] = _collect(
                whole, whole_touched, n_touched, 0, base, id_rank, keys, heap_size[q], fbuf, ibuf, True
            )
            continue
        m = t1 - t0
        # Each term's entries (range, first and end posting, score bound): stored ones for long
        # terms, found by scanning the postings of short ones.
        total = 0
        for t in range(t0, t1):
            tid = t_tid[t]
            stored = entry_offsets[tid + 1] - entry_offsets[tid]
            total += stored if stored > 0 else t_end[t] - t_start[t]
        e_ptr = np.empty(m + 1, np.int64)
        e_range = np.empty(total, np.int32)
        e_first = np.empty(total, np.int64)
        e_end = np.empty(total, np.int64)
        e_bound = np.empty(total, np.float32)
        e = 0
        for t in range(t0, t1):
            e_ptr[t - t0] = e
            tid, a, b, w = t_tid[t], t_start[t], t_end[t], t_weight[t]
            lo, hi = entry_offsets[tid], entry_offsets[tid + 1]
            if hi > lo:
                for j in range(lo, hi):
                    e_range[e] = range_ids[j]
                    e_first[e] = a + starts[j]
                    e_end[e] = a + starts[j + 1] if j + 1 < hi else b
                    e_bound[e] = w - w / (one + max_x[j])
                    e += 1
            else:
                last = -1
                for p in range(a, b):
                    d = docs[p]
                    r = d >> bits
                    x = _x_at(p, d, tfs, exc_pos, exc_tf, escape, norms, cache)
                    if r != last:
                        if last >= 0:
                            e_end[e - 1] = p
                        e_range[e] = r
                        e_first[e] = p
                        e_bound[e] = x  # the largest x for now; the bound below
                        e += 1
                        last = r
                    elif x > e_bound[e - 1]:
                        e_bound[e - 1] = x
                if last >= 0:
                    e_end[e - 1] = b
                for j in range(e_ptr[t - t0], e):
                    e_bound[j] = w - w / (one + e_bound[j])
        e_ptr[m] = e
        # Bounds per range, summed like the scores (double, query term order, from 0).
        listed_n = 0
        for t in range(m):
            for j in range(e_ptr[t], e_ptr[t + 1]):
                r = e_range[j]
                if ub[r] == 0.0:
                    listed[listed_n] = r
                    listed_n += 1
                ub[r] += np.float64(e_bound[j])
        ranges = listed[:listed_n].copy()
        order = np.argsort(-ub[ranges])
        # Ranges by decreasing bound; a term's entry for a range is found by binary search (its
        # entries are ascending by range).
        size = heap_size[q]
        n = keys.size
        for i in range(listed_n):
            r = ranges[order[i]]
            theta = _theta(keys, size, fbuf, ibuf)
            if size == n and np.float32(ub[r]) < theta:
                break  # every later range has a lower bound: no row there can enter
            first_row = r << bits
            present = 0
            for t in range(m):
                lo, hi = e_ptr[t], e_ptr[t + 1]
                j = lo + np.searchsorted(e_range[lo:hi], r)
                if j < hi and e_range[j] == r:
                    pj[t] = j
                    tb[t] = e_bound[j]
                    srt[present] = t
                    present += 1
                else:
                    pj[t] = -1
                    tb[t] = 0.0
                flag[t] = 0
            # MaxScore within the range: the terms of smallest bounds whose bounds sum (in query
            # order, as scores are summed) strictly below the n-th score are non-essential: a row
            # holding only them cannot enter, so only rows of the other terms are candidates.
            ne = 0
            if size == n and present >= 2:
                for a_ in range(1, present):  # insertion sort of the present terms by bound
                    v_ = srt[a_]
                    b_ = a_ - 1
                    while b_ >= 0 and tb[srt[b_]] > tb[v_]:
                        srt[b_ + 1] = srt[b_]
                        b_ -= 1
                    srt[b_ + 1] = v_
                for a_ in range(present - 1):  # at least one essential term
                    flag[srt[a_]] = 1
                    bound = 0.0
                    for t in range(m):
                        if flag[t] == 1:
                            bound += np.float64(tb[t])
                    if np.float32(bound) < theta:
                        ne = a_ + 1
                    else:
                        flag[srt[a_]] = 0
                        break
                if ne > 0:
                    # Worth it only when the non-essential terms hold most of the range's postings
                    # (each candidate's lookups cost more than adding a posting).
                    skipped = 0
                    kept = 0
                    for t in range(m):
                        j = pj[t]
                        if j >= 0:
                            if flag[t] == 1:
                                skipped += e_end[j] - e_first[j]
                            else:
                                kept += e_end[j] - e_first[j]
                    if skipped < 4 * kept:
                        for t in range(m):
                            flag[t] = 0
                        ne = 0
            if ne == 0:
                n_touched = 0
                for t in range(m):
                    j = pj[t]
                    if j < 0:
                        continue
                    w = t_weight[t0 + t]
                    once = t_once[t0 + t]
                    for p in range(e_first[j], e_end[j]):
                        row = docs[p]
                        d = row - first_row
                        if once:
                            s = s1[p]
                        else:
                            s = w - w / (one + _x_at(p, row, tfs, exc_pos, exc_tf, escape, norms, cache))
                        v = acc[d]
                        touched[n_touched] = d  # kept only when new (every term score is > 0)
                        n_touched += np.int64(v == 0.0)
                        acc[d] = v + np.float64(s)
                size = _collect(acc, touched, n_touched, first_row, base, id_rank, keys, size, fbuf, ibuf, False)
                continue
            # Candidates: the rows of the essential terms, their scores kept per term.
            n_touched = 0
            for t in range(m):
                j = pj[t]
                if j < 0 or flag[t] != 0:
                    continue
                w = t_weight[t0 + t]
                once = t_once[t0 + t]
                for p in range(e_first[j], e_end[j]):
                    row = docs[p]
                    d = row - first_row
                    if once:
                        sc[t, d] = s1[p]
                    else:
                        sc[t, d] = w - w / (one + _x_at(p, row, tfs, exc_pos, exc_tf, escape, norms, cache))
                    if mark[d] == 0:
                        mark[d] = 1
                        touched[n_touched] = d
                        n_touched += 1
            cand = np.sort(touched[:n_touched])
            for a_ in range(ne):
                cur[srt[a_]] = e_first[pj[srt[a_]]]
            for c in range(n_touched):
                d = cand[c]
                mark[d] = 0
                row = first_row + d
                alive = True
                for a_ in range(ne - 1, -1, -1):  # look the non-essential terms up, largest first
                    # The row's bound: its known scores and the bounds of the terms not looked
                    # up, summed in query order (each >= the score it stands for, so the float
                    # sums and the float32 rounding keep it >= the row's score).
                    bound = 0.0
                    for t in range(m):
                        if pj[t] >= 0:
                            bound += np.float64(tb[t]) if flag[t] == 1 else np.float64(sc[t, d])
                    if np.float32(bound) < _theta(keys, size, fbuf, ibuf):
                        alive = False
                        break
                    t = srt[a_]
                    j = pj[t]
                    k_ = cur[t]
                    end_ = e_end[j]
                    k_ += np.searchsorted(docs[k_:end_], row)
                    cur[t] = k_
                    if k_ < end_ and docs[k_] == row:
                        if t_once[t0 + t]:
                            sc[t, d] = s1[k_]
                        else:
                            w = t_weight[t0 + t]
                            sc[t, d] = w - w / (one + _x_at(k_, row, tfs, exc_pos, exc_tf, escape, norms, cache))
                    flag[t] = 2
                if alive:
                    total_s = 0.0
                    for t in range(m):
                        if pj[t] >= 0:
                            total_s += np.float64(sc[t, d])  # exactly the exhaustive sum
                    score = np.float32(total_s)
                    if not (size == n and score < _theta(keys, size, fbuf, ibuf)):
                        fbuf[0] = score
                        key = (np.int64(ibuf[0]) << 32) | np.int64(0x7FFFFFFF - id_rank[base + row])
                        size = _offer(keys, size, key)
                for a_ in range(ne):
                    flag[srt[a_]] = 1
                for t in range(m):
                    if pj[t] >= 0:
                        sc[t, d] = 0.0
        heap_size[q] = size
        for i in range(listed_n):
            ub[listed[i]] = 0.0


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
