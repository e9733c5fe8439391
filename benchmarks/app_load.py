"""App under load: 16 concurrent clients on BM25 search against the demo bundle, over loopback.

The app runs in its own process (``spacerini.app.serve`` on 127.0.0.1) so that its memory is
measured alone. The load comes from other processes (this script re-run with ``--drive``), so
the load generator and the server do not share a GIL. Each client is a closed loop: it sends a
query, waits for the whole answer, and sends the next one. Every query is distinct (a phrase
from ``WORDS`` plus a number), so no answer can be reused.

The ways in (``--paths``), all against the same server, interleaved over ``--rounds`` rounds:

* ``json``: ``GET /api/search?q=...`` (the app's plain JSON route).
* ``ui``: what the page does when Search is clicked: the Search button's event as the browser
  sends it, ``POST /gradio_api/queue/join`` with a session per client, then the session's event
  stream ``GET /gradio_api/queue/data?session_hash=...`` up to ``process_completed``; the answer
  is the rendered results HTML.
* ``gradio``: Gradio's REST protocol for the named ``/search`` endpoint, as documented for
  curl: ``POST /gradio_api/call/search``, then the answer from the event stream
  ``GET /gradio_api/call/search/{event_id}``.
* ``gradio_client``: 16 threads, each with its own ``gradio_client.Client`` (one session each)
  calling ``predict(..., api_name="/search")``, as shipped (it opens a new ``httpx`` client for
  every call, and so loads the CA certificates again: ~30 ms of CPU per call in the load
  generator), and ``gradio_client_noverify``: the same with ``ssl_verify=False`` (nothing to
  verify over ``http://``; the CA bundle is not loaded), i.e. the client's own cost left out,
  and ``gradio_client_context``: ``ssl_verify=`` one ``ssl.create_default_context()`` shared by
  the 16 clients, which httpx takes as it is (certificates still verified over ``https://``, the
  CA bundle loaded once): what the README advises for many calls.

``json``, ``ui`` and ``gradio`` share one lean client (HTTP/1.1 over asyncio streams, one
keep-alive connection per client, ~0.1 ms of CPU per request), so that the load generator,
which runs on the same cores as the server, steals as little and the same from every path.
``--client httpx`` uses ``httpx.AsyncClient`` instead (heavier: the earlier figures).

Each is also measured with one client alone (the work per query without queueing). Peers:
``/stats`` (cached, no search) over the JSON route and Gradio REST, the cost of the path itself;
and the JSON route with ``snippets=false``, the cost of search without the BM25 snippets.

Goals (issue 16, goal 6): p95 <= 100 ms on the JSON route and <= 300 ms through Gradio's
protocol (the UI and gradio_client), 16 clients, 0 errors; RSS growth <= 5 % over the JSON
phase after warm-up. Every phase is bounded in time; if a phase's queries do not fit, the
number that did is reported (``queries``).

Usage: .venv/bin/python benchmarks/app_load.py [--queries 3000] [--side-queries 600]
    [--rounds 3] [--paths json,ui,gradio,gradio_client,gradio_client_noverify,gradio_client_context]
    [--server URL] [--bundle PATH]
Prints one JSON line (``--server`` measures a running server instead of starting one; ``--bundle``
serves another bundle than the demo one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    "json decoder error, http request headers, thread pool executor, parse command line arguments, "
    "read file encoding, socket timeout, unicode normalize, regular expression match, date time zone, "
    "random seed, hash digest, base64 encode, temporary directory, subprocess run, logging handler, "
    "csv writer, sqlite cursor, async await loop, dataclass field, type hint generic, numpy array shape, "
    "dictionary keys values, list comprehension, exception traceback, path exists, zip file extract, "
    "url quote, xml element tree, email message, gzip compress, pickle protocol, iterator next, "
    "context manager exit, decorator wraps, abstract base class, metaclass, property setter, "
    "import module spec, package metadata version, test case assert, mock patch, string template"
).split(", ")

SERVER = """
import os, sys
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
from spacerini.app import serve
if len(sys.argv) > 3:
    from spacerini.bundle import open_bundle
    bundle = open_bundle(sys.argv[3])
else:
    from spacerini.demo import demo_bundle
    bundle = demo_bundle(progress=False)
