"""The Java side of the BM25 backend: analyzers, ``IndexCollection`` in-process, term vectors.

Every call here goes through pyjnius. Measured facts that shaped it:

* pyjnius releases the GIL while Java runs, so a Python thread pool gets real parallelism on
  Java-heavy calls (``IndexCollection.run``, reading term vectors).
* Passing a Python ``str`` to Java costs ~25 ns per character; passing UTF-8 ``bytes`` and letting
  Java decode them (``new String(bytes, "UTF-8")``) is ~7x faster, so text always crosses as bytes.
* A list of tokens crosses back as one string (``String.join``), never one JNI call per token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spacerini.errors import BundleError
from spacerini.java import autoclass, ensure_jvm

logger = logging.getLogger(__name__)

#: Token separator used when a token list crosses JNI as one string (never inside a token).
SEP = "\u0001"


def _jnius() -> Any:
    ensure_jvm()
    import jnius

    return jnius


def language_analyzers() -> list[str]:
    """Returns the language codes Anserini's ``AnalyzerMap`` offers besides English."""
    amap = autoclass("io.anserini.analysis.AnalyzerMap").analyzerMap
    return sorted(str(k) for k in amap.keySet().toArray())


def make_analyzer(language: str, *, pretokenized: bool) -> Any:
    """Builds the Lucene analyzer that ``IndexCollection``/``SearchCollection`` use for these flags.

    Mirrors ``IndexCollection.getAnalyzer`` in Anserini 1.7.1: a language in ``AnalyzerMap``, else
    ``WhitespaceAnalyzer`` for ``-pretokenized``, else ``DefaultEnglishAnalyzer`` (Porter stemming,
    Lucene's English stopwords).

    Raises:
        BundleError: The language is not one Anserini supports.
    """
    if pretokenized:
        return autoclass("org.apache.lucene.analysis.core.WhitespaceAnalyzer")()
    if language == "en":
        return autoclass("io.anserini.analysis.DefaultEnglishAnalyzer").fromArguments("porter", False, None)
    known = language_analyzers()
    if language not in known:
        raise BundleError(
            f"unknown analyzer language {language!r}: use en, code or one of {', '.join(known)}"
        )
    return autoclass("io.anserini.analysis.AnalyzerMap").getLanguageSpecificAnalyzer(language)


class JavaAnalyzer:
    """Runs a Lucene analyzer on Python strings with three JNI calls per text.

    Args:
        analyzer: A ``org.apache.lucene.analysis.Analyzer`` (thread-safe in Lucene).
    """

    def __init__(self, analyzer: Any) -> None:
        jnius = _jnius()
        self._analyzer = analyzer
        self._utils = autoclass("io.anserini.analysis.AnalyzerUtils")
        self._string = autoclass("java.lang.String")
        self._sep = jnius.cast("java.lang.CharSequence", self._string(SEP))
        self._cast = jnius.cast

    def analyze(self, text: str) -> list[str]:
        """Returns the analyzed tokens of ``text`` in order."""
        if not text:
            return []
        jtext = self._string(text.encode("utf-8", "surrogatepass"), "UTF-8")
        tokens = self._utils.analyze(self._analyzer, jtext)
        joined = self._string.join(self._sep, self._cast("java.lang.Iterable", tokens))
        return joined.split(SEP) if joined else []


def _index_args(
    input_dir: Path, index_dir: Path, *, threads: int, language: str, pretokenized: bool, memory_buffer: int
) -> list[str]:
    args = [
        "-collection", "JsonCollection",
        "-generator", "DefaultLuceneDocumentGenerator",
        "-input", str(input_dir),
        "-index", str(index_dir),
        "-threads", str(threads),
        "-memoryBuffer", str(memory_buffer),
        "-storePositions", "-storeDocvectors", "-storeRaw",
        "-quiet",
    ]  # fmt: skip
    if pretokenized:
        args.append("-pretokenized")
    elif language != "en":
        args += ["-language", language]
    return args


def index_args(
    input_dir: Path, index_dir: Path, *, threads: int, language: str, pretokenized: bool, memory_buffer: int
) -> list[str]:
    """The ``IndexCollection`` command line this backend runs (benchmarks reuse it for the peer run)."""
    return _index_args(
        input_dir, index_dir, threads=threads, language=language, pretokenized=pretokenized,
        memory_buffer=memory_buffer,
    )  # fmt: skip


