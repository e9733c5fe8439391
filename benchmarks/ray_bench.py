"""Sharded build on the Ray engine (2 workers) vs the local engine: same corpus, same shards.

Runs ``spacerini index CORPUS --out B --shards N --backends ...`` end to end (a fresh process
each, as a user would) with:

* ``local``: ``--engine local --threads 1`` (shard after shard in the driver);
* ``local2``: ``--engine local --threads 2`` (shard after shard, 2 threads each where a backend uses them);
* ``ray``: ``--engine ray --threads 2`` (Ray embedded on this machine: 2 workers, one shard each at a
  time; the build starts and stops Ray once per backend);
* ``ray_session``: the same build through the Python API inside one
  ``spacerini.distributed.session(threads=2)``, so Ray starts once and its workers (and their
  JVMs) serve every backend;

best of ``--repeat`` interleaved runs, and prints one JSON line with each wall time, the time the
shard tasks took per backend (from the engines' log lines) and the ratios local / ray (> 1: Ray
faster). Before timing it checks that the Ray bundle answers as the local one (TREC run at
k=1000 for 50 queries, exact counts, Bloom files byte for byte): ``"identical": true``.

The corpus (``benchmarks/out/ray_bench/corpus.jsonl``, deterministic): this interpreter's
standard library ``.py`` files in sorted path order, one document each (id: the relative path),
up to ``--mb`` megabytes of text.

Usage: python benchmarks/ray_bench.py [--mb 30] [--shards 4] [--backends bm25,exact,bloom] [--repeat 2]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "ray_bench"
_TASKS = re.compile(r"ray: \d+ (\w+) tasks in ([\d.]+) s on (\d+) nodes")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")


def write_corpus(path: Path, megabytes: float) -> tuple[int, int]:
    """Writes the stdlib corpus as JSONL; returns (documents, text bytes)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    limit, docs, size = int(megabytes * 10**6), 0, 0
    with path.open("w", encoding="utf-8") as fh:
        for file in sorted(root.rglob("*.py")):
            if "site-packages" in file.parts:
                continue
            try:
                text = file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if not text.strip():
                continue
            fh.write(json.dumps({"id": file.relative_to(root).as_posix(), "contents": text}) + "\n")
            docs, size = docs + 1, size + len(text.encode("utf-8"))
            if size >= limit:
                break
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


SESSION = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
from spacerini.bundle import build_bundle
from spacerini.distributed import session
corpus, out, backends, shards = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
with session(threads=2):
    build_bundle(corpus, out, backends=backends, shards=shards, engine="ray", threads=2, progress=False)
"""


def python(*args: str) -> tuple[float, str]:
    """Runs ``python -c SESSION args``; returns (wall seconds, stderr)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SESSION, *args], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the session build failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stderr


def same_answers(a: Path, b: Path, queries: Path, backends: list[str]) -> bool:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=30.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--backends", default="bm25,exact,bloom")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        print(
            json.dumps(
                {"bench": "ray", "skipped": "ray is not installed: pip install 'spacerini[distributed]'"}
            )
        )
        return
    OUT.mkdir(parents=True, exist_ok=True)
    corpus, queries = OUT / "corpus.jsonl", OUT / "queries.tsv"
    docs, size = write_corpus(corpus, args.mb)
    write_queries(corpus, queries, 50)
    common = ["index", str(corpus), "--backends", args.backends, "--shards", str(args.shards)]
    engines = {
        "local": ["--engine", "local", "--threads", "1"],
        "local2": ["--engine", "local", "--threads", "2"],
        "ray": ["--engine", "ray", "--threads", "2"],
        "ray_session": [],
    }
    best: dict[str, float] = {}
    task_seconds: dict[str, dict[str, float]] = {}
    nodes = 0
    for _ in range(args.repeat):
        for name, extra in engines.items():
            out = OUT / name
            shutil.rmtree(out, ignore_errors=True)
            if name == "ray_session":
                seconds, stderr = python(str(corpus), str(out), args.backends, str(args.shards))
            else:
                seconds, stderr = spacerini(*common, "--out", str(out), *extra)
            best[name] = min(best.get(name, float("inf")), seconds)
            if name.startswith("ray"):
                found = {b: float(s) for b, s, _ in _TASKS.findall(stderr)}
                nodes = max([nodes, *(int(n) for _, _, n in _TASKS.findall(stderr))])
                if not task_seconds.get(name) or sum(found.values()) < sum(task_seconds[name].values()):
                    task_seconds[name] = found
    identical = all(
        same_answers(OUT / name, OUT / "local", queries, args.backends.split(","))
        for name in ("ray", "ray_session")
    )
    print(
        json.dumps(
            {
                "bench": "ray",
                "docs": docs,
                "mb": round(size / 1e6, 1),
                "shards": args.shards,
                "backends": args.backends,
                "cpus": os.cpu_count(),
                "load_avg": [round(x, 1) for x in os.getloadavg()],
                "seconds": {k: round(v, 1) for k, v in best.items()},
                "ray_task_seconds": task_seconds,
                "ray_nodes": nodes,
                "ratio_local_over_ray": round(best["local"] / best["ray"], 2),
                "ratio_local2_over_ray": round(best["local2"] / best["ray"], 2),
                "ratio_local_over_ray_session": round(best["local"] / best["ray_session"], 2),
                "identical": identical,
            }
        )
    )


if __name__ == "__main__":
    main()
