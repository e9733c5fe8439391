"""A sharded exact index (``exact.open_shards``) answers exactly as one index over all documents,
and its counts equal brute-force scans of the documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from spacerini.backends import exact
from spacerini.errors import BackendParameterError, BundleCorruptError
from spacerini.records import Doc

DATA = Path(__file__).resolve().parents[1] / "data" / "exact_corpus.jsonl"
PHRASES = (
    "the quick brown fox",
    "jumps over the lazy dog",
    "def main():",
    "return None",
    "東京は日本の首都です",
    "🐍 snakes 🐍",
    "aaaa",
    "naïve café",
)


def file_docs() -> list[Doc]:
    with DATA.open(encoding="utf-8") as f:
        return [Doc(id=r["id"], text=r["text"]) for r in map(json.loads, f)]


def phrase_docs(n: int = 120, seed: int = 11) -> list[Doc]:
    """Documents made of a few phrases, so that the same text recurs in every shard and counts tie."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        parts = [rng.choice(PHRASES) for _ in range(rng.randint(0, 9))]
        docs.append(Doc(id=f"gen-{i:03d}", text=" ".join(parts)))
    return docs


CORPORA = {"file": file_docs(), "phrases": phrase_docs()}


def brute_positions(docs: list[Doc], needle: str) -> list[tuple[str, int]]:
    """All (docid, char offset) of ``needle``, overlapping ones included, in corpus order."""
    out = []
    for doc in docs:
        i = doc.text.find(needle)
        while i >= 0:
            out.append((doc.id, i))
            i = doc.text.find(needle, i + 1)
    return out


