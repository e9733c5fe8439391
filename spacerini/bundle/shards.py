"""Shards: a bundle's documents split into contiguous ranges of docstore rows, one index each.

Every answer of an N-shard bundle equals the 1-shard answer; how each backend gets there:

Which of these a backend is follows from what it offers: ``open_shards`` (fan-out) or
``merge_shards`` (merge), with an optional ``prepare_shards(docs_factory, work_folder, params)``
that computes corpus-wide settings every shard build must share.

* **fan-out** (``bm25``, ``exact``): each shard keeps its own index under
  ``shards/NNNNN/<folder>``, and the backend's ``open_shards`` answers over all of them (BM25
  with the collection's global statistics, merged by score then Anserini's tie-break; exact
  counts summed and occurrences merged in corpus order);
* **merge** (``bloom``, ``owners``, ``dense``): each shard is built, then reduced into the one
  folder an unsharded build writes (Bloom sketches of equal size and hashing ORed, byte-identical;
  owner indexes grouped by owner; dense shards encoded against one codec trained once on the
  unsharded build's sample, their IVF lists merged with global ids, flat and HNSW built from the
  shards' vectors), and the shard folders are dropped;
* **whole**: a backend that offers neither is built once over all documents.

A 1-shard bundle keeps the plain layout (``lucene/`` at the top, which plain pyserini opens).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacerini.docstore import Docstore
from spacerini.errors import BackendParameterError

logger = logging.getLogger(__name__)



def is_fanout(module: Any) -> bool:
    """A backend whose shards stay separate and are searched together (it has ``open_shards``)."""
    return callable(getattr(module, "open_shards", None))


def is_merged(module: Any) -> bool:
    """A backend whose shard indexes reduce into one unsharded index (it has ``merge_shards``)."""
    return callable(getattr(module, "merge_shards", None)) and not is_fanout(module)


def is_shardable(module: Any) -> bool:
    """A backend that can be built shard by shard (else it is built once over all documents)."""
    return is_fanout(module) or is_merged(module)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(docs?|b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class Shard:
    """One shard: rows ``first_doc .. first_doc + docs - 1`` of the docstore, indexed in ``folder``."""

    id: int
    first_doc: int
    docs: int
    folder: str

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry."""
        return {"id": self.id, "first_doc": self.first_doc, "docs": self.docs, "folder": self.folder}


def parse_shard_size(value: str | int) -> tuple[int, str]:
    """Reads ``--shard-size``: ``"50000"`` or ``"50000 docs"`` (documents), ``"2GB"``, ``"512MiB"``.

    Returns:
        ``(amount, "docs" | "bytes")``.

    Raises:
        BackendParameterError: Not a positive size.
    """
    if isinstance(value, int):
        amount, unit = value, "docs"
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise BackendParameterError(
                f"--shard-size {value!r} is not a size: give documents (50000) or bytes (2GB, 512MiB)"
            )
        number, suffix = match.group(1), (match.group(2) or "docs").lower()
        if suffix.startswith("doc"):
            amount, unit = int(float(number)), "docs"
        else:
            amount, unit = int(float(number) * _UNITS[suffix]), "bytes"
    if amount < 1:
        raise BackendParameterError(f"--shard-size must be positive, not {value!r}")
    return amount, unit


def check_options(
    *,
    shards: int | None = None,
    shard_size: str | int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    memory_budget: str | int | None = None,
) -> None:
    """Refuses nonsense sharding and engine options before any document is read (a build only
    plans its shards, and Ray only reads the budget, once the whole corpus is in the docstore).

    Raises:
        BackendParameterError: A bad value, ``--shards`` with ``--shard-size``, or a Ray option
            (``--ray-address``, ``--memory-budget``) without ``--engine ray``, where it would be ignored.
    """
    if shards is not None and (isinstance(shards, bool) or not isinstance(shards, int) or shards < 1):
        raise BackendParameterError(f"--shards must be a positive integer, not {shards!r}")
    if shards is not None and shard_size is not None:
        raise BackendParameterError("give --shards or --shard-size, not both")
    if shard_size is not None:
        if isinstance(shard_size, bool) or not isinstance(shard_size, int | str):
            raise BackendParameterError(f"--shard-size {shard_size!r} is not a size: give documents (50000) or bytes (2GB, 512MiB)")
        parse_shard_size(shard_size)
    if engine != "ray":
        for flag, value in (("--ray-address", ray_address), ("--memory-budget", memory_budget)):
            if value is not None:
                raise BackendParameterError(f"{flag} needs --engine ray: add --engine ray or leave {flag} out")
    if ray_address is not None and (not isinstance(ray_address, str) or not ray_address.strip()):
        raise BackendParameterError(f"--ray-address {ray_address!r} is not an address: give HOST:PORT (ray start --head prints it)")
    if memory_budget is not None:
        from spacerini.distributed.engine import parse_memory  # plain values: Ray is not imported

        parse_memory(memory_budget)


