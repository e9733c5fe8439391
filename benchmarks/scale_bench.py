"""Scale: build sharded bundles of 1, 2 and 5 GB of real text and record time and peak memory.

The corpus is real text found on this machine (Python sources, documentation, licences and
READMEs under /usr and the virtualenv), split into paragraphs and repeated; each repetition
replaces about one word in ten with another word of the same vocabulary (seeded), so that no
copy deduplicates away and term statistics stay realistic. Each size is built with
``spacerini index ... --shard-size`` in a child process whose peak RSS (the JVM is inside it)
is sampled every 0.1 s with psutil.

``--corpus PATH`` takes the documents of any corpus ``spacerini index`` reads (with its
``--format``, ``--id-field`` and ``--fields``) as that text instead.

Run (figures go to benchmarks/RESULTS.md by hand, with this command):
    .venv/bin/python benchmarks/scale_bench.py --sizes 1,2,5 --shard-size 256MB
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_queries import add_corpus_args  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "scale"
OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no benchmarks/out
SOURCES = [Path("/usr/share/doc"), Path(sys.prefix), Path("/usr/lib/python3"), Path("/usr/lib/python3.11")]
SUFFIXES = {".py", ".txt", ".rst", ".md", ""}
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,}")


def paragraphs(limit_bytes: int = 300_000_000) -> list[tuple[str, str]]:
    """(owner, paragraph) pairs of real text from this machine, at least 200 characters each."""
    found: list[tuple[str, str]] = []
    total = 0
    for base in SOURCES:
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.suffix not in SUFFIXES or not path.is_file() or path.stat().st_size > 2_000_000:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            owner = path.relative_to(base).parts[0] if len(path.relative_to(base).parts) > 1 else base.name
            for para in re.split(r"\n\s*\n", text):
                para = para.strip()
                if len(para) >= 200:
                    found.append((owner, para))
                    total += len(para)
            if total >= limit_bytes:
                return found
    return found


def corpus_paragraphs(
    source: str, *, format: str | None, id_field: str | None, fields: str | None, limit_bytes: int = 300_000_000
) -> list[tuple[str, str]]:
    """(owner, text) of the documents of any corpus ``spacerini index`` reads, up to ``limit_bytes``
    (the owner: the document's meta owner, else its id's first path part, else ``corpus``).

    Raises:
        SystemExit: The corpus cannot be read (the library's error, on one line) or has no text.
    """
    from bench_queries import corpus_docs

    docs = corpus_docs(source, limit_bytes, format=format, id_field=id_field, fields=fields)
    found = [
        (str(doc.meta.get("owner") or (doc.id.split("/", 1)[0] if "/" in doc.id else "corpus")), doc.text)
        for doc in docs
        if doc.text.strip()
    ]
    if not found:
        raise SystemExit(f"{source}: no text")
    return found


def perturb(text: str, rng: random.Random, vocab: list[str]) -> str:
    """``text`` with about one word in ten replaced by a word drawn from ``vocab``."""
    return WORD.sub(lambda m: rng.choice(vocab) if rng.random() < 0.1 else m.group(0), text)


def write_corpus(path: Path, target_bytes: int, paras: list[tuple[str, str]]) -> int:
    """Writes JSONL of about ``target_bytes`` of text: the paragraphs, then perturbed copies."""
    vocab = sorted({w for _, p in paras[:20_000] for w in WORD.findall(p)})
    written, docs, copy = 0, 0, 0
    with path.open("w", encoding="utf-8") as fh:
        while written < target_bytes:
            rng = random.Random(copy)
            for i, (owner, para) in enumerate(paras):
                text = para if copy == 0 else perturb(para, rng, vocab)
                record = {"id": f"c{copy}-p{i}", "contents": text, "owner": owner, "repo": f"local/{owner}"}
                line = json.dumps(record, ensure_ascii=False)
                fh.write(line + "\n")
                written += len(text.encode("utf-8"))
                docs += 1
                if written >= target_bytes:
                    break
            copy += 1
    return docs


def build(corpus: Path, out: Path, *, shard_size: str, backends: str) -> dict[str, object]:
    """Runs ``spacerini index`` in a child and samples its peak RSS."""
    cmd = [str(ROOT / ".venv" / "bin" / "spacerini"), "-q", "index", str(corpus), "--out", str(out),
           "--backends", backends, "--shard-size", shard_size]  # fmt: skip
    env = {**os.environ, "SPACERINI_NO_PROGRESS": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        ps = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            except psutil.Error:
                break
            peak = max(peak, rss)
            time.sleep(0.1)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    stop.set()
    watcher.join()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}): {err.decode()[-2000:]}")
    manifest = json.loads((out / "spacerini.json").read_text())
    return {
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(peak / 1e9, 2),
        "docs": manifest["counts"]["docs"],
        "text_gb": round(manifest["counts"]["text_bytes"] / 1e9, 2),
        "shards": len(manifest.get("shards") or []),
        "backend_seconds": {k: v.get("seconds") for k, v in manifest["backends"].items()},
        "bundle_gb": round(sum(v["size"] for v in manifest["checksums"].values()) / 1e9, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,2,5", help="GB of text per build, comma-separated")
    parser.add_argument("--shard-size", default="256MB")
    parser.add_argument("--backends", default="bm25,exact,bloom,owners")
    parser.add_argument("--keep", action="store_true", help="keep corpora and bundles in benchmarks/out/scale")
    add_corpus_args(parser, "any corpus spacerini index reads (JSONL, Parquet, CSV, a folder, hf:NAME): its documents, repeated, instead of this machine's text")
    args = parser.parse_args()
    if args.corpus is None:
        paras = paragraphs()
    else:
        paras = corpus_paragraphs(args.corpus, format=args.format, id_field=args.id_field, fields=args.fields)
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{len(paras):,} real paragraphs, {sum(len(p) for _, p in paras) / 1e6:.0f} MB", flush=True)
    results = {}
    for size in [float(s) for s in args.sizes.split(",")]:
        corpus = OUT / f"corpus-{size:g}gb.jsonl"
        docs = write_corpus(corpus, int(size * 1e9), paras)
        bundle = OUT / f"bundle-{size:g}gb"
        subprocess.run(["rm", "-rf", str(bundle)], check=True)
        row = build(corpus, bundle, shard_size=args.shard_size, backends=args.backends)
        row["corpus_docs"] = docs
        results[f"{size:g}GB"] = row
        print(json.dumps({f"{size:g}GB": row}), flush=True)
        if not args.keep:
            corpus.unlink()
            subprocess.run(["rm", "-rf", str(bundle)], check=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
