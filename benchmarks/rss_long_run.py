"""A long run of searches with snippets: does a server's RSS stay flat, with and without the
memory trimmer (``spacerini.memory.start_trimming``, which ``spacerini serve`` starts)?

Builds (once) a bm25 bundle of the first ``--docs`` paragraphs of the Debian corpus
(``debian_corpus.py``), then runs, in a fresh process per mode, ``--warm`` searches and
``--blocks`` blocks of ``--block`` ``Bundle.search(k=10)`` calls with snippets. Each query is 1-5
words from the corpus plus a number never seen before (a server sees new terms all the time).
After each block the process runs ``gc.collect()`` and prints its RSS against the RSS after the
warm-up. Modes: ``plain`` (no trimmer) and ``trimmed`` (the trimmer every ``--interval`` s).

Usage: python benchmarks/rss_long_run.py [--docs 5000] [--blocks 16] [--block 5000] [--interval 30]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "rss_long_run"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out


def bundle_path(docs: int) -> Path:
    sys.path.insert(0, str(HERE))
    import debian_corpus

    from spacerini.bundle import build_bundle

    out = OUT / f"debian_{docs}"
    if not (out / "spacerini.json").exists():
        OUT.mkdir(parents=True, exist_ok=True)
        source = debian_corpus.build(100_000)
        subset = OUT / f"debian_{docs}.jsonl"
        with source.open(encoding="utf-8") as src, subset.open("w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= docs:
                    break
                dst.write(line)
        build_bundle(subset, out, backends=["bm25"], progress=False)
    return out


def child(args: argparse.Namespace) -> None:
    import psutil

    from spacerini.bundle import open_bundle

    bundle = open_bundle(args.bundle)
    if args.mode == "trimmed":
        from spacerini.memory import start_trimming

        start_trimming(args.interval)
    rng = random.Random(0)
    word = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,}")
    texts = [d.text[:3000] for _, d in zip(range(2000), bundle.iter_docs(), strict=False)]
    vocab = sorted({w for t in texts for w in word.findall(t)})

    def query() -> str:
        words = [rng.choice(vocab) for _ in range(rng.randint(1, 5))]
        return " ".join(words) + f" {rng.randrange(10**9)}"

    proc = psutil.Process()
    for _ in range(args.warm):
        bundle.search(query(), k=10)
    gc.collect()
    base = proc.memory_info().rss
    growth = []
    for _ in range(args.blocks):
        for _ in range(args.block):
            bundle.search(query(), k=10)
        gc.collect()
        growth.append(round((proc.memory_info().rss - base) / base * 100, 2))
    print(json.dumps({"mode": args.mode, "base_mb": round(base / 2**20, 1), "growth_pct": growth}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--block", type=int, default=5000)
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--mode", choices=("plain", "trimmed"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bundle", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        child(args)
        return
    bundle = bundle_path(args.docs)
    print(f"load average before: {os.getloadavg()}")
    for mode in ("plain", "trimmed"):
        cmd = [sys.executable, __file__, "--mode", mode, "--bundle", str(bundle), "--blocks", str(args.blocks),
               "--block", str(args.block), "--warm", str(args.warm), "--interval", str(args.interval)]  # fmt: skip
        subprocess.run(cmd, check=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
