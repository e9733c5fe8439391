"""The embedded default corpus: the Python source already on this machine.

It holds the standard library and the installed distributions of the running environment, each
file with real provenance (repo URL, owner, licence, SWHID) read from the package metadata: a
small, offline stand-in for The Stack that ``spacerini demo`` indexes.
"""

from __future__ import annotations

import email.utils
import importlib.metadata as metadata
import logging
import platform
import re
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from spacerini.corpus.base import Corpus, Location
from spacerini.corpus.code import read_code_file, swhid, walk_sorted
from spacerini.errors import CorpusError
from spacerini.records import Doc

logger = logging.getLogger(__name__)

STDLIB_NAME = "python-stdlib"
STDLIB_OWNER = "Python Software Foundation"
STDLIB_LICENCE = "PSF-2.0"
STDLIB_REPO = "https://github.com/python/cpython"
#: Standard-library folders left out: tests, the IDLE app, the deprecated 2to3, third-party code.
STDLIB_SKIP = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__", "ensurepip"}
)
_TEST_DIRS = frozenset({"test", "tests", "testing", "__pycache__"})
_REPO_LABELS = ("source", "source code", "repository", "code", "github", "homepage", "home")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_part(addresses: str) -> str | None:
    names = [name for name, _ in email.utils.getaddresses([addresses]) if name]
    return ", ".join(names) or None


def package_provenance(dist: metadata.Distribution) -> dict[str, Any]:
    """Reads repo URL, owner and licence of a distribution from its metadata.

    Returns:
        A dict with keys repo ("" when unknown), owner (None when unknown), licence ("unknown"
        when unknown), package and version.
    """
    meta = dist.metadata
    urls: dict[str, str] = {}
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        urls.setdefault(label.strip().lower(), url.strip())
    repo = next((urls[label] for label in _REPO_LABELS if urls.get(label)), "")
    if not repo:
        repo = (meta.get("Home-page") or "").strip()
        if repo.upper() == "UNKNOWN":
            repo = ""
    owner = (meta.get("Author") or "").strip() or None
    if owner is None and meta.get("Author-email"):
        owner = _name_part(meta["Author-email"])
    if owner is None:
        owner = (meta.get("Maintainer") or "").strip() or None
    if owner is None and meta.get("Maintainer-email"):
        owner = _name_part(meta["Maintainer-email"])
    licence = (meta.get("License-Expression") or "").strip()
    if not licence:
        text = (meta.get("License") or "").strip()
        if text and "\n" not in text and len(text) <= 64 and text.upper() != "UNKNOWN":
            licence = text
    if not licence:
        classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
        if classifiers:
            licence = classifiers[0].split("::")[-1].strip()
    return {
        "repo": repo,
        "owner": owner,
        "licence": licence or "unknown",
        "package": meta.get("Name") or "",
        "version": meta.get("Version") or "",
    }


def _select_distributions(names: Iterable[str] | None) -> list[metadata.Distribution]:
    """Installed distributions, one per canonical name (the first on sys.path), sorted by name."""
    wanted = None if names is None else {_canonical(name) for name in names}
    chosen: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if not name:
            continue
        key = _canonical(name)
        if key in chosen or (wanted is not None and key not in wanted):
            continue
        chosen[key] = dist
    if wanted is not None and wanted - set(chosen):
        raise CorpusError(f"distribution(s) not installed: {', '.join(sorted(wanted - set(chosen)))}")
    return [chosen[key] for key in sorted(chosen)]


def _distribution_files(dist: metadata.Distribution) -> list[tuple[str, Path]]:
    """(relative posix path, absolute path) of a distribution's .py files, tests left out."""
    files = []
    for item in dist.files or []:
        parts = item.parts
        if not item.name.endswith(".py") or ".." in parts or _TEST_DIRS.intersection(parts[:-1]):
            continue
        files.append((item.as_posix(), Path(dist.locate_file(item))))
    files.sort()
    return files


