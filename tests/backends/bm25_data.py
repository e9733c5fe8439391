"""The BM25 test corpora and queries, shared by the unsharded and the sharded BM25 tests."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = DATA / "bm25_corpus.jsonl"
CODE = DATA / "bm25_code.jsonl"
QUERIES = DATA / "bm25_queries.tsv"
#: Queries for the code corpus: identifiers split or whole, a 300-character token, mixed cases.
CODE_QUERIES = [
    ("c01", "user name"),
    ("c02", "getUserName"),
    ("c03", "HTTP response parse"),
    ("c04", "parse_http_response"),
    ("c05", "self cache bincount"),
    ("c06", "json json write"),
    ("c07", "x return"),
    ("c08", "a" * 300),
    ("c09", "v2 init"),
    ("c10", "user_id userId"),
]
