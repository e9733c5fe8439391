"""A public Space: no uploads or file serving, a working /openapi.json, no build paths, errors
that show no Python text and log one line."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_fixtures import free_port

from spacerini.app import INTERNAL_ERROR
from spacerini.app.jsonapi import NoFilesMiddleware


@pytest.fixture(scope="module")
def server(app_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """This module's own server (its service is patched by some tests); yields (url, app)."""
    from spacerini.app import serve

    stores = tmp_path_factory.mktemp("security")
    port = free_port()
    app = serve(
        app_bundle, port=port, block=False, flags_path=stores / "flags.jsonl", requests_path=stores / "requests.jsonl"
    )
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(server: tuple[str, Any]) -> Any:
    from gradio_client import Client

    return Client(server[0], verbose=False)


# ---------------------------------------------------------------------------- uploads, files
@pytest.mark.slow
def test_uploads_are_refused(server: tuple[str, Any]) -> None:
    url, app = server
    upload_dir = Path(app.server_app.uploaded_file_dir)
    before = set(upload_dir.rglob("*")) if upload_dir.exists() else set()
    marker = f"anonymous upload {uuid.uuid4().hex}"
    for route in ("gradio_api/upload", "gradio_api/upload?upload_id=x", "upload"):
        r = httpx.post(url + route, files={"files": ("note.txt", marker.encode())}, timeout=10)
        assert r.status_code in (403, 404), (route, r.status_code, r.text[:200])
        assert "/tmp" not in r.text and "note.txt" not in r.text
    after = set(upload_dir.rglob("*")) if upload_dir.exists() else set()
    assert not [p for p in after - before if p.is_file() and marker in p.read_text(errors="ignore")]


@pytest.mark.slow
def test_files_in_gradio_temp_folders_are_not_served(server: tuple[str, Any]) -> None:
    """Gradio serves anything in its upload and cache folders through ``file=``; this app has
    no file component, so nothing there is served."""
    from gradio.utils import get_cache_folder

    url, app = server
    folders = [Path(app.server_app.uploaded_file_dir), Path(get_cache_folder())]
    for folder in folders:
        probe = folder / uuid.uuid4().hex / "left-behind.txt"
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text("upload from someone else")
        try:
            for route in ("gradio_api/file=", "file=", "gradio_api/file/"):
                r = httpx.get(url + route + str(probe), timeout=10)
                assert r.status_code in (403, 404), (route, str(probe), r.status_code)
                assert "someone else" not in r.text
        finally:
            probe.unlink()
            probe.parent.rmdir()
    assert httpx.get(url + "gradio_api/proxy=https://example.hf.space/x", timeout=10).status_code == 403


def test_no_files_middleware_matches_only_file_routes() -> None:
    refused = [
        "/gradio_api/upload",
        "/gradio_api/upload_progress",
        "//gradio_api//upload",
        "/upload",
        "/gradio_api/file=/tmp/gradio/x/a.txt",
        "/file=/etc/passwd",
        "/gradio_api/file/tmp/x",
        "/file/tmp/x",
        "/gradio_api/proxy=https://x.hf.space/a",
    ]
    served = ["/", "/config", "/gradio_api/info", "/gradio_api/queue/join", "/assets/index.js", "/api/search", "/openapi.json"]
    assert [p for p in refused if not NoFilesMiddleware.refused(p)] == []
    assert [p for p in served if NoFilesMiddleware.refused(p)] == []
    assert NoFilesMiddleware.refused("/space/gradio_api/upload", "/space")
    assert not NoFilesMiddleware.refused("/space/config", "/space")


# ------------------------------------------------------------------------------- openapi
@pytest.mark.slow
def test_openapi_json_answers(server: tuple[str, Any]) -> None:
    r = httpx.get(server[0] + "openapi.json", timeout=30)
    assert r.status_code == 200, r.text[:300]
    paths = r.json()["paths"]
    assert {"/api/search", "/api/count", "/api/find", "/api/owner", "/api/stats", "/api/optout-request"} <= set(paths)
    assert "post" in paths["/api/optout-request"] and "get" in paths["/api/search"]


# ------------------------------------------------------------------------------ no paths
def _has_local_path(value: Any, root: str) -> bool:
    return root in json.dumps(value, default=dict)


