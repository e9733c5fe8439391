"""Always-matching benchmark queries: 1-4 words drawn from random documents of the corpus."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

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
