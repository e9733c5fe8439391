"""Sharded BM25: N shards searched with global statistics answer exactly as one index does."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from bm25_data import CODE, CODE_QUERIES, CORPUS, QUERIES

from spacerini.backends import bm25
from spacerini.backends.bm25.scorer import (
    Vocabulary,
    _merge_doc_freqs_by_bytes,
    merge_doc_freqs,
    term_hash,
)
from spacerini.errors import BundleCorruptError, BundleError, QueryError
from spacerini.eval import trec_lines
from spacerini.records import Doc

SPLITS = (1, 3, 7)


def _read_docs(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as handle:
        return [Doc(id=r["id"], text=r["contents"]) for r in map(json.loads, handle)]


def _queries() -> list[tuple[str, str]]:
    return [tuple(line.split("\t", 1)) for line in QUERIES.read_text(encoding="utf-8").splitlines()]


def _ranges(total: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous row ranges, as a bundle cuts its docstore into shards."""
    cuts = [round(i * total / parts) for i in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _build_shards(docs: list[Doc], root: Path, parts: int, **options) -> tuple[list[Path], list[dict]]:
    folders, reports = [], []
    for i, (a, b) in enumerate(_ranges(len(docs), parts)):
        folder = root / f"shard{i:02d}"
        chunk = docs[a:b]
        report = bm25.build(lambda chunk=chunk: iter(chunk), folder, threads=1, progress=False, **options)
        folders.append(folder)
        reports.append(report.to_dict())
    return folders, reports


def _jc(name: str):
    from spacerini.java import autoclass

    return autoclass(name)


def _anserini_lines(
    index: Path, topics: list[tuple[str, str]], out: Path, *, extra: list[str] = ()
) -> list[str]:
    """Raw Anserini SearchCollection (-bm25, 1000 hits) on ``index``, in this JVM: its run's lines."""
    tsv = out.with_suffix(".tsv")
    tsv.write_text("".join(f"{q}\t{t}\n" for q, t in topics), encoding="utf-8")
    args = ["-index", str(index), "-topics", str(tsv), "-topicReader", "TsvString", "-output", str(out)]
    args += ["-bm25", "-hits", "1000", "-quiet", *extra]
    _jc("io.anserini.search.SearchCollection").main(args)
    # Anserini writes topics in its own order; ours follow the input: compare per query, in rank order.
    by_qid: dict[str, list[str]] = defaultdict(list)
    for line in out.read_text(encoding="utf-8").splitlines():
        by_qid[line.split(" ", 1)[0]].append(line)
    return [line for qid, _ in topics for line in by_qid.get(qid, [])]


def _lines(results) -> list[str]:
    return list(trec_lines(results, tag="Anserini"))


@pytest.fixture(scope="module")
def en(tmp_path_factory):
    """The English corpus as 1, 3 and 7 shards: {parts: (folders, reports)}."""
    docs = _read_docs(CORPUS)
    root = tmp_path_factory.mktemp("shards_en")
    return {n: _build_shards(docs, root / str(n), n) for n in SPLITS}


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    docs = _read_docs(CODE)
    root = tmp_path_factory.mktemp("shards_code")
    return {n: _build_shards(docs, root / str(n), n, analyzer="code") for n in SPLITS}


@pytest.fixture(scope="module")
def en_searchers(en):
    """{parts: ShardedBM25Searcher} plus the unsharded BM25Searcher under key 0."""
    searchers = {n: bm25.open_shards(*en[n]) for n in SPLITS}
    searchers[0] = bm25.open(en[1][0][0], en[1][1][0])
    yield searchers
    for s in searchers.values():
        s.close()


# -- THE test: every shard count gives the single index's run, which is raw Anserini's ------------------
def test_trec_runs_at_1000_equal_across_shard_counts_and_anserini(en, en_searchers, tmp_path):
    topics = _queries()
    anserini = _anserini_lines(en[1][0][0], topics, tmp_path / "anserini.run")
    assert len(anserini) > 2000
    unsharded = en_searchers[0].batch_search_pairs(topics, k=1000)
    for n in SPLITS:
        searcher = en_searchers[n]
        pairs = searcher.batch_search_pairs(topics, k=1000, threads=1)
        assert _lines(pairs) == anserini, n
        assert pairs == unsharded, n  # the float scores themselves, not only their printed form
        hits = searcher.batch_search(topics, k=1000, threads=2)
        assert _lines(hits) == anserini, n
        assert all(h.rank == i for hs in hits.values() for i, h in enumerate(hs, 1))
    assert unsharded["q42"] == []  # stopwords only


def test_code_runs_equal_across_shard_counts_and_anserini_pretokenized(code, tmp_path):
    topics = [(q, bm25.code_tokens(t)) for q, t in CODE_QUERIES]
    anserini = _anserini_lines(code[1][0][0], topics, tmp_path / "anserini.run", extra=["-pretokenized"])
    assert len(anserini) > 50
    for n in SPLITS:
        with bm25.open_shards(*code[n]) as searcher:
            assert _lines(searcher.batch_search_pairs(CODE_QUERIES, k=1000)) == anserini, n


def test_shards_really_differ_from_their_own_statistics(en, en_searchers):
    """A shard searched alone (its own statistics) matches the same documents with other scores:
    the global statistics are what make the shards agree with the single index."""
    folders, reports = en[3]
    topics = _queries()
    with bm25.open(folders[0], reports[0]) as alone:
        local = alone.batch_search_pairs(topics, k=1000)
    in_shard = {d.id for d in _shard_docs(3, 0)}
    merged = en_searchers[3].batch_search_pairs(topics, k=1000)
    differing = 0
    for qid, _ in topics:
        ours = dict(p for p in merged[qid] if p[0] in in_shard)
        theirs = dict(local[qid])
        assert ours.keys() == theirs.keys(), qid
        differing += any(ours[d] != theirs[d] for d in ours)
    assert differing > 20


def test_pages_equal_slices_of_the_k30_list(en_searchers):
    for n in (1, 3, 7):
        searcher = en_searchers[n]
        for _, text in _queries()[:25]:
            if not searcher.analyze(text):
                continue
            full = searcher.search(text, k=30)
            assert full == en_searchers[0].search(text, k=30), (n, text)
            for offset in (0, 10, 20):
                page = searcher.search(text, k=10, offset=offset)
                assert page == full[offset : offset + 10], (n, text, offset)
                assert [h.rank for h in page] == list(range(offset + 1, offset + 1 + len(page)))


def test_ties_across_shards_break_by_id_byte_order(en, en_searchers):
    text = next(d.text for d in _read_docs(CORPUS) if d.id == "doc0003")
    ids = ["Doc-B", "Zeta", "doc-a", "doc0003"]
    rows = [i for i, d in enumerate(_read_docs(CORPUS)) if d.id in ids]
    shard_of = {r: next(s for s, (a, b) in enumerate(_ranges(204, 3)) if a <= r < b) for r in rows}
    assert len(set(shard_of.values())) == 2  # the tie really spans shards
    for n in SPLITS:
        hits = en_searchers[n].search(text, k=6)
        assert [h.docid for h in hits[:4]] == ids, n
        assert hits == en_searchers[0].search(text, k=6), n
        assert hits[1].score == float(np.float32(hits[0].score) - np.float32(1e-6))


# -- edge cases ----------------------------------------------------------------------------------------
def _shard_docs(parts: int, shard: int) -> list[Doc]:
    a, b = _ranges(204, parts)[shard]
    return _read_docs(CORPUS)[a:b]


def test_a_term_in_one_shard_and_shards_without_a_match(en, en_searchers):
    searcher = en_searchers[3]
    shards = searcher._exact.shards
    # Terms that only the middle shard holds (looked up in each shard's own vocabulary).
    vocab = shards[1].vocabulary()
    only_middle = []
    for tid in range(vocab.doc_freqs.size):
        term = vocab.term(tid).decode()
        if term.isalpha() and all(s.doc_freq(term) == 0 for s in (shards[0], shards[2])):
            only_middle.append(term)
    assert len(only_middle) >= 2
    term = only_middle[0]
    for query in (term, f"{term} {only_middle[1]}", f"{term} retrieval search"):
        got = searcher.search(query, k=50)
        assert got, query
        assert got == en_searchers[0].search(query, k=50), query
        assert got == en_searchers[7].search(query, k=50), query
    # Shards 0 and 2 match nothing for the term alone: every hit is the middle shard's.
    in_middle = {d.id for d in _shard_docs(3, 1)}
    hits = searcher.search(term, k=50)
    assert {h.docid for h in hits} <= in_middle
    assert len(hits) == shards[1].doc_freq(term) == en_searchers[0]._exact.doc_freq(term)
    # Its idf is the collection's: the middle shard alone gives another score.
    with bm25.open(en[3][0][1], en[3][1][1]) as alone:
        assert alone.search(term, k=1)[0].score != hits[0].score


def test_query_errors_equal_unsharded(en_searchers):
    sharded, single = en_searchers[3], en_searchers[0]
    for bad in ("", "   "):
        with pytest.raises(QueryError) as theirs:
            single.search(bad)
        with pytest.raises(QueryError) as ours:
            sharded.search(bad)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(QueryError):
        sharded.batch_search([("q1", "search"), ("q2", " ")])
    too_many = " ".join(f"w{i}x" for i in range(bm25.MAX_QUERY_TERMS + 1))
    with pytest.raises(QueryError, match="1,024"):
        sharded.search(too_many)
    assert sharded.search("the of and") == [] == single.search("the of and")
    assert sharded.search("xyzzy notaword") == []
    assert sharded.search("search", k=0) == []
    assert sharded.batch_search_pairs([("a", "the of"), ("b", "search engine")], k=5)["a"] == []


def test_shards_built_with_other_parameters_are_refused(en, tmp_path):
    folders, reports = en[3]
    docs = _shard_docs(3, 2)
    other = tmp_path / "k1"
    report = bm25.build(lambda: iter(docs), other, threads=1, progress=False, k1=1.2)
    with pytest.raises(BundleCorruptError, match="k1"):
        bm25.open_shards([*folders[:2], other], [*reports[:2], report.to_dict()])
    coded = tmp_path / "code"
    report = bm25.build(lambda: iter(docs), coded, threads=1, progress=False, analyzer="code")
    with pytest.raises(BundleCorruptError, match="analyzer"):
        bm25.open_shards([*folders[:2], coded], [*reports[:2], report.to_dict()])
    # A report that lies about the shard's parameters is refused too.
    lying = dict(reports[2], params=dict(reports[2]["params"], b=0.75))
    with pytest.raises(BundleCorruptError, match="manifest"):
        bm25.open_shards(folders, [*reports[:2], lying])


def test_bad_shard_lists_are_refused(en, tmp_path):
    folders, reports = en[3]
    with pytest.raises(BundleError, match="at least one"):
        bm25.open_shards([], [])
    with pytest.raises(BundleError, match="reports"):
        bm25.open_shards(folders, reports[:2])
    with pytest.raises(BundleError, match="exact"):
        bm25.open_shards(folders, reports, scorer="lucene")
    with pytest.raises(BundleCorruptError, match="is in two shards"):
        bm25.open_shards([folders[0], folders[0]], [reports[0], reports[0]])
    with pytest.raises(BundleCorruptError, match="missing"):
        bm25.open_shards([*folders[:2], tmp_path / "nowhere"], reports)


def test_worker_threads_give_the_same_answers(en_searchers):
    topics = _queries()
    want = en_searchers[0].batch_search_pairs(topics, k=100)
    for threads in (2, 3):
        assert en_searchers[7].batch_search_pairs(topics, k=100, threads=threads) == want
        assert _lines(en_searchers[7].batch_search(topics, k=100, threads=threads)) == _lines(want)


@pytest.mark.parametrize("mode", ["dense", "sparse", "chunked"])
def test_every_ranking_path_equals_unsharded(en_searchers, monkeypatch, mode):
    """The dense (bincount over all cells), sparse (np.unique) and chunked paths over shards."""
    sharded = en_searchers[7]._exact
    if mode == "dense":
        monkeypatch.setattr(sharded, "DENSE_RATIO", 10**9)
    elif mode == "sparse":
        monkeypatch.setattr(sharded, "DENSE_RATIO", 0)
    else:
        monkeypatch.setattr(sharded, "DENSE_CELLS", sharded.rows * 3)
    texts = [t for _, t in _queries()]
    texts += [d.text[:300] for d in _read_docs(CORPUS)][:40]  # long queries, many ties
    counts = [en_searchers[0]._count_terms(en_searchers[0].analyze(t)) for t in texts]
    single = en_searchers[0]._exact
    for n in (1, 3, 10, 1000):
        assert sharded.rank_many(counts, n) == single.rank_many(counts, n), n


def test_snippets_and_analysis_equal_unsharded(en_searchers):
    text = 'Use <b>bold</b> & "quotes" in HTML for the searching engines.'
    assert en_searchers[7].snippet("search engine", text) == en_searchers[0].snippet("search engine", text)
    assert en_searchers[7].analyze("The Running RUNS") == ["run", "run"]


# -- statistics ----------------------------------------------------------------------------------------
def test_shard_stats_sum_to_the_single_index(en):
    single = bm25.shard_stats(en[1][0][0], en[1][1][0])
    assert single["doc_count"] == 203 and single["rows"] == 204
    assert single["sum_total_term_freq"] == en[1][1][0]["stats"]["sum_total_term_freq"]
    for n in (3, 7):
        parts = [bm25.shard_stats(f, r) for f, r in zip(*en[n], strict=True)]
        for key in ("rows", "doc_count", "sum_total_term_freq", "sum_doc_freq"):
            assert sum(p[key] for p in parts) == single[key], (n, key)
        assert {(p["analyzer"], p["k1"], p["b"]) for p in parts} == {("en", 0.9, 0.4)}
        assert sum(p["terms"] for p in parts) > single["terms"]  # shards share terms


def test_global_doc_freqs_equal_the_single_index(en, en_searchers):
    single = en_searchers[0]._exact
    for n in (3, 7):
        vocabs = [bm25.shard_stats(f, r)["vocabulary"] for f, r in zip(*en[n], strict=True)]
        merged = merge_doc_freqs(vocabs)
        reference = _merge_doc_freqs_by_bytes(vocabs)
        checked = 0
        for vocab, dfs, ref in zip(vocabs, merged, reference, strict=True):
            assert dfs.tolist() == ref.tolist()
            for tid in range(vocab.doc_freqs.size):
                assert dfs[tid] == single.doc_freq(vocab.term(tid).decode()), vocab.term(tid)
                checked += 1
        assert checked > 100


def _vocab(terms: list[bytes], dfs: list[int], hashes: list[int] | None = None) -> Vocabulary:
    hashes = [term_hash(t) for t in terms] if hashes is None else hashes
    order = np.argsort(np.asarray(hashes, dtype=np.uint64), kind="stable")
    offsets = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in terms], out=offsets[1:])
    return Vocabulary(
        hashes=np.asarray(hashes, dtype=np.uint64)[order],
        hash_ids=order.astype(np.int32),
        doc_freqs=np.asarray(dfs, dtype=np.int64),
        blob=np.frombuffer(b"".join(terms), dtype=np.uint8),
        offsets=offsets,
    )


