"""The one use-case layer: every front end (CLI, Gradio tabs and named endpoints, JSON API,
Space) asks :class:`Service` and renders the typed answers it returns (:mod:`spacerini.records`:
:class:`~spacerini.records.SearchPage`, :class:`~spacerini.records.CountResult`,
:class:`~spacerini.records.FindPage`, :class:`~spacerini.records.Membership`,
:class:`~spacerini.records.OwnerResult`, :class:`~spacerini.records.Stats`,
:class:`~spacerini.records.FlagReceipt`, :class:`~spacerini.records.RequestReceipt`, and
:class:`~spacerini.model.tracing.TraceResult` for traces).

What must hold on every path is done here, once: limits on queries and pages, display-time PII
redaction (snippets redacted before they are cut, provenance redacted, PII queries refused; see
:mod:`spacerini.display`), and one bundle generation per answer.

Example:
    >>> from spacerini import open_bundle
    >>> from spacerini.service import Service
    >>> svc = Service(open_bundle("my-bundle"))  # doctest: +SKIP
    >>> page = svc.search("parser", k=5)  # doctest: +SKIP
    >>> page.hits[0].docid, page["hits"][0]["docid"]  # typed, or as its JSON  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar

from spacerini.app.flags import (
    FLAGS_PER_CLIENT,
    FLAGS_PER_WINDOW,
    MAX_DOCID_CHARS,
    MAX_FLAG_QUERY_CHARS,
    MAX_REASON_CHARS,
    RATE_WINDOW_S,
    FlagStore,
    HubSync,
    RateLimiter,
    checked_text,
    default_flags_path,
    persistent_destination,
)
from spacerini.app.render import redact_snippet
from spacerini.app.requests import (
    MAX_CONTACT_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    REQUESTS_PER_CLIENT,
    REQUESTS_PER_WINDOW,
    OptoutRequestStore,
    default_requests_path,
)
from spacerini.bundle import RANKED_BACKENDS
from spacerini.display import (
    PII_CHECKED_OCCURRENCES,
    corpus_pii_free_segments,
    exact_snippet,
    occurrences_pii,
    pii_free_segments,
    plain_snippet,
    redacted_record,
    redacted_text,
    redacted_window,
    refuse_pii_query,
    segment_matches,
    segment_member,
)
from spacerini.errors import BackendNotAvailableError, QueryError
from spacerini.model.tracing import union_length
from spacerini.records import (
    CountResult,
    FindPage,
    FlagReceipt,
    Membership,
    MemberSpan,
    Occurrence,
    OwnedFile,
    OwnerMatch,
    OwnerResult,
    RequestReceipt,
    SearchPage,
    Source,
    Stats,
    licence_and_language,
    top_counts,
)

logger = logging.getLogger(__name__)
_A = TypeVar("_A")

#: Largest page the app serves.
MAX_K = 100
#: Deepest offset the app pages to.
MAX_OFFSET = 10_000
#: Longest text accepted by the membership and trace tabs, in characters.
MAX_MEMBER_CHARS = 100_000
#: Shortest verbatim span reported by membership (with the exact backend), in characters.
MEMBER_MIN_LEN = 32
#: Categories shown in a breakdown plot before the rest is grouped as "(other)".
TOP_CATEGORIES = 15
#: Documents whose redacted display fields and provenance are kept (their redaction does not
#: depend on the query, so a document shown again costs nothing; ~1 KB each).
DISPLAY_CACHE_DOCS = 4_096
#: Redacted document texts kept for snippets (a page of hits is shown again when paging).
DISPLAY_CACHE_TEXTS = 256
#: Document ids shown redacted (they hold PII) that :meth:`Service.flag` can still take back.
SHOWN_IDS_KEPT = 65_536


def has_trace() -> bool:
    """True when ``spacerini.model`` with a ``trace`` function can be imported."""
    if importlib.util.find_spec("spacerini.model") is None:
        return False
    try:
        import spacerini.model as model

        return callable(getattr(model, "trace", None))
    except Exception:  # noqa: BLE001 - a broken optional module just hides the tab
        logger.warning("spacerini.model is present but not importable; the Trace tab is hidden", exc_info=True)
        return False


class LRUCache:
    """A small thread-safe least-recently-used map with a fixed capacity.

    Args:
        capacity: Entries kept; the least recently used one is dropped first.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Any, default: Any = None) -> Any:
        """The value for ``key`` (marked as used), or ``default``; a miss stores nothing."""
        with self._lock:
            if key not in self._data:
                return default
            self._data.move_to_end(key)
            return self._data[key]

    def get_or_make(self, key: Any, make: Callable[[], Any]) -> Any:
        """Returns the value for ``key``, calling ``make()`` (outside the lock) on a miss."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
        value = make()
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
        return value


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise QueryError(f"{name} must be an integer, not {value!r}") from None
    if not lo <= number <= hi:
        raise QueryError(f"{name} must be between {lo} and {hi}, not {number}")
    return number


class Service:
    """The app's capabilities over one bundle.

    Args:
        bundle: An opened :class:`~spacerini.bundle.Bundle`.
        redact_pii: Redact PII (emails, keys, passwords, public IPs) in everything shown.
        flags_path: Where "flag this result" reports go (default:
            :func:`~spacerini.app.flags.default_flags_path`; never inside the bundle).
        requests_path: Where opt-out requests go (default:
            :func:`~spacerini.app.requests.default_requests_path`; never inside the bundle).
        max_k: Largest page served (the CLI, for one operator, allows more than a public app).
        max_offset: Deepest offset served.
        max_text: Longest text checked for membership or traced, in characters.
    """

    def __init__(
        self,
        bundle: Any,
        *,
        redact_pii: bool = True,
        flags_path: str | Path | None = None,
        requests_path: str | Path | None = None,
        max_k: int = MAX_K,
        max_offset: int = MAX_OFFSET,
        max_text: int = MAX_MEMBER_CHARS,
    ) -> None:
        self.bundle = bundle
        self.redact_pii = redact_pii
        self.max_k = max_k
        self.max_offset = max_offset
        self.max_text = max_text
        dest = persistent_destination()
        self.flags = FlagStore(Path(flags_path) if flags_path else default_flags_path(bundle.path, dest), bundle_path=bundle.path)
        self.requests = OptoutRequestStore(
            Path(requests_path) if requests_path else default_requests_path(bundle.path, dest), bundle_path=bundle.path
        )
        self.hub: HubSync | None = None
        if dest is not None and dest.dataset:
            files = {self.flags.path: "flags", self.requests.path: "optout-requests"}
            hub = self.hub = HubSync(dest.dataset, token=dest.token, files=files)
            self.flags.on_change.append(lambda: hub.changed(self.flags.path))
            self.requests.on_change.append(lambda: hub.changed(self.requests.path))
        # (per client, all clients together) for reports and for requests
        self.flag_limits = (
            RateLimiter(FLAGS_PER_CLIENT, RATE_WINDOW_S, what="reports"),
            RateLimiter(FLAGS_PER_WINDOW, RATE_WINDOW_S, what="reports from everyone"),
        )
        self.request_limits = (
            RateLimiter(REQUESTS_PER_CLIENT, RATE_WINDOW_S, what="opt-out requests"),
            RateLimiter(REQUESTS_PER_WINDOW, RATE_WINDOW_S, what="opt-out requests from everyone"),
        )
        self._stats: tuple[Any, Stats] | None = None  # (the revision's cache key, its stats)
        # docid -> (fields, meta) as shown: redacted when redact_pii is set. Shared by every
        # answer, so the values are treated as read-only.
        self._display = LRUCache(DISPLAY_CACHE_DOCS)
        # (generation, docid) -> the document's redacted text, which snippets are cut from.
        self._texts = LRUCache(DISPLAY_CACHE_TEXTS)
        # (generation, text) -> the occurrences of an exact text that touch no PII (or None: all do not)
        self._clean = LRUCache(DISPLAY_CACHE_TEXTS)
        self._held = threading.local()  # .snap: the generation same_generation() holds in this thread
        # Document ids as shown (see _id): an id holding PII is shown redacted, with a tag keyed
        # by this process's secret; flag() maps the shown id back to the document.
        self._id_key = os.urandom(16)
        self._shown_ids = LRUCache(DISPLAY_CACHE_DOCS)  # docid -> shown id
        self._real_ids = LRUCache(SHOWN_IDS_KEPT)  # shown id -> docid, for ids that differ

    # -- what the bundle can do -------------------------------------------------------------
    @property
    def ranked_backends(self) -> list[str]:
        """Ranked backends offered by the search tab, default first."""
        have = set(self.bundle.backends)
        if {"bm25", "dense"} <= have:
            have.add("hybrid")
        return [b for b in RANKED_BACKENDS if b in have]

    @property
    def capabilities(self) -> list[str]:
        """Tabs the app shows: search, exact, member, owner, trace, stats."""
        have = set(self.bundle.backends)
        caps = []
        if self.ranked_backends:
            caps.append("search")
        if "exact" in have:
            caps.append("exact")
        if have & {"bloom", "exact"}:
            caps.append("member")
        if "owners" in have:
            caps.append("owner")
        if "exact" in have and has_trace():
            caps.append("trace")
        caps.append("stats")
        return caps

    @contextlib.contextmanager
    def same_generation(self) -> Iterator[None]:
        """Answers every call of this thread inside the block from one generation of the bundle
        (one answer made of several calls, such as a column of :meth:`Corpora.compare
        <spacerini.corpora.Corpora.compare>`, never mixes two). A switch that makes the held
        generation unreadable raises :class:`~spacerini.bundle.StaleGenerationError` out of the
        block; the caller retries the whole block."""
        pin = getattr(self.bundle, "pin", None)
        if pin is None or getattr(self._held, "snap", None) is not None:  # nothing to pin, or held already
            yield
            return
        with pin() as snap:
            self._held.snap = snap
            try:
                yield
            finally:
                self._held.snap = None

    def _pinned(self, answer: Callable[[Any], _A]) -> _A:
        """Runs ``answer(snapshot)`` on one generation of the bundle: every searcher, document
        and cache entry it reads is of that generation, and a switch in between is retried."""
        held = getattr(self._held, "snap", None)
        if held is not None:  # inside same_generation(): the caller retries the whole block
            return answer(held)
        pin = getattr(self.bundle, "pin", None)
        if pin is None:  # a plain object with the Bundle API (tests, custom front ends)
            return answer(self.bundle)
        from spacerini.bundle import StaleGenerationError

        for attempt in (0, 1):
            try:
                with pin() as snap:
                    return answer(snap)
            except StaleGenerationError:
                if attempt:
                    raise
                self.bundle.reload()
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _need(snap: Any, backend: str, what: str) -> Any:
        if backend not in snap.backends:
            raise BackendNotAvailableError(f"this bundle has no {backend} backend, so {what} is not available")
        return snap.searcher(backend)

    def _redacted(self, fields: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.redact_pii:
            return redacted_record(dict(fields)), redacted_record(dict(meta))
        return dict(fields), dict(meta)

    def _shown(self, snap: Any, docid: str, fields: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A document's display fields and provenance, redacted when asked (cached per generation)."""
        return self._display.get_or_make((_cache_key(snap), docid), lambda: self._redacted(fields, meta))

    def _display_text(self, snap: Any) -> Callable[[Any], str]:
        """The text snippets are cut from: the document's, PII redacted (cached per generation)."""
        key = _cache_key(snap)
        return lambda doc: self._texts.get_or_make((key, doc.id), lambda: redacted_text(doc.text))

    def _id(self, docid: str) -> str:
        """A document id as shown. When redacting, an id that holds PII (an email in a path, a
        key in a URL) is shown redacted, followed by ``~`` and a tag that tells such ids apart:
        10 hex digits of an HMAC of the id under a key this process drew at random, so the tag
        cannot be checked against a guessed id. :meth:`flag` takes a shown id back."""
        if not self.redact_pii:
            return docid

        def make() -> str:
            text = redacted_text(docid)
            if text == docid:
                return docid
            tag = hmac.new(self._id_key, docid.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:10]
            shown = f"{text}~{tag}"
            self._real_ids.get_or_make(shown, lambda: docid)
            return shown

        return self._shown_ids.get_or_make(docid, make)

    def _real_id(self, shown: str) -> str:
        """The document a shown id names (:meth:`_id`): itself unless it was shown redacted."""
        if not self.redact_pii:
            return shown
        return self._real_ids.get(shown, shown)

    def _meta(self, snap: Any, docid: str) -> dict[str, Any]:
        def make() -> tuple[dict[str, Any], dict[str, Any]]:
            doc = snap.doc(docid)
            return self._redacted(doc.fields, doc.meta)

        try:
            return dict(self._display.get_or_make((_cache_key(snap), docid), make)[1])
        except KeyError:
            return {}

    # -- capabilities -----------------------------------------------------------------------
    def search(
        self, query: str, backend: str = "", k: int = 10, offset: int = 0, *, snippets: bool = True
    ) -> SearchPage:
        """Ranked search: hits with snippets, stored fields and provenance.

        Args:
            query: Free text.
            backend: A ranked backend (default: the bundle's default).
            k: Page size, 1 to ``max_k``.
            offset: Hits skipped, 0 to ``max_offset``.
            snippets: Add highlighted snippets (most of a BM25 query's cost; API clients that
                only need ids, scores and provenance can skip them).

        Raises:
            QueryError: Bad query, k or offset, or (when redacting) a query that is itself PII.
            BackendNotAvailableError: The backend is not in the bundle.
        """
        k = _int(k, "k", 1, self.max_k)
        offset = _int(offset, "offset", 0, self.max_offset)
        if self.redact_pii:  # its top hit would confirm the secret is in the corpus, as a count would
            from spacerini.bundle import check_query

            refuse_pii_query(check_query(query), verb="search for")

        def answer(snap: Any) -> SearchPage:
            if not backend and not self.ranked_backends:  # said here: the bundle's own error names its path
                raise BackendNotAvailableError("this bundle has no ranked backend (bm25, dense or exact): search is not available")
            name = backend or snap.default_backend()
            if name not in self.ranked_backends:
                raise BackendNotAvailableError(
                    f"backend {name!r} is not available here: choose from {', '.join(self.ranked_backends)}"
                )
            if name == "exact" and self.redact_pii:
                clean = self._clean_occurrences(snap, query)
                if clean is not None:  # some occurrences lie inside PII: ranked from the others
                    hits = self._exact_hits(snap, query, clean, k=k, offset=offset, snippets=snippets)
                    return SearchPage(query, name, k, offset, tuple(hits), _generation(snap))
            # Redacting, an exact hit's snippet is cut below around its first occurrence: the
            # bundle's own (a plain one, no match shown) would be made only to be replaced.
            recut = name == "exact" and self.redact_pii and snippets
            hits = snap.search(
                query, k=k, offset=offset, backend=name, snippets=snippets and not recut,
                snippet_text=self._display_text(snap) if self.redact_pii else None,
                snippet_redact=redacted_window if self.redact_pii else None,
            )  # fmt: skip
            shown = []
            for h in hits:
                fields, meta = self._shown(snap, h.docid, h.fields, h.meta)
                if recut:
                    doc = snap.doc(h.docid)
                    at = doc.text.find(query)
                    snippet = (
                        exact_snippet(doc.text, at, at + len(query), context=40)
                        if at >= 0
                        else plain_snippet(self._display_text(snap)(doc))  # as the bundle cuts it
                    )
                    h = replace(h, snippet=snippet)
                shown.append(replace(h, docid=self._id(h.docid), fields=fields, meta=meta))  # cached values untouched
            return SearchPage(query, name, k, offset, tuple(shown), _generation(snap))

        return self._pinned(answer)

    def hits(self, result: SearchPage) -> list[Any]:
        """The hits of a :meth:`search` page (for rendering)."""
        return list(result.hits)

    def count(self, text: str) -> CountResult:
        """Exact occurrences of ``text`` (overlapping ones included; whitespace-only text is counted too).

        Raises:
            QueryError: Bad text, or (when redacting) text that is itself PII.
        """
        text = _exact_text(text)
        if self.redact_pii:
            refuse_pii_query(text, verb="count")

        def answer(snap: Any) -> CountResult:
            total = int(self._need(snap, "exact", "exact counting").count(text))
            clean = self._clean_occurrences(snap, text, total) if self.redact_pii else None
            return CountResult(text, total if clean is None else len(clean), _generation(snap))

        return self._pinned(answer)

    def find(self, text: str, k: int = 10, offset: int = 0) -> FindPage:
        """The total count and one page of exact occurrences with snippets and provenance.

        Snippets are cut after redaction (see :mod:`spacerini.display`).

        Raises:
            QueryError: Bad text, k or offset, or (when redacting) text that is itself PII.
        """
        text = _exact_text(text)
        if self.redact_pii:
            refuse_pii_query(text, verb="find")
        k = _int(k, "k", 1, self.max_k)
        offset = _int(offset, "offset", 0, self.max_offset)

        def answer(snap: Any) -> FindPage:
            exact = self._need(snap, "exact", "exact search")
            clean = self._clean_occurrences(snap, text) if self.redact_pii else None
            if clean is not None:  # some occurrences lie inside PII: paged from the others
                page = []
                for rank, (docid, at) in enumerate(clean[offset : offset + k], start=offset + 1):
                    snippet = exact_snippet(snap.doc(docid).text, at, at + len(text))
                    page.append(Occurrence(rank, self._id(docid), at, snippet, self._meta(snap, docid)))
                return FindPage(text, len(clean), k, offset, tuple(page), _generation(snap))
            hits = []
            for h in exact.find(text, k=k, offset=offset):
                snippet = h.snippet
                if self.redact_pii:  # redact the document around the match, then cut the window
                    try:
                        snippet = exact_snippet(snap.doc(h.docid).text, h.offset, h.offset + len(text))
                    except KeyError:
                        snippet = redact_snippet(h.snippet)
                hits.append(Occurrence(h.rank, self._id(h.docid), h.offset, snippet, self._meta(snap, h.docid)))
            return FindPage(text, int(exact.count(text)), k, offset, tuple(hits), _generation(snap))

        return self._pinned(answer)

    def member(self, text: str) -> Membership:
        """Which spans of ``text`` are in the corpus, with their sources when the bundle has exact.

        With a Bloom sketch the spans are the sketch's (probable) spans; with the exact backend
        the maximal verbatim spans of at least ``MEMBER_MIN_LEN`` characters are listed with the
        first documents that hold them (and, without a sketch, are the spans).

        Raises:
            QueryError: Empty, or longer than ``max_text``.
            BackendNotAvailableError: Neither bloom nor exact is in the bundle.
        """
        _check_text(text, "check", self.max_text)

        def answer(snap: Any) -> Membership:
            have = set(snap.backends)
            if not have & {"bloom", "exact"}:
                raise BackendNotAvailableError(
                    "this bundle has neither a bloom nor an exact backend: membership is not available"
                )
            # Redacting: the stretches around the PII of the text are checked alone, so that no
            # answer confirms a pasted secret is in the corpus (display.pii_free_segments), nor a
            # part of one that the corpus holds only inside PII (corpus_pii_free_segments).
            segments, found = self._safe_segments(snap, text, MEMBER_MIN_LEN)
            exact_spans: list[MemberSpan] = []
            if "exact" in have:
                if found is None:
                    found = segment_matches(snap.searcher("exact"), text, segments, min_len=MEMBER_MIN_LEN, max_docs=5)
                for span in found:
                    sources = tuple(Source(self._id(d), self._meta(snap, d)) for d in span.docids)
                    exact_spans.append(MemberSpan(span.start, span.end, span.text, span.count, sources))
            if "bloom" not in have:
                covered = union_length([(s.start, s.end) for s in exact_spans])
                return Membership(
                    len(text), "exact", covered / len(text), tuple(exact_spans), tuple(exact_spans),
                    generation=_generation(snap),
                )  # fmt: skip
            m = segment_member(snap.searcher("bloom"), text, segments)
            spans = []
            for start, end in m.spans:  # exact sources attached to the sketch spans they overlap
                inside = [x for x in exact_spans if x.start < end and x.end > start]
                sources = tuple(src for x in inside for src in x.sources)[:5]
                spans.append(MemberSpan(start, end, text[start:end], max((x.count for x in inside), default=0), sources))
            return Membership(
                len(text), "bloom sketch", m.coverage, tuple(spans), tuple(exact_spans),
                m.ngrams_checked, m.ngrams_found, _generation(snap),
            )  # fmt: skip

        return self._pinned(answer)

    def owner(self, name: str, limit: int = 100) -> OwnerResult:
        """"Am I in the corpus?": matching owners with their repos and files, and how to opt out.

        Raises:
            QueryError: No name, a name over 200 characters, or a bad limit.
        """
        limit = _int(limit, "limit", 1, 1_000)
        if isinstance(name, str) and len(name) > 200:
            raise QueryError("an owner name is at most 200 characters long")

        def answer(snap: Any) -> OwnerResult:
            searcher = self._need(snap, "owners", "owner lookup")
            res = searcher.owner(name, limit=limit)
            matches = []
            shown = []
            for m in res.matches:
                # an owner may be an email address, a repo URL may hold a password
                owner = redacted_record(m.owner) if self.redact_pii else m.owner
                if owner != m.owner and m.score < 1.0:
                    # an owner that is PII answers only to itself: a near match's score would let
                    # anyone guess it letter by letter
                    continue
                files = []
                for docid in m.files:
                    meta = self._meta(snap, docid)
                    files.append(OwnedFile(self._id(docid), str(meta.get("path", "")), str(meta.get("repo", ""))))
                repos = [(redacted_record(r) if self.redact_pii else r, c) for r, c in m.repos]
                matches.append(OwnerMatch(owner, m.score, m.docs, tuple(repos), tuple(files)))
                shown.append(m.owner)
            # of the matches shown, a co-owned document once
            total = res.total_docs if len(shown) == len(res.matches) else searcher.distinct_docs(shown)
            return OwnerResult(res.query, tuple(matches), total, res.optout_instructions, _generation(snap))

        return self._pinned(answer)

    def trace(self, text: str, min_len: int = 32) -> Any:
        """Traces ``text`` back to the documents that hold its spans (``spacerini.model.trace``).

        Returns:
            A :class:`spacerini.model.tracing.TraceResult`, its sources redacted when redacting.
        """
        _check_text(text, "trace", self.max_text)
        min_len = _int(min_len, "min_len", 8, 10_000)
        from spacerini.model import trace

        def answer(snap: Any) -> Any:
            segments = self._safe_segments(snap, text, min_len)[0] if self.redact_pii else None  # see member()
            result = trace(snap, text, min_len=min_len, segments=segments)
            if not self.redact_pii:
                return result
            spans = tuple(
                replace(span, sources=tuple(replace(_redacted_source(src), docid=self._id(src.docid)) for src in span.sources))
                for span in result.spans
            )
            return replace(result, spans=spans)

        return self._pinned(answer)

    def flag(self, query: str, docid: str, reason: str, *, client: str = "local") -> FlagReceipt:
        """Records a "flag this result" report about a document of the bundle.

        Raises:
            QueryError: No such document, or a field is too long.
            RateLimitedError: ``client`` (or everyone together) sent too many reports lately.
        """
        # Checked before counting, so that a mistake does not use up the client's allowance.
        docid = checked_text(docid, "document id", MAX_DOCID_CHARS)
        checked_text(query, "flagged query", MAX_FLAG_QUERY_CHARS)
        checked_text(reason, "reason", MAX_REASON_CHARS)
        if not docid:
            raise QueryError("pick a result to flag (its document id)")
        shown, docid = docid, self._real_id(docid)  # the report names the document, the receipt what was shown
        missing = f"this corpus has no document {redacted_text(shown[:100])!r}: pick a result to flag"
        try:
            self.bundle.doc(docid)
        except KeyError:
            raise QueryError(missing) from None
        if self._id(docid) != shown:  # an id that holds PII answers only to how it was shown
            raise QueryError(missing)
        _limit(self.flag_limits, client)
        rec = self.flags.add(query=query, docid=docid, reason=reason)
        return FlagReceipt(rec["at"], rec["bundle"], rec["query"], shown, rec["reason"])

    def optout_request(self, name: str, contact: str, message: str = "", *, client: str = "local") -> RequestReceipt:
        """Files an opt-out request (pending until an operator applies it); returns its id and status.

        Raises:
            QueryError: The name or contact is empty, or a field is too long.
            RateLimitedError: ``client`` (or everyone together) filed too many requests lately.
        """
        checked_text(name, "name or handle", MAX_NAME_CHARS, required=True)
        checked_text(contact, "contact", MAX_CONTACT_CHARS, required=True)
        checked_text(message, "note", MAX_MESSAGE_CHARS)
        _limit(self.request_limits, client)
        rec = self.requests.add(name=name, contact=contact, message=message)
        return RequestReceipt(rec["id"], rec["status"], rec["at"])

    # -- statistics -------------------------------------------------------------------------
    def stats(self) -> Stats:
        """Document count, sizes, licence and language breakdowns, preprocessing reports and the
        audit log, without the build machine's paths (computed once per generation)."""

        def answer(snap: Any) -> Stats:
            key = _cache_key(snap)
            cached = self._stats  # one read: the key and the stats it was computed for
            if cached is not None and cached[0] == key:
                return cached[1]
            manifest = snap.manifest
            counts = manifest.get("counts", {})
            licences: Counter[str] = Counter(counts.get("licences") or {})
            languages: Counter[str] = Counter(counts.get("languages") or {})
            if "licences" not in counts:  # a bundle from before the build counted them: scan once
                for row in snap.docstore.iter_meta(columns=("fields", "meta")):
                    meta = json.loads(row["meta"]) if row["meta"] else {}
                    fields = json.loads(row["fields"]) if row["fields"] else {}
                    licence, language = licence_and_language(meta, fields)
                    licences[licence] += 1
                    languages[language] += 1
            stats = Stats(
                generation=_generation(snap),
                docs=len(snap),
                text_bytes=int(counts.get("text_bytes", 0)),
                bundle_bytes=sum(int(v.get("size", 0)) for v in manifest.get("checksums", {}).values()),
                backends=tuple(snap.backends),
                created=manifest.get("created"),
                source=strip_paths(manifest.get("source")),
                licences=_top(self._shown_counts(licences)),
                languages=_top(self._shown_counts(languages)),
                preprocess=strip_paths(list(manifest.get("preprocess", []))),
                audit_log=public_audit_log(manifest.get("audit_log", [])),
            )
            self._stats = (key, stats)
            return stats

        return self._pinned(answer)

    def _safe_segments(self, snap: Any, text: str, min_len: int) -> tuple[list[tuple[int, int]], list[Any] | None]:
        """The stretches of ``text`` that membership and tracing check: all of it, or when
        redacting, those clear of its own PII and of what the corpus holds only inside PII; with
        the exact backend's spans in them (5 documents each) when finding the stretches needed
        them, else None."""
        if not self.redact_pii:
            return [(0, len(text))], None
        segments = pii_free_segments(text)
        if "exact" not in snap.backends:  # a Bloom sketch alone cannot tell where its n-grams were
            return segments, None
        return corpus_pii_free_segments(
            snap.searcher("exact"), lambda docid: snap.doc(docid).text, text, segments, min_len=min_len
        )

    def _clean_occurrences(self, snap: Any, text: str, total: int | None = None) -> list[tuple[str, int]] | None:
        """The occurrences of ``text`` that touch no PII of their documents, as ``(docid, char
        offset)`` in the exact backend's order, when some do; None when none does (or when there
        are more than :data:`PII_CHECKED_OCCURRENCES`).

        A query is refused when it is itself PII (:func:`~spacerini.display.refuse_pii_query`),
        but a part of a secret is not: without this check a count of ``AKIAIOSFODNN7EXAMP`` or
        ``alice.jones@gmail`` confirmed, a character at a time, all of a key or an address but
        its last character. An occurrence inside a span that is redacted on display is not
        counted, found or ranked, as if the corpus held the placeholder (it shows only that).
        A text that occurs more often than the limit is not part of one secret; it is answered
        as it is.
        """
        exact = snap.searcher("exact")
        total = int(exact.count(text)) if total is None else total
        if total == 0 or total > PII_CHECKED_OCCURRENCES:
            return None
        found = self._clean.get_or_make((_cache_key(snap), text), lambda: self._check_occurrences(snap, exact, text, total))
        return None if found is None else list(found)

    def _check_occurrences(self, snap: Any, exact: Any, text: str, total: int) -> tuple[tuple[str, int], ...] | None:
        # An occurrence touches PII when a span redacted on display reaches into it.
        occurrences = occurrences_pii(exact, lambda docid: snap.doc(docid).text, text, k=total)
        clean = [(docid, at) for docid, at, found in occurrences if not found]
        return None if len(clean) == total else tuple(clean)

    def _exact_hits(
        self, snap: Any, query: str, clean: list[tuple[str, int]], *, k: int, offset: int, snippets: bool
    ) -> list[Any]:
        """The exact backend's ranking (documents by occurrences, ties in corpus order) of the
        occurrences in ``clean``, with the first one's snippet, redacted."""
        from spacerini.records import Hit

        per_doc: dict[str, list[int]] = {}
        for docid, at in clean:  # in corpus order
            per_doc.setdefault(docid, []).append(at)
        ranked = sorted(per_doc.items(), key=lambda item: -len(item[1]))  # stable: ties keep corpus order
        hits = []
        for rank, (docid, offsets) in enumerate(ranked[offset : offset + k], start=offset + 1):
            doc = snap.doc(docid)
            snippet = exact_snippet(doc.text, offsets[0], offsets[0] + len(query), context=40) if snippets else ""
            fields, meta = self._shown(snap, docid, doc.fields, doc.meta)
            hits.append(Hit(self._id(docid), float(len(offsets)), rank, snippet, fields, meta, "exact"))
        return hits

    def _shown_counts(self, counts: Counter[str]) -> Counter[str]:
        """A licence or language breakdown as shown: its names are corpus text (a licence field
        may hold an author's email address), redacted when redacting, and the counts of names
        that become one summed."""
        if not self.redact_pii:
            return counts
        shown: Counter[str] = Counter()
        for name, n in counts.items():
            shown[redacted_text(str(name))] += n
        return shown


