"""The compiled BM25 kernel against the numpy reference: same ids, order and float32 scores.

The corpora are random sidecars (no Java needed) built to be full of ties: few distinct lengths
and term frequencies, so many rows score exactly alike, and ids whose byte order is unrelated to
the row order, so the tie-break by id matters. Small blocks (4 postings) and windows make the
block-max pruning skip a lot; :func:`_force_pruning` sends every query through it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spacerini.backends.bm25 import kernel
from spacerini.backends.bm25 import scorer as sc
from spacerini.backends.bm25.scorer import ExactScorer, ShardedScorer, merge_doc_freqs, write_sidecar


def _force_pruning(scorer, *, window_bits: int = 0, at_least: int = 0, terms: int = 99) -> None:
    """Sends every query (with at least ``at_least`` postings, at most ``terms`` terms, any ``n``)
    down the block-max path."""
    scorer.prune = True
    scorer.PRUNE_MIN_POSTINGS, scorer.PRUNE_MAX_TERMS, scorer.PRUNE_MAX_HITS = at_least, terms, 10**9
    scorer.WINDOW_BITS = window_bits


def _corpus(rng: np.random.Generator, rows: int, terms: int) -> dict:
    """Random postings: Zipf-like document frequencies, tf in 1..3, a few row lengths."""
    vocab = [f"t{i:05d}".encode() for i in range(terms)]
    dfs = np.minimum(
        rows, (rows / (1 + np.arange(terms)) ** 0.9 * rng.uniform(0.3, 1.0, terms)).astype(int) + 1
    )
    tids, docs, tfs = [], [], []
    for t, df in enumerate(dfs.tolist()):
        chosen = np.sort(rng.choice(rows, size=df, replace=False))
        tids.append(np.full(df, t, dtype=np.int32))
        docs.append(chosen.astype(np.int32))
        tfs.append(rng.choice([1, 1, 1, 2, 3], size=df).astype(np.int32))
    tids_a, docs_a, tfs_a = np.concatenate(tids), np.concatenate(docs), np.concatenate(tfs)
    # Lengths: the sum of the tfs plus padding from a few values, so norms repeat (ties).
    lengths = np.bincount(docs_a, weights=tfs_a, minlength=rows).astype(np.int64)
    lengths += rng.choice([0, 5, 40], size=rows)
    ids = [f"d{v}".encode() for v in rng.permutation(rows * 7)[:rows].tolist()]
    return {"ids": ids, "lengths": lengths, "terms": vocab, "tids": tids_a, "tfs": tfs_a, "rows": docs_a}


def _write(folder, corpus: dict, lo: int, hi: int) -> None:
    keep = (corpus["rows"] >= lo) & (corpus["rows"] < hi)
    write_sidecar(
        folder, k1=0.9, b=0.4, ids=corpus["ids"][lo:hi], lengths=corpus["lengths"][lo:hi],
        terms=corpus["terms"], tids=corpus["tids"][keep], tfs=corpus["tfs"][keep],
        rows=corpus["rows"][keep] - lo,
    )  # fmt: skip


def _queries(rng: np.random.Generator, terms: int, count: int) -> list[list[tuple[str, int]]]:
    out = []
    for _ in range(count):
        size = int(rng.integers(1, 7))
        # Mostly frequent terms (long postings), some rare and some unknown ones.
        picked = {int(min(terms + 5, rng.zipf(1.3) - 1)) for _ in range(size)}
        out.append([(f"t{t:05d}", int(rng.choice([1, 1, 1, 2, 3]))) for t in sorted(picked)])
    return out


@pytest.fixture(scope="module")
def sidecars(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(sc, "BLOCK_BITS", 2)
    try:
        rng = np.random.default_rng(11)
        corpus = _corpus(rng, rows=3000, terms=400)
        root = tmp_path_factory.mktemp("kernel")
        _write(root / "one", corpus, 0, 3000)
        cuts = [0, 700, 701, 2100, 3000]
        for i, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
            _write(root / f"shard{i}", corpus, lo, hi)
        queries = _queries(rng, 400, 300)
        yield root, len(cuts) - 1, queries
    finally:
        mp.undo()


def _reference(scorer, queries, n):
    scorer.use_kernel = False
    try:
        return scorer.rank_many(queries, n)
    finally:
        del scorer.use_kernel


@pytest.mark.parametrize("n", [1, 10, 100, 1000])
def test_kernel_equals_numpy_reference(sidecars, n):
    root, _, queries = sidecars
    scorer = ExactScorer(root / "one")
    assert scorer.meta["format"] == 3
    want = _reference(scorer, queries, n)
    assert sum(1 for ids, _ in want if ids) > 0.9 * len(queries)  # not all empty
    pruned = 0
    for window_bits, at_least, terms in ((0, 0, 99), (5, 0, 99), (0, 64, 99), (0, 0, 1)):
        # 0 postings, 99 terms: every query takes the pruned path (windows of one block, or of at
        # least 32 rows); 64: small queries score every posting instead; 1 term: only one-term
        # queries are pruned.
        _force_pruning(scorer, window_bits=window_bits, at_least=at_least, terms=terms)
        assert scorer.rank_many(queries, n) == want, (window_bits, at_least, terms)
        pruned += 1
    scorer.prune = False
    assert scorer.rank_many(queries, n) == want
    # The default policy (pruned at k <= PRUNE_MAX_HITS) ranks alike.
    del (
        scorer.prune,
        scorer.PRUNE_MIN_POSTINGS,
        scorer.PRUNE_MAX_TERMS,
        scorer.PRUNE_MAX_HITS,
        scorer.WINDOW_BITS,
    )
    assert scorer.rank_many(queries, n) == want
    assert pruned == 4
    # ... and one query at a time (the reference the numpy batch path is tested against).
    for counts, (ids, scores) in zip(queries[:60], want[:60], strict=True):
        rows, raw = scorer.score(counts)
        rows, adjusted = scorer.top(rows, raw, n)
        assert (ids, scores) == (scorer.docids(rows), adjusted.tolist())


def test_ties_are_common_in_the_random_corpus(sidecars):
    """The corpus really tests the tie-break: many top lists hold equal raw scores."""
    root, _, queries = sidecars
    scorer = ExactScorer(root / "one")
    tied = 0
    for counts in queries[:100]:
        _, raw = scorer.score(counts)
        top = np.sort(raw)[::-1][:100]
        tied += int(np.unique(top).size < top.size)
    assert tied > 50


@pytest.mark.parametrize("n", [1, 10, 100, 1000])
def test_sharded_kernel_equals_single_index(sidecars, n):
    root, shards, queries = sidecars
    single = ExactScorer(root / "one")
    parts = [ExactScorer(root / f"shard{i}") for i in range(shards)]
    doc_count = sum(p.doc_count for p in parts)
    total_tf = sum(int(p.meta["sum_total_term_freq"]) for p in parts)
    for part, dfs in zip(parts, merge_doc_freqs([p.vocabulary() for p in parts]), strict=True):
        part.use_global_stats(doc_count=doc_count, sum_total_term_freq=total_tf, doc_freqs=dfs, log=math.log)
    sharded = ShardedScorer(parts)
    want = _reference(single, queries, n)
    for at_least in (0, 10**9):
        _force_pruning(sharded, at_least=at_least)
        assert sharded.rank_many(queries, n) == want, at_least
    assert _reference(sharded, queries, n) == want


def test_block_table_equals_a_direct_computation(sidecars):
    root, _, _ = sidecars
    scorer = ExactScorer(root / "one")
    block_offsets, max_x, bits, term_min_x, term_max_x = scorer.block_table()
    assert bits == 2
    dfs = np.diff(scorer.offsets)
    assert block_offsets.tolist() == np.concatenate([[0], np.cumsum((dfs + 3) // 4)]).tolist()
    for tid in range(dfs.size):
        a, b = int(scorer.offsets[tid]), int(scorer.offsets[tid + 1])
        x = scorer.x_of(a, b)
        want = np.maximum.reduceat(x, np.arange(0, b - a, 4)) if b > a else x[:0]
        assert max_x[block_offsets[tid] : block_offsets[tid + 1]].tolist() == want.tolist()
        assert (term_min_x[tid], term_max_x[tid]) == (x.min(), x.max())


def test_kernel_from_threads_gives_the_same_answers(sidecars):
    from concurrent.futures import ThreadPoolExecutor

    root, _, queries = sidecars
    scorer = ExactScorer(root / "one")
    _force_pruning(scorer)
    want = _reference(scorer, queries, 10)
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda i: scorer.rank_many(queries[i::4], 10), range(4)))
    for i, part in enumerate(parts):
        assert part == want[i::4]


@pytest.mark.parametrize("window_bits", [0, 6])
def test_pruning_keeps_rows_tied_with_the_nth_score(tmp_path, monkeypatch, window_bits):
    """Rows whose bound, or score, merely equals the n-th score can win by id: never skipped.

    Every row has term ``a`` once and the same length, so ``a`` alone gives every row one score;
    ``b`` (rarer: a higher score) is in 40 rows, which all score alike. For ``a b`` with ``n`` >
    40 the heap holds the ``b`` rows and the n-th score becomes ``a``'s: every later row ties it
    (a window holding only ``a`` has exactly that bound; in a window with ``b``, ``a``'s bound
    equals it), and which of them belong in the top ``n`` depends only on their ids. With ``n`` <
    40 the n-th score is that of ``a b``: later ``b`` rows tie it exactly when ``a`` (then
    non-essential) is added. Making any of the kernel's tests (window skipped, term
    non-essential, row dropped, row offered) non-strict drops such rows and fails this test.
    """
    monkeypatch.setattr(sc, "BLOCK_BITS", 2)
    rng = np.random.default_rng(5)
    rows = 2000
    b_rows = np.sort(rng.choice(rows, size=40, replace=False)).astype(np.int32)
    c_rows = np.sort(rng.choice(rows, size=300, replace=False)).astype(np.int32)
    tids = np.concatenate([np.zeros(rows, np.int32), np.ones(40, np.int32), np.full(300, 2, np.int32)])
    docs = np.concatenate([np.arange(rows, dtype=np.int32), b_rows, c_rows])
    tfs = np.ones(docs.size, dtype=np.int32)
    ids = [f"d{v}".encode() for v in rng.permutation(rows * 5)[:rows].tolist()]
    write_sidecar(
        tmp_path, k1=0.9, b=0.4, ids=ids, lengths=np.full(rows, 3, dtype=np.int64), terms=[b"a", b"b", b"c"],
        tids=tids, tfs=tfs, rows=docs,
    )  # fmt: skip
    scorer = ExactScorer(tmp_path)
    _force_pruning(scorer, window_bits=window_bits)
    queries = [
        [("a", 1), ("b", 1)],
        [("b", 1), ("a", 1)],
        [("a", 1), ("b", 1), ("c", 1)],
        [("c", 2), ("a", 1)],
    ]
    for n in (5, 50, 60, 500):
        want = _reference(scorer, queries, n)
        assert scorer.rank_many(queries, n) == want, n


def test_queries_whose_sums_could_round_score_every_posting(tmp_path, monkeypatch):
    """The pruned path adds a row's term scores in any order, so it takes only queries whose sums
    are exact in double (:func:`~spacerini.backends.bm25.kernel.sums_are_exact`); others, here a
    term in every row (idf ~5e-5) meeting a row 10^4 times the average length next to a rare
    term in short rows (scores ~1e-8 to ~6), are scored in query order, and rank alike."""
    monkeypatch.setattr(sc, "BLOCK_BITS", 2)
    rows = 10_000
    rng = np.random.default_rng(2)
    rare = np.sort(rng.choice(np.arange(1, rows), size=30, replace=False)).astype(np.int32)
    mid = np.sort(rng.choice(np.arange(1, rows), size=500, replace=False)).astype(np.int32)
    tids = np.concatenate(
        [np.zeros(rows, np.int32), np.ones(rare.size, np.int32), np.full(mid.size, 2, np.int32)]
    )
    docs = np.concatenate([np.arange(rows, dtype=np.int32), rare, mid])
    tfs = np.concatenate(
        [np.ones(rows, np.int32), np.full(rare.size, 3, np.int32), np.ones(mid.size, np.int32)]
    )
    lengths = np.full(rows, 4, dtype=np.int64)
    lengths[0] = 10**9  # row 0: only the common term, once, in a huge row
    ids = [f"d{v}".encode() for v in rng.permutation(rows)]
    write_sidecar(
        tmp_path, k1=0.9, b=0.4, ids=ids, lengths=lengths, terms=[b"all", b"rare", b"some"], tids=tids, tfs=tfs,
        rows=docs,
    )  # fmt: skip
    scorer = ExactScorer(tmp_path)
    _force_pruning(scorer)
    offsets, max_x, _, min_x, top_x = scorer.block_table()
    idf = np.asarray(scorer.idf)

    def exact(term_ids) -> bool:
        t = np.asarray(term_ids, dtype=np.int64)
        return kernel.sums_are_exact(
            0, t.size, t, scorer.offsets[t], scorer.offsets[t + 1], idf[t], min_x, top_x
        )

    assert not exact([0, 1, 2]) and not exact([1, 0])
    assert exact([1, 2]) and exact([0])  # one term: nothing to add up
    queries = [[("all", 1), ("rare", 1), ("some", 1)], [("rare", 1), ("all", 1)], [("rare", 1), ("some", 2)]]
    for n in (1, 10, 100):
        assert scorer.rank_many(queries, n) == _reference(scorer, queries, n), n


def _as_format_1(folder) -> None:
    """Rewrites a format-3 sidecar as format 1 wrote it: int32 tfs, float columns, no exceptions."""
    import json

    ex = ExactScorer(folder)
    tfs = sc.decode_tfs(np.asarray(ex.tfs), 0, ex.tf_exc_pos, ex.tf_exc, ex.tf_escape)
    x = ex.x_of(0, int(ex.offsets[-1]))
    weight = np.repeat(np.asarray(ex.idf), np.diff(ex.offsets))
    np.save(folder / "post_tfs.npy", tfs)
    for name in ("post_offsets", "terms_offsets", "ids_offsets", "lengths"):  # format 1: all int64
        np.save(folder / f"{name}.npy", np.load(folder / f"{name}.npy").astype(np.int64))
    np.save(folder / "post_x.npy", x)
    np.save(folder / "post_s1.npy", (weight - weight / (np.float32(1) + x)).astype(np.float32))
    (folder / "post_tf_exc_pos.npy").unlink()
    (folder / "post_tf_exc.npy").unlink()
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format": 1}))


def test_large_tfs_and_older_formats_score_alike(tmp_path, monkeypatch):
    """tfs >= 255 go through the exception list; a format-1 sidecar (int32 tfs) ranks the same."""
    monkeypatch.setattr(sc, "BLOCK_BITS", 2)
    rng = np.random.default_rng(3)
    corpus = _corpus(rng, rows=800, terms=120)
    big = rng.random(corpus["tfs"].size) < 0.05
    corpus["tfs"][big] = rng.choice([254, 255, 256, 300, 70_000], size=int(big.sum()))
    corpus["lengths"] = np.bincount(corpus["rows"], weights=corpus["tfs"], minlength=800).astype(np.int64) + 1
    _write(tmp_path / "new", corpus, 0, 800)
    _write(tmp_path / "old", corpus, 0, 800)
    _as_format_1(tmp_path / "old")
    new, old = ExactScorer(tmp_path / "new"), ExactScorer(tmp_path / "old")
    assert new.tfs.dtype == np.uint8 and 0 < new.tf_exc.size < big.sum() + 1
    assert old.meta["format"] == 1 and old.tfs.dtype == np.int32
    # Offsets are stored narrow when they fit and always read as int64.
    assert np.load(tmp_path / "new" / "post_offsets.npy").dtype == np.int32
    assert np.load(tmp_path / "old" / "post_offsets.npy").dtype == np.int64
    assert new.offsets.dtype == old.offsets.dtype == np.int64 and np.array_equal(new.offsets, old.offsets)
    assert [new.docid(i) for i in range(800)] == [old.docid(i) for i in range(800)]
    codes = np.asarray(new.tfs)
    assert (
        sc.decode_tfs(codes, 0, new.tf_exc_pos, new.tf_exc, new.tf_escape).tolist()
        == np.asarray(old.tfs).tolist()
    )
    assert sorted(np.asarray(old.tfs).tolist()) == sorted(corpus["tfs"].tolist())
    # The stored floats of format 1 are what the cache gives.
    assert np.array_equal(new.x_of(0, int(new.offsets[-1])), np.load(tmp_path / "old" / "post_x.npy"))
    queries = _queries(rng, 120, 200)
    for n in (1, 10, 100):
        want = _reference(new, queries, n)
        assert _reference(old, queries, n) == want
        for scorer in (new, old):
            _force_pruning(scorer)
            assert scorer.rank_many(queries, n) == want


def test_an_unknown_sidecar_format_is_one_clear_error(tmp_path):
    import json

    rng = np.random.default_rng(1)
    _write(tmp_path, _corpus(rng, rows=50, terms=10), 0, 50)
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ValueError, match=r"sidecar format 99 .*rebuild the bundle"):
        ExactScorer(tmp_path)


@pytest.mark.parametrize("n", [1, 10, 1000])
@pytest.mark.parametrize("chunks", [2, 7])
def test_ranking_on_numba_threads_equals_one_thread(sidecars, monkeypatch, n, chunks):
    """Query ranges ranked at once (``rank_source_parallel``; 7 ranges: uneven, more than the
    threads) give the one-thread hits, pruned or not, on one sidecar and on shards."""
    root, shards, queries = sidecars
    launches = []
    run = sc._run_parallel
    monkeypatch.setattr(sc, "PARALLEL_MIN_QUERIES", 1)
    monkeypatch.setattr(sc, "parallel_threads", lambda threads: chunks if threads > 1 else 1)
    monkeypatch.setattr(sc, "_run_parallel", lambda *a, **k: launches.append(1) or run(*a, **k))
    one = ExactScorer(root / "one")
    sharded = ShardedScorer([ExactScorer(root / f"shard{i}") for i in range(shards)])
    for scorer in (one, sharded):
        for prune in (True, False):
            scorer.prune = prune
            if prune:
                _force_pruning(scorer, window_bits=0)
            want = scorer.rank_arrays(queries, n)
            got = scorer.rank_arrays(queries, n, threads=2)
            for a, b in zip(want, got, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b), (type(scorer).__name__, prune)
    assert len(launches) >= 4
