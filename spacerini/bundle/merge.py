"""``spacerini merge``: one Lucene index from a sharded bundle's BM25 shards.

Lucene's ``IndexWriter.addIndexes(Directory...)`` copies the shards' segments into one index
without analysing anything again; the BM25 sidecar is then read out of that index, as a build
does. The result answers exactly as the sharded bundle did (which answers as an unsharded
build), and plain pyserini's ``LuceneSearcher(bundle/lucene)`` opens it. The other backends
keep their shards. The merged bundle is a new generation, published atomically under the lock.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from spacerini.bundle.manifest import MANIFEST, _previous_generation, backend_folder
from spacerini.bundle.open import open_bundle
from spacerini.bundle.publish import building_folder, bundle_lock, publish, remove_stale, remove_tree
from spacerini.errors import BundleError
from spacerini.progress import wanted

logger = logging.getLogger(__name__)

#: Lucene's limit on documents in one index (``IndexWriter.MAX_DOCS``).
LUCENE_MAX_DOCS = 2_147_483_519


def merge_bm25(path: str | os.PathLike[str], *, wait: bool = True, progress: bool = True) -> dict[str, Any]:
    """Merges a sharded bundle's BM25 shards into one Lucene index (``bundle/lucene``).

    Args:
        path: The bundle folder.
        wait: Wait for another command changing the bundle (else raise BundleLockedError).
        progress: Show progress bars.

    Returns:
        The new BM25 manifest entry.

    Raises:
        BundleError: The bundle has no sharded BM25 index, or the merged index would exceed
            Lucene's 2^31 documents.
    """
    from spacerini.backends import bm25, get_backend

    root = Path(path).expanduser().resolve()
    from spacerini.java import java_path

    java_path(root)  # Lucene writes the merged index there: a name Java can open
    with bundle_lock(root, wait=wait):
        remove_stale(root, locked=True)
        bundle = open_bundle(root)
        try:
            manifest = dict(bundle.manifest)
            if "bm25" not in manifest["backends"]:
                raise BundleError(
                    f"{root} has no BM25 index to merge (its backends: {', '.join(manifest['backends']) or 'none'}); "
                    "build one with `spacerini index SOURCE --out BUNDLE --backends bm25 --shards N`"
                )
            report = dict(manifest["backends"].get("bm25") or {})
            shards = report.get("shards")
            if not shards:
                raise BundleError(f"{root}: its BM25 index is one Lucene index already; nothing to merge")
            if len(bundle) > LUCENE_MAX_DOCS:
                raise BundleError(
                    f"{root}: {len(bundle):,} documents do not fit in one Lucene index (at most {LUCENE_MAX_DOCS:,})"
                )
            ids = bundle.docstore.ids()
        finally:
            bundle.close()
        folder_name = backend_folder(get_backend("bm25"), "bm25")
        layout = manifest.get("shards") or []
        shard_dirs = [root / str(entry.get("folder") or f"shards/{i:05d}") / folder_name for i, entry in enumerate(layout)]
        tmp = building_folder(root)
        started = time.perf_counter()
        try:
            skip = {d.resolve() for d in shard_dirs}
            _link_tree(root, tmp, skip=skip)
            merged = tmp / folder_name
            _add_indexes(merged, shard_dirs)
            params = dict(report.get("params") or {})
            stats = bm25._write_sidecar(
                merged, merged / bm25.SIDECAR_DIR, ids, k1=float(params.get("k1", 0.9)), b=float(params.get("b", 0.4)),
                threads=1, progress=wanted(progress), extra={"analyzer": params.get("analyzer", "en")},
            )  # fmt: skip
            stats["merged_from_shards"] = len(shard_dirs)
            entry = {
                "backend": "bm25",
                "docs": len(ids),
                "params": params,
                "stats": stats,
                "seconds": round(time.perf_counter() - started, 3),
            }
            manifest["backends"] = {**manifest["backends"], "bm25": entry}
            manifest["generation"] = _previous_generation(root) + 1
        except BaseException:
            remove_tree(tmp)
            raise
        publish(tmp, root, manifest)
    logger.info("merged %d BM25 shards of %s into one Lucene index", len(shard_dirs), root)
    return entry


def _link_tree(src: Path, dest: Path, *, skip: set[Path]) -> None:
    """Copies ``src`` into ``dest`` with hard links (files are immutable once built), leaving out
    the folders in ``skip`` and the manifest, which is written anew."""
    dest.mkdir(exist_ok=True)
    for entry in sorted(src.iterdir()):
        if entry.resolve() in skip or entry.name == MANIFEST:
            continue
        target = dest / entry.name
        if entry.is_dir():
            _link_tree(entry, target, skip=skip)
        else:
            try:
                os.link(entry, target)
            except OSError:
                shutil.copy2(entry, target)


def _add_indexes(out: Path, shard_dirs: list[Path]) -> None:
    """Lucene ``IndexWriter.addIndexes(Directory...)`` of the shard indexes into ``out``.

    Called through a method handle: pyjnius cannot choose between the ``Directory...`` and
    ``CodecReader...`` overloads for a Python list, and a class bound to one overload would
    replace pyjnius' registered ``IndexWriter`` for the rest of the process.
    """
    from spacerini.java import autoclass

    nio = autoclass("org.apache.lucene.store.NIOFSDirectory")
    file = autoclass("java.io.File")
    jclass = autoclass("java.lang.Class")
    method_type = autoclass("java.lang.invoke.MethodType").methodType(
        autoclass("java.lang.Long").TYPE, jclass.forName("[Lorg.apache.lucene.store.Directory;")
    )
    add_indexes = autoclass("java.lang.invoke.MethodHandles").publicLookup().findVirtual(
        jclass.forName("org.apache.lucene.index.IndexWriter"), "addIndexes", method_type
    )
    writer = autoclass("org.apache.lucene.index.IndexWriter")(
        nio(file(str(out)).toPath()), autoclass("org.apache.lucene.index.IndexWriterConfig")()
    )
    try:
        arguments = autoclass("java.util.ArrayList")()
        arguments.add(writer)
        for folder in shard_dirs:  # the handle collects the trailing arguments into Directory[]
            arguments.add(nio(file(str(folder)).toPath()))
        add_indexes.invokeWithArguments(arguments)
        writer.commit()
    except BaseException:
        writer.rollback()
        raise
    writer.close()
