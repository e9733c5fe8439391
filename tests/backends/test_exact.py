"""The exact backend against brute-force ``str.find`` scans of the same corpus."""

from __future__ import annotations

import html
import json
import random
from pathlib import Path

import pytest
from build_helpers import occurrences

from spacerini.backends import exact
from spacerini.errors import BundleCorruptError, QueryError
from spacerini.records import Doc

DATA = Path(__file__).resolve().parents[1] / "data" / "exact_corpus.jsonl"


def load_docs() -> list[Doc]:
    with DATA.open(encoding="utf-8") as f:
        return [Doc(id=r["id"], text=r["text"]) for r in map(json.loads, f)]


DOCS = load_docs()


def brute_positions(needle: str) -> list[tuple[str, int]]:
    """All (docid, char offset) of ``needle``, overlapping ones included, in corpus order."""
    return occurrences(DOCS, needle)


def brute_count(needle: str) -> int:
    return len(brute_positions(needle))


@pytest.fixture(scope="module")
def one_shard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exact1")
    report = exact.build(lambda: iter(DOCS), folder, progress=False)
    searcher = exact.open(folder, report.to_dict())
    yield searcher, report
    searcher.close()


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exactN")
    report = exact.build(lambda: iter(DOCS), folder, progress=False, max_shard_bytes=1024)
    searcher = exact.open(folder, report.to_dict())
    yield searcher, report
    searcher.close()


def sample_substrings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = [d.text for d in DOCS if d.text]
    out = []
    while len(out) < n:
        t = rng.choice(texts)
        i = rng.randrange(len(t))
        out.append(t[i : i + rng.randint(1, 25)])
    return out


def test_corpus_is_what_the_tests_expect():
    assert len(DOCS) == 60
    assert DOCS[0].id == "doc-000" and DOCS[-1].id == "doc-059"
    assert any("京都" in d.text for d in DOCS) and any("🐍" in d.text for d in DOCS)
    assert any(ord(c) > 0xFFFF for d in DOCS for c in d.text)  # astral-plane characters


def test_build_report(one_shard, many_shards):
    _, r1 = one_shard
    _, rn = many_shards
    assert r1.docs == rn.docs == 60
    assert r1.stats["shards"] == 1
    assert rn.stats["shards"] >= 10
    assert r1.stats["bytes"] == sum(len(d.text.encode()) for d in DOCS)
    assert rn.params["max_shard_bytes"] == 1024


def test_counts_match_brute_force_on_random_substrings(one_shard, many_shards):
    s1, _ = one_shard
    sn, _ = many_shards
    needles = sample_substrings(400, seed=1)
    assert sum(any(ord(c) > 127 for c in n) for n in needles) > 50  # Unicode is well covered
    for needle in needles:
        expected = brute_count(needle)
        assert expected > 0
        assert s1.count(needle) == expected, needle
        assert sn.count(needle) == expected, needle


@pytest.mark.parametrize(
    "needle",
    ["aaaa", "abab", "京都", "🐍", "👨‍👩‍👧", "λ", "Καλημέρα", " ", "\n", "a", "e", "Tom & Jerry's", "σκύλο."],
)
def test_counts_of_chosen_strings(one_shard, many_shards, needle):
    expected = brute_count(needle)
    assert expected > 0
    assert one_shard[0].count(needle) == expected
    assert many_shards[0].count(needle) == expected


@pytest.mark.parametrize("needle", ["thirtySTART", "END-of-thirty\nSTART", "zzzzqqqq", "京都京都京都京都", "🦀"])
def test_absent_and_cross_boundary_strings_count_zero(one_shard, many_shards, needle):
    assert brute_count(needle) == 0
    assert one_shard[0].count(needle) == 0
    assert many_shards[0].count(needle) == 0
    assert one_shard[0].find(needle) == []


def test_bytes_queries_equal_text_queries(one_shard):
    s, _ = one_shard
    assert s.count("京都".encode()) == s.count("京都") == brute_count("京都")


def test_find_equals_brute_force_in_order(one_shard, many_shards):
    for needle in ["a", "aaaa", "京都", "🐍", "print", "λ", "ab"]:
        expected = brute_positions(needle)
        for s, _ in (one_shard, many_shards):
            hits = s.find(needle, k=10_000)
            assert [(h.docid, h.offset) for h in hits] == expected, needle
            assert [h.rank for h in hits] == list(range(1, len(expected) + 1))


def test_pagination_concatenates_to_the_full_list(many_shards):
    s, _ = many_shards
    needle = "a"
    full = s.find(needle, k=100_000)
    assert len(full) == s.count(needle) > 50
    pages = []
    offset = 0
    while True:
        page = s.find(needle, k=7, offset=offset)
        if not page:
            break
        pages.extend(page)
        offset += 7
    assert pages == full
    assert s.find(needle, k=5, offset=len(full) - 2) == full[-2:]


