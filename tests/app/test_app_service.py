"""The app's capabilities without a server: service answers, rendering, redaction, flags."""

from __future__ import annotations

import html
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import HOSTILE_TEXT, app_docs

from spacerini.app.flags import FlagStore
from spacerini.app.render import (
    highlight_spans,
    redact_snippet,
    render_exact,
    render_hits,
    render_member,
    render_owner,
)
from spacerini.errors import BackendNotAvailableError, BundleError, QueryError
from spacerini.records import Hit
from spacerini.service import Service


@pytest.fixture(scope="module")
def svc(app_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> Service:
    return Service(app_bundle, flags_path=tmp_path_factory.mktemp("svc") / "flags.jsonl")


def test_capabilities_follow_the_backends(svc: Service) -> None:
    assert svc.ranked_backends == ["bm25", "exact"]
    assert svc.capabilities[:4] == ["search", "exact", "member", "owner"]
    assert svc.capabilities[-1] == "stats"


def test_search_matches_the_bundle_and_pages(svc: Service, app_bundle: Any) -> None:
    ref = [h.docid for h in app_bundle.search("parser helper", k=10)]
    page1 = svc.search("parser helper", "bm25", 5, 0)["hits"]
    page2 = svc.search("parser helper", "bm25", 5, 5)["hits"]
    assert [h["docid"] for h in page1 + page2] == ref
    assert [h["rank"] for h in page2] == [6, 7, 8, 9, 10]
    assert page1[0]["meta"]["swhid"].startswith("swh:1:cnt:")
    with pytest.raises(BackendNotAvailableError):
        svc.search("parser", "dense", 5, 0)
    with pytest.raises(QueryError, match="empty"):
        svc.search("  ", "", 5, 0)
    with pytest.raises(QueryError, match="limit"):
        svc.search("x" * 10_001, "", 5, 0)
    with pytest.raises(QueryError, match="k must be"):
        svc.search("parser", "", 1000, 0)


def test_count_and_find_agree_with_str_count(svc: Service) -> None:
    texts = [d.text for d in app_docs()]
    for needle in ("json.load", "parse_tokens('item 1", "self.capacity"):
        expected = sum(t.count(needle) for t in texts)
        assert svc.count(needle)["count"] == expected
        found = svc.find(needle, 100, 0)
        assert found["count"] == expected and len(found["hits"]) == expected
        assert all(f"<mark>{html.escape(needle, quote=True)}</mark>" in h["snippet"] for h in found["hits"])
    page = svc.find("json", 3, 3)
    assert [h["rank"] for h in page["hits"]] == [4, 5, 6]
    assert page["hits"][0]["meta"]["path"].startswith("src/module_")


def test_member_spans_and_sources(svc: Service) -> None:
    novel = "zzzz qqqq wwww this part is not in the corpus at all, really not "
    known = "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n"
    res = svc.member(novel + known)
    assert res["method"] == "bloom sketch"
    assert res["spans"], res
    start = len(novel)
    covered = set()
    for s in res["spans"]:
        covered.update(range(s["start"], s["end"]))
    assert set(range(start, start + len(known))) <= covered
    assert not covered & set(range(0, start - 25))  # the novel text is not found (bloom width 20)
    exact = res["exact_spans"]
    assert exact and exact[0]["text"].startswith("def fibonacci") and exact[0]["count"] == 9
    assert {s["meta"]["path"] for s in exact[0]["sources"]} >= {"src/module_3.py"}
    with pytest.raises(QueryError):
        svc.member("x" * 100_001)


def test_owner_lookup(svc: Service) -> None:
    res = svc.owner("grace hoper")
    assert res["matches"][0]["owner"] == "Grace Hopper"
    assert res["matches"][0]["docs"] == 12
    assert res["matches"][0]["repos"] == [["https://github.com/hopper/repo1", 12]]
    assert res["matches"][0]["files"][0] == {"docid": "f01", "path": "src/module_1.py", "repo": "https://github.com/hopper/repo1"}
    assert "opt" in res["optout_instructions"].lower()
    assert svc.owner("Nobody Atall")["matches"] == []


def test_stats_count_licences_and_languages(svc: Service) -> None:
    s = svc.stats()
    docs = app_docs()
    assert s["docs"] == len(docs)
    licences = dict(s["licences"])
    assert licences["MIT"] == sum(1 for d in docs if d.meta["licence"] == "MIT")
    assert sum(licences.values()) == len(docs)
    assert dict(s["languages"])["Cython"] == 6
    assert s["bundle_bytes"] > s["text_bytes"] > 0


def test_stats_come_from_the_manifest_without_a_scan(
    app_bundle: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build counts licences and languages, so a Space with millions of documents starts at once."""
    counts = app_bundle.manifest["counts"]
    docs = app_docs()
    assert counts["licences"]["MIT"] == sum(1 for d in docs if d.meta["licence"] == "MIT")
    assert sum(counts["languages"].values()) == len(docs)

    def no_scan(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the docstore was scanned")

    monkeypatch.setattr(type(app_bundle.docstore), "iter_meta", no_scan)
    fresh = Service(app_bundle, flags_path=tmp_path / "flags.jsonl")
    assert dict(fresh.stats()["licences"])["MIT"] == counts["licences"]["MIT"]


def test_top_categories_fold_the_rest_into_other() -> None:
    from collections import Counter

    from spacerini.service import TOP_CATEGORIES, _top

    counter = Counter({f"l{i}": 100 - i for i in range(TOP_CATEGORIES + 3)})
    counter["(other)"] = 7  # what the manifest sums beyond its own cap
    top = _top(counter)
    assert len(top) == TOP_CATEGORIES + 1 and top[-1][0] == "(other)"
    assert top[-1][1] == 7 + sum(100 - i for i in range(TOP_CATEGORIES, TOP_CATEGORIES + 3))


def test_pii_is_redacted_on_display_only(svc: Service, app_bundle: Any, tmp_path: Path) -> None:
    hit = svc.search("bob smith contact", "bm25", 1, 0)["hits"][0]
    assert hit["docid"] == "evil"
    assert "bob.smith@gmail.com" not in json.dumps(hit) and "&lt;EMAIL&gt;" in hit["snippet"]
    assert "bob.smith@gmail.com" in app_bundle.doc("evil").text  # the stored document is untouched
    raw = Service(app_bundle, redact_pii=False, flags_path=tmp_path / "f.jsonl")
    assert "bob.smith@gmail.com" in re.sub("</?mark>", "", raw.search("bob smith contact", "bm25", 1, 0)["hits"][0]["snippet"])
    assert "gmail" not in json.dumps(svc.find("bob.smith", 5, 0).to_dict())


def test_redact_snippet_keeps_highlighting() -> None:
    snippet = "mail <mark>alice</mark>@corp-mail.de &lt;b&gt; key <mark>found</mark>"
    out = redact_snippet(snippet)
    assert "alice" not in out and "corp-mail" not in out
    assert "<mark>&lt;EMAIL&gt;</mark>" in out and "<mark>found</mark>" in out and "&lt;b&gt;" in out
    assert redact_snippet("plain <mark>text</mark>") == "plain <mark>text</mark>"


def _tags(markup: str) -> set[str]:
    return {m.lower() for m in re.findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", markup)}


def test_rendering_escapes_hostile_documents(svc: Service) -> None:
    allowed = {"div", "p", "b", "code", "small", "span", "pre", "mark", "i", "a", "ul", "li", "h4", "details", "summary"}
    hits = svc.hits(svc.search("script alert parser", "bm25", 10, 0))
    assert any(h.docid == "evil" for h in hits)
    for markup in (
        render_hits(hits),
        render_hits(hits, redact_pii=True),
        render_exact(1, svc.find("onerror", 5, 0)["hits"], page=1, page_size=5),
        render_member(HOSTILE_TEXT, svc.member(HOSTILE_TEXT)),
        render_owner(svc.owner("Mallory")),
    ):
        assert _tags(markup) <= allowed, _tags(markup) - allowed
        assert "href='javascript" not in markup
        assert "<script" not in markup and "<img" not in markup
    hostile = Hit("x", 1.0, 1, snippet="s", fields={"note": "<script>1</script>"}, meta={"repo": "javascript:alert(1)"})
    out = render_hits([hostile])
    assert "href" not in out and "&lt;script&gt;" in out


def test_highlight_spans_escapes_and_marks() -> None:
    assert highlight_spans("a<b>c", [(1, 4)]) == "a<mark>&lt;b&gt;</mark>c"
    assert highlight_spans("abcdef", [(0, 2), (1, 4)]) == "<mark>ab</mark><mark>cd</mark>ef"


def test_flags_are_appended_atomically(tmp_path: Path, app_bundle: Any) -> None:
    store = FlagStore(tmp_path / "sub" / "flags.jsonl", bundle_path=app_bundle.path)
    threads = [
        threading.Thread(target=lambda i=i: [store.add(query=f"q{i}", docid=f"d{i}-{j}", reason="x" * 500) for j in range(25)])
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.read()
    assert len(rows) == 200 and len({r["docid"] for r in rows}) == 200
    assert set(rows[0]) == {"at", "bundle", "query", "docid", "reason"}
    with pytest.raises(QueryError):
        store.add(query="q", docid=" ", reason="x")
    with pytest.raises(BundleError, match="inside the bundle"):
        FlagStore(app_bundle.path / "flags.jsonl", bundle_path=app_bundle.path)


def test_default_flags_path_is_outside_the_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app_bundle: Any) -> None:
    from spacerini.app.flags import default_flags_path

    monkeypatch.delenv("SPACERINI_FLAGS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    path = default_flags_path(app_bundle.path)
    assert path.parent == tmp_path / "spacerini" / "flags" and path.suffix == ".jsonl"
    svc = Service(app_bundle)
    svc.flag("parser", "f01", "licence problem")
    assert json.loads(path.read_text())["docid"] == "f01"


def test_trace_uses_the_model_package(svc: Service, app_bundle: Any) -> None:
    pytest.importorskip("spacerini.model")
    assert "trace" in svc.capabilities
    code = "x = 1\ndef fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
    res = svc.trace(code, 16)
    ref = app_bundle.searcher("exact").longest_matches(code, min_len=16, max_docs=5)
    assert [(s["start"], s["end"], s["count"]) for s in res["spans"]] == [(s.start, s.end, s.count) for s in ref]
    assert res["spans"][0]["sources"][0]["path"].startswith("src/module_")
    assert set(res["licences"]) <= {"MIT", "Apache-2.0", "BSD-3-Clause"}


def test_exact_ranked_hits_show_their_match_when_redacting(app_bundle: Any, tmp_path: Path) -> None:
    """Redacting, the exact backend's ranked hits came with a plain snippet of the document's
    start, with no match marked; they show the first occurrence, marked, as without redaction."""
    plain = Service(app_bundle, redact_pii=False, flags_path=tmp_path / "f.jsonl", requests_path=tmp_path / "r.jsonl")
    redacting = Service(app_bundle, redact_pii=True, flags_path=tmp_path / "f2.jsonl", requests_path=tmp_path / "r2.jsonl")
    query = "def __init__(self"
    shown = redacting.search(query, backend="exact", k=5).hits
    assert shown and all("<mark>" in h.snippet for h in shown)
    assert [(h.docid, h.score) for h in shown] == [(h.docid, h.score) for h in plain.search(query, backend="exact", k=5).hits]