def split(n: int, parts: int, seed: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, uneven, non-empty ranges ``(first, count)`` covering ``0 .. n - 1``."""
    cuts = sorted(random.Random(seed).sample(range(1, n), parts - 1))
    bounds = [0, *cuts, n]
    return [(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]


def build_shards(docs: list[Doc], root: Path, parts: int, **options) -> tuple[list[Path], list[dict]]:
    folders, reports = [], []
    for i, (first, count) in enumerate(split(len(docs), parts, seed=parts)):
        folder = root / f"shard_{i:05d}"
        shard_docs = docs[first : first + count]
        report = exact.build(lambda d=shard_docs: iter(d), folder, progress=False, **options)
        folders.append(folder)
        reports.append(report.to_dict())
    return folders, reports


def needles(docs: list[Doc], seed: int) -> list[str]:
    """Substrings of the corpus (some spanning several phrases), phrases, and absent strings."""
    rng = random.Random(seed)
    texts = [d.text for d in docs if d.text]
    out = list(PHRASES) + ["a", "e", " ", "é", "東京", "🐍", "absent-xyz", "\n"]
    for _ in range(40):
        text = rng.choice(texts)
        i = rng.randrange(len(text))
        out.append(text[i : i + rng.randint(1, 30)])
    return [n for n in out if n.strip(" ") or n == " "]


# (corpus, shard count, internal max_shard_bytes of each shard folder)
LAYOUTS = [("file", 3, None), ("file", 7, None), ("phrases", 3, None), ("phrases", 7, 400)]


@pytest.fixture(scope="module", params=LAYOUTS, ids=lambda p: f"{p[0]}-{p[1]}shards-{p[2]}")
def pair(request, tmp_path_factory):
    corpus, parts, max_bytes = request.param
    docs = CORPORA[corpus]
    root = tmp_path_factory.mktemp(f"exact-{corpus}-{parts}")
    whole_report = exact.build(lambda: iter(docs), root / "whole", progress=False)
    options = {} if max_bytes is None else {"max_shard_bytes": max_bytes}
    folders, reports = build_shards(docs, root, parts, **options)
    whole = exact.open(root / "whole", whole_report.to_dict())
    sharded = exact.open_shards(folders, reports)
    yield docs, whole, sharded
    whole.close()
    sharded.close()


def test_the_layout_is_really_sharded(pair):
    docs, whole, sharded = pair
    assert len(sharded.folder_docs) in (3, 7)
    assert sum(sharded.folder_docs) == len(docs) == len(whole.docids)
    assert sharded.docids == [d.id for d in docs]


def test_count_equals_brute_force_and_unsharded(pair):
    docs, whole, sharded = pair
    checked = 0
    for needle in needles(docs, seed=1):
        expected = len(brute_positions(docs, needle))
        assert sharded.count(needle) == expected == whole.count(needle), needle
        checked += expected > 0
    assert checked > 20
    # Python's str.count counts non-overlapping matches: equal for a needle that cannot overlap itself.
    assert sharded.count("the quick brown fox") == sum(d.text.count("the quick brown fox") for d in docs)


def test_find_pages_equal_unsharded(pair):
    docs, whole, sharded = pair
    for needle in needles(docs, seed=2)[:30]:
        expected = brute_positions(docs, needle)
        everything = sharded.find(needle, k=len(expected) + 5)
        assert [(h.docid, h.offset) for h in everything] == expected
        assert everything == whole.find(needle, k=len(expected) + 5)
        for k, offset in [(1, 0), (3, 2), (5, len(expected) - 2), (4, len(expected)), (7, 11)]:
            offset = max(offset, 0)
            page = sharded.find(needle, k=k, offset=offset, context=10)
            assert page == whole.find(needle, k=k, offset=offset, context=10)
            assert [h.rank for h in page] == list(range(offset + 1, offset + 1 + len(page)))


def test_search_pages_equal_unsharded(pair):
    docs, whole, sharded = pair
    for needle in needles(docs, seed=3)[:30]:
        full = sharded.search(needle, k=1000)
        assert full == whole.search(needle, k=1000)
        counts: dict[str, int] = {}
        for docid, _ in brute_positions(docs, needle):
            counts[docid] = counts.get(docid, 0) + 1
        order = [d.id for d in docs if d.id in counts]
        expected = sorted(order, key=lambda docid: -counts[docid])  # stable: ties in corpus order
        assert [h.docid for h in full] == expected
        for k, offset in [(1, 0), (2, 1), (5, 3), (10, 20)]:
            assert sharded.search(needle, k=k, offset=offset) == whole.search(needle, k=k, offset=offset)


def test_longest_matches_equal_unsharded(pair):
    docs, whole, sharded = pair
    rng = random.Random(4)
    texts = [d.text for d in docs if len(d.text) > 40]
    queries = []
    for _ in range(8):
        # Excerpts of two documents glued with noise: spans end at the seams.
        a, b = rng.choice(texts), rng.choice(texts)
        queries.append(a[5:45] + " ~~zz~~ " + b[-40:])
    queries.append(" ".join(PHRASES))
    spans_seen = 0
    for query in queries:
        for min_len, max_docs in [(5, 1), (8, 3), (20, 50)]:
            got = sharded.longest_matches(query, min_len=min_len, max_docs=max_docs)
            assert got == whole.longest_matches(query, min_len=min_len, max_docs=max_docs)
            for span in got:
                containing = [d.id for d in docs if span.text in d.text]
                assert span.docids == tuple(containing[:max_docs])
                assert span.count == len(brute_positions(docs, span.text))
            spans_seen += len(got)
    assert spans_seen > 10


def test_empty_shard_reports_are_skipped_and_mismatches_raise(tmp_path):
    docs = CORPORA["phrases"][:30]
    folders, reports = build_shards(docs, tmp_path, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with exact.open_shards(
        [folders[0], empty, *folders[1:]], [reports[0], {"stats": {"docs": 0}, "empty": True}, *reports[1:]]
    ) as searcher:
        assert searcher.docids == [d.id for d in docs]
        assert searcher.count("the quick brown fox") == len(brute_positions(docs, "the quick brown fox"))
    with pytest.raises(BundleCorruptError, match="report says"):
        exact.open_shards(folders, [reports[1], reports[0], reports[2]])
    with pytest.raises(BundleCorruptError, match="shard reports"):
        exact.open_shards(folders, reports[:2])
    with pytest.raises(BundleCorruptError):
        exact.open_shards([folders[0], tmp_path / "missing"], reports[:2])
    with pytest.raises(BackendParameterError, match="no open option"):
        exact.open_shards(folders, reports, ef_search=3)
