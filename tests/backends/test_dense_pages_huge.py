"""Dense: pages of an approximate search are slices of one ranking, and a huge document is capped.

Pages: HNSW and ``ivfpq`` explore more of the index the deeper they search (``max(efSearch, k)``
candidates; ``refine_factor * k`` re-ranked), so one search per page put a document of page 1
on page 2 as well. The indexes here are written straight into a folder from clustered points
(several passages to some documents), with starved knobs so that the depth matters, and the
old one-search-per-depth answer (``_top_docs``) is shown to overlap before the pages are checked.

Cap: a document of more than ``max_passages`` passages gets only its first ones encoded, with
one warning line naming it; sharded and unsharded builds cap alike, and a normal corpus is
unchanged by the default cap.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spacerini import encoders
from spacerini.backends import dense
from spacerini.records import Doc
from tests.backends.test_dense_shards import (
    _assert_same_folder,
    _assert_same_reports,
    _corpus,
    _factory,
    _sharded,
    _unsharded,
)

DIM = 32
N_DOCS = 4_000


# ------------------------------------------------------------------------------------ pages
@pytest.fixture(scope="module")
def points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Passage vectors of 4,000 documents (every fifth has a second passage) and 40 queries."""
    rng = np.random.default_rng(11)
    passage_doc = np.sort(np.concatenate([np.arange(N_DOCS), np.arange(0, N_DOCS, 5)])).astype(np.int32)
    centers = rng.normal(size=(60, DIM)).astype(np.float32)
    data = centers[rng.integers(0, len(centers), size=len(passage_doc) + 40)]
    data = data + 0.5 * rng.normal(size=data.shape).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return data[: len(passage_doc)], passage_doc, data[len(passage_doc) :]


def _searcher(folder: Path, kind: str, vectors: np.ndarray, passage_doc: np.ndarray, **knobs: int) -> dense.DenseSearcher:
    import faiss

    nlist = 64
    index = dense.make_index(faiss, kind, DIM, hnsw_m=4, ef_construction=16, nlist=nlist)
    if kind in ("ivf", "ivfpq"):
        index.train(vectors)
    index.add(vectors)
    folder.mkdir()
    faiss.write_index(index, str(folder / dense.INDEX_FILE))
    np.save(folder / dense.PASSAGE_DOC_FILE, passage_doc)
    (folder / dense.IDS_FILE).write_text(json.dumps([f"d{i:04d}" for i in range(N_DOCS)]))
    return dense.open(folder, {"params": {"index": kind, "dim": DIM, "nlist": nlist, **knobs}})