serve(bundle, host="127.0.0.1", port=int(sys.argv[1]), block=True, flags_path=sys.argv[2])
"""

PATHS = ("json", "ui", "gradio", "gradio_client", "gradio_client_noverify", "gradio_client_context")


def query(i: int) -> str:
    """The ``i``-th query: distinct for every ``i``."""
    return f"{WORDS[i % len(WORDS)]} {i}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ lean client
class Conn:
    """One keep-alive HTTP/1.1 connection (a browser tab's, or a client's): requests in turn."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _send(self, method: str, path: str, body: bytes | None) -> asyncio.StreamReader:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: */*\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        assert self.reader is not None
        return self.reader

    async def _head(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        status = int((await reader.readline()).split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        return status, headers

    async def _chunks(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> Any:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    return
                data = await reader.readexactly(size)
                await reader.readexactly(2)
                yield data
        elif "content-length" in headers:
            yield await reader.readexactly(int(headers["content-length"]))
        else:  # read to close
            yield await reader.read()
            self.close()

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Sends one request and reads the whole answer: (status, body)."""
        reader = await self._send(method, path, None if body is None else json.dumps(body).encode())
        status, headers = await self._head(reader)
        data = b"".join([chunk async for chunk in self._chunks(reader, headers)])
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    async def events(self, path: str) -> Any:
        """GETs an event stream and yields its ``data:`` payloads (with the ``event:`` before
        each, or None) until the server ends the stream."""
        reader = await self._send("GET", path, None)
        status, headers = await self._head(reader)
        if status != 200:
            raise RuntimeError(f"HTTP {status} on {path}")
        buffer, event = b"", None
        async for chunk in self._chunks(reader, headers):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    yield event, line[5:].strip()
                    event = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = self.reader = None


def check_answer(answer: Any, endpoint: str) -> None:
    if endpoint.startswith("search") and not isinstance(answer.get("hits"), list):
        raise RuntimeError(f"bad answer: {str(answer)[:200]}")
    if endpoint == "stats" and not isinstance(answer.get("docs"), int):
        raise RuntimeError(f"bad answer: {str(answer)[:200]}")


class Lean:
    """The lean client's three protocols over one :class:`Conn` per simulated client."""

    def __init__(self, base: str, ui: dict[str, Any] | None) -> None:
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.ui = ui

    def conn(self) -> Conn:
        return Conn(self.host, self.port)

    async def json(self, conn: Conn, endpoint: str, q: str) -> None:
        params = {"q": q, "backend": "bm25", "k": "10", "offset": "0"} if endpoint.startswith("search") else {}
        if endpoint == "search_nosnippets":
            params["snippets"] = "false"
        path = f"/api/{endpoint.removesuffix('_nosnippets')}" + ("?" + urllib.parse.urlencode(params) if params else "")
        status, body = await conn.request("GET", path)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        check_answer(json.loads(body), endpoint)

    async def gradio(self, conn: Conn, endpoint: str, q: str) -> None:
        data = [q, "bm25", 10, 0, ""] if endpoint == "search" else [""]
        status, body = await conn.request("POST", f"/gradio_api/call/{endpoint}", {"data": data})
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        event_id = json.loads(body)["event_id"]
        answer = None
        async for event, data_line in conn.events(f"/gradio_api/call/{endpoint}/{event_id}"):
            if event == "error":
                raise RuntimeError(data_line[:200].decode())
            if event == "complete" and answer is None:
                answer = json.loads(json.loads(data_line)[0])
        if answer is None:
            raise RuntimeError("the event stream ended without an answer")
        check_answer(answer, endpoint)

    async def ui_search(self, conn: Conn, endpoint: str, q: str, session: str) -> None:
        """The Search button, as the page sends it (see :func:`ui_plan`)."""
        assert self.ui is not None
        if self.ui["kind"] == "route":  # the page asks a plain route itself (a js= handler)
            path = self.ui["path"] + "?" + urllib.parse.urlencode({**self.ui["params"], "q": q})
            status, body = await conn.request("GET", path)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            html = json.loads(body)["html"]
        else:  # Gradio's queue: join, then the session's event stream
            payload = {
                "data": [self.ui["corpus"], q, "bm25"], "event_data": None, "fn_index": self.ui["fn_index"],
                "trigger_id": self.ui["trigger_id"], "session_hash": session,
            }  # fmt: skip
            status, body = await conn.request("POST", "/gradio_api/queue/join", payload)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            html = None
            async for _, data_line in conn.events(f"/gradio_api/queue/data?session_hash={session}"):
                msg = json.loads(data_line)
                if msg.get("msg") == "process_completed":
                    if not msg.get("success"):
                        raise RuntimeError(str(msg.get("output"))[:200])
                    html = msg["output"]["data"][0]
        if not html or "data-query" not in html:
            raise RuntimeError(f"bad answer: {str(html)[:200]}")


def ui_plan(base: str) -> dict[str, Any]:
    """How the page runs a search, read from the app's config: the Search button's event (its
    ``fn_index`` and trigger), or the route its ``js`` handler calls when it has one."""
    import urllib.request

    with urllib.request.urlopen(base + "config", timeout=30) as r:
        config = json.load(r)
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "sp-search")
    corpus = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "sp-corpus")
    for i, dep in enumerate(config["dependencies"]):
        if any(t[0] == button and t[1] == "click" for t in dep.get("targets", [])):
            if dep.get("js") and not dep.get("backend_fn", True):
                return {"kind": "route", "path": "/api/ui/search", "params": {"backend": "bm25", "page": "1"}}
            return {"kind": "queue", "fn_index": dep.get("id", i), "trigger_id": button, "corpus": corpus["props"]["value"]}
    raise SystemExit("the page has no Search button event")


async def drive_lean(base: str, mode: str, endpoint: str, clients: int, total: int, budget: float, start: int) -> dict[str, Any]:
    lean = Lean(base, ui_plan(base) if mode == "ui" else None)
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(start, start + total))
    deadline = time.perf_counter() + budget

    async def worker() -> None:
        conn, session = lean.conn(), uuid.uuid4().hex[:11]
        try:
            while time.perf_counter() < deadline:
                i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    if mode == "json":
                        await lean.json(conn, endpoint, query(i))
                    elif mode == "gradio":
                        await lean.gradio(conn, endpoint, query(i))
                    else:
                        await lean.ui_search(conn, endpoint, query(i), session)
                except Exception as exc:  # noqa: BLE001 - counted and reported, not raised
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    conn.close()
                    continue
                latencies.append(time.perf_counter() - t0)
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return {"latencies": latencies, "errors": errors, "seconds": time.perf_counter() - t0}


