"""Sharded builds on the Ray engine: its overhead against the local engine, and 1 -> 2 workers.

Every build is ``spacerini index CORPUS --out B --shards N --backends ...`` end to end, a fresh
process each, as a user would run it; runs are interleaved and each figure is the median of
``--repeat`` (3) runs, with the load average beside it (the machine has 2 cores).

``--mode overhead`` (issue 2/4, item 6: >= 0.85x): the same corpus and shards with

* ``local2``: ``--engine local --threads 2`` (shard after shard, 2 threads each where a backend
  uses them);
* ``ray``: ``--engine ray --threads 2`` (Ray embedded, 2 workers, one shard each at a time; the
  build runs every backend in one Ray session, so Ray and its workers, JVMs included, start once);

and prints the ratio local2 / ray (> 1: Ray faster). Before the figures it checks that the Ray
bundle answers as the local one (TREC run at k=1000 for 50 queries, exact counts, Bloom files
byte for byte): ``"identical": true``.

``--mode scaling`` (>= 1.7x): ``--engine ray`` with ``--threads 1`` (one worker) and ``--threads 2``
(two), on the CPU-bound backends: exact and bloom on ``--mb`` of text, dense (its encoding) on
``--dense-mb``. The figure is the wall time of each backend's shard tasks, from the engine's log
line (``ray: 4 exact tasks in X s``); an ``owners`` build goes first in each build, so the workers
have started before the measured tasks (their start is the same in both and is not scaling).

The corpus (``benchmarks/out/ray_bench/corpus-*.jsonl``, deterministic): this interpreter's
standard library ``.py`` files in sorted path order, one document each (id: the relative path),
again with ids ``#2``, ``#3``... when more text is asked for than the library has, up to ``--mb``
megabytes.

Usage:
    python benchmarks/ray_bench.py --mode overhead [--mb 30] [--shards 4] [--backends bm25,exact,bloom] [--repeat 3]
    python benchmarks/ray_bench.py --mode scaling [--mb 100] [--dense-mb 1.5] [--shards 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "ray_bench"
_TASKS = re.compile(r"ray: \d+ (\w+) tasks in ([\d.]+) s on (\d+) nodes")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")


def write_corpus(path: Path, megabytes: float) -> tuple[int, int]:
    """Writes the stdlib corpus as JSONL (cycling through it again if needed); returns (documents, text bytes)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    limit, docs, size = int(megabytes * 10**6), 0, 0
    files = [f for f in sorted(root.rglob("*.py")) if "site-packages" not in f.parts]
    with path.open("w", encoding="utf-8") as fh:
        for round_ in range(1, 100):
            for file in files:
                try:
                    text = file.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                if not text.strip():
                    continue
                docid = file.relative_to(root).as_posix() + ("" if round_ == 1 else f"#{round_}")
                fh.write(json.dumps({"id": docid, "contents": text}) + "\n")
                docs, size = docs + 1, size + len(text.encode("utf-8"))
                if size >= limit:
                    return docs, size
    return docs, size


