"""HTML rendering for the app, with display-time PII redaction.

Every piece of document text is HTML-escaped here; the only markup added is ``<mark>`` for
highlighting and links whose target is an ``http(s)`` URL. Snippets from the backends arrive
already escaped with ``<mark>`` around matches; :func:`redact_snippet` redacts them without
breaking that markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Provenance keys shown under a hit, in this order.
PROVENANCE_KEYS: tuple[str, ...] = ("repo", "path", "package", "owner", "licence", "language", "swhid")
_MARK = re.compile(r"(</?mark>)")
#: Software Heritage's resolver: ``swh:1:cnt:<sha1>`` becomes a browsable link.
SWH_RESOLVER = "https://archive.softwareheritage.org/"


def esc(value: Any) -> str:
    """Escapes any value for HTML text and attribute contexts."""
    return html.escape(str(value), quote=True)


def link(url: Any, text: Any | None = None) -> str:
    """A link if ``url`` is an http(s) URL (never ``javascript:`` or ``data:``), else escaped text."""
    label = esc(url if text is None else text)
    s = str(url)
    if s.startswith(("https://", "http://")):
        return f"<a href='{esc(s)}' target='_blank' rel='noopener noreferrer nofollow'>{label}</a>"
    return label


# -------------------------------------------------------------------------------- redaction
def redact_text(text: str) -> str:
    """Redacts PII (emails, keys, passwords, public IPs) in plain text, StarPII-style."""
    from spacerini.preprocess.pii import redact

    return redact(text)


def redact_snippet(snippet: str) -> str:
    """Redacts PII in an escaped snippet that holds ``<mark>`` highlighting.

    The snippet is turned back into plain text (so a match split by ``<mark>`` tags is still
    found), redacted, and escaped again with the highlighting kept on the text that was kept.

    Args:
        snippet: HTML-escaped text with ``<mark>``/``</mark>`` tags.

    Returns:
        The same kind of HTML with PII replaced by placeholders.
    """
    from spacerini.preprocess.pii import find_pii, redact

    chars: list[str] = []
    marked: list[bool] = []
    inside = False
    for part in _MARK.split(snippet):
        if part == "<mark>":
            inside = True
        elif part == "</mark>":
            inside = False
        elif part:
            plain = html.unescape(part)
            chars.append(plain)
            marked.extend([inside] * len(plain))
    plain = "".join(chars)
    spans = find_pii(plain)
    if not spans:
        return snippet
    out: list[str] = []
    pos = 0

    def emit(text: str, start: int) -> None:
        # Groups a run of characters by highlighting state.
        i = 0
        while i < len(text):
            state = marked[start + i]
            j = i
            while j < len(text) and marked[start + j] == state:
                j += 1
            piece = html.escape(text[i:j], quote=False)
            out.append(f"<mark>{piece}</mark>" if state else piece)
            i = j

    for span in spans:
        if span.start < pos:
            continue
        emit(plain[pos : span.start], pos)
        replacement = redact(plain[span.start : span.end], [_shift(span, -span.start)])
        piece = html.escape(replacement, quote=False)
        out.append(f"<mark>{piece}</mark>" if marked[span.start] else piece)
        pos = span.end
    emit(plain[pos:], pos)
    return "".join(out)


def _shift(span: Any, by: int) -> Any:
    from dataclasses import replace

    return replace(span, start=span.start + by, end=span.end + by)


def redact_value(value: Any) -> Any:
    """Redacts strings inside a JSON-like value (dicts, lists); other values pass through."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


# ------------------------------------------------------------------------------------- hits
def provenance_html(meta: Mapping[str, Any]) -> str:
    """Renders a document's provenance (repo, path, licence, SWHID...) with links where safe."""
    parts = []
    for key in PROVENANCE_KEYS:
        value = meta.get(key) if key != "licence" else (meta.get("licence") or meta.get("license"))
        if not value:
            continue
        if key == "repo":
            shown = link(value)
        elif key == "swhid" and str(value).startswith("swh:1:"):
            shown = link(SWH_RESOLVER + str(value), value)
        else:
            shown = esc(value)
        parts.append(f"<span class='sp-{key}'><i>{key}</i> {shown}</span>")
    url = meta.get("url")
    if url and str(url).startswith(("https://", "http://")):
        parts.append(f"<span class='sp-url'>{link(url)}</span>")
    return " · ".join(parts)


