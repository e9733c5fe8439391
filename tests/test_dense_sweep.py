"""Dense backend sweep: answers against a numpy brute force where ties and cuts are hard, and
bad options that must fail with one clear line before any document is encoded.

The searcher tests write a flat Faiss index of small integer vectors straight into a folder, so
that every inner product is exact in float32: equal scores are really equal, the reference
ranking (score descending, then docstore order) is exact, and no encoder is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spacerini.backends import dense

DIM = 8


def _flat_folder(tmp_path: Path, vectors: np.ndarray, passage_doc: np.ndarray, n_docs: int) -> dense.DenseSearcher:
    import faiss

    folder = tmp_path / "dense"
    folder.mkdir()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(folder / dense.INDEX_FILE))
    np.save(folder / dense.PASSAGE_DOC_FILE, passage_doc.astype(np.int32))
    (folder / dense.IDS_FILE).write_text(json.dumps([f"doc{i:03d}" for i in range(n_docs)]))
    return dense.open(folder, {"params": {"index": "flat", "dim": int(vectors.shape[1])}})


def _brute(vectors: np.ndarray, passage_doc: np.ndarray, query: np.ndarray, n: int) -> list[tuple[str, float]]:
    """Each document's best passage score, ranked by score then docstore order."""
    scores = vectors.astype(np.float64) @ query.astype(np.float64)
    best: dict[int, float] = {}
    for row, ordinal in enumerate(passage_doc.tolist()):
        best[ordinal] = max(best.get(ordinal, -np.inf), float(scores[row]))
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [(f"doc{ordinal:03d}", score) for ordinal, score in ranked]


@pytest.fixture(scope="module")
def tied() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """90 documents (some of several passages), most of them sharing their vectors with others:
    a corpus with duplicates, whose scores tie exactly at every cut."""
    rng = np.random.default_rng(7)
    distinct = rng.integers(-2, 3, size=(12, DIM)).astype(np.float32) / 8  # exact in float32
    passage_doc = np.sort(np.concatenate([np.arange(90), rng.integers(0, 90, size=30)]))
    vectors = distinct[rng.integers(0, len(distinct), size=len(passage_doc))]
    queries = rng.integers(-2, 3, size=(25, DIM)).astype(np.float32) / 8
    return vectors, passage_doc, queries


def test_flat_ties_equal_brute_force_at_every_depth(tied: Any, tmp_path: Path) -> None:
    vectors, passage_doc, queries = tied
    searcher = _flat_folder(tmp_path, vectors, passage_doc, 90)
    for query in queries:
        for n in (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 90, 200):
            got = [(hit.docid, hit.score) for hit in searcher.search_vectors(query[None, :], n)[0]]
            assert got == _brute(vectors, passage_doc, query, n), n
            assert [hit.rank for hit in searcher.search_vectors(query[None, :], n)[0]] == list(range(1, len(got) + 1))


def test_flat_pages_are_slices_of_one_ranking(tied: Any, tmp_path: Path) -> None:
    """``search(q, k, offset)`` is ``search_vectors(q, offset + k)[offset:]``: each page must be
    the same slice of the full ranking, with no document on two pages and none skipped."""
    vectors, passage_doc, queries = tied
    searcher = _flat_folder(tmp_path, vectors, passage_doc, 90)
    batch = searcher.search_vectors(queries, 90)
    for qi, query in enumerate(queries):
        full = searcher.search_vectors(query[None, :], 90)[0]
        assert batch[qi] == full  # a batch of 25 queries (Faiss's BLAS path) answers as one alone
        for k in (1, 4, 7, 10):
            pages = [searcher.search_vectors(query[None, :], off + k)[0][off:] for off in range(0, 90, k)]
            assert [hit for page in pages for hit in page] == full


# ------------------------------------------------------------------ options refused early
def _docs(n: int) -> list[Any]:
    from spacerini.records import Doc

    return [Doc(id=f"d{i}", text=f"document number {i} about topic {i % 3}") for i in range(n)]


class _Counting:
    """A docs factory that counts how often the corpus was read."""

    def __init__(self, docs: list[Any]) -> None:
        self.docs = docs
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return iter(self.docs)