async def drive_httpx(base: str, mode: str, endpoint: str, clients: int, total: int, budget: float, start: int) -> dict[str, Any]:
    """The JSON route and Gradio REST through ``httpx.AsyncClient`` (the earlier figures' client)."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(start, start + total))
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)

    async def call(client: Any, q: str) -> None:
        if mode == "json":
            params = {"q": q, "backend": "bm25", "k": "10", "offset": "0"} if endpoint.startswith("search") else None
            if endpoint == "search_nosnippets":
                params = {**(params or {}), "snippets": "false"}
            r = await client.get(f"{base}api/{endpoint.removesuffix('_nosnippets')}", params=params)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
            check_answer(r.json(), endpoint)
            return
        data = [q, "bm25", 10, 0, ""] if endpoint == "search" else [""]
        r = await client.post(f"{base}gradio_api/call/{endpoint}", json={"data": data})
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        event = None
        async with client.stream("GET", f"{base}gradio_api/call/{endpoint}/{r.json()['event_id']}") as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    if event == "error":
                        raise RuntimeError(line[:200])
                    check_answer(json.loads(json.loads(line[5:])[0]), endpoint)
                    return
        raise RuntimeError("the event stream ended without an answer")

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        deadline = time.perf_counter() + budget

        async def worker() -> None:
            while time.perf_counter() < deadline:
                i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    await call(client, query(i))
                except Exception as exc:  # noqa: BLE001 - counted and reported, not raised
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - t0
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


def drive_gradio_client(
    base: str, endpoint: str, clients: int, total: int, budget: float, start: int, *, ssl_verify: Any
) -> dict[str, Any]:
    from gradio_client import Client

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(start, start + total))
    lock = threading.Lock()
    gcs = [Client(base, verbose=False, ssl_verify=ssl_verify) for _ in range(clients)]
    deadline = time.perf_counter() + budget

    def worker(gc: Any) -> None:
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                args = (query(i), "bm25", 10, 0) if endpoint == "search" else ()
                check_answer(json.loads(gc.predict(*args, api_name="/" + endpoint)), endpoint)
            except Exception as exc:  # noqa: BLE001 - counted and reported, not raised
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(gc,)) for gc in gcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    for gc in gcs:
        gc.close()
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


def drive_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("mode", choices=PATHS)
    ap.add_argument("endpoint", choices=("search", "search_nosnippets", "stats"))
    ap.add_argument("clients", type=int)
    ap.add_argument("total", type=int)
    ap.add_argument("budget", type=float)
    ap.add_argument("start", type=int)
    ap.add_argument("--client", choices=("lean", "httpx"), default="lean")
    a = ap.parse_args(argv)
    if a.mode.startswith("gradio_client"):
        import ssl

        verify: bool | ssl.SSLContext = a.mode != "gradio_client_noverify"
        if a.mode == "gradio_client_context":
            verify = ssl.create_default_context()  # one for the 16 clients
        out = drive_gradio_client(a.base, a.endpoint, a.clients, a.total, a.budget, a.start, ssl_verify=verify)
    elif a.client == "httpx" and a.mode != "ui":
        out = asyncio.run(drive_httpx(a.base, a.mode, a.endpoint, a.clients, a.total, a.budget, a.start))
    else:
        out = asyncio.run(drive_lean(a.base, a.mode, a.endpoint, a.clients, a.total, a.budget, a.start))
    sys.stdout.write(json.dumps(out) + "\n")


# ----------------------------------------------------------------------------- orchestration
def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def phase(
    base: str, mode: str, endpoint: str, clients: int, total: int, budget: float, start: int, client: str = "lean"
) -> dict[str, Any]:
    """Runs one load phase in a separate process and summarises it."""
    cmd = [sys.executable, __file__, "--drive", base, mode, endpoint, str(clients), str(total), str(budget), str(start)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.run([*cmd, "--client", client], capture_output=True, text=True, timeout=budget + 120, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"load driver failed ({mode} {endpoint}): {proc.stderr[-2000:]}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    lat, errs = raw["latencies"], raw["errors"]
    done = len(lat) + len(errs)
    return {
        "mode": mode,
        "endpoint": endpoint,
        "clients": clients,
        "queries": done,
        "queries_asked": total,
        "errors": len(errs),
        "error_samples": sorted(set(errs))[:3],
        "p50_ms": round(pct(lat, 50) * 1000, 1),
        "p95_ms": round(pct(lat, 95) * 1000, 1),
        "p99_ms": round(pct(lat, 99) * 1000, 1),
        "qps": round(done / raw["seconds"], 1) if raw["seconds"] else 0.0,
        "loadavg": round(os.getloadavg()[0], 2),
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one phase and the medians of their figures."""
    out = {k: runs[0][k] for k in ("mode", "endpoint", "clients")}
    for key in ("p50_ms", "p95_ms", "p99_ms", "qps"):
        out[key] = round(statistics.median(r[key] for r in runs), 1)
    out["errors"] = sum(r["errors"] for r in runs)
    out["queries"] = sum(r["queries"] for r in runs)
    out["error_samples"] = sorted({s for r in runs for s in r["error_samples"]})[:3]
    out["runs"] = [{k: r[k] for k in ("queries", "errors", "p50_ms", "p95_ms", "qps", "loadavg")} for r in runs]
    return out