#: Audit log keys that list digests of what an opt-out removed. A SHA-256 of a document id is
#: no secret where the ids can be listed (a public dataset, paths of a code corpus): hashing
#: them tells which documents, and so whose, were removed. They stay in the manifest (a rebuild
#: needs them) and are left out of what visitors see.
AUDIT_DIGESTS = ("removed_id_sha256", "removed_owner_hmac")


def public_audit_log(audit_log: Any) -> list[Any]:
    """The audit log as the app shows it: each entry's counts, times and request ids, without
    the build machine's paths and without the digests of :data:`AUDIT_DIGESTS`."""
    entries = audit_log if isinstance(audit_log, list) else []
    out = []
    for entry in strip_paths(entries):
        if isinstance(entry, Mapping):
            entry = {k: v for k, v in entry.items() if k not in AUDIT_DIGESTS}
        out.append(entry)
    return out


def _generation(snap: Any) -> int:
    return int(getattr(snap, "generation", 1))


def _cache_key(snap: Any) -> tuple[int, Any]:
    """What the service's caches are keyed by: the generation and the manifest file's identity
    (a Space following a Hub bundle can switch to a revision built elsewhere that has the same
    generation number; its documents must not be shown from the old one's cache)."""
    return _generation(snap), getattr(snap, "key", None)