def run_index_collection(
    args: list[str], *, on_progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Runs Anserini's ``IndexCollection`` in this JVM and returns its counters.

    ``IndexCollection`` logs and skips documents it cannot index; the caller compares the counters
    with what it wrote. Java's stderr (stack traces printed by indexer threads) is captured and
    logged instead of reaching the terminal.

    Args:
        args: Command-line arguments, as for ``IndexCollection.main``.
        on_progress: Called about twice a second with the number of documents in the index so far.

    Returns:
        ``indexed``, ``empty``, ``skipped``, ``unindexable``, ``errors`` and ``max_doc``.

    Raises:
        jnius.JavaException: ``IndexCollection`` could not start or failed as a whole.
    """
    jnius = _jnius()
    Args = autoclass("io.anserini.index.IndexCollection$Args")
    Parser = autoclass("org.kohsuke.args4j.CmdLineParser")
    IndexCollection = autoclass("io.anserini.index.IndexCollection")
    System = autoclass("java.lang.System")
    BAOS = autoclass("java.io.ByteArrayOutputStream")
    PrintStream = autoclass("java.io.PrintStream")

    jargs = Args()
    jlist = autoclass("java.util.ArrayList")()
    for arg in args:
        jlist.add(arg)
    Parser(jargs).parseArgument(jnius.cast("java.util.Collection", jlist))
    old_err = System.err
    captured = BAOS()
    System.setErr(PrintStream(captured, True))
    try:
        indexer = IndexCollection(jargs)
        writer = _writer_of(jnius, indexer)
        failure: list[BaseException] = []

        def target() -> None:
            try:
                indexer.run()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=target, name="anserini-index", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
            if on_progress is not None and writer is not None and thread.is_alive():
                try:
                    on_progress(int(writer.getDocStats().maxDoc))
                except Exception:  # noqa: BLE001 - the writer closes at the end of run()
                    writer = None
        if failure:
            raise failure[0]
        counters = indexer.getCounters()
        result = {
            name: int(getattr(counters, name).get())
            for name in ("indexed", "empty", "skipped", "unindexable", "errors")
        }
    finally:
        System.setErr(old_err)
        text = captured.toString()
        if text.strip():
            logger.warning("Anserini IndexCollection reported on stderr:\n%s", text.strip()[:4000])
    reader = open_reader(Path(args[args.index("-index") + 1]))
    try:
        result["max_doc"] = int(reader.maxDoc())
    finally:
        reader.close()
    return result


def _writer_of(jnius: Any, indexer: Any) -> Any:
    """Reads the protected ``writer`` field of an ``AbstractIndexer`` (for progress only)."""
    try:
        field = (
            autoclass("java.lang.Class")
            .forName("io.anserini.index.AbstractIndexer")
            .getDeclaredField("writer")
        )
        field.setAccessible(True)
        return jnius.cast("org.apache.lucene.index.IndexWriter", field.get(indexer))
    except Exception:  # noqa: BLE001 - progress is cosmetic
        logger.debug("cannot read IndexCollection's writer; no indexing progress", exc_info=True)
        return None


def open_reader(index_dir: Path) -> Any:
    """Opens a Lucene ``DirectoryReader`` on ``index_dir``."""
    return autoclass("io.anserini.index.IndexReaderUtils").getReader(str(index_dir))


class TermVectorReader:
    """Reads a document's stored term vector (``contents`` field) as Python lists.

    One JNI call fetches the vector as a ``Map<String, Long>``, one more turns it into a string
    (``{term=tf, term=tf}``) that Python parses. Terms never contain a space (every tokenizer here
    splits on whitespace), so ``", "`` separates entries and the last ``=`` ends a term.

    Args:
        reader: A Lucene ``IndexReader``.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._utils = autoclass("io.anserini.index.IndexReaderUtils")
        self._jnius = _jnius()

    def vector(self, docid: str) -> tuple[list[str], list[int]]:
        """Returns (terms, tfs) of the document ``docid``; empty lists if it has no tokens."""
        try:
            text = self._utils.getDocumentVector(self._reader, docid).toString()
        except self._jnius.JavaException as exc:
            if "NotStoredException" in str(getattr(exc, "classname", "")) or "not stored" in str(exc).lower():
                return [], []
            raise
        if len(text) <= 2:
            return [], []
        terms: list[str] = []
        tfs: list[int] = []
        append_t, append_f = terms.append, tfs.append
        for entry in text[1:-1].split(", "):
            term, _, tf = entry.rpartition("=")
            append_t(term)
            append_f(int(tf))
        return terms, tfs
