"""Build a BM25 bundle from a JSONL file, search it and write a TREC run.

Usage:
    .venv/bin/python examples/search_jsonl.py [CORPUS.jsonl [QUERY [QUERIES.tsv]]]

With no arguments it uses the tiny test corpus shipped in tests/data/ and its queries
(tests/data/tiny_queries.tsv, ``qid<TAB>text`` lines) for the run. The bundle and the run go to a
new temporary folder, which the script prints and leaves in place.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from spacerini import build_bundle
from spacerini.eval import read_queries, write_trec_run

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "tiny.jsonl"
    query = sys.argv[2] if len(sys.argv) > 2 else "inverted index term frequencies"
    out = Path(tempfile.mkdtemp()) / "bundle"
    bundle = build_bundle(corpus, out, backends=["bm25"])
    print(f"{bundle!r}")
    for hit in bundle.search(query, k=5):
        print(f"{hit.rank:>2}  {hit.score:7.4f}  {hit.docid:<6} {hit.fields.get('title', '')}")
    queries = read_queries(Path(sys.argv[3]) if len(sys.argv) > 3 else ROOT / "tests" / "data" / "tiny_queries.tsv")
    run = bundle.batch_search(queries, k=100)
    n = write_trec_run(run, out.parent / "run.trec", tag="example")
    print(f"wrote {n} run lines to {out.parent / 'run.trec'}")


if __name__ == "__main__":
    main()
