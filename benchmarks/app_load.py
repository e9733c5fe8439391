"""App under load: 16 concurrent clients on BM25 search against the demo bundle, over loopback.

The app runs in its own process (``spacerini.app.serve`` on 127.0.0.1) so that its memory is
measured alone. The load comes from another process (this script re-run with ``--drive``), so
the load generator and the server do not share a GIL. Each client is a closed loop: it sends a
query, waits for the whole answer, and sends the next one. Every query is distinct (a phrase
from ``WORDS`` plus a number), so no answer can be reused.

Three ways in, all measured in the same run against the same server:

* ``json``: ``GET /api/search?q=...`` (the app's plain JSON route), one ``httpx.AsyncClient``
  with 16 concurrent tasks. This is the main figure: 10,000 queries after warm-up, with the
  server's RSS before and after.
* ``gradio``: Gradio's own REST protocol for the named ``/search`` endpoint, as documented for
  curl: ``POST /gradio_api/call/search`` then read the answer from the event stream
  ``GET /gradio_api/call/search/{event_id}`` (async httpx, 16 tasks). It goes through Gradio's
  queue.
* ``gradio_client``: 16 threads, each with its own ``gradio_client.Client`` (one session each,
  like 16 browser tabs) calling ``predict(..., api_name="/search")``. gradio_client opens a new
  connection for every call and keeps a heartbeat and an event stream per client, so this
  figure includes a heavy client on the same 2 cores.

Each is also measured with one client alone (the work per query without queueing). Peers:
``/stats`` (cached, no search) over the two REST paths, the cost of the path itself; and the
JSON route with ``snippets=false``, the cost of search without the BM25 snippets.

Goals: p95 <= 150 ms with 0 errors under 16 clients; RSS growth <= 5 % over 10,000 queries
after warm-up. Every phase is bounded in time; if a phase's queries do not fit, the number that
did is reported (``queries``).

Usage: .venv/bin/python benchmarks/app_load.py [--queries 10000] [--clients 16] [--budget 300]
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
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
from spacerini.demo import demo_bundle
from spacerini.app import serve
bundle = demo_bundle(progress=False)
serve(bundle, host="127.0.0.1", port=int(sys.argv[1]), block=True, flags_path=sys.argv[2])
"""


def query(i: int) -> str:
    """The ``i``-th query: distinct for every ``i``."""
    return f"{WORDS[i % len(WORDS)]} {i}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ load driver
def check_answer(answer: dict[str, Any], endpoint: str) -> None:
    if endpoint.startswith("search") and not isinstance(answer.get("hits"), list):
        raise RuntimeError(f"bad answer: {str(answer)[:200]}")
    if endpoint == "stats" and not isinstance(answer.get("docs"), int):
        raise RuntimeError(f"bad answer: {str(answer)[:200]}")


async def call_json(client: Any, base: str, endpoint: str, q: str) -> None:
    params = {"q": q, "backend": "bm25", "k": "10", "offset": "0"} if endpoint.startswith("search") else None
    if endpoint == "search_nosnippets":
        params = {**(params or {}), "snippets": "false"}
    r = await client.get(f"{base}api/{endpoint.removesuffix('_nosnippets')}", params=params)
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
    check_answer(r.json(), endpoint)


async def call_gradio(client: Any, base: str, endpoint: str, q: str) -> None:
    data = [q, "bm25", 10, 0] if endpoint == "search" else []
    r = await client.post(f"{base}gradio_api/call/{endpoint}", json={"data": data})
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
    event_id = r.json()["event_id"]
    event = None
    async with client.stream("GET", f"{base}gradio_api/call/{endpoint}/{event_id}") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "error":
                    raise RuntimeError(line[:200])
                check_answer(json.loads(json.loads(line[5:])[0]), endpoint)
                return
    raise RuntimeError("the event stream ended without an answer")


async def drive_async(base: str, mode: str, endpoint: str, clients: int, total: int, budget: float, start: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(start, start + total))
    call = call_json if mode == "json" else call_gradio
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        deadline = time.perf_counter() + budget

        async def worker() -> None:
            while time.perf_counter() < deadline:
                i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    await call(client, base, endpoint, query(i))
                except Exception as exc:  # noqa: BLE001 - counted and reported, not raised
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - t0
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


