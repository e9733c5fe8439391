"""Dense shards: prepare_shards, one build per shard and merge_shards answer as the unsharded build.

Each test builds a corpus unsharded and in 3 contiguous shards the way
``spacerini.bundle.shards`` does (plan once over the whole corpus, build each shard's documents,
merge, then drop the work and shard folders), and compares files, parameters and search results.
The real all-MiniLM-L6-v2 encoder runs on ``tests/data/dense_corpus.jsonl`` (flat and IVF); a
stand-in encoder of fixed clustered points (fast) covers tuning, ivfpq, HNSW and the refusals.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spacerini.backends import dense
from spacerini.errors import BundleCorruptError
from spacerini.records import Doc

DATA = Path(__file__).parent.parent / "data"
QUERIES = [
    "compress data with gzip",
    "parse command line options",
    "find the longest common path prefix",
    "random number generator seed",
    "lighthouse keeper polishing the brass lens",
    "read a file line by line",
    "sort a list in place",
    "join path components",
]


def _corpus() -> list[Doc]:
    rows = [json.loads(line) for line in (DATA / "dense_corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    return [Doc(id=row["id"], text=row["text"]) for row in rows]


def _factory(docs: Sequence[Doc]) -> Any:
    def factory() -> Iterator[Doc]:
        return iter(docs)

    return factory


def _thirds(docs: Sequence[Doc]) -> list[Sequence[Doc]]:
    """Contiguous shards as ``spacerini.bundle.shards.plan(shards=3)`` cuts them."""
    base, extra = divmod(len(docs), 3)
    parts, start = [], 0
    for i in range(3):
        count = base + (1 if i < extra else 0)
        parts.append(docs[start : start + count])
        start += count
    return parts


def _unsharded(docs: Sequence[Doc], root: Path, **params: Any) -> tuple[Path, dict[str, Any]]:
    folder = root / "whole" / "dense"
    report = dense.build(_factory(docs), folder, progress=False, checkpoint_dir=root / "ck", **params)
    return folder, report.to_dict()


def _sharded(docs: Sequence[Doc], root: Path, **params: Any) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    params = {"checkpoint_dir": str(root / "ck"), **params}
    work = root / "sharded" / "work"
    shared = dense.prepare_shards(_factory(docs), work, params, progress=False)
    folders, reports = [], []
    for number, part in enumerate(_thirds(docs)):
        folder = root / "sharded" / "shards" / f"{number:05d}" / "dense"
        folder.mkdir(parents=True)
        report = dense.build(_factory(part), folder, progress=False, **shared)
        reports.append({**report.to_dict(), "docs": len(part)})
        folders.append(folder)
    out = root / "sharded" / "dense"
    merged = dense.merge_shards(folders, out, reports, progress=False)
    shutil.rmtree(work)  # the merged index must not need the plan or the codec
    for folder in folders:
        shutil.rmtree(folder)
    return out, merged.to_dict(), reports


def _assert_same_folder(whole: Path, sharded: Path, *, index_bytes: bool = True) -> None:
    for name in ("ids.json", "dense.json", *(["index.faiss"] if index_bytes else [])):
        assert (whole / name).read_bytes() == (sharded / name).read_bytes(), name
    assert np.array_equal(np.load(whole / "passage_doc.npy"), np.load(sharded / "passage_doc.npy"))
    assert sorted(p.name for p in sharded.iterdir()) == sorted(p.name for p in whole.iterdir())


def _assert_same_reports(whole: dict[str, Any], sharded: dict[str, Any]) -> None:
    assert sharded["params"] == whole["params"]
    assert sharded["docs"] == whole["docs"]
    for key in ("passages", "empty_docs", "faiss_gpus", "index_bytes"):
        assert sharded["stats"][key] == whole["stats"][key], key
    assert sharded["stats"]["shards"] == 3


# ----------------------------------------------------------------- the real encoder
@pytest.mark.parametrize(
    ("kind", "options"),
    [("flat", {}), ("ivf", {"nlist": 16, "nprobe": 3})],
)
def test_minilm_shards_equal_unsharded(kind: str, options: dict[str, Any], tmp_path: Path) -> None:
    """Shard boundaries (58 docs) cut across the encoding chunks (40 docs): same bytes, same hits."""
    docs = _corpus()
    assert len(docs) == 174
    params = {"index": kind, "chunk_docs": 40, **options}
    whole, whole_report = _unsharded(docs, tmp_path, **params)
    sharded, report, shard_reports = _sharded(docs, tmp_path, **params)
    assert [r["params"]["shard"]["corpus_docs"] for r in shard_reports] == [None if kind == "flat" else 174] * 3
    assert sum(r["stats"]["passages"] for r in shard_reports) == report["stats"]["passages"] > len(docs)
    assert report["params"]["index"] == kind
    if kind == "ivf":
        assert (report["params"]["nlist"], report["params"]["nprobe"]) == (16, 3)
    _assert_same_reports(whole_report, report)
    _assert_same_folder(whole, sharded)

    a, b = dense.open(whole, whole_report), dense.open(sharded, report)
    for query in QUERIES:
        hits = b.search(query, k=20)
        assert hits == a.search(query, k=20)
        assert len(hits) == 20 and hits[0].score > 0.3
    qid_queries = [(str(i), q) for i, q in enumerate(QUERIES)]
    assert b.batch_search(qid_queries, k=50) == a.batch_search(qid_queries, k=50)
    # The long document's passages (shard 3) keep their global doc ordinal.
    assert b.search("lighthouse keeper polishing the brass lens", k=1)[0].docid == "long.appendix"


# ------------------------------------------------------------------- a stand-in encoder
class _PointsEncoder:
    """Text ``"doc A B"`` has passages ``points[A:B]`` (none when A == B): fast and deterministic."""

    name = "points-stub"
    dim = 32
    max_tokens = 256
    device = "cpu"

    def __init__(self, points: np.ndarray) -> None:
        self.points = points
        self.encoded_docs = 0

    @staticmethod
    def _span(text: str) -> tuple[int, int]:
        _, a, b = text.split()
        return int(a), int(b)

    def passage_counts(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        return np.asarray([b - a for a, b in map(self._span, texts)], dtype=np.int64)

    def encode_docs(self, texts: Sequence[str], **options: Any) -> tuple[np.ndarray, np.ndarray]:
        self.encoded_docs += len(texts)
        spans = [self._span(text) for text in texts]
        rows = [row for a, b in spans for row in range(a, b)]
        return self.points[rows].reshape(len(rows), self.dim), self.passage_counts(texts)


def _clustered(rng: np.random.Generator, n: int, clusters: int) -> np.ndarray:
    centers = rng.normal(size=(clusters, 32)).astype(np.float32)
    points = centers[rng.integers(0, clusters, size=n)] + 0.35 * rng.normal(size=(n, 32)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def _point_docs(n_passages: int, seed: int = 0) -> list[Doc]:
    """Docs of 0 to 3 passages each (a few empty), covering rows 0 .. n_passages - 1 in order."""
    rng = np.random.default_rng(seed)
    docs, row = [], 0
    while row < n_passages:
        take = min(int(rng.choice([0, 1, 1, 1, 2, 3])), n_passages - row)
        docs.append(Doc(id=f"d{len(docs)}", text=f"doc {row} {row + take}"))
        row += take
    return docs


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> _PointsEncoder:
    points = _clustered(np.random.default_rng(3), 4000, 60)
    encoder = _PointsEncoder(points)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: encoder)
    return encoder


def _same_hits(a: dense.DenseSearcher, b: dense.DenseSearcher, queries: np.ndarray, k: int) -> int:
    """Asserts equal hits (ids, scores, ranks); returns how many queries got all ``k``."""
    got, want = b.search_vectors(queries, k), a.search_vectors(queries, k)
    assert got == want
    assert all(hits for hits in got)
    return sum(len(hits) == k for hits in got)


def test_tuned_ivf_shards_equal_unsharded(stub: _PointsEncoder, tmp_path: Path) -> None:
    """Knobs tuned on the merged index as on the unsharded one; empty documents keep their place."""
    docs = _point_docs(2400)
    whole, whole_report = _unsharded(docs, tmp_path, index="ivf", target_recall=0.99, chunk_docs=300)
    sharded, report, _ = _sharded(docs, tmp_path, index="ivf", target_recall=0.99, chunk_docs=300)
    params = report["params"]
    assert params["nlist"] == dense.default_nlist(2400) and params["tune_queries"] == 1000
    assert params["tuned_recall"] >= 0.99 and params["nprobe"] >= dense.default_knobs("ivf", params["nlist"])["nprobe"]
    assert report["stats"]["empty_docs"] > 0
    _assert_same_reports(whole_report, report)
    _assert_same_folder(whole, sharded)
    queries = _clustered(np.random.default_rng(11), 50, 60)
    assert _same_hits(dense.open(whole, whole_report), dense.open(sharded, report), queries, 20) == 50
    narrow = {"nprobe": 1}  # the same at any nprobe: the same lists hold the same entries
    _same_hits(dense.open(whole, whole_report, **narrow), dense.open(sharded, report, **narrow), queries, 20)


def test_auto_decides_from_the_whole_corpus_and_ivfpq_merges(
    stub: _PointsEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each shard alone would be flat (too small for auto or for ivfpq); the corpus is ivfpq."""
    monkeypatch.setattr(dense, "AUTO_FLAT_MAX", 2000)
    docs = _point_docs(2400, seed=1)
    options = {"nprobe": 6, "refine_factor": 4}  # given, so no timing decides between refine factors
    whole, whole_report = _unsharded(docs, tmp_path, **options)
    sharded, report, shard_reports = _sharded(docs, tmp_path, **options)
    assert all(r["stats"]["passages"] < dense.IVFPQ_MIN_PASSAGES for r in shard_reports)
    assert report["params"]["index"] == "ivfpq" and report["params"]["index_requested"] == "auto"
    assert report["params"]["nlist"] == dense.default_nlist(2400)
    _assert_same_reports(whole_report, report)
    # Fast-scan blocks pad their last 32 codes with bytes that differ; every entry is the same.
    _assert_same_folder(whole, sharded, index_bytes=False)
    queries = _clustered(np.random.default_rng(12), 50, 60)
    assert _same_hits(dense.open(whole, whole_report), dense.open(sharded, report), queries, 20) == 50
    narrow = {"nprobe": 2, "refine_factor": 1}
    _same_hits(dense.open(whole, whole_report, **narrow), dense.open(sharded, report, **narrow), queries, 20)


