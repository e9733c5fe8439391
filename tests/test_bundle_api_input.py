"""Bad input to the public Python API: one clear SpaceriniError, never a raw builtin error from
deep inside, a silent skip or lost results (build_bundle, open_bundle, Bundle.search/batch_*/doc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacerini.bundle import build_bundle, open_bundle
from spacerini.errors import (
    BackendNotAvailableError,
    BackendParameterError,
    BundleError,
    DocNotFoundError,
    QueryError,
    SpaceriniError,
    UsageError,
)

DATA = Path(__file__).parent / "data"
QUERIES = [("q1", "search engine"), ("q2", "suffix array")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    return build_bundle(DATA / "tiny.jsonl", out, backends=["bm25", "exact", "bloom"], progress=False)


@pytest.mark.parametrize("backend", ["bloom", "owners"])
def test_search_with_a_backend_that_does_not_rank(tiny, backend: str) -> None:
    with pytest.raises(BackendNotAvailableError, match="does not rank"):
        tiny.search("search engine", backend=backend)
    with pytest.raises(BackendNotAvailableError, match="does not rank"):
        tiny.batch_search(QUERIES, k=3, backend=backend)


@pytest.mark.parametrize("backend", ["bm25", "exact"])
def test_batch_duplicate_qids_are_refused_not_collapsed(tiny, backend: str) -> None:
    dup = [("q1", "search engine"), ("q1", "suffix array")]
    for method in (tiny.batch_search, tiny.batch_search_pairs, tiny.batch_search_trec):
        with pytest.raises(QueryError, match="repeats qid 'q1'"):
            method(dup, k=3, backend=backend)


def test_searcher_batch_search_arrays_checks_its_input(tiny) -> None:
    searcher = tiny.searcher("bm25")
    with pytest.raises(QueryError, match="repeats"):
        searcher.batch_search_arrays([("q1", "search"), ("q1", "suffix")], k=2)
    with pytest.raises(QueryError, match="not a dict"):
        searcher.batch_search_arrays({"q1": "search"}, k=2)
    with pytest.raises(QueryError, match="k must be"):
        searcher.batch_search_arrays(QUERIES, k="3")


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ({"q1": "search engine"}, "not a dict"),  # iterating it would search "1" under qid "q"
        ("search engine", "not str"),
        (["search engine"], "not a \\(qid, text\\) pair"),
        ([("q1", "a", "b")], "not a \\(qid, text\\) pair"),
        ([("q1", None)], "must be text, not NoneType"),
        ([("q1", 5)], "must be text, not int"),
        ([(None, "search")], "qid None"),
        ([("q1", "search"), ("q2", "bin\x00ary")], "'q2' holds NUL bytes"),  # as a single query is refused
    ],
)
def test_batch_bad_queries(tiny, queries, message: str) -> None:
    for backend in ("bm25", "exact"):
        with pytest.raises(QueryError, match=message):
            tiny.batch_search(queries, k=3, backend=backend)


def test_batch_accepts_a_generator_and_reads_it_once(tiny) -> None:
    expected = tiny.batch_search(QUERIES, k=3)
    got = tiny.batch_search((pair for pair in QUERIES), k=3)
    assert [h.docid for h in got["q1"]] == [h.docid for h in expected["q1"]] and got.keys() == expected.keys()


@pytest.mark.parametrize("threads", [0, -1, "2", None, True])
def test_batch_bad_threads(tiny, threads) -> None:
    with pytest.raises(QueryError, match="threads"):
        tiny.batch_search(QUERIES, k=3, threads=threads)


def test_bool_k_is_refused(tiny) -> None:
    with pytest.raises(QueryError, match="k must be"):
        tiny.search("search", k=True)
    with pytest.raises(QueryError, match="k must be"):
        tiny.batch_search(QUERIES, k=True)


def test_missing_doc_is_a_clear_key_error(tiny) -> None:
    with pytest.raises(DocNotFoundError, match="no document with id 'nope'") as caught:
        tiny.doc("nope")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, SpaceriniError)
    assert str(caught.value).startswith(str(tiny.path))  # not KeyError's quoted repr


@pytest.mark.parametrize("path", [None, 3])
def test_open_bundle_needs_a_path(path) -> None:
    with pytest.raises(UsageError, match="path or string"):
        open_bundle(path)


def test_build_bad_arguments_fail_clearly(tmp_path: Path) -> None:
    src = DATA / "tiny.jsonl"
    with pytest.raises(BackendNotAvailableError, match="list of backend names"):
        build_bundle(src, tmp_path / "b", backends=None, progress=False)
    with pytest.raises(BackendNotAvailableError, match="strings such as"):
        build_bundle(src, tmp_path / "b", backends=[1], progress=False)
    with pytest.raises(BackendParameterError, match="backend_params must map"):
        build_bundle(src, tmp_path / "b", backends=["bm25"], backend_params=[("bm25", {})], progress=False)
    with pytest.raises(BackendParameterError, match=r"backend_params\['bm25'\]"):
        build_bundle(src, tmp_path / "b", backends=["bm25"], backend_params={"bm25": None}, progress=False)
    with pytest.raises(BackendParameterError, match="threads"):
        build_bundle(src, tmp_path / "b", backends=["bm25"], threads="2", progress=False)
    assert not (tmp_path / "b").exists()


def test_build_into_a_folder_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BundleError, match="cannot write a bundle here"):
        build_bundle(DATA / "tiny.jsonl", tmp_path / "afile" / "bundle", backends=["bm25"], progress=False)


def test_a_bundle_reads_as_a_corpus(tiny) -> None:
    """``bundle[docid]``, ``docid in bundle`` and ``for doc in bundle``, as a datasets user reaches for."""
    ids = [doc.id for doc in tiny.iter_docs()]
    assert [doc.id for doc in tiny] == ids and len(ids) == len(tiny)
    assert tiny[ids[3]].text == tiny.doc(ids[3]).text
    assert ids[0] in tiny and "nope" not in tiny and 3 not in tiny and None not in tiny
    with pytest.raises(KeyError, match="no document with id 'nope'"):
        tiny["nope"]


@pytest.mark.parametrize("backend", ["bm25", "exact"])
def test_a_blank_query_in_a_batch_is_refused_by_every_backend(tiny, backend: str) -> None:
    # bm25 refused it while exact (and the generic path) answered [] for it
    for call in (tiny.batch_search, tiny.batch_search_pairs, tiny.batch_search_trec):
        with pytest.raises(QueryError, match="query 'q2' is empty"):
            call([("q1", "search engine"), ("q2", "   ")], k=5, backend=backend)


def test_a_lone_surrogate_is_one_query_error_for_every_backend(tmp_path: Path) -> None:
    """BM25 refused it, the exact backend too, but the dense tokenizers raised a raw TypeError
    (hybrid too): the bundle refuses it for all of them, named by its qid in a batch."""
    bundle = build_bundle(DATA / "tiny.jsonl", tmp_path / "b", backends=["bm25", "exact", "dense"], progress=False)
    for backend in ("bm25", "exact", "dense", "hybrid"):
        with pytest.raises(QueryError, match=r"lone surrogate \(U\+DCFF\) at character 8"):
            bundle.search("search \udcff engine", backend=backend)
        with pytest.raises(QueryError, match="query 'q2' holds a lone surrogate") as info:
            bundle.batch_search([("q1", "search engine"), ("q2", "caf\udce9")], k=3, backend=backend)
        assert info.value.qid == "q2"
    assert bundle.search("café naïve search", backend="dense")  # other non-ASCII text is searched