def wait_ready(base: str, proc: Any, limit: float = 240) -> float:
    """Seconds until ``base`` answers both its JSON route and the page's ``/config`` (or SystemExit).

    The JSON routes answer before Gradio has built the page (``/config`` is 503 until then),
    and the rounds drive the page's calls too, so both are waited for.
    """
    import urllib.error
    import urllib.request

    t0 = time.perf_counter()
    while True:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("the server exited before it was ready")
        try:
            with urllib.request.urlopen(base + "api/stats", timeout=2) as r, urllib.request.urlopen(
                base + "config", timeout=2
            ) as page:
                if r.status == 200 and page.status == 200:
                    return time.perf_counter() - t0
        except (urllib.error.URLError, OSError):
            pass
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"the server did not start in {limit:.0f} s")
        time.sleep(0.2)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive_main(sys.argv[2:])
        return
    import psutil

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=3_000, help="queries per round on the JSON route")
    ap.add_argument("--side-queries", type=int, default=600, help="queries per round on each Gradio path")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds allowed for each phase")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each path once per round (medians)")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated, of: " + ", ".join(PATHS))
    ap.add_argument("--client", choices=("lean", "httpx"), default="lean", help="the client of json, gradio")
    ap.add_argument("--no-peers", action="store_true", help="skip the peers and the one-client phases")
    ap.add_argument("--server", help="measure this running server (URL) instead of starting one")
    ap.add_argument("--bundle", help="serve this bundle instead of the demo bundle (any bundle with bm25)")
    args = ap.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    if unknown := set(paths) - set(PATHS):
        raise SystemExit(f"unknown path(s): {', '.join(sorted(unknown))}")

    proc = None
    if args.server:
        base = args.server.rstrip("/") + "/"
        startup = wait_ready(base, None, 10)
    else:
        port = free_port()
        flags = Path(os.environ.get("TMPDIR", "/tmp")) / f"spacerini-bench-flags-{port}.jsonl"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "SPACERINI_NO_PROGRESS": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(flags), *([args.bundle] if args.bundle else [])],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}/"
    phases: dict[str, Any] = {}
    rss: dict[str, float] = {}
    load_start = [round(x, 2) for x in os.getloadavg()]
    try:
        if proc is not None:
            startup = wait_ready(base, proc)
        server = psutil.Process(proc.pid) if proc is not None else None
        c, side, b, cl = args.clients, args.side_queries, args.budget, args.client
        side_total = {p: side // 2 if p.startswith("gradio_client") else side for p in PATHS}
        # Warm-up through every path (JIT, caches, Gradio's session table), then the rounds.
        phase(base, "json", "search", c, args.warmup, b, 10_000_000, cl)
        for p in paths:
            if p != "json":
                phase(base, p, "search", c, max(16, side_total[p] // 4), b, 11_000_000, cl)
        runs: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
        for r in range(args.rounds):
            for p in paths if r % 2 == 0 else paths[::-1]:
                total = args.queries if p == "json" else side_total[p]
                if p == "json" and server is not None:
                    rss_before = server.memory_info().rss
                runs[p].append(phase(base, p, "search", c, total, b, 1_000_000 * (r + 1) + 100_000 * PATHS.index(p), cl))
                if p == "json" and server is not None:
                    rss[f"round{r + 1}"] = round((server.memory_info().rss - rss_before) / rss_before * 100, 2)
        for p in paths:
            phases[f"{p}_search"] = median_of(runs[p])
        if not args.no_peers:
            phases["json_search_no_snippets"] = phase(base, "json", "search_nosnippets", c, side * 2, b, 6_000_000, cl)
            phases["json_stats"] = phase(base, "json", "stats", c, side, b, 0, cl)
            phases["gradio_stats"] = phase(base, "gradio", "stats", c, side // 2, b, 0, cl)
            for p in paths:
                phases[f"one_client_{p}_search"] = phase(base, p, "search", 1, 100, b, 3_000_000 + 100_000 * PATHS.index(p), cl)
        rss_end = server.memory_info().rss if server is not None else None
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    result = {
        "bench": "app_load",
        "clients": args.clients,
        "client": args.client,
        "rounds": args.rounds,
        "summary_p95_ms": {p: phases[f"{p}_search"]["p95_ms"] for p in paths},
        "summary_qps": {p: phases[f"{p}_search"]["qps"] for p in paths},
        "errors": sum(phases[f"{p}_search"]["errors"] for p in paths),
        "rss_growth_pct_per_json_round": rss,
        "rss_end_mb": round(rss_end / 2**20, 1) if rss_end else None,
        "server_ready_s": round(startup, 1),
        "phases": phases,
        "goal_p95_ms": {"json": 100, "ui": 300, "gradio": 300, "gradio_client": 300, "gradio_client_noverify": 300,
                        "gradio_client_context": 300},
        "cpus": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
