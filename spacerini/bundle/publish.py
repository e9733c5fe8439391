"""Atomic publishing: the bundle lock, the swap into place, and clean-up after dead builds."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from spacerini.bundle.manifest import MANIFEST, _checksums, _write_json
from spacerini.errors import (
    BundleError,
)

logger = logging.getLogger(__name__)


_RENAME_EXCHANGE = 2
_BUILDING = ".building-"
_OLD = ".old-"


def _swap_into_place(new: Path, target: Path) -> Path | None:
    """Moves the finished bundle ``new`` to ``target``, replacing an old bundle atomically.

    On Linux, ``renameat2(RENAME_EXCHANGE)`` swaps the two folders in one step, so there is no
    moment without a complete bundle at ``target``. Elsewhere two renames are used, and
    :func:`open_bundle` recovers from a crash between them.

    Returns:
        The folder now holding the previous bundle (for :func:`_discard`), or None.
    """
    if not target.exists():
        os.rename(new, target)
        return None
    if _exchange(new, target):
        return new  # `new` now holds the old bundle; a crash before it is deleted leaves a stale folder
    old = target.parent / f".{target.name}{_OLD}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    os.rename(new, target)
    return old


def _discard(previous: Path, target: Path) -> None:
    """Deletes the tree of the bundle just replaced (it may hold opted-out documents).

    Raises:
        BundleError: It could not be deleted; the new bundle is in place all the same.
    """
    try:
        shutil.rmtree(previous)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BundleError(
            f"{target} was replaced, but its previous version at {previous} could not be deleted ({exc}); delete it"
        ) from exc


def _exchange(a: Path, b: Path) -> bool:
    from spacerini.memory import libc

    try:
        renameat2 = libc().renameat2  # type: ignore[union-attr]
    except AttributeError:  # no C library, or one without renameat2
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def beside(bundle: str | os.PathLike[str], suffix: str) -> Path:
    """``.NAME.SUFFIX`` beside the bundle folder: where a bundle's own files that must never be
    published with it live (its lock, its opt-out key, the record of where it was pushed)."""
    root = Path(bundle).expanduser().resolve()
    return root.parent / f".{root.name}.{suffix}"


def lock_path(bundle: str | os.PathLike[str]) -> Path:
    """The lock file of a bundle: ``.NAME.lock`` beside the bundle folder (never inside it)."""
    return beside(bundle, "lock")


@contextlib.contextmanager
def bundle_lock(bundle: str | os.PathLike[str], *, wait: bool = True) -> Iterator[None]:
    """Holds a bundle's exclusive lock: every command that changes the bundle takes it.

    The lock is an ``flock`` on ``.NAME.lock`` beside the bundle, so it is released by the
    kernel when its holder dies, even by ``kill -9``. Its holder deletes the file before it
    unlocks, so no lock file outlives the command; a waiter that then finds it locked a deleted
    file tries again on the path (the usual lock-file protocol; ``filelock`` keeps the file instead).

    Args:
        bundle: The bundle folder (it need not exist yet).
        wait: Wait for the holder to finish (logging once that it waits), or raise at once.

    Raises:
        BundleLockedError: ``wait`` is False and another command holds the lock.
    """
    import fcntl

    from spacerini.errors import BundleLockedError

    path = lock_path(bundle)
    said = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a parent that is a file, no permission, a read-only disk
            raise BundleError(
                f"{Path(bundle)}: cannot write a bundle here ({exc.strerror or exc}: {exc.filename or path.parent}); "
                "choose another --out in a folder you can write to"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                raise BundleLockedError(
                    f"{Path(bundle)}: another spacerini command is changing this bundle; "
                    "try again when it has finished, or leave out --no-wait to wait for it"
                ) from None
            if not said:
                logger.warning("%s: another spacerini command is changing this bundle; waiting for it to finish", bundle)
                said = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        held = os.fstat(fd)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # the holder we waited for deleted this file: lock the path anew
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)  # closing the last descriptor releases the flock


def remove_stale(bundle: str | os.PathLike[str], *, locked: bool = False) -> list[Path]:
    """Deletes what dead builds left beside a bundle: ``.NAME.building-PID-*`` and ``.NAME.old-PID-*``.

    A build killed by ``kill -9`` (or a crash between the swap and the delete) leaves such a
    folder; one of them may hold a bundle's pre-opt-out tree. Holding the bundle's lock, every
    such folder is stale (a build holds the lock while its folder exists); otherwise only those
    whose process is gone are removed.

    Returns:
        The folders removed.
    """
    root = Path(bundle).expanduser().resolve()
    if not root.parent.is_dir():
        return []
    removed = []
    for marker in (_BUILDING, _OLD):
        for folder in root.parent.glob(f".{glob_escape(root.name)}{marker}*"):
            pid = _pid_of(folder.name.rsplit(marker, 1)[1])
            if folder.is_dir() and (locked or pid is None or not _alive(pid)):
                if marker == _OLD and not root.exists():
                    continue  # the only copy of the bundle: open_bundle renames it back
                logger.warning("removing %s, left by an interrupted build", folder)
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    import glob

    return glob.escape(name)


def _pid_of(suffix: str) -> int | None:
    head = suffix.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover_interrupted_swap(root: Path) -> None:
    olds = sorted(root.parent.glob(f".{root.name}.old-*")) if root.parent.exists() else []
    if olds and (olds[-1] / MANIFEST).is_file():
        logger.warning("recovering %s from an interrupted swap", root)
        os.rename(olds[-1], root)


def remove_tree(folder: Path, *, patience: float = 10.0) -> None:
    """Deletes a failed build's folder, passing again while a late writer (a cancelled shard task,
    a Lucene process that has not yet exited) makes a pass leave it behind, for ``patience`` s."""
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def building_folder(target: Path) -> Path:
    """A fresh temporary folder beside ``target`` for its next version (``.NAME.building-PID-*``):
    :func:`remove_stale` recognises it if this process dies."""
    folder = target.parent / f".{target.name}{_BUILDING}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


def publish(
    tree: Path, target: Path, manifest: dict[str, Any], *, known: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    """Publishes a finished tree as ``target``'s new version, atomically.

    The manifest is written last, with the checksums of every file, then the tree is swapped
    into place and the previous version deleted (see :func:`_discard`). On failure the tree is
    removed and ``target`` is left as it was.

    Args:
        tree: The finished tree.
        target: The bundle folder.
        manifest: The manifest; its ``checksums`` are filled in here.
        known: Checksums computed while files were written (``{relative path: {"size", "sha256"}}``),
            taken for the files whose size matches instead of reading them again.
    """
    try:
        manifest["checksums"] = _checksums(tree, known)
        _write_json(tree / MANIFEST, manifest)
        previous = _swap_into_place(tree, target)
    except BaseException:
        remove_tree(tree)
        raise
    if previous is not None:
        _discard(previous, target)
