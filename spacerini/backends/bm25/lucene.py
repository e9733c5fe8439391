"""The Java side of the BM25 backend: analyzers, ``IndexCollection`` in-process, term vectors.

Every call here goes through pyjnius. Measured facts that shaped it:

* pyjnius releases the GIL while Java runs, so a Python thread pool gets real parallelism on
  Java-heavy calls (``IndexCollection.run``, reading term vectors).
* Passing a Python ``str`` to Java costs ~25 ns per character; passing UTF-8 ``bytes`` and letting
  Java decode them (``new String(bytes, "UTF-8")``) is ~7x faster per character but costs one more
  JNI call, so texts longer than ``JavaAnalyzer.BYTES_THRESHOLD`` cross as bytes.
* A list of tokens crosses back as one string (``String.join``), never one JNI call per token.
* Reading term vectors back costs ~2 ms per document over JNI; Spacerini's own helper
  (``spacerini/jars/PostingsDump.java``) walks the whole terms dictionary in Java instead and
  writes flat files that numpy reads, which is what builds the BM25 sidecar.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


def java_log() -> Callable[[float], float]:
    """Returns Java's ``Math.log`` (what Lucene's idf uses), one JNI call per value."""
    return autoclass("java.lang.Math").log


def _static_method(java_class: str, name: str, signature: str) -> Any:
    """Returns the static method ``name`` of ``java_class`` bound to its one JNI ``signature``.

    A bound method skips pyjnius' overload resolution on every call (measured: 3x faster per
    query for ``AnalyzerUtils.analyze``).

    The bound method is made once per process and kept with its class: pyjnius registers a class
    under its Java name, so a second ``_Bound`` class for the same Java class replaces the first
    in that registry, the first is collected, and its JNI class reference is deleted under the
    methods bound to it (a segmentation fault at their next call, seen when a second searcher
    opened while the first was still in use).

    Raises:
        jnius.JavaException: The class is not on the class path.
    """
    key = (java_class, name, signature)
    with _BOUND_LOCK:
        cached = _BOUND.get(key)
        if cached is None:
            jnius = _jnius()
            autoclass(java_class)  # fails early, with Java's message, when the class is missing
            bound = jnius.MetaJavaClass(
                "_Bound", (jnius.JavaClass,),
                {"__javaclass__": java_class.replace(".", "/"), name: jnius.JavaStaticMethod(signature)},
            )  # fmt: skip
            cached = _BOUND[key] = (bound, getattr(bound, name))
    return cached[1]


#: Bound static methods, with the classes that own their JNI references (see ``_static_method``).
_BOUND: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_BOUND_LOCK = threading.Lock()


class JavaAnalyzer:
    """Runs a Lucene analyzer on Python strings with two or three JNI calls per text.

    ``AnalyzerUtils.analyze`` is bound to its one (Analyzer, String) signature, which skips
    pyjnius' overload resolution (measured: 3x faster per query). The token list comes back as
    ``List.toString()`` (``[a, b]``): tokens hold no spaces, and a size check catches any analyzer
    where that fails, falling back to ``String.join`` on a control character.

    Args:
        analyzer: A ``org.apache.lucene.analysis.Analyzer`` (thread-safe in Lucene).
    """

    #: Texts longer than this cross JNI as UTF-8 bytes (faster for long texts).
    BYTES_THRESHOLD = 2048

    def __init__(self, analyzer: Any) -> None:
        jnius = _jnius()
        self._analyze = _static_method(
            "io.anserini.analysis.AnalyzerUtils", "analyze",
            "(Lorg/apache/lucene/analysis/Analyzer;Ljava/lang/String;)Ljava/util/List;",
        )  # fmt: skip
        self._analyzer = analyzer
        self._string = autoclass("java.lang.String")
        self._sep = jnius.cast("java.lang.CharSequence", self._string(SEP))
        self._cast = jnius.cast

    def analyze(self, text: str) -> list[str]:
        """Returns the analyzed tokens of ``text`` in order."""
        if not text:
            return []
        jtext: Any = text
        if len(text) > self.BYTES_THRESHOLD:
            jtext = self._string(text.encode("utf-8", "surrogatepass"), "UTF-8")
        tokens = self._analyze(self._analyzer, jtext)
        body = tokens.toString()[1:-1]
        if not body:
            return []
        parts = body.split(", ")
        if len(parts) == tokens.size():
            return parts
        joined = self._string.join(self._sep, self._cast("java.lang.Iterable", tokens))
        return joined.split(SEP)


class BatchAnalyzer:
    """Analyzes many short texts with one JNI call, joined by a marker token.

    The marker is a number the analyzer keeps as one token (checked once). Texts that contain it,
    or any batch where the marker count comes out wrong, are analyzed one by one.

    Args:
        analyzer: The :class:`JavaAnalyzer` to use.
    """

    MARKER = "7770777077707"

    def __init__(self, analyzer: JavaAnalyzer) -> None:
        self._one = analyzer
        self._ok = analyzer.analyze(f"a {self.MARKER} b") == ["a", self.MARKER, "b"] or (
            analyzer.analyze(f"{self.MARKER}") == [self.MARKER]
        )

    def analyze_many(self, texts: list[str]) -> list[list[str]]:
        """Returns the tokens of each text, in order."""
        marker = self.MARKER
        if not self._ok or len(texts) < 2:
            return [self._one.analyze(t) for t in texts]
        batch = [i for i, t in enumerate(texts) if marker not in t]
        out: list[list[str]] = [[] for _ in texts]
        if batch:
            tokens = self._one.analyze(f" {marker} ".join(texts[i] for i in batch))
            groups: list[list[str]] = [[]]
            for tok in tokens:
                if tok == marker:
                    groups.append([])
                else:
                    groups[-1].append(tok)
            if len(groups) == len(batch):
                for i, group in zip(batch, groups, strict=True):
                    out[i] = group
            else:
                for i in batch:
                    out[i] = self._one.analyze(texts[i])
        for i, t in enumerate(texts):
            if marker in t:
                out[i] = self._one.analyze(t)
        return out


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
    interrupted = False
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
        progress_writer = writer
        try:
            while thread.is_alive():
                thread.join(0.5)
                if on_progress is not None and progress_writer is not None and thread.is_alive():
                    try:
                        on_progress(int(progress_writer.getDocStats().maxDoc))
                    except Exception:  # noqa: BLE001 - the writer closes at the end of run()
                        progress_writer = None
        except BaseException:
            # Ctrl-C or SIGTERM while Java indexes: stop Java writing before the caller deletes
            # the folder, or new segment files could appear in it after the delete.
            interrupted = True
            _abort(writer, thread)
            raise
        if failure:
            raise failure[0]
        counters = indexer.getCounters()
        result = {
            name: int(getattr(counters, name).get())
            for name in ("indexed", "empty", "skipped", "unindexable", "errors")
        }
    finally:
        text = captured.toString()
        if interrupted:
            # The rolled-back writer makes Java's indexing threads print stack traces for a while
            # yet; Java's stderr stays captured (the process is on its way out), so that an
            # interrupted build ends with one line, not pages of Java.
            logger.debug("IndexCollection interrupted; Java reported:\n%s", text.strip()[:4000])
        else:
            System.setErr(old_err)
            if "Exception" in text or "ERROR" in text:
                logger.warning("Anserini IndexCollection reported on stderr:\n%s", text.strip()[:4000])
    reader = open_reader(Path(args[args.index("-index") + 1]))
    try:
        result["max_doc"] = int(reader.maxDoc())
    finally:
        reader.close()
    return result


def _abort(writer: Any, thread: threading.Thread, *, wait: float = 30.0) -> None:
    """Rolls ``writer`` back (Java's indexer threads then fail fast) and waits for ``thread``."""
    if writer is not None:
        try:
            writer.rollback()
        except Exception:  # noqa: BLE001 - it may already be closed
            logger.debug("IndexWriter.rollback failed", exc_info=True)
    thread.join(wait)


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

    def _text(self, docid: str) -> str:
        try:
            vector = self._utils.getDocumentVector(self._reader, docid)
        except self._jnius.JavaException as exc:
            if "NotStoredException" in str(getattr(exc, "classname", "")) or "not stored" in str(exc).lower():
                return ""
            raise
        if vector is None:  # not in the index: Anserini skips documents with blank contents
            return ""
        text = vector.toString()
        return text[1:-1]

    def vectors(self, docids: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Returns the concatenated terms, their int32 tfs and the per-document term counts."""
        bodies = [self._text(d) for d in docids]
        counts = np.fromiter(
            ((b.count(", ") + 1) if b else 0 for b in bodies), dtype=np.int64, count=len(bodies)
        )
        joined = ", ".join(b for b in bodies if b)
        if not joined:
            return [], np.zeros(0, dtype=np.int32), counts
        total = int(counts.sum())
        if joined.count("=") == total:
            # No term holds "=": one C-level split gives term, tf, term, tf, ...
            parts = joined.replace(", ", "=").split("=")
            return parts[0::2], np.array(parts[1::2], dtype=np.int64).astype(np.int32), counts
        terms: list[str] = []
        tfs: list[int] = []
        for entry in joined.split(", "):
            term, _, tf = entry.rpartition("=")
            terms.append(term)
            tfs.append(int(tf))
        return terms, np.asarray(tfs, dtype=np.int32), counts


@dataclass(frozen=True)
class Postings:
    """A Lucene field's postings read in one pass by the ``io.spacerini.PostingsDump`` helper.

    Attributes:
        terms: The vocabulary in the terms dictionary's order (sorted UTF-8 bytes).
        dfs: Each term's document count (int64).
        docs: The postings' Lucene docids, term after term, ascending within a term (int32).
        tfs: The postings' term frequencies (int32).
        ids: The collection id of each Lucene docid (``None`` where a docid has no id).
    """

    terms: list[bytes]
    dfs: np.ndarray
    docs: np.ndarray
    tfs: np.ndarray
    ids: list[str | None]


def dump_postings(reader: Any, *, field: str = "contents", id_field: str = "id") -> Postings | None:
    """Reads every posting of ``field`` with Spacerini's Java helper, without a JNI call per term.

    Returns:
        The postings, or ``None`` when the helper jar is not on the class path or the index has
        deleted documents (callers then read term vectors instead).
    """
    jnius = _jnius()
    try:
        helper = autoclass("io.spacerini.PostingsDump")
    except jnius.JavaException:
        logger.info("Spacerini's helper jar is not loaded; reading term vectors instead")
        return None
    with tempfile.TemporaryDirectory(prefix="spacerini-postings-") as tmp:
        counts = helper.dump(reader, field, id_field, tmp)
        if counts is None:
            return None
        n_terms, n_postings, n_ids, max_doc = (int(c) for c in counts)
        return read_postings_dump(Path(tmp), terms=n_terms, postings=n_postings, ids=n_ids, max_doc=max_doc)


def read_postings_dump(folder: Path, *, terms: int, postings: int, ids: int, max_doc: int) -> Postings:
    """Reads the files ``io.spacerini.PostingsDump.dump`` wrote into ``folder``.

    Args:
        folder: The dump's folder.
        terms: The counts ``dump`` returned: terms, postings, ids and ``maxDoc``.
        postings: See ``terms``.
        ids: See ``terms``.
        max_doc: See ``terms``.

    Raises:
        BundleError: A file does not hold what the counts say (truncated dump).
    """

    def ints(name: str, count: int) -> np.ndarray:
        array = np.fromfile(folder / name, dtype="<i4")  # PostingsDump writes little-endian
        if array.size != count:
            raise BundleError(f"the postings dump {name} holds {array.size} values, expected {count}")
        return array.astype(np.int32, copy=False)

    term_lens = ints("term_lens.i4", terms)
    dfs = ints("dfs.i4", terms).astype(np.int64)
    docs = ints("docs.i4", postings)
    tfs = ints("tfs.i4", postings)
    id_lens = ints("id_lens.i4", ids)
    id_docs = ints("id_docs.i4", ids)
    term_list = _split_blob((folder / "terms.bin").read_bytes(), term_lens)
    raw_ids = _split_blob((folder / "ids.bin").read_bytes(), id_lens)
    id_of: list[str | None] = [None] * max_doc
    for doc, raw in zip(id_docs.tolist(), raw_ids, strict=True):
        id_of[doc] = raw.decode("utf-8", "surrogatepass")
    return Postings(terms=term_list, dfs=dfs, docs=docs, tfs=tfs, ids=id_of)


def _split_blob(blob: bytes, lengths: np.ndarray) -> list[bytes]:
    ends = np.cumsum(lengths, dtype=np.int64)
    if int(ends[-1] if ends.size else 0) != len(blob):
        raise BundleError("the postings dump is truncated: rebuild the bundle")
    starts = (ends - lengths).tolist()
    return [blob[s:e] for s, e in zip(starts, ends.tolist(), strict=True)]


class TokenMatcher:
    """Finds, in Java, the tokens of a text whose analyzed term is one of a query's terms.

    The analysis runs outside Python's GIL (``io.spacerini.Snippets`` in the helper jar) and only
    the matching tokens' offsets cross JNI, which keeps snippets cheap for a server that answers
    many queries at once.

    Args:
        analyzer: The index's Lucene ``Analyzer``.

    Raises:
        jnius.JavaException: The helper jar is not on the class path.
    """

    def __init__(self, analyzer: Any) -> None:
        self._matches = _static_method(
            "io.spacerini.Snippets", "matches",
            "(Lorg/apache/lucene/analysis/Analyzer;Ljava/lang/String;[Ljava/lang/String;)[I",
        )  # fmt: skip
        self._matches_ascii = _static_method(
            "io.spacerini.Snippets", "matchesAscii",
            "(Lorg/apache/lucene/analysis/Analyzer;[B[Ljava/lang/String;[Ljava/lang/String;)[I",
        )  # fmt: skip
        self._first_ascii = _static_method(
            "io.spacerini.Snippets", "firstMatchAscii",
            "(Lorg/apache/lucene/analysis/Analyzer;[B[Ljava/lang/String;[Ljava/lang/String;)[I",
        )  # fmt: skip
        self._analyzer = analyzer

    def spans(
        self, text: str, terms: Iterable[str], prefixes: Sequence[str] | None = None
    ) -> list[tuple[int, int]] | None:
        """Returns the (start, end) character offsets of the matching tokens, in order.

        Args:
            text: The text to look in.
            terms: The analyzed terms wanted.
            prefixes: Lowercase strings one of which begins every token (lowercased) whose term is
                wanted (:meth:`BM25Searcher._snippet_query`'s keys). With them, an ASCII text is
                analyzed only in its runs of non-blank characters that hold one: the same offsets
                for a fraction of the analysis (an ASCII text also crosses JNI as bytes, 4x cheaper
                than as a string).

        Returns:
            The offsets, or ``None`` when the text holds characters outside the Basic
            Multilingual Plane (Java's offsets count UTF-16 units there, Python's code points).
        """
        if text.isascii():
            flat = self._matches_ascii(self._analyzer, text.encode("ascii"), list(terms), _or_null(prefixes))
        elif max(text) > "\uffff":
            return None
        else:
            flat = self._matches(self._analyzer, text, list(terms))
        flat = list(flat)
        return list(zip(flat[0::2], flat[1::2], strict=True))

    def first(
        self, text: str, terms: Iterable[str], prefixes: Sequence[str], *, start: int = 0, limit: int
    ) -> int | None:
        """Where the first matching token of an ASCII ``text`` begins (see :meth:`spans`), looking
        from the run of non-blank characters that holds ``start``, or ``None`` when there is none
        in the ``limit`` characters from there.

        The text crosses JNI a chunk at a time (cut at blanks, which no token crosses, or inside
        a run of non-blank characters longer than a token: :func:`_chunk_end`), so the cost
        follows the distance to the match, not the document's size (4 MB files exist, some on
        one line).
        """
        if not text.isascii():
            raise ValueError("TokenMatcher.first takes ASCII text")
        terms, prefixes = list(terms), list(prefixes)

        def first_in(chunk: str) -> int | None:
            found = list(self._first_ascii(self._analyzer, chunk.encode("ascii"), terms, prefixes))
            return found[0] if found else None

        return first_in_chunks(text, start, limit, first_in)


#: Characters of a document handed to Java per call while looking for its first match.
_FIRST_CHUNK = 8_192
#: Lucene's longest token (``StandardTokenizer`` splits longer runs): how far a chunk's edge moves
#: to reach a blank. A longer run of non-blank characters (a minified file, CJK text without
#: spaces) is cut inside, so a chunk never grows with the run.
_MAX_TOKEN = 255
#: ASCII blanks and controls: every character up to U+0020 ends a token.
_BLANK = re.compile(r"[\x00-\x20]")


def _blank_before(text: str, at: int) -> int:
    """``at`` moved back to just after a blank (or to 0), so no token is cut there; ``at`` itself
    inside a run of more than :data:`_MAX_TOKEN` non-blank characters."""
    for i in range(at, max(0, at - _MAX_TOKEN - 1) - 1, -1):
        if i == 0 or text[i - 1] <= " ":
            return i
    return at


def _chunk_end(text: str, at: int, stop: int) -> int:
    """Where a chunk that starts at ``at`` ends: the first blank from ``at + _FIRST_CHUNK`` (or
    ``stop``) on, which no token crosses, or that place itself inside a longer run of non-blank
    characters, where a token across the cut is analyzed in two parts."""
    nominal = min(stop, at + _FIRST_CHUNK, len(text))
    found = _BLANK.search(text, nominal, nominal + _MAX_TOKEN + 1)
    return found.start() if found else nominal


def first_in_chunks(text: str, start: int, limit: int, first_in: Callable[[str], int | None]) -> int | None:
    """Where the first match in ``text`` from the run of non-blank characters that holds
    ``start`` begins, looking at ``limit`` characters at most, or ``None``.

    The text is handed to ``first_in`` (the offset of a chunk's first match, or ``None``) a chunk
    at a time (:func:`_chunk_end`), so the cost follows the distance to the match, not the
    document's size.
    """
    at = _blank_before(text, start)
    stop = min(len(text), at + limit)
    while at < stop:
        end = _chunk_end(text, at, stop)
        found = first_in(text[at:end])
        if found is not None:
            return at + found
        at = end
    return None


def _or_null(prefixes: Sequence[str] | None) -> list[str] | None:
    return list(prefixes) if prefixes else None
