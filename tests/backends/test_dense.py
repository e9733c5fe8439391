"""Dense backend: Faiss results against brute force, ANN recall, passages, resume, offline loading.

``tests/data/dense_corpus.jsonl`` holds 174 documents: the first paragraph of the docstrings of
173 Python standard-library functions, and one long document (stdlib module docstrings,
about 1,300 tokens) that ends with an appendix about a lighthouse keeper.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spacerini import encoders
from spacerini.backends import dense
from spacerini.device import best_device, faiss_gpus
from spacerini.errors import BundleCorruptError, DependencyMissingError, EmptyCorpusError, QueryError
from spacerini.records import Doc

DATA = Path(__file__).parent.parent / "data"
CORPUS = DATA / "dense_corpus.jsonl"
QUERIES = [
    "compress data with gzip",
    "parse command line options",
    "find the longest common path prefix",
    "random number generator seed",
    "lighthouse keeper polishing the brass lens",
]


def _docs() -> list[Doc]:
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    return [Doc(id=row["id"], text=row["text"]) for row in rows]


DOCS = _docs()


def _factory(docs: list[Doc]) -> Any:
    def factory() -> Iterator[Doc]:
        return iter(docs)

    return factory


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dense.DenseSearcher]:
    folder = tmp_path_factory.mktemp("dense") / "dense"
    report = dense.build(
        _factory(DOCS), folder, progress=False, chunk_docs=64,
        checkpoint_dir=tmp_path_factory.mktemp("ckpt") / "c",
    ).to_dict()
    return folder, report, dense.open(folder, report)


def test_corpus_pinned() -> None:
    assert len(DOCS) == 174
    assert DOCS[0].id == "os.path.commonpath"
    assert DOCS[-1].id == "long.appendix"
    assert DOCS[-1].text.endswith("polishing salt spray from the lantern glass.")


def test_report_and_files(built: tuple[Path, dict[str, Any], dense.DenseSearcher]) -> None:
    folder, report, _ = built
    params, stats = report["params"], report["stats"]
    assert report["docs"] == 174
    assert params["index"] == "flat" and params["index_requested"] == "auto"
    assert params["dim"] == 384
    assert params["passage_tokens"] == 254  # 256 clipped to MiniLM's 256-token window minus [CLS]/[SEP]
    assert params["overlap"] == 32
    assert stats["passages"] > report["docs"]  # the long document was split
    assert stats["empty_docs"] == 0
    assert json.loads((folder / "ids.json").read_text()) == [d.id for d in DOCS]
    passage_doc = np.load(folder / "passage_doc.npy")
    assert passage_doc.dtype == np.int32 and len(passage_doc) == stats["passages"]
    assert json.loads((folder / "dense.json").read_text()) == params


def test_flat_equals_brute_force(built: tuple[Path, dict[str, Any], dense.DenseSearcher]) -> None:
    folder, report, searcher = built
    enc = encoders.load_encoder()
    params = report["params"]
    # The passage -> doc map, recomputed independently from the splitter.
    owners: list[int] = []
    passages: list[str] = []
    for ordinal, doc in enumerate(DOCS):
        parts = enc.split(doc.text, max_tokens=params["passage_tokens"], overlap=params["overlap"])
        owners.extend([ordinal] * len(parts))
        passages.extend(parts)
    assert np.array_equal(np.load(folder / "passage_doc.npy"), np.asarray(owners, dtype=np.int32))
    index = searcher._index
    matrix = index.reconstruct_n(0, index.ntotal)
    # Spot-check the stored vectors against a fresh encoding of their passages.
    sample = [0, 50, 100, *range(len(passages) - 6, len(passages))]
    fresh = enc.encode([passages[i] for i in sample])
    np.testing.assert_allclose(matrix[sample], fresh, atol=1e-5)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)

    qvecs = enc.encode(QUERIES)
    sims = qvecs @ matrix.T
    doc_scores = np.full((len(QUERIES), len(DOCS)), -np.inf, dtype=np.float64)
    for row, ordinal in enumerate(owners):
        doc_scores[:, ordinal] = np.maximum(doc_scores[:, ordinal], sims[:, row])
    for qi, query in enumerate(QUERIES):
        hits = searcher.search(query, k=20)
        expected = sorted(range(len(DOCS)), key=lambda o: (-doc_scores[qi, o], o))[:20]
        got_scores = np.array([h.score for h in hits])
        np.testing.assert_allclose(got_scores, doc_scores[qi, expected], atol=1e-5)
        # Same order, except where two scores are within float noise of each other.
        for hit, ordinal in zip(hits, expected, strict=True):
            if hit.docid != DOCS[ordinal].id:
                assert abs(hit.score - doc_scores[qi, ordinal]) < 1e-5
        assert [h.rank for h in hits] == list(range(1, 21))
        assert all(h.backend == "dense" for h in hits)


def test_long_document_found_by_phrase_near_its_end(built: tuple[Path, dict[str, Any], dense.DenseSearcher]) -> None:
    _, _, searcher = built
    enc = encoders.load_encoder()
    long_doc = DOCS[-1]
    assert enc.count_tokens(long_doc.text) > 1000
    hits = searcher.search("lighthouse keeper polishing the brass lens", k=3)
    assert hits[0].docid == "long.appendix"
    # Without passages the model would only read the first 256 tokens, which miss the appendix.
    truncated = float(enc.encode(["lighthouse keeper polishing the brass lens"])[0] @ enc.encode([long_doc.text])[0])
    assert hits[0].score > truncated + 0.2


def test_split_windows() -> None:
    enc = encoders.load_encoder()
    text = " ".join(f"word{i}" for i in range(300))  # "word", "##N" pieces: several hundred tokens
    n_tokens = enc.count_tokens(text)
    parts = enc.split(text, max_tokens=100, overlap=20)
    step = 80
    assert len(parts) == 1 + -(-(n_tokens - 100) // step)
    assert text.startswith(parts[0]) and text.endswith(parts[-1])
    assert all(enc.count_tokens(p) <= 101 for p in parts)
    # Consecutive passages share their overlap: the tail of one starts the next.
    assert parts[0][-20:] in parts[1]
    assert enc.split("   ", max_tokens=100, overlap=20) == []
    assert enc.split("short text", max_tokens=100, overlap=20) == ["short text"]
    with pytest.raises(ValueError):
        enc.split(text, max_tokens=10, overlap=10)


def test_pagination_and_batch(built: tuple[Path, dict[str, Any], dense.DenseSearcher]) -> None:
    _, _, searcher = built
    full = searcher.search("json", k=8)
    page = searcher.search("json", k=3, offset=2)
    assert page == full[2:5]
    assert [h.rank for h in page] == [3, 4, 5]
    batch = searcher.batch_search([(f"q{i}", q) for i, q in enumerate(QUERIES)], k=8)
    for i, query in enumerate(QUERIES):
        single = searcher.search(query, k=8)
        assert [h.docid for h in batch[f"q{i}"]] == [h.docid for h in single]
        np.testing.assert_allclose([h.score for h in batch[f"q{i}"]], [h.score for h in single], atol=1e-5)
    # k larger than the corpus returns every document once.
    everything = searcher.search("anything", k=500)
    assert sorted(h.docid for h in everything) == sorted(d.id for d in DOCS)
    with pytest.raises(QueryError):
        searcher.search("   ")
    with pytest.raises(QueryError):
        searcher.batch_search([("q1", "")], k=3)


def test_reopen_round_trip_and_corruption(built: tuple[Path, dict[str, Any], dense.DenseSearcher], tmp_path: Path) -> None:
    folder, report, searcher = built
    reopened = dense.open(folder, report)
    for query in QUERIES:
        assert reopened.search(query, k=5) == searcher.search(query, k=5)
    reopened.close()
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("index.faiss", "ids.json", "dense.json"):
        (broken / name).write_bytes((folder / name).read_bytes())
    np.save(broken / "passage_doc.npy", np.load(folder / "passage_doc.npy")[:-1])
    with pytest.raises(BundleCorruptError):
        dense.open(broken, report)
    (broken / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(BundleCorruptError):
        dense.open(broken, report)


def _clustered(rng: np.random.Generator, n: int, dim: int, clusters: int) -> np.ndarray:
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    points = centers[rng.integers(0, clusters, size=n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_ann_tuned_to_target_recall(kind: str, tmp_path: Path) -> None:
    """Build-time tuning picks the smallest search setting reaching the target; held-out queries agree."""
    import faiss

    from spacerini.backends.dense import tune as _dense_tune

    rng = np.random.default_rng(7)
    n, dim = 20_000, 64
    data = _clustered(rng, n + 200, dim, 200)  # held-out queries come from the same clusters
    vectors, queries = data[:n], data[n:]
    chunks = []
    for number, start in enumerate(range(0, n, 5000)):
        vec_path, doc_path = dense._chunk_paths(tmp_path, number)
        dense._save_npy(vec_path, vectors[start : start + 5000])
        dense._save_npy(doc_path, np.arange(start, min(n, start + 5000), dtype=np.int32))
        chunks.append((vec_path, doc_path))
    nlist = dense.default_nlist(n)
    index = dense._build_index(
        faiss, kind, chunks, dim=dim, n_passages=n, hnsw_m=6, ef_construction=40, nlist=nlist, gpus=0,
        progress=False,
    )
    # Start the ladders low (build() starts at the benchmarked defaults), so tuning has work to do.
    floor = {"ef_search": 16} if kind == "hnsw" else {"nprobe": 1, "refine_factor": 1}
    tuned = _dense_tune.tune(
        faiss, index, kind, chunks, n_passages=n, target=0.95, sample=500,
        set_knobs=lambda idx, knobs: dense.apply_knobs(faiss, idx, kind, knobs), floor=floor,
    )
    assert tuned.recall >= 0.95 and tuned.queries == 500
    knob = "ef_search" if kind == "hnsw" else "nprobe"
    ladder = _dense_tune.EF_LADDER if kind == "hnsw" else _dense_tune.NPROBE_LADDER
    assert tuned.params[knob] > floor[knob]
    # One step down the ladder (same refine factor) misses the target: the choice is the smallest.
    smaller = [value for value in ladder if value < tuned.params[knob]]
    if smaller:
        below = [t for t in tuned.tried if t.get(knob) == smaller[-1] and t.get("refine_factor") == tuned.params.get("refine_factor")]
        assert below and all(t["recall"] < 0.95 for t in below), tuned.tried

    folder = tmp_path / kind
    folder.mkdir()
    faiss.write_index(index, str(folder / "index.faiss"))
    np.save(folder / "passage_doc.npy", np.arange(n, dtype=np.int32))
    (folder / "ids.json").write_text(json.dumps([str(i) for i in range(n)]))
    params = {"index": kind, "dim": dim, "nlist": nlist, **tuned.params}
    searcher = dense.open(folder, {"params": params})
    got = searcher.search_vectors(queries, 10)
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :10]
    recall = np.mean([len({int(h.docid) for h in hits} & set(exact[i].tolist())) / 10 for i, hits in enumerate(got)])
    assert recall >= 0.93, f"{kind} held-out recall@10 {recall:.3f} with {tuned.params}"
    if kind == "ivfpq":  # re-ranked with the exact vectors: scores are exact cosines
        best = [max(hits, key=lambda h: h.score) for hits in got]
        np.testing.assert_allclose(
            [h.score for h in best], [float(queries[i] @ vectors[int(h.docid)]) for i, h in enumerate(best)], atol=1e-5
        )
    # A starved search is measurably worse, so the recall is not met by accident.
    starved_knob = {"ef_search": 10} if kind == "hnsw" else {"nprobe": 1}
    starved = dense.open(folder, {"params": params}, **starved_knob).search_vectors(queries, 10)
    starved_recall = np.mean([len({int(h.docid) for h in hits} & set(exact[i].tolist())) / 10 for i, hits in enumerate(starved)])
    assert starved_recall < recall


class _CountingEncoder:
    """Wraps the real encoder, counts encode_docs calls (one per chunk), and can fail after ``fail_after`` calls."""

    def __init__(self, inner: encoders.Encoder, fail_after: int | None = None) -> None:
        self.inner = inner
        self.calls = 0
        self.fail_after = fail_after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_docs(self, texts: list[str], **options: Any) -> tuple[np.ndarray, np.ndarray]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated Ctrl-C")
        self.calls += 1
        return self.inner.encode_docs(texts, **options)


def test_resume_skips_encoded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = DOCS[:30]
    monkeypatch.setenv("SPACERINI_CACHE", str(tmp_path / "cache"))
    real = encoders.load_encoder()

    failing = _CountingEncoder(real, fail_after=2)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: failing)
    with pytest.raises(KeyboardInterrupt):
        dense.build(_factory(docs), tmp_path / "a", progress=False, chunk_docs=10)
    (ckpt,) = [p for p in (tmp_path / "cache" / "dense-checkpoints").iterdir() if p.is_dir()]
    assert len(list(ckpt.glob("chunk_*.vec.npy"))) == 2

    counting = _CountingEncoder(real)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: counting)
    report = dense.build(_factory(docs), tmp_path / "b", progress=False, chunk_docs=10)
    assert counting.calls == 1  # only the third chunk was encoded
    assert report.stats["resumed_chunks"] == 2
    assert not ckpt.exists()  # removed after the successful build

    fresh = _CountingEncoder(real)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: fresh)
    dense.build(_factory(docs), tmp_path / "c", progress=False, chunk_docs=10)
    assert fresh.calls == 3
    resumed = dense.open(tmp_path / "b", report.to_dict())._index
    clean = dense.open(tmp_path / "c", report.to_dict())._index
    np.testing.assert_allclose(resumed.reconstruct_n(0, resumed.ntotal), clean.reconstruct_n(0, clean.ntotal), atol=1e-6)

    # A different corpus (one text length changed) must not reuse those checkpoints.
    other = [*docs[:-1], Doc(id=docs[-1].id, text=docs[-1].text + " changed")]
    changed = _CountingEncoder(real, fail_after=1)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: changed)
    with pytest.raises(KeyboardInterrupt):
        dense.build(_factory(other), tmp_path / "d", progress=False, chunk_docs=10)
    again = _CountingEncoder(real)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: again)
    dense.build(_factory(docs), tmp_path / "e", progress=False, chunk_docs=10)
    assert again.calls == 3


def test_concurrent_build_of_the_same_corpus_keeps_its_own_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A build that finds the shared checkpoint folder locked neither reads nor removes it."""
    from filelock import FileLock

    docs = DOCS[:12]
    parent = tmp_path / "ck"
    real = encoders.load_encoder()
    failing = _CountingEncoder(real, fail_after=1)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: failing)
    with pytest.raises(KeyboardInterrupt):
        dense.build(_factory(docs), tmp_path / "a", progress=False, chunk_docs=5, checkpoint_dir=parent)
    (shared,) = [p for p in parent.iterdir() if p.is_dir()]
    before = sorted(p.name for p in shared.iterdir())
    assert before == ["chunk_0000000.doc.npy", "chunk_0000000.vec.npy"]

    counting = _CountingEncoder(real)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: counting)
    with FileLock(str(parent / f"{shared.name}.lock")), caplog.at_level("WARNING", logger="spacerini"):
        report = dense.build(_factory(docs), tmp_path / "b", progress=False, chunk_docs=5, checkpoint_dir=parent)
    assert counting.calls == 3 and report.stats["resumed_chunks"] == 0  # it did not use the held folder
    assert sorted(p.name for p in shared.iterdir()) == before  # nor touch it
    assert [p for p in parent.iterdir() if p.is_dir()] == [shared]  # and its private folder is gone
    assert "another build of this corpus" in caplog.text

    resumed = _CountingEncoder(real)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: resumed)
    dense.build(_factory(docs), tmp_path / "c", progress=False, chunk_docs=5, checkpoint_dir=parent)
    assert resumed.calls == 2 and not shared.exists()  # the lock is free again: it resumes


