"""Security and privacy sweep of the served app: each defect found by probing a served bundle as a
hostile visitor, pinned here (the app lends no token, takes no upload, shows no server path, and
redacts PII on display in every answer)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_fixtures import api_get

from spacerini.app.jsonapi import NoFilesMiddleware
from spacerini.errors import BundleCorruptError, SpaceriniError
from spacerini.records import Doc
from spacerini.service import Service

EMAIL = "alice.jones@gmail.com"
KEY = "AKIAIOSFODNN7EXAMPLE"
TOKEN = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"


def _docs() -> list[Doc]:
    docs = [
        Doc(
            id=f"d{i}",
            text=f"def helper_{i}(x):\n    return x + {i}  # alice wrote this helper\n",
            fields={"title": f"m{i}.py"},
            meta={"repo": "https://github.com/acme/r", "path": f"src/m{i}.py", "owner": "Ada", "licence": "MIT"},
        )
        for i in range(6)
    ]
    docs.append(
        Doc(
            id="secrets",
            text=f"config by alice\ncontact {EMAIL}\naws_key = {KEY}\ntoken = {TOKEN}\n",
            fields={"title": "settings.py"},
            meta={
                "path": "settings.py",
                "owner": "Bob",
                # a licence field as some datasets hold it: with the author's address
                "licence": f"Copyright Bob <{EMAIL}>",
                "language": "Python",
            },
        )
    )
    return docs


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from spacerini.bundle import build_bundle

    out = tmp_path_factory.mktemp("sweep") / "bundle"
    return build_bundle(_docs(), out, backends=["bm25", "exact", "owners"], progress=False)


def _service(bundle: Any, tmp_path: Path, **kwargs: Any) -> Service:
    return Service(bundle, flags_path=tmp_path / "f.jsonl", requests_path=tmp_path / "r.jsonl", **kwargs)


_get = api_get


# ------------------------------------------------------------------------------- the token
@pytest.mark.slow
def test_run_history_is_off_so_no_visitor_borrows_the_host_token(app_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio's run history (on by default) served /gradio_api/run-history/... and recorded runs
    into a bucket named by a request header, with the host's own Hugging Face token for any
    request that reached the server over loopback (a local reverse proxy, a tunnel): a visitor
    could list, create, read and write the host's buckets."""
    import gradio.history

    asked: list[Any] = []
    monkeypatch.setattr(gradio.history, "resolve_token", lambda request: asked.append(request))  # no Hub call
    config = httpx.get(app_server + "config", timeout=30).json()
    assert config.get("run_history") is False
    for route in ("gradio_api/run-history/buckets", "gradio_api/run-history/records?bucket=someone/bucket"):
        r = httpx.get(app_server + route, timeout=30)
        assert r.status_code in (403, 404), (route, r.status_code, r.text[:200])
    r = httpx.post(
        app_server + "gradio_api/call/count", json={"data": ["parser"]}, headers={"x-gradio-history-bucket": "a/b"}, timeout=30
    )
    assert r.status_code == 200
    httpx.get(app_server + f"gradio_api/call/count/{r.json()['event_id']}", timeout=30)
    assert asked == []


@pytest.mark.slow
def test_the_recording_upload_route_is_refused(app_server: str) -> None:
    """/gradio_api/process_recording took an anonymous upload, wrote it to a temporary file and
    ran ffmpeg on it with the caller's filter options (or sent it back when ffmpeg is absent)."""
    assert NoFilesMiddleware.refused("/gradio_api/process_recording")
    assert NoFilesMiddleware.refused("/space/gradio_api/process_recording", "/space")
    for route in ("gradio_api/process_recording", "process_recording"):
        r = httpx.post(app_server + route, files={"video": ("a.mp4", b"not a video", "video/mp4")}, timeout=30)
        assert r.status_code in (403, 404), (route, r.status_code)
        assert b"not a video" not in r.content


# -------------------------------------------------------------------------------- paths
def test_error_messages_shown_to_visitors_carry_no_server_path(tmp_path: Path) -> None:
    from spacerini.bundle import build_bundle
    from spacerini.corpora import Corpora

    owners_only = build_bundle(_docs(), tmp_path / "private" / "owners-only", backends=["owners"], progress=False)
    root = str(tmp_path / "private")
    svc = _service(owners_only, tmp_path)
    with pytest.raises(SpaceriniError) as info:
        svc.search("helper")
    assert root not in str(info.value) and "no ranked backend" in str(info.value)

    # Any refusal that names the bundle's files (a corrupt or changing bundle) is told without them.
    def corrupt(*_: Any, **__: Any) -> Any:
        raise BundleCorruptError(f"{owners_only.path}/exact: shard sizes do not match its suffix array or doc table")

    svc.owner = corrupt  # type: ignore[method-assign]
    r = _get(svc, "/api/owner", name="Ada")
    assert r.status_code == 400 and root not in r.text, r.text
    assert r.json()["error"] == "exact: shard sizes do not match its suffix array or doc table"
    columns = _get(Corpora({"one": svc}), "/api/compare", q="helper").json()["corpora"]
    assert root not in json.dumps(columns) and "shard sizes" in json.dumps(columns)