def fields_html(fields: Mapping[str, Any], *, skip: Iterable[str] = ("title",)) -> str:
    """Renders the stored display fields as a small escaped definition list."""
    skipped = set(skip)
    rows = [
        f"<div class='sp-field'><b>{esc(k)}</b>: {esc(_short(v))}</div>" for k, v in fields.items() if k not in skipped
    ]
    return "".join(rows)


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_hits(
    hits: Sequence[Any], *, total_hint: str = "", redact_pii: bool = False, query: str = "", page: int = 1
) -> str:
    """Renders ranked hits as HTML.

    Snippets are already escaped with ``<mark>`` added; everything else is escaped here.

    Args:
        hits: :class:`~spacerini.records.Hit` objects.
        total_hint: A line shown above the hits.
        redact_pii: Redact PII in snippets, fields and provenance first.
        query: The query (kept in a ``data-query`` attribute, so tests can wait for new results).
        page: The page number (``data-page``).

    Returns:
        The HTML.
    """
    attrs = f"data-query='{esc(query)}' data-page='{int(page)}'"
    if not hits:
        return f"<div class='sp-results' {attrs}><p class='sp-empty'>No results.</p></div>"
    parts = [f"<div class='sp-results' {attrs}>" + (f"<p class='sp-total'>{esc(total_hint)}</p>" if total_hint else "")]
    for h in hits:
        fields = dict(h.fields)
        meta = dict(h.meta)
        snippet = h.snippet
        if redact_pii:
            fields, meta, snippet = redact_value(fields), redact_value(meta), redact_snippet(snippet)
        title = fields.get("title") or meta.get("path") or h.docid
        parts.append(
            f"<div class='sp-hit' data-docid='{esc(h.docid)}'>"
            f"<div class='sp-head'><b>{h.rank}.</b> <code>{esc(title)}</code> "
            f"<small>id <span class='sp-docid'>{esc(h.docid)}</span> · score {h.score:.4f} · {esc(h.backend)}</small></div>"
            f"<div class='sp-snippet'><pre>{snippet}</pre></div>"
            f"<div class='sp-fields'>{fields_html(fields)}</div>"
            f"<div class='sp-meta'><small>{provenance_html(meta)}</small></div>"
            "</div>"
        )
    parts.append("</div>")
    return "\n".join(parts)


def render_exact(count: int, hits: Sequence[Mapping[str, Any]], *, page: int, page_size: int, query: str = "") -> str:
    """Renders the exact-count answer and one page of occurrences (dicts from the service)."""
    first = (page - 1) * page_size + 1 if hits else 0
    last = first + len(hits) - 1 if hits else 0
    parts = [
        f"<div class='sp-exact' data-query='{esc(query)}' data-page='{int(page)}'><p class='sp-count'><b>{count:,}</b> occurrence{'s' if count != 1 else ''}"
        + (f" · showing {first:,}–{last:,}" if hits else "")
        + "</p>"
    ]
    for h in hits:
        meta = h.get("meta") or {}
        where = meta.get("path") or h["docid"]
        parts.append(
            "<div class='sp-hit'>"
            f"<div class='sp-head'><b>{h['rank']}.</b> <code>{esc(where)}</code> "
            f"<small>id <span class='sp-docid'>{esc(h['docid'])}</span> · offset {int(h['offset'])}</small></div>"
            f"<div class='sp-snippet'><pre>{h['snippet']}</pre></div>"
            f"<div class='sp-meta'><small>{provenance_html(meta)}</small></div></div>"
        )
    parts.append("</div>")
    return "\n".join(parts)


def highlight_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """Escapes ``text`` and wraps the (merged, sorted) character spans in ``<mark>``."""
    out = []
    pos = 0
    for start, end in sorted(spans):
        start = max(start, pos)
        if end <= start:
            continue
        out.append(html.escape(text[pos:start], quote=False))
        out.append(f"<mark>{html.escape(text[start:end], quote=False)}</mark>")
        pos = end
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out)