def plan(store: Docstore, *, shards: int | None = None, shard_size: str | int | None = None) -> list[Shard]:
    """Splits the docstore's rows into contiguous shards.

    Args:
        store: The docstore (its row count and, for byte sizes, its text lengths).
        shards: How many shards (at most one per document).
        shard_size: Documents or bytes of text per shard (see :func:`parse_shard_size`).

    Returns:
        The shards in corpus order; one shard (``folder == ""``, the plain layout) when neither
        is given or the corpus fits in one.

    Raises:
        BackendParameterError: Both, or a bad value, were given.
    """
    total = len(store)
    if shards is not None and shard_size is not None:
        raise BackendParameterError("give --shards or --shard-size, not both")
    if shards is not None and shards < 1:
        raise BackendParameterError(f"--shards must be at least 1, not {shards}")
    bounds: list[tuple[int, int]]
    if shard_size is not None:
        amount, unit = parse_shard_size(shard_size)
        if unit == "docs":
            bounds = [(start, min(amount, total - start)) for start in range(0, total, amount)]
        else:
            bounds, start, size = [], 0, 0
            for row, length in enumerate(store.text_lengths()):
                if size and size + length > amount:
                    bounds.append((start, row - start))
                    start, size = row, 0
                size += length
            if total > start:
                bounds.append((start, total - start))
    else:
        n = max(1, min(shards or 1, total))
        base, extra = divmod(total, n)
        bounds, start = [], 0
        for i in range(n):
            count = base + (1 if i < extra else 0)
            bounds.append((start, count))
            start += count
    bounds = bounds or [(0, total)]
    if len(bounds) == 1:
        return [Shard(0, 0, total, "")]
    return [Shard(i, first, count, f"shards/{i:05d}") for i, (first, count) in enumerate(bounds)]


@dataclass(frozen=True)
class ShardTask:
    """One backend over one shard: everything a worker needs, as plain values (no open objects).

    A local engine runs it in this process; the Ray engine (:mod:`spacerini.distributed`)
    ships it to a worker, which opens the docstore from the shared folder itself.
    """

    backend: str
    docstore: str
    first_doc: int
    docs: int
    out: str
    params: Mapping[str, Any]

    def run(self, *, threads: int = 1, progress: bool = False) -> dict[str, Any]:
        """Builds the shard's index into ``out`` and returns the backend's report (a dict)."""
        from spacerini.backends import get_backend, run_build

        store = Docstore(Path(self.docstore))
        module = get_backend(self.backend)
        stop = self.first_doc + self.docs
        report = run_build(
            module, lambda: store.iter_docs(start=self.first_doc, stop=stop), Path(self.out),
            threads=threads, progress=progress, **dict(self.params),
        )  # fmt: skip
        return {**report.to_dict(), "docs": self.docs}


def run_tasks(
    tasks: Sequence[ShardTask],
    *,
    engine: str = "local",
    threads: int = 1,
    progress: bool = True,
    ray_address: str | None = None,
    memory_budget: str | int | None = None,
) -> list[dict[str, Any]]:
    """Runs shard tasks on an engine and returns their reports in task order.

    Args:
        tasks: The tasks.
        engine: ``"local"`` (this process, one task after another, each with ``threads``) or
            ``"ray"`` (tasks on a Ray cluster, see :mod:`spacerini.distributed`).
        threads: Threads per task.
        progress: Progress bars (local engine).
        ray_address: The Ray cluster to join (default: start one embedded on this machine).
        memory_budget: Memory each Ray worker may use, e.g. ``"2GB"``.

    Raises:
        BackendParameterError: An unknown engine.
        DependencyMissingError: ``engine="ray"`` without the ``[distributed]`` extra.
    """
    if engine == "local":
        return [task.run(threads=threads, progress=progress) for task in tasks]
    if engine == "ray":
        from spacerini.distributed import run_tasks as run_on_ray

        return run_on_ray(tasks, address=ray_address, memory_budget=memory_budget, threads=threads)
    raise BackendParameterError(f"unknown engine {engine!r}: choose local or ray")


