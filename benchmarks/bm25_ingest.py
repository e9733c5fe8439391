"""BM25 ingest: `spacerini index SOURCE --out B --backends bm25` vs raw Anserini `IndexCollection`.

Prints one JSON line. For each corpus: the wall time, CPU time and peak RSS of both sides, each
run as a user runs it, in its own process, timed from start to exit:

* **Ours**: the `spacerini index SOURCE.jsonl --out BUNDLE --backends bm25 --threads T` command
  (interpreter start, imports, JVM start, reading, docstore, Lucene, sidecar, checksums, atomic
  publish), into a fresh folder.
* **Peer**: `java io.anserini.index.IndexCollection` (Anserini 1.7.1, `JsonCollection`,
  `-storePositions -storeDocvectors -storeRaw`, `-threads T`, `-memoryBuffer 512` as the bm25 backend's default) with
  the JVM options Spacerini's indexing JVM runs with (heap, stack, collector:
  `spacerini.java.jvm_options`), on the same JSONL. Both indexes hold the same
  fields: positions, term vectors with positions, the raw JSON stored (the bundle's `lucene/` is
  a full Anserini index that plain pyserini opens: `doc(...).raw()`, RM3 over doc vectors). IndexCollection gives each thread whole files, so the JSONL is split beforehand (not
  timed) into T files of interleaved lines: the peer at its best.

Both read warm files (each corpus is read once before the first run). Peer and ours alternate in
pairs (the order flips every round), `--repeat` rounds; ratios are docs/s ours / peer from the
medians, and per pair. Peak RSS: `ru_maxrss` of the process (`os.wait4`: the largest process of
the tree, not their sum), and the peak of the summed `VmHWM` of its process tree sampled every
0.1 s (psutil); the RSS ratio uses the summed one, since ours runs Lucene in a child JVM. It
overstates ours (each process's own peak counts even when they did not coincide), so
`rss_ratio_coincident` gives beside it the largest summed `VmRSS` of one sample (memory held at
one time; a spike shorter than 0.1 s can be missed). The 1-minute load average is
recorded before every run: this 2-core machine is shared, so re-measure on a quiet machine with
`--quiet-load 1.0` (each run waits, up to `--quiet-wait` seconds, for the load to fall below it).

Corpora (`--corpus` names them; both by default), built once into `benchmarks/out/`:
* `debian`: 100,000 paragraphs of Debian docs and man pages (`benchmarks/debian_corpus.py`);
* `python`: 11,000 Python files of this machine (standard library, then site-packages);
* or a path to any JSONL with `id` and `contents`.

Usage: python benchmarks/bm25_ingest.py [--corpus debian python] [--threads 2] [--repeat 3]
       [--quiet-load 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out
#: Lucene's RAM buffer (MB) on both sides: the bm25 backend's default ``memory_buffer``.
MEMORY_BUFFER = 512


def code_corpus(max_docs: int = 11000) -> Path:
    """Writes (once) the Python files of this machine as JSONL ``{"id", "contents"}``."""
    path = OUT / f"bm25_code_{max_docs}.jsonl"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    count = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for root in roots:
            for file in sorted(root.rglob("*.py")):
                if count >= max_docs:
                    break
                try:
                    text = file.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                if not text.strip():
                    continue
                out.write(json.dumps({"id": str(file.relative_to(root.parent)), "contents": text}) + "\n")
                count += 1
    tmp.rename(path)
    return path


def corpus_path(name: str) -> Path:
    if name == "debian":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import debian_corpus

        path = OUT / "debian_100000.jsonl"
        return path if path.exists() else debian_corpus.build(100_000, path)
    if name == "python":
        return code_corpus()
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"{name}: no such file; use debian, python or a JSONL file with id and contents")
    return path


#: Prints the number of documents in the Lucene index at ``sys.argv[1]`` (the peer's ``-quiet``
#: run logs no counts, and skips a document it cannot index without failing).
_COUNT_DOCS = (
    "import sys\n"
    "from spacerini.java import autoclass, ensure_jvm\n"
    "ensure_jvm()\n"
    "Paths = autoclass('java.nio.file.Paths')\n"
    "directory = autoclass('org.apache.lucene.store.FSDirectory').open(Paths.get(sys.argv[1]))\n"
    "print(autoclass('org.apache.lucene.index.DirectoryReader').open(directory).numDocs())\n"
)


def lucene_docs(index: Path) -> int:
    """Documents in the Lucene index at ``index`` (counted in a child process, not timed)."""
    proc = subprocess.run(
        [sys.executable, "-c", _COUNT_DOCS, str(index)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"counting the documents of {index} failed: {proc.stderr[-2000:]}")
    return int(proc.stdout.split()[-1])


def jvm_flags() -> list[str]:
    """The -X/-XX options of the JVM that indexes for ``spacerini index`` (the bm25 writer's child JVM)."""
    from spacerini.java import jvm_options

    return [flag for flag in jvm_options() if flag.startswith("-X")]


def wait_quiet(limit: float | None, max_wait: float) -> float:
    """Waits (up to ``max_wait`` s) for the 1-minute load average to fall below ``limit``; returns it."""
    start = time.monotonic()
    while limit is not None and os.getloadavg()[0] >= limit and time.monotonic() - start < max_wait:
        time.sleep(5)
    return round(os.getloadavg()[0], 2)


def timed(cmd: list[str], *, cwd: Path | None = None) -> dict[str, Any]:
    """Runs ``cmd``; returns wall seconds, CPU seconds, ``ru_maxrss`` and the tree's peak VmHWM (MB)."""
    import psutil

    load = round(os.getloadavg()[0], 2)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0, 0]  # [summed VmHWM, largest summed VmRSS of one sample]
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                hwm = rss = 0
                for p in procs:
                    with open(f"/proc/{p.pid}/status", encoding="ascii") as fh:
                        status = {k: v for k, _, v in (line.partition(":") for line in fh)}
                    hwm += int(status["VmHWM"].split()[0])
                    rss += int(status["VmRSS"].split()[0])
                peak[0], peak[1] = max(peak[0], hwm), max(peak[1], rss)
            except (psutil.Error, OSError, KeyError, ValueError):
                pass
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} exited {proc.returncode}: {stderr.decode(errors='replace')[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "maxrss_mb": round(usage.ru_maxrss / 1024, 1),
        "tree_hwm_mb": round(peak[0] / 1024, 1),
        "tree_rss_peak_mb": round(peak[1] / 1024, 1),
        "load": load,
    }


def split(corpus: Path, folder: Path, parts: int) -> None:
    folder.mkdir(parents=True)
    handles = [(folder / f"part{i:03d}.jsonl").open("w", encoding="utf-8") for i in range(parts)]
    with corpus.open(encoding="utf-8") as src:
        for i, line in enumerate(src):
            handles[i % parts].write(line)
    for h in handles:
        h.close()


def run_peer(
    corpus: Path, work: Path, threads: int, memory_buffer: int, flags: list[str], *, count: bool = False
) -> dict[str, Any]:
    from spacerini.backends.bm25 import lucene as jl
    from spacerini.java import anserini_jar, java_home

    split(corpus, work / "in", threads)
    args = jl.index_args(
        work / "in",
        work / "index",
        threads=threads,
        language="en",
        pretokenized=False,
        memory_buffer=memory_buffer,
    )
    cmd = [
        str(java_home() / "bin" / "java"),
        *flags,
        "-cp",
        str(anserini_jar()),
        "io.anserini.index.IndexCollection",
    ]
    result = timed([*cmd, *args])
    result["index_mb"] = round(
        sum(p.stat().st_size for p in (work / "index").rglob("*") if p.is_file()) / 1e6, 1
    )
    if count:
        result["docs"] = lucene_docs(work / "index")
    return result


def run_ours(corpus: Path, work: Path, threads: int) -> dict[str, Any]:
    script = Path(sys.executable).with_name("spacerini")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "spacerini"]
    bundle = work / "bundle"
    cmd = [*cli, "index", str(corpus), "--out", str(bundle), "--backends", "bm25", "--threads", str(threads)]
    result = timed(cmd, cwd=ROOT)
    manifest = json.loads((bundle / "spacerini.json").read_text(encoding="utf-8"))
    stats = manifest["backends"]["bm25"]["stats"]
    result.update(
        docs=manifest["counts"]["docs"],
        build_s=manifest["build_seconds"],
        stages_s=stats.get("seconds", {}),
        lucene_mb=round(stats["lucene_bytes"] / 1e6, 1),
        sidecar_mb=round(stats["sidecar_bytes"] / 1e6, 1),
    )
    return result


