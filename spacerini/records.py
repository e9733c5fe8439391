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


# ---------------------------------------------------------------------------- service answers
def to_json(value: Any) -> Any:
    """A record (or any value holding records) as plain JSON data: dicts, lists, scalars."""
    if isinstance(value, Answer):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        return {name: to_json(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


class Answer(Mapping[str, Any]):
    """Base of the typed answers of :mod:`spacerini.service`, shared by every front end.

    An answer is a frozen dataclass with typed attributes (``page.hits[0].docid``). It also
    reads like its JSON form (``page["hits"][0]["docid"]``), which is what the JSON API sends,
    the Gradio endpoints return and the HTML renderers take, so that each front end renders one
    shape: :meth:`to_dict`.
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: nested records become dicts, tuples become lists."""
        return {name: to_json(getattr(self, name)) for name in self.__dataclass_fields__}  # type: ignore[attr-defined]

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise KeyError(key)
        return to_json(getattr(self, key))

    def __iter__(self) -> Any:
        return iter(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)  # type: ignore[attr-defined]


@dataclass(frozen=True, eq=False)
class SearchPage(Answer):
    """One page of ranked hits, with display fields and provenance as shown (redacted or not)."""

    query: str
    backend: str
    k: int
    offset: int
    hits: tuple[Hit, ...]
    generation: int = 1


@dataclass(frozen=True, eq=False)
class CountResult(Answer):
    """Exact occurrences of a text (overlapping ones included)."""

    query: str
    count: int
    generation: int = 1


@dataclass(frozen=True, eq=False)
class Occurrence(Answer):
    """One exact occurrence: its document, character offset and an escaped snippet with ``<mark>``."""

    rank: int
    docid: str
    offset: int
    snippet: str
    meta: Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class FindPage(Answer):
    """The total count of a text and one page of its occurrences."""

    query: str
    count: int
    k: int
    offset: int
    hits: tuple[Occurrence, ...]
    generation: int = 1


@dataclass(frozen=True, eq=False)
class Source(Answer):
    """A document that holds a span: its id and provenance as shown."""

    docid: str
    meta: Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class MemberSpan(Answer):
    """A span of the checked text found in the corpus, with how often and where (when known)."""

    start: int
    end: int
    text: str
    count: int = 0
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True, eq=False)
class Membership(Answer):
    """Which spans of a text are in the corpus ("was this text in the training data?").

    ``method`` is ``"bloom sketch"`` (probable spans, exact sources attached where the bundle
    has the exact backend) or ``"exact"`` (verbatim spans of at least the minimum length).
    """

    chars: int
    method: str
    coverage: float
    spans: tuple[MemberSpan, ...]
    exact_spans: tuple[MemberSpan, ...]
    ngrams_checked: int | None = None
    ngrams_found: int | None = None
    generation: int = 1


@dataclass(frozen=True, eq=False)
class OwnedFile(Answer):
    """A file of an owner: document id, path and repo (as shown)."""

    docid: str
    path: str
    repo: str


@dataclass(frozen=True, eq=False)
class OwnerMatch(Answer):
    """An owner whose name matches, with their repos (name, files) and the first files."""

    owner: str
    score: float
    docs: int
    repos: tuple[tuple[str, int], ...]
    files: tuple[OwnedFile, ...]


@dataclass(frozen=True, eq=False)
class OwnerResult(Answer):
    """"Am I in the corpus?": the matching owners, best first, and how to ask for removal."""

    query: str
    matches: tuple[OwnerMatch, ...]
    total_docs: int
    optout_instructions: str
    generation: int = 1


@dataclass(frozen=True, eq=False)
class Stats(Answer):
    """What a bundle holds: counts, sizes, breakdowns, preprocessing reports and the audit log."""

    generation: int
    docs: int
    text_bytes: int
    bundle_bytes: int
    backends: tuple[str, ...]
    created: str | None
    source: Any
    licences: tuple[tuple[str, int], ...]
    languages: tuple[tuple[str, int], ...]
    preprocess: Any
    audit_log: Any


@dataclass(frozen=True, eq=False)
class FlagReceipt(Answer):
    """A "flag this result" report as recorded."""

    at: str
    bundle: str
    query: str
    docid: str
    reason: str


@dataclass(frozen=True, eq=False)
class RequestReceipt(Answer):
    """An opt-out request as filed: its id (to quote to the operator), status and time."""

    id: str
    status: str
    at: str


# -- several corpora (spacerini.corpora) ----------------------------------------------------
@dataclass(frozen=True, eq=False)
class CorpusInfo(Answer):
    """One corpus of a multi-corpus app: its name, size, backends, what it answers and its generation."""

    name: str
    docs: int
    backends: tuple[str, ...]
    capabilities: tuple[str, ...]
    generation: int


@dataclass(frozen=True, eq=False)
class CorpusColumn(Answer):
    """One corpus's answers in a :class:`Comparison`.

    ``count`` (exact occurrences), ``top_hit`` (the first ranked hit, from ``backend``),
    ``coverage`` (membership, 0 to 1), ``owner_docs`` and ``owners`` (owner lookup) are ``None``
    (or empty) when the corpus cannot answer: ``missing`` then says which backend it lacks, or
    ``errors`` why it refused (one line each, keyed by the answer's name).
    """

    name: str
    generation: int
    count: int | None
    top_hit: Any
    backend: str | None
    coverage: float | None
    owner_docs: int | None
    owners: tuple[str, ...]
    missing: Mapping[str, str]
    errors: Mapping[str, str]


@dataclass(frozen=True, eq=False)
class Comparison(Answer):
    """One question asked of every corpus: ``query`` counted and searched, ``text`` checked for
    membership, ``owner`` looked up; one :class:`CorpusColumn` per corpus, in display order."""

    query: str
    text: str
    owner: str
    corpora: tuple[CorpusColumn, ...]
