"""Attribution tracing: which spans of a text occur verbatim in the corpus, and where from.

A span is a maximal stretch of the text (at least ``min_len`` characters) found verbatim by the
bundle's exact backend (:meth:`~spacerini.backends.exact.ExactSearcher.longest_matches`). Each
span lists the documents that contain it with their provenance (repo, path, owner, licence,
SWHID). Where the bundle also has a Bloom sketch, its membership coverage is reported too.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from spacerini.errors import BackendNotAvailableError
from spacerini.records import Answer


@dataclass(frozen=True, slots=True)
class Source:
    """A corpus document that holds a traced span, with its provenance.

    Attributes:
        docid: The document id.
        repo: Repository (URL) of the document.
        path: Path of the file in its repository or package.
        owner: Owner / author.
        licence: Licence of the document.
        swhid: Software Heritage content id (``swh:1:cnt:...``).
        package: The package (or dataset part) it comes from.
    """

    docid: str
    repo: str = ""
    path: str = ""
    owner: str = ""
    licence: str = "unknown"
    swhid: str = ""
    package: str = ""


@dataclass(frozen=True, slots=True)
class TracedSpan:
    """A span of the traced text found verbatim in the corpus.

    Attributes:
        start: Character offset in the traced text (inclusive).
        end: Character offset in the traced text (exclusive).
        text: The span.
        count: Occurrences in the corpus.
        sources: The first few documents (corpus order) that contain it.
    """

    start: int
    end: int
    text: str
    count: int
    sources: tuple[Source, ...]


@dataclass(frozen=True, slots=True)
class TraceResult(Answer):
    """The outcome of :func:`trace` (the service's answer to a trace: it reads like its JSON too).

    Attributes:
        chars: Length of the traced text in characters.
        spans: Verbatim spans, in order of their start.
        coverage: Share of the text's characters inside at least one span.
        licences: The licences of all span sources, sorted.
        min_len: Shortest span reported.
        bloom_coverage: Membership coverage from the Bloom sketch (None without one).
        bloom_spans: The sketch's merged ``(start, end)`` spans.
        seconds: Time taken.
    """

    chars: int
    spans: tuple[TracedSpan, ...]
    coverage: float
    licences: tuple[str, ...]
    min_len: int
    bloom_coverage: float | None = None
    bloom_spans: tuple[tuple[int, int], ...] = ()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Returns the result as a JSON-serialisable dict (``dataclasses.asdict``)."""
        return asdict(self)


def _source(bundle: Any, docid: str) -> Source:
    try:
        meta = bundle.doc(docid).meta
    except KeyError:
        return Source(docid=docid)
    return Source(
        docid=docid,
        repo=str(meta.get("repo") or ""),
        path=str(meta.get("path") or ""),
        owner=str(meta.get("owner") or ""),
        licence=str(meta.get("licence") or meta.get("license") or "unknown"),
        swhid=str(meta.get("swhid") or ""),
        package=str(meta.get("package") or ""),
    )


def union_length(intervals: list[tuple[int, int]]) -> int:
    """Number of positions covered by the union of half-open ``(start, end)`` intervals."""
    total, cur_s, cur_e = 0, -1, -1
    for s, e in sorted(intervals):
        if s > cur_e:
            total += max(0, cur_e - cur_s)
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + max(0, cur_e - cur_s)


def require_exact(bundle: Any) -> None:
    """Checks that ``bundle`` can be traced (it has the exact backend).

    Raises:
        BackendNotAvailableError: It has none, with the command that adds it.
    """
    if "exact" not in bundle.backends:
        raise BackendNotAvailableError(
            f"{bundle.path}: tracing needs the exact backend; rebuild with "
            f"`spacerini index ... --backends {','.join([*bundle.backends, 'exact'])}`"
        )


def trace(
    bundle: Any,
    text: str,
    *,
    min_len: int = 32,
    max_docs: int = 5,
    bloom: bool = True,
    segments: list[tuple[int, int]] | None = None,
) -> TraceResult:
    """Traces ``text`` (generated or pasted code) back to the corpus documents that contain it.

    Args:
        bundle: An opened :class:`~spacerini.bundle.Bundle`, or its path.
        text: The text to trace.
        min_len: Shortest verbatim span reported, in characters (short spans such as
            ``"return self."`` occur everywhere and say nothing about attribution).
        max_docs: Source documents listed per span.
        bloom: Also report the Bloom sketch's coverage when the bundle has one.
        segments: Trace only these ``(start, end)`` stretches of ``text``, each alone (a span
            never crosses from one to the next); None: the whole text. The app passes the
            stretches around the PII of the text when it redacts
            (:func:`spacerini.display.pii_free_segments`).

    Returns:
        The spans with their sources and licences, and the share of the text covered.

    Raises:
        BackendNotAvailableError: The bundle has no exact backend.
        QueryError: The text is empty, not UTF-8 text, or too long; or ``min_len`` < 1.
    """
    from spacerini.bundle import Bundle, open_bundle

    if isinstance(bundle, str | os.PathLike):
        bundle = open_bundle(bundle)
    if not isinstance(bundle, Bundle) and not hasattr(bundle, "searcher"):
        raise TypeError(f"bundle must be a Bundle or a path, not {type(bundle).__name__}")
    require_exact(bundle)
    t0 = time.perf_counter()
    if segments is None:
        raw_spans = bundle.searcher("exact").longest_matches(text, min_len=min_len, max_docs=max_docs)
    else:
        from spacerini.display import segment_matches

        raw_spans = segment_matches(bundle.searcher("exact"), text, segments, min_len=min_len, max_docs=max_docs)
    sources: dict[str, Source] = {}
    spans = []
    for span in raw_spans:
        for docid in span.docids:
            if docid not in sources:
                sources[docid] = _source(bundle, docid)
        spans.append(
            TracedSpan(span.start, span.end, span.text, span.count, tuple(sources[d] for d in span.docids))
        )
    bloom_coverage: float | None = None
    bloom_spans: tuple[tuple[int, int], ...] = ()
    if bloom and "bloom" in bundle.backends:
        from spacerini.display import segment_member

        member = segment_member(bundle.searcher("bloom"), text, [(0, len(text))] if segments is None else segments)
        bloom_coverage, bloom_spans = member.coverage, tuple(tuple(s) for s in member.spans)
    covered = union_length([(s.start, s.end) for s in spans])
    return TraceResult(
        chars=len(text),
        spans=tuple(spans),
        coverage=covered / len(text) if text else 0.0,
        licences=tuple(sorted({s.licence for s in sources.values()})),
        min_len=min_len,
        bloom_coverage=bloom_coverage,
        bloom_spans=bloom_spans,
        seconds=round(time.perf_counter() - t0, 6),
    )


def render_trace(result: TraceResult, *, preview: int = 60) -> str:
    """Formats a :class:`TraceResult` as plain text for a terminal (one line per span and source).

    Args:
        result: The trace.
        preview: Characters of each span shown.

    Returns:
        The text, ending without a newline.
    """
    lines = [
        f"{result.coverage:.1%} of {result.chars} characters found verbatim in {len(result.spans)} span(s)"
        f" of >= {result.min_len} characters"
        + (f"; licences: {', '.join(result.licences)}" if result.licences else "")
    ]
    if result.bloom_coverage is not None:
        lines.append(f"bloom sketch coverage: {result.bloom_coverage:.1%}")
    for span in result.spans:
        shown = span.text if len(span.text) <= preview else span.text[: preview - 1] + "…"
        lines.append(f"[{span.start}:{span.end}] {span.end - span.start} chars, {span.count}x in corpus: {shown!r}")
        for s in span.sources:
            lines.append(f"    {s.docid}  licence={s.licence}  owner={s.owner or '-'}  repo={s.repo or '-'}  {s.swhid}")
    return "\n".join(lines)