def docs_in(corpus: Path) -> int:
    """Non-blank lines of ``corpus``.

    Raises:
        SystemExit: Its first line is not a JSON object with ``id`` and ``contents`` (the fields
            Anserini's ``JsonCollection`` reads).
    """
    with corpus.open("rb") as fh:
        first = next((line for line in fh if line.strip()), b"{}")
        try:
            record = json.loads(first)
        except ValueError as exc:
            raise SystemExit(f"{corpus}: not JSON lines ({exc})") from None
        if not isinstance(record, dict) or not {"id", "contents"} <= record.keys():
            raise SystemExit(f"{corpus}:1: no id and contents (what IndexCollection's JsonCollection reads)")
        return 1 + sum(1 for line in fh if line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", nargs="+", default=["debian", "python"], help="debian, python or JSONL paths"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeat", type=int, default=3, help="interleaved (peer, ours) pairs; medians reported"
    )
    parser.add_argument("--quiet-load", type=float, default=None, help="wait for a 1-minute load below this")
    parser.add_argument(
        "--quiet-wait", type=float, default=600.0, help="longest wait for --quiet-load, seconds"
    )
    args = parser.parse_args()

    flags = jvm_flags()
    corpora = {name: corpus_path(name) for name in args.corpus}
    sizes = {}
    for name, path in corpora.items():
        sizes[name] = docs_in(path)  # also warms the file cache
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {"peer": [], "ours": []} for name in corpora}
    for round_ in range(args.repeat):
        for name, path in corpora.items():
            order = ("peer", "ours") if round_ % 2 == 0 else ("ours", "peer")
            for side in order:
                wait_quiet(args.quiet_load, args.quiet_wait)
                work = Path(tempfile.mkdtemp(prefix=f"bm25-ingest-{side}-", dir=OUT))
                try:
                    if side == "peer":
                        result = run_peer(path, work, args.threads, MEMORY_BUFFER, flags, count=round_ == 0)
                    else:
                        result = run_ours(path, work, args.threads)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                runs[name][side].append(result)
                # Both sides must index the same documents (Anserini skips, and logs under -quiet
                # nothing about, a line without "id" or "contents"): else the ratio means nothing.
                done = {s: r[0]["docs"] for s, r in runs[name].items() if r}
                if len(done) == 2 and done["peer"] != done["ours"]:
                    raise SystemExit(
                        f"{path}: IndexCollection indexed {done['peer']:,} documents and spacerini "
                        f"{done['ours']:,} of {sizes[name]:,} lines: use a JSONL with id and contents"
                    )
                print(
                    f"# {name} round {round_ + 1} {side}: {json.dumps(result)}", file=sys.stderr, flush=True
                )

    report: dict[str, Any] = {
        "benchmark": "bm25_ingest",
        "threads": args.threads,
        "repeat": args.repeat,
        "memory_buffer_mb": MEMORY_BUFFER,
        "peer": "java io.anserini.index.IndexCollection (Anserini 1.7.1), own JVM, Spacerini's JVM flags, "
        "JSONL pre-split into one file per thread (not timed)",
        "ours": "spacerini index SOURCE --out B --backends bm25 (CLI process, end to end)",
        "peer_jvm_flags": flags,
        "goal": "docs/s ratio >= 1.0 on both corpora; peak RSS <= 1.5x the peer's",
        "corpora": {},
    }
    for name, path in corpora.items():
        peer, ours = runs[name]["peer"], runs[name]["ours"]

        def med(side: list[dict[str, Any]], key: str) -> float:
            return round(statistics.median(r[key] for r in side), 2)

        docs = ours[-1]["docs"]
        peer_docs = peer[0]["docs"]
        report["corpora"][name] = {
            "path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "docs": docs,
            "source_docs": sizes[name],
            "peer_docs": peer_docs,
            "corpus_mb": round(path.stat().st_size / 1e6, 1),
            "ours_wall_s": med(ours, "wall_s"),
            "peer_wall_s": med(peer, "wall_s"),
            "ratio": round(med(peer, "wall_s") / med(ours, "wall_s"), 3),
            "pair_ratios": [round(p["wall_s"] / o["wall_s"], 3) for p, o in zip(peer, ours, strict=True)],
            "ours_cpu_s": med(ours, "cpu_s"),
            "peer_cpu_s": med(peer, "cpu_s"),
            "cpu_ratio": round(med(peer, "cpu_s") / med(ours, "cpu_s"), 3),
            "ours_peak_rss_mb": med(ours, "maxrss_mb"),
            "peer_peak_rss_mb": med(peer, "maxrss_mb"),
            # Ours is two processes (Python and its indexing JVM): the summed VmHWM of the tree.
            "rss_ratio": round(med(ours, "tree_hwm_mb") / med(peer, "tree_hwm_mb"), 3),
            "ours_tree_hwm_mb": med(ours, "tree_hwm_mb"),
            "peer_tree_hwm_mb": med(peer, "tree_hwm_mb"),
            # The same, counting only memory held at one time (each process's peak need not
            # coincide): the largest summed VmRSS of one 0.1 s sample; it can miss a short spike.
            "rss_ratio_coincident": round(med(ours, "tree_rss_peak_mb") / med(peer, "tree_rss_peak_mb"), 3),
            "ours_tree_rss_peak_mb": med(ours, "tree_rss_peak_mb"),
            "peer_tree_rss_peak_mb": med(peer, "tree_rss_peak_mb"),
            "loads": [[p["load"], o["load"]] for p, o in zip(peer, ours, strict=True)],
            "ours_stages_s_last": ours[-1]["stages_s"],
            "ours_build_s": [o["build_s"] for o in ours],
            "lucene_mb": ours[-1]["lucene_mb"],
            "sidecar_mb": ours[-1]["sidecar_mb"],
            "peer_index_mb": peer[-1]["index_mb"],
            "runs": runs[name],
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
