"""Bundles kept on the Hugging Face Hub as dataset repos: ``hf:OWNER/NAME[@REVISION]``.

This sits beside the bundle rather than inside it: :func:`spacerini.bundle.open_bundle` asks it
to turn an ``hf:`` spec into a local folder, and :mod:`spacerini.deploy` pushes bundles there;
neither the bundle nor this module imports the other's package at import time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from spacerini.errors import BundleNotFoundError, DeployError, one_line

logger = logging.getLogger(__name__)

#: ``OWNER/NAME``, each 1 to 96 letters, digits, ``_.-``, neither starting nor ending with ``.`` or ``-``.
_PART = r"[A-Za-z0-9](?:[\w.-]{0,94}\w)?"
_REPO_ID = re.compile(rf"^{_PART}/{_PART}$")


def check_repo_id(repo_id: str) -> str:
    """Checks an ``OWNER/NAME`` repo id by the Hub's rules (those of ``huggingface_hub``'s
    ``validate_repo_id``: no ``--`` or ``..``, no ``.git`` at the end), before anything is built.

    Raises:
        DeployError: It is not of that form.
    """
    if (
        not isinstance(repo_id, str)
        or not _REPO_ID.match(repo_id)
        or "--" in repo_id
        or ".." in repo_id
        or repo_id.endswith(".git")
    ):
        raise DeployError(
            f"{repo_id!r} is not a Hugging Face repo id: use OWNER/NAME (letters, digits, _ . -; "
            "no -- or .., not ending in . - or .git)"
        )
    return repo_id


def resolve_hf_bundle(
    spec: str, *, token: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Downloads (or finds in the local cache) a bundle stored as a dataset repo.

    Args:
        spec: ``hf:OWNER/NAME`` or ``hf:OWNER/NAME@REVISION``.
        token: Token for private repos (default: ``HF_TOKEN`` or the saved login).
        cache_dir: The Hugging Face cache to use.

    Returns:
        The local folder holding the bundle (pass it to ``open_bundle``).

    Raises:
        BundleNotFoundError: Bad spec, or the repo cannot be downloaded (nor found in the cache
            when offline).
    """
    if not isinstance(spec, str) or not spec.startswith("hf:"):
        raise BundleNotFoundError(f"{spec!r} is not a Hub bundle: use hf:OWNER/NAME[@REVISION]")
    repo_id, _, revision = spec[3:].partition("@")
    try:
        check_repo_id(repo_id)
    except DeployError as exc:
        raise BundleNotFoundError(f"{spec}: {exc}") from None
    from huggingface_hub import snapshot_download

    from spacerini.corpus.hf import _Offline, _offline_already, hub_endpoint, hub_reachable

    # With no network the local cache alone is asked, at once (the Hub client has no timeout of its own).
    unreachable = not _offline_already() and not hub_reachable()
    try:
        with _Offline() if unreachable else contextlib.nullcontext():
            folder = snapshot_download(
                repo_id, repo_type="dataset", revision=revision or None, token=token, cache_dir=cache_dir
            )
    except Exception as exc:  # noqa: BLE001 - offline, missing, private: one clear line
        message = one_line(exc, secret=token)
        if unreachable:
            raise BundleNotFoundError(
                f"{spec}: not in the local Hugging Face cache, and the Hub ({hub_endpoint()}) does not answer: "
                "check the network (HF_ENDPOINT, HTTPS_PROXY), or download the bundle once where there is one"
            ) from None
        raise BundleNotFoundError(
            f"{spec}: cannot download the bundle ({message}); check the name, the network (HF_HUB_OFFLINE) and the token"
        ) from None
    return Path(folder)


def check_hub_online(what: str) -> None:
    """Fails at once when the Hub cannot be used: offline mode is on, or it does not answer
    within :data:`spacerini.corpus.hf.PROBE_TIMEOUT` seconds.

    Args:
        what: What needs the Hub ("deploy or push"), for the message.

    Raises:
        DeployError: The Hub cannot be used.
    """
    from huggingface_hub import constants

    from spacerini.corpus.hf import PROBE_TIMEOUT, hub_endpoint, hub_reachable

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") or constants.HF_HUB_OFFLINE:
        raise DeployError(
            f"the Hugging Face Hub is switched off here (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set): unset it to {what}"
        )
    if not hub_reachable():
        raise DeployError(
            f"the Hugging Face Hub ({hub_endpoint()}) does not answer within {PROBE_TIMEOUT:g} s: "
            f"check the network (HF_ENDPOINT, HTTPS_PROXY) and try again to {what}"
        )


