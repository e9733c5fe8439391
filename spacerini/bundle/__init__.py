"""Bundles: build a corpus into one folder of indexes, and open it again.

A bundle is built in a temporary folder beside its target and swapped into place only when it
is complete, so a crash or Ctrl-C leaves the previous bundle intact and no half-built one::

    bundle/
      spacerini.json   manifest: format version, source, fields, counts, backends + params, checksums
      docs/            docstore (LZ4 blocks + id index: random access by row and id; see spacerini.docstore)
      lucene/ bm25/    BM25 (Anserini index + fast scorer arrays)
      exact/ bloom/ owners/ dense/   other backends

Example:
    >>> from spacerini import build_bundle, open_bundle
    >>> build_bundle("corpus.jsonl", "my-bundle", backends=["bm25"])  # doctest: +SKIP
    >>> bundle = open_bundle("my-bundle")  # doctest: +SKIP
    >>> bundle.search("neural ranking", k=3)  # doctest: +SKIP
"""

from __future__ import annotations

from spacerini.bundle.build import build_bundle
from spacerini.bundle.manifest import (
    DEFAULT_BACKENDS,
    FORMAT_VERSION,
    MANIFEST,
    MAX_CATEGORIES,
    MAX_QUERY_CHARS,
    RANKED_BACKENDS,
    backend_folder,
)
from spacerini.bundle.open import (
    RELOAD_SECONDS,
    RETIRE_SECONDS,
    Bundle,
    BundleSnapshot,
    StaleGenerationError,
    check_queries,
    check_query,
    open_bundle,
)
from spacerini.bundle.optout import optout
from spacerini.bundle.publish import bundle_lock, lock_path, remove_stale
from spacerini.display import plain_snippet

__all__ = [
    "DEFAULT_BACKENDS",
    "FORMAT_VERSION",
    "MANIFEST",
    "MAX_CATEGORIES",
    "MAX_QUERY_CHARS",
    "RANKED_BACKENDS",
    "RELOAD_SECONDS",
    "RETIRE_SECONDS",
    "Bundle",
    "BundleSnapshot",
    "StaleGenerationError",
    "backend_folder",
    "build_bundle",
    "bundle_lock",
    "check_queries",
    "check_query",
    "lock_path",
    "open_bundle",
    "optout",
    "plain_snippet",
    "remove_stale",
]