def test_the_gradio_handlers_show_refusals_without_server_paths(tmp_path: Path) -> None:
    import gradio as gr

    from spacerini.app import _guard

    where = tmp_path / "srv" / "bundle" / "bloom"

    def refused() -> None:
        raise BundleCorruptError(f"{where}: cannot read the bloom filter: truncated")

    with pytest.raises(gr.Error) as info:
        _guard(refused)()
    assert str(tmp_path) not in str(info.value) and "bloom: cannot read the bloom filter" in str(info.value)


def test_scrub_paths_keeps_routes_urls_and_relative_paths() -> None:
    from spacerini.app.jsonapi import scrub_paths

    text = "see /api/search?q=x and https://github.com/a/b or src/a/b.py; /tmp/x/y/z.jsonl: bad"
    assert scrub_paths(text) == "see /api/search?q=x and https://github.com/a/b or src/a/b.py; z.jsonl: bad"


# ---------------------------------------------------------------------- PII on display
def test_counts_finds_and_exact_search_do_not_confirm_part_of_a_secret(bundle: Any, tmp_path: Path) -> None:
    """A query that is PII was refused, but a part of one was counted: ``AKIAIOSFODNN7EXAMPL``
    (19 of the key's 20 characters) or ``alice.jones@gmail`` answered 1, so a visitor could
    read a key or an address out of the corpus a character at a time."""
    plain = _service(bundle, tmp_path, redact_pii=False)
    svc = _service(bundle, tmp_path)
    parts = [KEY[:-1], KEY[4:12], EMAIL[:-4], "alice.jones@", TOKEN[:-1], TOKEN[:14]]
    for part in parts:
        assert plain.count(part).count == 1, part  # the oracle exists
        assert svc.count(part).count == 0, part
        found = svc.find(part)
        assert found.count == 0 and not found.hits, part
        assert not svc.search(part, "exact").hits, part
        assert _get(svc, "/api/count", q=part).json()["count"] == 0, part
    # Occurrences outside the PII are still counted, found and ranked; the ones inside are not.
    assert plain.count("alice").count == 8 and svc.count("alice").count == 7
    pages = [svc.find("alice", 3, offset) for offset in (0, 3, 6)]
    assert [p.count for p in pages] == [7, 7, 7]
    shown = [(h.docid, h.offset) for p in pages for h in p.hits]
    assert len(shown) == 7 == len(set(shown)) and [h.rank for p in pages for h in p.hits] == list(range(1, 8))
    assert all(EMAIL not in h.snippet for p in pages for h in p.hits)
    ranked = svc.search("alice", "exact", 10, 0).hits
    assert [h.docid for h in ranked] == [*(f"d{i}" for i in range(6)), "secrets"]  # one each: corpus order
    assert ranked[-1].score == 1.0 and "config by <mark>alice</mark>" in ranked[-1].snippet
    assert all(EMAIL not in h.snippet and EMAIL not in json.dumps(h.meta) for h in ranked)
    assert svc.count("helper").count == plain.count("helper").count == 12  # text without PII is untouched


def test_membership_and_tracing_do_not_confirm_part_of_a_secret(bundle: Any, tmp_path: Path) -> None:
    """A pasted secret was left out of membership, but a part of one was not: the line that
    holds a key, less its last character, came back as a span found in the corpus."""
    plain = _service(bundle, tmp_path, redact_pii=False)
    svc = _service(bundle, tmp_path)
    for pasted in (f"config by alice\ncontact {EMAIL[:-1]}", f"contact {EMAIL}\naws_key = {KEY[:-1]}", f"token = {TOKEN[:-1]}"):
        assert plain.member(pasted).exact_spans, pasted  # the oracle: the corpus holds it
        for answer in (svc.member(pasted), svc.trace(pasted, min_len=8)):
            spans = getattr(answer, "exact_spans", None) or answer.spans
            shown = " ".join(s.text for s in spans)
            assert not any(part in shown for part in (EMAIL[:8], KEY[:8], TOKEN[:8])), (pasted, shown)
    # the text around the secret is still found, and text with no PII near it is untouched
    around = svc.trace(f"config by alice\ncontact {EMAIL[:-1]}", min_len=8)
    assert [s.text for s in around.spans] == ["config by alice\ncontact "]
    code = "def helper_3(x):\n    return x + 3  # alice wrote this helper\n"
    assert [(s.start, s.end) for s in svc.member(code).exact_spans] == [(s.start, s.end) for s in plain.member(code).exact_spans] == [(0, len(code))]


