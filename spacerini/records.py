"""Typed frozen records that cross every boundary: :class:`Doc`, :class:`Hit`, :class:`BuildReport`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Doc:
    """One document of a corpus.

    Attributes:
        id: Unique document id (a string).
        text: The contents that get indexed (the ``--fields`` values joined with ``"\\n"``).
        fields: Columns kept for display (title, url, ...). JSON-serialisable values.
        meta: Provenance. For code: repo, path, owner, licence, language, swhid.
    """

    id: str
    text: str
    fields: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)


def owner_names(value: Any) -> list[str]:
    """The owner names an ``owner`` entry holds: one name, or a list of co-owners."""
    if value is None:
        return []
    names = value if isinstance(value, list | tuple) else [value]
    return [str(n).strip() for n in names if str(n).strip()]


def licence_and_language(meta: Mapping[str, Any], fields: Mapping[str, Any]) -> tuple[str, str]:
    """A document's licence and language, from its provenance or stored fields (``"unknown"`` if neither says)."""
    licence = meta.get("licence") or meta.get("license") or fields.get("licence") or fields.get("license")
    language = meta.get("language") or fields.get("language") or fields.get("lang")
    return str(licence or "unknown"), str(language or "unknown")


def top_counts(counts: Mapping[str, int], most: int) -> dict[str, int]:
    """The ``most`` commonest categories, commonest first, then the rest summed as ``"(other)"``
    (with any ``"(other)"`` already in ``counts``, e.g. a manifest's own rest)."""
    rest = Counter(counts)
    other = rest.pop("(other)", 0)
    items = rest.most_common()
    kept = dict(items[:most])
    other += sum(n for _, n in items[most:])
    if other:
        kept["(other)"] = other
    return kept


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result.

    Attributes:
        docid: The document id.
        score: The backend's score (BM25 scores are Anserini's, rounded to 4 decimals).
        rank: 1-based rank within the whole result list (pagination keeps ranks global).
        snippet: A short passage with query terms wrapped in ``<mark>`` (HTML-escaped otherwise).
        fields: The stored display fields of the document.
        meta: The document's provenance record.
        backend: The backend that produced the hit.
    """

    docid: str
    score: float
    rank: int
    snippet: str = ""
    fields: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    backend: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Returns the hit as a plain JSON-serialisable dict."""
        return {
            "docid": self.docid,
            "score": self.score,
            "rank": self.rank,
            "snippet": self.snippet,
            "fields": dict(self.fields),
            "meta": dict(self.meta),
            "backend": self.backend,
        }


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What building one backend did; stored in the manifest.

    Attributes:
        backend: Registry key of the backend ("bm25", "exact", ...).
        docs: Number of documents indexed.
        seconds: Wall-clock build time.
        params: The parameters the backend was built with (reopening needs them).
        stats: Backend-specific statistics (terms, postings, bytes, ...).
    """

    backend: str
    docs: int
    seconds: float
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    stats: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Returns the report as a plain JSON-serialisable dict."""
        return {
            "backend": self.backend,
            "docs": self.docs,
            "seconds": round(self.seconds, 3),
            "params": dict(self.params),
            "stats": dict(self.stats),
        }