STARVED = {"hnsw": {"ef_search": 10}, "ivfpq": {"nprobe": 2, "refine_factor": 1}, "ivf": {"nprobe": 2}, "flat": {}}


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq", "ivf", "flat"])
def test_pages_are_slices_of_one_ranking(kind: str, points: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vectors, passage_doc, queries = points
    searcher = _searcher(tmp_path / kind, kind, vectors, passage_doc, **STARVED[kind])
    texts = [f"query {i}" for i in range(len(queries))]
    by_text = dict(zip(texts, queries, strict=True))
    monkeypatch.setattr(searcher, "encode_queries", lambda qs: np.stack([by_text[q] for q in qs]))
    if kind == "hnsw":
        # faiss 1.15.1 keeps efSearch whatever k (measured: its top 10 is the same at k=16 and
        # k=64); faiss builds that search max(efSearch, k) candidates, as the defect reported,
        # are emulated here.
        index, search = searcher._index, searcher._faiss_search

        def widening(vectors: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
            index.hnsw.efSearch = max(STARVED["hnsw"]["ef_search"], fetch)
            return search(vectors, fetch)

        monkeypatch.setattr(searcher, "_faiss_search", widening)

    # One search per depth, as before: the approximate kinds put a document on two pages.
    overlaps = 0
    for query in queries[:, None, :]:
        first = [ordinal for ordinal, _ in searcher._top_docs(query, 10)[0][0]]
        second = [ordinal for ordinal, _ in searcher._top_docs(query, 20)[0][0][10:]]
        overlaps += bool(set(first) & set(second))
    if kind in ("hnsw", "ivfpq"):
        assert overlaps > 0, "the starved index no longer shows the defect: the test would pass vacuously"
    else:  # exact over what they search: the depth never mattered
        assert overlaps == 0

    batch = searcher.batch_search(list(zip(texts, texts, strict=True)), k=50)
    for text in texts:
        full = searcher.search(text, k=50)
        pages = [searcher.search(text, k=10, offset=offset) for offset in range(0, 50, 10)]
        docids = [hit.docid for hit in full]
        assert [hit for page in pages for hit in page] == full
        # (A starved ivfpq search may reach fewer than 50 documents in its 2 probed lists.)
        assert len(docids) == len(set(docids)) and 30 <= len(docids) <= 50
        assert [hit.rank for hit in full] == list(range(1, len(full) + 1))
        assert batch[text] == full
        # Page 1 of 10 is the one search of depth 10 it always was.
        assert [(h.docid, h.score) for h in pages[0]] == [
            (f"d{ordinal:04d}", round(float(score), 6)) for ordinal, score in searcher._top_docs(by_text[text][None, :], 10)[0][0]
        ]
    if kind == "flat":  # exact: best passage per document, score then docstore order, at any depth
        scores = vectors @ queries.T
        for qi, text in enumerate(texts):
            best: dict[int, float] = {}
            for row, ordinal in enumerate(passage_doc.tolist()):
                best[ordinal] = max(best.get(ordinal, -np.inf), float(scores[row, qi]))
            want = [f"d{o:04d}" for o, _ in sorted(best.items(), key=lambda item: (-item[1], item[0]))[:50]]
            assert [hit.docid for hit in searcher.search(text, k=50)] == want


def test_a_search_stops_when_the_index_runs_out(points: Any, tmp_path: Path) -> None:
    """Asking for more documents than an ivfpq search can reach returns what it reaches, once each."""
    vectors, passage_doc, queries = points
    searcher = _searcher(tmp_path / "ivfpq", "ivfpq", vectors, passage_doc, nprobe=1, refine_factor=1)
    for hits in searcher.search_vectors(queries[:5], 3_000):
        assert 0 < len(hits) < 3_000
        assert len({hit.docid for hit in hits}) == len(hits)


# -------------------------------------------------------------------------------------- cap
def _huge_text(chars: int) -> str:
    rng = random.Random(3)
    words = ["harbour", "lantern", "ledger", "tide", "keeper", "signal", "brass", "fog", "north", "rope"]
    lines, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(words) for _ in range(12)) + f" entry {len(lines)}.\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)


def _dense_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == dense.__name__ and r.levelno == logging.WARNING]


def test_a_huge_document_is_capped_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    docs = _corpus()[:30]
    huge = Doc(id="huge.log", text=_huge_text(1_200_000))  # over BLOCK_CHARS: split a block at a time
    docs = [*docs[:12], huge, *docs[12:]]
    enc = encoders.load_encoder(runtime="onnx")
    total = int(enc.passage_counts([huge.text], max_tokens=254, overlap=32)[0])
    assert total > 900
    assert enc.passage_counts([d.text for d in docs], max_tokens=254, overlap=32, max_passages=5).tolist() == [
        5 if d is huge else int(enc.passage_counts([d.text], max_tokens=254, overlap=32)[0]) for d in docs
    ]
    with caplog.at_level(logging.WARNING, logger="spacerini"):
        report = dense.build(
            _factory(docs), tmp_path / "dense", progress=False, chunk_docs=8, max_passages=5, runtime="onnx",
            checkpoint_dir=tmp_path / "ck",
        )
    warnings = _dense_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "'huge.log'" in warnings[0] and f"{total - 5} are left out" in warnings[0] and "\n" not in warnings[0]
    assert report.stats["capped_docs"] == 1 and report.stats["passages_left_out"] == total - 5
    assert report.params["max_passages"] == 5
    passage_doc = np.load(tmp_path / "dense" / dense.PASSAGE_DOC_FILE)
    assert int((passage_doc == 12).sum()) == 5 and report.stats["passages"] == len(passage_doc)
    # The passages kept are the document's first five, encoded as an uncapped build encodes them.
    import faiss

    index = faiss.read_index(str(tmp_path / "dense" / dense.INDEX_FILE))
    rows = np.flatnonzero(passage_doc == 12)
    kept = np.vstack([index.reconstruct(int(row)) for row in rows])
    first = enc.split(huge.text, max_tokens=254, overlap=32)[:5]
    np.testing.assert_allclose(kept, enc.encode(first), atol=1e-6)


