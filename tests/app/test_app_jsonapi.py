"""The plain JSON routes beside the Gradio app, their limits, and the app's load-related settings."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any

import httpx
import pytest

from spacerini.app.jsonapi import Busy, Limiter, json_api_routes
from spacerini.service import LRUCache, Service


# ----------------------------------------------------------------------------- over loopback
@pytest.mark.slow
def test_search_route_matches_the_bundle_and_the_gradio_endpoint(app_server: str, app_bundle: Any) -> None:
    from gradio_client import Client

    r = httpx.get(app_server + "api/search", params={"q": "parser helper", "backend": "bm25", "k": 5, "offset": 5}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    answer = r.json()
    ref = app_bundle.search("parser helper", k=5, offset=5)
    assert [h["docid"] for h in answer["hits"]] == [h.docid for h in ref]
    assert [h["rank"] for h in answer["hits"]] == [6, 7, 8, 9, 10]
    assert [h["score"] for h in answer["hits"]] == pytest.approx([h.score for h in ref])
    via_gradio = json.loads(Client(app_server, verbose=False).predict("parser helper", "bm25", 5, 5, api_name="/search"))
    assert via_gradio == answer
    default = httpx.get(app_server + "api/search", params={"q": "parser helper"}, timeout=30).json()
    assert default["backend"] == "bm25" and default["k"] == 10 and len(default["hits"]) == 10


@pytest.mark.slow
def test_other_routes_answer_like_the_service(app_server: str, app_bundle: Any) -> None:
    assert httpx.get(app_server + "api/count", params={"q": "json.load"}, timeout=30).json() == {"query": "json.load", "count": 9, "generation": 1}
    found = httpx.get(app_server + "api/find", params={"q": "json.load", "k": 4, "offset": 4}, timeout=30).json()
    assert found["count"] == 9 and [h["rank"] for h in found["hits"]] == [5, 6, 7, 8]
    owner = httpx.get(app_server + "api/owner", params={"name": "Alan Turing", "limit": 5}, timeout=30).json()
    assert owner["matches"][0]["docs"] == 12 and len(owner["matches"][0]["files"]) == 5
    assert httpx.get(app_server + "api/stats", timeout=30).json()["docs"] == len(app_bundle)


@pytest.mark.slow
def test_bad_and_oversize_queries_are_refused(app_server: str) -> None:
    cases = [
        ("api/search", {"q": "x" * 10_001}, "limit is 10,000"),
        ("api/search", {"q": "   "}, "empty"),
        ("api/search", {"q": "parser", "k": "1000"}, "k must be between 1 and 100"),
        ("api/search", {"q": "parser", "k": "ten"}, "k must be an integer"),
        ("api/search", {"q": "parser", "offset": "99999999"}, "offset must be between"),
        ("api/search", {"q": "parser", "backend": "dense"}, "not available"),
        ("api/count", {"q": "y" * 10_001}, "limit is 10,000"),
        ("api/owner", {"name": "z" * 201}, "at most 200 characters"),
    ]
    for route, params, message in cases:
        r = httpx.get(app_server + route, params=params, timeout=30)
        assert r.status_code == 400, (route, params, r.status_code)
        assert message in r.json()["error"] and "Traceback" not in r.text
    assert httpx.get(app_server + "api/member", timeout=10).status_code == 405  # long texts go in a POST body


# ------------------------------------------------------------------------------ concurrency
def test_limiter_runs_at_most_n_and_refuses_beyond_the_wait_line() -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    running: list[int] = []
    peak = [0]
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            running.append(i)
            peak[0] = max(peak[0], len(running))
        started.release()
        release.wait(10)
        with lock:
            running.remove(i)
        return i

    async def scenario() -> tuple[list[Any], Limiter]:
        limiter = Limiter(2, 1)
        tasks = [asyncio.create_task(limiter.run(work, i)) for i in range(3)]  # 2 run, 1 waits
        await asyncio.to_thread(started.acquire)
        await asyncio.to_thread(started.acquire)
        await asyncio.sleep(0.05)
        assert limiter.running == 2 and limiter.waiting == 1
        with pytest.raises(Busy, match="busy"):
            await limiter.run(work, 99)
        release.set()
        return await asyncio.gather(*tasks), limiter

    results, limiter = asyncio.run(scenario())
    assert results == [0, 1, 2] and peak[0] == 2 and limiter.refused == 1
    assert limiter.running == 0 and limiter.waiting == 0


def test_a_busy_server_answers_503(app_bundle: Any, tmp_path: Any) -> None:
    from fastapi import FastAPI

    svc = Service(app_bundle, flags_path=tmp_path / "flags.jsonl")
    release = threading.Event()
    entered = threading.Event()
    real_stats = svc.stats

    def slow_stats() -> dict[str, Any]:
        entered.set()
        release.wait(10)
        return real_stats()

    svc.stats = slow_stats  # type: ignore[method-assign]
    app = FastAPI(routes=json_api_routes(svc, limiter=Limiter(1, 0)))

    async def scenario() -> tuple[int, int, str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = asyncio.create_task(client.get("/api/stats"))
            await asyncio.to_thread(entered.wait, 10)
            refused = await client.get("/api/stats")
            release.set()
            return (await first).status_code, refused.status_code, refused.headers.get("retry-after", "")

    assert asyncio.run(scenario()) == (200, 503, "1")


def test_serve_bounds_the_queue_and_the_json_routes(app_bundle: Any, tmp_path: Any) -> None:
    from spacerini.app import CONCURRENCY, QUEUE_SIZE, build_app

    before = {k: os.environ.get(k) for k in ("GRADIO_ANALYTICS_MAX_EVENTS", "GRADIO_ANALYTICS_CACHE_FREQUENCY")}
    app = build_app(app_bundle, flags_path=tmp_path / "flags.jsonl")
    assert app._queue.max_size == QUEUE_SIZE and app._queue.default_concurrency_limit == CONCURRENCY
    # Gradio's per-event analytics summary is bounded and no longer recomputed after every event.
    assert app._queue.ANALYTICS_MAX_EVENTS <= 1_000 and app._queue.ANAYLTICS_CACHE_FREQUENCY >= 100
    assert {k: os.environ.get(k) for k in before} == before  # the settings did not leak into the process


# ----------------------------------------------------------------------------- display cache
def test_lru_cache_keeps_the_most_recent() -> None:
    cache = LRUCache(2)
    calls: list[str] = []

    def make(key: str) -> Any:
        return lambda: calls.append(key) or key.upper()

    assert cache.get_or_make("a", make("a")) == "A"
    assert cache.get_or_make("b", make("b")) == "B"
    assert cache.get_or_make("a", make("a")) == "A"  # hit: "a" is now the most recent
    cache.get_or_make("c", make("c"))  # evicts "b"
    cache.get_or_make("b", make("b"))
    assert calls == ["a", "b", "c", "b"] and len(cache) == 2 and (cache.hits, cache.misses) == (1, 4)


def test_cached_display_values_are_not_shared_with_callers(app_bundle: Any, tmp_path: Any) -> None:
    svc = Service(app_bundle, flags_path=tmp_path / "flags.jsonl")
    first = svc.search("script alert", "", 10, 0)
    evil = next(h for h in first["hits"] if h["docid"] == "evil")
    assert "bob.smith@gmail.com" not in evil["snippet"]  # redacted on display
    evil["meta"]["owner"] = "changed"
    evil["fields"]["note"] = "changed"
    again = next(h for h in svc.search("script alert", "", 10, 0)["hits"] if h["docid"] == "evil")
    assert again["meta"]["owner"] == "Mallory" and again["fields"]["note"] == "<script>alert(3)</script>"
    assert svc._display.hits >= 1
    plain = Service(app_bundle, redact_pii=False, flags_path=tmp_path / "flags.jsonl")
    assert [h["fields"] for h in plain.search("parser helper", "", 10, 0)["hits"]] == [
        dict(h.fields) for h in app_bundle.search("parser helper", k=10)
    ]


@pytest.mark.slow
def test_search_route_can_skip_snippets(app_server: str, app_bundle: Any) -> None:
    r = httpx.get(app_server + "api/search", params={"q": "parser helper", "snippets": "false"}, timeout=30).json()
    assert [h["docid"] for h in r["hits"]] == [h.docid for h in app_bundle.search("parser helper", k=10)]
    assert all(h["snippet"] == "" for h in r["hits"]) and r["hits"][0]["meta"]["path"].startswith("src/")
    with_snippets = httpx.get(app_server + "api/search", params={"q": "parser helper"}, timeout=30).json()
    assert all("<mark>" in h["snippet"] for h in with_snippets["hits"])


def test_a_refused_json_call_logs_one_line(app_bundle: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from fastapi import FastAPI

    svc = Service(app_bundle, flags_path=tmp_path / "flags.jsonl", requests_path=tmp_path / "requests.jsonl")
    app = FastAPI(routes=json_api_routes(svc, limiter=Limiter(1, 1)))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/api/search", params={"q": "parser", "k": "ten"})

    with caplog.at_level(logging.INFO, logger="spacerini"):
        r = asyncio.run(call())
    assert r.status_code == 400 and r.json() == {"error": "k must be an integer, not 'ten'"}
    ours = [rec for rec in caplog.records if rec.name.startswith("spacerini")]
    assert [rec.getMessage() for rec in ours] == ["refused search: k must be an integer, not 'ten'"]
    assert ours[0].exc_info is None


# ------------------------------------------------------------------- the page's own routes
@pytest.mark.slow
def test_ui_search_route_renders_what_the_tab_renders(app_server: str, app_bundle: Any) -> None:
    """/api/ui/search (what the Search tab's buttons call from the browser) answers the page's
    HTML, page number, label and result ids, through the same service: ranks, redaction."""
    from spacerini.app import search_page
    from spacerini.app.jsonapi import as_corpora

    for page in (1, 2):
        r = httpx.get(app_server + "api/ui/search", params={"q": "parser helper", "backend": "bm25", "page": page}, timeout=30)
        assert r.status_code == 200, r.text
        answer = r.json()
        ref = app_bundle.search("parser helper", k=10, offset=10 * (page - 1))
        assert answer["ids"] == [h.docid for h in ref]
        assert answer["page"] == page and answer["label"] == f"Page {page}"
        assert f"data-query='parser helper' data-page='{page}'" in answer["html"]
        local = search_page(as_corpora(Service(app_bundle)), "", "parser helper", "bm25", page)
        assert answer["html"] == local["html"] and answer["ids"] == local["ids"]
    evil = httpx.get(app_server + "api/ui/search", params={"q": "script alert onerror"}, timeout=30).json()
    assert "evil" in evil["ids"]
    assert "&lt;img src=x onerror=alert(2)&gt;" in evil["html"] and "<img" not in evil["html"]
    assert "&lt;EMAIL&gt;" in evil["html"] and "gmail" not in evil["html"]  # redacted as on every route


@pytest.mark.slow
def test_ui_find_route_and_refusals(app_server: str, app_bundle: Any) -> None:
    found = httpx.get(app_server + "api/ui/find", params={"q": "json.load", "page": "1"}, timeout=30).json()
    assert found["page"] == 1 and found["label"] == "Page 1"
    assert "<b>9</b> occurrences" in found["html"] and found["html"].count("class='sp-hit'") == 9
    cases = [
        ("api/ui/search", {"q": "   "}, "empty"),
        ("api/ui/search", {"q": "parser", "page": "two"}, "page must be a whole number"),
        ("api/ui/search", {"q": "parser", "page": "99999999"}, "offset must be between"),
        ("api/ui/search", {"q": "x" * 10_001}, "limit is 10,000"),
        ("api/ui/find", {"q": ""}, "empty"),
        ("api/ui/search", {"q": "parser", "corpus": "nope"}, "nope"),
    ]
    for route, params, message in cases:
        r = httpx.get(app_server + route, params=params, timeout=30)
        assert r.status_code == 400, (route, params, r.status_code, r.text)
        error = r.json()["error"]
        assert message in error and "\n" not in error and "Traceback" not in error, (route, params, error)


@pytest.mark.slow
def test_build_app_launch_serves_the_page_routes(app_bundle: Any, tmp_path: Any) -> None:
    """An app launched without serve() (a Space's own app.py) still has the routes its buttons call."""
    from app_fixtures import free_port

    from spacerini.app import build_app

    app = build_app(app_bundle, flags_path=tmp_path / "flags.jsonl")
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/api/ui/search", params={"q": "parser helper"}, timeout=30)
        assert r.status_code == 200 and r.json()["ids"] == [h.docid for h in app_bundle.search("parser helper", k=10)]
        assert httpx.get(f"http://127.0.0.1:{port}/api/search", params={"q": "x"}, timeout=30).status_code == 404
    finally:
        app.close()


def test_member_and_trace_routes_answer_like_the_service(app_bundle: Any, tmp_path: Any) -> None:
    """Membership ("is this text in the corpus?") had no JSON route: only Gradio's queue, or
    /api/compare, answered it."""
    from fastapi import FastAPI

    svc = Service(app_bundle, flags_path=tmp_path / "flags.jsonl")
    app = FastAPI(routes=json_api_routes(svc, limiter=Limiter(2, 8)))
    doc = next(iter(app_bundle.iter_docs()))
    text = doc.text[:400] + "\nand a line that is in no document of this corpus 8f3a\n"

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.post("/api/member", json={"text": text}),
                await client.post("/api/trace", json={"text": text, "min_len": 16}),
                await client.post("/api/member", json={"text": "   "}),
                await client.post("/api/member", json={"text": 5}),
                await client.post("/api/member", content=b"not json"),
                await client.post("/api/member", json={"text": "x" * 100_001}),
                await client.post("/api/member", content=b'{"text": "' + b"y" * 1_100_000 + b'"}'),
                await client.get("/api/member", params={"text": text}),
            ]

    member, trace, blank, number, junk, long, huge, get = asyncio.run(calls())
    assert member.status_code == 200 and member.json() == json.loads(json.dumps(_as_json(svc.member(text))))
    untimed = {k: v for k, v in _as_json(svc.trace(text, min_len=16)).items() if k != "seconds"}
    assert trace.status_code == 200 and {k: v for k, v in trace.json().items() if k != "seconds"} == json.loads(json.dumps(untimed))
    assert member.json()["coverage"] > 0 and trace.json()["spans"]
    for refused, says in ((blank, "empty"), (number, "must be a string"), (junk, "not JSON"), (long, "at most 100,000"), (huge, "larger than")):
        assert refused.status_code == 400 and says in refused.json()["error"], refused.json()
    assert get.status_code == 405


def _as_json(record: Any) -> Any:
    from spacerini.records import to_json

    return to_json(record)
