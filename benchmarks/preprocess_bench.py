"""Benchmark of the preprocess steps on Python standard-library source (~20 MB).

Measured in the same run:

* MB/s of each step (dedup, near-dedup, pii, licence, quality, language, optout) over the same
  documents (held in memory so that reading files is not timed);
* near-dedup throughput against datasketch used directly on the same shingles with the same
  ``num_perm`` and threshold: a MinHash per document (``update_batch`` on the encoded shingles,
  and ``MinHash.generator``, the faster of the two is the peer) and ``MinHashLSH`` query, then
  insert when nothing was found. Goal: ratio >= 0.9. The removed sets are compared too;
* PII precision/recall/F1 per kind on ``tests/data/preprocess_pii_labelled.jsonl``.

Any other corpus: ``--corpus PATH`` (whatever ``spacerini index`` reads, with its ``--format``,
``--id-field`` and ``--fields``; its first ``--mb`` MB). The language and opt-out steps keep their
options (Python; owners ``email``, ``json``), so on another corpus only their speed is telling.

Prints one JSON line. Usage: ``python benchmarks/preprocess_bench.py [--mb 20]
[--corpus PATH [--format FMT] [--id-field NAME] [--fields NAME,...]]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spacerini.preprocess import make_steps  # noqa: E402
from spacerini.preprocess.dedup import DEFAULT_NGRAM, DEFAULT_NUM_PERM, DEFAULT_THRESHOLD, shingles  # noqa: E402
from spacerini.preprocess.pii import score_labelled  # noqa: E402
from spacerini.records import Doc  # noqa: E402

LABELLED = ROOT / "tests" / "data" / "preprocess_pii_labelled.jsonl"


def stdlib_sources() -> Iterator[tuple[str, str]]:
    """(path relative to the stdlib, text) of this interpreter's standard-library .py files, sorted
    by path, tests included, unreadable ones skipped: the Python-source corpus of the benchmarks."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield path.relative_to(root).as_posix(), text


def stdlib_docs(limit_chars: int) -> list[Doc]:
    """Reads standard-library .py files (see :func:`stdlib_sources`) up to ``limit_chars`` characters."""
    docs: list[Doc] = []
    total = 0
    for rel, text in stdlib_sources():
        meta = {"path": rel, "language": "Python", "licence": "PSF-2.0", "owner": rel.split("/", 1)[0]}
        docs.append(Doc(rel, text, meta=meta))
        total += len(text)
        if total >= limit_chars:
            break
    return docs


def peer_near_dedup(docs: list[Doc], *, generator: bool) -> tuple[float, set[str]]:
    """datasketch directly: MinHash of the same shingles, MinHashLSH query then insert."""
    from datasketch import MinHash, MinHashLSH

    started = time.perf_counter()
    lsh = MinHashLSH(threshold=DEFAULT_THRESHOLD, num_perm=DEFAULT_NUM_PERM)
    removed: set[str] = set()
    encoded = ([s.encode("utf-8") for s in shingles(d.text, DEFAULT_NGRAM)] for d in docs)
    if generator:
        sketches = MinHash.generator(encoded, num_perm=DEFAULT_NUM_PERM)
    else:
        sketches = (_one(MinHash, values) for values in encoded)
    for doc, sketch in zip(docs, sketches, strict=True):
        if len(sketch.hashvalues) and sketch.is_empty():
            continue
        if lsh.query(sketch):
            removed.add(doc.id)
        else:
            lsh.insert(doc.id, sketch, check_duplication=False)
    return time.perf_counter() - started, removed


def _one(cls, values):  # noqa: ANN001, ANN202
    sketch = cls(num_perm=DEFAULT_NUM_PERM)
    sketch.update_batch(values)
    return sketch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0, help="corpus size in millions of characters")
    from bench_queries import corpus_docs
    from exact_bench import add_corpus_args

    add_corpus_args(parser)
    args = parser.parse_args()
    if args.corpus is None:
        docs = stdlib_docs(int(args.mb * 1_000_000))
    else:  # up to --mb MB of UTF-8 (the same as characters for ASCII text)
        docs = corpus_docs(args.corpus, int(args.mb * 1_000_000), format=args.format, id_field=args.id_field,
                           fields=args.fields)  # fmt: skip
    chars = sum(len(d.text) for d in docs)
    mb = chars / 1e6

    options = {"language": {"languages": ["Python"]}, "optout": {"owners": ["email", "json"]}}
    per_step: dict[str, dict[str, float | int]] = {}
    near_removed: set[str] = set()
    for name in ("dedup", "near-dedup", "pii", "licence", "quality", "language", "optout"):
        (step,) = make_steps([name], **({name: options[name]} if name in options else {}))
        started = time.perf_counter()
        kept = [d.id for d in step(docs)]
        seconds = time.perf_counter() - started
        report = step.report()
        per_step[name] = {
            "seconds": round(seconds, 3),
            "mb_per_s": round(mb / seconds, 2),
            "removed": report["removed"],
            "changed": report["changed"],
        }
        if name == "near-dedup":
            near_removed = {d.id for d in docs} - set(kept)

    peer_seconds, peer_removed, peer_kind = None, set(), ""
    for generator in (False, True):
        seconds, removed = peer_near_dedup(docs, generator=generator)
        if peer_seconds is None or seconds < peer_seconds:
            peer_seconds, peer_removed = seconds, removed
            peer_kind = "MinHash.generator" if generator else "MinHash().update_batch"
    ours = per_step["near-dedup"]["seconds"]
    union = near_removed | peer_removed
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    pii_scores = score_labelled(rows)

    result = {
        "bench": "preprocess",
        "corpus": {"docs": len(docs), "mchars": round(mb, 2), "source": args.corpus or "python stdlib .py"},
        "steps": per_step,
        "near_dedup_vs_datasketch": {
            "ours_mb_per_s": round(mb / ours, 2),
            "datasketch_mb_per_s": round(mb / peer_seconds, 2),
            "datasketch_variant": peer_kind,
            "ratio": round(peer_seconds / ours, 2),
            "goal": 0.9,
            "removed_ours": len(near_removed),
            "removed_datasketch": len(peer_removed),
            "removed_agreement_jaccard": round(len(near_removed & peer_removed) / len(union), 3) if union else 1.0,
            "params": {"ngram": DEFAULT_NGRAM, "num_perm": DEFAULT_NUM_PERM, "threshold": DEFAULT_THRESHOLD},
        },
        "pii_labelled": {
            "snippets": len(rows),
            "spans": sum(len(r["spans"]) for r in rows),
            **{kind: {k: v for k, v in s.items() if k in ("precision", "recall", "f1")} for kind, s in pii_scores.items()},
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
