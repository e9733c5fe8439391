"""`spacerini serve` start-up: seconds from process start to the first 200 answer on /api/search.

Starts ``spacerini serve BUNDLE --port P`` (the CLI, as a user runs it), polls
``GET /api/search?q=...`` every 20 ms from this process and records when the first 200 answer
(with hits) arrives, when the JSON API first answers at all (``GET /api/stats``, no search), and
when the page (``GET /``) first answers 200 (``serve`` answers the JSON routes before Gradio is
imported; the page answers 503 until Gradio has built it). Peer, in the same run and
interleaved: a bare Gradio app (one Textbox, ``launch()``) from a fresh interpreter to its first
200 on ``/``, i.e. what any Gradio app costs before it does anything of its own.

Goal (issue 16, goal 5): ``serve`` answering <= 3 s after start.

Before the rounds, each side is started once untimed (``--no-prime`` skips it): the first start
after a checkout compiles numba's kernels into its on-disk cache (30 s and more under load),
which a user pays once, not at every start.

Usage: .venv/bin/python benchmarks/serve_startup.py [--bundle PATH] [--rounds 3] [--no-prime]
(default bundle: the demo bundle, built on first use). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACERINI = str(Path(sys.executable).with_name("spacerini"))

PEER = """
import sys, gradio as gr
with gr.Blocks(analytics_enabled=False) as app:
    gr.Textbox()
app.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True, ssr_mode=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ok(url: str, need: bytes = b"") -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200 and need in r.read()
    except (urllib.error.URLError, OSError):
        return False


def time_to_answer(cmd: list[str], port: int, search: bool, limit: float = 120) -> dict[str, float]:
    """Starts ``cmd``; seconds until the first search answer (``search``) and the page answer."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "SPACERINI_NO_PROGRESS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/"
    out: dict[str, float] = {}
    try:
        while len(out) < (3 if search else 1):
            if proc.poll() is not None:
                raise SystemExit(f"{cmd[:3]} exited: {proc.stderr.read()[-1500:] if proc.stderr else ''}")
            if time.perf_counter() - t0 > limit:
                raise SystemExit(f"no answer in {limit:.0f} s")
            if search and "json_s" not in out and _ok(base + "api/stats", b'"docs"'):
                out["json_s"] = time.perf_counter() - t0
            if search and "search_s" not in out and _ok(base + "api/search?q=json+decoder&k=10", b'"hits"'):
                out["search_s"] = time.perf_counter() - t0
            if "page_s" not in out and _ok(base, b"<html"):
                out["page_s"] = time.perf_counter() - t0
            time.sleep(0.02)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {k: round(v, 2) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", help="bundle to serve (default: the demo bundle)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-prime", action="store_true", help="no untimed start of each side first")
    args = ap.parse_args()
    if args.bundle:
        bundle = args.bundle
    else:
        from spacerini.demo import demo_bundle

        bundle = str(demo_bundle(progress=False).path)
    load_start = [round(x, 2) for x in os.getloadavg()]
    ours: list[dict[str, float]] = []
    peer: list[dict[str, float]] = []
    if not args.no_prime:
        port = free_port()
        time_to_answer([SPACERINI, "serve", bundle, "--port", str(port)], port, search=True, limit=600)
        port = free_port()
        time_to_answer([sys.executable, "-c", PEER, str(port)], port, search=False)
    for _ in range(args.rounds):
        port = free_port()
        ours.append(time_to_answer([SPACERINI, "serve", bundle, "--port", str(port)], port, search=True))
        port = free_port()
        peer.append(time_to_answer([sys.executable, "-c", PEER, str(port)], port, search=False))
    med = {key: round(statistics.median(r[key] for r in ours), 2) for key in ("json_s", "search_s", "page_s")}
    peer_page = round(statistics.median(r["page_s"] for r in peer), 2)
    print(
        json.dumps(
            {
                "bench": "serve_startup",
                "bundle": bundle,
                "first_json_s": med["json_s"],
                "first_search_s": med["search_s"],
                "first_page_s": med["page_s"],
                "peer_bare_gradio_page_s": peer_page,
                "ratio_first_search_over_peer": round(med["search_s"] / peer_page, 2),
                "runs": ours,
                "peer_runs": peer,
                "goal_first_search_s": 3.0,
                "meets_goal": med["search_s"] <= 3.0,
                "cpus": os.cpu_count(),
                "loadavg_start": load_start,
                "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