def test_snippets_mark_the_match_and_escape_html(one_shard):
    s, _ = one_shard
    hits = s.find("Tom & Jerry", k=3, context=10)
    assert hits
    for h in hits:
        assert "<mark>Tom &amp; Jerry</mark>" in h.snippet
        doc = next(d for d in DOCS if d.id == h.docid)
        left = doc.text[max(0, h.offset - 10) : h.offset]
        right = doc.text[h.offset + len("Tom & Jerry") : h.offset + len("Tom & Jerry") + 10]
        assert h.snippet == f"{html.escape(left)}<mark>Tom &amp; Jerry</mark>{html.escape(right)}"
    hit = s.find("京都", k=1, context=3)[0]
    doc = next(d for d in DOCS if d.id == hit.docid)
    assert doc.text[hit.offset : hit.offset + 2] == "京都"
    assert hit.snippet == f"{doc.text[hit.offset - 3 : hit.offset]}<mark>京都</mark>{doc.text[hit.offset + 2 : hit.offset + 5]}"


def test_search_ranks_docs_by_occurrences(one_shard, many_shards):
    needle = "a"
    per_doc: dict[str, int] = {}
    for docid, _ in brute_positions(needle):
        per_doc[docid] = per_doc.get(docid, 0) + 1
    order = {d.id: i for i, d in enumerate(DOCS)}
    expected = sorted(per_doc.items(), key=lambda kv: (-kv[1], order[kv[0]]))
    for s, _ in (one_shard, many_shards):
        hits = s.search(needle, k=1000)
        assert [(h.docid, h.score) for h in hits] == [(d, float(c)) for d, c in expected]
        assert s.search(needle, k=3, offset=2) == hits[2:5]
        assert all(h.backend == "exact" and "<mark>a</mark>" in h.snippet for h in hits)


def test_longest_matches_finds_glued_corpus_pieces(one_shard, many_shards):
    rng = random.Random(7)
    long_docs = [d.text for d in DOCS if len(d.text) > 200]
    for trial in range(5):
        a_doc, b_doc = rng.sample(long_docs, 2)
        i = rng.randrange(len(a_doc) - 60)
        j = rng.randrange(len(b_doc) - 60)
        piece_a, piece_b = a_doc[i : i + 60], b_doc[j : j + 60]
        noise = lambda: "⟦" + "".join(rng.choice("QXZ§¤¶0123456789") for _ in range(15)) + "⟧"  # noqa: E731
        query = noise() + piece_a + noise() + piece_b + noise()
        a_start = query.index(piece_a)
        b_start = query.index(piece_b, a_start + 60)
        for s, _ in (one_shard, many_shards):
            spans = s.longest_matches(query, min_len=30)
            assert len(spans) >= 2, trial
            assert any(sp.start <= a_start and sp.end >= a_start + 60 for sp in spans)
            assert any(sp.start <= b_start and sp.end >= b_start + 60 for sp in spans)
            for sp in spans:
                assert sp.text == query[sp.start : sp.end]
                assert sp.end - sp.start >= 30
                assert sp.count == brute_count(sp.text) > 0
                assert sp.docids and all(sp.text in next(d.text for d in DOCS if d.id == i) for i in sp.docids)
                # Maximal: neither end can be extended.
                if sp.end < len(query):
                    assert brute_count(query[sp.start : sp.end + 1]) == 0
                if sp.start > 0:
                    assert brute_count(query[sp.start - 1 : sp.end]) == 0


def test_longest_matches_of_unrelated_text_is_empty(one_shard):
    assert one_shard[0].longest_matches("QXZ§¤¶ nothing like this is in there at all ⟦⟧", min_len=20) == []


@pytest.mark.parametrize(
    "query, words",
    [
        ("", "empty"),
        (b"", "empty"),
        ("x" * (exact.MAX_QUERY_BYTES + 1), "at most"),
        (b"abc\x00def", "NUL"),
        ("abc\x00def", "NUL"),
        (b"\xff\xfeabc", "UTF-8"),
        ("\ud800", "unencodable"),
    ],
)
def test_bad_queries_raise_query_error(one_shard, query, words):
    s, _ = one_shard
    for call in (s.count, s.find, s.search, s.longest_matches):
        with pytest.raises(QueryError, match=words):
            call(query)


def test_open_of_a_broken_folder_raises(tmp_path):
    with pytest.raises(BundleCorruptError):
        exact.open(tmp_path, {})