class _ClusterEncoder:
    """A stand-in encoder: each text's vector is a fixed point of a clustered cloud (fast, deterministic)."""

    name = "cluster-stub"
    dim = 32
    max_tokens = 256
    device = "cpu"

    def __init__(self, points: np.ndarray) -> None:
        self.points = points

    def encode_docs(self, texts: list[str], **options: Any) -> tuple[np.ndarray, np.ndarray]:
        rows = [int(text.split()[1]) for text in texts]
        return self.points[rows], np.ones(len(texts), dtype=np.int64)


def test_ivfpq_build_tunes_and_stores_its_knobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``index="ivfpq"`` end to end: trained, tuned to the target on its own passages, stored, reopened."""
    import faiss

    n = 3000
    points = _clustered(np.random.default_rng(3), n + 100, 32, 60)
    stub = _ClusterEncoder(points)
    monkeypatch.setattr(dense, "load_encoder", lambda *a, **k: stub)
    docs = [Doc(id=f"p{i}", text=f"point {i}") for i in range(n)]
    report = dense.build(
        _factory(docs), tmp_path / "q", index="ivfpq", target_recall=0.99, progress=False, checkpoint_dir=tmp_path / "ck"
    )
    params = report.params
    assert params["index"] == "ivfpq" and params["nlist"] == dense.default_nlist(n)
    assert params["target_recall"] == 0.99 and params["tuned_recall"] >= 0.99 and params["tune_queries"] == 1000
    floor = dense.default_knobs("ivfpq", params["nlist"])
    assert params["nprobe"] >= floor["nprobe"] and params["refine_factor"] >= floor["refine_factor"]
    searcher = dense.open(tmp_path / "q", report.to_dict())
    ivf = faiss.extract_index_ivf(searcher._index)
    assert ivf.nprobe == params["nprobe"] and faiss.downcast_index(searcher._index).k_factor == params["refine_factor"]
    queries = points[n:]
    exact = np.argsort(-(queries @ points[:n].T), axis=1, kind="stable")[:, :10]
    got = searcher.search_vectors(queries, 10)
    recall = np.mean([len({int(h.docid[1:]) for h in hits} & set(exact[i].tolist())) / 10 for i, hits in enumerate(got)])
    assert recall >= 0.95, recall
    # Deep searches: once the probed lists have run out of candidates for a query (a row of -1),
    # that query is not searched again (an ivfpq ranking is built in levels of growing depth).
    calls: list[tuple[list[bytes], list[bool]]] = []
    narrow = dense.open(tmp_path / "q", report.to_dict(), nprobe=1)
    real_search = narrow._faiss_search

    def spy(vectors: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = real_search(vectors, fetch)
        calls.append(([row.tobytes() for row in vectors], (rows[:, -1] < 0).tolist()))
        return scores, rows

    monkeypatch.setattr(narrow, "_faiss_search", spy)
    deep = narrow.search_vectors(queries[:3], 500)
    assert all(0 < len(hits) < 500 for hits in deep)
    ran_out: set[bytes] = set()
    for searched, exhausted in calls:
        assert not ran_out & set(searched)
        ran_out |= {key for key, done in zip(searched, exhausted, strict=True) if done}
    assert len(ran_out) == 3
    # Knobs given explicitly are kept, not tuned.
    fixed = dense.build(
        _factory(docs), tmp_path / "f", index="ivfpq", nprobe=3, progress=False, checkpoint_dir=tmp_path / "ck"
    ).params
    assert (fixed["nprobe"], fixed["refine_factor"]) == (3, dense.IVFPQ_REFINE_FACTOR) and "tuned_recall" not in fixed


def test_encoder_never_reaches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(address, tuple) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"network access attempted: {address}")
        return real_connect(self, address)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", guarded)
    saved = dict(encoders._CACHE)
    encoders._CACHE.clear()
    try:
        enc = encoders.load_encoder("all-MiniLM-L6-v2", device="cpu")
        vectors = enc.encode(["offline encoding works"])
        assert vectors.shape == (1, 384)
        assert encoders.model_path("default") == encoders.model_path("all-MiniLM-L6-v2") == enc.source
        with pytest.raises(DependencyMissingError, match="not available offline"):
            encoders.load_encoder("no-such-org/no-such-encoder-xyz", device="cpu")
    finally:
        encoders._CACHE.clear()
        encoders._CACHE.update(saved)
    assert attempts == []


def test_local_folder_encoder(tmp_path: Path) -> None:
    path = encoders.model_path("default")
    assert encoders.model_path(path) == path
    assert encoders.model_path("someone/model-on-the-hub") == "someone/model-on-the-hub"


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="index"):
        dense.build(_factory(DOCS[:3]), tmp_path / "x", index="lsh", progress=False)
    with pytest.raises(ValueError, match="overlap"):
        dense.build(_factory(DOCS[:3]), tmp_path / "x", passage_tokens=32, overlap=32, progress=False)
    with pytest.raises(EmptyCorpusError):
        dense.build(_factory([]), tmp_path / "x", progress=False)


def test_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACERINI_DEVICE", "cpu")
    assert best_device() == "cpu"
    assert faiss_gpus() == 0
    monkeypatch.setenv("SPACERINI_DEVICE", "tpu")
    with pytest.raises(DependencyMissingError):
        best_device()
    import torch

    if not torch.cuda.is_available():
        monkeypatch.setenv("SPACERINI_DEVICE", "cuda")
        with pytest.raises(DependencyMissingError, match="no such device"):
            best_device()
        monkeypatch.delenv("SPACERINI_DEVICE")
        assert best_device() in ("cpu", "mps")


def test_gpu_wiring_with_a_stand_in_for_faiss_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a GPU reported, flat indexes are built and searched through Faiss's GPU calls and saved as
    CPU indexes. faiss-cpu has no GPU API, so identity stand-ins record the calls: this checks the
    wiring, not CUDA (no GPU has been available to this project)."""
    import faiss

    calls: list[str] = []

    class Resources:
        def __init__(self) -> None:
            calls.append("resources")

    def to_gpu(res: Any, device: int, index: Any) -> Any:
        assert isinstance(res, Resources) and device == 0
        calls.append("to_gpu")
        return index

    def to_cpu(index: Any) -> Any:
        calls.append("to_cpu")
        return index

    monkeypatch.setattr(faiss, "StandardGpuResources", Resources, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", to_cpu, raising=False)
    monkeypatch.setattr(dense, "_gpus_for", lambda kind: 1 if kind in ("flat", "ivf") else 0)
    report = dense.build(_factory(DOCS[:12]), tmp_path / "g", index="flat", progress=False, checkpoint_dir=tmp_path / "ck")
    assert report.stats["faiss_gpus"] == 1 and calls == ["resources", "to_gpu", "to_cpu"]
    calls.clear()
    searcher = dense.open(tmp_path / "g", report.to_dict())
    assert calls == ["resources", "to_gpu"] and searcher._gpu_lock is not None
    monkeypatch.setattr(dense, "_gpus_for", lambda kind: 0)
    cpu = dense.open(tmp_path / "g", report.to_dict())
    assert cpu._gpu_lock is None
    query = "lighthouse keeper"
    assert [(h.docid, h.score) for h in searcher.search(query, k=5)] == [(h.docid, h.score) for h in cpu.search(query, k=5)]


def test_bundle_integration(tmp_path: Path) -> None:
    from spacerini.bundle import build_bundle

    bundle = build_bundle(
        DOCS[:20] + DOCS[-1:], tmp_path / "bundle", backends=["dense"],
        backend_params={"dense": {"checkpoint_dir": str(tmp_path / "ck")}}, progress=False,
    )
    hits = bundle.search("lighthouse keeper", k=3, backend="dense")
    assert hits[0].docid == "long.appendix"
    assert hits[0].backend == "dense" and hits[0].snippet
    assert bundle.manifest["backends"]["dense"]["params"]["encoder"] == "all-MiniLM-L6-v2"
    # The named checkpoint folder is kept (only its key-named subfolder is removed; the empty
    # lock file that guards it stays, as in the Hugging Face cache).
    assert (tmp_path / "ck").is_dir()
    assert [p.suffix for p in (tmp_path / "ck").iterdir()] == [".lock"]
    bundle.close()


def test_auto_index_uses_the_benchmarked_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert dense.auto_index(dense.AUTO_FLAT_MAX - 1) == ("flat", {})
    nlist = dense.default_nlist(dense.AUTO_FLAT_MAX)
    assert dense.auto_index(dense.AUTO_FLAT_MAX) == (
        "ivfpq", {"nlist": nlist, "nprobe": dense.default_nprobe("ivfpq", nlist), "refine_factor": dense.IVFPQ_REFINE_FACTOR}
    )
    monkeypatch.setattr(dense, "AUTO_FLAT_MAX", 5)  # so a tiny corpus takes the large-corpus branch
    with caplog.at_level("WARNING", logger="spacerini"):
        report = dense.build(_factory(DOCS[:12]), tmp_path / "a", progress=False, checkpoint_dir=tmp_path / "ck")
    # Too few passages to train 4-bit quantizers: exact flat instead, and it says so.
    assert (report.params["index"], report.params["index_requested"]) == ("flat", "auto")
    assert "too few to train an ivfpq index" in caplog.text
    # HNSW on a corpus too small to tune keeps the benchmarked defaults.
    report = dense.build(_factory(DOCS[:12]), tmp_path / "h", index="hnsw", progress=False, checkpoint_dir=tmp_path / "ck")
    params = report.params
    assert {key: params[key] for key in dense.HNSW_DEFAULTS} == dense.HNSW_DEFAULTS
    assert "tuned_recall" not in params
    searcher = dense.open(tmp_path / "h", report.to_dict())
    assert searcher._index.hnsw.efSearch == dense.HNSW_DEFAULTS["ef_search"]
    assert searcher._index.hnsw.efConstruction == dense.HNSW_DEFAULTS["ef_construction"]
    assert dense.open(tmp_path / "h", report.to_dict(), ef_search=7)._index.hnsw.efSearch == 7
    # Explicit parameters win over the defaults and are stored.
    custom = dense.build(_factory(DOCS[:12]), tmp_path / "c", index="hnsw", hnsw_m=8, ef_search=20, progress=False,
                         checkpoint_dir=tmp_path / "ck").params
    assert (custom["hnsw_m"], custom["ef_search"]) == (8, 20)
    assert dense.open(tmp_path / "c", {"params": custom})._index.hnsw.efSearch == 20
