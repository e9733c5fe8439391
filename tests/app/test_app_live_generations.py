"""A running `spacerini serve` follows the bundle's generations: opt-outs and rebuilds show at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from app_fixtures import free_port

from spacerini.bundle import build_bundle
from spacerini.records import Doc

BACKENDS = ["bm25", "exact", "bloom", "owners"]


def _docs(word: str, n: int = 30) -> list[Doc]:
    return [
        Doc(
            id=f"d{i:02d}",
            text=f"def {word}_{i}(x):\n    return owner{i % 3}_marker + x  # {word} helper\n",
            meta={"owner": f"Owner {i % 3}", "repo": f"https://example.org/org{i % 3}/repo"},
        )
        for i in range(n)
    ]


def _until(check, *, seconds: float) -> float:  # noqa: ANN001 - a predicate
    """Seconds until ``check()`` is true (fails the test after ``seconds``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "the server did not switch in time"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    bundle = tmp_path / "b"
    build_bundle(_docs("parse"), bundle, backends=BACKENDS, progress=False).close()
    port = free_port()
    env = {**os.environ, "SPACERINI_NO_PROGRESS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(
        [sys.executable, "-m", "spacerini", "-q", "serve", str(bundle), "--port", str(port),
         "--flags", str(tmp_path / "flags.jsonl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        try:
            return httpx.get(url + "api/stats", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _until(up, seconds=180)
        yield url, bundle
    finally:
        server.terminate()
        server.wait(timeout=60)


def _get(url: str, route: str, **params: object) -> dict:
    r = httpx.get(url + route, params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_served_app_drops_opted_out_documents_within_two_seconds(live: tuple[str, Path]) -> None:
    url, bundle = live
    assert _get(url, "api/count", q="owner1_marker")["count"] == 10
    assert _get(url, "api/stats")["audit_log"] == []
    done = subprocess.run(
        [sys.executable, "-m", "spacerini", "-q", "optout", str(bundle), "--owner", "Owner 1"],
        capture_output=True, env={**os.environ, "SPACERINI_NO_PROGRESS": "1"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    waited = _until(lambda: _get(url, "api/count", q="owner1_marker")["count"] == 0, seconds=2.0)
    assert waited <= 2.0
    assert _get(url, "api/find", q="owner1_marker")["hits"] == []
    assert not [h for h in _get(url, "api/search", q="owner1_marker", k=50)["hits"] if h["docid"] in {"d01", "d04"}]
    stats = _get(url, "api/stats")
    assert stats["docs"] == 20 and len(stats["audit_log"]) == 1
    owners = _get(url, "api/owner", name="Owner 1")
    assert "Owner 1" not in {m["owner"] for m in owners["matches"]}


@pytest.mark.slow
def test_served_app_switches_every_backend_together_after_a_rebuild(live: tuple[str, Path]) -> None:
    url, bundle = live
    assert _get(url, "api/count", q="parse_")["count"] == 30
    build_bundle(_docs("tokenize", n=7), bundle, backends=BACKENDS, progress=False).close()
    _until(lambda: _get(url, "api/stats")["docs"] == 7, seconds=2.0)
    assert _get(url, "api/count", q="parse_")["count"] == 0
    assert _get(url, "api/count", q="tokenize_")["count"] == 7
    hits = _get(url, "api/search", q="tokenize helper", k=20)["hits"]
    assert {h["docid"] for h in hits} == {f"d{i:02d}" for i in range(7)}


def test_the_page_shows_the_generation_in_use_when_it_loads(tmp_path: Path) -> None:
    """The header and the Stats tab were filled once, when the app started: after an opt-out a page
    still said 30 documents and showed no audit log while every answer came from 20."""
    from spacerini.app import build_app
    from spacerini.bundle import open_bundle, optout

    path = tmp_path / "b"
    build_bundle(_docs("parse"), path, backends=BACKENDS, progress=False).close()
    with open_bundle(path) as bundle:
        app = build_app(bundle)
        (load,) = [f for f in app.fns.values() if getattr(f.fn, "__name__", "") == "refresh"]
        assert not load.queue  # a page load does not wait in Gradio's queue
        outputs = [block.elem_id for block in load.outputs]
        summary, audit_log = outputs.index("sp-stats-summary"), outputs.index("sp-audit-log")
        before = load.fn()
        assert "**b**: 30 documents" in before[0] and "**30** documents" in before[summary]
        assert before[audit_log] is None and before[audit_log - 1]["visible"] is False
        optout(path, owners=["Owner 1"], progress=False)
        bundle.reload()
        after = load.fn()
        assert "**b**: 20 documents" in after[0] and "**20** documents" in after[summary]
        assert after[audit_log - 1]["visible"] is True and after[audit_log][0]["removed"] == 10
        assert "Owner 1" not in str(after)