def test_nlist_above_the_passages_is_one_clear_error(tmp_path: Path) -> None:
    from spacerini.errors import BackendParameterError

    docs = _Counting(_docs(6))
    with pytest.raises(BackendParameterError, match=r"--nlist 7 is more than the 6 passages"):
        dense.build(docs, tmp_path / "a", index="ivf", nlist=7, progress=False, checkpoint_dir=tmp_path / "ck")
    # At the limit it builds, and an IVF index probing all its lists answers as brute force does.
    report = dense.build(
        docs, tmp_path / "b", index="ivf", nlist=6, nprobe=6, progress=False, checkpoint_dir=tmp_path / "ck"
    ).to_dict()
    assert report["params"]["nlist"] == 6
    searcher = dense.open(tmp_path / "b", report)
    import faiss

    ivf = faiss.extract_index_ivf(searcher._index)
    ivf.make_direct_map()
    vectors = np.vstack([ivf.reconstruct(i) for i in range(6)])
    query = searcher.encode_queries(["topic 1"])[0]
    expected = sorted(range(6), key=lambda i: (-float(vectors[i] @ query), i))
    assert [hit.docid for hit in searcher.search("topic 1", k=6)] == [f"d{i}" for i in expected]


def test_an_encoder_that_is_not_a_model_fails_before_the_corpus_is_read(tmp_path: Path) -> None:
    from spacerini.backends import check_params
    from spacerini.errors import DependencyMissingError

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    docs = _Counting(_docs(3))
    for runtime in ("torch", "onnx"):
        with pytest.raises(DependencyMissingError, match="holds no model"):
            dense.build(docs, tmp_path / "x", encoder=str(not_a_model), runtime=runtime, progress=False)
    assert docs.calls == 0
    # The bundle's option check (before any document is read) refuses it too, and a missing
    # folder and an uncached hub name, each with its own reason.
    with pytest.raises(DependencyMissingError, match="holds no model"):
        check_params("dense", {"encoder": str(not_a_model)})
    with pytest.raises(DependencyMissingError, match="no such folder"):
        check_params("dense", {"encoder": str(tmp_path / "missing") + "/"})
    with pytest.raises(DependencyMissingError, match="not available offline"):
        check_params("dense", {"encoder": "no-such-org/no-such-encoder-xyz"})
    # The ONNX runtimes need the fast tokenizer's tokenizer.json.
    (not_a_model / "config.json").write_text("{}")
    with pytest.raises(DependencyMissingError, match="tokenizer.json"):
        check_params("dense", {"encoder": str(not_a_model), "runtime": "onnx"})
    check_params("dense", {"encoder": "all-MiniLM-L6-v2", "runtime": "onnx-int8"})


def test_options_that_do_not_fit_together_fail_before_the_corpus_is_read(tmp_path: Path) -> None:
    from spacerini.backends import check_params
    from spacerini.errors import BackendParameterError, SpaceriniError

    # Each option alone is in range (the options dataclass accepts it); together they are not.
    with pytest.raises(BackendParameterError, match=r"--overlap must be .* below --passage-tokens \(256\), not 300"):
        check_params("dense", {"overlap": 300})
    with pytest.raises(BackendParameterError, match=r"--passage-tokens \(64\), not 64"):
        check_params("dense", {"passage_tokens": 64, "overlap": 64})
    # An ONNX runtime on a GPU device: one SpaceriniError line, whichever is found first.
    with pytest.raises(SpaceriniError):
        check_params("dense", {"runtime": "onnx", "device": "cuda"})
    check_params("dense", {"passage_tokens": 64, "overlap": 63, "index": "ivf", "nlist": 4})


def test_search_knobs_out_of_range_are_refused_at_open(tmp_path: Path) -> None:
    """``dense.open``'s knobs: Faiss would search an HNSW graph with efSearch -1 and return
    fewer hits than asked, fail on nprobe -1, and ``0`` used to be dropped for the stored value."""
    import faiss

    from spacerini.errors import BackendParameterError

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(60, DIM)).astype(np.float32)
    folder = tmp_path / "dense"
    folder.mkdir()
    index = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)
    faiss.write_index(index, str(folder / dense.INDEX_FILE))
    np.save(folder / dense.PASSAGE_DOC_FILE, np.arange(60, dtype=np.int32))
    (folder / dense.IDS_FILE).write_text(json.dumps([f"doc{i:03d}" for i in range(60)]))
    report = {"params": {"index": "hnsw", "dim": DIM, "ef_search": 32}}
    for bad in ({"ef_search": -1}, {"ef_search": 0}, {"nprobe": -2}, {"nprobe": 0}, {"refine_factor": -1}, {"ef_search": True}):
        with pytest.raises(BackendParameterError, match="must be a positive integer"):
            dense.open(folder, report, **bad)
    # In range, the widest search over 60 points finds what brute force finds.
    searcher = dense.open(folder, report, ef_search=100)
    query = rng.normal(size=(1, DIM)).astype(np.float32)
    got = [hit.docid for hit in searcher.search_vectors(query, 10)[0]]
    assert got == [f"doc{i:03d}" for i in np.argsort(-(vectors @ query[0]), kind="stable")[:10]]
