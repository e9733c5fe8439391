"""Folders of source code as corpora: one document per code file, with provenance.

Each document's ``meta`` holds repo, path, owner, licence, language and the file's SWHID (the
identifier The Stack v2 uses). Binary files, files that are not UTF-8 and files over a size cap
are skipped and counted, never dropped silently. Symbolic links are never followed (a link to
``/etc/passwd`` or ``~/.ssh`` must not be read into a bundle that is served publicly); code-named
links, links to folders, FIFOs, devices, folders that cannot be listed and files whose names are
not UTF-8 are counted as skipped too. Hidden files and folders (``.git``) are left out.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


#: The most read of a licence, package metadata or git file (they are small; a bigger one is cut).
METADATA_BYTES = 1_000_000


def read_small_file(path: Path, *, limit: int = METADATA_BYTES) -> bytes:
    """The first ``limit`` bytes of a regular file: a licence, package metadata or git file.

    A FIFO, socket or device (in a tarball, say) would block a plain read forever or never end,
    so anything but a regular file is refused.

    Raises:
        OSError: The file cannot be opened, or it is not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | _NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return handle.read(limit)


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
                    text = read_small_file(folder / name).decode("utf-8", errors="replace")
                except OSError:
                    continue
                return detect_licence(text), name
    return "unknown", None


def read_code_file(
    path: Path, *, max_file_bytes: int, follow_symlinks: bool = False
) -> tuple[bytes | None, str | None, str]:
    """Reads one code file, or says why it is skipped.

    By default the file is opened without following a symbolic link, and it is read only when
    it is a regular file: a file swapped for a link (to ``/etc/passwd``, say) or for a FIFO
    after its folder was listed is skipped, never read or waited on.

    Args:
        path: The file.
        max_file_bytes: Larger files are skipped as "too_large".
        follow_symlinks: Read through a symbolic link (the default corpus of installed
            packages does; a user's folder never does).

    Returns:
        (raw bytes, decoded text, "") for a kept file, or (None, None, reason) with reason one of
        "too_large", "binary", "not_utf8", "unreadable", "symlink", "special_file".
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | (0 if follow_symlinks else _NOFOLLOW))
    except OSError as exc:
        # O_NOFOLLOW fails with ELOOP on a link (FreeBSD/macOS: EMLINK).
        link = not follow_symlinks and exc.errno in (errno.ELOOP, errno.EMLINK) and path.is_symlink()
        return None, None, "symlink" if link else "unreadable"
    try:
        with os.fdopen(fd, "rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                return None, None, "special_file"
            if status.st_size > max_file_bytes:
                return None, None, "too_large"
            data = _read_at_most(handle, max_file_bytes + 1)
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


def _read_at_most(handle: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes of a file (``limit`` may exceed what one read can allocate)."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = handle.read(min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def scan_folder(folder: Path) -> list[os.DirEntry[str]] | None:
    """The entries of ``folder`` sorted by name, hidden ones left out; None when it cannot be read."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        return None
    return [entry for entry in entries if not entry.name.startswith(".")]


