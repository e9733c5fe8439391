"""Streaming BM25 build: documents go to Lucene as they are read, not after the docstore is written.

:class:`BM25Writer` takes documents one at a time (:meth:`~BM25Writer.add`), so the bundle
builder can feed Lucene while it reads the corpus and writes the docstore: Lucene's indexing
threads and the reading run at once, and nothing is written twice or parsed twice.

How documents reach Lucene, and why:

* **A pipe, not JSON files.** Each document goes into an OS pipe as two lengths and the UTF-8
  bytes of its id and contents; Spacerini's Java helper ``io.spacerini.StreamIndexer`` (in
  ``spacerini/jars``) reads the other end in this process's JVM and indexes with ``threads``
  workers. The earlier path wrote JSON-lines shards, which ``IndexCollection`` then parsed again,
  after a second pass over the docstore; a pipe costs a ``write`` per 256 KiB and no JSON at all.
  The pipe is bounded, so memory stays flat: when Lucene is behind, ``add`` waits.
* **The same index.** The helper builds the document that Anserini 1.7.1's ``IndexCollection``
  (``JsonCollection``, ``DefaultLuceneDocumentGenerator``, ``-storePositions -storeDocvectors
  -storeRaw``) builds for ``{"id", "contents"}``, raw JSON included, with the same analyzer and
  ``IndexWriter`` settings; ``tests/backends/test_bm25_writer.py`` compares the two indexes.
* **Faster than ``IndexCollection`` on the same threads.** Its workers share one queue (Anserini
  gives each thread whole files, so one may finish long before the other), and each flushes its
  own segment when the stream ends, in parallel, instead of the committing thread flushing all
  of them alone.
* **Without the helper jar** (not built), documents are written as JSON-lines shards and
  ``IndexCollection`` runs on them when the stream ends, as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import struct
import threading
import time
from pathlib import Path
from typing import Any

from spacerini.errors import BundleError, DuplicateIdError, EmptyCorpusError, MalformedRecordError
from spacerini.records import BuildReport, Doc

logger = logging.getLogger(__name__)

#: Bytes gathered before one ``write`` into the pipe.
_CHUNK = 1 << 18
#: The pipe's capacity asked of Linux (``F_SETPIPE_SZ``); elsewhere the system's default.
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031
_LENGTHS = struct.Struct(">ii")
#: Bytes of documents kept while Java starts, before ``add`` waits for it.
_START_BUFFER = 16 << 20


class BM25Writer:
    """Builds a bm25 folder from documents added one at a time.

    Args:
        folder: The folder to build (created; must be empty or absent).
        threads: Lucene indexing threads.
        progress: Show a progress bar while the last documents are indexed.
        analyzer: ``"en"``, ``"code"`` or a language Anserini supports.
        k1: BM25 k1.
        b: BM25 b.
        memory_buffer: Lucene's RAM buffer in MB.

    Raises:
        BundleError: Bad parameters, or ``folder`` is not empty.

    Example:
        >>> writer = BM25Writer(folder, threads=2)  # doctest: +SKIP
        >>> for doc in docs:
        ...     writer.add(doc)
        >>> report = writer.finish()
    """

    def __init__(
        self,
        folder: Path,
        *,
        threads: int = 1,
        progress: bool = True,
        analyzer: str = "en",
        k1: float = 0.9,
        b: float = 0.4,
        memory_buffer: int = 512,
    ) -> None:
        from spacerini.backends import bm25
        from spacerini.backends.bm25 import lucene as jl

        bm25._check_params(analyzer, k1, b, threads, memory_buffer)
        self._bm25 = bm25
        self._code_tokens = bm25.code_tokens
        self._java_trim = bm25._JAVA_TRIM
        self._started = time.perf_counter()
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            raise BundleError(f"{folder} is not empty: build into a fresh folder")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._threads = threads
        self._progress = progress
        self._params = {
            "analyzer": analyzer,
            "k1": float(k1),
            "b": float(b),
            "memory_buffer": int(memory_buffer),
        }
        self._pretokenized = analyzer == "code"
        self._language = "en" if self._pretokenized else analyzer
        self._ids: list[str] = []
        self._seen: set[str] = set()
        self._empty = 0
        self._buffer = bytearray()
        self._fd: int | None = None
        self._shards: list[Any] = []
        self._done = False
        #: Size and SHA-256 of each Lucene file (by name), hashed while Java wrote it.
        self.checksums: dict[str, dict[str, Any]] = {}
        self._jl = jl
        self._indexer: Any = None
        self._starter: threading.Thread | None = None
        self._start_failure: BaseException | None = None
        self._streaming = _helper_jar_present()
        if self._streaming and self._language == "en":
            # The JVM starts (seconds) while the first documents are read: they wait in the buffer.
            self._starter = threading.Thread(
                target=self._start_background, name="spacerini-bm25-start", daemon=True
            )
            self._starter.start()
        else:
            java_analyzer = jl.make_analyzer(
                self._language, pretokenized=self._pretokenized
            )  # a bad language fails here
            if self._streaming:
                self._indexer = self._start_stream(jl, java_analyzer)
                self._streaming = self._indexer is not None
        if not self._streaming:
            from spacerini.backends.bm25 import _JSONL_DIR

            self._jsonl_dir = folder / _JSONL_DIR
            self._jsonl_dir.mkdir()
            self._shards = [
                (self._jsonl_dir / f"part{i:03d}.jsonl").open("w", encoding="utf-8") for i in range(threads)
            ]

    def _start_background(self) -> None:
        from spacerini.backends.bm25 import _detach

        try:
            java_analyzer = self._jl.make_analyzer(self._language, pretokenized=self._pretokenized)
            indexer = self._start_stream(self._jl, java_analyzer)
            if indexer is None:
                raise BundleError(
                    "Spacerini's helper jar could not be loaded: reinstall spacerini (make java)"
                )
            self._indexer = indexer
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread by _wait_started
            self._start_failure = exc
        finally:
            _detach()

    def _wait_started(self) -> None:
        """Waits for the background start of Java's indexer; raises its failure."""
        if self._starter is not None:
            self._starter.join()
            self._starter = None
        failure = self._start_failure
        if failure is not None:
            if isinstance(failure, BundleError):
                raise failure
            raise BundleError(f"cannot start Lucene indexing: {failure}") from failure

    def _start_stream(self, jl: Any, java_analyzer: Any) -> Any:
        helper = _stream_indexer(jl)
        if helper is None:
            return None
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):
            import fcntl

            fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        try:
            indexer = helper(
                str(self.folder), java_analyzer, f"/dev/fd/{read_fd}", self._threads, self._params["memory_buffer"],
                True, True, True,
            )  # fmt: skip
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)  # Java holds its own descriptor: when it stops reading, writes fail at once
        self._fd = write_fd
        return indexer

    @property
    def count(self) -> int:
        """Documents added so far."""
        return len(self._ids)

    def add(self, doc: Doc) -> None:
        """Adds one document (Lucene indexes it in the background).

        Raises:
            DocumentTooLargeError: Its id or text exceeds a Lucene/Anserini limit.
            DuplicateIdError: Its id was added before.
            MalformedRecordError: Its id or text holds a lone surrogate (not valid UTF-8).
            BundleError: Lucene stopped indexing (the cause is raised by :meth:`finish`).
        """
        # Called once per document of the corpus: the checks of _check_doc run in full only when
        # a cheap test says a limit may be crossed (the limits are read from the module, as tests
        # lower them).
        bm25 = self._bm25
        docid, text = doc.id, doc.text
        if not docid or len(text) > bm25.MAX_TEXT_CHARS or not self._streaming:
            bm25._check_doc(doc)
        if docid in self._seen:
            raise DuplicateIdError(f"document id {docid!r} occurs twice: ids must be unique")
        contents = self._code_tokens(text) if self._pretokenized else text
        if not contents or (contents[0] <= " " and not contents.strip(self._java_trim)):
            self._empty += 1  # Anserini skips contents that Java's String.trim() empties
        if not self._streaming:
            record = json.dumps({"id": docid, "contents": contents}, ensure_ascii=False)
            self._shards[len(self._ids) % self._threads].write(record + "\n")
        else:
            try:
                raw_id, raw = docid.encode("utf-8"), contents.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedRecordError(
                    f"document {docid!r} holds a lone surrogate (not valid Unicode text): fix or remove it"
                ) from None
            if len(raw_id) > bm25.MAX_ID_BYTES:
                bm25._check_doc(doc)
            buffer = self._buffer
            buffer += _LENGTHS.pack(len(raw_id), len(raw))
            buffer += raw_id
            buffer += raw
            if len(buffer) >= _CHUNK:
                self._send()
        self._seen.add(docid)
        self._ids.append(docid)

    def _send(self, *, wait: bool = False) -> None:
        if self._starter is not None:
            if not wait and len(self._buffer) < _START_BUFFER:
                return  # Java is still starting: keep the documents until it reads
            self._wait_started()
        view = memoryview(self._buffer)
        try:
            while view:
                written = os.write(self._fd, view)  # type: ignore[arg-type]
                view = view[written:]
        except BrokenPipeError:
            view.release()
            self._raise_failure()
        view.release()
        self._buffer.clear()

    def _raise_failure(self) -> None:
        """Lucene stopped reading: its own error says why."""
        self._close_pipe()
        try:
            self._indexer.finish()
        except Exception as exc:  # noqa: BLE001 - JNI raises many kinds
            raise BundleError(f"Lucene indexing failed: {exc}") from exc
        raise BundleError("Lucene indexing stopped reading documents")

    def _close_pipe(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        """Stops indexing and discards what was written (call on any failure before :meth:`finish`)."""
        if self._done:
            return
        self._done = True
        if self._starter is not None:  # let it finish starting, then stop what it started
            self._starter.join()
            self._starter = None
        self._close_pipe()
        for handle in self._shards:
            handle.close()
        if self._indexer is not None:
            try:
                self._indexer.abort()
            except Exception:  # noqa: BLE001 - aborting is best effort
                logger.debug("StreamIndexer.abort failed", exc_info=True)

    def finish(self) -> BuildReport:
        """Waits for Lucene, commits the index and writes the sidecar.

        Returns:
            The build report (as :func:`spacerini.backends.bm25.build` returns it).

        Raises:
            EmptyCorpusError: No document was added.
            BundleError: Lucene failed, or did not index every document.
        """
        from spacerini.backends.bm25 import _check_counters, _du, _write_sidecar

        if self._done:
            raise BundleError("this BM25 build was already finished or aborted")
        try:
            if not self._ids:
                raise EmptyCorpusError("no documents to index")
            t_read = time.perf_counter()
            counters = self._finish_stream() if self._streaming else self._finish_jsonl()
        except BaseException:
            self.abort()
            raise
        finally:
            if not self._streaming:
                shutil.rmtree(self._jsonl_dir, ignore_errors=True)
        self._done = True
        ids = self._ids
        self._seen = set()
        _check_counters(counters, written=len(ids), empty=self._empty, lucene_dir=self.folder, ids=ids)
        _shrink_heap()  # Lucene's indexing buffers leave the RSS before numpy builds the sidecar
        t_indexed = time.perf_counter()
        from spacerini.backends.bm25 import SIDECAR_DIR

        side_dir = self.folder / SIDECAR_DIR
        stats = _write_sidecar(
            self.folder, side_dir, ids, k1=self._params["k1"], b=self._params["b"], threads=self._threads,
            progress=self._progress, extra={"analyzer": self._params["analyzer"]},
        )  # fmt: skip
        stats.update(
            {"indexed": counters["indexed"], "empty": counters["empty"], "lucene_bytes": _du(self.folder)}
        )
        stats["sidecar_bytes"] = _du(side_dir)
        stats["seconds"] = {
            "read_and_index": round(t_read - self._started, 3),
            "lucene_tail": round(t_indexed - t_read, 3),
            "sidecar": round(time.perf_counter() - t_indexed, 3),
        }
        _shrink_heap()  # and the postings dump's, before the next backend builds
        return BuildReport(
            backend="bm25", docs=len(ids), seconds=time.perf_counter() - self._started, params=dict(self._params),
            stats=stats,
        )  # fmt: skip

    def _finish_stream(self) -> dict[str, int]:
        from tqdm.auto import tqdm

        self._send(wait=True)
        self._close_pipe()  # end of stream
        indexer = self._indexer
        result: list[Any] = []
        failure: list[BaseException] = []

        def target() -> None:
            try:
                result.append(indexer.finish())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)

        # Java's finish() blocks; a Python thread waits for it, so that Ctrl-C still reaches this one.
        thread = threading.Thread(target=target, name="spacerini-bm25-finish", daemon=True)
        total = len(self._ids)
        bar = tqdm(total=total, desc="bm25: Lucene indexing", unit=" docs", disable=not self._progress)
        try:
            thread.start()
            while thread.is_alive():
                thread.join(0.5)
                bar.update(max(0, min(total, int(indexer.indexed()) + self._empty) - bar.n))
        except BaseException:
            self.abort()
            thread.join(30)
            raise
        finally:
            bar.close()
        if failure:
            raise BundleError(f"Lucene indexing failed: {failure[0]}") from failure[0]
        indexed, empty, errors, max_doc = (int(x) for x in result[0])
        for line in indexer.checksums():
            name, size, sha = str(line).split("\t")
            self.checksums[name] = {"size": int(size), "sha256": sha}
        if errors:
            logger.warning("Lucene refused %d documents, for example %s", errors, list(indexer.failedIds()))
        return {
            "indexed": indexed,
            "empty": empty,
            "skipped": 0,
            "unindexable": 0,
            "errors": errors,
            "max_doc": max_doc,
        }

    def _finish_jsonl(self) -> dict[str, int]:
        from tqdm.auto import tqdm

        from spacerini.backends.bm25 import lucene as jl

        for handle in self._shards:
            handle.close()
        args = jl.index_args(
            self._jsonl_dir, self.folder, threads=self._threads, language=self._language,
            pretokenized=self._pretokenized, memory_buffer=self._params["memory_buffer"],
        )  # fmt: skip
        bar = tqdm(
            total=len(self._ids), desc="bm25: Lucene indexing", unit=" docs", disable=not self._progress
        )

        def on_progress(count: int) -> None:
            bar.update(max(0, count - bar.n))

        try:
            counters = jl.run_index_collection(args, on_progress=on_progress)
        except Exception as exc:  # noqa: BLE001 - JNI raises many kinds
            raise BundleError(f"Anserini IndexCollection failed: {exc}") from exc
        finally:
            bar.close()
        return counters


def _stream_indexer(jl: Any) -> Any:
    """The ``io.spacerini.StreamIndexer`` class, or None when the helper jar is not loaded."""
    jnius = jl._jnius()
    try:
        return jl.autoclass("io.spacerini.StreamIndexer")
    except jnius.JavaException:
        logger.info("Spacerini's helper jar is not loaded: indexing through JSON lines and IndexCollection")
        return None


def _shrink_heap() -> None:
    """Full collections until the JVM gives its free heap back to the OS.

    The serial collector shrinks the heap in damped steps (none after the first full collection,
    then 10 %, 40 % and 100 % of the excess over ``-XX:MaxHeapFreeRatio``), so one
    ``System.gc()`` leaves Lucene's 500 MB of indexing buffers committed; four give it back
    (about 10-50 ms each when little is live).
    """
    from spacerini.java import release_heap

    for _ in range(4):
        release_heap()


def _helper_jar_present() -> bool:
    from spacerini.java import helpers_jar

    return helpers_jar().is_file()
