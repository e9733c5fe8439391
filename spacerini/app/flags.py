"""User reports ("flag this result"), appended to a local JSONL file, and where such files live.

Each report is one JSON line ``{"at", "bundle", "query", "docid", "reason"}``. A line is written
with a single ``write`` on a file opened with ``O_APPEND`` while holding an exclusive lock (a
thread lock plus ``flock`` across processes), so concurrent reports never interleave. The file
lives in a user-data folder, never inside the bundle (a bundle stays read-only and its
checksums stay valid). Opt-out requests (:mod:`spacerini.app.requests`) use the same writer.

What the public may send is bounded: a report's query and reason have a maximum length, the
document must be in the bundle (checked by the service), and each client may send at most
:data:`FLAGS_PER_CLIENT` reports a minute (:class:`RateLimiter`).

On a Hugging Face Space the container's disk is lost at every restart, so
:func:`persistent_destination` picks where the files go: the Space's persistent storage
(``/data``) when it has some, else a local folder that :class:`HubSync` uploads to a Hub dataset
named by ``$SPACERINI_FLAGS_DATASET`` (with ``$HF_TOKEN``; make that dataset private: opt-out
requests hold contact details).
"""

from __future__ import annotations

import atexit
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacerini.errors import BundleError, QueryError, RateLimitedError, one_line

logger = logging.getLogger(__name__)

#: Longest reason kept, in characters.
MAX_REASON_CHARS = 500
#: Longest query a report may carry, in characters (longer reports are refused).
MAX_FLAG_QUERY_CHARS = 2_000
#: Longest document id a report may name, in characters.
MAX_DOCID_CHARS = 1_000
#: Reports one client may send per :data:`RATE_WINDOW_S`.
FLAGS_PER_CLIENT = 10
#: Reports all clients together may send per :data:`RATE_WINDOW_S` (an upper bound on growth).
FLAGS_PER_WINDOW = 600
#: The rate limits' window, in seconds.
RATE_WINDOW_S = 60.0
#: Reasons offered in the app.
REASONS: tuple[str, ...] = ("personal information", "licence problem", "harmful content", "wrong attribution", "other")
#: Environment variable naming the Hub dataset that reports and requests are uploaded to.
DATASET_ENV = "SPACERINI_FLAGS_DATASET"
#: Persistent storage of a Hugging Face Space, when the Space has it.
SPACE_DATA_DIR = Path("/data")
#: Seconds between uploads of changed files to the Hub dataset.
HUB_SYNC_EVERY_S = 60.0


def now_iso() -> str:
    """The current UTC time, to the second, in ISO 8601."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------- storage
@dataclass(frozen=True)
class Destination:
    """Where an app's JSONL stores go on a Space.

    Attributes:
        folder: Local folder of the files.
        dataset: Hub dataset repo (``OWNER/NAME``) the files are uploaded to, or None.
        token: Token for the uploads (never shown).
    """

    folder: Path
    dataset: str | None = None
    token: str | None = field(default=None, repr=False)


def persistent_destination(
    *, environ: Mapping[str, str] | None = None, data_dir: Path | None = None
) -> Destination | None:
    """Where reports and requests persist on a Hugging Face Space; None elsewhere.

    On a Space (``$SPACE_ID`` is set): ``/data/spacerini`` when the Space has persistent storage;
    otherwise, when ``$SPACERINI_FLAGS_DATASET`` and ``$HF_TOKEN`` are set, a temporary folder
    uploaded to that dataset; otherwise None (the files are lost when the Space restarts, which
    is logged). Off a Space, ``$SPACERINI_FLAGS_DATASET`` alone turns the uploads on.

    Args:
        environ: The environment (default ``os.environ``).
        data_dir: The persistent-storage folder (default :data:`SPACE_DATA_DIR`).
    """
    env = os.environ if environ is None else environ
    data = SPACE_DATA_DIR if data_dir is None else Path(data_dir)
    on_space = bool(env.get("SPACE_ID"))
    if on_space and data.is_dir() and os.access(data, os.W_OK):
        return Destination(data / "spacerini")
    dataset = (env.get(DATASET_ENV) or "").strip()
    if dataset:
        token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN")
        if not token:
            logger.warning("%s is set but HF_TOKEN is not: reports and requests are not uploaded", DATASET_ENV)
            return None
        return Destination(Path(tempfile.gettempdir()) / "spacerini-stores", dataset, token)
    if on_space:
        logger.warning(
            "this Space has no persistent storage and %s is not set: flags and opt-out requests are lost when it restarts",
            DATASET_ENV,
        )
    return None


def default_flags_path(bundle_path: Path, destination: Destination | None = None) -> Path:
    """The default report file for a bundle: ``$SPACERINI_FLAGS``, else a per-bundle file in the
    ``destination`` folder (on a Space), else in ``$XDG_DATA_HOME/spacerini/flags/``
    (``~/.local/share`` by default)."""
    explicit = os.environ.get("SPACERINI_FLAGS")
    if explicit:
        return Path(explicit).expanduser()
    # The path as given, links not followed: a Space's followed Hub bundle is a link that moves
    # to each revision's snapshot, and its reports must stay in one file (see default_requests_path).
    # fsencode: a folder name with bytes that are not UTF-8 (surrogate escapes) hashes too.
    tag = hashlib.sha1(os.fsencode(os.path.abspath(Path(bundle_path).expanduser()))).hexdigest()[:10]
    name = f"{Path(bundle_path).name}-{tag}.jsonl"
    if destination is not None:
        return destination.folder / "flags" / name
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "spacerini" / "flags" / name


def check_outside(path: Path, bundle_path: Path, what: str) -> Path:
    """``path`` resolved; it must not be the bundle or inside it.

    Raises:
        BundleError: ``path`` is inside the bundle.
    """
    path = Path(path).expanduser().resolve()
    bundle = Path(bundle_path).resolve()
    if path == bundle or bundle in path.parents:
        raise BundleError(f"{path}: the {what} file must not be inside the bundle; choose another path")
    return path


def append_jsonl(path: Path, record: Mapping[str, Any], lock: threading.Lock) -> None:
    """Appends ``record`` as one line with one ``write`` under ``lock`` and ``flock``."""
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    with lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _flock(fd, True)
            try:
                os.write(fd, line)
            finally:
                _flock(fd, False)
        finally:
            os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSONL store. A line that is not a JSON object (a torn last line, from a
    crash mid-write, or a hand edit) is skipped with a warning that names its file and line."""
    if not Path(path).exists():
        return []
    out = []
    with Path(path).open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                logger.warning("%s:%d: not UTF-8 text; skipped", path, n)
                continue
            except json.JSONDecodeError:
                logger.warning("%s:%d: not a JSON line; skipped", path, n)
                continue
            if not isinstance(record, dict):
                logger.warning("%s:%d: a JSON %s, not a record (an object); skipped", path, n, type(record).__name__)
                continue
            out.append(record)
    return out