def test_stats_and_rendered_manifest_carry_no_build_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app_fixtures import app_docs

    from spacerini.bundle import build_bundle
    from spacerini.deploy import render_space
    from spacerini.service import Service

    corpus = tmp_path / "private" / "corpus.jsonl"
    corpus.parent.mkdir()
    with corpus.open("w", encoding="utf-8") as fh:
        for d in app_docs()[:12]:
            fh.write(json.dumps({"id": d.id, "text": d.text, **d.meta}) + "\n")
    ids = tmp_path / "private" / "optout-ids.txt"
    ids.write_text("f03\n")
    bundle = build_bundle(
        corpus,
        tmp_path / "bundle",
        backends=["exact"],
        preprocess=["optout"],
        preprocess_options={"optout": {"ids_file": str(ids)}},
        progress=False,
    )
    root = str(tmp_path / "private")
    assert _has_local_path(bundle.manifest, root)  # what the bundle itself records, for its builder

    stats = Service(bundle, flags_path=tmp_path / "f.jsonl").stats()
    assert not _has_local_path(stats, root), stats
    assert stats["source"]["source"] == "corpus.jsonl" and stats["docs"] == 11
    assert stats["preprocess"][0]["params"]["ids_file"] == "optout-ids.txt"

    monkeypatch.setenv("HF_TOKEN", "hf_NotARealToken")
    space = render_space(bundle.path, tmp_path / "space")
    rendered = json.loads((space / "bundle" / "spacerini.json").read_text(encoding="utf-8"))
    assert not _has_local_path(rendered, root)
    assert rendered["checksums"] == bundle.manifest["checksums"] and rendered["backends"] == bundle.manifest["backends"]
    assert _has_local_path(json.loads((bundle.path / "spacerini.json").read_text()), root)  # the bundle is untouched
    from spacerini.bundle import open_bundle

    assert len(open_bundle(space / "bundle", verify=True)) == 11


# -------------------------------------------------------------------------------- errors
@pytest.mark.slow
def test_a_refused_call_writes_one_log_line_and_no_traceback(
    client: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="spacerini"):
        with pytest.raises(Exception, match="the query is empty"):
            client.predict("", "", 5, 0, api_name="/search")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    ours = [r for r in caplog.records if r.name.startswith("spacerini") and "empty" in r.getMessage()]
    assert len(ours) == 1 and ours[0].exc_info is None and "\n" not in ours[0].getMessage()


@pytest.mark.slow
def test_error_messages_are_escaped(client: Any) -> None:
    with pytest.raises(Exception) as info:
        client.predict("parser", "<img src=x onerror=alert(1)>", 5, 0, api_name="/search")
    message = str(info.value)
    assert "not available" in message and "<img" not in message and "&lt;img" in message
    with pytest.raises(Exception, match="backend 'dense' is not available"):  # quotes stay readable
        client.predict("parser", "dense", 5, 0, api_name="/search")


@pytest.mark.slow
def test_unexpected_errors_show_a_generic_message_logged_once(
    server: tuple[str, Any], client: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    svc = server[1].spacerini_service
    secret = "/srv/secret/build/path.py line 12 in KeyError('internals')"

    def broken(text: str) -> dict[str, Any]:
        raise RuntimeError(secret)

    real = svc.count
    svc.count = broken
    capfd.readouterr()
    try:
        with caplog.at_level(logging.INFO, logger="spacerini"):
            with pytest.raises(Exception) as info:
                client.predict("json.load", api_name="/count")
    finally:
        svc.count = real
    assert str(info.value) == INTERNAL_ERROR and "secret" not in str(info.value)
    logged = [r for r in caplog.records if r.exc_info and secret in str(r.exc_info[1])]
    assert len(logged) == 1
    out, err = capfd.readouterr()
    assert (out + err).count("Traceback") <= 1  # ours, through logging (if a handler prints it); not Gradio's too


@pytest.mark.slow
def test_gradio_endpoints_rate_limit_by_client_address(server: tuple[str, Any], client: Any) -> None:
    from spacerini.app.requests import REQUESTS_PER_CLIENT

    svc = server[1].spacerini_service
    for _ in range(REQUESTS_PER_CLIENT):
        client.predict("Ada Lovelace", "ada@example.org", "", api_name="/optout_request")
    with pytest.raises(Exception, match="too many opt-out requests"):
        client.predict("Ada Lovelace", "ada@example.org", "", api_name="/optout_request")
    assert list(svc.request_limits[0]._seen) == ["127.0.0.1"]  # Gradio passed the request: keyed by address
    assert len(svc.requests.read()) == REQUESTS_PER_CLIENT


@pytest.mark.slow
def test_an_unknown_endpoint_is_a_one_line_404(server: tuple[str, Any]) -> None:
    """Gradio answered 500 Internal Server Error (and logged a traceback) for /gradio_api/call/NAME
    with a NAME that no endpoint has."""
    url, _ = server
    r = httpx.post(url + "gradio_api/call/no_such_endpoint", json={"data": ["x"]}, timeout=10)
    assert r.status_code == 404, (r.status_code, r.text[:200])
    assert r.json()["error"].startswith("no such endpoint") and "Traceback" not in r.text
    known = httpx.post(url + "gradio_api/call/search", json={"data": ["parser", "", 10, 0]}, timeout=10)
    assert known.status_code == 200, known.text[:200]  # a real endpoint is unaffected
