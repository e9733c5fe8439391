"""Backends: one module per index kind, each owning its writer and its searcher.

A backend module exposes:

* ``NAME: str`` - its registry key;
* ``build(docs_factory, folder: Path, *, progress: bool = True, [threads: int = 1,] **options)
  -> BuildReport`` - writes the index into ``folder`` (an empty, temporary folder of the bundle
  being built). Only a backend that uses threads takes ``threads`` (:func:`run_build` gives it
  to those); its options are declared in :mod:`spacerini.backends.options`. Its options are named keyword arguments; the bundle checks what a user gives
  against the signature (:func:`check_params`) before reading any document. ``docs`` can be iterated again by calling ``docs_factory()`` if a backend needs
  two passes, so backends receive a zero-argument callable returning a fresh iterator;
* ``open(folder: Path, report: Mapping) -> Searcher`` - reopens what ``build`` wrote; ``report`` is
  the backend's entry of the manifest (its params and stats).

Backends are registered here by string key and imported only when used.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar, runtime_checkable

from spacerini.errors import BackendNotAvailableError, BundleCorruptError, QueryError
from spacerini.records import BuildReport, Doc, Hit

_T = TypeVar("_T")

#: Registry key -> module path. Order is the default build order.
REGISTRY: dict[str, str] = {
    "bm25": "spacerini.backends.bm25",
    "exact": "spacerini.backends.exact",
    "bloom": "spacerini.backends.bloom",
    "owners": "spacerini.backends.owners",
    "dense": "spacerini.backends.dense",
}

DocsFactory = Callable[[], Iterator[Doc]]


@runtime_checkable
class Searcher(Protocol):
    """What every backend's ``open`` returns: something that holds files and can let them go."""

    def close(self) -> None:
        """Releases files and native resources."""
        ...


@runtime_checkable
class RankedSearcher(Searcher, Protocol):
    """Capability: ranked search (bm25, dense, exact; hybrid fusion on top)."""

    def search(self, query: str, k: int = 10, offset: int = 0) -> list[Hit]:
        """Returns hits ``offset+1 .. offset+k`` for ``query`` (docid, score, rank; no display fields)."""
        ...


@runtime_checkable
class BatchSearcher(RankedSearcher, Protocol):
    """Capability: many ranked queries at once (faster than one ``search`` each)."""

    def batch_search(self, queries: Sequence[tuple[str, str]], *, k: int = 10, threads: int = 1) -> dict[str, list[Hit]]:
        """Returns ``{qid: hits}`` for ``(qid, text)`` queries."""
        ...


@runtime_checkable
class Snippeter(Protocol):
    """Capability: highlighted snippets cut around a query's matches."""

    def snippet(self, query: str, text: str, *, width: int = 240) -> str:
        """Returns an escaped window of ``text`` with ``<mark>`` around the matches."""
        ...


@runtime_checkable
class ExactText(Searcher, Protocol):
    """Capability: exact text (count, find, longest verbatim matches): the exact backend."""

    def count(self, text: str | bytes) -> int:
        """Occurrences of ``text`` (overlapping ones included)."""
        ...

    def find(self, text: str | bytes, *, k: int = 10, offset: int = 0, context: int = 80) -> list[Any]:
        """One page of occurrences, in corpus order."""
        ...

    def longest_matches(self, text: str | bytes, *, min_len: int = 20, max_docs: int = 5) -> list[Any]:
        """The maximal spans of ``text`` found verbatim in the corpus."""
        ...


@runtime_checkable
class MembershipSketch(Searcher, Protocol):
    """Capability: probable membership of a text's n-grams: the bloom backend."""

    def member(self, text: str) -> Any:
        """Which spans of ``text`` are probably in the corpus."""
        ...


@runtime_checkable
class OwnerIndex(Searcher, Protocol):
    """Capability: "Am I in the corpus?": the owners backend."""

    def owner(self, name: str, *, limit: int = 100, cutoff: float = 0.8, max_matches: int = 10) -> Any:
        """The owners whose names match, with their repos and files."""
        ...


class Backend(Protocol):
    """The module-level interface of a backend."""

    NAME: str

    def build(self, docs: DocsFactory, folder: Path, **params: Any) -> BuildReport: ...

    def open(self, folder: Path, report: Mapping[str, Any]) -> Any: ...


def get_backend(name: str) -> ModuleType:
    """Imports and returns the backend module registered under ``name``.

    Raises:
        BackendNotAvailableError: ``name`` is not a known backend.
    """
    module = REGISTRY.get(name)
    if module is None:
        raise BackendNotAvailableError(
            f"unknown backend {name!r}: choose from {', '.join(REGISTRY)}"
        )
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise BackendNotAvailableError(f"backend {name!r} is not implemented in this version") from exc
        raise


