"""Streaming BM25 build: documents go to Lucene as they are read, not after the docstore is written.

:class:`BM25Writer` takes documents one at a time (:meth:`~BM25Writer.add`), so the bundle
builder can feed Lucene while it reads the corpus and writes the docstore: Lucene's indexing
threads and the reading run at once, and nothing is written twice or parsed twice.

How documents reach Lucene, and why:

* **A JVM of its own, fed through a pipe.** Each document goes into the standard input of a
  child process, ``java io.spacerini.StreamIndexer`` (Spacerini's Java helper, ``spacerini/jars``),
  as two lengths and the UTF-8 bytes of its id and contents; ``threads`` workers index them. The
  child starts while the first documents are read (at most 16 MB of them wait) and needs no
  interpreter lock: a JVM started inside this process through pyjnius holds the lock for its
  whole start (measured: the reading thread stalled 2.1 s in one piece at load 6). After its
  commit the child also dumps the postings that the sidecar is built from, so a bm25 build
  starts no JVM in this process at all. The pipe is bounded, so memory stays flat: when Lucene
  is behind, ``add`` waits. The earlier path wrote JSON-lines shards, which ``IndexCollection``
  then parsed again, after a second pass over the docstore.
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
#: The record that ends the stream (an id length of -1): what came before it is committed.
_END = struct.pack(">i", -1)
#: The folder (inside the Lucene folder, while it is built) of the postings dump.
_DUMP_DIR = ".spacerini-postings"
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
        from spacerini.java import java_path

        java_path(folder.absolute())  # before a folder is made: Java would write into another one
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
        self._ended = False
        #: Size and SHA-256 of each Lucene file (by name), hashed while Java wrote it.
        self.checksums: dict[str, dict[str, Any]] = {}
        self._indexer: _IndexerProcess | None = None
        self._streaming = _helper_jar_present()
        if self._streaming:
            # Lucene indexes in a JVM of its own, which starts (seconds) while the first documents
            # are read: they wait in the buffer until it is ready.
            self._indexer = _IndexerProcess(
                folder, threads=threads, memory_buffer=int(memory_buffer), language=self._language,
                pretokenized=self._pretokenized,
            )  # fmt: skip
            self._fd = self._indexer.stdin_fd
            if self._language != "en":
                try:
                    self._indexer.wait_ready()  # a bad analyzer language fails before any document is read
                except BaseException:
                    self.abort()
                    raise
        else:
            jl.make_analyzer(self._language, pretokenized=self._pretokenized)  # a bad language fails here
            from spacerini.backends.bm25 import _JSONL_DIR

            self._jsonl_dir = folder / _JSONL_DIR
            self._jsonl_dir.mkdir()
            self._shards = [
                (self._jsonl_dir / f"part{i:03d}.jsonl").open("w", encoding="utf-8") for i in range(threads)
            ]

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
        indexer = self._indexer
        assert indexer is not None
        if not indexer.ready.is_set():
            if not wait and len(self._buffer) < _START_BUFFER:
                return  # Java is still starting: keep the documents until it reads
            indexer.wait_ready()
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
        assert self._indexer is not None
        self._indexer.wait()
        raise BundleError(f"Lucene indexing failed: {self._indexer.error() or 'it stopped reading documents'}")

    def _close_pipe(self) -> None:
        if self._fd is not None and self._indexer is not None:
            # through the pipe's file object, which owns the descriptor: an os.close here left it
            # to close the same number again when collected, by then perhaps another file's
            self._indexer.close_stdin()
        self._fd = None

    def abort(self) -> None:
        """Stops indexing and discards what was written (call on any failure before :meth:`finish`)."""
        if self._done:
            return
        self._done = True
        self._close_pipe()
        for handle in self._shards:
            handle.close()
        if self._indexer is not None:
            self._indexer.kill()  # nothing more is written into the folder once this returns

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
        t_indexed = time.perf_counter()
        from spacerini.backends.bm25 import SIDECAR_DIR

        side_dir = self.folder / SIDECAR_DIR
        extra = {"analyzer": self._params["analyzer"]}
        dump = self._indexer.dump if self._indexer is not None else None
        try:
            if dump is not None:  # the indexing process dumped the postings after its commit
                stats = _sidecar_from_dump(dump, side_dir, ids, k1=self._params["k1"], b=self._params["b"], extra=extra)
            else:  # IndexCollection ran in this process (no helper jar), or the dump was refused
                _shrink_heap()  # Lucene's indexing buffers leave the RSS before numpy builds the sidecar
                stats = _write_sidecar(
                    self.folder, side_dir, ids, k1=self._params["k1"], b=self._params["b"], threads=self._threads,
                    progress=self._progress, extra=extra,
                )  # fmt: skip
        finally:
            shutil.rmtree(self.folder / _DUMP_DIR, ignore_errors=True)  # never part of the bundle
        stats.update({"indexed": counters["indexed"], "empty": counters["empty"]})
        # The Lucene index alone (its files are flat; the sidecar is the folder beside them).
        stats["lucene_bytes"] = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
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

    def end_input(self) -> None:
        """Ends the document stream: Lucene's tail (its last batches, the flush, the commit and the
        postings dump) then runs while the caller finishes other work, before :meth:`finish`.

        Raises:
            BundleError: Lucene stopped reading documents (its own error says why).
        """
        if self._ended or self._done or not self._streaming:
            return
        self._ended = True
        try:
            self._buffer += _END
            self._send(wait=True)
            self._close_pipe()
        except BaseException:
            self.abort()
            raise

    def _finish_stream(self) -> dict[str, int]:
        from tqdm.auto import tqdm

        indexer = self._indexer
        assert indexer is not None
        self.end_input()
        total = len(self._ids)
        bar = tqdm(total=total, desc="bm25: Lucene indexing", unit=" docs", disable=not self._progress)
        try:
            while not indexer.wait(0.5):
                bar.update(max(0, min(total, indexer.indexed + self._empty) - bar.n))
        finally:
            bar.close()
        if indexer.returncode != 0 or indexer.counts is None:
            raise BundleError(f"Lucene indexing failed: {indexer.error() or f'exit status {indexer.returncode}'}")
        indexed, empty, errors, max_doc = indexer.counts
        self.checksums = dict(indexer.sums)
        if errors:
            logger.warning("Lucene refused %d documents, for example %s", errors, indexer.failed_ids)
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


class _IndexerProcess:
    """``io.spacerini.StreamIndexer`` in a JVM of its own, fed through its standard input.

    Why a process and not this process's JVM: starting a JVM through pyjnius holds Python's
    interpreter lock for its whole start (measured: the reading thread stalled 2.1 s in one piece
    under load), and every later JNI call takes it again; a child JVM starts and indexes beside
    the reading, and this process never starts a JVM for a bm25 build. Its JVM options are
    Spacerini's (:func:`spacerini.java.jvm_options`). It reports on standard output (``StreamIndexer.main``), read
    here by a thread; its standard error is kept for the one line that says why it failed.
    It runs in a process group of its own, so a Ctrl-C reaches only this process, which kills it
    (:meth:`kill`); if this process dies, the stream ends without its end marker and the child
    commits nothing. It also halts once this process is gone (``StreamIndexer.haltWithParent``):
    one killed while its JVM still starts must not open, and so create again, a folder a failed
    build's clean-up has deleted.
    """

    def __init__(self, folder: Path, *, threads: int, memory_buffer: int, language: str, pretokenized: bool) -> None:
        import subprocess

        from spacerini.java import anserini_jar, helpers_jar, java_env, java_home, jvm_options

        # Inside the folder being built (Lucene ignores it; removed once the sidecar is written),
        # so that a build killed outright leaves it where the next build's clean-up looks.
        self._dump_dir = folder / _DUMP_DIR
        self._dump_dir.mkdir()
        cmd = [
            str(java_home() / "bin" / "java"), *jvm_options(), "-cp", f"{anserini_jar()}{os.pathsep}{helpers_jar()}",
            "io.spacerini.StreamIndexer", str(folder), str(threads), str(memory_buffer), language,
            "true" if pretokenized else "false", str(self._dump_dir),
        ]  # fmt: skip
        self.ready = threading.Event()
        self._started = False
        self.indexed = 0
        self.counts: tuple[int, int, int, int] | None = None
        self.failed_ids: list[str] = []
        self.sums: dict[str, dict[str, Any]] = {}
        self.dump: dict[str, Any] | None = None
        self._stderr: list[str] = []
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0,
                env={**java_env(), "SPACERINI_PARENT_PID": str(os.getpid())},  # it halts once this process is gone
            )  # fmt: skip
        except OSError as exc:
            shutil.rmtree(self._dump_dir, ignore_errors=True)
            raise BundleError(f"cannot start Java for Lucene indexing: {exc}") from exc
        assert self._proc.stdin is not None
        self.stdin_fd = self._proc.stdin.fileno()
        with contextlib.suppress(OSError):
            import fcntl

            fcntl.fcntl(self.stdin_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        self._readers = [
            threading.Thread(target=self._read_stdout, name="spacerini-bm25-out", daemon=True),
            threading.Thread(target=self._read_stderr, name="spacerini-bm25-err", daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def close_stdin(self) -> None:
        """Closes the pipe to the indexer (it then sees the end of its input)."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        try:
            for raw in self._proc.stdout:
                parts = raw.decode("utf-8", "replace").rstrip("\n").split("\t")
                if parts[0] != "spacerini" or len(parts) < 2:
                    continue  # something a library printed
                kind, values = parts[1], parts[2:]
                if kind == "ready":
                    self._started = True
                    self.ready.set()
                elif kind == "progress":
                    self.indexed = int(values[0])
                elif kind == "counts":
                    a, b, c, d = (int(v) for v in values)
                    self.counts = (a, b, c, d)
                    self.indexed = a
                elif kind == "failed":
                    self.failed_ids.append(bytes.fromhex(values[0]).decode("utf-8", "replace"))
                elif kind == "sum":
                    self.sums[values[0]] = {"size": int(values[1]), "sha256": values[2]}
                elif kind == "dump" and values != ["none"]:
                    names = ("terms", "postings", "ids", "max_doc", "doc_count", "sum_total_term_freq")
                    self.dump = {"folder": self._dump_dir, **dict(zip(names, (int(v) for v in values), strict=True))}
        finally:
            self.ready.set()  # a process that ended never gets ready: wait_ready then reports why

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())
            del self._stderr[:-50]

    def error(self) -> str:
        """The child's own reason for failing (its ``spacerini-error`` line), else its last words."""
        for reader in self._readers:
            reader.join(5)
        for line in reversed(self._stderr):
            if line.startswith("spacerini-error\t"):
                return line.split("\t", 1)[1]
        lines = [line for line in self._stderr if line.strip()]
        return lines[-1] if lines else ""

    def wait_ready(self) -> None:
        """Waits until Java has opened the analyzer and the index writer.

        Raises:
            BundleError: It could not (a bad analyzer language, a missing runtime).
        """
        self.ready.wait()
        if not self._started:  # its output ended before it said ready: it exited
            self._proc.wait()
            raise BundleError(f"cannot start Lucene indexing: {self.error() or f'exit status {self._proc.returncode}'}")

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the process to end (up to ``timeout`` s); True once it has and its output is read."""
        import subprocess

        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        for reader in self._readers:
            reader.join()
        return True

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def kill(self) -> None:
        """Kills the process and waits for it: it writes nothing more once this returns."""
        with contextlib.suppress(OSError):
            self._proc.kill()
        self._proc.wait()
        for reader in self._readers:
            reader.join(5)
        shutil.rmtree(self._dump_dir, ignore_errors=True)


def _sidecar_from_dump(
    dump: dict[str, Any], side_dir: Path, ids: list[str], *, k1: float, b: float, extra: dict[str, Any]
) -> dict[str, Any]:
    """Writes the sidecar from the postings the indexing process dumped after its commit.

    Java's ``Math.log`` (what Lucene's idf uses) comes from the same process, as a table over the
    idf argument of each distinct document frequency, so no JVM starts here.
    """
    import math

    import numpy as np

    from spacerini.backends.bm25 import _sidecar_from_postings
    from spacerini.backends.bm25 import lucene as jl

    folder = Path(dump["folder"])
    postings = jl.read_postings_dump(
        folder, terms=dump["terms"], postings=dump["postings"], ids=dump["ids"], max_doc=dump["max_doc"]
    )
    pairs = np.fromfile(folder / "logs.f8", dtype=">f8").reshape(-1, 2)
    table = dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True))

    def java_log(x: float) -> float:
        # Every argument is in the table when the doc counts agree, which is checked below.
        found = table.get(x)
        return math.log(x) if found is None else found

    meta = _sidecar_from_postings(postings, side_dir, ids, k1=k1, b=b, extra=extra, log=java_log)
    if (dump["doc_count"], dump["sum_total_term_freq"]) != (meta["doc_count"], meta["sum_total_term_freq"]):
        raise BundleError(
            f"the sidecar disagrees with Lucene's statistics ({meta['doc_count']}/{meta['sum_total_term_freq']} vs "
            f"{dump['doc_count']}/{dump['sum_total_term_freq']}): rebuild the bundle"
        )
    return {k: meta[k] for k in ("doc_count", "sum_total_term_freq", "avgdl", "terms", "postings")}


def _shrink_heap() -> None:
    """A full collection, which gives this process's free JVM heap back to the OS (one is enough:
    :func:`spacerini.java.jvm_options` turns off the serial collector's damped shrinking)."""
    from spacerini.java import release_heap

    release_heap()


def _helper_jar_present() -> bool:
    from spacerini.java import helpers_jar

    return helpers_jar().is_file()
