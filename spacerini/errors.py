"""One error hierarchy for Spacerini.

Every error inherits from :class:`SpaceriniError` and from the builtin that fits, so callers
can catch either (``except FileNotFoundError`` still works). The CLI turns any
``SpaceriniError`` into one line on stderr and exit status 2; the app turns it into
``gr.Error``. Messages say what went wrong, where (file and line), and what to do.
"""

from __future__ import annotations


class SpaceriniError(Exception):
    """Base class of every error Spacerini raises on purpose."""


# -- corpus ---------------------------------------------------------------------------------
class CorpusError(SpaceriniError, ValueError):
    """The corpus cannot be read as given.

    Args:
        message: What is wrong and what to do.
        path: The file the problem is in, when there is one.
        line: The 1-based line (or row) number, when there is one.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.detail = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class CorpusNotFoundError(CorpusError, FileNotFoundError):
    """The source file, folder or dataset does not exist."""


class EmptyCorpusError(CorpusError):
    """The source holds no documents."""


class MalformedRecordError(CorpusError):
    """A record cannot be parsed (bad JSON, bad CSV row, non-UTF-8 bytes)."""


class MissingFieldError(CorpusError, KeyError):
    """A record lacks the id field or a contents field."""

    def __str__(self) -> str:  # KeyError would quote the message
        return ValueError.__str__(self)


class DuplicateIdError(CorpusError):
    """Two records share one id."""


class DocumentTooLargeError(CorpusError):
    """A document exceeds a limit of an index (for example Lucene's term or field limits).

    Args:
        message: What is wrong and what to do.
        path: The file the document is in, when known.
        line: Its 1-based line (or row) number, when known.
        doc_id: The document's id (a backend knows only this; the build finds the file and line).
    """

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, doc_id: str | None = None
    ) -> None:
        self.doc_id = doc_id
        super().__init__(message, path=path, line=line)


class PreprocessError(SpaceriniError, ValueError):
    """A preprocessing step was named or configured wrongly."""


# -- bundle ---------------------------------------------------------------------------------
class BundleError(SpaceriniError, RuntimeError):
    """A bundle cannot be built or opened (its subclasses add the builtin that fits them)."""


class BundleNotFoundError(BundleError, FileNotFoundError):
    """No bundle at the given path."""


class BundleCorruptError(BundleError, ValueError):
    """The bundle's manifest or files are missing, unreadable or fail their checksums."""


class BackendParameterError(BundleError, ValueError):
    """A backend was given an unknown parameter or a value out of range."""


class BackendNotAvailableError(BundleError, LookupError):
    """The bundle was built without the backend asked for, or the backend is unknown."""


class DocNotFoundError(BundleError, KeyError):
    """The bundle holds no document with the id asked for (a ``KeyError`` too, as a mapping's is)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class BundleLockedError(BundleError, TimeoutError):
    """Another command is changing the bundle (building or opting out) and ``--no-wait`` was given."""


class OwnerNotFoundError(BundleError, LookupError):
    """An opt-out named owners or ids of which the bundle holds no document."""


class DeployError(BundleError, RuntimeError):
    """A Space or bundle cannot be rendered, pushed or deployed (offline, no token, hub error)."""


# -- queries --------------------------------------------------------------------------------
class QueryError(SpaceriniError, ValueError):
    """A query is empty, too long or otherwise unusable.

    Args:
        message: What is wrong and what to do.
        qid: The query's id when it came in a batch, so that a caller reading the queries from
            a file can name the file and line.
    """

    def __init__(self, message: str, *, qid: str | int | None = None) -> None:
        self.qid = qid
        super().__init__(message)


class UsageError(SpaceriniError, ValueError):
    """A command or call was given options that do not fit together (e.g. two corpora with one name)."""


# -- environment ----------------------------------------------------------------------------
class DependencyMissingError(SpaceriniError, ImportError):
    """An optional package is missing; the message names the extra to install."""


class JavaError(SpaceriniError, RuntimeError):
    """The Java runtime that Lucene needs cannot be started."""


class ModelError(SpaceriniError, ValueError):
    """A model cannot be loaded or used as asked (not found offline, no FIM tokens, bad options)."""


class TrainingError(SpaceriniError, RuntimeError):
    """Training cannot start or continue (bad options, unusable checkpoint, no data)."""


class EvaluationError(SpaceriniError, ValueError):
    """Queries or qrels for an evaluation are malformed or do not match."""


def one_line(exc: BaseException, *, secret: str | None = None) -> str:
    """The first line of ``exc``'s message (its type name when it has none), ``secret`` masked.

    Args:
        exc: The exception to show.
        secret: A value (a token) that must never be shown; it becomes ``***``.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.replace(secret, "***") if secret else line


# -- app ------------------------------------------------------------------------------------
class RateLimitedError(SpaceriniError, RuntimeError):
    """A client sent more reports or requests than the app takes in a while; it may try later.

    Args:
        message: What was refused and when to try again.
        retry_after: Seconds until the client may try again.
    """

    def __init__(self, message: str, *, retry_after: int = 60) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)


class RequestNotFoundError(SpaceriniError, KeyError):
    """No opt-out request has the id given."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)
