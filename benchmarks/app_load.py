"""App under load: 16 concurrent clients on BM25 /search against the demo bundle, over loopback.

The app runs in its own process (``spacerini.app.serve`` on 127.0.0.1) so that its memory can
be measured alone; 16 client threads, each with its own ``gradio_client.Client`` (one session
each, like 16 browser tabs), call the named ``/search`` endpoint. Gradio's bare REST route
(``POST /gradio_api/call/search``, a new session per call) is measured too (``rest_*``).

Reports p50/p95 latency, errors and throughput over the measured queries, and the server's RSS
growth over them after a warm-up. Goals: p95 <= 150 ms, 0 errors, RSS growth <= 5 %. The run is
bounded by ``--budget`` seconds for the measured phase; if 10,000 queries do not fit, the
queries that did are reported (``queries`` in the output).

Usage: .venv/bin/python benchmarks/app_load.py [--queries 10000] [--clients 16] [--budget 200]
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

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
print("READY", flush=True)
serve(bundle, host="127.0.0.1", port=int(sys.argv[1]), block=True, flags_path=sys.argv[2])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(client: httpx.Client, base: str, query: str, endpoint: str = "search") -> None:
    data = [query, "bm25", 10, 0] if endpoint == "search" else []
    r = client.post(f"{base}gradio_api/call/{endpoint}", json={"data": data})
    r.raise_for_status()
    event_id = r.json()["event_id"]
    with client.stream("GET", f"{base}gradio_api/call/{endpoint}/{event_id}") as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "error":
                    raise RuntimeError(line)
                answer = json.loads(json.loads(line[5:])[0])
                if not isinstance(answer.get("hits" if endpoint == "search" else "docs"), list | int):
                    raise RuntimeError("bad answer")
                return
    raise RuntimeError("stream ended without an answer")


def run_phase(
    base: str, clients: int, total: int, budget: float, endpoint: str = "search"
) -> tuple[list[float], int, int, float]:
    """Runs up to ``total`` queries over ``clients`` threads within ``budget`` seconds."""
    latencies: list[float] = []
    errors = 0
    use_client = endpoint.startswith("client:")
    endpoint = endpoint.removeprefix("client:")
    counter = iter(range(total))
    lock = threading.Lock()
    deadline = time.perf_counter() + budget

    def worker() -> None:
        nonlocal errors
        if use_client:
            from gradio_client import Client

            gc = Client(base, verbose=False)
        with httpx.Client(timeout=30) as client:
            while time.perf_counter() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                q = WORDS[i % len(WORDS)] + ("" if i < len(WORDS) else f" {i % 97}")
                t0 = time.perf_counter()
                try:
                    if use_client:
                        args = (q, "bm25", 10, 0) if endpoint == "search" else ()
                        json.loads(gc.predict(*args, api_name="/" + endpoint))
                    else:
                        call(client, base, q, endpoint)
                except Exception:  # noqa: BLE001 - counted, not raised
                    with lock:
                        errors += 1
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, len(latencies) + errors, time.perf_counter() - t0


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--budget", type=float, default=150.0, help="seconds allowed for the measured phase")
    args = ap.parse_args()

    port = free_port()
    flags = Path(os.environ.get("TMPDIR", "/tmp")) / f"spacerini-bench-flags-{port}.jsonl"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "SPACERINI_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(flags)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    base = f"http://127.0.0.1:{port}/"
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
        run_phase(base, args.clients, args.warmup, 90, endpoint="client:search")
        rss0 = server.memory_info().rss
        latencies, errors, done, seconds = run_phase(base, args.clients, args.queries, args.budget, endpoint="client:search")
        rss1 = server.memory_info().rss
        # The peer: the same app and clients on /stats (cached, no search), i.e. the app's own overhead.
        base_lat, base_err, base_done, base_s = run_phase(base, args.clients, 1_000, 20, endpoint="client:stats")
        # One client alone, to separate queueing from the work per query.
        solo_lat, _, _, _ = run_phase(base, 1, 100, 20, endpoint="client:search")
        # Bare REST calls (a new Gradio session each), and memory once sessions hit their cap.
        rest_lat, rest_err, rest_done, rest_s = run_phase(base, args.clients, 2_000, 40, endpoint="search")
        rss2 = server.memory_info().rss
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    result = {
        "bench": "app_load",
        "clients": args.clients,
        "queries": done,
        "queries_asked": args.queries,
        "errors": errors,
        "p50_ms": round(pct(latencies, 50) * 1000, 1),
        "p95_ms": round(pct(latencies, 95) * 1000, 1),
        "qps": round(done / seconds, 1),
        "rss_start_mb": round(rss0 / 2**20, 1),
        "rss_end_mb": round(rss1 / 2**20, 1),
        "rss_growth_pct": round((rss1 - rss0) / rss0 * 100, 2),
        "server_startup_s": round(startup, 1),
        "overhead_stats_endpoint": {
            "p50_ms": round(pct(base_lat, 50) * 1000, 1),
            "p95_ms": round(pct(base_lat, 95) * 1000, 1),
            "qps": round(base_done / base_s, 1),
            "errors": base_err,
        },
        "rest_search": {
            "queries": rest_done,
            "errors": rest_err,
            "p50_ms": round(pct(rest_lat, 50) * 1000, 1),
            "p95_ms": round(pct(rest_lat, 95) * 1000, 1),
            "qps": round(rest_done / rest_s, 1),
            "rss_end_mb": round(rss2 / 2**20, 1),
        },
        "single_client_search": {"p50_ms": round(pct(solo_lat, 50) * 1000, 1), "p95_ms": round(pct(solo_lat, 95) * 1000, 1)},
        "goal": {"p95_ms": 150, "errors": 0, "rss_growth_pct": 5},
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
