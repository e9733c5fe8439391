"""The manifest (``spacerini.json``): constants, checksums, reading and validating it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spacerini import __version__
from spacerini.errors import (
    BundleCorruptError,
    BundleNotFoundError,
)

logger = logging.getLogger(__name__)


MANIFEST = "spacerini.json"
#: 2: the docstore is block-compressed records with an id index (see :mod:`spacerini.docstore`);
#: bundles of format 1 (a Parquet docstore) are still read.
FORMAT_VERSION = 2
#: Longest query accepted, in characters. Longer ones get a QueryError (one clear line).
MAX_QUERY_CHARS = 10_000
#: Licence and language categories counted in the manifest; rarer ones are summed as "(other)".
MAX_CATEGORIES = 200
DEFAULT_BACKENDS: tuple[str, ...] = ("bm25",)
RANKED_BACKENDS = ("bm25", "dense", "hybrid", "exact")


def backend_folder(module: Any, name: str) -> str:
    """The bundle sub-folder a backend owns: its ``FOLDER`` (bm25 owns ``lucene/``) or its name."""
    return str(getattr(module, "FOLDER", name))


def _checksums(folder: Path, known: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file under ``folder``.

    Files hashed while they were written are not read again: a docstore records its sums in
    ``docstore.json``, and ``known`` holds others (the Lucene index, hashed by the Java helper
    that wrote it), by path relative to ``folder``; a sum is taken when the size still matches.
    The remaining files are hashed by two threads (hashlib releases the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    from spacerini.docstore import written_checksums

    recorded_sums = {f"docs/{name}": info for name, info in written_checksums(folder / "docs").items()}
    recorded_sums.update(known or {})
    sums: dict[str, dict[str, Any]] = {}
    unknown: list[tuple[str, Path, int]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        recorded = recorded_sums.get(rel)
        if recorded is not None and recorded.get("size") == size and isinstance(recorded.get("sha256"), str):
            sums[rel] = {"size": size, "sha256": recorded["sha256"]}
        else:
            sums[rel] = {"size": size, "sha256": ""}
            unknown.append((rel, path, size))
    if len(unknown) > 1:
        with ThreadPoolExecutor(2) as pool:
            for (rel, _, _), digest in zip(unknown, pool.map(lambda item: _checksums_of(item[1]), unknown), strict=True):
                sums[rel]["sha256"] = digest
    else:
        for rel, path, _ in unknown:
            sums[rel]["sha256"] = _checksums_of(path)
    return sums


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _previous_generation(root: Path) -> int:
    """The generation of the bundle at ``root`` (0 when there is none, 1 for older bundles)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return int(manifest.get("generation", 1)) if isinstance(manifest, dict) else 0


def _read_manifest(root: Path, *, verify: bool = False) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Reads and validates ``root``'s manifest; returns it with the stat key of the file read."""
    manifest_path = root / MANIFEST
    try:
        with manifest_path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read()
    except FileNotFoundError:
        raise BundleNotFoundError(
            f"{root}: not a Spacerini bundle ({MANIFEST} is missing); build one with `spacerini index SOURCE --out {root}`"
        ) from None
    except IsADirectoryError:
        raise BundleCorruptError(f"{manifest_path}: unreadable manifest (a folder); rebuild the bundle") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleCorruptError(f"{manifest_path}: unreadable manifest ({exc}); rebuild the bundle") from exc
    if not isinstance(manifest, dict) or "backends" not in manifest or "checksums" not in manifest:
        raise BundleCorruptError(f"{manifest_path}: manifest lacks 'backends' or 'checksums'; rebuild the bundle")
    _check_shape(manifest_path, manifest)
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleCorruptError(
            f"{manifest_path}: bundle format {version!r} is not supported by spacerini {__version__}; upgrade spacerini"
        )
    _check_files(root, manifest["checksums"], verify=verify)
    return manifest, _stat_key(st)


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _manifest_key(root: Path) -> tuple[int, ...] | None:
    try:
        return _stat_key(os.stat(root / MANIFEST))
    except OSError:
        return None


def _check_shape(manifest_path: Path, manifest: Mapping[str, Any]) -> None:
    """Refuses a manifest whose ``backends`` or ``checksums`` are not the objects a build writes,
    or whose checksums name a path outside the bundle (``..``, absolute): every command that
    copies a bundle (a Space, a push) copies exactly the files listed there."""
    backends, checksums = manifest["backends"], manifest["checksums"]
    if not isinstance(backends, dict) or not all(isinstance(v, dict) for v in backends.values()):
        raise BundleCorruptError(f"{manifest_path}: 'backends' is not an object of backend entries; rebuild the bundle")
    if not isinstance(checksums, dict):
        raise BundleCorruptError(f"{manifest_path}: 'checksums' is not an object of files; rebuild the bundle")
    for rel, info in checksums.items():
        parts = rel.split("/")
        if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts) or rel == MANIFEST:
            raise BundleCorruptError(
                f"{manifest_path}: the checksums name {rel!r}, which is not a file inside the bundle; rebuild the bundle"
            )
        if not isinstance(info, dict) or not isinstance(info.get("size"), int) or not isinstance(info.get("sha256"), str):
            raise BundleCorruptError(
                f"{manifest_path}: the checksum entry of {rel} is not {{\"size\": N, \"sha256\": HEX}}; rebuild the bundle"
            )


def _check_files(root: Path, checksums: Mapping[str, Any], *, verify: bool) -> None:
    if verify:
        _check_no_added_files(root, checksums)
    for rel, info in checksums.items():
        p = root / rel
        if not p.is_file():
            raise BundleCorruptError(f"{root}: file {rel} is missing; rebuild the bundle")
        if p.stat().st_size != info.get("size"):
            raise BundleCorruptError(
                f"{root}: file {rel} has {p.stat().st_size} bytes, the manifest says {info.get('size')}; rebuild the bundle"
            )
        if verify:
            actual = _checksums_of(p)
            if actual != info.get("sha256"):
                raise BundleCorruptError(f"{root}: file {rel} fails its SHA-256 checksum; rebuild the bundle")


def _check_no_added_files(root: Path, checksums: Mapping[str, Any]) -> None:
    """Refuses a file added after the build inside a folder the manifest lists (a stray Lucene
    ``segments_N`` would change the index that is opened). Loose files at the top, such as the
    ``.gitattributes`` and ``README.md`` of a Hub dataset repo, are not the bundle's and are ignored."""
    folders = sorted({rel.split("/", 1)[0] for rel in checksums if "/" in rel})
    for folder in folders:
        top = root / folder
        if not top.is_dir() or top.is_symlink():
            continue  # a missing file in it is reported by name below
        for path in sorted(top.rglob("*")):
            if path.is_file() or path.is_symlink():
                rel = path.relative_to(root).as_posix()
                if rel not in checksums:
                    raise BundleCorruptError(
                        f"{root}: file {rel} is not in the manifest (added after the build); remove it or rebuild the bundle"
                    )


def _checksums_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
