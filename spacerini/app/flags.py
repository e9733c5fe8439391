"""User reports ("flag this result"), appended to a local JSONL file.

Each report is one JSON line ``{"at", "bundle", "query", "docid", "reason"}``. A line is written
with a single ``write`` on a file opened with ``O_APPEND`` while holding an exclusive lock (a
thread lock plus ``flock`` across processes), so concurrent reports never interleave. The file
lives in a user-data folder, never inside the bundle (a bundle stays read-only and its
checksums stay valid).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from spacerini.errors import BundleError, QueryError

logger = logging.getLogger(__name__)

#: Longest reason kept, in characters.
MAX_REASON_CHARS = 1_000
#: Reasons offered in the app.
REASONS: tuple[str, ...] = ("personal information", "licence problem", "harmful content", "wrong attribution", "other")


def default_flags_path(bundle_path: Path) -> Path:
    """The default report file for a bundle: ``$SPACERINI_FLAGS``, else a per-bundle file in
    ``$XDG_DATA_HOME/spacerini/flags/`` (``~/.local/share`` by default)."""
    explicit = os.environ.get("SPACERINI_FLAGS")
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    tag = hashlib.sha1(str(Path(bundle_path).resolve()).encode()).hexdigest()[:10]
    return base / "spacerini" / "flags" / f"{Path(bundle_path).name}-{tag}.jsonl"


class FlagStore:
    """Appends reports to a JSONL file.

    Args:
        path: The JSONL file (its folder is created).
        bundle_path: The bundle being served; ``path`` must not be inside it.

    Raises:
        BundleError: ``path`` is inside the bundle.
    """

    def __init__(self, path: Path, *, bundle_path: Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.bundle_path = Path(bundle_path).resolve()
        if self.path == self.bundle_path or self.bundle_path in self.path.parents:
            raise BundleError(f"{self.path}: the flags file must not be inside the bundle; choose another path")
        self._lock = threading.Lock()

    def add(self, *, query: str, docid: str, reason: str) -> dict[str, Any]:
        """Records one report and returns it.

        Raises:
            QueryError: No document id was given.
        """
        docid = (docid or "").strip()
        if not docid:
            raise QueryError("pick a result to flag (its document id)")
        record = {
            "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "bundle": self.bundle_path.name,
            "query": (query or "")[:1_000],
            "docid": docid[:1_000],
            "reason": (reason or "other").strip()[:MAX_REASON_CHARS] or "other",
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                _flock(fd, True)
                try:
                    os.write(fd, line)
                finally:
                    _flock(fd, False)
            finally:
                os.close(fd)
        logger.info("flagged %s (%s)", record["docid"], record["reason"])
        return record

    def read(self) -> list[dict[str, Any]]:
        """Returns every report recorded so far."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]


def _flock(fd: int, lock: bool) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the thread lock still serialises this process
        return
    fcntl.flock(fd, fcntl.LOCK_EX if lock else fcntl.LOCK_UN)
