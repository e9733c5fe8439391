"""What the app can do with a bundle, as plain functions returning JSON-ready dicts.

The Gradio app and its API endpoints are thin wrappers over :class:`AppService`; it calls the
same Python API as the CLI (``Bundle.search``, the exact/bloom/owners searchers,
``spacerini.model.trace``) and adds only paging limits and display-time PII redaction.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

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
from spacerini.display import exact_snippet, redacted_record, redacted_text, refuse_pii_query
from spacerini.errors import BackendNotAvailableError, QueryError
from spacerini.model.tracing import union_length
from spacerini.records import licence_and_language, top_counts

logger = logging.getLogger(__name__)

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


class AppService:
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
        self._stats: dict[str, Any] | None = None
        # docid -> (fields, meta) as shown: redacted when redact_pii is set. Shared by every
        # answer, so the values are treated as read-only.
        self._display = LRUCache(DISPLAY_CACHE_DOCS)
        # (generation, docid) -> the document's redacted text, which snippets are cut from.
        self._texts = LRUCache(DISPLAY_CACHE_TEXTS)

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

    def _need(self, backend: str, what: str) -> Any:
        if backend not in self.bundle.backends:
            raise BackendNotAvailableError(f"this bundle has no {backend} backend, so {what} is not available")
        return self.bundle.searcher(backend)

    def _redacted(self, fields: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.redact_pii:
            return redacted_record(dict(fields)), redacted_record(dict(meta))
        return dict(fields), dict(meta)

    def _shown(self, docid: str, fields: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A document's display fields and provenance, redacted when asked (cached per document)."""
        return self._display.get_or_make((self.bundle.generation, docid), lambda: self._redacted(fields, meta))

    def _display_text(self, doc: Any) -> str:
        """A document's text with PII redacted, to cut snippets from (cached per generation)."""
        return self._texts.get_or_make((self.bundle.generation, doc.id), lambda: redacted_text(doc.text))

    def _meta(self, docid: str) -> dict[str, Any]:
        def make() -> tuple[dict[str, Any], dict[str, Any]]:
            doc = self.bundle.doc(docid)
            return self._redacted(doc.fields, doc.meta)

        try:
            return dict(self._display.get_or_make((self.bundle.generation, docid), make)[1])
        except KeyError:
            return {}

    # -- capabilities -----------------------------------------------------------------------
    def search(
        self, query: str, backend: str = "", k: int = 10, offset: int = 0, *, snippets: bool = True
    ) -> dict[str, Any]:
        """Ranked search: hits with snippets, stored fields and provenance.

        Args:
            query: Free text.
            backend: A ranked backend (default: the bundle's default).
            k: Page size, 1 to ``max_k``.
            offset: Hits skipped, 0 to ``max_offset``.
            snippets: Add highlighted snippets (most of a BM25 query's cost; API clients that
                only need ids, scores and provenance can skip them).

        Raises:
            QueryError: Bad query, k or offset.
            BackendNotAvailableError: The backend is not in the bundle.
        """
        k = _int(k, "k", 1, self.max_k)
        offset = _int(offset, "offset", 0, self.max_offset)
        name = backend or self.bundle.default_backend()
        if name not in self.ranked_backends:
            raise BackendNotAvailableError(
                f"backend {name!r} is not available here: choose from {', '.join(self.ranked_backends)}"
            )
        hits = self.bundle.search(
            query, k=k, offset=offset, backend=name, snippets=snippets,
            snippet_text=self._display_text if self.redact_pii else None,
        )  # fmt: skip
        out = []
        for h in hits:
            fields, meta = self._shown(h.docid, h.fields, h.meta)
            out.append(replace(h, fields=fields, meta=meta).to_dict())  # shallow copies: the cached values stay untouched
        return {"query": query, "backend": name, "k": k, "offset": offset, "hits": out}

    def hits(self, result: Mapping[str, Any]) -> list[Any]:
        """Turns a :meth:`search` result back into Hit records (for rendering)."""
        from spacerini.records import Hit

        return [Hit(**h) for h in result["hits"]]

    def count(self, text: str) -> dict[str, Any]:
        """Exact occurrences of ``text`` (overlapping ones included)."""
        from spacerini.bundle import check_query

        text = check_query(text)
        if self.redact_pii:
            refuse_pii_query(text, verb="count")
        return {"query": text, "count": int(self._need("exact", "exact counting").count(text))}

    def find(self, text: str, k: int = 10, offset: int = 0) -> dict[str, Any]:
        """The total count and one page of exact occurrences with snippets and provenance."""
        from spacerini.bundle import check_query

        text = check_query(text)
        if self.redact_pii:
            refuse_pii_query(text, verb="find")
        k = _int(k, "k", 1, self.max_k)
        offset = _int(offset, "offset", 0, self.max_offset)
        exact = self._need("exact", "exact search")
        hits = []
        for h in exact.find(text, k=k, offset=offset):
            snippet = h.snippet
            if self.redact_pii:  # redact the document around the match, then cut the window
                try:
                    doc_text = self.bundle.doc(h.docid).text
                except KeyError:
                    doc_text = None
                if doc_text is not None:
                    snippet = exact_snippet(doc_text, h.offset, h.offset + len(text))
                else:
                    snippet = redact_snippet(h.snippet)
            hits.append({"rank": h.rank, "docid": h.docid, "offset": h.offset, "snippet": snippet, "meta": self._meta(h.docid)})
        return {"query": text, "count": int(exact.count(text)), "k": k, "offset": offset, "hits": hits}

    def member(self, text: str) -> dict[str, Any]:
        """Which spans of ``text`` are in the corpus, with their sources when the bundle has exact.

        With a Bloom sketch the spans are the sketch's (probable) spans; with the exact backend
        the maximal verbatim spans of at least ``MEMBER_MIN_LEN`` characters are listed with the
        first documents that hold them (and, without a sketch, highlighted).

        Raises:
            QueryError: Empty, or longer than ``MAX_MEMBER_CHARS``.
            BackendNotAvailableError: Neither bloom nor exact is in the bundle.
        """
        _check_text(text, "check", self.max_text)
        have = set(self.bundle.backends)
        if not have & {"bloom", "exact"}:
            raise BackendNotAvailableError("this bundle has neither a bloom nor an exact backend: membership is not available")
        result: dict[str, Any] = {"chars": len(text), "spans": [], "exact_spans": []}
        if "exact" in have:
            for span in self.bundle.searcher("exact").longest_matches(text, min_len=MEMBER_MIN_LEN, max_docs=5):
                result["exact_spans"].append(
                    {
                        "start": span.start,
                        "end": span.end,
                        "text": span.text,
                        "count": span.count,
                        "sources": [{"docid": d, "meta": self._meta(d)} for d in span.docids],
                    }
                )
        if "bloom" in have:
            m = self.bundle.searcher("bloom").member(text)
            result.update(
                method="bloom sketch",
                coverage=m.coverage,
                ngrams_checked=m.ngrams_checked,
                ngrams_found=m.ngrams_found,
                spans=[{"start": s, "end": e, "text": text[s:e]} for s, e in m.spans],
            )
            # Attach exact sources to the sketch spans they overlap.
            for span in result["spans"]:
                inside = [x for x in result["exact_spans"] if x["start"] < span["end"] and x["end"] > span["start"]]
                span["sources"] = [src for x in inside for src in x["sources"]][:5]
                span["count"] = max((x["count"] for x in inside), default=0)
        else:
            covered = union_length([(s["start"], s["end"]) for s in result["exact_spans"]])
            result.update(method="exact", coverage=covered / len(text), spans=result["exact_spans"])
        return result

    def owner(self, name: str, limit: int = 100) -> dict[str, Any]:
        """"Am I in the corpus?": matching owners with their repos and files, and how to opt out."""
        limit = _int(limit, "limit", 1, 1_000)
        if isinstance(name, str) and len(name) > 200:
            raise QueryError("an owner name is at most 200 characters long")
        res = self._need("owners", "owner lookup").owner(name, limit=limit)
        matches = []
        for m in res.matches:
            files = []
            for docid in m.files:
                meta = self._meta(docid)
                files.append({"docid": docid, "path": meta.get("path", ""), "repo": meta.get("repo", "")})
            owner, repos = m.owner, [list(r) for r in m.repos]
            if self.redact_pii:  # an owner may be an email address, a repo URL may hold a password
                owner, repos = redacted_record(owner), redacted_record(repos)
            matches.append({"owner": owner, "score": m.score, "docs": m.docs, "repos": repos, "files": files})
        return {
            "query": res.query,
            "matches": matches,
            "total_docs": res.total_docs,
            "optout_instructions": res.optout_instructions,
        }

    def trace(self, text: str, min_len: int = 32) -> dict[str, Any]:
        """Traces ``text`` back to the documents that hold its spans (``spacerini.model.trace``)."""
        _check_text(text, "trace", self.max_text)
        from spacerini.model import trace

        result = trace(self.bundle, text, min_len=_int(min_len, "min_len", 8, 10_000)).to_dict()
        if self.redact_pii:
            for span in result["spans"]:
                span["sources"] = [redacted_record(s) for s in span["sources"]]
        return result

    def flag(self, query: str, docid: str, reason: str, *, client: str = "local") -> dict[str, Any]:
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
        try:
            self.bundle.doc(docid)
        except KeyError:
            raise QueryError(f"this corpus has no document {docid[:100]!r}: pick a result to flag") from None
        _limit(self.flag_limits, client)
        return self.flags.add(query=query, docid=docid, reason=reason)

    def optout_request(self, name: str, contact: str, message: str = "", *, client: str = "local") -> dict[str, Any]:
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
        return {"id": rec["id"], "status": rec["status"], "at": rec["at"]}

    # -- statistics -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Document count, sizes, licence and language breakdowns, preprocessing reports (cached)."""
        generation = self.bundle.generation  # a new generation (a rebuild, an opt-out) is counted anew
        if self._stats is not None and self._stats.get("generation") == generation:
            return self._stats
        manifest = self.bundle.manifest
        counts = manifest.get("counts", {})
        licences: Counter[str] = Counter(counts.get("licences") or {})
        languages: Counter[str] = Counter(counts.get("languages") or {})
        if "licences" not in counts:  # a bundle from before the build counted them: scan once
            for row in self.bundle.docstore.iter_meta(columns=("fields", "meta")):
                meta = json.loads(row["meta"]) if row["meta"] else {}
                fields = json.loads(row["fields"]) if row["fields"] else {}
                licence, language = licence_and_language(meta, fields)
                licences[licence] += 1
                languages[language] += 1
        disk = sum(int(v.get("size", 0)) for v in manifest.get("checksums", {}).values())
        self._stats = {
            "generation": generation,
            "docs": len(self.bundle),
            "text_bytes": int(manifest.get("counts", {}).get("text_bytes", 0)),
            "bundle_bytes": disk,
            "backends": list(self.bundle.backends),
            "created": manifest.get("created"),
            "source": strip_paths(manifest.get("source")),
            "licences": _top(licences),
            "languages": _top(languages),
            "preprocess": strip_paths(list(manifest.get("preprocess", []))),
            "audit_log": strip_paths(list(manifest.get("audit_log", []))),
        }
        return self._stats


#: Manifest sections that may name files of the build machine (the corpus, an opt-out list).
PATH_SECTIONS = ("source", "preprocess", "audit_log")


def public_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` without the build machine's paths in :data:`PATH_SECTIONS`; the
    backends' parameters are kept as they are (the app needs them)."""
    return {k: strip_paths(v) if k in PATH_SECTIONS else v for k, v in manifest.items()}


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


def _top(counter: Counter[str]) -> list[list[Any]]:
    return [[k, v] for k, v in top_counts(counter, TOP_CATEGORIES).items()]


def _check_text(text: Any, verb: str, limit: int = MAX_MEMBER_CHARS) -> None:
    """Membership and trace input: a non-empty string of at most ``limit`` characters."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError(f"paste some text or code to {verb}")
    if len(text) > limit:
        raise QueryError(f"the text is {len(text):,} characters long; this service {verb}s at most {limit:,}")