def test_stats_redact_licence_and_language_names(bundle: Any, tmp_path: Path) -> None:
    stats = _service(bundle, tmp_path).stats()
    assert dict(stats["licences"]) == {"MIT": 6, "Copyright Bob <<EMAIL>>": 1}
    raw = _service(bundle, tmp_path, redact_pii=False).stats()
    assert dict(raw["licences"])[f"Copyright Bob <{EMAIL}>"] == 1  # --no-redact shows it as stored
    r = _get(_service(bundle, tmp_path), "/api/stats")
    assert EMAIL not in r.text


def test_the_audit_log_shown_to_visitors_lists_no_digests_of_removed_documents(tmp_path: Path) -> None:
    """The Stats tab and /api/stats showed the SHA-256 of every removed document id: hashing
    the ids of the (public) source told anyone which documents, and so whose, were removed."""
    from spacerini.bundle import build_bundle, open_bundle, optout

    out = tmp_path / "bundle"
    build_bundle(_docs(), out, backends=["exact", "owners"], progress=False)
    optout(out, owners=["Ada"], progress=False)
    bundle = open_bundle(out)
    assert bundle.manifest["audit_log"][-1]["removed_id_sha256"]  # kept in the manifest (rebuilds need it)
    log = _service(bundle, tmp_path).stats()["audit_log"]
    assert log and log[-1]["removed"] == 6 and log[-1]["action"] == "optout"
    text = json.dumps(log)
    assert "removed_id_sha256" not in text and "removed_owner_hmac" not in text
    assert hashlib.sha256(b"d0").hexdigest() not in text
    assert hashlib.sha256(b"d0").hexdigest() not in _get(_service(bundle, tmp_path), "/api/stats").text


# ------------------------------------------------------------------------- rendering
def test_a_licence_with_dollar_signs_neither_stops_the_app_nor_is_read_as_tex(tmp_path: Path) -> None:
    """matplotlib read a chart label holding two ``$`` as TeX: a licence such as ``a$\\frac{$b``
    in one document raised while the Stats tab was drawn, and build_app (so ``spacerini serve``)
    failed."""
    from spacerini.app import build_app
    from spacerini.bundle import build_bundle

    docs = [Doc(id=f"d{i}", text=f"text {i}", meta={"licence": "a$\\frac{$b" if i else "$x$"}) for i in range(3)]
    bundle = build_bundle(docs, tmp_path / "bundle", backends=["exact"], progress=False)
    app = build_app(bundle, flags_path=tmp_path / "f.jsonl", requests_path=tmp_path / "r.jsonl")
    charts = [c.value for c in app.blocks.values() if getattr(c, "elem_id", None) == "sp-licences"]
    assert len(charts) == 1 and charts[0].lstrip().startswith("<svg") and "frac" in charts[0]  # drawn as text


def test_the_flag_receipt_shows_markdown_in_ids_and_reasons_as_text(app_bundle: Any, tmp_path: Path) -> None:
    """The receipt is Markdown: a reason (or a document id from the corpus) such as
    ``![x](https://tracker/pixel.png)`` was rendered, an image fetched from another site."""
    from markdown_it import MarkdownIt

    from spacerini.app import build_app

    app = build_app(app_bundle, flags_path=tmp_path / "f.jsonl", requests_path=tmp_path / "r.jsonl")
    flag = next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", "") == "flag")
    reason = "![x](http://tracker.invalid/p.png) [click](javascript:alert(1)) <img src=x onerror=alert(1)> www.a.invalid"
    receipt = flag(app.spacerini_corpora.default, "parser", "evil", reason)
    rendered = MarkdownIt("commonmark").enable("linkify").render(receipt) if _linkify() else MarkdownIt().render(receipt)
    assert "<img" not in rendered and "<a " not in rendered, rendered
    assert "![x](http://tracker.invalid/p.png)" in rendered and "&lt;img src=x onerror=alert(1)&gt;" in rendered


def _linkify() -> bool:
    try:
        import linkify_it  # noqa: F401
    except ImportError:
        return False
    return True
