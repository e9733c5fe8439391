"""Where a sharded build's driver memory goes: resident memory per build phase, two corpus sizes.

Builds the scale corpus of :mod:`scale_bench` (real text from this machine, repeated with seeded
word substitutions) at each size in ``--mb`` with ``--shard-size``, in a child process that
samples its own resident memory every 20 ms and labels each sample with the build phase it
falls in: writing the docstore, planning the shards, each backend's ``prepare_shards``, its
shard builds and its ``merge_shards`` (the reduce). For each phase it prints the resident memory
when the phase starts, its peak and, for the reduces, the peak of Python's own allocations
(tracemalloc, started just for the reduce). A phase whose peak grows with the corpus, while the
others stay flat, is where the driver holds corpus-wide state.

``--merges GB`` instead measures the two reduces alone, before and after they were made to
stream: it writes the shard folders a build of that many GB of this corpus would reduce (20
shards at 5 GB: owners.json files with 1,800 documents per MB of text over 300 owners, and Bloom
filters sized for the whole corpus's n-grams, 1/55 of the text bytes, each holding its shard's
share of random n-gram hashes), then runs each ``merge_shards`` in a fresh process, the
current one and the one of git revision ``--old-rev``, and prints the growth of the resident
memory over the process's before the merge (peak sampled every 5 ms; ``ru_maxrss`` is no
use here, Linux carries it over from the parent through exec) and the merge's seconds. The merged files of the two must be byte-identical.

Run (figures go to benchmarks/RESULTS.md by hand, with these commands):
    .venv/bin/python benchmarks/reduce_memory_bench.py --mb 100,400 --shard-size 64MB --backends bloom,owners
    .venv/bin/python benchmarks/reduce_memory_bench.py --merges 1,5 --old-rev 487732d
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "reduce_memory"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out


class Phases:
    """Samples this process's resident memory and keeps, per phase, its start and peak."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.current = "docstore"
        self.rows: dict[str, dict[str, float]] = {}
        self._enter(self.current)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _enter(self, name: str) -> None:
        rss = self._rss()
        self.current = name
        self.rows[name] = {"start_mb": rss / 1e6, "peak_mb": rss / 1e6, "started": time.perf_counter()}

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            row = self.rows[self.current]
            row["peak_mb"] = max(row["peak_mb"], self._rss() / 1e6)

    def wrap(self, label: Callable[..., str], function: Callable[..., Any], *, trace: bool = False) -> Callable[..., Any]:
        """``function`` run as its own phase, named by ``label(*args)``; ``trace``: tracemalloc peak too."""

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            outer = self.current
            name = label(*args)
            self._close(outer)
            self._enter(name)
            if trace:
                tracemalloc.start()
            try:
                return function(*args, **kwargs)
            finally:
                row = self.rows[name]
                row["peak_mb"] = max(row["peak_mb"], self._rss() / 1e6)
                if trace:
                    row["python_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
                    tracemalloc.stop()
                self._close(name)
                self._enter(f"after {name}")

        return run

    def _close(self, name: str) -> None:
        row = self.rows[name]
        row["seconds"] = time.perf_counter() - row.pop("started")
        row["end_mb"] = self._rss() / 1e6

    def finish(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        self._thread.join()
        self._close(self.current)
        return {name: {k: round(v, 1) for k, v in row.items()} for name, row in self.rows.items()}


def child(corpus: Path, out: Path, backends: str, shard_size: str) -> None:
    """The measured build (in this process): prints one JSON line of phases."""
    sys.path.insert(0, str(ROOT))
    import spacerini.bundle.build as build_module
    import spacerini.bundle.shards as shards_module
    from spacerini.backends import get_backend
    from spacerini.bundle import build_bundle

    phases = Phases()
    build_module.plan_shards = phases.wrap(lambda *a: "plan", build_module.plan_shards)
    shards_module.run_tasks = phases.wrap(lambda tasks, *a: f"{tasks[0].backend} shards", shards_module.run_tasks)
    for name in backends.split(","):
        module = get_backend(name)
        if hasattr(module, "prepare_shards"):
            module.prepare_shards = phases.wrap(lambda *a, n=name: f"{n} prepare", module.prepare_shards)
        if hasattr(module, "merge_shards") and not hasattr(module, "open_shards"):
            module.merge_shards = phases.wrap(lambda *a, n=name: f"{n} merge", module.merge_shards, trace=True)
    started = time.perf_counter()
    bundle = build_bundle(str(corpus), out, backends=backends.split(","), shard_size=shard_size, progress=False)
    seconds = time.perf_counter() - started
    rows = phases.finish()
    manifest = bundle.manifest
    print(json.dumps({
        "docs": manifest["counts"]["docs"], "text_mb": round(manifest["counts"]["text_bytes"] / 1e6, 1),
        "shards": len(manifest["shards"]), "seconds": round(seconds, 1), "phases": rows,
    }))  # fmt: skip


DOCS_PER_MB = 1_800  # the scale corpus: 8,998,011 documents in 5 GB
NGRAMS_PER_BYTE = 1 / 55  # width 50, stride 50 over ~560-byte documents
SHARD_MB = 256


def write_shards(root: Path, gigabytes: float) -> tuple[list[Path], list[dict[str, Any]], list[Path], list[dict[str, Any]]]:
    """The shard folders a sharded build of ``gigabytes`` of the scale corpus reduces (seeded)."""
    import random

    import numpy as np
    from rbloom import Bloom

    sys.path.insert(0, str(ROOT))
    from spacerini.backends import bloom, owners

    shards = max(1, round(gigabytes * 1000 / SHARD_MB))
    docs = int(gigabytes * 1000 * DOCS_PER_MB)
    capacity = int(gigabytes * 1e9 * NGRAMS_PER_BYTE)
    rng = np.random.default_rng(0)
    names = [f"owner-{i:03d}" for i in range(300)]
    o_folders, o_reports, b_folders, b_reports = [], [], [], []
    per = docs // shards
    for s in range(shards):
        folder = root / f"owners-{s:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        r = random.Random(s)
        index: dict[str, dict[str, list[str]]] = {}
        for d in range(s * per, (s + 1) * per):
            name = names[min(int(r.paretovariate(1.2)) - 1, len(names) - 1)]
            index.setdefault(name, {}).setdefault(f"local/{name}", []).append(f"c{d // 549_185}-p{d % 549_185}")
        report = owners._write(folder, index, owners.DEFAULT_OPTOUT, docs=per, unowned=0, t0=time.perf_counter())
        o_folders.append(folder)
        o_reports.append(report.to_dict())
        folder = root / f"bloom-{s:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        filt = Bloom(capacity, 0.001, hash_func=int)
        items = capacity // shards
        for start in range(0, items, 1_000_000):
            filt.update(rng.integers(0, 2**63, size=min(1_000_000, items - start), dtype=np.int64).tolist())
        bloom._write(folder, filt, width=50, stride=50, fp_rate=0.001, items=items, capacity=capacity)
        b_folders.append(folder)
        b_reports.append({"docs": per, "stats": {"chars": 0}, "params": {}})
        del filt, index
    return o_folders, o_reports, b_folders, b_reports


def merge_child(backend: str, source: str, spec: Path, out: Path) -> None:
    """Runs one merge (``source``: a module file, or ``current``) and prints its memory growth."""
    import importlib.util

    import psutil

    sys.path.insert(0, str(ROOT))
    if source == "current":
        import importlib

        module = importlib.import_module(f"spacerini.backends.{backend}")
    else:
        loader = importlib.util.spec_from_file_location(f"old_{backend}", source)
        module = importlib.util.module_from_spec(loader)
        sys.modules[loader.name] = module
        loader.loader.exec_module(module)
    folders, reports = json.loads(spec.read_text())
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.005):
            peak = max(peak, process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    module.merge_shards([Path(f) for f in folders], out, reports)
    seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    peak = max(peak, process.memory_info().rss)
    print(json.dumps({
        "growth_mb": round((peak - before) / 1e6, 1), "rss_before_mb": round(before / 1e6, 1),
        "seconds": round(seconds, 2),
    }))  # fmt: skip


def merges(sizes: list[float], old_rev: str) -> None:
    """Before/after of the two reduces on synthetic shards (see the module's docstring)."""
    print(f"uptime: {os.getloadavg()}", flush=True)
    for size in sizes:
        root = OUT / f"merges-{size:g}gb"
        shutil.rmtree(root, ignore_errors=True)
        o_folders, o_reports, b_folders, b_reports = write_shards(root, size)
        row: dict[str, Any] = {"shards": len(o_folders)}
        for backend, folders, reports, name in (
            ("owners", o_folders, o_reports, "owners.json"), ("bloom", b_folders, b_reports, "filter.bloom")
        ):
            spec = root / f"{backend}.json"
            spec.write_text(json.dumps([[str(f) for f in folders], reports]))
            old = root / f"old_{backend}.py"
            old.write_text(subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{old_rev}:spacerini/backends/{backend}.py"],
                capture_output=True, text=True, check=True,
            ).stdout)  # fmt: skip
            outs = {}
            for version, source in (("before", str(old)), ("after", "current")):
                out = root / f"{backend}-{version}"
                result = subprocess.run(
                    [sys.executable, __file__, "--merge-child", backend, source, str(spec), str(out)],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if result.returncode:
                    raise SystemExit(f"{backend} {version} merge failed: {result.stderr[-2000:]}")
                row[f"{backend} {version}"] = json.loads(result.stdout.strip().splitlines()[-1])
                outs[version] = (out / name).read_bytes()
            row[f"{backend} identical"] = outs["before"] == outs["after"]
            row[f"{backend} merged_mb"] = round(len(outs["after"]) / 1e6, 1)
        print(json.dumps({f"{size:g}GB": row, "load": os.getloadavg()}), flush=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", default="100,400", help="MB of text per build, comma-separated")
    parser.add_argument("--shard-size", default="64MB")
    parser.add_argument("--backends", default="bloom,owners")
    parser.add_argument("--merges", help="GB of corpus whose reduces alone to measure, comma-separated")
    parser.add_argument("--old-rev", default="487732d", help="git revision of the merges to compare with")
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--merge-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.merge_child:
        backend, source, spec, out = args.merge_child
        merge_child(backend, source, Path(spec), Path(out))
        return
    if args.merges:
        merges([float(s) for s in args.merges.split(",")], args.old_rev)
        return
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.backends, args.shard_size)
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scale_bench import paragraphs, write_corpus

    OUT.mkdir(parents=True, exist_ok=True)
    sizes = [float(s) for s in args.mb.split(",")]
    paras = paragraphs(limit_bytes=int(max(sizes) * 1e6))
    print(f"uptime: {os.getloadavg()}", flush=True)
    for size in sizes:
        corpus = OUT / f"corpus-{size:g}mb.jsonl"
        bundle = OUT / f"bundle-{size:g}mb"
        if not corpus.exists():
            write_corpus(corpus, int(size * 1e6), paras)
        shutil.rmtree(bundle, ignore_errors=True)
        env = {**os.environ, "SPACERINI_NO_PROGRESS": "1"}
        cmd = [sys.executable, __file__, "--child", str(corpus), str(bundle), "--backends", args.backends,
               "--shard-size", args.shard_size]  # fmt: skip
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"build failed: {result.stderr[-3000:]}")
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(json.dumps({f"{size:g}MB": row, "load": os.getloadavg()}), flush=True)
        shutil.rmtree(bundle, ignore_errors=True)


if __name__ == "__main__":
    main()
