"""Spacerini: turn a text or code corpus into a search engine you can use and share.

``import spacerini`` is light: it starts no JVM and imports none of torch, faiss, gradio or
pyserini. The public names below load on first use through a module ``__getattr__``.

Example:
    >>> import spacerini
    >>> bundle = spacerini.build_bundle("tests/data/tiny.jsonl", "/tmp/tiny-bundle")  # doctest: +SKIP
    >>> [hit.docid for hit in bundle.search("bloom filter membership", k=3)]  # doctest: +SKIP
    ['d07', 'd20']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Doc": "spacerini.records",
    "Hit": "spacerini.records",
    "BuildReport": "spacerini.records",
    "load_corpus": "spacerini.corpus",
    "build_bundle": "spacerini.bundle",
    "open_bundle": "spacerini.bundle",
    "Bundle": "spacerini.bundle",
    "open_bundles": "spacerini.corpora",
    "Corpora": "spacerini.corpora",
    "evaluate": "spacerini.eval",
    "errors": "spacerini.errors",
}

__all__ = [
    "__version__",
    "Doc",
    "Hit",
    "BuildReport",
    "load_corpus",
    "build_bundle",
    "open_bundle",
    "Bundle",
    "open_bundles",
    "Corpora",
    "evaluate",
    "errors",
]

if TYPE_CHECKING:  # pragma: no cover
    from spacerini import errors
    from spacerini.bundle import Bundle, build_bundle, open_bundle
    from spacerini.corpora import Corpora, open_bundles
    from spacerini.corpus import load_corpus
    from spacerini.eval import evaluate
    from spacerini.records import BuildReport, Doc, Hit


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'spacerini' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
