"""The server answers the JSON routes before Gradio is built, then serves Gradio's page and protocol."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_fixtures import free_port

from spacerini.app.server import FrontApp, bind
from spacerini.errors import UsageError


def _plain(text: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = text.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    return app


def _with_lifespan(text: str, events: list[str]) -> Any:
    answer = _plain(text)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await answer(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                events.append("startup")
                await send({"type": "lifespan.startup.complete"})
            else:
                events.append("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


def test_the_page_answers_starting_until_it_is_adopted_and_the_api_at_once() -> None:
    asyncio.run(_page_answers_starting_until_adopted())


async def _page_answers_starting_until_adopted() -> None:
    front = FrontApp(_plain("api"))
    transport = httpx.ASGITransport(app=front)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/api/search?q=x")).text == "api"
        page = await client.get("/", headers={"accept": "text/html"})
        assert page.status_code == 503 and page.headers["retry-after"] == "1"
        assert "starting" in page.text and "<html" in page.text
        config = await client.get("/config", headers={"accept": "application/json"})
        assert config.status_code == 503 and "starting" in config.json()["error"]
        events: list[str] = []
        await front.adopt(_with_lifespan("page", events))
        assert events == ["startup"]
        assert (await client.get("/")).text == "page"
        assert (await client.get("/config")).text == "page"
        assert (await client.get("/api/stats")).text == "api"  # the JSON routes stay on the small app
        await front._stop_page()
        assert events == ["startup", "shutdown"]


def test_a_page_whose_startup_fails_is_not_adopted() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no queue"})

    front = FrontApp(_plain("api"))
    with pytest.raises(RuntimeError, match="no queue"):
        asyncio.run(front.adopt(failing))
    assert front.page is None


def test_a_taken_port_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot serve on 127.0.0.1:{port}: .*--port"):
            bind("127.0.0.1", port)


@pytest.mark.slow
def test_serve_answers_json_before_the_page_then_gradio_and_its_client(app_bundle: Any, tmp_path: Path) -> None:
    """`spacerini serve` as a user runs it: /api/ answers while / still says it is starting; then
    the page, Gradio's config and a gradio_client call answer on the same port."""
    from gradio_client import Client

    port = free_port()
    spacerini = str(Path(sys.executable).with_name("spacerini"))
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [spacerini, "serve", str(app_bundle.path), "--port", str(port), "--flags", str(tmp_path / "flags.jsonl")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the JSON routes did not answer"
            try:
                if httpx.get(base + "api/stats", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        # Gradio is imported only after the bundle is warm: the page cannot be there yet.
        assert httpx.get(base, timeout=10).status_code == 503
        hits = httpx.get(base + "api/search", params={"q": "fibonacci"}, timeout=60).json()["hits"]
        assert hits
        while httpx.get(base, timeout=10).status_code != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "the page did not come"
            time.sleep(0.1)
        assert httpx.get(base + "config", timeout=10).json()["api_prefix"] == "/gradio_api"
        answer = Client(base, verbose=False).predict("fibonacci", "bm25", 3, 0, api_name="/search")
        assert '"hits"' in answer and hits[0]["docid"] in answer
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