def test_hnsw_is_built_at_merge_from_the_shard_vectors(stub: _PointsEncoder, tmp_path: Path) -> None:
    docs = _point_docs(900, seed=2)
    options = {"index": "hnsw", "hnsw_m": 8, "ef_construction": 40}
    whole, whole_report = _unsharded(docs, tmp_path, **options)
    encoded = stub.encoded_docs
    sharded, report, _ = _sharded(docs, tmp_path, **options)
    assert stub.encoded_docs - encoded == len(docs)  # hnsw needs no plan pass: each doc encoded once
    assert report["params"]["index"] == "hnsw"
    _assert_same_reports(whole_report, report)
    _assert_same_folder(whole, sharded)  # one thread: the very same graph
    queries = _clustered(np.random.default_rng(13), 30, 60)
    assert _same_hits(dense.open(whole, whole_report), dense.open(sharded, report), queries, 10) == 30


def test_codec_trained_once_on_the_unsharded_sample(stub: _PointsEncoder, tmp_path: Path) -> None:
    """Above 10,000 passages the plan encodes only the documents holding the training rows."""
    stub.points = _clustered(np.random.default_rng(5), 14_000, 60)
    docs = _point_docs(14_000, seed=3)
    shared = dense.prepare_shards(_factory(docs), tmp_path / "work", {"index": "ivf", "nlist": 8}, progress=False)
    plan = json.loads(Path(shared["shard_plan"]).read_text())
    assert (plan["index"], plan["nlist"], plan["passages"], plan["docs"]) == ("ivf", 8, 14_000, len(docs))
    rows = dense.training_rows(14_000, 8)
    assert len(rows) == 10_000
    starts = np.cumsum([0, *(stub.passage_counts([d.text for d in docs]))])
    holders = np.unique(np.searchsorted(starts, rows, side="right") - 1)
    assert stub.encoded_docs == len(holders) < len(docs)

    import faiss

    codec = faiss.read_index(str(tmp_path / "work" / plan["codec"]))
    assert codec.is_trained and codec.ntotal == 0
    reference = dense.make_index(faiss, "ivf", 32, nlist=8)
    reference.train(stub.points[rows])
    assert faiss.serialize_index(codec).tobytes() == faiss.serialize_index(reference).tobytes()


