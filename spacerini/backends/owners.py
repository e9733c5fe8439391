"""The owner index: "Am I in this corpus?".

Built from each doc's ``meta["owner"]`` (a name, or a list of names for co-owners) and
``meta["repo"]``: owner -> repo -> doc ids, stored as ``owners/owners.json``. Docs without an
owner are counted but not listed.

Lookups tolerate case, accents, punctuation and small typos: names are compared on a
normalised key (NFKD without combining marks, case-folded, runs of non-alphanumerics turned
into one space) with :class:`difflib.SequenceMatcher`. A case-insensitive exact match (of the
NFC forms, so a name typed with a precomposed "ë" is the stored "e" + combining diaeresis)
scores 1.0 and ranks first; an equal normalised key scores 0.99; a query that is one whole word of a
longer name (a surname) scores 0.85; anything else scores the similarity ratio.

In a bundle whose PII was redacted at index time, an owner's email address is stored as its
:func:`~spacerini.preprocess.pii.owner_pseudonym`; an email address looked up matches it
exactly (score 1.0).
"""

from __future__ import annotations

import contextlib
import difflib
import heapq
import itertools
import json
import logging
import os
import re
import tempfile
import time
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacerini.backends import DocsFactory, read_json
from spacerini.errors import BackendParameterError, BundleCorruptError, QueryError
from spacerini.records import BuildReport, owner_names

NAME = "owners"
FORMAT_VERSION = 1
NO_REPO = "(no repo)"
DEFAULT_OPTOUT = (
    "To have your files removed, run `spacerini optout BUNDLE --owner NAME` (it rebuilds the bundle "
    "without them) or contact the maintainer of this bundle."
)

log = logging.getLogger(__name__)
_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class OwnerMatch:
    """One owner whose name matches the query.

    Attributes:
        owner: The owner's name as stored.
        score: 1.0 for a case-insensitive exact match, lower for looser ones.
        docs: Number of documents of this owner.
        repos: ``(repo, doc count)`` pairs, most documents first.
        files: The owner's doc ids (the first ``limit``, by repo order then corpus order).
    """

    owner: str
    score: float
    docs: int
    repos: tuple[tuple[str, int], ...]
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OwnerResult:
    """The answer to "Am I in this corpus?".

    Attributes:
        query: The name asked for.
        matches: Matching owners, best first (empty when nobody matches).
        total_docs: Documents of all matching owners together (a co-owned document counts once).
        optout_instructions: How to have one's files removed (set when the bundle was built).
    """

    query: str
    matches: tuple[OwnerMatch, ...]
    total_docs: int
    optout_instructions: str


def fold(name: str) -> str:
    """Returns the key of a case-insensitive exact match: NFC (canonically equivalent spellings
    of one name are one name), then case-folded."""
    return unicodedata.normalize("NFC", name).casefold()


def normalise(name: str) -> str:
    """Returns the comparison key of a name: no accents, case-folded, words split by one space."""
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_ALNUM.sub(" ", stripped.casefold()).strip()