def test_merge_doc_freqs_never_trusts_a_hash_alone():
    a = _vocab([b"alpha", b"beta", b"gamma"], [3, 1, 2])
    b = _vocab([b"beta", b"delta"], [4, 5])
    assert [x.tolist() for x in merge_doc_freqs([a, b])] == [[3, 5, 2], [5, 5]]
    # "delta" given the hash of "alpha": a collision, so the terms must not be summed.
    b2 = _vocab([b"beta", b"delta"], [4, 5], hashes=[term_hash(b"beta"), term_hash(b"alpha")])
    assert [x.tolist() for x in merge_doc_freqs([a, b2])] == [[3, 5, 2], [5, 5]]
    # Same hash, same length, other bytes.
    b3 = _vocab([b"alphx"], [9], hashes=[term_hash(b"alpha")])
    assert [x.tolist() for x in merge_doc_freqs([a, b3])] == [[3, 1, 2], [9]]
    empty = _vocab([], [])
    assert [x.tolist() for x in merge_doc_freqs([a, empty])] == [[3, 1, 2], []]
    assert [x.tolist() for x in merge_doc_freqs([empty, empty])] == [[], []]


def test_a_searcher_still_works_after_another_one_opens(en):
    """Every shard searcher opens its own analyzer; a JNI method bound by the first must survive
    the second (it used to be freed under it: a segmentation fault at the first's next snippet)."""
    text = 'Use <b>bold</b> & "quotes" in HTML for the searching engines.'
    first = bm25.open(en[1][0][0], en[1][1][0])
    second = bm25.open_shards(*en[3])
    try:
        assert "<mark>searching</mark>" in first.snippet("search engine", text)
        assert first.analyze("The Running RUNS") == ["run", "run"]
        assert second.snippet("search engine", text) == first.snippet("search engine", text)
    finally:
        second.close()
        first.close()


def test_a_shard_without_any_term(tmp_path):
    """A shard whose documents are blank or stopwords only contributes rows and nothing else."""
    a = [Doc("a1", "alpha beta"), Doc("a2", "beta gamma beta")]
    b = [Doc("b1", "   "), Doc("b2", "the of and")]
    ra = bm25.build(lambda: iter(a), tmp_path / "a", progress=False)
    rb = bm25.build(lambda: iter(b), tmp_path / "b", progress=False)
    rs = bm25.build(lambda: iter(a + b), tmp_path / "s", progress=False)
    stats = bm25.shard_stats(tmp_path / "b", rb.to_dict())
    assert (stats["rows"], stats["doc_count"], stats["terms"], stats["sum_total_term_freq"]) == (2, 0, 0, 0)
    with (
        bm25.open_shards([tmp_path / "a", tmp_path / "b"], [ra.to_dict(), rb.to_dict()]) as sharded,
        bm25.open(tmp_path / "s", rs.to_dict()) as single,
    ):
        for query in ("beta alpha", "gamma", "of"):
            assert sharded.search(query, k=5) == single.search(query, k=5), query
        assert [h.docid for h in sharded.search("beta", k=5)] == ["a2", "a1"]
