"""Folders of source code as corpora: one document per code file, with provenance.

Each document's ``meta`` holds repo, path, owner, licence, language and the file's SWHID (the
identifier The Stack v2 uses). Binary files, files that are not UTF-8 and files over a size cap
are skipped and counted, never dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from spacerini.corpus.base import Corpus, Location
from spacerini.errors import CorpusError, CorpusNotFoundError
from spacerini.records import Doc

logger = logging.getLogger(__name__)

#: File extension (lower case) -> language name.
LANGUAGES: dict[str, str] = {
    ".py": "Python",
    ".pyi": "Python",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".java": "Java",
    ".kt": "Kotlin",
    ".kts": "Kotlin",
    ".scala": "Scala",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".cxx": "C++",
    ".hpp": "C++",
    ".hh": "C++",
    ".hxx": "C++",
    ".cs": "C#",
    ".go": "Go",
    ".rs": "Rust",
    ".rb": "Ruby",
    ".php": "PHP",
    ".swift": "Swift",
    ".m": "Objective-C",
    ".r": "R",
    ".jl": "Julia",
    ".lua": "Lua",
    ".pl": "Perl",
    ".pm": "Perl",
    ".hs": "Haskell",
    ".ml": "OCaml",
    ".ex": "Elixir",
    ".exs": "Elixir",
    ".erl": "Erlang",
    ".clj": "Clojure",
    ".dart": "Dart",
    ".sh": "Shell",
    ".bash": "Shell",
    ".zsh": "Shell",
    ".ps1": "PowerShell",
    ".sql": "SQL",
    ".html": "HTML",
    ".htm": "HTML",
    ".css": "CSS",
    ".scss": "SCSS",
    ".vue": "Vue",
    ".md": "Markdown",
    ".rst": "reStructuredText",
    ".tex": "TeX",
    ".toml": "TOML",
    ".yaml": "YAML",
    ".yml": "YAML",
    ".cmake": "CMake",
    ".f90": "Fortran",
    ".zig": "Zig",
    ".nim": "Nim",
    ".pyx": "Cython",
    ".cu": "CUDA",
    ".proto": "Protocol Buffer",
}
#: Whole file names (no telling extension) -> language name.
FILENAMES: dict[str, str] = {
    "Makefile": "Makefile",
    "GNUmakefile": "Makefile",
    "Dockerfile": "Dockerfile",
    "CMakeLists.txt": "CMake",
}
#: Default cap on the size of one code file (bytes).
DEFAULT_MAX_FILE_BYTES = 1_000_000

_LICENCE_FILES = ("LICENSE", "LICENCE", "COPYING", "UNLICENSE")


def swhid(data: bytes) -> str:
    """Returns the SWHID of a file's bytes: ``swh:1:cnt:`` + the git blob SHA-1.

    Args:
        data: The raw file contents.

    Returns:
        The content identifier, e.g. ``swh:1:cnt:e69de29bb2d1d6434b8b29ae775ad8c2e48c5391`` for
        empty contents (the same hash as ``git hash-object``).
    """
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return "swh:1:cnt:" + digest.hexdigest()


def language_of(path: Path) -> str | None:
    """Returns the language a file name implies, or None for a file that is not code."""
    if path.name in FILENAMES:
        return FILENAMES[path.name]
    return LANGUAGES.get(path.suffix.lower())


_GNU_TITLES: tuple[tuple[str, str], ...] = (
    ("gnu lesser general public license", "LGPL"),
    ("gnu library general public license", "LGPL"),
    ("gnu affero general public license", "AGPL-3.0"),
    ("gnu general public license", "GPL"),
)
# Checked in order after the GNU family; the first that matches wins.
_LICENCE_RULES: tuple[tuple[str, str], ...] = (
    ("Apache-2.0", r"apache license,? version 2\.0"),
    ("MPL-2.0", r"mozilla public license,? (version|v\.) ?2\.0"),
    ("Unlicense", r"free and unencumbered software released into the public domain"),
    ("ISC", r"permission to use, copy, modify, and(/or)? distribute this software for any purpose"),
    ("MIT", r"permission is hereby granted, free of charge|^mit license"),
    ("BSD-3-Clause", r"redistribution and use in source and binary forms.*neither the name of"),
    ("BSD-2-Clause", r"redistribution and use in source and binary forms"),
)


def detect_licence(text: str) -> str:
    """Detects a licence from the text of a LICENSE/COPYING file by keywords.

    Args:
        text: The licence file's text.

    Returns:
        An SPDX-like name (MIT, Apache-2.0, BSD-3-Clause, BSD-2-Clause, GPL-3.0, GPL-2.0, LGPL,
        MPL-2.0, ISC, Unlicense), the value of an ``SPDX-License-Identifier:`` line, or "unknown".
    """
    spdx = re.search(r"SPDX-License-Identifier:\s*([\w.\-+]+)", text)
    if spdx:
        return spdx.group(1)
    flat = " ".join(text.lower().split())
    # GNU licences quote each other ("use the GNU Lesser General Public License instead"), so the
    # title that comes first names the licence.
    head = flat[:2000]
    gnu = sorted((head.find(title), name) for title, name in _GNU_TITLES if title in head)
    if gnu:
        name = gnu[0][1]
        if name == "GPL":
            version = re.search(r"gnu general public license,? version (\d)", head)
            return f"GPL-{version.group(1)}.0" if version and version.group(1) in "23" else "GPL"
        return name
    for name, pattern in _LICENCE_RULES:
        if re.search(pattern, flat):
            return name
    return "unknown"


def folder_licence(folder: Path) -> tuple[str, str | None]:
    """Finds a LICENSE/LICENCE/COPYING file at a folder's root and detects its licence.

    Returns:
        (licence, licence file name or None when there is none).
    """
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.is_file())
    except OSError:
        return "unknown", None
    for stem in _LICENCE_FILES:
        for name in names:
            if (
                name.upper() == stem
                or name.upper().startswith(stem + ".")
                or name.upper().startswith(stem + "-")
            ):
                try:
                    text = (folder / name).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                return detect_licence(text), name
    return "unknown", None


def read_code_file(path: Path, *, max_file_bytes: int) -> tuple[bytes | None, str | None, str]:
    """Reads one code file, or says why it is skipped.

    Returns:
        (raw bytes, decoded text, "") for a kept file, or (None, None, reason) with reason one of
        "too_large", "binary", "not_utf8", "unreadable".
    """
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            return None, None, "too_large"
        data = path.read_bytes()
    except OSError:
        return None, None, "unreadable"
    if len(data) > max_file_bytes:
        return None, None, "too_large"
    if b"\0" in data:
        return None, None, "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, None, "not_utf8"
    return data, text, ""


def walk_sorted(folder: Path, *, skip_dirs: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Yields files under ``folder`` in sorted order, skipping hidden entries and ``skip_dirs``."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in skip_dirs:
                yield from walk_sorted(Path(entry.path), skip_dirs=skip_dirs)
        elif entry.is_file(follow_symlinks=False):
            yield Path(entry.path)


class CodeCorpus(Corpus):
    """One document per code file of a folder (the folder is one repository).

    Args:
        folder: The repository folder.
        owner: The owner recorded in every document's meta (None when unknown).
        max_file_bytes: Files larger than this are skipped (and counted as "too_large").
        progress: Show a progress bar while iterating.

    Raises:
        CorpusNotFoundError: The folder does not exist or is not a folder.
    """

    def __init__(
        self,
        folder: Path,
        *,
        owner: str | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        progress: bool = True,
        source: str | None = None,
    ) -> None:
        if not folder.exists():
            raise CorpusNotFoundError("no such folder", path=str(folder))
        if not folder.is_dir():
            raise CorpusError("a code corpus (--format code) must be a folder", path=str(folder))
        if max_file_bytes <= 0:
            raise CorpusError(f"max_file_bytes must be positive, got {max_file_bytes}")
        self.folder = folder
        self.repo = folder.resolve().name
        self.owner = owner
        self.max_file_bytes = max_file_bytes
        self.licence, self.licence_file = folder_licence(folder)
        super().__init__(
            source=source or str(folder),
            format="code",
            id_field="path",
            fields=("content",),
            progress=progress,
            extra={
                "repo": self.repo,
                "owner": owner,
                "licence": self.licence,
                "licence_file": self.licence_file,
                "max_file_bytes": max_file_bytes,
            },
        )

    def _located_docs(self) -> Iterator[tuple[Doc, Location]]:
        for path in walk_sorted(self.folder):
            language = language_of(path)
            if language is None:
                continue
            rel = path.relative_to(self.folder).as_posix()
            data, text, reason = read_code_file(path, max_file_bytes=self.max_file_bytes)
            if data is None or text is None:
                self._skip(reason)
                continue
            meta = {
                "repo": self.repo,
                "path": rel,
                "owner": self.owner,
                "licence": self.licence,
                "language": language,
                "swhid": swhid(data),
            }
            yield (
                Doc(id=rel, text=text, fields={"path": rel, "language": language}, meta=meta),
                (str(path), None),
            )