def write_queries(corpus: Path, path: Path, count: int) -> None:
    """``count`` queries of 1-3 identifiers drawn from the corpus (seed 0)."""
    rng = random.Random(0)
    texts = [json.loads(line)["contents"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(count):
            words = _WORD.findall(rng.choice(texts)) or ["import"]
            fh.write(f"q{i}\t{' '.join(rng.choice(words) for _ in range(rng.randint(1, 3)))}\n")


def spacerini(*args: str) -> tuple[float, str]:
    """Runs the CLI; returns (wall seconds, stderr)."""
    env = {**os.environ, "SPACERINI_NO_PROGRESS": "1"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "spacerini", *args], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"spacerini {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stderr


def same_answers(a: Path, b: Path, queries: Path, backends: list[str]) -> bool:
    same = True
    if "bm25" in backends:
        runs = []
        for bundle in (a, b):
            out = OUT / f"{bundle.name}.trec"
            spacerini("search", str(bundle), "--queries", str(queries), "--output", str(out), "--k", "1000")
            runs.append(out.read_bytes())
        same = runs[0] == runs[1] and len(runs[0]) > 0
    if "exact" in backends:
        for needle in ("def __init__(self", "import os", "zzz-not-there"):
            counts = [spacerini("count", str(bundle), "--json", "--", needle) for bundle in (a, b)]
            same = same and counts[0][1] == counts[1][1]
    if "bloom" in backends:
        same = same and all(
            filecmp.cmp(a / f, b / f, shallow=False) for f in ("bloom/filter.bloom", "bloom/meta.json")
        )
    return same


def _load() -> list[float]:
    return [round(x, 1) for x in os.getloadavg()]


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Ray (2 workers) against the local engine (2 threads), medians of interleaved runs."""
    corpus, queries = OUT / f"corpus-{args.mb:g}.jsonl", OUT / "queries.tsv"
    docs, size = write_corpus(corpus, args.mb)
    write_queries(corpus, queries, 50)
    common = ["index", str(corpus), "--backends", args.backends, "--shards", str(args.shards)]
    engines = {"local2": ["--engine", "local", "--threads", "2"], "ray": ["--engine", "ray", "--threads", "2"]}
    times: dict[str, list[float]] = {name: [] for name in engines}
    tasks: list[dict[str, float]] = []
    loads = []
    for _ in range(args.repeat):
        for name, extra in engines.items():
            out = OUT / name
            shutil.rmtree(out, ignore_errors=True)
            seconds, stderr = spacerini(*common, "--out", str(out), *extra)
            times[name].append(seconds)
            if name == "ray":
                tasks.append({b: float(t) for b, t, _ in _TASKS.findall(stderr)})
            loads.append(_load())
    identical = same_answers(OUT / "ray", OUT / "local2", queries, args.backends.split(","))
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "bench": "ray overhead", "docs": docs, "mb": round(size / 1e6, 1), "shards": args.shards,
        "backends": args.backends, "cpus": os.cpu_count(), "load_avg_per_run": loads,
        "seconds": {k: [round(v, 1) for v in values] for k, values in times.items()},
        "median_seconds": {k: round(v, 1) for k, v in median.items()},
        "ray_task_seconds": tasks,
        "ratio_local2_over_ray": round(median["local2"] / median["ray"], 2),
        "identical": identical,
    }  # fmt: skip


def scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Shard-task wall time of the CPU-bound backends with 1 and with 2 Ray workers."""
    builds = [("owners,exact,bloom", args.mb, ("exact", "bloom")), ("owners,dense", args.dense_mb, ("dense",))]
    task_times: dict[str, dict[int, list[float]]] = {}
    walls: dict[str, dict[int, list[float]]] = {}
    loads = []
    corpora = {}
    for backends, mb, _ in builds:
        corpus = OUT / f"corpus-{mb:g}.jsonl"
        corpora[backends] = (corpus, write_corpus(corpus, mb))
    for _ in range(args.repeat):
        for backends, _, measured in builds:
            corpus = corpora[backends][0]
            for workers in (1, 2):
                out = OUT / f"scaling-{workers}"
                shutil.rmtree(out, ignore_errors=True)
                seconds, stderr = spacerini(
                    "index", str(corpus), "--out", str(out), "--backends", backends, "--shards", str(args.shards),
                    "--engine", "ray", "--threads", str(workers),
                )  # fmt: skip
                found = {b: float(t) for b, t, _ in _TASKS.findall(stderr)}
                for backend in measured:
                    task_times.setdefault(backend, {1: [], 2: []})[workers].append(found[backend])
                walls.setdefault(backends, {1: [], 2: []})[workers].append(round(seconds, 1))
                loads.append(_load())
    result: dict[str, Any] = {
        "bench": "ray scaling", "shards": args.shards, "cpus": os.cpu_count(),
        "corpora": {b: {"docs": d, "mb": round(n / 1e6, 1)} for b, (_, (d, n)) in corpora.items()},
        "load_avg_per_run": loads, "task_seconds": task_times, "build_seconds": walls,
    }  # fmt: skip
    result["speedup_1_to_2_workers"] = {
        backend: round(statistics.median(t[1]) / statistics.median(t[2]), 2) for backend, t in task_times.items()
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("overhead", "scaling"), default="overhead")
    parser.add_argument("--mb", type=float, default=None, help="MB of text (overhead: 30, scaling: 100)")
    parser.add_argument("--dense-mb", type=float, default=1.5, help="MB of text for dense (scaling)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--backends", default="bm25,exact,bloom", help="backends (overhead)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        print(json.dumps({"bench": "ray", "skipped": "ray is not installed: pip install 'spacerini[distributed]'"}))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    if args.mb is None:
        args.mb = 30.0 if args.mode == "overhead" else 100.0
    result = overhead(args) if args.mode == "overhead" else scaling(args)
    result["load_avg_end"] = _load()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