# ------------------------------------------------------------------------------ rate limits
class RateLimiter:
    """At most ``limit`` events per client in any ``window`` seconds (a sliding window).

    Args:
        limit: Events allowed per client per window.
        window: The window, in seconds.
        what: What is limited, for the refusal message ("reports").
        max_clients: Clients remembered (the least recently seen are forgotten first), so that
            memory stays bounded whatever the number of addresses.
    """

    def __init__(self, limit: int, window: float, *, what: str = "calls", max_clients: int = 10_000) -> None:
        self.limit = max(1, int(limit))
        self.window = float(window)
        self.what = what
        self.max_clients = max(1, int(max_clients))
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: str, *, now: float | None = None) -> None:
        """Counts one event for ``client``.

        Raises:
            RateLimitedError: ``client`` already had ``limit`` events in the window.
        """
        t = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and times[0] <= t - self.window:
                times.popleft()
            self._seen[client] = times
            while len(self._seen) > self.max_clients:
                self._seen.popitem(last=False)
            if len(times) >= self.limit:
                wait = max(1, math.ceil(times[0] + self.window - t))
                raise RateLimitedError(
                    f"too many {self.what}: at most {self.limit} per {self.window:g} seconds; try again in {wait} s",
                    retry_after=wait,
                )
            times.append(t)


def client_key(request: Any) -> str:
    """Who sent ``request`` (a Starlette or ``gr.Request``), for rate limits.

    Behind the Hugging Face proxy (``$SPACE_ID`` set) the client is the last address the proxy
    added to ``X-Forwarded-For``; elsewhere the peer address, since a client can write any
    ``X-Forwarded-For`` it likes.
    """
    if request is None:
        return "local"
    if os.environ.get("SPACE_ID"):
        headers = getattr(request, "headers", None) or {}
        forwarded = headers.get("x-forwarded-for", "") if hasattr(headers, "get") else ""
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1]
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "unknown")


def checked_text(value: Any, name: str, limit: int, *, required: bool = False) -> str:
    """``value`` stripped; refused when longer than ``limit`` (or empty when ``required``).

    Raises:
        QueryError: Not a string, too long, or empty when required.
    """
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise QueryError(f"the {name} must be text")
    value = value.strip()
    if required and not value:
        raise QueryError(f"the {name} is empty")
    if len(value) > limit:
        raise QueryError(f"the {name} is {len(value):,} characters long; the limit is {limit:,}")
    return value