def drive_gradio_client(base: str, endpoint: str, clients: int, total: int, budget: float, start: int) -> dict[str, Any]:
    from gradio_client import Client

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(start, start + total))
    lock = threading.Lock()
    gcs = [Client(base, verbose=False) for _ in range(clients)]
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
    ap.add_argument("mode", choices=("json", "gradio", "gradio_client"))
    ap.add_argument("endpoint", choices=("search", "search_nosnippets", "stats"))
    ap.add_argument("clients", type=int)
    ap.add_argument("total", type=int)
    ap.add_argument("budget", type=float)
    ap.add_argument("start", type=int)
    a = ap.parse_args(argv)
    if a.mode == "gradio_client":
        out = drive_gradio_client(a.base, a.endpoint, a.clients, a.total, a.budget, a.start)
    else:
        out = asyncio.run(drive_async(a.base, a.mode, a.endpoint, a.clients, a.total, a.budget, a.start))
    sys.stdout.write(json.dumps(out) + "\n")


# ----------------------------------------------------------------------------- orchestration
def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def phase(base: str, mode: str, endpoint: str, clients: int, total: int, budget: float, start: int) -> dict[str, Any]:
    """Runs one load phase in a separate process and summarises it."""
    cmd = [sys.executable, __file__, "--drive", base, mode, endpoint, str(clients), str(total), str(budget), str(start)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget + 120, env=env, check=False)
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
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive_main(sys.argv[2:])
        return
    import httpx
    import psutil

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=10_000, help="queries in the main (JSON route) phase")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds allowed for the main phase")
    ap.add_argument("--side-queries", type=int, default=1_500, help="queries in each Gradio-path phase")
    ap.add_argument("--side-budget", type=float, default=60.0, help="seconds allowed for each other phase")
    args = ap.parse_args()

    port = free_port()
    flags = Path(os.environ.get("TMPDIR", "/tmp")) / f"spacerini-bench-flags-{port}.jsonl"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "SPACERINI_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(flags)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )
    base = f"http://127.0.0.1:{port}/"
    phases: dict[str, Any] = {}
    try:
        t_start = time.perf_counter()
        deadline = t_start + 240
        while True:
            if proc.poll() is not None:
                raise SystemExit("the server exited before it was ready")
            try:
                if httpx.get(base + "gradio_api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() > deadline:
                raise SystemExit("the server did not start in 240 s")
            time.sleep(0.5)
        startup = time.perf_counter() - t_start
        server = psutil.Process(proc.pid)
        c, side, sb = args.clients, args.side_queries, args.side_budget
        # Warm-up through every path (JIT, caches, Gradio's session table), then the main phase.
        phase(base, "json", "search", c, args.warmup, 120, 10_000_000)
        phase(base, "gradio", "search", c, 200, sb, 11_000_000)
        phase(base, "gradio_client", "search", c, 100, sb, 12_000_000)
        rss0 = server.memory_info().rss
        phases["json_search"] = phase(base, "json", "search", c, args.queries, args.budget, 0)
        rss1 = server.memory_info().rss
        phases["gradio_search"] = phase(base, "gradio", "search", c, side, sb, 1_000_000)
        phases["gradio_client_search"] = phase(base, "gradio_client", "search", c, side // 2, sb, 2_000_000)
        rss2 = server.memory_info().rss
        phases["json_search_no_snippets"] = phase(base, "json", "search_nosnippets", c, side * 2, sb / 2, 6_000_000)
        phases["json_stats"] = phase(base, "json", "stats", c, side, sb / 2, 0)
        phases["gradio_stats"] = phase(base, "gradio", "stats", c, side // 2, sb / 2, 0)
        phases["one_client_json_search"] = phase(base, "json", "search", 1, 200, sb / 2, 3_000_000)
        phases["one_client_gradio_search"] = phase(base, "gradio", "search", 1, 100, sb / 2, 4_000_000)
        phases["one_client_gradio_client_search"] = phase(base, "gradio_client", "search", 1, 100, sb / 2, 5_000_000)
        phases["one_client_json_stats"] = phase(base, "json", "stats", 1, 200, sb / 4, 0)
        phases["one_client_gradio_stats"] = phase(base, "gradio", "stats", 1, 100, sb / 4, 0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    main_phase = phases["json_search"]
    result = {
        "bench": "app_load",
        "main": "json route GET /api/search, 16 async clients in a separate process",
        "clients": args.clients,
        "queries": main_phase["queries"],
        "queries_asked": args.queries,
        "errors": main_phase["errors"],
        "p50_ms": main_phase["p50_ms"],
        "p95_ms": main_phase["p95_ms"],
        "qps": main_phase["qps"],
        "rss_start_mb": round(rss0 / 2**20, 1),
        "rss_end_mb": round(rss1 / 2**20, 1),
        "rss_growth_pct": round((rss1 - rss0) / rss0 * 100, 2),
        "rss_after_gradio_phases_mb": round(rss2 / 2**20, 1),
        "server_startup_s": round(startup, 1),
        "phases": phases,
        "goal": {"p95_ms": 150, "errors": 0, "rss_growth_pct": 5},
        "cpus": os.cpu_count(),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
