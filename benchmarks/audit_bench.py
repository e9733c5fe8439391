"""analyze and contamination against plain-Python peers, on one corpus, in one run.

Corpus: real text (paragraphs of the Debian docs and man pages, ``debian_corpus.py``) and Python
source (the standard library, ``preprocess_bench.stdlib_docs``), ``--mb`` MB of each, built into a
bundle with the exact backend.

* analyze: MB/s against a plain ``collections.Counter`` of word unigrams, bigrams and trigrams
  over the same texts (already in memory: the peer does not read the docstore; one thread, as
  Python runs it). The peer does n-grams only, so two comparisons are printed: the n-gram part
  (``NgramCounter`` over the same in-memory texts, on one thread, its default, and on two), and
  the report (``spacerini.audit.analyze`` reading the bundle:
  with ``skip=pii,near-dup``, then adding MinHash near-duplicates, then every section). The
  top-20 of each n must be equal to ``Counter.most_common``.
* contamination: examples/s of ``spacerini.audit.contamination`` (13-gram overlap and longest
  match on the suffix array) against a brute-force Python set of every word 13-gram of the corpus
  (its build time included; lookups alone shown too), on planted examples: copied passages,
  paraphrases and fresh text (paragraphs left out of the corpus). Agreement of the two on
  ``contaminated`` is printed.

Rounds interleave ours and the peer; figures are medians of ``--rounds``. The tables are printed,
then the same figures as one JSON line (the last line).

Any other corpus: ``--corpus PATH`` (whatever ``spacerini index`` reads, with its ``--format``,
``--id-field`` and ``--fields``; ``2 * --mb`` MB of it, and up to 2,000 documents after those held
out).

Usage: python benchmarks/audit_bench.py [--mb 10] [--examples 300] [--rounds 3] [--only analyze|contamination]
       [--corpus PATH [--format FMT] [--id-field NAME] [--fields NAME,...]]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_queries import add_corpus_args  # noqa: E402
from debian_corpus import iter_docs as debian_docs  # noqa: E402
from preprocess_bench import stdlib_docs  # noqa: E402

from spacerini.audit.analyze import analyze  # noqa: E402
from spacerini.audit.contamination import NGRAM, contamination  # noqa: E402
from spacerini.audit.ngrams import WORD, NgramCounter  # noqa: E402
from spacerini.bundle import build_bundle  # noqa: E402
from spacerini.records import Doc  # noqa: E402


def corpus(mb: float) -> tuple[list[Doc], list[str]]:
    """``mb`` MB of Debian text and ``mb`` MB of Python source; plus held-out paragraphs."""
    limit = int(mb * 1e6)
    docs: list[Doc] = []
    size = 0
    stream = debian_docs()
    for rec in stream:
        docs.append(
            Doc(str(rec["id"]), str(rec["contents"]), meta={"language": "en", "owner": str(rec["title"])})
        )
        size += len(str(rec["contents"]).encode())
        if size >= limit:
            break
    held_out = [str(r["contents"]) for r in itertools.islice(stream, 2000)]
    docs.extend(stdlib_docs(limit))
    return docs, held_out


def peer_counter(texts: list[str]) -> dict[int, Counter]:
    c = {1: Counter(), 2: Counter(), 3: Counter()}
    for text in texts:
        t = WORD.findall(text)
        c[1].update(t)
        c[2].update(zip(t, t[1:], strict=False))
        c[3].update(zip(t, t[1:], t[2:], strict=False))
    return c


def ours_counter(texts: list[str], threads: int) -> NgramCounter:
    counter = NgramCounter(threads=threads)
    for i in range(0, len(texts), 1024):
        chunk = [t.encode("utf-8", "surrogatepass") for t in texts[i : i + 1024]]
        offsets = np.zeros(len(chunk) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in chunk], out=offsets[1:])
        counter.add(np.frombuffer(b"".join(chunk), dtype=np.uint8), offsets)
    return counter


def examples(docs: list[Doc], held_out: list[str], n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    long_docs = [d.text for d in docs if len(WORD.findall(d.text)) >= 60]
    if not long_docs:
        raise SystemExit("no document of 60 words or more to copy examples from: use a corpus of longer texts")
    for i in range(n):
        kind = ("copy", "para", "fresh")[i % 3]
        if kind == "fresh":
            text = held_out[i % len(held_out)]
        else:
            src = rng.choice(long_docs)
            spans = [m.span() for m in WORD.finditer(src)]
            a = rng.randrange(0, len(spans) - 50)
            text = src[spans[a][0] : spans[a + 49][1]]
            if kind == "para":
                words = text.split()
                text = " ".join(w.upper() + "ish" if j % 4 == 1 else w for j, w in enumerate(words))
        out.append({"id": f"{kind}-{i}", "text": text})
    return out


def peer_ngram_set(texts: list[str]) -> set[tuple[str, ...]]:
    grams: set[tuple[str, ...]] = set()
    for text in texts:
        t = WORD.findall(text)
        grams.update(zip(*(t[j:] for j in range(NGRAM)), strict=False))
    return grams


def peer_overlap(grams: set[tuple[str, ...]], text: str) -> float:
    t = WORD.findall(text)
    if not t:
        return 0.0
    if len(t) < NGRAM:
        return 0.0  # the set holds only full n-grams
    mine = list(zip(*(t[j:] for j in range(NGRAM)), strict=False))
    return sum(g in grams for g in mine) / len(mine)


def corpus_from(
    source: str, mb: float, *, format: str | None = None, id_field: str | None = None, fields: str | None = None
) -> tuple[list[Doc], list[str]]:
    """Up to ``2 * mb`` MB of any corpus ``spacerini index`` reads (a JSONL/Parquet/CSV file, a
    folder, ``hf:NAME``; ``format``, ``id_field`` and ``fields`` as its ``--format``, ``--id-field``
    and ``--fields``), and the texts of up to 2,000 documents after those as held-out text (the
    last twentieth of a smaller corpus).

    Raises:
        SystemExit: The corpus cannot be read (the library's error, on one line), or is too small.
    """
    from spacerini.corpus import load_corpus
    from spacerini.errors import SpaceriniError

    limit = int(2 * mb * 1e6)
    docs: list[Doc] = []
    held_out: list[str] = []
    size = 0
    try:
        for doc in load_corpus(source, format=format, id_field=id_field, fields=fields, progress=False):
            if size < limit:
                docs.append(doc)
                size += len(doc.text.encode("utf-8", "surrogatepass"))
            elif len(held_out) < 2000:
                held_out.append(doc.text)
            else:
                break
    except SpaceriniError as exc:
        raise SystemExit(str(exc)) from None
    if not held_out:
        cut = max(1, len(docs) // 20)
        held_out = [d.text for d in docs[-cut:]]
        docs = docs[:-cut]
    if not docs:
        raise SystemExit(f"{source}: too few documents to hold some out")
    return docs, held_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=10.0, help="MB of text and MB of Python source")
    add_corpus_args(ap, "any corpus spacerini reads (JSONL, Parquet, CSV, a folder, hf:NAME) instead of Debian + Python: 2 x --mb MB of it")
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("analyze", "contamination"), default=None, help="run one part")
    args = ap.parse_args()
    os.environ.setdefault("SPACERINI_NO_PROGRESS", "1")
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores")
    if args.corpus is None:
        docs, held_out = corpus(args.mb)
    else:
        docs, held_out = corpus_from(
            args.corpus, args.mb, format=args.format, id_field=args.id_field, fields=args.fields
        )
    texts = [d.text for d in docs]
    mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
    name = "Debian text + Python source" if args.corpus is None else args.corpus
    print(f"corpus: {len(docs):,} documents, {mb:.1f} MB ({name}); {len(held_out):,} held-out texts")
    summary: dict[str, object] = {"benchmark": "audit", "corpus": name, "docs": len(docs), "mb": round(mb, 2),
                                  "rounds": args.rounds}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bundle = build_bundle(docs, Path(tmp) / "b", backends=["exact"], progress=False)
        print(f"bundle (exact) built in {time.perf_counter() - t0:.1f} s")

        # -- analyze -----------------------------------------------------------------------
        if args.only != "contamination":
            summary["analyze"] = analyze_part(bundle, texts, docs, mb, args.rounds)

        # -- contamination -----------------------------------------------------------------
        if args.only != "analyze":
            summary["contamination"] = contamination_part(bundle, texts, docs, held_out, args.examples, args.rounds)
        bundle.close()
    print(f"load average after: {os.getloadavg()}")
    summary["load_after"] = os.getloadavg()
    print(json.dumps(summary))  # one JSON line, for run_all.py


def analyze_part(bundle, texts: list[str], docs: list[Doc], mb: float, rounds: int) -> dict[str, object]:
    runs = {
        "peer": lambda: peer_counter(texts),
        "ngrams": lambda: ours_counter(texts, threads=1).top(20),
        "ngrams_2": lambda: ours_counter(texts, threads=2).top(20),
        "analyze_core": lambda: analyze(bundle, skip="pii,near-dup", progress=False),
        "analyze_near": lambda: analyze(bundle, skip="pii", progress=False),
        "analyze_all": lambda: analyze(bundle, progress=False),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    out: dict[str, object] = {}
    for r in range(rounds):
        keys = list(runs)
        keys = keys[r % len(keys) :] + keys[: r % len(keys)]  # rotate the order: load drifts
        for key in keys:
            c0, t0 = time.process_time(), time.perf_counter()
            out[key] = runs[key]()
            times[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)  # every thread of the process
    ref = out["peer"]
    for n in (1, 2, 3):
        want = [(" ".join(g) if n > 1 else g, c) for g, c in ref[n].most_common(20)]
        for key in ("ngrams", "ngrams_2"):
            assert [(g.ngram, g.count) for g in out[key][n]] == want, (key, n)
        for key in ("analyze_core", "analyze_near", "analyze_all"):
            assert [(r["ngram"], r["count"]) for r in out[key].ngrams[str(n)]] == want, (key, n)
    assert out["analyze_core"].docs == out["analyze_all"].docs == len(docs)
    peer = statistics.median(times["peer"])
    print("\nanalyze (top-20 n-grams n=1..3 equal to Counter.most_common: yes)")
    print(
        "wall: MB/s and its ratio to the peer's; CPU: seconds of CPU time, all threads (ratio: peer / ours)"
    )
    print(f"{'what':<56}{'MB/s (median)':>14}{'runs':>20}{'vs Counter':>11}{'CPU s':>8}{'CPU vs':>8}")
    summary: dict[str, object] = {}
    for key, label in (
        ("peer", "plain Counter, n = 1..3 (peer, one thread)"),
        ("ngrams", "n-gram part: NgramCounter (threads=1, the default)"),
        ("ngrams_2", "n-gram part: NgramCounter (threads=2)"),
        ("analyze_core", "report: analyze, skip pii,near-dup"),
        ("analyze_near", "report: analyze, skip pii (adds MinHash near-dups)"),
        ("analyze_all", "report: analyze, all sections (adds PII per kind)"),
    ):
        med = statistics.median(times[key])
        runs_s = ", ".join(f"{mb / t:.1f}" for t in times[key])
        c = statistics.median(cpu[key])
        print(
            f"{label:<56}{mb / med:>14.1f}{runs_s:>20}{peer / med:>10.1f}x{c:>8.2f}"
            f"{statistics.median(cpu['peer']) / c:>7.1f}x"
        )
        summary[key] = {"mb_s": round(mb / med, 2), "vs_counter": round(peer / med, 2),
                        "cpu_s": round(c, 3), "cpu_vs_counter": round(statistics.median(cpu["peer"]) / c, 2)}  # fmt: skip
    summary["top20_equal_counter"] = True  # asserted above
    return summary


def contamination_part(
    bundle, texts: list[str], docs: list[Doc], held_out: list[str], n: int, rounds: int
) -> dict[str, object]:
    tests = examples(docs, held_out, n)
    ct: dict[str, list[float]] = {"ours": [], "peer_total": [], "peer_lookup": []}
    report = None
    overlaps: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        report = contamination(bundle, tests, progress=False)
        ct["ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        grams = peer_ngram_set(texts)
        t1 = time.perf_counter()
        overlaps = [peer_overlap(grams, e["text"]) for e in tests]
        t2 = time.perf_counter()
        ct["peer_total"].append(t2 - t0)
        ct["peer_lookup"].append(t2 - t1)
        del grams
    assert report is not None
    ours_dirty = [r.contaminated for r in report.examples]
    peer_dirty = [o >= 0.5 for o in overlaps]
    agree = sum(a == b for a, b in zip(ours_dirty, peer_dirty, strict=True)) / len(tests)
    by_kind = Counter(
        (e["id"].split("-")[0], r.contaminated) for e, r in zip(tests, report.examples, strict=True)
    )
    print(f"\ncontamination: {len(tests)} examples (copied / paraphrased / fresh), {NGRAM}-grams")
    print(
        f"flags by kind: {dict(sorted(by_kind.items()))}; agreement with the n-gram set: {100 * agree:.1f}%"
    )
    ours = statistics.median(ct["ours"])
    print(f"{'what':<52}{'examples/s':>12}{'runs (s)':>26}")
    for key, label in (
        ("ours", "spacerini contamination (suffix array)"),
        ("peer_total", "Python 13-gram set, build + lookups (peer)"),
        ("peer_lookup", "Python 13-gram set, lookups only (set prebuilt)"),
    ):
        med = statistics.median(ct[key])
        runs = ", ".join(f"{t:.2f}" for t in ct[key])
        print(f"{label:<52}{len(tests) / med:>12.1f}{runs:>26}")
    print(f"ours vs peer (build + lookups): {statistics.median(ct['peer_total']) / ours:.1f}x")
    return {
        "examples": len(tests), "agreement": round(agree, 4),
        **{f"{key}_examples_s": round(len(tests) / statistics.median(v), 1) for key, v in ct.items()},
        "ours_vs_peer_total": round(statistics.median(ct["peer_total"]) / ours, 2),
    }  # fmt: skip


if __name__ == "__main__":
    main()