def build(
    docs_factory: DocsFactory,
    folder: Path,
    *,
    progress: bool = True,
    optout_instructions: str = DEFAULT_OPTOUT,
) -> BuildReport:
    """Builds the owner index into ``folder``.

    Args:
        docs_factory: Returns a fresh iterator of docs (called once).
        folder: An empty folder to write into.
        progress: Show a progress bar.
        optout_instructions: Text shown with every answer, saying how to opt out.

    Returns:
        The report; ``stats`` counts owners, repos and docs without an owner.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    owners: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    n_docs = 0
    unowned = 0
    for doc in tqdm(docs_factory(), desc="owners: docs", unit="doc", disable=not progress):
        n_docs += 1
        names = owner_names(doc.meta.get("owner"))
        if not names:
            unowned += 1
            continue
        repo = str(doc.meta.get("repo") or NO_REPO)
        for name in dict.fromkeys(names):
            owners[name][repo].append(doc.id)
    return _write(folder, owners, optout_instructions, docs=n_docs, unowned=unowned, t0=t0)


def _write(
    folder: Path,
    owners: Mapping[str, Mapping[str, list[str]]],
    optout_instructions: str,
    *,
    docs: int,
    unowned: int,
    t0: float,
) -> BuildReport:
    """Writes ``owners.json`` (owners sorted, repos in corpus order) and returns the report."""
    data = {
        "format": FORMAT_VERSION,
        "optout_instructions": optout_instructions,
        "owners": {name: dict(repos) for name, repos in sorted(owners.items())},
    }
    (folder / "owners.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    repos = len({repo for r in owners.values() for repo in r})
    log.info("owners: %d owners, %d repos, %d docs without owner", len(owners), repos, unowned)
    return _report(
        optout_instructions, docs=docs, owners=len(owners), repos=repos, unowned=unowned,
        seconds=time.perf_counter() - t0,
    )  # fmt: skip


def _report(instructions: str, *, docs: int, owners: int, repos: int, unowned: int, seconds: float) -> BuildReport:
    return BuildReport(
        backend=NAME,
        docs=docs,
        seconds=seconds,
        params={"optout_instructions": instructions},
        stats={"owners": owners, "repos": repos, "unowned_docs": unowned},
    )


def merge_shards(
    folders: Sequence[Path], out: Path, reports: Sequence[Mapping[str, Any] | BuildReport]
) -> BuildReport:
    """Reduces the owner indexes of a bundle's shards into one owner index in ``out``.

    Shard ``i`` holds a contiguous range of documents in corpus order, so concatenating each
    owner's doc ids per repo shard after shard keeps corpus order, and a repo's first shard
    keeps its place among the owner's repos: ``owners.json`` is byte-identical to the one an
    unsharded build of the same corpus writes, and the report equals its report (but for
    ``seconds``).

    The reduce is an external merge, so its memory does not grow with the corpus: each shard's
    index (one shard's size) is rewritten in turn as a sorted run on disk (an owner's repos with
    the places of their id lists, already JSON), then the runs are merged by owner name
    (:func:`heapq.merge`) and ``owners.json`` is written owner by owner, each id list copied from
    its run without being parsed. Only one owner's repo names are held at a time; the repos
    are counted by a second merge of each shard's sorted repo names.

    Args:
        folders: The shards' backend folders, in corpus order.
        out: The folder to write the merged index into (created if missing).
        reports: The shards' build reports (or their manifest entries), in the order of
            ``folders``; their ``docs`` and ``stats.unowned_docs`` are summed. An entry marked
            ``"empty"`` (a shard left with no documents) is skipped.

    Returns:
        The merged index's report.

    Raises:
        BackendParameterError: The shards were built with different opt-out instructions.
        BundleCorruptError: ``folders`` and ``reports`` differ in length, none holds an index, an
            index is missing or of another format, or a report lacks its counts.
    """
    t0 = time.perf_counter()
    if len(folders) != len(reports):
        raise BundleCorruptError(f"{len(folders)} owners shard folders but {len(reports)} shard reports")
    dicts = [r.to_dict() if isinstance(r, BuildReport) else dict(r) for r in reports]
    kept = [(Path(f), r) for f, r in zip(folders, dicts, strict=True) if not r.get("empty")]
    if not kept:
        raise BundleCorruptError("no owners shard holds an index: nothing to merge")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    instructions: str | None = None
    docs = unowned = 0
    with tempfile.TemporaryDirectory(prefix=".owners-merge-", dir=out.parent) as scratch:
        runs: list[_Run] = []
        for i, (folder, report) in enumerate(kept):
            data = _read_index(folder)
            if instructions is None:
                instructions = data["optout_instructions"]
            elif data["optout_instructions"] != instructions:
                raise BackendParameterError(
                    f"{folder}: owners shard built with other opt-out instructions than the first shard: "
                    "build every shard with the same optout_instructions"
                )
            try:
                docs += int(report["docs"])
                unowned += int(report["stats"]["unowned_docs"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleCorruptError(f"{folder}: the shard report lacks its doc counts ({exc})") from exc
            runs.append(_Run.write(Path(scratch) / f"{i:06d}", data["owners"]))
            del data
        with contextlib.ExitStack() as stack:
            for run in runs:
                stack.enter_context(run)
            n_owners = _write_merged(out / "owners.json", str(instructions), runs)
            repos = _count_distinct(heapq.merge(*(run.repos() for run in runs)))
    seconds = time.perf_counter() - t0
    log.info("owners: merged %d shards: %d owners, %d repos, %d docs without owner", len(kept), n_owners, repos, unowned)
    return _report(str(instructions), docs=docs, owners=n_owners, repos=repos, unowned=unowned, seconds=seconds)


class _Run:
    """One shard's owner index as a sorted run on disk, for :func:`merge_shards`.

    ``index`` holds a JSON line per owner, in name order: ``[name, [[repo, offset, length], ...]]``
    with the repos in the shard's order; ``data`` holds each repo's doc ids at those byte places,
    as the inside of the JSON list ``owners.json`` writes (``"a", "b"``). ``repos`` holds the
    shard's distinct repo names, sorted, a JSON line each.
    """

    def __init__(self, stem: Path) -> None:
        self.stem = stem
        self._data: Any = None

    @classmethod
    def write(cls, stem: Path, owners: Mapping[str, Mapping[str, list[str]]]) -> _Run:
        names: set[str] = set()
        with Path(f"{stem}.index").open("w", encoding="utf-8") as index, Path(f"{stem}.data").open("wb") as data:
            offset = 0
            for name in sorted(owners):
                places = []
                for repo, ids in owners[name].items():
                    piece = json.dumps(ids, ensure_ascii=False)[1:-1].encode("utf-8")
                    data.write(piece)
                    places.append([repo, offset, len(piece)])
                    offset += len(piece)
                    names.add(repo)
                index.write(json.dumps([name, places], ensure_ascii=False) + "\n")
        with Path(f"{stem}.repos").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(repo, ensure_ascii=False) + "\n" for repo in sorted(names))
        return cls(stem)

    def __enter__(self) -> _Run:
        self._data = Path(f"{self.stem}.data").open("rb")  # noqa: SIM115 - closed by __exit__
        return self

    def __exit__(self, *exc: object) -> None:
        self._data.close()

    def owners(self, order: int) -> Iterator[tuple[str, int, list[list[Any]]]]:
        """``(name, order, places)`` per owner, in name order (``order`` sorts equal names by shard)."""
        with Path(f"{self.stem}.index").open(encoding="utf-8") as fh:
            for line in fh:
                name, places = json.loads(line)
                yield name, order, places

    def repos(self) -> Iterator[str]:
        with Path(f"{self.stem}.repos").open(encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._data.fileno(), length, offset)


def _write_merged(path: Path, instructions: str, runs: Sequence[_Run]) -> int:
    """Writes ``owners.json`` from the runs, as :func:`_write` would from the whole index; returns
    the number of owners."""
    head = json.dumps({"format": FORMAT_VERSION, "optout_instructions": instructions, "owners": {}}, ensure_ascii=False)
    if not head.endswith("{}}"):  # pragma: no cover - json.dumps's layout
        raise AssertionError(head)
    merged = heapq.merge(*(run.owners(i) for i, run in enumerate(runs)), key=lambda owner: owner[:2])
    count = 0
    with path.open("wb") as fh:
        fh.write(head[:-2].encode("utf-8"))
        for name, group in itertools.groupby(merged, key=lambda owner: owner[0]):
            # A repo keeps the place of its first shard; its ids follow shard after shard.
            pieces: dict[str, list[tuple[int, int, int]]] = {}
            for _, order, places in group:
                for repo, offset, length in places:
                    pieces.setdefault(repo, []).append((order, offset, length))
            fh.write((", " if count else "").encode() + json.dumps(name, ensure_ascii=False).encode("utf-8") + b": {")
            for r, (repo, places) in enumerate(pieces.items()):
                fh.write((", " if r else "").encode() + json.dumps(repo, ensure_ascii=False).encode("utf-8") + b": [")
                for p, (order, offset, length) in enumerate(places):
                    fh.write((b", " if p else b"") + runs[order].read(offset, length))
                fh.write(b"]")
            fh.write(b"}")
            count += 1
        fh.write(b"}}")
    return count


def _count_distinct(names: Iterator[str]) -> int:
    count, last = 0, None
    for name in names:
        if name != last:
            count, last = count + 1, name
    return count


def _read_index(folder: Path) -> dict[str, Any]:
    data = read_json(folder, "owners.json", what="the owner index")
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise BundleCorruptError(f"{folder}: owners.json format {found} is not {FORMAT_VERSION}")
    if not isinstance(data.get("owners"), dict) or not isinstance(data.get("optout_instructions"), str):
        raise BundleCorruptError(f"{folder}: owners.json lacks its owners or opt-out instructions")
    return data


class _Entry:
    __slots__ = ("name", "folded", "key", "words", "repos", "docs")

    def __init__(self, name: str, repos: dict[str, list[str]]) -> None:
        self.name = name
        self.folded = fold(name)
        self.key = normalise(name)
        self.words = frozenset(self.key.split())
        self.repos = repos
        self.docs = sum(len(ids) for ids in repos.values())


class OwnersSearcher:
    """Looks up owners by name.

    Args:
        folder: The backend folder written by :func:`build`.
    """

    def __init__(self, folder: Path) -> None:
        data = _read_index(Path(folder))
        self.optout_instructions: str = data["optout_instructions"]
        self.entries = [_Entry(name, repos) for name, repos in data["owners"].items()]
        self._by_name = {entry.name: entry for entry in self.entries}

    @property
    def owners(self) -> list[str]:
        """All owner names, sorted."""
        return [e.name for e in self.entries]

    def distinct_docs(self, names: Iterable[str]) -> int:
        """Returns the documents the owners ``names`` hold together: a co-owned document counts once.

        Args:
            names: Owner names as stored (``OwnerMatch.owner``); unknown names hold nothing.
        """
        entries = [self._by_name[name] for name in dict.fromkeys(names) if name in self._by_name]
        if len(entries) <= 1:  # one owner's documents are distinct already
            return sum(entry.docs for entry in entries)
        return len({docid for entry in entries for ids in entry.repos.values() for docid in ids})

    def _score(self, folded: str, key: str, entry: _Entry, matcher: difflib.SequenceMatcher) -> float:
        if folded == entry.folded:
            return 1.0
        if key == entry.key:
            return 0.99
        matcher.set_seq1(entry.key)
        ratio = matcher.ratio() if matcher.real_quick_ratio() > 0.5 and matcher.quick_ratio() > 0.5 else 0.0
        if len(key) >= 4 and key in entry.words:
            ratio = max(ratio, 0.85)
        return round(ratio, 4)

    def owner(self, name: str, *, limit: int = 100, cutoff: float = 0.8, max_matches: int = 10) -> OwnerResult:
        """Finds the owners whose name is ``name`` or close to it.

        Args:
            name: The name to look up (case, accents and small typos do not matter).
            limit: Doc ids listed per owner.
            cutoff: Lowest score kept (0..1).
            max_matches: Most owners returned.

        Returns:
            The matches, best first, with the opt-out instructions.

        Raises:
            QueryError: ``name`` is empty or has no letters or digits.
        """
        if not isinstance(name, str) or not name.strip():
            raise QueryError("give an owner name to look up")
        key = normalise(name)
        if not key:
            raise QueryError(f"owner name {name!r} has no letters or digits")
        if limit < 0 or max_matches < 0:
            raise QueryError("limit and max_matches must not be negative")
        folded = fold(name.strip())
        matcher = difflib.SequenceMatcher(None, autojunk=False)
        matcher.set_seq2(key)
        aliases = set()
        if "@" in name:
            from spacerini.preprocess.pii import owner_aliases

            aliases = {fold(alias) for alias in owner_aliases(name)[1:]}
        scored = []
        for entry in self.entries:
            score = 1.0 if entry.folded in aliases else self._score(folded, key, entry, matcher)
            if score >= cutoff:
                scored.append((score, entry))
        scored.sort(key=lambda se: (-se[0], -se[1].docs, se[1].name))
        matches = []
        for score, entry in scored[:max_matches]:
            repos = sorted(((r, len(ids)) for r, ids in entry.repos.items()), key=lambda rc: (-rc[1], rc[0]))
            files: list[str] = []
            for repo, _ in repos:
                if len(files) >= limit:
                    break
                files.extend(entry.repos[repo][: limit - len(files)])
            matches.append(OwnerMatch(entry.name, score, entry.docs, tuple(repos), tuple(files)))
        return OwnerResult(
            query=name,
            matches=tuple(matches),
            total_docs=self.distinct_docs(m.owner for m in matches),
            optout_instructions=self.optout_instructions,
        )

    def close(self) -> None:
        """Nothing to release; present for symmetry with the other searchers."""


def open(folder: Path, report: Mapping[str, Any]) -> OwnersSearcher:
    """Opens the owner index in ``folder``.

    Raises:
        BundleCorruptError: owners.json is missing or unreadable.
    """
    return OwnersSearcher(Path(folder))
