"""The Java snippet matcher's shortcut (only the runs of an ASCII text that hold a key prefix are
analyzed) finds exactly what analyzing the whole text finds."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from bm25_data import CODE, CORPUS

from spacerini.backends import bm25
from spacerini.records import Doc

TRICKY = (
    "The parser's parsers PARSED\tparsing;\r\nre-parse: json_b64encode(JSON)  x.parse_json()\x0bparse\x1fparse "
    + "p" * 300 + "arse parse " + "ParseParse parse's 3.14 parse_2 parse." + " searched searching searches\n"
)


def _texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["contents"] for line in handle]


def _open(folder: Path, texts: list[str], analyzer: str = "en"):
    """A BM25 index of ``texts`` (ids ``d0``, ``d1``, ...) with ``analyzer``, opened."""

    def docs():
        for i, text in enumerate(texts):
            yield Doc(id=f"d{i}", text=text)

    return bm25.open(folder, bm25.build(docs, folder, threads=1, progress=False, analyzer=analyzer).to_dict())


@pytest.fixture(scope="module")
def searcher(tmp_path_factory: pytest.TempPathFactory):
    texts = _texts(CORPUS) + _texts(CODE) + [TRICKY]
    opened = _open(tmp_path_factory.mktemp("matcher"), texts)
    if opened._matcher is None:
        pytest.skip("no Java snippet matcher")
    yield opened, texts
    opened.close()


def _queries(texts: list[str], n: int) -> list[str]:
    rng = random.Random(3)
    words = sorted({w for t in texts for w in re.findall(r"\w+", t) if len(w) < 30})
    return ["parse", "search engine", "json", "PARSING parsers"] + [
        " ".join(rng.choice(words) for _ in range(rng.randint(1, 3))) for _ in range(n)
    ]


def test_the_prefix_shortcut_finds_what_whole_analysis_finds(searcher) -> None:
    s, texts = searcher
    matcher = s._matcher
    checked = with_hits = 0
    for query in _queries(texts, 120):
        qterms, keys = s._snippet_query(query)
        if not qterms or keys is None:
            continue
        for text in texts:
            if not text.isascii():
                continue
            whole = list(matcher._matches(matcher._analyzer, text, list(qterms)))
            whole = list(zip(whole[0::2], whole[1::2], strict=True))
            assert matcher.spans(text, qterms, keys.prefixes) == whole, (query, text[:80])
            assert matcher.first(text, qterms, keys.prefixes, limit=10**9) == (whole[0][0] if whole else None)
            checked += 1
            with_hits += bool(whole)
    assert checked > 10_000 and with_hits > 500  # the comparison saw real matches


def test_the_tricky_text_matches_across_blanks_controls_and_long_tokens(searcher) -> None:
    s, _ = searcher
    qterms, keys = s._snippet_query("parse")
    spans = s._matcher.spans(TRICKY, qterms, keys.prefixes)
    assert spans == s._matcher.spans(TRICKY, qterms)  # the whole text analyzed
    words = [TRICKY[a:b] for a, b in spans]
    assert "PARSED" in words and "parsing" in words and "parse." not in words
    assert words.count("parse") >= 5  # after a tab, a vertical tab, a unit separator, a space...


def test_a_non_ascii_text_is_analyzed_whole(searcher) -> None:
    s, _ = searcher
    qterms, keys = s._snippet_query("cafe parse")
    text = "Caf\u00e9 parse \u00e9parse parse"
    assert s._matcher.spans(text, qterms, keys.prefixes) == s._matcher.spans(text, qterms)
    with pytest.raises(ValueError):
        s._matcher.first(text, qterms, keys.prefixes, limit=100)


def test_the_first_match_of_a_long_document_is_found_chunk_by_chunk(searcher) -> None:
    """Past many prefix-only words and several chunks, and from a start inside a word."""
    s, _ = searcher
    qterms, keys = s._snippet_query("parse")
    filler = "".join(f"parsimony{i}\tparasol_{i} x.pa{i}\n" for i in range(6000))  # ~180 KB, no match
    text = filler + "the PARSING step" + filler
    whole = s._matcher.spans(text, qterms)
    assert whole and text[whole[0][0] : whole[0][1]] == "PARSING"
    assert s._matcher.first(text, qterms, keys.prefixes, limit=10**9) == whole[0][0]
    assert s._matcher.first(text, qterms, keys.prefixes, start=len(filler) - 3, limit=10**9) == whole[0][0]
    assert s._matcher.first(text, qterms, keys.prefixes, limit=len(filler) // 2) is None  # the bound
    assert s._matcher.first(text, qterms, keys.prefixes, start=whole[0][1] + 1, limit=10**9) is None



def test_other_languages_are_analyzed_whole(tmp_path: Path) -> None:
    """German folds "oe" to "o", so a token need not begin with its term's first letters: the
    prefix shortcut is for English only."""
    texts = ["Die Oeffnung der Tuer", "Offnung und Oeffnung"]
    german = _open(tmp_path / "de", texts, "de")
    try:
        if german._matcher is None:
            pytest.skip("no Java snippet matcher")
        qterms, keys = german._snippet_query("Offnung")
        assert keys is not None and german._matcher.spans(texts[0], qterms, keys.prefixes) == []  # what the shortcut misses
        assert german._snippet_matches(texts[0], qterms, keys) == german._matcher.spans(texts[0], qterms) == [(4, 12)]
    finally:
        german.close()


FILLER = "lorem ipsum dolor sit amet " * 300  # 8,100 characters: past the first scan window


@pytest.mark.parametrize(
    ("analyzer", "text", "query", "word"),
    [
        ("de", "Die " + FILLER + " Die Oeffnung der Tuer. Oeffnung", "Offnung", "Oeffnung"),
        ("es", "El " + FILLER + " un ácido fuerte", "acido", "ácido"),
        ("code", "x = 1\n" + FILLER + "\ndef parse_header(value): pass", "header", "parse_header"),
        ("de", "Der " + FILLER * 3 + " ein Pfad" + " zur Oeffnung", "Offnung", "Oeffnung"),
        ("de", "Der " + FILLER * 9 + " die Offnung", "Offnung", "Offnung"),  # past the analyzed part
        # The term's letters first occur in a word that is no match (code terms are not stemmed).
        ("code", "x = 1\n" + FILLER + " headers_list = 2\n" + FILLER + "\ndef parse_header(v): pass", "header", "parse_header"),
    ],
    ids=["german-oe", "spanish-accent", "code-identifier", "german-late", "german-past-the-limit", "code-after-a-near-miss"],
)
@pytest.mark.parametrize("java", [True, False], ids=["java", "python-words"])
def test_long_documents_in_other_languages_show_their_first_match(
    tmp_path: Path, analyzer: str, text: str, query: str, word: str, java: bool
) -> None:
    """A match whose word does not begin with its term's first letters, past the first scan
    window: the window opens at it (key prefixes would miss it), as analyzing the whole text finds."""
    searcher = _open(tmp_path / analyzer, [text, "other words"], analyzer)
    try:
        if not java:
            searcher._matcher = None
        qterms, keys = searcher._snippet_query(query)
        whole = searcher._snippet_matches(text, qterms, None)
        assert whole and text[whole[0][0] : whole[0][1]].endswith(word.split("_")[-1])
        from spacerini.backends.bm25.snippets import locate

        base, window, matched = locate(searcher, query, text)
        assert matched and base + matched[0][0] == whole[0][0]
        assert window == text[base : base + bm25.SNIPPET_SCAN_CHARS]
        shown = searcher.snippet(query, text, width=200)
        assert "<mark>" in shown and word.split("_")[-1] in shown
        # A match in the first window is found there, with no scan of the rest.
        assert locate(searcher, query, word + " " + text)[0] == 0
    finally:
        searcher.close()


def test_chunks_stay_bounded_in_text_without_blanks() -> None:
    """Minified files and CJK text have runs of millions of characters without a blank: a chunk
    is cut inside such a run instead of growing to its end."""
    from spacerini.backends.bm25.lucene import _FIRST_CHUNK, _MAX_TOKEN, _blank_before, _chunk_end

    run = "x" * 1_000_000
    assert _chunk_end(run, 0, len(run)) == _FIRST_CHUNK
    assert _chunk_end(run, 10, 100) == 100
    spaced = "a " * 10_000
    end = _chunk_end(spaced, 0, len(spaced))
    assert spaced[end] == " " and _FIRST_CHUNK <= end <= _FIRST_CHUNK + _MAX_TOKEN
    assert _chunk_end(spaced, len(spaced) - 3, len(spaced)) == len(spaced)
    assert _blank_before(run, 500_000) == 500_000  # not back to 0: the scan keeps its place
    assert _blank_before("ab cd", 4) == 3 and _blank_before("abcd", 2) == 0


def test_a_match_far_into_a_blankless_text(tmp_path: Path) -> None:
    text = "中文" * 20_000 + "搜索引擎" + "中文" * 400_000  # the match at 40,000 characters, 840,004 in all
    searcher = _open(tmp_path / "zh", [text, "其他"], "zh")
    try:
        qterms, keys = searcher._snippet_query("搜索")
        assert searcher._first_match(text, qterms, keys, start=2_500) == 40_000
        assert searcher._first_match(text, qterms, keys, start=45_000) is None  # none after it
        assert "<mark>" in searcher.snippet("搜索", text, width=200)
    finally:
        searcher.close()


def test_code_matches_from_term_occurrences_equal_whole_analysis(tmp_path: Path) -> None:
    """The code analyzer's snippet matches on ASCII text start from where a term occurs (a word
    gives a term only if it holds it whole): they equal analyzing every word of the text."""
    texts = _texts(CORPUS) + _texts(CODE) + [
        TRICKY,
        "parseHTTPResponse_v2 = HTTPServer(); x.parse_header(); headers_list; PARSE_HEADER parse2 " + "header" * 60,
        "a" * 300 + "parse b" + "_parse" * 50 + " parse_" + " json2html json 2 html",
    ]
    searcher = _open(tmp_path / "code", texts, "code")
    try:
        queries = _queries(texts, 120) + ["parse header", "http response", "v2 html", "json", "header"]
        with_hits = 0
        for query in queries:
            qterms, keys = searcher._snippet_query(query)
            if not qterms or keys is None:
                continue
            for text in texts:
                fast = searcher._code_matches(text, qterms, keys)
                assert fast == searcher._snippet_matches(text, qterms, None), (query, text[:80])
                with_hits += bool(fast)
        assert with_hits > 100
    finally:
        searcher.close()
