"""Runs every benchmark script in this folder and appends their JSON lines to benchmarks/out/results.jsonl.

With ``--corpus PATH``, runs only the scripts that take an outside corpus, each on PATH with its own
flag (``CORPUS_FLAGS``); ``bm25_search``, ``bm25_ingest`` and ``api_latency`` need a JSONL with
``id`` and ``contents`` (Anserini's ``JsonCollection``), the others read whatever ``spacerini
index`` reads (``--format``, ``--id-field`` and ``--fields`` are passed to them). ``scale_bench`` builds 1, 2 and 5 GB by default: name the scripts to run.

Exits 1 when a script failed (each failure's stderr tail is printed).

Usage: .venv/bin/python benchmarks/run_all.py [--corpus PATH [--format FMT] [--id-field NAME]
       [--fields NAME,...]] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The arguments that give each script an outside corpus (the path follows them).
CORPUS_FLAGS: dict[str, list[str]] = {
    "api_latency": ["--corpus"],
    "audit_bench": ["--corpus"],
    "bloom_bench": ["--corpus"],
    "bm25_ingest": ["--corpus"],
    "bm25_search": ["--corpora"],
    "bm25_shards_bench": ["--corpus"],
    "corpora_bench": ["--corpus"],
    "dense_bench": ["--parts", "encoding", "--encode-corpus"],
    "exact_bench": ["--corpus"],
    "preprocess_bench": ["--corpus"],
    "scale_bench": ["--corpus"],
}


#: The scripts that read ``--corpus`` as ``spacerini index`` does, with its ``--format``,
#: ``--id-field`` and ``--fields`` (the others read a JSONL with ``id`` and ``contents``).
READS_ANY = {
    "audit_bench", "bloom_bench", "bm25_shards_bench", "corpora_bench", "dense_bench", "exact_bench",
    "preprocess_bench", "scale_bench",
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="scripts to run (file names without .py); all by default")
    parser.add_argument("--corpus", default=None, help="run the scripts that take a corpus on this one")
    parser.add_argument("--format", default=None, help="--corpus's format, as for spacerini index (e.g. code)")
    parser.add_argument("--id-field", default=None, help="--corpus's id field")
    parser.add_argument("--fields", default=None, help="--corpus's contents fields, comma-separated")
    args = parser.parse_args()
    wanted = set(args.names)
    if args.corpus is not None and not Path(args.corpus).exists() and ":" not in args.corpus:
        raise SystemExit(f"{args.corpus}: no such file or folder")
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    results = out_dir / "results.jsonl"
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in {"run_all.py", "__init__.py"} and not p.name.startswith("_"))
    failed: list[str] = []
    for script in scripts:
        if wanted and script.stem not in wanted:
            continue
        extra: list[str] = []
        if args.corpus is not None:
            if script.stem not in CORPUS_FLAGS:
                if wanted:
                    print(f"== {script.name}: takes no outside corpus, not run", file=sys.stderr, flush=True)
                continue
            extra = [*CORPUS_FLAGS[script.stem], args.corpus]
            if script.stem in READS_ANY:
                for flag, value in (("--format", args.format), ("--id-field", args.id_field), ("--fields", args.fields)):
                    extra += [flag, value] if value else []
        print(f"== {script.name} {' '.join(extra)}".rstrip(), file=sys.stderr, flush=True)
        started = time.time()
        proc = subprocess.run([sys.executable, str(script), *extra], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            failed.append(script.stem)
            continue
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        with results.open("a") as fh:
            for line in lines:
                record = json.loads(line)
                record["at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                record["wall_s"] = round(time.time() - started, 1)
                if args.corpus is not None:
                    record.setdefault("corpus_arg", args.corpus)
                fh.write(json.dumps(record) + "\n")
                print(line)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
