"""Sharded builds on the Ray engine: its overhead against the local engine, and 1 -> 2 workers.

Runs are interleaved (each pair in alternating order), each figure is the median of ``--repeat``
(3) runs, and the load average is recorded beside every run (the machine has 2 cores): on a
loaded machine the ratios say little, so re-run the same command when it is quiet.

``--mode overhead`` (issue 2/4, item 6: >= 0.85x), for each size in ``--mb`` (``30,150``):
``spacerini index CORPUS --out B --shards 4 --backends bm25,exact,bloom`` end to end, a fresh
process each, as a user would run it, with

* ``local2``: ``--engine local --threads 2`` (shard after shard, 2 threads each where a backend
  uses them);
* ``ray``: ``--engine ray --threads 2`` (Ray embedded with 2 CPUs: two workers; the build starts Ray
  once for reading and every backend, so the workers, JVMs included, start once);

and prints the ratio local2 / ray per size (> 1: Ray faster), with the Ray build's phases from its
log (the streaming read, each backend's shard tasks; ``other`` is the rest: Ray's start and stop,
the driver's own work). A fixed cost amortises, so the ratio is a curve over the sizes. Before the
figures it checks that the Ray bundle answers as the local one (TREC run at k=1000 for 50
queries, exact counts, Bloom files byte for byte): ``"identical": true``.

``--mode scaling`` (>= 1.7x): the shard tasks of the CPU-bound backends (exact and bloom on
``--mb`` (``300``) of text, dense encoding on ``--dense-mb`` (``0.6``) of documents cut to their
first 4,000 characters, so that its shards hold equal text), ``--shards`` (4) of them,
run by the engine (:func:`spacerini.distributed.run_tasks`) inside a Ray session of 1 CPU (one
worker) and of 2 CPUs (two workers), interleaved. The docstore is built once; a warm-up round on
a few documents per shard goes first in each session (it starts the workers and imports the
backends, as the reading stage of a real build does), and the figure is the wall time of the
round that follows: the tasks only. A backend's work on the driver before its tasks (Bloom's
n-gram count, dense's shard plan) is measured once and reported beside, since it does not scale
with workers. Each worker holds its libraries to the CPU Ray granted it (see
:func:`spacerini.distributed.engine._thread_limits`).

The corpus (``benchmarks/out/ray_bench/corpus-*.jsonl``, deterministic): this interpreter's
standard library ``.py`` files in sorted path order, one document each (id: the relative path),
again with ids ``#2``, ``#3``... when more text is asked for than the library has, up to the size
asked for.

Usage:
    python benchmarks/ray_bench.py --mode overhead [--mb 30,150] [--shards 4] [--backends bm25,exact,bloom] [--repeat 3]
    python benchmarks/ray_bench.py --mode scaling [--mb 300] [--dense-mb 0.6] [--shards 4] [--backends exact,bloom,dense] [--repeat 3]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import logging
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
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out
_TASKS = re.compile(r"ray: \d+ (\w+) tasks in ([\d.]+) s on (\d+) nodes")
_READ = re.compile(r"ray: read(?: and preprocessed)? \d+ documents in ([\d.]+) s|ray: read in ([\d.]+) s")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
#: Documents per shard in the warm-up round of ``--mode scaling``.
WARM_DOCS = 1
#: Characters kept of each document of the dense corpus of ``--mode scaling``.
DENSE_DOC_CHARS = 4000


def write_corpus(path: Path, megabytes: float, *, max_chars: int | None = None) -> tuple[int, int]:
    """Writes the stdlib corpus as JSONL (cycling through it again if needed); returns (documents, text bytes).

    ``max_chars`` keeps only each file's first characters, so that a small corpus has many
    documents of similar size (shards of equal work) rather than a few files of 100-230 KB.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    limit, docs, size = int(megabytes * 10**6), 0, 0
    files = [f for f in sorted(root.rglob("*.py")) if "site-packages" not in f.parts]
    with path.open("w", encoding="utf-8") as fh:
        for round_ in range(1, 1000):
            for file in files:
                try:
                    text = file.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                if max_chars is not None:
                    text = text[:max_chars]
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
    texts = []
    with corpus.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= 5000:
                break
            texts.append(json.loads(line)["contents"])
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
    """Whether two bundles answer alike: TREC runs at k=1000, exact counts, Bloom files byte for byte."""
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


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def _ray_phases(stderr: str, wall: float) -> dict[str, float]:
    """The Ray build's phases from its log: read, each backend's shard tasks, and the rest."""
    phases: dict[str, float] = {}
    for match in _READ.finditer(stderr):
        phases["read"] = float(match.group(1) or match.group(2))
    for backend, seconds, _ in _TASKS.findall(stderr):
        phases[backend] = float(seconds)
    phases["other"] = round(wall - sum(phases.values()), 1)
    return phases


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Ray (2 workers) against the local engine (2 threads), per corpus size, medians of interleaved runs."""
    sizes = []
    for mb in [float(x) for x in str(args.mb).split(",")]:
        corpus, queries = OUT / f"corpus-{mb:g}.jsonl", OUT / "queries.tsv"
        docs, size = write_corpus(corpus, mb)
        write_queries(corpus, queries, 50)
        common = ["index", str(corpus), "--backends", args.backends, "--shards", str(args.shards)]
        engines = {"local2": ["--engine", "local", "--threads", "2"], "ray": ["--engine", "ray", "--threads", "2"]}
        times: dict[str, list[float]] = {name: [] for name in engines}
        phases: list[dict[str, float]] = []
        loads = []
        for rep in range(args.repeat):
            order = list(engines) if rep % 2 == 0 else list(reversed(engines))
            for name in order:
                out = OUT / name
                shutil.rmtree(out, ignore_errors=True)
                seconds, stderr = spacerini(*common, "--out", str(out), *engines[name])
                times[name].append(round(seconds, 1))
                if name == "ray":
                    phases.append(_ray_phases(stderr, seconds))
                loads.append(_load())
                print(f"# {mb:g} MB {name}: {seconds:.1f} s (load {loads[-1]})", file=sys.stderr, flush=True)
        identical = same_answers(OUT / "ray", OUT / "local2", queries, args.backends.split(","))
        median = {name: _median(values) for name, values in times.items()}
        sizes.append({
            "mb": round(size / 1e6, 1), "docs": docs, "seconds": times, "median_seconds": median,
            "ray_phases": phases, "ratio_local2_over_ray": round(median["local2"] / median["ray"], 2),
            "identical": identical, "load_avg_per_run": loads,
        })  # fmt: skip
    return {
        "bench": "ray overhead", "shards": args.shards, "backends": args.backends, "cpus": os.cpu_count(),
        "sizes": sizes, "goal": ">= 0.85x",
    }  # fmt: skip


def _base_bundle(mb: float, max_chars: int | None = None) -> tuple[Path, int, int]:
    """A local bundle of the stdlib corpus of ``mb`` megabytes (its docstore is what the tasks read)."""
    from spacerini.bundle import build_bundle

    tag = f"{mb:g}" + (f"-cut{max_chars}" if max_chars else "")
    corpus = OUT / f"corpus-{tag}.jsonl"
    docs, size = write_corpus(corpus, mb, max_chars=max_chars)
    base = OUT / f"scaling-base-{tag}"
    if not (base / "spacerini.json").is_file():
        shutil.rmtree(base, ignore_errors=True)
        build_bundle(str(corpus), base, backends=["bloom"], progress=False)
    return base, docs, size


def _tasks(name: str, base: Path, shards: int, work: Path) -> tuple[list[Any], list[Any], float]:
    """The shard tasks of ``name`` over ``base``'s docstore, a warm-up set on a few documents per
    shard, and the seconds of the backend's corpus-wide preparation on the driver."""
    from spacerini.backends import get_backend
    from spacerini.bundle.shards import ShardTask, _accepted
    from spacerini.bundle.shards import plan as plan_shards
    from spacerini.docstore import Docstore

    store = Docstore(base / "docs")
    module = get_backend(name)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    params: dict[str, Any] = {}
    started = time.perf_counter()
    prepare = getattr(module, "prepare_shards", None)
    if prepare is not None:
        params = dict(prepare(store.iter_docs, work / "prepare", params, **_accepted(prepare, threads=1, progress=False)))
    prepared = time.perf_counter() - started
    tasks, warm = [], []
    for shard in plan_shards(store, shards=shards):
        tasks.append(ShardTask(name, str(base / "docs"), shard.first_doc, shard.docs, str(work / f"{shard.id}"), params))
        warm.append(ShardTask(name, str(base / "docs"), shard.first_doc, min(WARM_DOCS, shard.docs),
                              str(work / f"warm-{shard.id}"), params))  # fmt: skip
    return tasks, warm, prepared