def build_sharded(
    name: str,
    module: Any,
    store: Docstore,
    layout: Sequence[Shard],
    root: Path,
    folder_name: str,
    params: Mapping[str, Any],
    *,
    threads: int,
    progress: bool,
    engine: str = "local",
    ray_address: str | None = None,
    memory_budget: str | int | None = None,
) -> dict[str, Any]:
    """Builds backend ``name`` over the shards of a bundle being built in ``root``.

    Returns:
        The backend's manifest entry: for a fan-out backend, ``params``, summed ``stats`` and the
        per-shard reports under ``shards``; for a merged one, the merged index's report.
    """
    params = dict(params)
    prepare = getattr(module, "prepare_shards", None)
    work = root / "shards" / f"_prepare-{name}"
    if prepare is not None:  # corpus-wide settings every shard must share (a Bloom size, a trained codec)
        work.mkdir(parents=True)
        params = dict(prepare(store.iter_docs, work, params, **_accepted(prepare, threads=threads, progress=progress)))
    folders: list[Path] = []
    tasks: list[ShardTask] = []
    for shard in layout:
        folder = root / shard.folder / folder_name
        folder.mkdir(parents=True)
        folders.append(folder)
        tasks.append(ShardTask(name, str(root / "docs"), shard.first_doc, shard.docs, str(folder), params))
    logger.info("building %s over %d shards (%s engine)", name, len(layout), engine)
    reports = run_tasks(
        tasks, engine=engine, threads=threads, progress=progress, ray_address=ray_address, memory_budget=memory_budget
    )
    if is_merged(module):
        merge = module.merge_shards
        merged = merge(folders, root / folder_name, reports, **_accepted(merge, threads=threads, progress=progress))
        for folder in [*folders, work]:
            shutil.rmtree(folder, ignore_errors=True)
        entry = merged.to_dict() if hasattr(merged, "to_dict") else dict(merged)
        # The build's cost is the shards' builds plus the merge, not the merge alone.
        entry["merge_seconds"] = entry.get("seconds")
        entry["seconds"] = round(sum(float(r.get("seconds") or 0) for r in reports) + float(entry.get("seconds") or 0), 3)
        return entry
    shutil.rmtree(work, ignore_errors=True)
    return {
        "params": dict(reports[0].get("params") or params),
        "stats": _summed(report.get("stats") or {} for report in reports),
        "seconds": round(sum(float(report.get("seconds") or 0) for report in reports), 3),
        "shards": reports,
    }


#: Counts that do not add up over shards: a term in two shards is one term of the corpus.
_NOT_ADDITIVE = frozenset({"terms", "vocabulary"})


def _accepted(function: Callable[..., Any], **options: Any) -> dict[str, Any]:
    """The keyword ``options`` that ``function`` takes (dense's merge takes threads, bloom's does not)."""
    import inspect

    accepted = inspect.signature(function).parameters
    return {key: value for key, value in options.items() if key in accepted}


def _summed(stats: Any) -> dict[str, Any]:
    """Per-shard statistics summed where they are counts (integers); ratios such as BM25's
    ``avgdl`` do not add up and are derived again from the sums where possible."""
    total: dict[str, Any] = {}
    for entry in stats:
        for key, value in entry.items():
            if isinstance(value, int) and not isinstance(value, bool) and key not in _NOT_ADDITIVE:
                total[key] = total.get(key, 0) + value
    if total.get("doc_count") and "sum_total_term_freq" in total:
        total["avgdl"] = total["sum_total_term_freq"] / total["doc_count"]
    return total


def fanout_folders(root: Path, folder_name: str, report: Mapping[str, Any]) -> list[Path]:
    """The backend folder of each shard of a fan-out backend, in shard order.

    Args:
        root: The bundle folder.
        folder_name: The backend's folder inside a shard (``lucene``, ``exact``).
        report: The backend's manifest entry (its ``shards`` list).
    """
    return [root / str(entry.get("folder") or f"shards/{i:05d}") / folder_name for i, entry in enumerate(report["shards"])]


def open_fanout(module: Any, root: Path, folder_name: str, report: Mapping[str, Any], **options: Any) -> Any:
    """Opens a fan-out backend's shards as one searcher (its ``open_shards``)."""
    return module.open_shards(fanout_folders(root, folder_name, report), report["shards"], **options)