class PythonSourceCorpus(Corpus):
    """The Python standard library plus installed distributions, as a code corpus.

    Args:
        max_bytes: Stop adding files once this many bytes of source are included.
        max_file_bytes: Skip (and count) single files larger than this.
        distributions: Restrict to these distribution names (None: all installed ones).
        include_stdlib: Include the standard library first.
        progress: Show a progress bar while iterating.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        max_file_bytes: int,
        distributions: Sequence[str] | None,
        include_stdlib: bool,
        progress: bool,
        max_package_bytes: int = 1_000_000,
    ) -> None:
        if max_bytes <= 0 or max_file_bytes <= 0 or max_package_bytes <= 0:
            raise CorpusError("max_bytes, max_file_bytes and max_package_bytes must be positive")
        self.max_bytes = max_bytes
        self.max_file_bytes = max_file_bytes
        self.max_package_bytes = max_package_bytes
        self.include_stdlib = include_stdlib
        self.distribution_names = None if distributions is None else sorted(distributions)
        self._distributions = _select_distributions(distributions)
        self.included: dict[str, int] = {}
        super().__init__(
            source="python-source (standard library + installed distributions)",
            format="code",
            id_field="path",
            fields=("content",),
            progress=progress,
            extra={
                "python": platform.python_version(),
                "max_bytes": max_bytes,
                "max_file_bytes": max_file_bytes,
                "max_package_bytes": max_package_bytes,
                "include_stdlib": include_stdlib,
                "distributions": self.distribution_names,
            },
        )

    def describe(self) -> dict[str, Any]:
        """Returns the manifest entry, including the files taken from each package."""
        return {**super().describe(), "included": dict(self.included)}

    def _sources(self) -> Iterator[tuple[dict[str, Any], Iterator[tuple[str, Path]]]]:
        if self.include_stdlib:
            stdlib = Path(sysconfig.get_paths()["stdlib"])
            provenance = {
                "repo": STDLIB_REPO,
                "owner": STDLIB_OWNER,
                "licence": STDLIB_LICENCE,
                "package": STDLIB_NAME,
                "version": platform.python_version(),
            }
            files = (
                (path.relative_to(stdlib).as_posix(), path)
                for path in walk_sorted(stdlib, skip_dirs=STDLIB_SKIP)
                if path.suffix == ".py"
            )
            yield provenance, files
        for dist in self._distributions:
            yield package_provenance(dist), iter(_distribution_files(dist))

    def _located_docs(self) -> Iterator[tuple[Doc, Location]]:
        self.included = {}
        total = 0
        for provenance, files in self._sources():
            package = provenance["package"]
            package_total = 0
            for rel, path in files:
                data, text, reason = read_code_file(path, max_file_bytes=self.max_file_bytes, follow_symlinks=True)
                if data is None or text is None:
                    self._skip(reason)
                    continue
                if total + len(data) > self.max_bytes:
                    self._log_included(total, capped=True)
                    return
                if package_total + len(data) > self.max_package_bytes:
                    # Keep big packages from crowding out the rest: later files of this package
                    # are left out (counted, not silently) and the next package starts.
                    self._skip("package_cap")
                    continue
                package_total += len(data)
                total += len(data)
                self.included[package] = self.included.get(package, 0) + 1
                meta = {
                    "repo": provenance["repo"],
                    "path": rel,
                    "owner": provenance["owner"],
                    "licence": provenance["licence"],
                    "language": "Python",
                    "package": package,
                    "version": provenance["version"],
                    "swhid": swhid(data),
                }
                doc_id = f"{package}/{rel}"
                yield (
                    Doc(id=doc_id, text=text, fields={"path": rel, "package": package}, meta=meta),
                    (str(path), None),
                )
        self._log_included(total, capped=False)

    def _log_included(self, total: int, *, capped: bool) -> None:
        files = sum(self.included.values())
        logger.info(
            "default corpus: %d files, %.1f MB of Python source from %d package(s)%s",
            files,
            total / 1e6,
            len(self.included),
            f" (stopped at the {self.max_bytes / 1e6:.0f} MB cap)" if capped else "",
        )
        logger.debug("default corpus packages: %s", ", ".join(f"{k} ({v})" for k, v in self.included.items()))


def python_source_corpus(
    *,
    max_bytes: int = 80_000_000,
    max_file_bytes: int = 200_000,
    max_package_bytes: int = 1_000_000,
    distributions: Sequence[str] | None = None,
    include_stdlib: bool = True,
    progress: bool = True,
) -> Corpus:
    """Returns the embedded default corpus: the Python source already on this machine.

    The standard library comes first (without its tests, idlelib and lib2to3), then the installed
    distributions sorted by name (their ``.py`` files, without test folders). Files are added in
    this fixed order until ``max_bytes`` of source is reached, so the corpus is the same on two
    runs in the same environment. Document ids are ``"<package>/<relative path>"`` with package
    ``python-stdlib`` for the standard library.

    Args:
        max_bytes: Stop adding files once this many bytes are included (keeps the demo build to a
            few minutes on 2 cores).
        max_file_bytes: Skip (and count as "too_large") files larger than this.
        max_package_bytes: Take at most this many bytes from one package (the standard library
            included), so that every installed package is represented; the rest are counted as
            "package_cap".
        distributions: Only these distributions (names as installed); None for all of them.
        include_stdlib: Whether to include the standard library.
        progress: Show a progress bar while iterating.

    Returns:
        A re-iterable :class:`~spacerini.corpus.Corpus` of code documents.

    Raises:
        CorpusError: A named distribution is not installed, or a cap is not positive.
    """
    return PythonSourceCorpus(
        max_bytes=max_bytes,
        max_file_bytes=max_file_bytes,
        max_package_bytes=max_package_bytes,
        distributions=distributions,
        include_stdlib=include_stdlib,
        progress=progress,
    )
