"""Several corpora in one app: server memory for 1, 2 and 4 bundles, and /api/compare at 16 clients.

Corpora (``--corpus``): ``python``, the standard library's Python sources
(``preprocess_bench.stdlib_sources``), or ``debian``, 100k paragraphs of Debian documentation
and man pages (``debian_corpus.py``), or any corpus ``spacerini index`` reads (with its
``--format``, ``--id-field`` and ``--fields``; queries are then 1-4 words drawn from its documents,
``bench_queries.py``); cut into 4 contiguous quarters, each built as a bundle with bm25, exact and
bloom (built once into ``benchmarks/out/corpora/``, reused after).

* **Memory.** ``spacerini serve`` runs in its own process with 1, 2 or 4 of the bundles, and
  answers 200 warm-up ``/api/compare`` calls (every corpus's searchers mapped). Its RSS is then
  compared with the sum of the footprints of the bundles served one by one: ``rss(n)`` against
  ``base + sum(rss(one bundle) - base)``, where ``base`` is the mean one-bundle server minus its
  bundle's own share (estimated as the intercept of RSS against bundles). The server holds one
  JVM whatever the count: the process maps ``libjvm.so`` once (checked in ``/proc/PID/maps``).
* **Latency.** ``GET /api/compare?q=...`` over the 4 corpora with 16 concurrent closed-loop
  clients (async httpx), every query distinct, after warm-up: p50 / p95 / p99 and QPS. Peer in
  the same run and server: ``GET /api/count?q=...`` on one corpus (the cheapest call of the
  four that a compare makes per corpus) at 16 clients, so the ratio says what comparing 4
  corpora costs against one question to one corpus.

Usage: .venv/bin/python benchmarks/corpora_bench.py [--corpus python|debian|PATH] [--queries 2000] [--clients 16]
       [--format FMT] [--id-field NAME] [--fields NAME,...]
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "corpora"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out
sys.path.insert(0, str(ROOT / "benchmarks"))

from app_load import WORDS, free_port  # noqa: E402


def read_corpus(source: str, *, format: str | None, id_field: str | None, fields: str | None) -> list:
    """The documents of any corpus ``spacerini index`` reads.

    Raises:
        SystemExit: The corpus cannot be read (the library's error, on one line), or has fewer than
            4 documents.
    """
    from spacerini.corpus import load_corpus
    from spacerini.errors import SpaceriniError

    try:
        docs = list(load_corpus(source, format=format, id_field=id_field, fields=fields, progress=False))
    except SpaceriniError as exc:
        raise SystemExit(str(exc)) from None
    if len(docs) < 4:
        raise SystemExit(f"{source}: {len(docs)} documents; 4 at least (one per bundle)")
    return docs


def label(source: str) -> str:
    """A folder-safe name for a corpus path: its stem and a hash of its location."""
    import hashlib
    import re

    where = str(Path(source).resolve()) if Path(source).exists() else source  # else hf:NAME...
    stem = Path(source).stem if Path(source).exists() else source
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def build(corpus: str, docs: list | None = None) -> list[Path]:
    """The 4 bundles of ``corpus`` (``python``: the stdlib's sources; ``debian``: 100k paragraphs of
    Debian documentation and man pages, see ``debian_corpus.py``; else ``docs``, the documents of
    the corpus at that path), built once and reused (a path's, again when the file has changed)."""
    from spacerini.bundle import build_bundle
    from spacerini.records import Doc

    name = corpus if docs is None else label(corpus)
    paths = [OUT / f"{name}-q{i}" for i in range(1, 5)]
    source = None
    if docs is not None:  # a path is built again when it has changed; hf:NAME when its size has
        source = {"path": corpus, "docs": len(docs)}
        if Path(corpus).exists():
            stat = Path(corpus).stat()
            source.update(path=str(Path(corpus).resolve()), bytes=stat.st_size, mtime_ns=stat.st_mtime_ns)
    source_path = OUT / f"{name}.source.json"
    fresh = source is None or (source_path.is_file() and json.loads(source_path.read_text()) == source)
    if fresh and all((p / "spacerini.json").is_file() for p in paths):
        return paths
    if docs is not None:
        import shutil

        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
    elif corpus == "python":
        from preprocess_bench import stdlib_sources

        docs = [Doc(rel, text, meta={"path": rel, "licence": "PSF-2.0", "owner": rel.split("/", 1)[0]})
                for rel, text in stdlib_sources()]  # fmt: skip
    else:
        import itertools

        import debian_corpus

        docs = [Doc(str(r["id"]), str(r["contents"]), fields={"title": r["title"]}, meta={"owner": r["title"]})
                for r in itertools.islice(debian_corpus.iter_docs(), 100_000)]  # fmt: skip
    size = -(-len(docs) // 4)
    for i, path in enumerate(paths):
        build_bundle(docs[i * size : (i + 1) * size], path, backends=["bm25", "exact", "bloom"], progress=False)
    if source is not None:
        source_path.write_text(json.dumps(source))
    return paths


def query(i: int) -> str:
    return f"{WORDS[i % len(WORDS)].split()[0]} {WORDS[(i * 7) % len(WORDS)].split()[-1]}"


class Server:
    def __init__(self, bundles: list[Path]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        cmd = [sys.executable, "-m", "spacerini", "serve", *map(str, bundles), "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import httpx

        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(self.url + "api/corpora", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise SystemExit(f"the server for {bundles} did not start")
            time.sleep(0.5)

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def jvms(self) -> int:
        maps = Path(f"/proc/{self.proc.pid}/maps").read_text()
        return len({line.split()[-1] for line in maps.splitlines() if line.endswith("libjvm.so")})

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


async def load(url: str, route: str, params: list[dict[str, str]], clients: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    todo = iter(params)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for p in todo:
            t0 = time.perf_counter()
            r = await http.get(url + route, params=p)
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    wall = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {"queries": len(latencies), "errors": errors, "qps": round(len(latencies) / wall, 1),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99)}  # fmt: skip


def corpus_queries(docs: list, n: int) -> list[str]:
    """``n`` queries of 1-4 words drawn from the documents (``bench_queries``), distinct as far as
    the corpus allows."""
    from bench_queries import sample_queries

    drawn = list(dict.fromkeys(sample_queries([d.text[:5000] for d in docs], 3 * n, seed=0)))
    while len(drawn) < n:  # a small corpus: repeat
        drawn += drawn[: n - len(drawn)]
    return drawn[:n]


def warm(server: Server, queries: list[str]) -> None:
    asyncio.run(load(server.url, "api/compare", [{"q": q} for q in queries], 4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument(
        "--corpus", default="python",
        help="python, debian, or any corpus spacerini index reads (JSONL, Parquet, CSV, a folder, hf:NAME)",
    )  # fmt: skip
    ap.add_argument("--format", default=None, help="--corpus's format, as for spacerini index (e.g. code for a source folder)")
    ap.add_argument("--id-field", default=None, help="--corpus's id field (default: id/docid/_id/doc_id)")
    ap.add_argument("--fields", default=None, help="--corpus's contents fields, comma-separated (default: contents/text/content/body)")
    args = ap.parse_args()
    if args.corpus in ("python", "debian"):
        paths = build(args.corpus)
        queries = [query(i) for i in range(args.queries)]
        warm_queries = [query(10_000 + i) for i in range(200)]
    else:
        docs = read_corpus(args.corpus, format=args.format, id_field=args.id_field, fields=args.fields)
        paths = build(args.corpus, docs)
        drawn = corpus_queries(docs, args.queries + 200)
        queries, warm_queries = drawn[: args.queries], drawn[args.queries :]
        del docs
    result: dict[str, Any] = {"corpus": args.corpus, "load_before": os.getloadavg()[0], "bundles": [p.name for p in paths]}

    single = []
    for p in paths:
        s = Server([p])
        try:
            warm(s, warm_queries)
            single.append(s.rss())
        finally:
            s.close()
    rss: dict[int, int] = {}
    for n in (1, 2, 4):
        s = Server(paths[:n])
        try:
            warm(s, warm_queries)
            rss[n] = s.rss()
            result.setdefault("jvms_mapped", {})[n] = s.jvms()
            if n == 4:
                cmp_params = [{"q": q} for q in queries]
                count_params = [{"q": q, "corpus": paths[0].name} for q in queries]
                result["compare_4_corpora"] = asyncio.run(load(s.url, "api/compare", cmp_params, args.clients))
                result["count_1_corpus"] = asyncio.run(load(s.url, "api/count", count_params, args.clients))
                result["compare_vs_count_p95"] = round(
                    result["compare_4_corpora"]["p95_ms"] / result["count_1_corpus"]["p95_ms"], 2
                )
        finally:
            s.close()
    # base: the server without its bundle, from the 1-, 2- and 4-bundle servers (least squares)
    xs, ys = [1, 2, 4], [rss[1], rss[2], rss[4]]
    mx, my = sum(xs) / 3, sum(ys) / 3
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    base = my - slope * mx
    result["rss_mb"] = {n: round(v / 1e6) for n, v in rss.items()}
    result["rss_single_mb"] = [round(v / 1e6) for v in single]
    result["base_mb"] = round(base / 1e6)
    result["per_bundle_mb"] = round(slope / 1e6)
    expected_4 = base + sum(v - base for v in single)
    result["rss_4_vs_sum_of_footprints"] = round(rss[4] / expected_4, 3)
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