def run_build(
    module: Any, docs_factory: DocsFactory, folder: Path, *, threads: int, progress: bool, **params: Any
) -> BuildReport:
    """Calls ``module.build``, giving ``threads`` only to backends that use threads (a backend
    that would ignore them does not take them)."""
    import inspect

    if "threads" in inspect.signature(module.build).parameters:
        params["threads"] = threads
    return module.build(docs_factory, folder, progress=progress, **params)


def build_params(name: str) -> frozenset[str]:
    """The build options of backend ``name`` (its options dataclass, :mod:`spacerini.backends.options`)."""
    from spacerini.backends.options import build_option_names

    return build_option_names(name)


def check_params(name: str, params: Mapping[str, Any]) -> None:
    """Checks build options before any document is read: a typo must never be silently ignored.

    Raises:
        BackendParameterError: An unknown option, a wrong type or a value out of range.
        DependencyMissingError: The dense encoder is not available offline, or the device is not here.
    """
    from spacerini.backends.options import check_build_options

    check_build_options(name, params)
    if name == "dense":  # what the dense build would find only after reading the corpus
        get_backend(name).check_options(params)


def open_params(name: str) -> frozenset[str]:
    """The search-time options backend ``name`` takes (e.g. dense ``ef_search``)."""
    from spacerini.backends.options import search_option_names

    return search_option_names(name)


def read_json(folder: Path, name: str, *, what: str) -> Any:
    """Reads a backend's JSON file, turning a missing or broken file into one clear error.

    Raises:
        BundleCorruptError: The file is missing or not valid JSON.
    """
    try:
        return json.loads((Path(folder) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleCorruptError(f"{folder}: cannot read {what} ({name}): {exc}; rebuild the bundle") from exc


def iter_batches(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Yields lists of at most ``size`` items, in order."""
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


#: A lone surrogate: a ``str`` can hold one (a JSON ``"\ud800"`` escape, a command-line byte that is
#: not UTF-8, read with ``surrogateescape``), but it is not Unicode text: Java, the tokenizers of
#: the dense encoders and UTF-8 all refuse it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, qid: str | int | None = None) -> None:
    """Refuses a query that holds a lone surrogate, for every backend alike (BM25's Java analyzer
    failed in pyjnius' UTF-16 encoder or read U+FFFD, the dense tokenizers raised TypeError).
    ``str.isascii`` reads a flag, so ASCII queries cost nothing.

    Raises:
        QueryError: The text holds a lone surrogate (its ``qid`` names the query of a batch).
    """
    if text.isascii():
        return
    found = _SURROGATE.search(text)
    if found is not None:
        who = "the query" if qid is None else f"query {qid!r}"
        raise QueryError(
            f"{who} holds a lone surrogate (U+{ord(found.group()):04X}) at character {found.start() + 1}, "
            "which is not Unicode text (on a command line: a byte that is not UTF-8); pass valid UTF-8 text",
            qid=qid,
        )


def check_batch(queries: Iterable[tuple[str, str]], k: int, *, min_k: int = 1) -> None:
    """The checks every searcher's ``batch_search`` makes before searching.

    Raises:
        QueryError: ``k`` is not an integer or below ``min_k``, ``queries`` is not a sequence of
            ``(qid, text)`` pairs (a dict would be read as its keys, a generator used up by these
            checks), a qid repeats (``{qid: hits}`` would keep one), or a query is empty.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < min_k:
        raise QueryError(f"k must be an integer >= {min_k}, not {k!r}")
    if isinstance(queries, Mapping | str | bytes) or not isinstance(queries, Sequence):
        raise QueryError(
            f"queries must be a list of (qid, text) pairs, not a {type(queries).__name__}"
            + (": pass list(queries.items())" if isinstance(queries, Mapping) else "")
        )
    # One pass of cheap checks (a batch is thousands of queries and its ranking takes ~10 us a
    # query): exact types first, the ABC check only for other sequences.
    for pair in queries:
        if not ((type(pair) is tuple or type(pair) is list) and len(pair) == 2) and (
            isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2
        ):
            raise QueryError(f"query {pair!r:.60} is not a (qid, text) pair")
        text = pair[1]
        if not isinstance(text, str) or not text.strip():
            raise QueryError(f"query {pair[0]!r} is empty")
    qids = [pair[0] for pair in queries]
    if len(set(qids)) != len(qids):
        seen: set[Any] = set()
        for qid in qids:
            if qid in seen:
                raise QueryError(f"qid {qid!r} repeats; qids must be unique, as the results are keyed by them")
            seen.add(qid)