def _redacted_source(source: Any) -> Any:
    """A traced span's source with its provenance strings redacted (the document id kept)."""
    changes = {
        name: redacted_record(value)
        for name in source.__dataclass_fields__
        if name != "docid" and isinstance(value := getattr(source, name), str)
    }
    return replace(source, **changes)


#: Manifest sections that may name files of the build machine (the corpus, an opt-out list).
PATH_SECTIONS = ("source", "preprocess", "audit_log")


def public_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` to publish (a Space, a dataset repo): without the build machine's
    paths in :data:`PATH_SECTIONS`, and with the audit log as visitors see it
    (:func:`public_audit_log`: no digests of what opt-outs removed). The backends' parameters
    are kept as they are (the app needs them). The bundle's own manifest keeps the digests: a
    rebuild of it from its source leaves those documents out again."""
    out = {k: strip_paths(v) if k in PATH_SECTIONS else v for k, v in manifest.items()}
    if "audit_log" in out:
        out["audit_log"] = public_audit_log(manifest["audit_log"])
    return out


def strip_paths(value: Any) -> Any:
    """``value`` with every absolute local path replaced by its last component
    (``/home/me/corpus.jsonl`` -> ``corpus.jsonl``), in nested dicts and lists too."""
    if isinstance(value, Mapping):
        return {k: strip_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strip_paths(v) for v in value]
    if isinstance(value, str) and _is_local_path(value):
        windows = "\\" in value and PureWindowsPath(value).is_absolute()
        return (PureWindowsPath(value) if windows else PurePosixPath(value)).name or value
    return value


def _is_local_path(text: str) -> bool:
    if "\n" in text or len(text) > 4_096:
        return False
    if text.startswith(("~/", "file://")):
        return True
    return PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()


def _limit(limiters: tuple[Any, ...], client: str) -> None:
    per_client, everyone = limiters
    per_client.check(client)
    everyone.check("*")


def _top(counter: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple((k, v) for k, v in top_counts(counter, TOP_CATEGORIES).items())


def _exact_text(text: Any) -> str:
    """``check_query`` for exact text, where whitespace is text like any other (``" "``, ``"\\n"``
    and ``"\\r\\n"`` are counted and found), so only ``""`` is empty."""
    from spacerini.bundle import MAX_QUERY_CHARS, check_query

    if isinstance(text, str) and text and not text.strip():  # holds no NUL: NUL is not whitespace
        if len(text) > MAX_QUERY_CHARS:
            raise QueryError(f"the query is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,}")
        return text
    return check_query(text)


def _check_text(text: Any, verb: str, limit: int = MAX_MEMBER_CHARS) -> None:
    """Membership and trace input: a non-empty string of at most ``limit`` characters."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError(f"the text is empty: give some text or code to {verb}")
    if len(text) > limit:
        raise QueryError(f"the text is {len(text):,} characters long; this service {verb}s at most {limit:,}")