def _shard_megabytes(base: Path, tasks: list[Any]) -> list[float]:
    """Megabytes of text in each task's shard (equal shards make equal work)."""
    from spacerini.docstore import Docstore

    store = Docstore(base / "docs")
    return [
        round(sum(len(doc.text.encode("utf-8")) for doc in store.iter_docs(start=t.first_doc, stop=t.first_doc + t.docs)) / 1e6, 2)
        for t in tasks
    ]


def scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Shard-task wall time of the CPU-bound backends with 1 and with 2 Ray workers."""
    from spacerini.distributed import last_tasks, run_tasks, session

    chosen = args.backends.split(",") if args.backends else ["exact", "bloom", "dense"]
    measured = {name: args.dense_mb if name == "dense" else args.mb for name in chosen}
    # Dense gets documents cut to DENSE_DOC_CHARS: the first 0.6 MB of the library holds files of
    # up to 230 KB, and 4 shards by document count then carried 2 % to 62 % of the text each.
    cuts = {name: DENSE_DOC_CHARS if name == "dense" else None for name in measured}
    bases = {(mb, cuts[name]): _base_bundle(mb, cuts[name]) for name, mb in measured.items()}
    prepared: dict[str, float] = {}
    shard_mb: dict[str, list[float]] = {}
    sets = {}
    for name, mb in measured.items():
        base = bases[(mb, cuts[name])][0]
        tasks, warm, seconds = _tasks(name, base, args.shards, OUT / f"scaling-{name}")
        sets[name] = (tasks, warm)
        shard_mb[name] = _shard_megabytes(base, tasks)
        prepared[name] = round(seconds, 2)
    seconds: dict[str, dict[int, list[float]]] = {name: {1: [], 2: []} for name in measured}
    inside: dict[str, dict[int, list[float]]] = {name: {1: [], 2: []} for name in measured}
    workers_seen: dict[str, dict[int, list[int]]] = {name: {1: [], 2: []} for name in measured}
    loads = []
    for rep in range(args.repeat):
        for workers in (1, 2) if rep % 2 == 0 else (2, 1):
            with session(threads=workers):
                for name, (tasks, warm) in sets.items():
                    run_tasks(warm, threads=workers)
                    started = time.perf_counter()
                    run_tasks(tasks, threads=workers)
                    seconds[name][workers].append(round(time.perf_counter() - started, 2))
                    records = last_tasks()
                    inside[name][workers].append(round(sum(t["seconds"] for t in records), 2))
                    workers_seen[name][workers].append(len({t["pid"] for t in records}))
                    loads.append(_load())
                    print(f"# {name} {workers} worker(s): {seconds[name][workers][-1]} s (load {loads[-1]})",
                          file=sys.stderr, flush=True)  # fmt: skip
    return {
        "bench": "ray scaling", "shards": args.shards, "cpus": os.cpu_count(),
        "corpora": {name: {"mb": round(bases[(mb, cuts[name])][2] / 1e6, 1), "docs": bases[(mb, cuts[name])][1],
                           "max_doc_chars": cuts[name], "shard_mb": shard_mb[name]} for name, mb in measured.items()},
        "task_seconds": seconds, "inside_task_seconds_summed": inside, "worker_processes": workers_seen,
        "driver_prepare_seconds": prepared, "load_avg_per_run": loads,
        "speedup_1_to_2_workers": {
            name: round(statistics.median(t[1]) / statistics.median(t[2]), 2) for name, t in seconds.items()
        },
        "goal": ">= 1.7x",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("overhead", "scaling"), default="overhead")
    parser.add_argument("--mb", default=None, help="MB of text (overhead: comma-separated sizes, 30,150; scaling: 300)")
    parser.add_argument("--dense-mb", type=float, default=0.6, help="MB of text for dense (scaling)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--backends", default=None, help="backends (overhead: bm25,exact,bloom; scaling: exact,bloom,dense)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        print(json.dumps({"bench": "ray", "skipped": "ray is not installed: pip install 'spacerini[distributed]'"}))
        return
    logging.basicConfig(level=logging.WARNING)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.mb is None:
        args.mb = "30,150" if args.mode == "overhead" else "300"
    if args.mode == "scaling":
        args.mb = float(args.mb)
    elif args.backends is None:
        args.backends = "bm25,exact,bloom"
    started = time.strftime("%H:%M", time.gmtime())
    result = overhead(args) if args.mode == "overhead" else scaling(args)
    result["utc"] = f"{started}-{time.strftime('%H:%M', time.gmtime())}"
    result["load_avg_end"] = _load()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
