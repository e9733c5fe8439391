"""The searcher of a backend in a bundle that holds no documents.

An opt-out can remove every document of a bundle (an owner who owns the whole corpus). The
backends' index formats cannot hold zero documents (Lucene's ``IndexCollection``, a suffix
array, a Faiss codec trained on a sample), so the bundle records each backend as ``"empty"``
and opens this searcher instead: it checks queries as the real ones do and finds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spacerini.records import Hit


class EmptySearcher:
    """Every capability of every backend, over a corpus of no documents.

    Args:
        backend: The registry key it stands in for.
        report: The backend's manifest entry (its ``params`` give the owner tab's instructions).
    """

    def __init__(self, backend: str, report: Mapping[str, Any]) -> None:
        self.backend = backend
        self.params = dict(report.get("params") or {})

    # ranked (bm25, dense, exact)
    def search(self, query: str, k: int = 10, offset: int = 0) -> list[Hit]:
        """No hits."""
        return []

    def batch_search(self, queries: Sequence[tuple[str, str]], *, k: int = 10, threads: int = 1) -> dict[str, list[Hit]]:
        """No hits for any query."""
        return {qid: [] for qid, _ in queries}

    # exact
    def count(self, text: str | bytes) -> int:
        """Zero occurrences (the query is checked as the exact backend checks it)."""
        from spacerini.backends.exact import validate_query

        validate_query(text)
        return 0

    def find(self, text: str | bytes, *, k: int = 10, offset: int = 0, context: int = 80) -> list[Any]:
        """No occurrences."""
        self.count(text)
        return []

    def longest_matches(self, text: str | bytes, *, min_len: int = 20, max_docs: int = 5) -> list[Any]:
        """No verbatim spans."""
        return []

    # bloom
    def member(self, text: str) -> Any:
        """Nothing of ``text`` is in an empty corpus."""
        from spacerini.backends.bloom import MembershipResult

        return MembershipResult(coverage=0.0, spans=(), ngrams_checked=0, ngrams_found=0)

    # owners
    def owners(self) -> list[str]:
        """No owners."""
        return []

    def owner(self, name: str, *, limit: int = 100, cutoff: float = 0.8, max_matches: int = 10) -> Any:
        """Nobody matches; the answer still says how to opt out."""
        from spacerini.backends.owners import DEFAULT_OPTOUT, OwnerResult, normalise
        from spacerini.errors import QueryError

        if not isinstance(name, str) or not normalise(name):
            raise QueryError("give an owner name (letters or digits) to look up")
        instructions = str(self.params.get("optout_instructions") or DEFAULT_OPTOUT)
        return OwnerResult(query=name, matches=(), total_docs=0, optout_instructions=instructions)

    def close(self) -> None:
        """Nothing to release."""