def render_member(text: str, result: Mapping[str, Any]) -> str:
    """Renders a membership answer: the text with found spans highlighted, then their sources."""
    highlight = [(s["start"], s["end"]) for s in result["spans"]]
    head = (
        f"<p class='sp-coverage'><b>{result['coverage']:.1%}</b> of {len(text):,} characters found in the corpus"
        f" ({len(highlight)} span{'s' if len(highlight) != 1 else ''}, {esc(result['method'])})</p>"
    )
    body = f"<pre class='sp-member-text'>{highlight_spans(text, highlight)}</pre>"
    rows = []
    for s in result["spans"]:
        sources = s.get("sources") or []
        if not sources:
            continue
        srcs = "".join(
            f"<li><span class='sp-docid'>{esc(src['docid'])}</span> {provenance_html(src.get('meta') or {})}</li>"
            for src in sources
        )
        rows.append(
            f"<div class='sp-span'><code>[{s['start']}:{s['end']}]</code> {esc(_short(s['text'], 80))}"
            f" <small>{int(s.get('count', 0)):,}× in corpus</small><ul>{srcs}</ul></div>"
        )
    return f"<div class='sp-member'>{head}{body}{''.join(rows)}</div>"


def render_owner(result: Mapping[str, Any]) -> str:
    """Renders the "Am I in the corpus?" answer with repos, files and opt-out instructions."""
    parts = ["<div class='sp-owner'>"]
    if not result["matches"]:
        parts.append(f"<p class='sp-owner-none'>No owner named <b>{esc(result['query'])}</b> in this corpus.</p>")
    else:
        parts.append(
            f"<p class='sp-owner-total'><b>{int(result['total_docs']):,}</b> document(s) from "
            f"{len(result['matches'])} matching owner(s)</p>"
        )
    for m in result["matches"]:
        repos = "".join(f"<li>{link(r)} <small>{int(n):,} file(s)</small></li>" for r, n in m["repos"])
        files = "".join(
            f"<li><span class='sp-docid'>{esc(f['docid'])}</span> <code>{esc(f.get('path') or '')}</code></li>"
            for f in m["files"]
        )
        parts.append(
            f"<div class='sp-owner-match'><h4>{esc(m['owner'])} <small>score {m['score']:.2f} · "
            f"{int(m['docs']):,} file(s)</small></h4><b>Repositories</b><ul>{repos}</ul>"
            f"<details><summary>Files ({len(m['files'])} shown)</summary><ul>{files}</ul></details></div>"
        )
    parts.append(f"<div class='sp-optout'><b>Opting out</b><p>{esc(result['optout_instructions'])}</p></div></div>")
    return "".join(parts)


def render_trace(result: Mapping[str, Any], text: str) -> str:
    """Renders a :class:`spacerini.model.TraceResult` (as a dict) with spans and licences."""
    spans = [(s["start"], s["end"]) for s in result["spans"]]
    parts = [
        f"<p class='sp-coverage'><b>{result['coverage']:.1%}</b> of {int(result['chars']):,} characters found "
        f"verbatim in {len(spans)} span(s) of ≥ {int(result['min_len'])} characters"
        + (f"; licences: {esc(', '.join(result['licences']))}" if result["licences"] else "")
        + "</p>",
        f"<pre class='sp-member-text'>{highlight_spans(text, spans)}</pre>",
    ]
    for s in result["spans"]:
        srcs = "".join(
            f"<li><span class='sp-docid'>{esc(src['docid'])}</span> {provenance_html(src)}</li>" for src in s["sources"]
        )
        parts.append(
            f"<div class='sp-span'><code>[{s['start']}:{s['end']}]</code> {esc(_short(s['text'], 80))} "
            f"<small>{int(s['count']):,}× in corpus</small><ul>{srcs}</ul></div>"
        )
    return "<div class='sp-trace'>" + "".join(parts) + "</div>"
