"""The step contract shared by every preprocess step: stream Docs in, stream Docs out, count.

A step is called on an iterator of :class:`~spacerini.records.Doc` and returns a generator; it
holds one document at a time (plus whatever state it needs, e.g. the hashes seen by dedup).
Each call starts afresh: state and counters are reset, so :meth:`BaseStep.report` always
describes the latest pass.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from spacerini.errors import PreprocessError
from spacerini.records import Doc

#: The error raised for unusable step options. ``CorpusError`` is a ``ValueError``; a dedicated
#: ``PreprocessError`` in ``spacerini/errors.py`` would fit better (a one-line swap here).
StepOptionError = PreprocessError

#: Ids kept as examples in a report (per reason).
MAX_EXAMPLES = 5


@runtime_checkable
class Step(Protocol):
    """What every preprocess step offers.

    Attributes:
        name: The registry key ("dedup", "pii", ...).
    """

    name: str

    def __call__(self, docs: Iterable[Doc]) -> Iterator[Doc]:
        """Streams the documents through the step."""
        ...

    def report(self) -> dict[str, Any]:
        """Returns what the latest pass did, as a JSON-serialisable dict."""
        ...


class BaseStep:
    """A step that maps each document to a document or to ``None`` (dropped).

    Subclasses set ``name``, fill ``self.params`` (JSON-serialisable) in ``__init__``, and
    implement :meth:`_reset` and :meth:`_process`. They record why a document was dropped or
    changed with :meth:`_removed` and :meth:`_changed`.
    """

    name: str = "step"

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._reset_counts()

    # -- what subclasses implement ------------------------------------------------------------
    def _reset(self) -> None:
        """Clears per-pass state (hash sets, indexes). Called at the start of each pass."""

    def _process(self, doc: Doc) -> Doc | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _extra_report(self) -> dict[str, Any]:
        """Step-specific report entries."""
        return {}

    # -- bookkeeping ----------------------------------------------------------------------------
    def _reset_counts(self) -> None:
        self.docs_in = 0
        self.docs_out = 0
        self.removed: Counter[str] = Counter()
        self.changed: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.seconds = 0.0
        self.bytes_in = 0

    def _example(self, reason: str, docid: str) -> None:
        ids = self.examples.setdefault(reason, [])
        if len(ids) < MAX_EXAMPLES:
            ids.append(docid)

    def _removed(self, reason: str, doc: Doc) -> None:
        self.removed[reason] += 1
        self._example(reason, doc.id)

    def _changed(self, reason: str, doc: Doc, count: int = 1) -> None:
        self.changed[reason] += count
        self._example(reason, doc.id)

    def __call__(self, docs: Iterable[Doc]) -> Iterator[Doc]:
        """Streams ``docs`` through the step, lazily.

        Args:
            docs: Any iterable of documents (a corpus, a generator, another step's output).

        Returns:
            A generator of the documents kept (possibly rewritten), in input order.
        """
        return self._run(docs)

    def _run(self, docs: Iterable[Doc]) -> Iterator[Doc]:
        self._reset_counts()
        self._reset()
        process = self._process
        clock = time.perf_counter
        for doc in docs:
            started = clock()
            self.docs_in += 1
            self.bytes_in += len(doc.text)
            out = process(doc)
            self.seconds += clock() - started
            if out is not None:
                self.docs_out += 1
                yield out

    def report(self) -> dict[str, Any]:
        """Returns what the latest pass did.

        Returns:
            A JSON-serialisable dict: ``name``, ``params``, ``docs_in``, ``docs_out``,
            ``removed`` (total) and ``removed_by`` (per reason), ``changed`` and ``changed_by``
            (counts of rewritten documents or spans, per reason), ``examples`` (a few document
            ids per reason), ``seconds`` (time spent in the step itself) and ``chars_in``, plus
            step-specific entries.
        """
        report: dict[str, Any] = {
            "name": self.name,
            "params": _jsonable(self.params),
            "docs_in": self.docs_in,
            "docs_out": self.docs_out,
            "removed": self.docs_in - self.docs_out,
            "removed_by": dict(sorted(self.removed.items())),
            "changed": self._changed_docs(),
            "changed_by": dict(sorted(self.changed.items())),
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
            "seconds": round(self.seconds, 3),
            "chars_in": self.bytes_in,
        }
        report.update(self._extra_report())
        return report

    def _changed_docs(self) -> int:
        return 0

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def as_names(value: str | Iterable[str] | None, *, what: str) -> tuple[str, ...] | None:
    """Normalises a list option given as a comma-separated string or an iterable of strings.

    Args:
        value: ``"a,b"``, ``["a", "b"]`` or None.
        what: The option name, for the error message.

    Returns:
        The stripped, non-empty names in order, or None when ``value`` is None.

    Raises:
        StepOptionError: ``value`` is neither a string nor an iterable of strings.
    """
    if value is None:
        return None
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise StepOptionError(f"{what} must be a comma-separated string or a list of strings, not {value!r}")
    names = []
    for item in items:
        if not isinstance(item, str):
            raise StepOptionError(f"{what} must hold strings, got {item!r}")
        if item.strip():
            names.append(item.strip())
    return tuple(names)


def check_fraction(value: Any, *, what: str, low: float = 0.0, high: float = 1.0) -> float:
    """Returns ``value`` as a float in ``[low, high]`` or raises a clear error."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise StepOptionError(f"{what} must be a number between {low} and {high}, got {value!r}")
    return float(value)


def check_positive_int(value: Any, *, what: str) -> int:
    """Returns ``value`` as a positive int or raises a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StepOptionError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def check_choice(value: Any, choices: tuple[str, ...], *, what: str) -> str:
    """Returns ``value`` when it is one of ``choices`` or raises a clear error."""
    if value not in choices:
        raise StepOptionError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def check_bool(value: Any, *, what: str) -> bool:
    """Returns ``value`` as a bool or raises a clear error.

    Accepts True/False, 1/0 and the strings true/false, yes/no, on/off, 1/0 (any case): a
    command-line ``verify=no`` arrives as the string "no", which ``bool()`` would read as True.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
    raise StepOptionError(f"{what} must be true or false, got {value!r}")


def check_seed(value: Any, *, what: str) -> int:
    """Returns ``value`` as a non-negative int (a random seed) or raises a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StepOptionError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)