def test_mismatched_shards_are_refused(stub: _PointsEncoder, tmp_path: Path) -> None:
    docs = _point_docs(300, seed=4)
    parts = _thirds(docs)
    plans = [
        dense.prepare_shards(_factory(docs), tmp_path / f"w{nlist}", {"index": "ivf", "nlist": nlist}, progress=False)
        for nlist in (4, 5)
    ]
    folders, reports = [], []
    for number, (part, shared) in enumerate(zip(parts, [plans[0], plans[0], plans[1]], strict=True)):
        folder = tmp_path / f"s{number}"
        reports.append(dense.build(_factory(part), folder, progress=False, checkpoint_dir=tmp_path / "ck", **shared))
        folders.append(folder)
    with pytest.raises(ValueError, match="another plan"):
        dense.merge_shards(folders, tmp_path / "out", reports, progress=False)
    with pytest.raises(ValueError, match="plan counted"):  # a shard left out
        dense.merge_shards(folders[:2], tmp_path / "out", reports[:2], progress=False)
    with pytest.raises(BundleCorruptError, match="differ from its plan"):
        dense.build(_factory(parts[0]), tmp_path / "x", progress=False, **{**plans[0], "overlap": 16})
    with pytest.raises(BundleCorruptError, match="not a dense shard"):
        whole, report = _unsharded(docs, tmp_path)
        dense.merge_shards([whole], tmp_path / "out", [report], progress=False)
