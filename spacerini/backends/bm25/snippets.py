"""BM25 snippets of a document shown with its PII redacted, without redacting the whole document.

Display redaction must happen before a snippet is cut (:mod:`spacerini.display`): a secret cut
in half at the window's edge no longer looks like one. Redacting every hit's whole document did
that, at ~40 us per kilobyte in Python (under the GIL): most of a search page's cost on source
files of tens of kilobytes, and the reason a server answered on one core. Here the window is
chosen on the document's own text, exactly as :meth:`BM25Searcher.snippet` chooses it, and only
that window is redacted (:func:`spacerini.display.redacted_window`: its lines, with any span that
reaches into it replaced whole) before its matches are found and the snippet is cut from it.

When the redacted window holds no match (the match the window was opened for was inside a
secret, or no match was found near the start), the snippet is cut from the whole redacted
document instead, as before: the same answer, at the old cost, for the rare hit that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spacerini.backends.bm25 import BM25Searcher

#: ``redact(text, lo, hi)``: ``text[lo:hi]`` with PII redacted, spans reaching in replaced whole.
Redactor = Callable[[str, int, int], str]


def redacted_snippet(searcher: BM25Searcher, query: str, text: str, *, width: int, redact: Redactor) -> str:
    """:meth:`BM25Searcher.snippet` of ``text`` as displayed with its PII redacted.

    Args:
        searcher: The searcher whose analysis finds the matches.
        query: The query.
        text: The document's own (unredacted) text.
        width: Target window size in characters.
        redact: Redacts a window of ``text`` (:func:`spacerini.display.redacted_window`).

    Returns:
        The HTML-escaped snippet, as :meth:`BM25Searcher.snippet` cuts it from the redacted text.
    """
    from spacerini.backends.bm25 import SNIPPET_SCAN_CHARS, _render_snippet

    if len(text) <= SNIPPET_SCAN_CHARS:  # the window is the whole document anyway
        return searcher.snippet(query, redact(text, 0, len(text)), width=width)
    qterms, keys = searcher._snippet_query(query) if query and query.strip() else (frozenset(), None)
    base = 0
    if qterms:
        first = keys.anywhere.search(text) if keys is not None else None
        base = max(0, (first.start() if first else 0) - SNIPPET_SCAN_CHARS // 4)
    window = redact(text, base, base + SNIPPET_SCAN_CHARS)
    matched = searcher._snippet_matches(window, qterms, keys) if qterms else []
    if not matched and keys is not None:
        where = searcher._first_matching_word(text, qterms, keys)
        if where is not None:
            base = max(0, where - SNIPPET_SCAN_CHARS // 4)
            window = redact(text, base, base + SNIPPET_SCAN_CHARS)
            matched = searcher._snippet_matches(window, qterms, keys)
    if not matched and qterms:
        return searcher.snippet(query, redact(text, 0, len(text)), width=width)
    snippet = _render_snippet(window, matched, width)
    if base and not snippet.startswith("…"):
        snippet = "…" + snippet
    return snippet