def point(link: Path, target: Path) -> None:
    """Makes ``link`` a symlink to ``target`` in one step (a new link renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp, target_is_directory=True)
    os.replace(tmp, link)


def cache_revision(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """``(repo folder, revision)`` when ``path`` is in a revision's snapshot in a Hugging Face
    cache (``.../datasets--OWNER--NAME/snapshots/REVISION[/...]``), else None."""
    parts = Path(path).parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and parts[i - 1].startswith(("datasets--", "models--", "spaces--")):
            return Path(*parts[:i]), parts[i + 1]
    return None


def forget_revision(snapshot: str | os.PathLike[str]) -> bool:
    """Deletes a revision of a Hub bundle from the Hugging Face cache: its snapshot and the blobs
    no other revision uses (``huggingface_hub``'s own cache cleaning). A path outside the cache (a
    local folder) is left alone. Never raises: a failure is logged.

    Returns:
        True when the revision was deleted.
    """
    found = cache_revision(snapshot)
    if found is None:
        return False
    repo_dir, revision = found
    try:
        from huggingface_hub import scan_cache_dir

        strategy = scan_cache_dir(repo_dir.parent).delete_revisions(revision)
        strategy.execute()
    except Exception as exc:  # noqa: BLE001 - a cache that cannot be cleaned must not stop serving
        logger.warning("could not delete the replaced revision %s from the cache: %s", snapshot, one_line(exc))
        return False
    logger.info("deleted the replaced revision %s from the cache (%s freed)", snapshot, strategy.expected_freed_size_str)
    return True


def follow_hub_bundle(
    spec: str,
    link: str | os.PathLike[str],
    *,
    interval: float = 300.0,
    stop: threading.Event | None = None,
    resolve: Callable[[str], Path] = resolve_hf_bundle,
    forget_after: float | None = None,
) -> Path:
    """Keeps ``link`` pointing at the newest revision of a Hub bundle, for a Space that serves it.

    The bundle is downloaded now and ``link`` (a symlink) points at it; then a daemon thread asks
    the Hub every ``interval`` seconds and, when a new revision was pushed (an opt-out, a
    rebuild), downloads it and repoints ``link`` atomically. A :class:`~spacerini.bundle.Bundle`
    opened at ``link`` notices the new manifest within its reload interval and switches every
    backend at once, as it does when a bundle on disk is rebuilt; answers in flight finish on the
    old revision. Once no answer can still be reading it (``forget_after`` seconds: twice the
    bundle's grace period), the old revision is deleted from the Hugging Face cache
    (:func:`forget_revision`): it holds the documents an opt-out removed.

    Args:
        spec: ``hf:OWNER/NAME`` (no ``@REVISION``: a pinned revision never changes).
        link: Where the symlink lives (open the bundle there).
        interval: Seconds between checks.
        stop: Set it to end the thread.
        resolve: Downloads a spec to a local folder (tests pass a stand-in).
        forget_after: Seconds after a switch before the old revision leaves the cache (default:
            twice :data:`spacerini.bundle.open.RETIRE_SECONDS`, plus 5).

    Returns:
        ``link``.

    Raises:
        BundleNotFoundError: The first download failed.
    """
    link = Path(link)
    current = Path(resolve(spec))
    point(link, current)
    done = stop or threading.Event()
    if forget_after is None:
        from spacerini.bundle.open import RETIRE_SECONDS

        forget_after = 2 * RETIRE_SECONDS + 5

    def watch() -> None:
        nonlocal current
        while not done.wait(interval):
            try:
                newest = Path(resolve(spec))
                if newest != current:
                    logger.info("%s: new revision at %s", spec, newest)
                    point(link, newest)
                    old, current = current, newest
                    timer = threading.Timer(forget_after, forget_revision, args=(old,))
                    timer.daemon = True
                    timer.name = "spacerini-hub-forget"
                    timer.start()
            except BundleNotFoundError as exc:  # offline for a while: keep serving what we have
                logger.warning("cannot check %s for a new revision: %s", spec, exc)
            except Exception:  # noqa: BLE001 - the thread must live on: a revision with an opt-out may come next
                logger.exception("following %s failed this time; trying again in %.0f s", spec, interval)

    threading.Thread(target=watch, name="spacerini-hub-follow", daemon=True).start()
    return link
