"""The embedded default bundle: the Python source already on this machine.

``spacerini demo`` builds it once (standard library + installed packages, with repo, owner,
licence and SWHID from each package's metadata) and reuses it afterwards.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from spacerini.backends import REGISTRY
from spacerini.errors import BundleError

logger = logging.getLogger(__name__)

#: Backends of the demo bundle, in build order; those not available in this version are left out.
DEMO_BACKENDS: tuple[str, ...] = ("bm25", "exact", "bloom", "owners")
#: The ``source`` of a demo bundle's manifest (:func:`~spacerini.corpus.default.python_source_corpus`):
#: a bundle of any other corpus is never rebuilt over.
DEMO_SOURCE = "python-source (standard library + installed distributions)"


def default_demo_path() -> Path:
    """Where the demo bundle lives: ``$SPACERINI_DEMO_BUNDLE``, else ``~/.cache/spacerini/demo-bundle``."""
    explicit = os.environ.get("SPACERINI_DEMO_BUNDLE")
    if explicit:
        return Path(explicit).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "spacerini" / "demo-bundle"


def available_demo_backends() -> list[str]:
    """The demo backends whose modules are installed in this version."""
    import importlib.util

    return [name for name in DEMO_BACKENDS if importlib.util.find_spec(REGISTRY[name]) is not None]


def demo_bundle(
    *, out: str | os.PathLike[str] | None = None, rebuild: bool = False, max_bytes: int | None = None, progress: bool = True
):  # noqa: ANN201 - returns spacerini.bundle.Bundle, imported lazily
    """Opens the demo bundle, building it first if it is missing, outdated or ``rebuild`` is set.

    Args:
        out: Bundle folder (default: :func:`default_demo_path`).
        rebuild: Build again even if a valid bundle exists.
        max_bytes: Cap on the corpus text (default: the corpus module's default).
        progress: Show progress bars.

    Returns:
        The opened :class:`~spacerini.bundle.Bundle`.

    Raises:
        BundleError: The folder holds a bundle of another corpus (it is neither served as the
            demo nor replaced by it).
    """
    from spacerini.bundle import build_bundle, open_bundle
    from spacerini.corpus.default import python_source_corpus

    path = Path(out).expanduser() if out else default_demo_path()
    backends = available_demo_backends()
    if path.exists():
        try:
            bundle = open_bundle(path)
        except BundleError as exc:
            logger.warning("rebuilding the demo bundle: %s", exc)
        else:
            source = bundle.manifest.get("source")
            what = source.get("source") if isinstance(source, dict) else None
            if what != DEMO_SOURCE:
                bundle.close()
                raise BundleError(
                    f"{path} holds a bundle of another corpus ({what or 'unknown source'}), not the demo bundle: "
                    "choose another --out (the demo neither serves nor replaces it)"
                )
            if not rebuild and set(backends) <= set(bundle.backends):
                return bundle
            bundle.close()
            if not rebuild:
                logger.info("rebuilding the demo bundle to add %s", ", ".join(sorted(set(backends) - set(bundle.backends))))
    kwargs = {"progress": progress}
    if max_bytes is not None:
        kwargs["max_bytes"] = max_bytes
    corpus = python_source_corpus(**kwargs)
    logger.info("building the demo bundle at %s with %s", path, ", ".join(backends))
    threads = max(1, min(4, os.cpu_count() or 1))
    return build_bundle(corpus, path, backends=backends, threads=threads, progress=progress)