def visible_entries(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder`` sorted by name, hidden ones left out (none when it cannot be read)."""
    return scan_folder(folder) or []


def entry_kind(entry: os.DirEntry[str]) -> str:
    """What a folder entry is, links never followed: "dir", "file", "symlink" or "special_file"."""
    try:
        if entry.is_symlink():
            return "symlink"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
    except OSError:
        pass
    return "special_file"


def walk_sorted(
    folder: Path,
    *,
    skip_dirs: frozenset[str] = frozenset(),
    skipped: Callable[[str, Path], None] | None = None,
) -> Iterator[Path]:
    """Yields the regular files under ``folder`` in sorted order, skipping hidden entries and ``skip_dirs``.

    Symbolic links are never followed. The walk keeps its own stack, so a tree of any depth is
    walked (a recursive walk fails at about 1,000 levels).

    Args:
        folder: The folder to walk.
        skip_dirs: Names of folders left out.
        skipped: Called with (reason, path) for each entry that is left out other than hidden
            ones and ``skip_dirs``: "symlink", "special_file" (FIFOs, sockets, devices) or
            "unreadable_folder".
    """
    top = scan_folder(folder)
    if top is None:
        if skipped is not None:
            skipped("unreadable_folder", folder)
        return
    stack: list[Iterator[os.DirEntry[str]]] = [iter(top)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = Path(entry.path)
        kind = entry_kind(entry)
        if kind == "file":
            yield path
        elif kind == "dir":
            if entry.name in skip_dirs:
                continue
            entries = scan_folder(path)
            if entries is None:
                if skipped is not None:
                    skipped("unreadable_folder", path)
                continue
            stack.append(iter(entries))
        elif skipped is not None:
            skipped(kind, path)


# ------------------------------------------------------------------------------ repositories
@dataclass(frozen=True)
class Repo:
    """One repository of a code folder: where it is, and what its files are recorded with.

    Attributes:
        root: The repository's folder.
        rel: Its path below the corpus folder, POSIX style ("" for the corpus folder itself).
        name: The repository name recorded in ``meta["repo"]``.
        owner: Its owner (None when unknown).
        licence: The licence its licence file names ("unknown" without one).
        licence_file: That file's name, or None.
    """

    root: Path
    rel: str
    name: str
    owner: str | None
    licence: str
    licence_file: str | None

    def describe(self) -> dict[str, Any]:
        """The JSON-serialisable description kept in the bundle manifest."""
        return {
            "repo": self.name,
            "path": self.rel,
            "owner": self.owner,
            "licence": self.licence,
            "licence_file": self.licence_file,
        }


def is_git_root(folder: Path) -> bool:
    """Whether ``folder`` is the top of a git work tree (a ``.git`` folder, or file for submodules)."""
    try:
        return (folder / ".git").exists()
    except OSError:  # a path too long to look at: not a repository the walk can read either
        return False


def _git_dir(root: Path) -> Path | None:
    git = root / ".git"
    if git.is_dir():
        return git
    try:  # submodules and worktrees: a file "gitdir: PATH"
        text = read_small_file(git).decode("utf-8", errors="replace")
    except OSError:
        return None
    match = re.match(r"\s*gitdir:\s*(.+?)\s*$", text)
    return (root / match.group(1)).resolve() if match else None


def owner_from_url(url: str) -> str | None:
    """The owner in a git remote URL: ``OWNER`` of ``https://host/OWNER/NAME(.git)`` or ``git@host:OWNER/NAME``.

    Returns:
        The owner (``group/subgroup`` for nested groups), or None for a local path or file URL.
    """
    url = url.strip()
    scheme = re.match(r"^([A-Za-z][\w+.-]*)://(?:[^@/]+@)?[^/]+/(.*)$", url)
    if scheme:
        if scheme.group(1).lower() == "file":
            return None
        path = scheme.group(2)
    else:
        scp = re.match(r"^(?:[^@/:]+@)?[^/:]+:(?!//)(.*)$", url)  # git@github.com:OWNER/NAME.git
        if scp is None:
            return None
        path = scp.group(1)
    parts = [part for part in path.strip("/").split("/") if part]
    if len(parts) < 2:
        return None
    return "/".join(parts[:-1]) or None


def git_remote_owner(root: Path) -> str | None:
    """The owner named by the URL of a git repository's ``origin`` remote (else its first remote).

    Args:
        root: The work tree's top folder (holding ``.git``).

    Returns:
        The owner, or None when there is no remote or its URL names none.
    """
    git_dir = _git_dir(root)
    if git_dir is None:
        return None
    try:
        text = read_small_file(git_dir / "config").decode("utf-8", errors="replace")
    except OSError:
        return None
    urls: dict[str, str] = {}
    remote: str | None = None
    for line in text.splitlines():
        line = line.strip()
        section = re.match(r'^\[\s*remote\s+"([^"]*)"\s*\]', line)
        if section:
            remote = section.group(1)
            continue
        if line.startswith("["):
            remote = None
            continue
        value = re.match(r"^url\s*=\s*(.+)$", line, re.IGNORECASE)
        if remote is not None and value:
            urls.setdefault(remote, value.group(1).strip().strip('"'))
    for name in ("origin", *urls):
        if name in urls:
            owner = owner_from_url(urls[name])
            if owner:
                return owner
    return None


def _person(value: Any) -> str | None:
    """A person's name from package metadata: ``"Name <mail> (url)"`` or ``{"name": ...}``."""
    if isinstance(value, dict):
        value = value.get("name") or value.get("email")
    if not isinstance(value, str):
        return None
    name = re.sub(r"\s*[<(].*$", "", value).strip()
    return name or (value.strip() or None)


def package_author(root: Path) -> str | None:
    """The first author named by a folder's ``pyproject.toml``, ``setup.cfg`` or ``package.json``.

    Returns:
        The author's name, or None when no metadata names one (or it cannot be parsed).
    """
    import json
    import tomllib

    try:
        data = tomllib.loads(read_small_file(root / "pyproject.toml").decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        data = {}
    project = data.get("project")
    tool = data.get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    for authors in (
        project.get("authors") if isinstance(project, dict) else None,
        poetry.get("authors") if isinstance(poetry, dict) else None,
    ):
        if isinstance(authors, list):
            for author in authors:
                name = _person(author)
                if name:
                    return name
    try:
        import configparser

        config = configparser.ConfigParser(interpolation=None, strict=False)
        config.read_string(read_small_file(root / "setup.cfg").decode("utf-8"))
        name = _person(config.get("metadata", "author", fallback=None))
        if name:
            return name
    except (OSError, UnicodeDecodeError, configparser.Error):
        pass
    try:
        package = json.loads(read_small_file(root / "package.json").decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        package = {}
    if isinstance(package, dict):
        for author in (package.get("author"), *(package.get("contributors") or [])[:1]):
            name = _person(author)
            if name:
                return name
    return None


def repo_at(root: Path, rel: str, *, name: str, owner: str | None) -> Repo:
    """Describes the repository whose top folder is ``root``.

    Args:
        root: The repository's folder.
        rel: Its path below the corpus folder ("" for the corpus folder itself).
        name: The name to record.
        owner: An owner that overrides detection (``--owner``); else the git remote's owner, else
            the first author of the package metadata.
    """
    licence, licence_file = folder_licence(root)
    if owner is None:
        owner = (git_remote_owner(root) if is_git_root(root) else None) or package_author(root)
    return Repo(root=root, rel=rel, name=name, owner=owner, licence=licence, licence_file=licence_file)


def _links_to_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a loop of links, or a name too long
        return False


def _is_text(name: str) -> bool:
    """Whether a file name decoded by the OS holds only real text (no escaped undecodable bytes)."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class CodeCorpus(Corpus):
    """One document per code file of a folder holding one repository or many.

    The folder is one repository when it is a git work tree or holds a licence file. Otherwise
    each sub-folder that is a git work tree (at any depth) or, directly below the folder, holds a
    licence file is its own repository, with its own licence and owner; files outside all of them
    belong to the folder itself. A git work tree inside a repository (a submodule) is its own
    repository too.

    A document's id is its path below the folder; ``meta["path"]`` and ``fields["path"]`` are
    its path inside its repository (the same thing for a single repository).

    Files that look like code but are not read are counted in ``skipped`` by reason:
    "too_large", "binary", "not_utf8", "unreadable", "symlink" (links are never followed; links
    to folders count too), "special_file" (FIFOs, sockets, devices), "unreadable_folder" and
    "name_not_utf8" (a file name that is not UTF-8 cannot be an id).

    Args:
        folder: The repository folder, or a folder of repositories.
        owner: The owner recorded for every file (default: each repository's git remote owner,
            else its package metadata's first author, else None).
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
        self.owner = owner
        self.max_file_bytes = max_file_bytes
        self.top = repo_at(folder, "", name=folder.resolve().name, owner=owner)
        self.repo = self.top.name
        self.licence, self.licence_file = self.top.licence, self.top.licence_file
        #: The repositories met so far (the folder's own first), by their path below the folder.
        self.repos: dict[str, Repo] = {}
        super().__init__(
            source=source or str(folder),
            format="code",
            id_field="path",
            fields=("content",),
            progress=progress,
            extra={
                "repo": self.repo,
                "owner": self.top.owner,
                "licence": self.licence,
                "licence_file": self.licence_file,
                "max_file_bytes": max_file_bytes,
            },
        )

    def describe(self) -> dict[str, Any]:
        """The manifest description; ``repos`` lists each repository that holds documents."""
        description = super().describe()
        description["repos"] = [repo.describe() for repo in self.repos.values()]
        return description

    def _files(self) -> Iterator[tuple[Path, Repo]]:
        """Each file below the folder (sorted, hidden entries skipped) with the repository holding it.

        Links are never followed (a link to ``/etc/passwd`` or ``~/.ssh`` must not end up in a
        bundle that is served publicly); links, FIFOs, sockets and devices that look like code
        files, links to folders and folders that cannot be listed are counted in ``skipped``.
        """
        top_is_repo = is_git_root(self.folder) or self.top.licence_file is not None
        top = scan_folder(self.folder)
        if top is None:
            self._skip_path("unreadable_folder", self.folder)
            return
        # Each level: (its entries, the repository holding it, its depth below the folder).
        stack: list[tuple[Iterator[os.DirEntry[str]], Repo, int]] = [(iter(top), self.top, 0)]
        while stack:
            entries, repo, depth = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            path = Path(entry.path)
            kind = entry_kind(entry)
            if kind == "file":
                yield path, repo
            elif kind == "dir":
                inner = repo
                if is_git_root(path) or (
                    depth == 0 and not top_is_repo and folder_licence(path)[1] is not None
                ):
                    rel = path.relative_to(self.folder).as_posix()
                    inner = repo_at(path, rel, name=rel, owner=self.owner)
                listed = scan_folder(path)
                if listed is None:
                    self._skip_path("unreadable_folder", path)
                    continue
                stack.append((iter(listed), inner, depth + 1))
            elif language_of(path) is not None or (kind == "symlink" and _links_to_folder(path)):
                self._skip_path(kind, path)

    def _skip_path(self, reason: str, path: Path) -> None:
        self._skip(reason)
        logger.debug("skipped %s (%s)", path, reason)

    def _located_docs(self) -> Iterator[tuple[Doc, Location]]:
        self.repos = {}
        for path, repo in self._files():
            language = language_of(path)
            if language is None:
                continue
            rel = path.relative_to(self.folder).as_posix()
            if not _is_text(rel):  # a name with bytes that are not UTF-8 cannot be a document id
                self._skip_path("name_not_utf8", path)
                continue
            data, text, reason = read_code_file(path, max_file_bytes=self.max_file_bytes)
            if data is None or text is None:
                self._skip_path(reason, path)
                continue
            self.repos.setdefault(repo.rel, repo)
            in_repo = path.relative_to(repo.root).as_posix()
            meta = {
                "repo": repo.name,
                "path": in_repo,
                "owner": repo.owner,
                "licence": repo.licence,
                "language": language,
                "swhid": swhid(data),
            }
            yield (
                Doc(id=rel, text=text, fields={"path": in_repo, "language": language}, meta=meta),
                (str(path), None),
            )
