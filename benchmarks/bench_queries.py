"""Shared by the benchmark scripts: always-matching queries (1-4 words drawn from random
documents of the corpus), and the options that name an outside corpus."""

from __future__ import annotations

import argparse
import random
import re
from collections.abc import Sequence
from typing import Any

#: A word of a query: ASCII, three characters or more (an identifier in code).
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


def sample_queries(
    texts: Sequence[str],
    n: int,
    *,
    seed: int = 0,
    word: re.Pattern[str] = WORD,
    max_words: int = 4,
    source: str = "the corpus",
) -> list[str]:
    """``n`` queries, each 1 to ``max_words`` words of one random text (the same queries for the
    same seed).

    Raises:
        SystemExit: Too few texts hold a word to draw ``n`` queries in ``100 * n`` tries.
    """
    rng = random.Random(seed)
    queries: list[str] = []
    for _ in range(100 * n):
        if len(queries) >= n:
            break
        words = word.findall(rng.choice(texts))
        if words:
            queries.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, max_words))))
    if len(queries) < n:
        raise SystemExit(f"{source}: too few documents with ASCII words to draw {n:,} queries from")
    return queries


def add_corpus_args(parser: argparse.ArgumentParser, corpus_help: str) -> None:
    """``--corpus`` (what the script does with it: ``corpus_help``) and the options that say how
    to read it, as ``spacerini index`` takes them."""
    parser.add_argument("--corpus", default=None, help=corpus_help)
    parser.add_argument("--format", default=None, help="--corpus's format, as for spacerini index (e.g. code for a source folder)")
    parser.add_argument("--id-field", default=None, help="--corpus's id field (default: id/docid/_id/doc_id)")
    parser.add_argument("--fields", default=None, help="--corpus's contents fields, comma-separated (default: contents/text/content/body)")


def corpus_docs(
    source: str, target_bytes: int, *, format: str | None = None, id_field: str | None = None, fields: str | None = None
) -> list[Any]:
    """The first documents of any corpus ``spacerini index`` reads (``format``, ``id_field`` and
    ``fields`` as its ``--format``, ``--id-field`` and ``--fields``), up to ``target_bytes`` of text.

    Raises:
        SystemExit: The corpus cannot be read (the library's error, on one line) or has no text.
    """
    from spacerini.corpus import load_corpus
    from spacerini.errors import SpaceriniError

    docs: list[Any] = []
    total = 0
    try:
        for doc in load_corpus(source, format=format, id_field=id_field, fields=fields, progress=False):
            docs.append(doc)
            total += len(doc.text.encode("utf-8", "surrogatepass"))
            if total >= target_bytes:
                break
    except SpaceriniError as exc:
        raise SystemExit(str(exc)) from None
    if not total:
        raise SystemExit(f"{source}: no text")
    return docs
