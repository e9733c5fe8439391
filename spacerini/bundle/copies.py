"""Where a bundle was published (``spacerini push`` / ``deploy``), so that an opt-out can say
which copies still hold the documents it removed.

The record is ``.NAME.published.json`` beside the bundle (like its lock, never inside it, so it
is not published with it): one entry per Hub repo, ``{"kind": "dataset"|"space", "repo_id",
"generation", "at"}``, the generation being the bundle's when it was last sent there.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The command that sends a bundle to each kind of copy again.
_COMMANDS = {"dataset": "spacerini push {bundle} --repo {repo}", "space": "spacerini deploy {bundle} --space {repo}"}


def copies_path(bundle: str | os.PathLike[str]) -> Path:
    """``.NAME.published.json`` beside the bundle."""
    from spacerini.bundle.publish import beside

    return beside(bundle, "published.json")


def read_copies(bundle: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The bundle's published copies (empty when it has none, or the record is unreadable)."""
    try:
        entries = json.loads(copies_path(bundle).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [
        e for e in entries if isinstance(e, dict) and e.get("kind") in _COMMANDS and isinstance(e.get("repo_id"), str)
    ] if isinstance(entries, list) else []  # fmt: skip


def record_copy(bundle: str | os.PathLike[str], kind: str, repo_id: str, generation: int) -> None:
    """Records that generation ``generation`` of the bundle was sent to ``repo_id`` (best effort:
    a folder that cannot be written only loses the reminder, which is logged). A bundle opened
    from the Hugging Face cache (``hf:NAME``) gets no record: a file in the cache's ``snapshots/``
    folder would make ``huggingface_hub`` see the cache as corrupt."""
    from spacerini.hub import cache_revision

    if cache_revision(Path(bundle).expanduser().resolve()) is not None:
        return
    entries = [e for e in read_copies(bundle) if (e["kind"], e["repo_id"]) != (kind, repo_id)]
    entries.append({
        "kind": kind, "repo_id": repo_id, "generation": int(generation),
        "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    })  # fmt: skip
    path = copies_path(bundle)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        logger.warning("could not record where %s was published (%s): an opt-out will not remind you of it", bundle, exc)


def stale_copies(bundle: str | os.PathLike[str], generation: int) -> list[str]:
    """For each published copy older than ``generation``: the command that updates it."""
    shown = Path(bundle)
    return [
        _COMMANDS[e["kind"]].format(bundle=shown, repo=e["repo_id"])
        for e in read_copies(bundle)
        if int(e.get("generation") or 0) < generation
    ]


def warn_stale_copies(bundle: str | os.PathLike[str], generation: int, why: str) -> list[str]:
    """Logs one warning naming the published copies that still hold what ``why`` removed; returns
    their update commands."""
    commands = stale_copies(bundle, generation)
    if commands:
        logger.warning(
            "%s: its published copies still hold the documents %s; update them (earlier revisions are squashed): %s",
            bundle, why, "; ".join(commands),
        )  # fmt: skip
    return commands
