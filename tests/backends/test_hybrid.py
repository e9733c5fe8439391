"""Hybrid fusion: RRF and weighted min-max sums on hand-made lists, against hand-computed scores."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from spacerini.errors import BackendNotAvailableError, QueryError
from spacerini.fusion import HybridSearcher, open_hybrid, rrf_fuse, weighted_fuse
from spacerini.records import Hit


def _run(pairs: Sequence[tuple[str, float]], backend: str) -> list[Hit]:
    return [Hit(docid=d, score=s, rank=r, backend=backend) for r, (d, s) in enumerate(pairs, start=1)]


# a: BM25-like unbounded scores; b: cosine-like scores.
A = _run([("d1", 10.0), ("d2", 8.0), ("d3", 5.0)], "bm25")
B = _run([("d3", 0.9), ("d1", 0.7), ("d4", 0.5)], "dense")


class FakeSearcher:
    """Returns a fixed ranked list, truncated to k; records the k it was asked for."""

    def __init__(self, hits: list[Hit], *, reject: bool = False, batch: bool = False) -> None:
        self.hits, self.reject, self.asked = hits, reject, []
        if batch:
            self.batch_search = self._batch_search

    def search(self, query: str, k: int = 10, offset: int = 0) -> list[Hit]:
        self.asked.append(k)
        if self.reject:
            raise QueryError("no terms")
        return self.hits[offset : offset + k]

    def _batch_search(self, queries: Sequence[tuple[str, str]], *, k: int = 10, threads: int = 1) -> dict[str, list[Hit]]:
        self.asked.append(("batch", k))
        return {qid: self.hits[:k] for qid, _ in queries}

    def close(self) -> None:
        pass


def test_rrf_matches_hand_computed() -> None:
    fused = dict(rrf_fuse([A, B], rrf_k=60))
    expected = {"d1": 1 / 61 + 1 / 62, "d2": 1 / 62, "d3": 1 / 63 + 1 / 61, "d4": 1 / 63}
    assert fused.keys() == expected.keys()
    for docid, score in expected.items():
        assert fused[docid] == pytest.approx(score, abs=1e-12)
    assert [d for d, _ in rrf_fuse([A, B])] == ["d1", "d3", "d2", "d4"]
    # The constant enters the scores: with rrf_k=0, d1 = 1 + 1/2 and d3 = 1/3 + 1.
    zero = dict(rrf_fuse([A, B], rrf_k=0))
    assert zero["d1"] == pytest.approx(1 / 1 + 1 / 2) and zero["d3"] == pytest.approx(1 / 3 + 1 / 1)
    assert [d for d, _ in rrf_fuse([A, B], rrf_k=0)] == ["d1", "d3", "d2", "d4"]


def test_weighted_matches_hand_computed() -> None:
    # min-max: a -> d1 1.0, d2 0.6, d3 0.0; b -> d3 1.0, d1 0.5, d4 0.0.
    half = dict(weighted_fuse(A, B, alpha=0.5))
    assert half == pytest.approx({"d1": 0.75, "d2": 0.3, "d3": 0.5, "d4": 0.0})
    assert [d for d, _ in weighted_fuse(A, B, alpha=0.5)] == ["d1", "d3", "d2", "d4"]
    low = dict(weighted_fuse(A, B, alpha=0.2))
    assert low == pytest.approx({"d1": 0.6, "d2": 0.12, "d3": 0.8, "d4": 0.0})
    assert [d for d, _ in weighted_fuse(A, B, alpha=0.2)] == ["d3", "d1", "d2", "d4"]
    # alpha=1 is list a alone (d4, absent from a, scores 0 and ranks by its rank in b).
    assert [d for d, _ in weighted_fuse(A, B, alpha=1.0)] == ["d1", "d2", "d3", "d4"]
    # A list whose scores are all equal normalises to 1.0.
    flat = _run([("x", 3.0), ("y", 3.0)], "bm25")
    assert dict(weighted_fuse(flat, [], alpha=0.5)) == {"x": 0.5, "y": 0.5}


def test_ties_break_by_best_rank_then_docid() -> None:
    a = _run([("p", 1.0), ("q", 0.5)], "bm25")
    b = _run([("q", 1.0), ("p", 0.5)], "dense")
    # Equal RRF scores and equal best ranks: doc id decides.
    assert [d for d, _ in rrf_fuse([a, b])] == ["p", "q"]
    c = _run([("z", 1.0)], "bm25")
    d = _run([("y", 1.0), ("z", 0.5)], "dense")
    fused = rrf_fuse([c, _run([("y", 1.0)], "dense")])
    assert [x for x, _ in fused] == ["y", "z"]  # same score 1/61, same best rank 1: id order
    assert [x for x, _ in rrf_fuse([c, d])][0] == "z"


def test_searcher_pages_and_depth() -> None:
    a, b = FakeSearcher(A), FakeSearcher(B)
    hybrid = HybridSearcher(a, b, method="rrf", depth=5)
    hits = hybrid.search("q", k=10)
    assert [h.docid for h in hits] == ["d1", "d3", "d2", "d4"]
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    assert all(h.backend == "hybrid" for h in hits)
    assert hits[0].score == pytest.approx(round(1 / 61 + 1 / 62, 6))
    assert a.asked == [10] and b.asked == [10]  # max(depth, k)
    page = hybrid.search("q", k=2, offset=1)
    assert [(h.docid, h.rank) for h in page] == [("d3", 2), ("d2", 3)]
    assert a.asked[-1] == 5
    weighted = HybridSearcher(FakeSearcher(A), FakeSearcher(B), method="weighted", alpha=0.2)
    assert [h.docid for h in weighted.search("q", k=4)] == ["d3", "d1", "d2", "d4"]
    with pytest.raises(QueryError):
        hybrid.search("q", k=0)


def test_one_side_rejecting_the_query() -> None:
    hybrid = HybridSearcher(FakeSearcher(A, reject=True), FakeSearcher(B))
    assert [h.docid for h in hybrid.search("the", k=3)] == ["d3", "d1", "d4"]
    both = HybridSearcher(FakeSearcher(A, reject=True), FakeSearcher(B, reject=True))
    with pytest.raises(QueryError):
        both.search("the")


def test_batch_search_uses_batch_api_and_matches_search() -> None:
    a, b = FakeSearcher(A, batch=True), FakeSearcher(B)
    hybrid = HybridSearcher(a, b, depth=50)
    out = hybrid.batch_search([("1", "x"), ("2", "y")], k=3)
    assert a.asked == [("batch", 50)]
    assert b.asked == [50, 50]
    expected = HybridSearcher(FakeSearcher(A), FakeSearcher(B)).search("x", k=3)
    assert out["1"] == expected and out["2"] == expected
    rejecting = HybridSearcher(FakeSearcher(A, reject=True), FakeSearcher(B))
    assert [h.docid for h in rejecting.batch_search([("1", "the")], k=2)["1"]] == ["d3", "d1"]
    with pytest.raises(QueryError):
        hybrid.batch_search([("1", " ")], k=3)


def test_bad_options() -> None:
    for kwargs in ({"method": "max"}, {"depth": 0}, {"alpha": 1.5}, {"rrf_k": -1}):
        with pytest.raises(ValueError):
            HybridSearcher(FakeSearcher(A), FakeSearcher(B), **kwargs)


def _fake_bundle(backends: list[str]) -> Any:
    searchers = {name: FakeSearcher(A if name == "bm25" else B) for name in backends}
    return SimpleNamespace(
        path="/tmp/b", manifest={"backends": {name: {} for name in backends}}, searcher=searchers.__getitem__
    )


def test_open_hybrid() -> None:
    bundle = _fake_bundle(["bm25", "dense"])
    hybrid = open_hybrid(bundle, method="weighted", alpha=0.2)
    assert [h.docid for h in hybrid.search("q", k=4)] == ["d3", "d1", "d2", "d4"]
    with pytest.raises(BackendNotAvailableError, match="lacks dense"):
        open_hybrid(_fake_bundle(["bm25"]))


def test_snippet_delegates_to_a_searcher_that_makes_them() -> None:
    class WithSnippet(FakeSearcher):
        def snippet(self, query: str, text: str, *, width: int = 240) -> str:
            return f"<mark>{query}</mark>:{text[:width]}"

    hybrid = HybridSearcher(FakeSearcher(B), WithSnippet(A))
    assert hybrid.snippet("cat", "a cat sat", width=5) == "<mark>cat</mark>:a cat"
    plain = HybridSearcher(FakeSearcher(A), FakeSearcher(B))
    assert plain.snippet("x", "<b>" + "y" * 300, width=10) == "&lt;b&gt;yyyyyyy…"


def test_real_bm25_and_dense_in_a_bundle(tmp_path: Any) -> None:
    """End to end: a bundle with bm25 and dense, fused; RRF recomputed from the two real runs."""
    import json
    from pathlib import Path

    from spacerini.bundle import build_bundle
    from spacerini.records import Doc

    corpus = Path(__file__).parent.parent / "data" / "dense_corpus.jsonl"
    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    docs = [Doc(id=r["id"], text=r["text"]) for r in rows[:30] + rows[-1:]]
    bundle = build_bundle(
        docs, tmp_path / "b", backends=["bm25", "dense"],
        backend_params={"dense": {"checkpoint_dir": str(tmp_path / "ck")}}, progress=False,
    )
    try:
        hybrid = open_hybrid(bundle, depth=20)
        query = "lighthouse keeper"
        a = bundle.searcher("bm25").search(query, k=20)
        b = bundle.searcher("dense").search(query, k=20)
        expected = [d for d, _ in rrf_fuse([a, b])][:5]
        hits = hybrid.search(query, k=5)
        assert [h.docid for h in hits] == expected
        assert hits[0].docid == "long.appendix"
        assert "<mark>" in hybrid.snippet(query, docs[-1].text)
    finally:
        bundle.close()


@pytest.mark.parametrize("method", ["rrf", "weighted"])
def test_pages_are_cut_from_one_fused_list(method: str) -> None:
    """Pages past the depth used to fuse deeper lists than the first pages, whose tails then
    reordered: a document could show on two pages, or on none."""
    import random

    rng = random.Random(7)
    docs = [f"d{i:03d}" for i in range(300)]
    a_order, b_order = rng.sample(docs, 300), rng.sample(docs, 300)
    a = _run([(d, 300.0 - i) for i, d in enumerate(a_order)], "bm25")
    b = _run([(d, 1.0 - i / 300) for i, d in enumerate(b_order)], "dense")
    hybrid = HybridSearcher(FakeSearcher(a), FakeSearcher(b), method=method, depth=20, alpha=0.3)
    pages = [hybrid.search("q", k=7, offset=offset) for offset in range(0, 70, 7)]
    shown = [h.docid for page in pages for h in page]
    reference = hybrid.fuse(a[:20], b[:20], 1_000)  # the fused list of each side's top 20
    assert shown == [h.docid for h in reference]
    assert len(shown) == len(set(shown)) and [h.rank for page in pages for h in page] == list(range(1, len(shown) + 1))
    assert 20 <= len(shown) <= 40 and hybrid.search("q", k=7, offset=len(shown)) == []
