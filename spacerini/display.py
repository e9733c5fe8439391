"""Display-time PII redaction, done once for every front end (the service calls it).

Two rules keep a secret from leaking through what is shown:

* **Redact before cutting.** A snippet is a window of a document. Cutting first and redacting
  the window misses a key cut in half at the window's edge (the rest of it no longer looks like
  a key). So a BM25 snippet is cut from the redacted document, and an exact-match snippet is
  assembled from the document's text with every PII span found in a wider window replaced
  whole, even one that only starts or ends inside what is shown.
* **A query is not an oracle.** In display mode, a count, find or ranked search whose query is
  itself PII (a key, a password, an email...) is refused: answering "3 occurrences" (or a top
  hit) would confirm the secret is in the corpus without ever showing it. A text checked for
  membership or traced is checked stretch by stretch around the PII it holds
  (:func:`pii_free_segments`): the rest of the text is answered for, the secret never.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from spacerini.errors import QueryError

#: Characters scanned on each side of an exact-match window, so that a PII span that reaches
#: into the window is found whole (PEM blocks, the longest, are a few KB).
MARGIN = 4096


def redacted_text(text: str) -> str:
    """``text`` with emails, keys, passwords and public IP addresses replaced (StarPII-style)."""
    from spacerini.preprocess.pii import redact

    return redact(text)


def redacted_window(text: str, lo: int, hi: int) -> str:
    """``text[lo:hi]`` with its PII redacted as :func:`redacted_text` would redact it in the whole
    text, at the cost of a few lines instead of the whole document (a BM25 snippet's window).

    The detectors match within one line (:mod:`spacerini.preprocess.pii`), so the whole lines
    around the window, one more on each side, are scanned; a PEM private-key block that reaches
    into them is scanned whole, and so is the word ``machine`` that turns on the ``.netrc`` rule.
    A span that reaches into the window is replaced whole (its placeholder is shown), so nothing
    of a secret cut at the window's edge is shown. IP addresses get their documentation
    stand-ins in the window's order, not the document's.

    Args:
        text: The whole document text.
        lo: The window's first character.
        hi: One past its last character.

    Returns:
        The window, redacted; it starts before ``lo`` or ends after ``hi`` only where a span
        reaches over the edge, and then with that span's placeholder.
    """
    from spacerini.preprocess.pii import redact

    lo, hi = max(0, lo), min(len(text), hi)
    if lo == 0 and hi == len(text):
        return redacted_text(text)
    spans = pii_spans_near(text, lo, hi)
    if not spans:
        return text[lo:hi]
    start = min(lo, min(s.start for s in spans))
    end = max(hi, max(s.end for s in spans))
    return redact(text[start:end], [replace(s, start=s.start - start, end=s.end - start) for s in spans])


def pii_spans_near(text: str, lo: int, hi: int) -> list[Any]:
    """The PII spans of ``text`` that reach into ``text[lo:hi]``, as the whole text's detection
    finds them (in offsets of ``text``), at the cost of a few lines (see :func:`redacted_window`)."""
    return pii_spans_near_many([(text, lo, hi)], prefilter=False)[0]


def pii_spans_near_many(windows: Sequence[tuple[str, int, int]], *, prefilter: bool = True) -> list[list[Any]]:
    """:func:`pii_spans_near` of each ``(text, lo, hi)``.

    With ``prefilter``, one RE2 pass over all the scanned lines
    (:mod:`spacerini.audit.pii_prefilter`, a superset of what ``find_pii`` can report) picks the
    windows that could hold PII, and ``find_pii`` (Python's ``re``, ~3 ms on a few lines) runs
    only on those, for the kinds they could hold: the spans are the same. A thousand
    occurrences of a common word cost one pass instead of seconds.
    """
    from spacerini.preprocess.pii import find_pii

    scans = [_scan_region(text, lo, hi) for text, lo, hi in windows]
    if prefilter and scans:
        from spacerini.audit.pii_prefilter import pii_candidates

        blobs = [scan.encode("utf-8", "surrogatepass") for _, _, scan in scans]
        offsets = np.cumsum([0, *map(len, blobs)], dtype=np.int64)
        kinds: dict[int, list[str] | None] = dict(pii_candidates(b"".join(blobs), offsets))
    else:
        kinds = dict.fromkeys(range(len(scans)))  # every window, every kind
    out: list[list[Any]] = []
    for i, ((_, lo, hi), (a, b, scan)) in enumerate(zip(windows, scans, strict=True)):
        if i not in kinds:
            out.append([])
            continue
        found = find_pii(scan) if kinds[i] is None else find_pii(scan, kinds=kinds[i])
        out.append([replace(s, start=s.start + a, end=s.end + a) for s in found if s.start + a < hi and s.end + a > lo and s.start < b - a])
    return out


def _scan_region(text: str, lo: int, hi: int) -> tuple[int, int, str]:
    """``(a, b, scan)``: the lines of ``text`` that PII reaching into ``text[lo:hi]`` lies in, as
    :func:`redacted_window` scans them (``scan`` is ``text[a:b]``, plus a ``machine`` line when
    the document names one, for the ``.netrc`` rule)."""
    from spacerini.preprocess.pii import _PRIVATE_KEY

    # Whole lines, one more on each side (a few detectors look a little before a match).
    a = text.rfind("\n", 0, max(0, text.rfind("\n", 0, lo))) + 1
    line_end = text.find("\n", hi)
    b = -1 if line_end < 0 else text.find("\n", line_end + 1)
    b = len(text) if b < 0 else b
    if "-----BEGIN" in text:  # the one detector that crosses lines: take its blocks whole
        for match in _PRIVATE_KEY.finditer(text):
            if match.start() < b and match.end() > a:
                a = min(a, text.rfind("\n", 0, match.start()) + 1)
                end = text.find("\n", match.end())
                b = max(b, len(text) if end < 0 else end)
    scan = text[a:b]
    if "machine" in text and "machine" not in scan:
        scan += "\nmachine"  # the .netrc rule runs when the document names a machine
    return a, b, scan


def redacted_record(value: Any) -> Any:
    """Every string in a record's fields or provenance redacted (ids and SWHIDs kept)."""
    from spacerini.preprocess.pii import redact_record

    return redact_record(value)


def pii_free_segments(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` stretches of ``text`` that hold no PII (the rule-based kinds).

    Membership and tracing check each stretch alone when redacting, so that no span they report,
    and no share of the text they count as found, can confirm that a secret pasted with the text
    (a key, a password, an e-mail address) is in the corpus: the rest of the text is still checked.
    """
    from spacerini.preprocess.pii import find_pii

    out: list[tuple[int, int]] = []
    at = 0
    for span in find_pii(text):  # in order and disjoint
        if span.start > at:
            out.append((at, span.start))
        at = span.end
    if at < len(text):
        out.append((at, len(text)))
    return out


def segment_matches(searcher: Any, text: str, segments: list[tuple[int, int]], *, min_len: int, max_docs: int) -> list[Any]:
    """The exact backend's ``longest_matches`` of each stretch of ``text`` alone, in offsets of
    ``text`` (a span never crosses from one stretch to the next)."""
    out = []
    for a, b in segments:
        part = text[a:b]
        if b - a < min_len or not part.strip():
            continue
        for span in searcher.longest_matches(part, min_len=min_len, max_docs=max_docs):
            out.append(replace(span, start=span.start + a, end=span.end + a))
    return out


#: A span of pasted text found more often than this in the corpus is too common to be part of
#: one secret: its occurrences are not checked for PII (see :func:`corpus_pii_free_segments`).
PII_CHECKED_OCCURRENCES = 1_000


def corpus_pii_free_segments(
    searcher: Any,
    doc_text: Callable[[str], str],
    text: str,
    segments: list[tuple[int, int]],
    *,
    min_len: int,
    max_docs: int = 5,
) -> tuple[list[tuple[int, int]], list[Any]]:
    """``segments`` of ``text`` less the parts that the corpus holds only inside PII.

    :func:`pii_free_segments` leaves out the secrets a pasted text shows whole. A part of one
    (a key but its last characters, the line that holds a password) is no PII in the pasted
    text, but a span of it found in the corpus would confirm it, a character at a time. So each
    span the exact backend finds is looked up in the corpus: when every occurrence of it reaches
    into PII of its document (as :func:`redacted_window` finds it), the characters of the first
    one's PII are cut out of the segment, and what is left is matched again. A span with an
    occurrence clear of PII, or found more than :data:`PII_CHECKED_OCCURRENCES` times, stays.

    Args:
        searcher: The exact backend.
        doc_text: The stored text of a document id.
        text: The pasted text.
        segments: Its ``(start, end)`` stretches to check (from :func:`pii_free_segments`).
        min_len: Shortest span reported (shorter ones are not looked up).
        max_docs: Documents listed per span.

    Returns:
        The stretches to check instead, in order, and the exact backend's spans in them (as
        :func:`segment_matches` gives them).
    """
    out: list[tuple[int, int]] = []
    spans: list[Any] = []
    pending = list(segments)
    while pending:
        a, b = pending.pop(0)
        cut: list[tuple[int, int]] = []
        found = segment_matches(searcher, text, [(a, b)], min_len=min_len, max_docs=max_docs)
        for span in found:
            cut = [(span.start + x, span.start + y) for x, y in _pii_in_every_occurrence(searcher, doc_text, span.text)]
            if cut:
                break
        if not cut:
            out.append((a, b))
            spans.extend(found)
            continue
        pieces, at = [], a
        for x, y in sorted(cut):
            if x > at:
                pieces.append((at, x))
            at = max(at, y)
        if at < b:
            pieces.append((at, b))
        pending[:0] = pieces
    return out, spans


def _pii_in_every_occurrence(searcher: Any, doc_text: Callable[[str], str], span: str) -> list[tuple[int, int]]:
    """Where the PII of the first occurrence of ``span`` lies in it (offsets of ``span``), when
    every occurrence reaches into PII of its document; else (or too common) an empty list."""
    total = int(searcher.count(span))
    if total == 0 or total > PII_CHECKED_OCCURRENCES:
        return []
    first: list[tuple[int, int]] = []
    texts: dict[str, str] = {}
    pages = [(0, 1)] + [(offset, 200) for offset in range(1, total, 200)]  # the first is most often clear
    for offset, k in pages:
        for _, at, found in occurrences_pii(searcher, doc_text, span, k=k, offset=offset, texts=texts):
            if not found:
                return []  # an occurrence clear of PII: the span says nothing of a secret
            if not first:
                first = [(max(0, p.start - at), min(len(span), p.end - at)) for p in found]
    return first


def occurrences_pii(
    searcher: Any,
    doc_text: Callable[[str], str],
    text: str,
    *,
    k: int,
    offset: int = 0,
    texts: dict[str, str] | None = None,
) -> list[tuple[str, int, list[Any]]]:
    """``(docid, char offset, PII spans reaching into it)`` of the exact backend's occurrences
    ``offset + 1 .. offset + k`` of ``text``, in its order; an occurrence whose document is gone
    is left out.

    The spans are :func:`pii_spans_near`'s, found in one prefiltered pass over all the windows
    (:func:`pii_spans_near_many`). ``texts`` caches the documents' texts across calls.
    """
    texts = {} if texts is None else texts
    where: list[tuple[str, int]] = []
    windows: list[tuple[str, int, int]] = []
    for hit in searcher.find(text, k=k, offset=offset, context=0):
        body = texts.get(hit.docid)
        if body is None:
            try:
                body = texts[hit.docid] = doc_text(hit.docid)
            except KeyError:
                continue
        at = int(hit.offset)
        where.append((hit.docid, at))
        windows.append((body, at, at + len(text)))
    return [(docid, at, found) for (docid, at), found in zip(where, pii_spans_near_many(windows), strict=True)]


def segment_member(bloom: Any, text: str, segments: list[tuple[int, int]]) -> Any:
    """The Bloom sketch's membership of each stretch of ``text`` alone, as one answer in offsets
    of ``text`` (its coverage a share of the whole text; a stretch too short for an n-gram checks
    none)."""
    if segments == [(0, len(text))]:
        return bloom.member(text)
    from spacerini.backends.bloom import MembershipResult

    spans: list[tuple[int, int]] = []
    checked = found = 0
    for a, b in segments:
        if not text[a:b]:
            continue
        m = bloom.member(text[a:b])
        spans.extend((start + a, end + a) for start, end in m.spans)
        checked += m.ngrams_checked
        found += m.ngrams_found
    covered = sum(end - start for start, end in spans)
    return MembershipResult(covered / len(text) if text else 0.0, tuple(spans), checked, found)


def refuse_pii_query(query: str, *, verb: str) -> None:
    """Refuses a count, find or search whose query is itself personal or secret information.

    Raises:
        QueryError: The query holds PII (its kinds are named, never its text).
    """
    from spacerini.preprocess.pii import find_pii

    kinds = sorted({span.kind for span in find_pii(query)})
    if kinds:
        raise QueryError(
            f"this query holds personal or secret information ({', '.join(kinds)}); "
            f"this corpus does not {verb} such text, so that it cannot confirm it is there"
        )


def exact_snippet(text: str, start: int, end: int, *, context: int = 80, redact: bool = True) -> str:
    """An escaped snippet of ``text`` around the match ``[start, end)``, match in ``<mark>``.

    Args:
        text: The whole document text.
        start: The match's first character.
        end: One past the match's last character.
        context: Characters shown on each side of the match.
        redact: Replace PII; a span that reaches into the window is replaced whole.

    Returns:
        HTML-escaped text (as the exact backend escapes it); the only markup is ``<mark>``
        around (the visible part of) the match.
    """
    lo, hi = max(0, start - context), min(len(text), end + context)
    spans: list[Any] = []
    if redact:
        from spacerini.preprocess.pii import find_pii

        wlo, whi = max(0, lo - MARGIN), min(len(text), hi + MARGIN)
        for span in find_pii(text[wlo:whi]):
            if span.end + wlo > lo and span.start + wlo < hi:
                spans.append(replace(span, start=span.start + wlo, end=span.end + wlo))
    out: list[str] = []

    def plain(a: int, b: int) -> None:
        for x, y, marked in ((a, min(b, start), False), (max(a, start), min(b, end), True), (max(a, end), b, False)):
            if x < y:
                piece = html.escape(text[x:y])
                out.append(f"<mark>{piece}</mark>" if marked else piece)

    pos = lo
    if spans:
        from spacerini.preprocess.pii import redact as redact_span

        for span in spans:
            if span.start > pos:
                plain(pos, span.start)
            whole = text[span.start : span.end]
            piece = html.escape(redact_span(whole, [replace(span, start=0, end=len(whole))]), quote=True)
            out.append(f"<mark>{piece}</mark>" if span.start < end and span.end > start else piece)
            pos = max(pos, span.end)
    if pos < hi:
        plain(pos, hi)
    return "".join(out)


def pii_display_mode(manifest: Mapping[str, Any]) -> bool:
    """True when the bundle was built with ``--preprocess pii`` in ``display`` mode (redact on show)."""
    for step in manifest.get("preprocess") or []:
        if isinstance(step, Mapping) and step.get("name") == "pii":
            params = step.get("params") or {}
            if (step.get("mode") or params.get("mode")) == "display":
                return True
    return False


def plain_snippet(text: str, *, width: int = 240) -> str:
    """The first ``width`` characters of ``text``, HTML-escaped, for backends without highlighting."""
    cut = text[:width]
    return html.escape(cut) + ("…" if len(text) > width else "")