def test_empty_corpus(tmp_path):
    report = exact.build(lambda: iter([]), tmp_path, progress=False)
    assert report.docs == 0 and report.stats["shards"] == 0
    with exact.open(tmp_path, report.to_dict()) as s:
        assert s.count("a") == 0 and s.find("a") == [] and s.search("a") == []


@pytest.mark.parametrize(
    "options", [{"k": 2.5}, {"k": "3"}, {"k": None}, {"k": True}, {"offset": 1.0}, {"offset": -1}, {"context": "5"}]
)
def test_bad_pages_raise_query_error(one_shard, options):
    s, _ = one_shard
    with pytest.raises(QueryError, match="must be an integer"):
        s.find("a", **options)
    if "context" not in options:
        with pytest.raises(QueryError, match="must be an integer"):
            s.search("a", **options)


def test_numpy_integers_page_like_ints(one_shard):
    import numpy as np

    s, _ = one_shard
    assert s.find("a", k=np.int64(3), offset=np.int32(2)) == s.find("a", k=3, offset=2) == s.find("a", k=5)[2:5]


def _matching_statistics(raw: bytes, contains) -> list[int]:
    """The longest match at every character, one extension at a time (the reference)."""
    bounds = exact.char_bounds(raw)
    n, out, length = len(bounds) - 1, [], 0
    for i in range(n):
        length = max(length - 1, 0)
        while i + length < n and contains(raw[bounds[i] : bounds[i + length + 1]]):
            length += 1
        out.append(length)
    return out


def test_match_runs_give_the_matching_statistics_of_every_character():
    corpus = ["the quick brown fox jumps over the lazy dog", "héllo wörld ⟦naïve⟧ café", "abcabcabcabd", "aaaaaaaaab"]
    blob = "\x00".join(corpus)

    def contains(pat: bytes) -> bool:
        return pat.decode("utf-8") in blob

    rng = random.Random(11)
    for _ in range(2000):
        pieces = []
        for _ in range(rng.randint(0, 5)):
            if rng.random() < 0.5:
                doc = rng.choice(corpus)
                i = rng.randrange(len(doc))
                pieces.append(doc[i : i + rng.randint(0, 15)])
            else:
                pieces.append("".join(rng.choice("abcdhéloöw ⟦⟧ qu") for _ in range(rng.randint(0, 6))))
        raw = "".join(pieces).encode()
        bounds = exact.char_bounds(raw)
        n = len(bounds) - 1
        runs = exact.match_runs(n, lambda a, b, raw=raw, bounds=bounds: b <= a or contains(raw[bounds[a] : bounds[b]]))
        assert exact.run_lengths(runs, n) == _matching_statistics(raw, contains), raw


def test_a_text_copied_whole_from_the_corpus_is_traced_in_a_few_searches(one_shard, monkeypatch):
    """A copied document used to cost one search of its whole length per character."""
    s, _ = one_shard
    doc = max(DOCS, key=lambda d: len(d.text))
    calls = []
    real = s._contains
    monkeypatch.setattr(s, "_contains", lambda pat: calls.append(len(pat)) or real(pat))
    spans = s.longest_matches(doc.text, min_len=20)
    assert [(sp.start, sp.end) for sp in spans] == [(0, len(doc.text))] and doc.id in spans[0].docids
    assert len(calls) <= 4 * len(doc.text).bit_length(), len(calls)


@pytest.mark.parametrize("needle", ["e", " ", "a"])
def test_find_reads_a_common_patterns_rows_a_chunk_at_a_time_with_the_same_pages(one_shard, many_shards, monkeypatch, needle):
    """Memory per page stays bounded by the chunk; the pages are those of one whole-range read."""
    whole = {id(s): [s.find(needle, k=k, offset=o) for k, o in ((10, 0), (7, 13), (50, 200), (1000, 0))] for s, _ in (one_shard, many_shards)}
    monkeypatch.setattr(exact, "FIND_CHUNK", 3)
    for s, _ in (one_shard, many_shards):
        assert s.count(needle) > 200
        assert [s.find(needle, k=k, offset=o) for k, o in ((10, 0), (7, 13), (50, 200), (1000, 0))] == whole[id(s)]
        assert [(h.docid, h.offset) for h in s.find(needle, k=1000)] == brute_positions(needle)[:1000]


def test_a_text_too_long_to_trace_says_so_in_one_line(one_shard):
    s, _ = one_shard
    with pytest.raises(QueryError, match=r"the text is 1,048,577 bytes long; membership and tracing take at most 1,048,576 bytes \(1 MiB\)"):
        s.longest_matches("a" * (exact.MAX_QUERY_BYTES + 1))
    with pytest.raises(QueryError, match=r"query is 1,048,577 bytes long; the exact backend accepts at most 1,048,576"):
        s.count("a" * (exact.MAX_QUERY_BYTES + 1))
