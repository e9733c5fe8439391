"""Benchmark of the bloom membership sketch with Data Portraits' parameters (50-char n-grams,
stride 50, false-positive rate 0.001) on Python source from this machine (~40 MB), or on the
first ``--mb`` MB of ``--corpus`` (any corpus ``spacerini index`` reads, with its ``--format``,
``--id-field`` and ``--fields``).

Measured in the same run:

* lookups/s of ``BloomSearcher.member`` (n-gram windows checked per second, hashing included;
  goal >= 1,000,000) vs raw rbloom lookups of the same keys: (a) the same precomputed 64-bit
  hashes, (b) the same n-gram strings with a blake2b ``hash_func`` (the stable hashing rbloom's
  README shows for saved filters);
* bits per stored n-gram vs the optimum ``-ln p / ln^2 2``;
* measured false-positive rate on 1,000,000 random n-grams vs the configured rate;
* sketch size as a share of the corpus vs Data Portraits' published ~3% overhead.

Prints one JSON line. Usage: ``python benchmarks/bloom_bench.py [--mb 40]
[--corpus PATH [--format FMT] [--id-field NAME] [--fields NAME,...]]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exact_bench import add_corpus_args, docs_for  # noqa: E402

from spacerini.backends import bloom  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out


def blake_hash(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=16).digest(), "little", signed=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=40.0, help="corpus size in MB")
    parser.add_argument("--fp-rate", type=float, default=0.001)
    parser.add_argument("--width", type=int, default=50)
    add_corpus_args(parser)
    args = parser.parse_args()

    from rbloom import Bloom

    OUT.mkdir(parents=True, exist_ok=True)
    docs = docs_for(args)
    n_bytes = sum(len(d.text.encode("utf-8")) for d in docs)
    folder = OUT / "bloom_index"
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    report = bloom.build(lambda: iter(docs), folder, progress=False, width=args.width, fp_rate=args.fp_rate)
    build_seconds = time.perf_counter() - t0
    searcher = bloom.open(folder, report.to_dict())
    width = searcher.width

    # Queries: 2,000 excerpts of 500 characters (about a million windows).
    rng = random.Random(1)
    long_docs = [d.text for d in docs if len(d.text) > 600]
    queries = []
    if long_docs:
        for _ in range(2000):
            t = rng.choice(long_docs)
            i = rng.randrange(len(t) - 500)
            queries.append(t[i : i + 500])
    else:  # a corpus of short texts: whole documents that hold a window at least
        short = [d.text for d in docs if len(d.text) >= args.width]
        if not short:
            raise SystemExit(f"no document of {args.width} characters or more: use a corpus of longer texts")
        queries = [rng.choice(short) for _ in range(2000)]
    searcher.member(queries[0])
    t0 = time.perf_counter()
    checked = found = 0
    coverage = []
    for q in queries:
        r = searcher.member(q)
        checked += r.ngrams_checked
        found += r.ngrams_found
        coverage.append(r.coverage)
    member_seconds = time.perf_counter() - t0

    # Raw rbloom on the same keys.
    hashes = [bloom.ngram_hashes(q, width).tolist() for q in queries]
    raw_int = searcher.bloom
    contains = raw_int.__contains__
    t0 = time.perf_counter()
    raw_found = sum(sum(map(contains, h)) for h in hashes)
    raw_int_seconds = time.perf_counter() - t0

    strings = [q[i : i + width] for q in queries[:400] for i in range(len(q) - width + 1)]
    str_bloom = Bloom(report.params["items"], args.fp_rate, hash_func=blake_hash)
    str_contains = str_bloom.__contains__
    t0 = time.perf_counter()
    sum(map(str_contains, strings))
    raw_str_seconds = time.perf_counter() - t0

    # False positives: windows of a random CJK text cannot be in a corpus of Python source (nor,
    # 50 random characters long, in any natural text).
    codes = np.random.default_rng(7).integers(0x4E00, 0x9FFF, size=1_000_000 + width - 1)
    noise = "".join(map(chr, codes.tolist()))
    fp = searcher.member(noise)
    measured_fp = fp.ngrams_found / fp.ngrams_checked

    bits = report.params["bits"]
    items = report.params["items"]
    result = {
        "bench": "bloom",
        "corpus": args.corpus or "python files of this machine",
        "corpus_docs": len(docs),
        "corpus_mb": round(n_bytes / 1e6, 2),
        "width": width,
        "stride": searcher.stride,
        "items": items,
        "build_seconds": round(build_seconds, 2),
        "build_mb_s": round(n_bytes / 1e6 / build_seconds, 2),
        "lookups_per_s": round(checked / member_seconds),
        "raw_rbloom_int_lookups_per_s": round(checked / raw_int_seconds),
        "raw_rbloom_blake2b_str_lookups_per_s": round(len(strings) / raw_str_seconds),
        "ratio_vs_raw_int": round((checked / member_seconds) / (checked / raw_int_seconds), 3),
        "ratio_vs_raw_blake2b_str": round((checked / member_seconds) / (len(strings) / raw_str_seconds), 3),
        "raw_found_agrees": raw_found == found,
        "excerpt_coverage_mean": round(float(np.mean(coverage)), 4),
        "bits_per_ngram": round(bits / items, 3),
        "optimal_bits_per_ngram": round(-math.log(args.fp_rate) / math.log(2) ** 2, 3),
        "configured_fp_rate": args.fp_rate,
        "measured_fp_rate": round(measured_fp, 6),
        "fp_ngrams_tested": fp.ngrams_checked,
        "sketch_bytes": bits // 8,
        "overhead_pct_of_corpus": round(100 * bits / 8 / n_bytes, 2),
        "data_portraits_overhead_pct": 3.0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
