"""The streaming BM25 build (BM25Writer, io.spacerini.StreamIndexer) against raw IndexCollection."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from bm25_data import CODE, CORPUS

from spacerini.backends import bm25
from spacerini.backends.bm25 import lucene as jl
from spacerini.backends.bm25 import writer as bm25_writer
from spacerini.backends.bm25.writer import BM25Writer
from spacerini.errors import BundleError, DuplicateIdError, EmptyCorpusError, MalformedRecordError
from spacerini.records import Doc


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _docs(path: Path) -> list[Doc]:
    return [Doc(id=r["id"], text=r["contents"]) for r in _records(path)]


def _index_collection(records: list[dict], work: Path, *, threads: int = 2, code: bool = False) -> Path:
    """Raw Anserini IndexCollection on JSON lines {"id", "contents"}, as the fallback path writes them."""
    inp = work / "in"
    inp.mkdir(parents=True)
    handles = [(inp / f"part{i:03d}.jsonl").open("w", encoding="utf-8") for i in range(threads)]
    for i, r in enumerate(records):
        contents = bm25.code_tokens(r["contents"]) if code else r["contents"]
        handles[i % threads].write(json.dumps({"id": r["id"], "contents": contents}, ensure_ascii=False) + "\n")
    for h in handles:
        h.close()
    index = work / "index"
    args = jl.index_args(inp, index, threads=threads, language="en", pretokenized=code, memory_buffer=64)
    jl.run_index_collection(args)
    return index


def _contents(index: Path) -> dict[str, dict]:
    """Per collection id: stored fields (id, raw) and the term vector; plus field statistics."""
    from spacerini.java import autoclass

    reader = jl.open_reader(index)
    try:
        utils = autoclass("io.anserini.index.IndexReaderUtils")
        out = {}
        for docid in range(reader.maxDoc()):
            stored = reader.storedFields().document(docid)
            cid = stored.get("id")
            try:
                vector = utils.getDocumentVector(reader, cid)
            except Exception:  # noqa: BLE001 - NotStoredException: no term at all (stopwords only)
                vector = None
            terms = {} if vector is None else {str(k): int(vector.get(k)) for k in vector.keySet().toArray()}
            fields = sorted(str(f.name()) for f in stored.getFields().toArray())
            out[cid] = {"raw": stored.get("raw"), "fields": fields, "vector": terms}
        stats = bm25._lucene_field_stats(reader)
        infos = reader.leaves().get(0).reader().getFieldInfos()
        field_infos = {
            str(infos.fieldInfo(name).getName()): (
                str(infos.fieldInfo(name).getIndexOptions().toString()),
                bool(infos.fieldInfo(name).hasVectors()),
                str(infos.fieldInfo(name).getDocValuesType().toString()),
                bool(infos.fieldInfo(name).hasNorms()),
            )
            for name in ("id", "contents", "raw")
            if infos.fieldInfo(name) is not None
        }
        return {"docs": out, "stats": stats, "field_infos": field_infos}
    finally:
        reader.close()


def _postings(index: Path) -> Counter:
    reader = jl.open_reader(index)
    try:
        dump = jl.dump_postings(reader)
    finally:
        reader.close()
    assert dump is not None
    postings: Counter = Counter()
    start = 0
    for term, df in zip(dump.terms, dump.dfs.tolist(), strict=True):
        for doc, tf in zip(dump.docs[start : start + df].tolist(), dump.tfs[start : start + df].tolist(), strict=True):
            postings[(term, dump.ids[doc])] += tf
        start += df
    return postings


@pytest.mark.parametrize("corpus,code", [(CORPUS, False), (CODE, True)], ids=["en", "code"])
def test_stream_index_equals_index_collection(tmp_path: Path, corpus: Path, code: bool) -> None:
    """Same documents, stored fields (raw JSON included), term vectors, postings and statistics."""
    records = _records(corpus)
    ours = tmp_path / "ours"
    report = bm25.build(lambda: iter(_docs(corpus)), ours, threads=2, progress=False, analyzer="code" if code else "en")
    assert report.docs == len(records)
    peer = _index_collection(records, tmp_path / "peer", code=code)
    a, b = _contents(ours), _contents(peer)
    assert a["stats"] == b["stats"]
    assert a["field_infos"] == b["field_infos"]
    assert a["docs"].keys() == b["docs"].keys()
    assert len(a["docs"]) == report.stats["indexed"] == len(records) - report.stats["empty"]
    for cid in b["docs"]:
        assert a["docs"][cid] == b["docs"][cid], cid
    assert _postings(ours) == _postings(peer)


def test_fallback_without_helper_writes_the_same_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _docs(CORPUS)
    bm25.build(lambda: iter(docs), tmp_path / "stream", threads=2, progress=False)
    monkeypatch.setattr(bm25_writer, "_helper_jar_present", lambda: False)
    writer = BM25Writer(tmp_path / "jsonl", threads=2, progress=False)
    assert not writer._streaming and writer._indexer is None
    for doc in docs:
        writer.add(doc)
    writer.finish()
    assert writer.checksums == {}  # nothing hashed while written: publish reads these files
    for name in sorted(p.name for p in (tmp_path / "stream" / bm25.SIDECAR_DIR).iterdir()):
        if name == "meta.json":
            continue
        stream = (tmp_path / "stream" / bm25.SIDECAR_DIR / name).read_bytes()
        assert stream == (tmp_path / "jsonl" / bm25.SIDECAR_DIR / name).read_bytes(), name
    assert not (tmp_path / "jsonl" / bm25._JSONL_DIR).exists()


def test_checksums_hashed_while_written(tmp_path: Path) -> None:
    writer = BM25Writer(tmp_path / "b", threads=2, progress=False)
    for doc in _docs(CORPUS):
        writer.add(doc)
    writer.finish()
    # Every Lucene file but the lock (empty, made by the lock factory, not written through the directory)
    files = {p.name: p for p in (tmp_path / "b").iterdir() if p.is_file() and p.name != "write.lock"}
    assert files and set(writer.checksums) == set(files)
    for name, path in files.items():
        data = path.read_bytes()
        assert writer.checksums[name] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name


def test_abort_stops_writing(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    writer = BM25Writer(folder, threads=2, progress=False)
    for doc in _docs(CORPUS)[:100]:
        writer.add(doc)
    writer.abort()
    before = sorted(p.name for p in folder.rglob("*"))
    time.sleep(0.5)
    assert sorted(p.name for p in folder.rglob("*")) == before
    assert not [p for p in folder.iterdir() if p.name.startswith("segments_")]  # nothing committed
    with pytest.raises(BundleError, match="already finished or aborted"):
        writer.finish()
    writer.abort()  # twice is harmless


def test_abort_closes_the_pipe_through_its_owner(tmp_path: Path) -> None:
    """The pipe's descriptor was closed with os.close while Popen's file object still owned it;
    collecting that object later closed the same number again, by then a later build's docstore
    file ("Bad file descriptor" on the next index in the same process)."""
    import os

    writer = BM25Writer(tmp_path / "b", threads=1, progress=False)
    for doc in _docs(CORPUS)[:10]:
        writer.add(doc)
    stdin = writer._indexer._proc.stdin
    writer.abort()
    assert stdin.closed
    reused = os.open(os.devnull, os.O_RDONLY)  # likely the freed number: it must stay open
    try:
        del stdin
        writer._indexer._proc.stdin = None
        import gc

        gc.collect()
        os.fstat(reused)
    finally:
        os.close(reused)


def test_bad_documents(tmp_path: Path) -> None:
    writer = BM25Writer(tmp_path / "a", progress=False)
    writer.add(Doc(id="a", text="one"))
    with pytest.raises(DuplicateIdError, match="'a' occurs twice"):
        writer.add(Doc(id="a", text="two"))
    with pytest.raises(MalformedRecordError, match="lone surrogate"):
        writer.add(Doc(id="b", text="bad \ud800 text"))
    writer.abort()
    empty = BM25Writer(tmp_path / "e", progress=False)
    with pytest.raises(EmptyCorpusError):
        empty.finish()
    (tmp_path / "a" / "left-over").write_text("x")  # aborted early, Java may not have written anything
    with pytest.raises(BundleError, match="not empty"):
        BM25Writer(tmp_path / "a", progress=False)


def test_blank_documents_counted_as_empty(tmp_path: Path) -> None:
    docs = [Doc(id="x", text="hello world"), Doc(id="y", text=" \t\n"), Doc(id="z", text="world")]
    report = bm25.build(lambda: iter(docs), tmp_path / "b", threads=2, progress=False)
    assert report.docs == 3 and report.stats["indexed"] == 2 and report.stats["empty"] == 1