# ------------------------------------------------------------------------------------ flags
class FlagStore:
    """Appends reports to a JSONL file.

    Args:
        path: The JSONL file (its folder is created).
        bundle_path: The bundle being served; ``path`` must not be inside it.

    Raises:
        BundleError: ``path`` is inside the bundle.
    """

    def __init__(self, path: Path, *, bundle_path: Path) -> None:
        self.path = check_outside(path, bundle_path, "flags")
        self.bundle_path = Path(bundle_path).resolve()
        self._lock = threading.Lock()
        self.on_change: list[Any] = []  # callables run after each write (uploads)

    def add(self, *, query: str, docid: str, reason: str) -> dict[str, Any]:
        """Records one report and returns it.

        Raises:
            QueryError: No document id was given, or the query, id or reason is too long.
        """
        docid = checked_text(docid, "document id", MAX_DOCID_CHARS)
        if not docid:
            raise QueryError("pick a result to flag (its document id)")
        record = {
            "at": now_iso(),
            "bundle": self.bundle_path.name,
            "query": checked_text(query, "flagged query", MAX_FLAG_QUERY_CHARS),
            "docid": docid,
            "reason": checked_text(reason, "reason", MAX_REASON_CHARS) or "other",
        }
        append_jsonl(self.path, record, self._lock)
        for hook in self.on_change:
            hook()
        logger.info("flagged %r (%r)", record["docid"][:200], record["reason"][:80])  # repr: a visitor's newline cannot forge log lines
        return record

    def read(self) -> list[dict[str, Any]]:
        """Returns every report recorded so far."""
        return read_jsonl(self.path)


def flags_table(records: Iterable[Mapping[str, Any]], *, width: int = 40) -> str:
    """Reports as a plain-text table (time, document, reason, query), one line each."""
    rows = [("when", "docid", "reason", "query")]
    for r in records:
        rows.append(tuple(_cell(r.get(k), width) for k in ("at", "docid", "reason", "query")))  # type: ignore[misc]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _cell(value: Any, width: int) -> str:
    text = " ".join(str(value or "").split())  # no newlines or tabs from the public in a table
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------------------------ hub
class HubSync:
    """Uploads local JSONL files to a Hub dataset, at most every ``every`` seconds when changed.

    Each process uploads its files under its own names (``<kind>/<start time>-<id>.jsonl``),
    so a restarted Space (whose local files start empty) never overwrites earlier uploads.

    Args:
        dataset: ``OWNER/NAME`` of the dataset repo (created private when missing).
        token: Hub token with write access.
        files: Local file -> folder in the repo (``{flags_path: "flags"}``).
        every: Seconds between uploads.
        api: A ``huggingface_hub.HfApi`` (default: a new one with ``token``).
    """

    def __init__(
        self, dataset: str, *, token: str | None, files: Mapping[Path, str], every: float = HUB_SYNC_EVERY_S, api: Any = None
    ) -> None:
        self.dataset = dataset
        self.every = float(every)
        self._token = token
        self._api = api
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
        run = uuid.uuid4().hex[:8]
        self.targets = {Path(p): f"{folder}/{stamp}-{run}.jsonl" for p, folder in files.items()}
        self._dirty: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._repo_ready = False

    def changed(self, path: Path) -> None:
        """Marks ``path`` for the next upload (and starts the uploader thread)."""
        with self._lock:
            self._dirty.add(Path(path))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="spacerini-hub-sync", daemon=True)
                self._thread.start()
                atexit.register(self.close)  # the last reports go up when the Space stops

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sync()

    def sync(self) -> list[str]:
        """Uploads the changed files now; returns their paths in the repo.

        A failed upload is logged and tried again at the next sync.
        """
        with self._lock:
            todo, self._dirty = self._dirty, set()
        done = []
        for path in sorted(todo):
            if not path.exists():
                continue
            try:
                self._upload(path, self.targets[path])
                done.append(self.targets[path])
            except Exception as exc:  # noqa: BLE001 - network trouble must not take the app down
                message = one_line(exc, secret=self._token)[:300]  # the Hub's answer may quote the token
                logger.warning("could not upload %s to the dataset %s: %s", path.name, self.dataset, message)
                with self._lock:
                    self._dirty.add(path)
        return done

    def _upload(self, path: Path, path_in_repo: str) -> None:
        api = self._api
        if api is None:
            from huggingface_hub import HfApi

            api = self._api = HfApi(token=self._token)
        if not self._repo_ready:
            api.create_repo(self.dataset, repo_type="dataset", private=True, exist_ok=True)
            self._repo_ready = True
        api.upload_file(
            path_or_fileobj=str(path),
            path_in_repo=path_in_repo,
            repo_id=self.dataset,
            repo_type="dataset",
            commit_message=f"spacerini: update {path_in_repo}",
        )

    def close(self) -> None:
        """Stops the uploader thread after a last upload."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            atexit.unregister(self.close)
        self.sync()


def _flock(fd: int, lock: bool) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the thread lock still serialises this process
        return
    fcntl.flock(fd, fcntl.LOCK_EX if lock else fcntl.LOCK_UN)
