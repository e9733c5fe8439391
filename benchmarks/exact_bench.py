"""Benchmark of the exact backend: suffix-array build speed and query latency.

Measured in the same run, on the same bytes (Python source on this machine, ~40 MB, or the first
``--mb`` MB of ``--corpus``: any corpus ``spacerini index`` reads, with its ``--format``,
``--id-field`` and ``--fields``):

* build MB/s of ``spacerini.backends.exact.build`` vs raw ``pydivsufsort.divsufsort`` (goal:
  ratio >= 0.8) and vs infini-gram's own indexer (``--token_dtype u8``, raw bytes, 0xFF
  separators: the same scheme), when the ``infini-gram`` package installs into a throwaway
  venv under benchmarks/out/ (it is never installed into the project's venv);
* count p50/p95 and find top-10 p50 latency (goal: count p50 <= 1 ms), and the same for the
  infini-gram engine when it is available; counts are checked to agree.

Prints one JSON line. Usage: ``python benchmarks/exact_bench.py [--mb 40] [--queries 300]
[--corpus PATH [--format FMT] [--id-field NAME] [--fields NAME,...]]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

from spacerini.backends import exact
from spacerini.records import Doc

OUT = Path(__file__).resolve().parent / "out"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out

INFINI_CHILD = r"""
import json, sys, time
from infini_gram.engine import InfiniGramEngine
index_dir, queries_path = sys.argv[1], sys.argv[2]
queries = [q.encode() for q in json.load(open(queries_path, encoding="utf-8"))]
engine = InfiniGramEngine(index_dir=index_dir, eos_token_id=254, vocab_size=255, token_dtype="u8", version=4)
counts, count_ms, find_ms = [], [], []
for q in queries:
    ids = list(q)
    t = time.perf_counter(); r = engine.count(input_ids=ids); count_ms.append((time.perf_counter() - t) * 1e3)
    counts.append(r["count"])
    t = time.perf_counter()
    f = engine.find(input_ids=ids)
    shown = 0
    for s, (lo, hi) in enumerate(f["segment_by_shard"]):
        for rank in range(lo, min(hi, lo + 10 - shown)):
            engine.get_doc_by_rank(s=s, rank=rank, max_disp_len=len(ids) + 160)
            shown += 1
    find_ms.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"counts": counts, "count_ms": count_ms, "find_ms": find_ms}))
"""


def collect_docs(target_bytes: int) -> list[Doc]:
    """Reads .py files of the standard library and installed packages, in path order."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    docs: list[Doc] = []
    total = 0
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            docs.append(Doc(id=str(path), text=text))
            total += len(text.encode("utf-8"))
            if total >= target_bytes:
                return docs
    return docs


def add_corpus_args(parser: argparse.ArgumentParser) -> None:
    """``--corpus`` and the options that say how to read it (those of ``spacerini index``)."""
    from bench_queries import add_corpus_args as add

    add(parser, "any corpus spacerini index reads (JSONL, Parquet, CSV, a folder, hf:NAME) instead of this machine's Python files")


def docs_for(args: argparse.Namespace) -> list[Doc]:
    """``args.mb`` MB of ``--corpus``, or of this machine's Python files without it."""
    if args.corpus is None:
        return collect_docs(int(args.mb * 1e6))
    from bench_queries import corpus_docs

    return corpus_docs(args.corpus, int(args.mb * 1e6), format=args.format, id_field=args.id_field, fields=args.fields)


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 4)