def test_resumed_chunks_report_their_capped_documents(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    docs = [Doc(id="a", text="a short one"), Doc(id="big", text=_huge_text(20_000)), Doc(id="c", text="another")]
    enc = encoders.load_encoder(runtime="onnx")
    options = {"n_docs": 3, "passage_tokens": 64, "overlap": 8, "batch_size": 8, "chunk_docs": 2, "progress": False}
    with caplog.at_level(logging.WARNING, logger="spacerini"):
        _, resumed, capped = dense._encode_chunks(_factory(docs), enc, tmp_path, max_passages=2, **options)
        _, again, capped_again = dense._encode_chunks(_factory(docs), enc, tmp_path, max_passages=2, **options)
    assert (resumed, again) == (0, 2)
    assert capped == capped_again and [doc_id for doc_id, _ in capped] == ["big"] and capped[0][1] > 2
    assert len(_dense_warnings(caplog)) == 2  # once a run


def test_a_normal_corpus_is_unchanged_by_the_default_cap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    docs = _corpus()
    with caplog.at_level(logging.WARNING, logger="spacerini"):
        capped = dense.build(_factory(docs), tmp_path / "a", progress=False, checkpoint_dir=tmp_path / "ck")
    uncapped = dense.build(
        _factory(docs), tmp_path / "b", progress=False, checkpoint_dir=tmp_path / "ck", max_passages=None
    )
    assert not _dense_warnings(caplog)
    assert capped.params["max_passages"] == dense.DEFAULT_MAX_PASSAGES == 4_096
    assert (capped.stats["capped_docs"], capped.stats["passages_left_out"]) == (0, 0)
    assert capped.stats["passages"] == uncapped.stats["passages"]
    for name in (dense.INDEX_FILE, dense.PASSAGE_DOC_FILE, dense.IDS_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_sharded_builds_cap_as_the_unsharded_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The corpus's long document (6 passages) is capped at 3, in the plan's passage count, its
    training sample, its shard and the merge alike."""
    docs = _corpus()
    params = {"index": "ivf", "nlist": 8, "nprobe": 8, "chunk_docs": 40, "max_passages": 3}
    with caplog.at_level(logging.WARNING, logger="spacerini"):
        whole, whole_report = _unsharded(docs, tmp_path, **params)
    assert [w.split("'")[1] for w in _dense_warnings(caplog)] == ["long.appendix"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spacerini"):
        sharded, report, _ = _sharded(docs, tmp_path, **params)
    assert [w.split("'")[1] for w in _dense_warnings(caplog)] == ["long.appendix"]
    _assert_same_reports(whole_report, report)
    _assert_same_folder(whole, sharded)
    for key in ("capped_docs", "passages_left_out"):
        assert report["stats"][key] == whole_report["stats"][key]
    assert whole_report["stats"]["capped_docs"] == 1 and whole_report["stats"]["passages_left_out"] >= 1
    assert int((np.load(whole / dense.PASSAGE_DOC_FILE) == len(docs) - 1).sum()) == 3


def test_long_text_blocks_are_not_truncated_after_a_truncating_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers leaves truncation set on its backend tokenizer after a ``truncation=True``
    call: the block-at-a-time split used it directly and kept 256 tokens a block (an 8 MB text
    split after the first chunk's encoding gave 10 passages instead of 20,283)."""
    text = _huge_text(60_000)
    for runtime in ("torch", "onnx"):
        enc = encoders.load_encoder(runtime=runtime, device="cpu" if runtime == "torch" else None)
        whole = enc._split_many([text], max_tokens=64, overlap=8)
        enc._tokenize(["a call that truncates to the model's window"])
        monkeypatch.setattr(encoders, "BLOCK_CHARS", 5_000)
        assert enc._splits_at_spaces(), runtime
        assert enc._split_many([text], max_tokens=64, overlap=8) == whole, runtime
        monkeypatch.undo()
        assert len(whole[0]) > 150
