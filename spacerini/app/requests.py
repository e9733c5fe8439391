"""Opt-out requests from data subjects ("Am I in the corpus?"), kept until an operator applies them.

A person who finds their work in the corpus files a request in the app (a name or handle as the
corpus records it, how to reach them, an optional note). Each request is one JSON line
``{"id", "at", "bundle", "status": "pending", "name", "contact", "message"}`` in a JSONL store
beside the bundle (``<bundle>.optout-requests.jsonl``), never inside it. The operator lists the
pending ones (``spacerini optout BUNDLE --requests``) and applies some (``--apply ID,ID``):
:func:`apply_requests` removes each owner's documents with :func:`spacerini.bundle.optout` and
appends a status line ``{"id", "at", "status": "applied"|"not found"|"failed", ...}``; the store
is only ever appended to, so concurrent writers never lose a line.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from spacerini.app.flags import Destination, append_jsonl, check_outside, checked_text, now_iso, read_jsonl
from spacerini.errors import QueryError, RequestNotFoundError, SpaceriniError, one_line

__all__ = [
    "OptoutRequestStore",
    "default_requests_path",
    "apply_requests",
    "requests_table",
    "OPTOUT_HOWTO",
]

logger = logging.getLogger(__name__)

#: Longest name or handle, in characters (the owner lookup takes the same).
MAX_NAME_CHARS = 200
#: Longest contact (an email address, a profile URL), in characters.
MAX_CONTACT_CHARS = 320
#: Longest note, in characters.
MAX_MESSAGE_CHARS = 2_000
#: Requests one client may file per rate window (see :mod:`spacerini.app.flags`).
REQUESTS_PER_CLIENT = 3
#: Requests all clients together may file per rate window.
REQUESTS_PER_WINDOW = 120
#: Statuses of a request still to apply.
OPEN = ("pending", "failed")
#: What the app tells a person who wants out of the corpus.
OPTOUT_HOWTO = (
    "To have your files removed, file a request below with your name or handle exactly as it appears in the "
    "results above and a way to reach you. The operator of this search engine reviews each request and removes "
    "the matching documents from every index; removals are recorded (how many documents, never who) in the "
    "bundle's audit log."
)


def default_requests_path(bundle_path: Path, destination: Destination | None = None) -> Path:
    """The request store for a bundle: ``$SPACERINI_OPTOUT_REQUESTS``, else a per-bundle file in
    the ``destination`` folder (on a Space), else ``<bundle>.optout-requests.jsonl`` beside it."""
    explicit = os.environ.get("SPACERINI_OPTOUT_REQUESTS")
    if explicit:
        return Path(explicit).expanduser()
    # Not resolve(): a Space serves a followed Hub bundle through a link that moves to each new
    # revision's snapshot, and the store must stay one file across revisions (and out of the cache).
    bundle = Path(os.path.abspath(Path(bundle_path).expanduser()))
    if destination is not None:
        return destination.folder / "optout-requests" / f"{bundle.name}.jsonl"
    return bundle.parent / f"{bundle.name}.optout-requests.jsonl"


class OptoutRequestStore:
    """Opt-out requests in an append-only JSONL file.

    Args:
        path: The JSONL file (its folder is created; readable by its owner only).
        bundle_path: The bundle the requests are about; ``path`` must not be inside it.

    Raises:
        BundleError: ``path`` is inside the bundle.
    """

    def __init__(self, path: Path, *, bundle_path: Path) -> None:
        self.path = check_outside(path, bundle_path, "opt-out requests")
        self.bundle_path = Path(bundle_path).resolve()
        self._lock = threading.Lock()
        self.on_change: list[Callable[[], Any]] = []  # run after each write (uploads)

    def add(self, *, name: str, contact: str, message: str = "") -> dict[str, Any]:
        """Files a pending request and returns it (with its new ``id``).

        Raises:
            QueryError: The name or contact is empty, or a field is too long.
        """
        record = {
            "id": "r-" + secrets.token_hex(5),
            "at": now_iso(),
            "bundle": self.bundle_path.name,
            "status": "pending",
            "name": checked_text(name, "name or handle", MAX_NAME_CHARS, required=True),
            "contact": checked_text(contact, "contact", MAX_CONTACT_CHARS, required=True),
            "message": checked_text(message, "note", MAX_MESSAGE_CHARS),
        }
        self._append(record)
        logger.info("opt-out request %s filed", record["id"])  # who is in the store only
        return record

    def mark(self, request_id: str, status: str, **details: Any) -> dict[str, Any]:
        """Records a new status for a request (``applied``, ``not found``, ``failed``)."""
        event = {"id": request_id, "at": now_iso(), "status": status, **details}
        self._append(event)
        return event

    def _append(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path, record, self._lock)
        for hook in self.on_change:
            hook()

    def read(self) -> list[dict[str, Any]]:
        """Every request with its latest status (and when and how it changed), oldest first."""
        requests: dict[str, dict[str, Any]] = {}
        for rec in read_jsonl(self.path):
            rid = rec.get("id")
            if not isinstance(rid, str):
                continue
            if "name" in rec and rid not in requests:
                requests[rid] = dict(rec)
            elif rid in requests:
                requests[rid].update({k: v for k, v in rec.items() if k not in ("id", "at")}, updated=rec.get("at"))
        return list(requests.values())

    def pending(self) -> list[dict[str, Any]]:
        """The requests not applied yet (pending, or failed and worth another try)."""
        return [r for r in self.read() if r.get("status") in OPEN]

    def get(self, request_id: str) -> dict[str, Any]:
        """One request by id.

        Raises:
            RequestNotFoundError: No request has that id.
        """
        for r in self.read():
            if r["id"] == request_id:
                return r
        raise RequestNotFoundError(f"no opt-out request {request_id!r} in {self.path}")


def apply_requests(
    bundle_path: str | os.PathLike[str],
    ids: Iterable[str],
    *,
    store: OptoutRequestStore,
    optout: Callable[..., dict[str, Any]] | None = None,
    **optout_kwargs: Any,
) -> list[dict[str, Any]]:
    """Applies pending opt-out requests: removes each requester's documents, then records it.

    Args:
        bundle_path: The bundle.
        ids: Request ids.
        store: The request store.
        optout: The opt-out function (default :func:`spacerini.bundle.optout`), called as
            ``optout(bundle_path, owners=[name], request_id=ID, **optout_kwargs)`` (without
            ``request_id`` when it takes none).
        **optout_kwargs: Passed on (``threads``, ``progress``).

    Returns:
        One status record per id: ``status`` is ``applied`` (with ``removed``), ``not found``
        (the bundle has no documents of that owner) or ``failed`` (with ``error``).

    Raises:
        RequestNotFoundError: An id is unknown (nothing is applied then).
        QueryError: A request was already applied, or no id was given.
    """
    if optout is None:
        from spacerini.bundle import optout as optout_fn

        optout = optout_fn
    wanted = [i.strip() for i in ids if i and i.strip()]
    if not wanted:
        raise QueryError("give the ids of the requests to apply (see `spacerini optout BUNDLE --requests`)")
    requests = [store.get(i) for i in dict.fromkeys(wanted)]
    for r in requests:
        if r.get("status") not in OPEN:
            raise QueryError(f"opt-out request {r['id']} is already {r.get('status')}")
    takes_id = _takes(optout, "request_id")
    results = []
    for r in requests:
        kwargs = dict(optout_kwargs, owners=[r["name"]])
        if takes_id:
            kwargs["request_id"] = r["id"]
        try:
            entry = optout(bundle_path, **kwargs)
        except SpaceriniError as exc:
            missing = type(exc).__name__ == "OwnerNotFoundError" or "not found" in str(exc).lower()
            status = "not found" if missing else "failed"
            results.append(store.mark(r["id"], status, error=one_line(exc)))
            continue
        results.append(store.mark(r["id"], "applied", removed=int((entry or {}).get("removed", 0))))
    return results


def _takes(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def requests_table(requests: Iterable[dict[str, Any]], *, width: int = 36) -> str:
    """Requests as a plain-text table (id, status, when, name, contact, note), one line each."""
    from spacerini.app.flags import _cell

    keys = ("id", "status", "at", "name", "contact", "message")
    rows = [("id", "status", "filed", "name", "contact", "note")]
    rows += [tuple(_cell(r.get(k), width) for k in keys) for r in requests]  # type: ignore[misc]
    widths = [max(len(row[i]) for row in rows) for i in range(len(keys))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
