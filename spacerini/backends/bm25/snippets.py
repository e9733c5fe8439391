"""BM25 snippets: where the window is, which part of it is shown, and how it is shown redacted.

:meth:`BM25Searcher.snippet` is :func:`locate` (the scan window near the first place a query term
could match, and the matches in it), :func:`bounds` (the densest ``width`` characters of it) and
:func:`render` (HTML, matches in ``<mark>``).

**Display redaction** must happen before a snippet is cut (:mod:`spacerini.display`): a secret
cut in half at the window's edge no longer looks like one. Redacting every hit's whole document
did that at ~40 us per kilobyte in Python, under the GIL: most of a search page's cost on source
files of tens of kilobytes, and the reason a server answered on one core. :func:`redacted_snippet`
redacts only what it shows:

1. the window and the part shown are chosen on the document's own text, exactly as without
   redaction, and only the lines around the part shown are scanned
   (:func:`spacerini.display.redacted_window`); when no PII reaches into them, that is the snippet;
2. otherwise the scan window is redacted (its lines; a span reaching in is replaced whole) and the
   snippet is cut from it, as from the redacted document;
3. and when that redacted window holds no match (the match it was opened for was inside a
   secret), the snippet is cut from the whole redacted document, as before.

So a snippet of a document with no PII near its matches is the snippet of its text, and any other
is cut from redacted text, as the display rule asks.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spacerini.backends.bm25 import BM25Searcher, _SnippetKeys

#: ``redact(text, lo, hi)``: ``text[lo:hi]`` with PII redacted, spans reaching in replaced whole.
Redactor = Callable[[str, int, int], str]
Spans = list[tuple[int, int]]


def locate(searcher: BM25Searcher, query: str, text: str) -> tuple[int, str, Spans]:
    """The scan window of ``text`` for ``query``: ``(base, window, matches)``.

    Long documents are looked at only near the first place a query term matches (at most
    ``SNIPPET_SCAN_CHARS`` characters), so a snippet's cost stays bounded whatever the document's
    size. With the English analyzer that place is found by the terms' key prefixes (Porter
    rewrites only a word's end); when the place is no match (a key prefix inside a longer token
    such as ``json_b64encode``), the window opens at the first word that really analyzes to a
    query term. Other analyzers may rewrite a word's start (German ``Oeffnung`` is ``offnung``,
    Spanish ``ácido`` is ``acid``; the code analyzer splits ``parse_header``), so their window is
    the document's start, and when that holds no match, the text after it is analyzed a chunk
    at a time (``SNIPPET_RESCUE_CHARS`` at most) until one is found; past that, the window
    opens at the first key prefix if it shows a match there.

    Returns:
        The window's offset in ``text``, the window, and its matches' (start, end) in the window.
    """
    from spacerini.backends.bm25 import SNIPPET_RESCUE_CHARS, SNIPPET_SCAN_CHARS

    qterms, keys = searcher._snippet_query(query) if query and query.strip() else (frozenset(), None)
    base, window = 0, text
    long = len(text) > SNIPPET_SCAN_CHARS and bool(qterms)
    if long and not searcher._exact_prefixes:
        window = text[:SNIPPET_SCAN_CHARS]
        matched = searcher._snippet_matches(window, qterms, keys)
        if not matched:
            start: int | None = len(window)
            if keys is not None and searcher._pretokenized:
                # A code word matches only where it holds a term whole: start at the first one.
                hit = first_prefix(text, keys, start=len(window) - len(max(keys.prefixes, key=len)))
                start = None if hit is None else max(len(window), _word_start(text, hit))
            where = None if start is None else searcher._first_match(text, qterms, keys, start=start)
            if where is None and keys is not None and start is not None:
                # Past the part analyzed: the first key prefix there, which most matching words
                # begin with (the window is kept only if it shows a match).
                where = first_prefix(text, keys, start=start + SNIPPET_RESCUE_CHARS)
            if where is not None:
                at = max(0, where - SNIPPET_SCAN_CHARS // 4)
                there = text[at : at + SNIPPET_SCAN_CHARS]
                found = searcher._snippet_matches(there, qterms, keys)
                if found:
                    base, window, matched = at, there, found
        return base, window, matched
    first: int | None = None
    if long:
        first = first_prefix(text, keys) if keys is not None else None
        base = max(0, (first or 0) - SNIPPET_SCAN_CHARS // 4)
        window = text[base : base + SNIPPET_SCAN_CHARS]
    matched = searcher._snippet_matches(window, qterms, keys) if qterms else []
    if not matched and keys is not None and long and first is not None:
        # No match lies in the window before its last 512 characters: one would begin with a key
        # prefix (none occurs before `first`) and, tokens being at most 255 characters, lie in
        # the window whole, analyzed as in the whole text (runs of non-blank characters are
        # tokenized alone; the rescue starts at the beginning of the run it starts in).
        start = max(first, base + len(window) - 512)
        where = searcher._first_matching_word(text, qterms, keys, start=start)
        if where is not None:
            base = max(0, where - SNIPPET_SCAN_CHARS // 4)
            window = text[base : base + SNIPPET_SCAN_CHARS]
            matched = searcher._snippet_matches(window, qterms, keys)
    return base, window, matched


def _word_start(text: str, at: int, *, bounded: bool = True) -> int:
    """``at`` moved back to the start of the ``\\w+`` word it is in (one token's length at most,
    unless not ``bounded``), stepping over ``[A-Za-z0-9_]`` and other alphanumerics: on ASCII text
    exactly ``\\w``."""
    from spacerini.backends.bm25.lucene import _MAX_TOKEN

    lo = max(0, at - _MAX_TOKEN) if bounded else 0
    while at > lo and (text[at - 1].isalnum() or text[at - 1] == "_"):
        at -= 1
    return at


def first_prefix(text: str, keys: _SnippetKeys, *, start: int = 0) -> int | None:
    """Where one of ``keys``' prefixes first occurs in ``text`` from ``start`` on, ignoring case
    (``keys.anywhere``).

    ASCII text is lowercased and searched 4 KB at a time with ``str.find``: the first place is
    usually near the start, and a case-insensitive regex costs ~10x more per character.
    """
    step, overlap = 4096, max(map(len, keys.prefixes)) - 1
    at = start
    while at < len(text):
        chunk = text[at : at + step + overlap]
        if not chunk.isascii():
            found = keys.anywhere.search(text, at)
            return found.start() if found else None
        low = chunk.lower()
        hits = [i for i in (low.find(p) for p in keys.prefixes) if i >= 0]
        if hits:
            return at + min(hits)
        at += step
    return None


def bounds(text: str, matched: Spans, width: int) -> tuple[int, int]:
    """The part of ``text`` a snippet shows: the densest run of matches within ``width``
    characters, widened to ``width`` and not cutting words at its edges."""
    width = max(20, int(width))
    if not matched:
        return 0, min(len(text), width)
    best_i, best_j, j = 0, 0, 0
    for i in range(len(matched)):
        j = max(j, i)
        while j + 1 < len(matched) and matched[j + 1][1] - matched[i][0] <= width:
            j += 1
        if j - i > best_j - best_i:
            best_i, best_j = i, j
    first, last = matched[best_i][0], matched[best_j][1]
    slack = max(0, width - (last - first))
    start = max(0, first - slack // 2)
    end = min(len(text), max(last, start + width))
    if end - start < width:
        start = max(0, end - width)
    while start > 0 and start < first and text[start - 1].isalnum() and text[start].isalnum():
        start += 1
    while end < len(text) and end > last and text[end - 1].isalnum() and text[end].isalnum():
        end -= 1
    return start, end


def render(text: str, matched: Spans, width: int, cut: tuple[int, int] | None = None) -> str:
    """``text[start:end]`` (``cut``, default :func:`bounds`) HTML-escaped, its matches in ``<mark>``,
    with ``…`` where it is cut."""
    if not matched:
        width = max(20, int(width))
        return html.escape(text[:width]) + ("…" if len(text) > width else "")
    start, end = cut if cut is not None else bounds(text, matched, width)
    parts: list[str] = ["…"] if start > 0 else []
    pos = start
    for s, e in matched:
        if s < start or e > end:
            continue
        parts.append(html.escape(text[pos:s]))
        parts.append("<mark>" + html.escape(text[s:e]) + "</mark>")
        pos = e
    parts.append(html.escape(text[pos:end]))
    if end < len(text):
        parts.append("…")
    return "".join(parts)


def snippet(searcher: BM25Searcher, query: str, text: str, *, width: int) -> str:
    """:meth:`BM25Searcher.snippet` of ``text`` (no redaction)."""
    base, window, matched = locate(searcher, query, text)
    return _prefixed(render(window, matched, width), base)


def redacted_snippet(searcher: BM25Searcher, query: str, text: str, *, width: int, redact: Redactor) -> str:
    """:meth:`BM25Searcher.snippet` of ``text`` as displayed with its PII redacted (see the module).

    Args:
        searcher: The searcher whose analysis finds the matches.
        query: The query.
        text: The document's own (unredacted) text.
        width: Target window size in characters.
        redact: Redacts a window of ``text`` (:func:`spacerini.display.redacted_window`).

    Returns:
        The HTML-escaped snippet.
    """
    base, window, matched = locate(searcher, query, text)
    cut = bounds(window, matched, width)
    lo, hi = base + cut[0], base + cut[1]
    if redact(text, lo, hi) == text[lo:hi]:  # no PII reaches into what is shown
        return _prefixed(render(window, matched, width, cut), base)
    qterms, keys = searcher._snippet_query(query) if query and query.strip() else (frozenset(), None)
    shown = redact(text, base, base + len(window))
    matched = searcher._snippet_matches(shown, qterms, keys) if qterms else []
    if matched or not qterms:
        return _prefixed(render(shown, matched, width), base)
    return snippet(searcher, query, redact(text, 0, len(text)), width=width)


def _prefixed(snippet: str, base: int) -> str:
    return "…" + snippet if base and not snippet.startswith("…") else snippet
