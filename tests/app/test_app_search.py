"""The minimal search app: /search API endpoint over loopback, escaping, pagination."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from spacerini.app import render_hits
from spacerini.bundle import build_bundle
from spacerini.records import Doc, Hit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_render_escapes_document_text() -> None:
    hit = Hit(
        docid="<b>id</b>",
        score=1.0,
        rank=1,
        snippet="&lt;script&gt;alert(1)&lt;/script&gt; <mark>x</mark>",
        fields={"title": "<img src=x onerror=alert(1)>"},
        meta={"repo": "javascript:alert(1)", "licence": "<MIT>"},
    )
    out = render_hits([hit])
    assert "<script>" not in out and "<img" not in out and "<b>id" not in out
    assert "javascript:" not in out.split("href")[0] or "href='javascript" not in out
    assert "<mark>x</mark>" in out


@pytest.mark.slow
def test_search_endpoint_over_loopback(tmp_path: Path) -> None:
    from gradio_client import Client

    from spacerini.app import serve

    docs = [
        Doc(id=f"d{i}", text=f"alpha document {i} " + ("beta " * (i % 5)), meta={"path": f"/etc/file{i}"})
        for i in range(30)
    ]
    docs.append(Doc(id="evil", text="beta <script>alert('x')</script> beta"))
    bundle = build_bundle(docs, tmp_path / "b", progress=False)
    port = _free_port()
    app = serve(bundle, port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        page1 = json.loads(client.predict("beta", "", 5, 0, api_name="/search"))["hits"]
        page2 = json.loads(client.predict("beta", "", 5, 5, api_name="/search"))["hits"]
        assert [h["rank"] for h in page1] == [1, 2, 3, 4, 5]
        assert [h["rank"] for h in page2] == [6, 7, 8, 9, 10]
        ids = [h["docid"] for h in page1 + page2]
        assert ids == [h.docid for h in bundle.search("beta", k=10)]
        assert page1[0]["meta"]["path"].startswith("/etc/file")  # provenance comes back as data, not a file
        evil = bundle.search("script alert", k=1)[0]
        assert evil.docid == "evil" and "<script>" not in evil.snippet
        with pytest.raises(Exception, match="empty"):
            client.predict("", "", 5, 0, api_name="/search")
    finally:
        app.close()