def sample_queries(docs: list[Doc], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    queries = []
    if not any(len(d.text) >= 80 for d in docs):
        raise SystemExit("no document of 80 characters or more to cut queries from: use a corpus of longer texts")
    while len(queries) < n:
        text = rng.choice(docs).text
        if len(text) < 80:
            continue
        i = rng.randrange(len(text) - 70)
        q = text[i : i + rng.randint(8, 64)]
        if q.strip():
            queries.append(q)
    return queries


def infini_venv() -> tuple[Path | None, str]:
    """Returns the python of a throwaway venv with infini-gram, or None and why not."""
    venv = OUT / "infini_venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import infini_gram.engine, numpy"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "infini-gram", "numpy", "tqdm"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        subprocess.run(check, check=True, capture_output=True, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"infini-gram could not be installed in a throwaway venv: {type(exc).__name__}"
    return python, ""


def run_infini(python: Path, docs_bytes: list[bytes], queries: list[str], cpus: int) -> dict:
    """Indexes the same bytes with infini-gram's indexer and times its engine."""
    index_dir = OUT / f"infini_index_{cpus}"
    shutil.rmtree(index_dir, ignore_errors=True)
    index_dir.mkdir(parents=True)
    data_dir = OUT / "infini_data"
    data_dir.mkdir(parents=True, exist_ok=True)
    # infini-gram's step 1 (tokenize) needs transformers even for raw bytes; it is skipped when
    # its outputs exist, so write them here exactly as it would: 0xFF before each doc.
    offsets = []
    pos = 0
    with (index_dir / "tokenized.0").open("wb") as f:
        for b in docs_bytes:
            offsets.append(pos)
            f.write(b"\xff" + b)
            pos += len(b) + 1
    np.asarray(offsets, dtype=np.uint64).tofile(index_dir / "offset.0")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimit = hard if hard != resource.RLIM_INFINITY else 1048576
    cmd = [
        str(python), "-m", "infini_gram.indexing", "--data_dir", str(data_dir), "--save_dir", str(index_dir),
        "--token_dtype", "u8", "--cpus", str(cpus), "--mem", "8", "--ulimit", str(ulimit),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not (index_dir / "table.0").exists():
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    qpath = OUT / "infini_queries.json"
    qpath.write_text(json.dumps(queries), encoding="utf-8")
    q = subprocess.run(
        [str(python), "-c", INFINI_CHILD, str(index_dir), str(qpath)], capture_output=True, text=True, timeout=600
    )
    if q.returncode != 0:
        return {"seconds": seconds, "error": q.stderr.strip().splitlines()[-1:]}
    return {"seconds": seconds, **json.loads(q.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=40.0, help="corpus size in MB")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2, help="build runs of each kind (fastest kept)")
    parser.add_argument("--no-infini", action="store_true", help="skip the infini-gram peer")
    add_corpus_args(parser)
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    docs = docs_for(args)
    docs_bytes = [d.text.encode("utf-8") for d in docs]
    n_bytes = sum(len(b) for b in docs_bytes)

    # Raw pydivsufsort on the same bytes (the concatenation time is not counted) and our build,
    # alternated and repeated; the fastest run of each is kept (the machine is shared).
    from pydivsufsort import divsufsort

    folder = OUT / "exact_index"
    raw_runs, ours_runs = [], []
    for _ in range(args.repeats):
        buf = bytearray()
        for b in docs_bytes:
            buf += b
            buf.append(0xFF)
        t0 = time.perf_counter()
        divsufsort(buf)
        raw_runs.append(time.perf_counter() - t0)
        del buf
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        report = exact.build(lambda: iter(docs), folder, progress=False)
        ours_runs.append(time.perf_counter() - t0)
    raw_seconds, ours_seconds = min(raw_runs), min(ours_runs)

    queries = sample_queries(docs, args.queries, seed=1)
    searcher = exact.open(folder, report.to_dict())
    for q in queries[:20]:  # warm the page cache
        searcher.count(q)
    count_ms, find_ms, search_ms, counts = [], [], [], []
    for q in queries:
        t = time.perf_counter()
        counts.append(searcher.count(q))
        count_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        searcher.find(q, k=10)
        find_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        searcher.search(q, k=10)
        search_ms.append((time.perf_counter() - t) * 1e3)
    rng = random.Random(2)
    trace_ms = []
    for _ in range(20):
        a, b = rng.sample(queries, 2)
        text = a + " ¤¤ noise ¤¤ " + b
        t = time.perf_counter()
        searcher.longest_matches(text, min_len=8)
        trace_ms.append((time.perf_counter() - t) * 1e3)
    searcher.close()

    result = {
        "bench": "exact",
        "corpus": args.corpus or "python files of this machine",
        "corpus_docs": len(docs),
        "corpus_mb": round(n_bytes / 1e6, 2),
        "shards": report.stats["shards"],
        "build_mb_s": round(n_bytes / 1e6 / ours_seconds, 2),
        "raw_divsufsort_mb_s": round(n_bytes / 1e6 / raw_seconds, 2),
        "build_ratio_vs_raw": round(raw_seconds / ours_seconds, 3),
        "count_p50_ms": pct(count_ms, 50),
        "count_p95_ms": pct(count_ms, 95),
        "find10_p50_ms": pct(find_ms, 50),
        "find10_p95_ms": pct(find_ms, 95),
        "search10_p50_ms": pct(search_ms, 50),
        "longest_matches_p50_ms": pct(trace_ms, 50),
        "queries": len(queries),
        "median_count": statistics.median(counts),
    }

    if args.no_infini:
        result["infini_gram"] = "skipped (--no-infini)"
    else:
        python, why = infini_venv()
        if python is None:
            result["infini_gram"] = f"skipped: {why}"
        else:
            for cpus in sorted({1, os.cpu_count() or 1}):
                peer = run_infini(python, docs_bytes, queries, cpus)
                if "seconds" not in peer:
                    result[f"infini_gram_cpus{cpus}"] = f"failed: {peer['error']}"
                    continue
                entry = {
                    "build_mb_s": round(n_bytes / 1e6 / peer["seconds"], 2),
                    "ours_build_ratio": round(peer["seconds"] / ours_seconds, 3),
                    "note": "infini-gram time includes its Python start-up and writing table.0",
                }
                if "counts" not in peer:
                    entry["engine"] = f"failed: {peer['error']}"
                else:
                    entry |= {
                        "count_p50_ms": pct(peer["count_ms"], 50),
                        "count_p95_ms": pct(peer["count_ms"], 95),
                        "find10_p50_ms": pct(peer["find_ms"], 50),
                        "counts_agree": peer["counts"] == counts,
                        "ours_count_p50_ratio": round(pct(peer["count_ms"], 50) / max(pct(count_ms, 50), 1e-9), 3),
                    }
                result[f"infini_gram_cpus{cpus}"] = entry
    print(json.dumps(result))


if __name__ == "__main__":
    main()
