"""Lucene BM25 backend: a plain Anserini index plus an exact numpy scorer with Anserini's rankings.

What ``build`` writes into the bundle folder:

* ``lucene/`` - the Anserini 1.7.1 index that ``io.anserini.index.IndexCollection`` builds from
  JSON lines ``{"id", "contents"}`` with ``-storePositions -storeDocvectors -storeRaw``, written
  by Spacerini's Java helper from documents streamed through a pipe while the corpus is read
  (:mod:`spacerini.backends.bm25.writer`; ``IndexCollection`` itself runs on JSON-lines shards
  when the helper jar is missing). Plain pyserini ``LuceneSearcher(bundle/lucene)`` opens it.
* ``spacerini-bm25/`` (inside ``lucene/``, where Lucene ignores it) - a sidecar holding the same
  postings in CSR ``.npy`` files (see :mod:`spacerini.backends.bm25.scorer`).

Design choices, and why:

* **Rankings identical to Anserini.** ``SearchCollection`` and pyserini's ``LuceneSearcher`` score
  with Lucene 9.9's ``BM25Similarity``, order by (score, collection id) and round ties with
  ``ScoreTiesAdjusterReranker``. The sidecar scorer redoes each float32 step (norm bytes, the
  256-entry cache, idf, per-term score, double sum, tie rounding), so docids, order and scores
  are the same. ``tests/backends/test_bm25.py`` checks this against a raw ``SearchCollection`` run.
* **Why a sidecar.** Lucene through pyjnius costs about 4.5 ms per query, mostly in JNI calls.
  The sidecar needs one JNI call per batch of queries (analysis, texts joined by a marker token)
  and a few vectorised numpy operations, and it is memory-mapped, so memory stays flat.
* **A compiled kernel ranks.** ``ExactScorer.rank_many`` hands a chunk of queries' postings
  spans to :mod:`spacerini.backends.bm25.kernel` (numba, ``nogil``): per query it sums each touched
  row's term scores (double, query term order), keeps the ``n`` best in a heap ordered by (score,
  id byte order), and tie-adjusts them, so its work follows the postings a query touches, not
  the corpus size. One-term queries over long postings also skip row ranges whose score bound is
  below the ``n``-th score (exact). ``batch_search_arrays`` hands the hits out as arrays (row
  numbers, scores), without a Python object per hit; TREC runs are written from them. The numpy
  batch path (one ``np.bincount`` and a partition per chunk) stays as the fallback without numba
  and as the reference the kernel is tested against; ``search`` is a batch of one. Term ids are
  cached (bounded dict).
* **Threads.** ``threads > 1`` analyzes and ranks chunks of queries in worker threads: pyjnius
  releases the GIL in Java, and the kernel releases it while it ranks.
* **Hits cost more than scoring at large k.** ``Hit`` is a frozen slotted dataclass; hits are
  built through its slot descriptors (~3x faster than ``Hit(...)``, equal results), yet at
  k=1000 building 1000 objects per query still dominates: TREC runs use ``batch_search_arrays``.
* **Where the sidecar's postings come from.** They are read out of the Lucene index itself, so
  they are by construction what Lucene indexed (token-length splits included), in one pass over
  its terms dictionary by Spacerini's Java helper (``spacerini/jars/PostingsDump.java``), which
  writes flat int32 files that numpy reads. Without the helper jar, they are read back from the
  stored term vectors instead (one ``IndexReaderUtils.getDocumentVector`` call per document,
  ~2 ms each); both give byte-identical sidecars. Re-analysing the text in Python would double the
  analysis work (measured: analysis is most of the indexing CPU).
* **Analyzers.** ``"en"`` (default): Anserini's ``DefaultEnglishAnalyzer`` (Porter stemming,
  Lucene's English stopwords). Any language in Anserini's ``AnalyzerMap`` (``"de"``, ``"fr"``, ``"zh"``,
  ...): that Lucene analyzer (``-language xx``). ``"code"``: identifiers are split in Python
  (``getUserName`` / ``get_user_name`` give the whole identifier and ``get``, ``user``, ``name``,
  lowercased; numbers and other words are kept whole) and indexed with ``-pretokenized`` (Lucene's
  ``WhitespaceAnalyzer``); queries get the same split. Plain pyserini reproduces ``"code"`` rankings
  only if the caller pre-splits queries with :func:`code_tokens` and sets a whitespace analyzer.
* **Limits.** A document id longer than Lucene's 32,766-byte term limit, or a text longer than the
  JSON parser's 20,000,000-character limit, raises :class:`DocumentTooLargeError` naming the id
  before Lucene starts. Anserini's analyzers cut tokens at 255 characters, so a long token never
  trips Lucene's term limit; it is indexed in pieces. ``IndexCollection`` logs and skips documents
  it cannot index: its counters are checked against what was written, and any difference raises
  :class:`BundleError` with the missing ids instead of losing documents silently. Documents
  whose contents are blank are skipped by Anserini by design (``empty`` in the stats); they can
  never match.
* **Shards.** Each shard of a bundle (a contiguous range of docstore rows) gets an ordinary bm25
  folder from :func:`build`, which plain pyserini opens on its own. :func:`open_shards` searches
  them together with the collection's statistics (``docCount``, ``sumTotalTermFreq`` and each
  term's ``docFreq``, summed over the shards at open: :func:`shard_stats` shows what each
  contributes), ranking all shards' postings in one pass, so every answer equals that of one
  index over all the documents: same docids, order and scores
  (``tests/backends/test_bm25_shards.py`` checks 1, 3 and 7 shards against raw ``SearchCollection``).
  Each shard's norm cache (256 floats) and idfs are recomputed at open; its once-term scores
  (4 bytes per posting) at the first search.
* ``scorer="lucene"`` (at ``open``) searches through Anserini's ``SimpleSearcher`` (the class
  pyserini's ``LuceneSearcher`` wraps) instead of the sidecar, for comparison.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from spacerini.backends import check_batch, check_text
from spacerini.backends.bm25.scorer import ExactScorer, SidecarWriter, parallel_threads, write_sidecar
from spacerini.errors import (
    BundleCorruptError,
    BundleError,
    DocumentTooLargeError,
    QueryError,
)
from spacerini.records import BuildReport, Doc, Hit

logger = logging.getLogger(__name__)

NAME = "bm25"

#: Lucene's ``IndexWriter.MAX_TERM_LENGTH`` in UTF-8 bytes (the id is indexed as one term).
MAX_ID_BYTES = 32766
#: Jackson's default ``StreamReadConstraints.maxStringLength`` (Anserini parses the JSONL with it).
MAX_TEXT_CHARS = 20_000_000
#: Lucene's ``IndexSearcher.getMaxClauseCount()``: a query may hold at most this many distinct terms.
MAX_QUERY_TERMS = 1024

#: The bundle folder this backend owns: ``bundle/lucene`` is the plain Anserini index, as the
#: bundle format says, and our sidecar lives in a subfolder that Lucene ignores.
FOLDER = "lucene"
SIDECAR_DIR = "spacerini-bm25"
_JSONL_DIR = ".bm25-jsonl"

_T = TypeVar("_T")
_R = TypeVar("_R")

# Java's String.trim() strips code points <= U+0020; Anserini skips contents that trim to "".
_JAVA_TRIM = "".join(chr(c) for c in range(33))

_WORD = re.compile(r"\w+")

def _check_batch(queries: Sequence[tuple[str, str]], k: int) -> None:
    """:func:`~spacerini.backends.check_batch` (k may be 0), and
    :func:`~spacerini.backends.check_text` on every query."""
    check_batch(queries, k, min_k=0)
    for qid, text in queries:
        if not text.isascii():  # the common case costs one flag read, no call
            check_text(text, qid)


@dataclass(frozen=True)
class _SnippetKeys:
    """The key prefixes of a query's terms (lowercase), and patterns finding them anywhere in a
    text and in whole lines (compiled when first used: only the path without the Java matcher
    needs it, and compiling cost ~0.15 ms a query)."""

    prefixes: tuple[str, ...]
    anywhere: re.Pattern[str]

    @functools.cached_property
    def lines(self) -> re.Pattern[str]:
        return re.compile(rf"^.*(?:{self.anywhere.pattern}).*$", re.IGNORECASE | re.MULTILINE)


#: Characters of a long document scanned for a snippet (around the first possible match).
SNIPPET_SCAN_CHARS = 2_500
#: When that window shows no match, words of the whole document that begin with a key prefix
#: are analyzed (this many at most per prefix) to find where a real match is.
SNIPPET_RESCUE_WORDS = 256
#: The same bound for an English ASCII document, whose rescue runs in Java, and for the other
#: analyzers' documents, analyzed a chunk at a time after the first window: characters looked at
#: from the first key prefix (or from the scan window's end) at most.
SNIPPET_RESCUE_CHARS = 64_000
_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_A-Za-z]+")


def code_tokens(text: str) -> str:
    """Splits identifiers for the ``"code"`` analyzer; returns space-separated lowercase tokens.

    Each word (``\\w+``) gives itself, lowercased, followed by its parts when it has several
    (camelCase, snake_case, letter/digit boundaries): ``parseHTTPResponse_v2`` gives
    ``parsehttpresponse_v2 parse http response v 2``.

    Args:
        text: Source code or any text.
    """
    out: list[str] = []
    for word in _WORD.findall(text):
        out.append(word.lower())
        parts = _PARTS.findall(word)
        if len(parts) > 1:
            out.extend(p.lower() for p in parts)
    return " ".join(out)


# -- build -------------------------------------------------------------------------------------------
#: The largest finite 32-bit float: Lucene's BM25Similarity takes k1 and b as floats.
_FLOAT32_MAX = 3.4028234663852886e38


def _check_params(analyzer: str, k1: float, b: float, threads: int, memory_buffer: int) -> None:
    if not isinstance(analyzer, str) or not analyzer:
        raise BundleError(f"analyzer must be a non-empty string, got {analyzer!r}")
    if not (k1 >= 0) or not (0 <= b <= 1):
        raise BundleError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
    if not k1 <= _FLOAT32_MAX:  # inf, or 1e308 (inf as a float): every score would be 0
        raise BundleError(f"BM25 needs a finite k1 (Lucene keeps it as a 32-bit float), got k1={k1}")
    if threads < 1:
        raise BundleError(f"threads must be >= 1, got {threads}")
    if memory_buffer < 16:
        raise BundleError(f"memory_buffer must be at least 16 (MB), got {memory_buffer}")


def build(
    docs_factory: Callable[[], Iterator[Doc]],
    folder: Path,
    *,
    threads: int = 1,
    progress: bool = True,
    analyzer: str = "en",
    k1: float = 0.9,
    b: float = 0.4,
    memory_buffer: int = 512,
) -> BuildReport:
    """Indexes the documents with Anserini and writes the exact-scorer sidecar.

    Lucene indexes while the documents are read (:class:`~spacerini.backends.bm25.writer.BM25Writer`,
    which the bundle builder also feeds directly while it writes the docstore).

    Args:
        docs_factory: Returns a fresh iterator over the documents (iterated once here).
        folder: The bundle folder being built; ``lucene/`` and ``bm25/`` are created in it.
        threads: Indexing threads (also the number of JSONL shards) and sidecar threads.
        progress: Show progress bars.
        analyzer: ``"en"``, ``"code"`` or a language code Anserini supports (``"de"``, ``"zh"``, ...).
        k1: BM25 k1 (Anserini's default 0.9).
        b: BM25 b (Anserini's default 0.4).
        memory_buffer: Lucene's indexing RAM buffer in MB; keep it well under the JVM heap.

    Returns:
        The build report (params are what :func:`open` needs).

    Raises:
        DocumentTooLargeError: A document id or text exceeds a Lucene/Anserini limit.
        DuplicateIdError: Two documents share an id.
        EmptyCorpusError: There are no documents.
        BundleError: Bad parameters, or Anserini did not index every document.
    """
    from spacerini.backends.bm25.writer import BM25Writer

    writer = BM25Writer(
        Path(folder), threads=threads, progress=progress, analyzer=analyzer, k1=k1, b=b, memory_buffer=memory_buffer
    )
    try:
        for doc in docs_factory():
            writer.add(doc)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


def _check_doc(doc: Doc) -> None:
    size = len(doc.id.encode("utf-8", "surrogatepass"))
    if not doc.id:
        raise DocumentTooLargeError("a document has an empty id: Lucene cannot index it")
    if size > MAX_ID_BYTES:
        raise DocumentTooLargeError(
            f"document id {doc.id[:60]!r}... is {size:,} UTF-8 bytes; Lucene's limit for a term is "
            f"{MAX_ID_BYTES:,}: use shorter ids (for example a hash of the long one)"
        )
    if len(doc.text) > MAX_TEXT_CHARS:
        raise DocumentTooLargeError(
            f"document {doc.id!r} has {len(doc.text):,} characters; Anserini's JSON reader stops at "
            f"{MAX_TEXT_CHARS:,}: split it into records with ids of their own in the source, or leave it out "
            "with `spacerini index ... --optout FILE` (FILE holding its id, one per line)",
            doc_id=doc.id,
        )


def _check_counters(
    counters: Mapping[str, int], *, written: int, empty: int, lucene_dir: Path, ids: list[str]
) -> None:
    ok = (
        counters["indexed"] + counters["empty"] == written
        and counters["empty"] == empty
        and counters["max_doc"] == counters["indexed"]
        and counters["errors"] == counters["skipped"] == counters["unindexable"] == 0
    )
    if ok:
        return
    from spacerini.backends.bm25 import lucene as jl

    missing: list[str] = []
    reader = jl.open_reader(lucene_dir)
    try:
        convert = jl.autoclass("io.anserini.index.IndexReaderUtils").convertDocidToLuceneDocid
        for docid in ids:
            if convert(reader, docid) < 0:
                missing.append(docid)
                if len(missing) >= 5:
                    break
    finally:
        reader.close()
    raise BundleError(
        f"Anserini indexed {counters['indexed']:,} of {written:,} documents (empty {counters['empty']:,}, "
        f"expected empty {empty:,}; errors {counters['errors']:,}, skipped {counters['skipped']:,}, "
        f"unindexable {counters['unindexable']:,}); not indexed, for example: "
        f"{[m if len(m) <= 80 else m[:77] + '...' for m in missing]!r}. "
        "Check those documents for oversized or malformed text."
    )


def _write_sidecar(
    lucene_dir: Path, side_dir: Path, ids: list[str], *, k1: float, b: float, threads: int, progress: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    from spacerini.backends.bm25 import lucene as jl

    reader = jl.open_reader(lucene_dir)
    try:
        postings = jl.dump_postings(reader)
        lucene_stats = _lucene_field_stats(reader)
    finally:
        reader.close()
    if postings is not None:
        meta = _sidecar_from_postings(postings, side_dir, ids, k1=k1, b=b, extra=extra, log=jl.java_log())
    else:
        meta = _sidecar_from_vectors(
            lucene_dir, side_dir, ids, k1=k1, b=b, threads=threads, progress=progress, extra=extra
        )
    if (lucene_stats["doc_count"], lucene_stats["sum_total_term_freq"]) != (
        meta["doc_count"],
        meta["sum_total_term_freq"],
    ):
        raise BundleError(
            f"the sidecar disagrees with Lucene's statistics ({meta['doc_count']}/{meta['sum_total_term_freq']} vs "
            f"{lucene_stats['doc_count']}/{lucene_stats['sum_total_term_freq']}): rebuild the bundle"
        )
    return {k: meta[k] for k in ("doc_count", "sum_total_term_freq", "avgdl", "terms", "postings")}


def _sidecar_from_postings(
    postings: Any, side_dir: Path, ids: list[str], *, k1: float, b: float, extra: dict[str, Any],
    log: Callable[[float], float],
) -> dict[str, Any]:  # fmt: skip
    """Writes the sidecar from the Java helper's postings dump (rows in ``ids`` order)."""
    import numpy as np

    row_of = {docid: row for row, docid in enumerate(ids)}
    try:
        lucene_rows = np.fromiter(
            (row_of[d] if d is not None else -1 for d in postings.ids), dtype=np.int64, count=len(postings.ids)
        )
    except KeyError as exc:
        raise BundleError(f"Lucene holds a document {exc.args[0]!r} that was never written: rebuild the bundle") from None
    del row_of
    rows = lucene_rows[postings.docs] if postings.docs.size else np.zeros(0, dtype=np.int64)
    if rows.size and int(rows.min()) < 0:
        raise BundleError("Lucene holds a document without an id: rebuild the bundle")
    # Ascending rows within each term, as the scorer expects. The dump is grouped by term with
    # Lucene docids ascending, and docids map to rows in long ascending runs (each segment takes
    # the documents in stream order): a stable sort of one int64 key (term, row) merges those runs
    # (measured on Debian 100k, 2.8 M postings: 0.07-0.11 s, against 1.0-1.1 s for
    # np.lexsort((rows, tids)); the same order, as no (term, row) pair occurs twice).
    tids = np.repeat(np.arange(len(postings.terms), dtype=np.int64), postings.dfs)
    order = np.argsort(tids * max(len(ids), 1) + rows, kind="stable")
    rows, tids, tfs = rows[order].astype(np.int32), tids[order].astype(np.int32), postings.tfs[order]
    del order
    lengths = np.bincount(rows, weights=tfs, minlength=len(ids)).astype(np.int64)
    return write_sidecar(
        side_dir, k1=k1, b=b, ids=[d.encode("utf-8", "surrogatepass") for d in ids], lengths=lengths,
        terms=postings.terms, tids=tids, tfs=tfs, rows=rows, extra=extra, log=log,
    )  # fmt: skip


def _sidecar_from_vectors(
    lucene_dir: Path, side_dir: Path, ids: list[str], *, k1: float, b: float, threads: int, progress: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Writes the sidecar from term vectors read over JNI (without the helper jar: ~2 ms per doc)."""
    from tqdm.auto import tqdm

    from spacerini.backends.bm25 import lucene as jl

    writer = SidecarWriter(side_dir, k1=k1, b=b)
    reader = jl.open_reader(lucene_dir)
    try:
        vectors = jl.TermVectorReader(reader)
        chunks = [ids[i : i + 256] for i in range(0, len(ids), 256)]
        bar = tqdm(total=len(ids), desc="bm25: sidecar", unit=" docs", disable=not progress)
        for chunk, (terms, tfs, counts) in zip(
            chunks, _ordered_map(vectors.vectors, chunks, threads), strict=True
        ):
            writer.add_chunk(chunk, terms, tfs, counts)
            bar.update(len(chunk))
        bar.close()
    finally:
        reader.close()
    return writer.write(extra=extra, log=jl.java_log())


def _lucene_field_stats(reader: Any) -> dict[str, int]:
    """Lucene's own collection statistics of the ``contents`` field."""
    from spacerini.backends.bm25 import lucene as jl

    searcher = jl.autoclass("org.apache.lucene.search.IndexSearcher")(reader)
    stats = searcher.collectionStatistics("contents")
    if stats is None:
        return {"doc_count": 0, "sum_total_term_freq": 0}
    return {"doc_count": int(stats.docCount()), "sum_total_term_freq": int(stats.sumTotalTermFreq())}


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _ordered_map(fn: Callable[[_T], _R], items: Sequence[_T], threads: int) -> Iterator[_R]:
    """Maps ``fn`` over ``items`` with ``threads`` threads, yielding results in order.

    Worker threads detach from the JVM when they finish (pyjnius attaches them on first use).
    """
    if threads <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    results: dict[int, Any] = {}
    errors: list[BaseException] = []
    cond = threading.Condition()
    tasks: queue.Queue[int | None] = queue.Queue()
    for i in range(len(items)):
        tasks.put(i)
    workers = min(threads, len(items))
    for _ in range(workers):
        tasks.put(None)

    def work() -> None:
        try:
            while True:
                i = tasks.get()
                if i is None or errors:
                    return
                try:
                    value: Any = fn(items[i])
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    with cond:
                        errors.append(exc)
                        cond.notify_all()
                    return
                with cond:
                    results[i] = value
                    cond.notify_all()
        finally:
            _detach()

    pool = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in pool:
        t.start()
    try:
        for i in range(len(items)):
            with cond:
                while i not in results and not errors:
                    cond.wait()
                if errors:
                    raise errors[0]
                value = results.pop(i)
            yield value
    finally:
        errors.append(StopIteration())  # stops idle workers early if the caller bails out
        for t in pool:
            t.join()


def _detach() -> None:
    import sys

    jnius = sys.modules.get("jnius")
    if jnius is not None:
        try:
            jnius.detach()
        except Exception:  # noqa: BLE001 - never attached
            pass


# -- search --------------------------------------------------------------------------------------------
def open(folder: Path, report: Mapping[str, Any], *, scorer: str = "exact") -> BM25Searcher:  # noqa: A001
    """Opens what :func:`build` wrote.

    Args:
        folder: The bundle folder (holding ``lucene/`` and ``bm25/``).
        report: The backend's manifest entry (``BuildReport.to_dict()``).
        scorer: ``"exact"`` (the numpy sidecar) or ``"lucene"`` (Anserini's ``SimpleSearcher``).

    Raises:
        BundleCorruptError: Files are missing.
    """
    return BM25Searcher(folder, report, scorer=scorer)


class BM25Searcher:
    """BM25 search with Anserini's rankings.

    Args:
        folder: The bundle folder (holding ``lucene/`` and ``bm25/``).
        report: The backend's manifest entry; its ``params`` name the analyzer, k1 and b.
        scorer: ``"exact"`` or ``"lucene"``.

    Raises:
        BundleCorruptError: The index or the sidecar is missing.
        BundleError: Unknown scorer.
    """

    def __init__(self, folder: Path, report: Mapping[str, Any], *, scorer: str = "exact") -> None:
        from spacerini.backends.bm25 import lucene as jl

        folder = Path(folder)
        params = dict(report.get("params") or {})
        self.analyzer_name: str = str(params.get("analyzer", "en"))
        self.k1 = float(params.get("k1", 0.9))
        self.b = float(params.get("b", 0.4))
        self.lucene_dir = folder
        self.sidecar_dir = folder / SIDECAR_DIR
        if scorer not in ("exact", "lucene"):
            raise BundleError(f"unknown scorer {scorer!r}: use 'exact' or 'lucene'")
        self.scorer = scorer
        self._pretokenized = self.analyzer_name == "code"
        java_analyzer = jl.make_analyzer(
            "en" if self._pretokenized else self.analyzer_name, pretokenized=self._pretokenized
        )
        self._java = jl.JavaAnalyzer(java_analyzer)
        # Snippet matches come from the analyzer's own token offsets, found in Java (outside the
        # GIL); the code analyzer rewrites text before Lucene sees it, so it keeps the word path.
        self._matcher: jl.TokenMatcher | None = None
        if not self._pretokenized:
            try:
                self._matcher = jl.TokenMatcher(java_analyzer)
            except Exception:  # noqa: BLE001 - no helper jar: the Python word path is used
                logger.info("Spacerini's helper jar is not loaded; snippets use the Python word path")
        self._batch = jl.BatchAnalyzer(self._java)
        self._exact: ExactScorer | None = None
        self._lucene: Any = None
        if scorer == "exact":
            if not (self.sidecar_dir / "meta.json").is_file():
                raise BundleCorruptError(
                    f"{self.sidecar_dir}/meta.json is missing: rebuild the bundle's bm25 index"
                )
            try:
                self._exact = ExactScorer(self.sidecar_dir)
            except (OSError, ValueError, KeyError) as exc:
                raise BundleCorruptError(
                    f"cannot read the bm25 sidecar in {self.sidecar_dir}: {exc}"
                ) from exc
            if (self._exact.meta.get("k1"), self._exact.meta.get("b")) != (self.k1, self.b):
                raise BundleCorruptError("the bm25 sidecar was built with other k1/b than the manifest says")
        else:
            if not self.lucene_dir.is_dir():
                raise BundleCorruptError(f"{self.lucene_dir} is missing: rebuild the bundle's bm25 index")
            simple = jl.autoclass("io.anserini.search.SimpleSearcher")(str(self.lucene_dir))
            simple.set_bm25(self.k1, self.b)
            simple.set_analyzer(
                jl.make_analyzer(
                    "en" if self._pretokenized else self.analyzer_name, pretokenized=self._pretokenized
                )
            )
            self._lucene = simple
        self._query_cache: dict[str, tuple[frozenset[str], _SnippetKeys | None]] = {}
        self._word_cache: dict[str, list[str]] = {}
        self._last_analyzed: tuple[str | None, tuple[str, ...]] = (None, ())

    # -- analysis ------------------------------------------------------------------------------------
    def _prepare(self, text: str) -> str:
        return code_tokens(text) if self._pretokenized else text

    def analyze(self, text: str) -> list[str]:
        """Returns the terms of ``text`` after the index's analysis (what a query searches for)."""
        last = self._last_analyzed  # a search page analyzes its query twice: to rank, to cut snippets
        if last[0] == text:
            return list(last[1])
        terms = self._java.analyze(self._prepare(text))
        self._last_analyzed = (text, tuple(terms))
        return terms

    def _term_counts(self, query: str, qid: str | int | None = None) -> list[tuple[str, int]]:
        return self._count_terms(self.analyze(query), qid)

    @staticmethod
    def _count_terms(terms: list[str], qid: str | int | None = None) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for term in terms:  # a plain dict: several times cheaper than Counter for a short query
            counts[term] = counts.get(term, 0) + 1
        if len(counts) > MAX_QUERY_TERMS:
            who = "the query" if qid is None else f"query {qid!r}"  # a batch names which one
            raise QueryError(
                f"{who} has {len(counts):,} distinct terms after analysis; Lucene allows at most "
                f"{MAX_QUERY_TERMS:,}: shorten it",
                qid=qid,
            )
        return list(counts.items())

    # -- search --------------------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, offset: int = 0) -> list[Hit]:
        """Returns hits ``offset+1 .. offset+k`` for ``query`` (bag of words; Lucene syntax is text).

        Raises:
            QueryError: The query is empty, ``k``/``offset`` are invalid, it has too many terms, or it
                holds a lone surrogate.
        """
        if not isinstance(query, str) or not query.strip():
            raise QueryError("the query is empty: type some words to search for")
        if k < 0 or offset < 0:
            raise QueryError(f"k and offset must be >= 0, got k={k}, offset={offset}")
        check_text(query)
        if k == 0:
            return []
        return self._ranked(query, offset + k, offset)

    def _ranked(self, query: str, n: int, skip: int = 0) -> list[Hit]:
        if self._exact is not None:
            return self._ranked_many([query], n, skip)[0]
        return self._lucene_ranked(query, n)[skip:]

    def _ranked_many(self, queries: list[str], n: int, skip: int = 0) -> list[list[Hit]]:
        if self._exact is None:
            return [self._lucene_ranked(q, n)[skip:] for q in queries]
        return [_make_hits(ids[skip:], scores[skip:], skip) for ids, scores in self._pairs_many(queries, n)]

    def _pairs_many(self, queries: list[str], n: int) -> list[tuple[list[str], list[float]]]:
        """Analyzes (one JNI call) and ranks ``queries`` on the sidecar: per query (ids, scores)."""
        exact = self._exact
        if exact is None:
            raise BundleError("the searcher is closed")
        return exact.rank_many(self._analyze_many(queries), n)

    def _analyze_many(
        self, queries: list[str], qids: Sequence[str | int] | None = None
    ) -> list[list[tuple[str, int]]]:
        """Each query's (term, count) pairs, analyzed in one JNI call (``qids``: what an error names)."""
        if len(queries) == 1:
            term_lists = [self.analyze(queries[0])]
        else:
            term_lists = self._batch.analyze_many([self._prepare(q) for q in queries])
        count = self._count_terms
        if qids is None:
            return [count(terms) for terms in term_lists]
        return [count(terms, qid) for terms, qid in zip(term_lists, qids, strict=True)]

    def _lucene_ranked(self, query: str, n: int, qid: str | int | None = None) -> list[Hit]:
        import jnius

        if self._lucene is None:
            raise BundleError("the searcher is closed")
        self._term_counts(query, qid)  # same QueryError as the exact scorer
        try:
            results = self._lucene.search(self._prepare(query), n)
        except jnius.JavaException as exc:
            raise QueryError(f"Lucene rejected the query: {exc}") from exc
        return [
            Hit(docid=str(r.docid), score=float(r.score), rank=i + 1, backend=NAME)
            for i, r in enumerate(results)
        ]

    def batch_search(
        self, queries: Sequence[tuple[str, str]], *, k: int = 1000, threads: int = 1
    ) -> dict[str, list[Hit]]:
        """Searches many queries; returns ``{qid: hits}`` (queries with no terms map to ``[]``).

        Args:
            queries: (qid, text) pairs.
            k: Hits per query.
            threads: Worker threads that analyze (Java) and rank (numpy) chunks of queries; both
                release the GIL for most of their work.

        Raises:
            QueryError: A query is empty, has too many terms or holds a lone surrogate; its ``qid``
                attribute names it.
        """
        _check_batch(queries, k)
        if self._exact is None:
            out: dict[str, list[Hit]] = {}
            chunk = max(1, min(128, len(queries) // (threads * 4) or 1))
            batches = [list(queries[i : i + chunk]) for i in range(0, len(queries), chunk)]
            ranked = _ordered_map(lambda qs: [self._lucene_ranked(t, k, qid) for qid, t in qs], batches, threads)
            for batch, hits in zip(batches, ranked, strict=True):
                for (qid, _), result in zip(batch, hits, strict=True):
                    out[qid] = result
            return out
        with _gc_paused():
            return {
                qid: _make_hits(ids, scores, 0) for qid, ids, scores in self._iter_ranked(queries, k, threads)
            }

    def batch_search_pairs(
        self, queries: Sequence[tuple[str, str]], *, k: int = 1000, threads: int = 1
    ) -> dict[str, list[tuple[str, float]]]:
        """Like :meth:`batch_search` but returns ``(docid, score)`` pairs in rank order.

        Building a :class:`Hit` per result costs more than scoring when ``k`` is large; TREC runs
        (``spacerini search --queries``) use :meth:`batch_search_arrays`, which builds neither.

        Raises:
            QueryError: A query is empty, has too many terms or holds a lone surrogate; its ``qid``
                attribute names it.
        """
        _check_batch(queries, k)
        if self._exact is None:
            hits = self.batch_search(queries, k=k, threads=threads)
            return {q: [(h.docid, h.score) for h in hs] for q, hs in hits.items()}
        with _gc_paused():
            return self.batch_search_arrays(queries, k=k, threads=threads).pairs()

    def batch_search_arrays(
        self, queries: Sequence[tuple[str, str]], *, k: int = 1000, threads: int = 1
    ) -> RankedBatch:
        """Searches many queries; returns all hits as arrays (:class:`RankedBatch`).

        No Python object is built per hit: ids are looked up only when asked for (the fastest
        path; ``spacerini search --queries`` writes its TREC run from it).

        Args:
            queries: (qid, text) pairs.
            k: Hits per query.
            threads: Worker threads that analyze (Java) and rank (the kernel, outside the GIL)
                chunks of queries.

        Raises:
            QueryError: A query is empty, has too many terms or holds a lone surrogate; its ``qid``
                attribute names it.
            BundleError: The searcher is closed, or it searches through Lucene (``scorer="lucene"``).
        """
        from spacerini.backends.bm25.scorer import _concat_ranked

        _check_batch(queries, k)
        exact = self._exact
        if exact is None:
            raise BundleError("batch_search_arrays needs the sidecar scorer (open with scorer='exact')")
        qids = tuple(q for q, _ in queries)
        if not queries or k == 0:
            import numpy as np

            return RankedBatch(
                qids, np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(len(qids) + 1, np.int64), exact.docids
            )
        texts = [t for _, t in queries]
        if threads > 1 and parallel_threads(threads) > 1:
            # Analyzed here (a JNI call per chunk), then ranked on numba's threads: Python threads
            # gained little on a small index, where a batch takes a few milliseconds and their
            # start and the Python around each kernel call are much of it (Python stdlib, k=10:
            # 2 threads as fast as 1).
            step = self.BATCH_CHUNK
            analyzed = [
                terms
                for i in range(0, len(texts), step)
                for terms in self._analyze_many(texts[i : i + step], qids[i : i + step])
            ]
            rows, scores, bounds = exact.rank_arrays(analyzed, k, threads=threads)
            return RankedBatch(qids, rows, scores, bounds, exact.docids)
        # One chunk per thread at most: each chunk costs a JNI call and a kernel call per sidecar.
        chunk = max(1, min(self.BATCH_CHUNK, -(-len(texts) // max(1, threads))))
        starts = list(range(0, len(texts), chunk))

        def rank(start: int) -> tuple[Any, Any, Any]:
            end = start + chunk
            return exact.rank_arrays(self._analyze_many(texts[start:end], qids[start:end]), k)

        parts = list(_ordered_map(rank, starts, threads))
        rows, scores, bounds = parts[0] if len(parts) == 1 else _concat_ranked(parts)
        return RankedBatch(qids, rows, scores, bounds, exact.docids)

    #: Queries analyzed (one JNI call) and ranked (one kernel call per sidecar) together.
    BATCH_CHUNK = 512

    @property
    def ranks_arrays(self) -> bool:
        """Whether :meth:`batch_search_arrays` is available (the sidecar ranks in this process)."""
        return self._exact is not None

    def _iter_ranked(
        self, queries: Sequence[tuple[str, str]], k: int, threads: int
    ) -> Iterator[tuple[str, list[str], list[float]]]:
        """Yields (qid, ids, scores) in order (see :meth:`batch_search_arrays`)."""
        ranked = self.batch_search_arrays(queries, k=k, threads=threads)
        ids = ranked.docids()
        scores = ranked.scores.tolist()
        cuts = ranked.bounds.tolist()
        for i, qid in enumerate(ranked.qids):
            a, b = cuts[i], cuts[i + 1]
            yield qid, ids[a:b], scores[a:b]

    # -- snippets ------------------------------------------------------------------------------------
    #: :meth:`snippet` takes ``redact=``: it redacts only the window it shows
    #: (:mod:`spacerini.backends.bm25.snippets`), and the bundle passes it the document's own text.
    redacts_snippet_windows = True

    def snippet(self, query: str, text: str, *, width: int = 240, redact: Any = None) -> str:
        """Returns an HTML-escaped window of ``text`` around the densest run of query-term matches.

        Matches are wrapped in ``<mark>``. With the helper jar (the usual case), a match is a token
        of the index's analyzer whose term is a query term, found in Java with its exact offsets.
        Otherwise (and for the ``code`` analyzer) a ``\\w+`` word matches when one of its analyzed
        terms is a query term; words are analyzed once per searcher (a bounded cache), and only
        words that could analyze to a query term are looked at. Either way at most
        ``SNIPPET_SCAN_CHARS`` characters are scanned.

        Args:
            query: The query.
            text: The document text.
            width: Target window size in characters.
            redact: ``redact(text, lo, hi)``, the window ``text[lo:hi]`` with its PII redacted
                (:func:`spacerini.display.redacted_window`): the snippet is cut as from the
                redacted text, and only the window it shows is redacted.
        """
        from spacerini.backends.bm25 import snippets

        if redact is not None:
            return snippets.redacted_snippet(self, query, text, width=width, redact=redact)
        return snippets.snippet(self, query, text, width=width)

    def _snippet_matches(
        self, text: str, qterms: frozenset[str], keys: _SnippetKeys | None
    ) -> list[tuple[int, int]]:
        """The (start, end) of every match of a query term in ``text`` (see :meth:`snippet`)."""
        # The shortcuts rely on every matching token beginning with a key prefix, which holds for
        # English (Porter rewrites only the end of a word); other languages' filters may rewrite
        # its start (German "oe" -> "o"), so their text is analyzed whole.
        if keys is not None and self._pretokenized and text.isascii():
            return self._code_matches(text, qterms, keys)
        exact = keys is not None and self._exact_prefixes
        spans = self._matcher.spans(text, qterms, keys.prefixes if exact else None) if self._matcher is not None else None
        if spans is not None:
            return spans
        words = set(_WORD.findall(text))  # distinct words, found in C
        if exact:
            # Only words holding a key can analyze to a query term: one regex pass over the
            # distinct words, one per line, picks them in C.
            words = set(keys.lines.findall("\n".join(words)))
        terms_of = self._word_terms(words)
        hit_words = {w for w in words if not qterms.isdisjoint(terms_of[w])}
        if not hit_words:
            return []
        # A whole \w+ word in hit_words: one C-level scan, a set lookup per word (cheaper than
        # compiling an alternation per document).
        return [m.span() for m in _WORD.finditer(text) if m.group() in hit_words]

    def _code_matches(self, text: str, qterms: frozenset[str], keys: _SnippetKeys) -> list[tuple[int, int]]:
        """:meth:`_snippet_matches` for the code analyzer on ASCII text, found from where a term
        occurs. The analyzer's terms are a word lowercased and its parts lowercased, so a word
        gives a term only if it holds the term whole (ignoring case): its keys (``keys.anywhere``)
        find every candidate word, and only those are analyzed, where the general path analyzes
        and walks every word of the text. On ASCII text ``\\w`` is ``[A-Za-z0-9_]``, so a word's
        start is found by stepping back over those (however long the word)."""
        from spacerini.backends.bm25.snippets import _word_start

        found: list[tuple[tuple[int, int], str]] = []
        taken = -1
        for occurrence in keys.anywhere.finditer(text):
            at = occurrence.start()
            if at < taken:
                continue  # in the word just taken
            word = _WORD.match(text, _word_start(text, at, bounded=False))
            if word is None:  # pragma: no cover - a key is word characters
                continue
            taken = word.end()
            found.append((word.span(), word.group()))
        if not found:
            return []
        terms_of = self._word_terms({word for _, word in found})
        return [span for span, word in found if not qterms.isdisjoint(terms_of[word])]

    @property
    def _exact_prefixes(self) -> bool:
        """Whether every token that analyzes to a query term begins with the term's key prefix
        (:meth:`_snippet_query`): true of the English analyzer only."""
        return self.analyzer_name == "en"

    def _first_match(
        self, text: str, qterms: frozenset[str], keys: _SnippetKeys | None, *, start: int
    ) -> int | None:
        """Where the first match of a query term at or after ``start`` begins, or ``None`` when
        there is none in the :data:`SNIPPET_RESCUE_CHARS` characters from there.

        The text is analyzed whole (no key prefixes), a chunk at a time cut at blanks, which no
        token crosses (or inside a longer run: CJK text has no blanks), so the cost follows the
        distance to the match, not the document's size.
        """
        from spacerini.backends.bm25.lucene import first_in_chunks

        def first_in(chunk: str) -> int | None:
            spans = self._snippet_matches(chunk, qterms, keys)
            return spans[0][0] if spans else None

        return first_in_chunks(text, start, SNIPPET_RESCUE_CHARS, first_in)

    def _first_matching_word(
        self, text: str, qterms: frozenset[str], keys: _SnippetKeys, *, start: int = 0
    ) -> int | None:
        """Where the first ``\\w+`` word that begins with a key prefix and analyzes to a query term
        starts (looking at :data:`SNIPPET_RESCUE_WORDS` such words per prefix at most), or ``None``.
        An ASCII document with the Java matcher gets its first matching token instead (what the
        snippet's own matching finds), looking at :data:`SNIPPET_RESCUE_CHARS` from ``start`` at
        most (the first place a key prefix occurs: no match can come before it).

        ``str.find`` on the lowercased text finds the prefixes (a regex over a long document costs
        ~50x more); an occurrence inside a word is skipped; words are analyzed 16 at a time
        (cached), so a real match near the start costs little.
        """
        if self._matcher is not None and self._exact_prefixes and text.isascii():
            # In Java: the runs of the text that hold a prefix, analyzed until the first match.
            return self._matcher.first(text, qterms, keys.prefixes, start=start, limit=SNIPPET_RESCUE_CHARS)
        low = text.lower()
        if len(low) != len(text):  # a character whose lowercase is longer would shift offsets
            return None
        best: int | None = None
        for prefix in keys.prefixes:
            hit: int | None = None
            start = taken = looked = 0
            batch: list[tuple[int, str]] = []
            while hit is None and taken < SNIPPET_RESCUE_WORDS and looked < 16 * SNIPPET_RESCUE_WORDS:
                at = low.find(prefix, start)
                if at < 0 or (best is not None and at > best):
                    break
                start, looked = at + 1, looked + 1
                if at and (low[at - 1].isalnum() or low[at - 1] == "_"):
                    continue  # inside a word
                word = _WORD.match(text, at)
                if word is None:
                    continue
                batch.append((at, word.group()))
                taken += 1
                if len(batch) == 16:
                    hit, batch = self._first_hit(batch, qterms), []
            if hit is None and batch:
                hit = self._first_hit(batch, qterms)
            if hit is not None and (best is None or hit < best):
                best = hit
        return best

    def _first_hit(self, words: list[tuple[int, str]], qterms: frozenset[str]) -> int | None:
        terms_of = self._word_terms({word for _, word in words})
        return next((at for at, word in words if not qterms.isdisjoint(terms_of[word])), None)

    #: Distinct words whose analysis is kept for snippets (the cache empties when full).
    WORD_CACHE = 20_000

    def _snippet_query(self, query: str) -> tuple[frozenset[str], _SnippetKeys | None]:
        """The query's terms, and patterns finding the words that could analyze to one of them.

        English analysis lowercases and strips suffixes, so a word that analyzes to a term holds
        the term's first characters: two of them (three for stems of four or more, whose Porter
        steps only rewrite the last character). Other languages' filters may also rewrite a
        word's start (:attr:`_exact_prefixes`), so there the keys only say where to look first.
        The code analyzer's terms are lowercased words and parts of words, unstemmed, so a word
        that gives one holds the whole term: its keys are the terms.
        """
        cached = self._query_cache.get(query)
        if cached is not None:
            return cached
        qterms = frozenset(self.analyze(query))
        keys = None
        if qterms:
            if self._pretokenized:
                prefix = set(qterms)
            else:
                prefix = {t[:3] if self.analyzer_name == "en" and len(t) >= 4 else t[:2] for t in qterms}
            alternatives = "|".join(sorted(map(re.escape, prefix)))
            keys = _SnippetKeys(
                prefixes=tuple(sorted({p.lower() for p in prefix})),
                anywhere=re.compile(alternatives, re.IGNORECASE),
            )
        if len(self._query_cache) >= 128:
            self._query_cache.clear()
        self._query_cache[query] = (qterms, keys)
        return qterms, keys

    def _word_terms(self, words: set[str]) -> dict[str, list[str]]:
        """Each word's analyzed terms, from the cache or from one JNI call for the missing ones."""
        cache = self._word_cache
        missing = sorted(w for w in words if w not in cache)
        if missing:
            fresh = self._analyze_words(missing)
            if len(cache) + len(fresh) > self.WORD_CACHE:
                cache.clear()
            cache.update(fresh)
        return {w: cache.get(w, ()) for w in words}

    def _analyze_words(self, words: list[str]) -> dict[str, list[str]]:
        if self._pretokenized:
            return {
                w: self._java.analyze(code_tokens(w)) if len(w) > 255 else code_tokens(w).split()
                for w in words
            }
        return dict(zip(words, self._batch.analyze_many(words), strict=True))

    def close(self) -> None:
        """Releases the mmapped sidecar and the Lucene searcher."""
        self._exact = None
        if self._lucene is not None:
            try:
                self._lucene.close()
            finally:
                self._lucene = None

    def __enter__(self) -> BM25Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_GC_LOCK = threading.Lock()
_GC_PAUSES = [0, False]  # [batches building results now, whether the collector was on before]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector while a batch builds its results.

    A batch at k=1000 creates a million tuples or hits that all survive; each 700 allocations
    start a young collection, and the survivors soon trigger full ones that walk every object
    of the process, so collection costs more than building (measured: about half the time of
    ``batch_search_pairs`` at k=1000). The results hold only strings and floats, which form no
    cycles, so nothing is left for the collector to find. Nested or concurrent batches share one
    pause; the collector is turned back on by the last one, and only if it was on.
    """
    with _GC_LOCK:
        if _GC_PAUSES[0] == 0:
            _GC_PAUSES[1] = gc.isenabled()
            gc.disable()
        _GC_PAUSES[0] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_PAUSES[0] -= 1
            if _GC_PAUSES[0] == 0 and _GC_PAUSES[1]:
                gc.enable()


_HIT_SLOTS = ("docid", "score", "rank", "snippet", "fields", "meta", "backend")
_HIT_DEFAULT = Hit(docid="", score=0.0, rank=0, backend=NAME)
_HIT_FAST = getattr(Hit, "__slots__", None) == _HIT_SLOTS and not hasattr(Hit, "__post_init__")


def _make_hits(ids: list[str], scores: list[float], skip: int) -> list[Hit]:
    """Builds ``Hit(docid, score, rank=skip + i + 1, backend="bm25")`` objects, ~3x faster than ``Hit(...)``.

    ``Hit`` is a frozen dataclass with slots: its ``__init__`` goes through ``object.__setattr__``
    per field, which dominates when a batch asks for 1000 hits per query. The slot descriptors set
    the same fields directly (with the same defaults), and the result compares equal to ``Hit(...)``.
    """
    if not _HIT_FAST:  # records.Hit changed shape: the slow, always-correct path
        return [
            Hit(docid=d, score=s, rank=skip + i, backend=NAME)
            for i, (d, s) in enumerate(zip(ids, scores, strict=True), 1)
        ]
    set_docid, set_score, set_rank, set_snippet, set_fields, set_meta, set_backend = (
        getattr(Hit, name).__set__ for name in _HIT_SLOTS
    )
    new = object.__new__
    snippet, fields, meta = _HIT_DEFAULT.snippet, _HIT_DEFAULT.fields, _HIT_DEFAULT.meta
    out = []
    append = out.append
    for rank, (docid, score) in enumerate(zip(ids, scores, strict=True), skip + 1):
        hit = new(Hit)
        set_docid(hit, docid)
        set_score(hit, score)
        set_rank(hit, rank)
        set_snippet(hit, snippet)
        set_fields(hit, fields)
        set_meta(hit, meta)
        set_backend(hit, NAME)
        append(hit)
    return out


# -- TREC runs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankedBatch:
    """The hits of many queries as arrays (what :meth:`BM25Searcher.batch_search_arrays` returns).

    Attributes:
        qids: The query ids, in the order given.
        rows: All queries' hits concatenated, best first within each query (int64 row numbers).
        scores: Their tie-adjusted float32 scores (Anserini's).
        bounds: Query ``i``'s hits are ``rows[bounds[i]:bounds[i + 1]]`` (int64, ``len(qids)+1``).
        resolve: Turns row numbers into collection ids.
    """

    qids: tuple[str, ...]
    rows: Any
    scores: Any
    bounds: Any
    resolve: Callable[[Any], list[str]]

    def docids(self) -> list[str]:
        """The collection id of every hit (in ``rows`` order)."""
        return self.resolve(self.rows) if len(self.rows) else []

    def pairs(self) -> dict[str, list[tuple[str, float]]]:
        """``{qid: [(docid, score), ...]}``, as :meth:`BM25Searcher.batch_search_pairs` returns."""
        ids = self.docids()
        scores = self.scores.tolist()
        cuts = self.bounds.tolist()
        return {
            qid: list(zip(ids[cuts[i] : cuts[i + 1]], scores[cuts[i] : cuts[i + 1]], strict=True))
            for i, qid in enumerate(self.qids)
        }

    def trec_lines(self, *, tag: str = "Anserini") -> Iterator[str]:
        """TREC run lines as :func:`spacerini.eval.trec_lines` writes them (``%s Q0 %s %d %f %s``)."""
        ids = self.docids()
        scores = self.scores.tolist()
        cuts = self.bounds.tolist()
        for i, qid in enumerate(self.qids):
            a, b = cuts[i], cuts[i + 1]
            head = f"{qid} Q0 "
            tail = f" {tag}"
            yield from (
                f"{head}{d} {r} {s:f}{tail}" for r, (d, s) in enumerate(zip(ids[a:b], scores[a:b], strict=True), 1)
            )


def trec_lines(
    results: Mapping[str, Sequence[Hit] | Sequence[tuple[str, float]]], *, tag: str = "Anserini"
) -> Iterable[str]:
    """:func:`spacerini.eval.trec_lines` with Anserini's default run tag (one writer for both)."""
    from spacerini.eval import trec_lines as lines

    return lines(results, tag=tag)


# -- shards ------------------------------------------------------------------------------------------
def shard_stats(folder: Path, report: Mapping[str, Any]) -> dict[str, Any]:
    """What one shard contributes to the collection statistics BM25 reads, from its sidecar.

    Args:
        folder: The shard's bm25 folder (what :func:`build` wrote).
        report: The shard's manifest entry (``BuildReport.to_dict()``).

    Returns:
        ``analyzer``, ``k1``, ``b`` (the report's params); ``rows`` (documents written),
        ``doc_count`` (documents with at least one term: Lucene's ``docCount``),
        ``sum_total_term_freq`` and ``sum_doc_freq`` (Lucene's field statistics), ``terms``
        (vocabulary size) and ``vocabulary``, a
        :class:`~spacerini.backends.bm25.scorer.Vocabulary` (term hashes, per-term document
        frequencies and the terms' bytes, memory-mapped) that :func:`open_shards` sums by term.

    Raises:
        BundleCorruptError: The sidecar is missing or disagrees with the report.
    """
    scorer, params = _open_shard_scorer(Path(folder), report)
    vocab = scorer.vocabulary()
    return {
        **params,
        "rows": scorer.rows,
        "doc_count": scorer.doc_count,
        "sum_total_term_freq": int(scorer.meta["sum_total_term_freq"]),
        "sum_doc_freq": int(scorer.meta["postings"]),
        "terms": int(vocab.doc_freqs.size),
        "vocabulary": vocab,
    }


def _open_shard_scorer(folder: Path, report: Mapping[str, Any]) -> tuple[ExactScorer, dict[str, Any]]:
    """Opens a shard's sidecar; returns it with the (analyzer, k1, b) it was built with."""
    params = dict(report.get("params") or {})
    wanted = {
        "analyzer": str(params.get("analyzer", "en")),
        "k1": float(params.get("k1", 0.9)),
        "b": float(params.get("b", 0.4)),
    }
    side = folder / SIDECAR_DIR
    if not (side / "meta.json").is_file():
        raise BundleCorruptError(f"{side}/meta.json is missing: rebuild the bundle's bm25 index")
    try:
        scorer = ExactScorer(side)
    except (OSError, ValueError, KeyError) as exc:
        raise BundleCorruptError(f"cannot read the bm25 sidecar in {side}: {exc}") from exc
    meta = scorer.meta
    built = {"analyzer": str(meta.get("analyzer", "en")), "k1": meta.get("k1"), "b": meta.get("b")}
    if built != wanted:
        raise BundleCorruptError(
            f"the bm25 sidecar in {side} was built with {built}, its manifest says {wanted}"
        )
    return scorer, wanted


def open_shards(
    folders: Sequence[Path], reports: Sequence[Mapping[str, Any]], *, scorer: str = "exact"
) -> ShardedBM25Searcher:
    """Opens the bm25 folders of a bundle's shards as one searcher with the collection's statistics.

    Every answer equals that of one index built over all the shards' documents, in shard order
    (same docids, order and scores): see :class:`ShardedBM25Searcher`.

    Args:
        folders: Each shard's bm25 folder (what :func:`build` wrote), in shard order.
        reports: Each shard's manifest entry (``BuildReport.to_dict()``), in the same order.
        scorer: Only ``"exact"``: Anserini's own searcher cannot score a shard with statistics
            other than its index's.

    Raises:
        BundleCorruptError: A shard is missing or unreadable, the shards were built with different
            analyzers or BM25 parameters, or two shards hold the same document id.
        BundleError: No shards, a different number of folders and reports, or another scorer.
    """
    return ShardedBM25Searcher(folders, reports, scorer=scorer)


class ShardedBM25Searcher(BM25Searcher):
    """BM25 search over shards, with the answers of one index over all their documents.

    Why the answers are the same: Lucene's BM25 reads ``docCount``, ``sumTotalTermFreq``
    (through avgdl) and each term's ``docFreq`` from the whole index, while a document's length,
    norm byte and term frequencies do not depend on the split. The shards' counts are summed once
    here (document frequencies by term:
    :func:`~spacerini.backends.bm25.scorer.merge_doc_freqs`), and each shard's scorer recomputes
    its float32 per-posting factors with them
    (:meth:`~spacerini.backends.bm25.scorer.ExactScorer.use_global_stats`), so every per-term
    score is the single index's, bit for bit. A batch of queries then gathers each term's postings
    from every shard and ranks them together, as one sidecar ranks its own
    (:class:`~spacerini.backends.bm25.scorer.ShardedScorer`): one sum per document, one sort by
    (raw score, id byte order over all shards), one ``ScoreTiesAdjusterReranker`` pass over the
    merged list. Ranking the shards together rather than merging per-shard top lists costs about
    what one index costs: no shard computes ``k`` hits that the merge throws away.

    Analysis and snippets are :class:`BM25Searcher`'s, with the first shard's analyzer (all
    shards share one); ``batch_search(threads=...)`` ranks chunks of queries in worker threads.

    Args:
        folders: Each shard's bm25 folder.
        reports: Each shard's manifest entry.
        scorer: ``"exact"``.

    Raises:
        BundleCorruptError: See :func:`open_shards`.
        BundleError: See :func:`open_shards`.
    """

    def __init__(
        self, folders: Sequence[Path], reports: Sequence[Mapping[str, Any]], *, scorer: str = "exact"
    ) -> None:
        from spacerini.backends.bm25 import lucene as jl
        from spacerini.backends.bm25.scorer import ShardedScorer, merge_doc_freqs

        folders = [Path(f) for f in folders]
        reports = list(reports)
        if not folders:
            raise BundleError("open_shards needs at least one shard")
        if len(folders) != len(reports):
            raise BundleError(f"{len(folders)} shard folders but {len(reports)} reports")
        if scorer != "exact":
            raise BundleError(f"sharded bm25 search needs scorer='exact', got {scorer!r}")
        opened = [_open_shard_scorer(f, r) for f, r in zip(folders, reports, strict=True)]
        for (_, params), folder in zip(opened[1:], folders[1:], strict=True):
            if params != opened[0][1]:
                raise BundleCorruptError(
                    f"the bm25 shards were built differently: {folders[0]} with {opened[0][1]}, "
                    f"{folder} with {params}; rebuild them with one analyzer, k1 and b"
                )
        shards = [s for s, _ in opened]
        super().__init__(folders[0], reports[0], scorer="exact")
        self.shard_dirs = folders
        self.doc_count = sum(s.doc_count for s in shards)
        self.sum_total_term_freq = sum(int(s.meta["sum_total_term_freq"]) for s in shards)
        log = jl.java_log()  # Lucene's idf uses Java's Math.log
        for shard, dfs in zip(shards, merge_doc_freqs([s.vocabulary() for s in shards]), strict=True):
            shard.use_global_stats(
                doc_count=self.doc_count, sum_total_term_freq=self.sum_total_term_freq, doc_freqs=dfs, log=log
            )
        try:
            # The ranking interface BM25Searcher uses (rank_many, docids, rows) over all shards.
            self._exact = ShardedScorer(shards)  # type: ignore[assignment]
        except ValueError as exc:
            self.close()
            raise BundleCorruptError(
                f"cannot search the bm25 shards together: {exc}; ids must be unique"
            ) from exc

    def __enter__(self) -> ShardedBM25Searcher:
        return self
