"""BM25 backend: rankings identical to raw Anserini, index statistics, limits, snippets."""

from __future__ import annotations

import json
import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from bm25_data import CODE, CODE_QUERIES, CORPUS, QUERIES

from spacerini.backends import bm25
from spacerini.backends.bm25.scorer import (
    LENGTH_TABLE,
    adjust_ties,
    adjust_ties_segments,
    byte4_to_int,
    encode_norms,
    idf,
    int_to_byte4,
)
from spacerini.errors import BundleError, DocumentTooLargeError, DuplicateIdError, QueryError
from spacerini.records import Doc


def _docs(path: Path):
    def factory():
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                yield Doc(id=record["id"], text=record["contents"])

    return factory


def _queries() -> list[tuple[str, str]]:
    rows = []
    for line in QUERIES.read_text(encoding="utf-8").splitlines():
        qid, text = line.split("\t", 1)
        rows.append((qid, text))
    return rows


def _jc(name: str):
    from spacerini.java import autoclass

    return autoclass(name)


def _read_run(path: Path) -> dict[str, list[tuple[str, int, str]]]:
    run: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, docid, rank, score, _tag = line.split(" ")
        run[qid].append((docid, int(rank), score))
    return dict(run)


def _anserini_run(index: Path, topics: list[tuple[str, str]], out: Path, *, extra: list[str] = ()) -> dict:
    """Runs raw Anserini SearchCollection (-bm25, 1000 hits) in this JVM and reads its run."""
    tsv = out.with_suffix(".tsv")
    tsv.write_text("".join(f"{q}\t{t}\n" for q, t in topics), encoding="utf-8")
    args = ["-index", str(index), "-topics", str(tsv), "-topicReader", "TsvString", "-output", str(out)]
    args += ["-bm25", "-hits", "1000", "-quiet", *extra]
    _jc("io.anserini.search.SearchCollection").main(args)
    return _read_run(out)


def _our_run(searcher, topics, out: Path) -> dict:
    results = searcher.batch_search(topics, k=1000, threads=2)
    out.write_text("".join(line + "\n" for line in bm25.trec_lines(results)), encoding="utf-8")
    pairs = searcher.batch_search_pairs(topics, k=1000, threads=1)
    assert list(bm25.trec_lines(pairs)) == list(bm25.trec_lines(results))
    for threads in (1, 2):  # the arrays path (TREC runs of `spacerini search --queries`)
        arrays = searcher.batch_search_arrays(topics, k=1000, threads=threads)
        assert list(bm25.trec_lines(arrays)) == list(bm25.trec_lines(results))
        assert arrays.pairs() == pairs and arrays.qids == tuple(q for q, _ in topics)
    return _read_run(out)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bm25_en")
    report = bm25.build(_docs(CORPUS), folder, threads=2, progress=False)
    searcher = bm25.open(folder, report.to_dict())
    yield folder, report, searcher
    searcher.close()


@pytest.fixture(scope="module")
def built_code(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bm25_code")
    report = bm25.build(_docs(CODE), folder, threads=1, progress=False, analyzer="code")
    searcher = bm25.open(folder, report.to_dict())
    yield folder, report, searcher
    searcher.close()


@pytest.fixture(scope="module")
def raw_index(tmp_path_factory):
    """The same JSONL indexed by raw Anserini IndexCollection, as its users would."""
    root = tmp_path_factory.mktemp("raw")
    (root / "in").mkdir()
    shutil.copy(CORPUS, root / "in" / "corpus.jsonl")
    args = ["-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator", "-threads", "1"]
    args += ["-input", str(root / "in"), "-index", str(root / "index"), "-storePositions", "-storeDocvectors"]
    args += ["-storeRaw", "-quiet"]
    _jc("io.anserini.index.IndexCollection").main(args)
    return root / "index"


# -- THE test: identical to Anserini ----------------------------------------------------------------
def test_report_pins_counts(built):
    _, report, _ = built
    assert report.backend == "bm25"
    assert report.docs == 204
    assert report.stats["indexed"] == 204
    assert report.stats["doc_count"] == 203  # "stop-only" has no token left after analysis
    assert report.params == {"analyzer": "en", "k1": 0.9, "b": 0.4, "memory_buffer": 512}


@pytest.mark.parametrize("which", ["raw", "ours"])
def test_batch_search_equals_anserini_search_collection(built, raw_index, tmp_path, which):
    folder, _, searcher = built
    topics = _queries()
    index = raw_index if which == "raw" else folder
    expected = _anserini_run(index, topics, tmp_path / "anserini.run")
    got = _our_run(searcher, topics, tmp_path / "ours.run")
    assert "q42" not in expected  # stopwords only: no terms, no hits
    assert got.get("q42", []) == []
    assert sum(len(v) for v in expected.values()) > 2000
    for qid, _ in topics:
        assert got.get(qid, []) == expected.get(qid, []), qid


def test_ties_are_broken_by_id_byte_order(built):
    _, _, searcher = built
    text = next(json.loads(x)["contents"] for x in CORPUS.open(encoding="utf-8") if '"doc0003"' in x)
    hits = searcher.search(text, k=6)
    # The same text under four ids: Lucene's BytesRef order (uppercase before lowercase, "-" before "0").
    assert [h.docid for h in hits[:4]] == ["Doc-B", "Zeta", "doc-a", "doc0003"]
    scores = [h.score for h in hits[:4]]
    assert scores[1] == float(np.float32(scores[0]) - np.float32(1e-6))  # ScoreTiesAdjusterReranker
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5, 6]


def test_code_analyzer_equals_anserini_pretokenized(built_code, tmp_path):
    folder, report, searcher = built_code
    assert report.stats["empty"] == 2  # "" and "+= -= ** // %" have no tokens: Anserini skips them
    topics = [(q, bm25.code_tokens(t)) for q, t in CODE_QUERIES]
    expected = _anserini_run(folder, topics, tmp_path / "anserini.run", extra=["-pretokenized"])
    got = _our_run(searcher, CODE_QUERIES, tmp_path / "ours.run")
    assert len(expected) >= 9
    for qid, _ in CODE_QUERIES:
        assert got.get(qid, []) == expected.get(qid, []), qid


def test_code_tokens_split_identifiers():
    assert bm25.code_tokens("parseHTTPResponse_v2 = getUserName") == (
        "parsehttpresponse_v2 parse http response v 2 getusername get user name"
    )
    assert bm25.code_tokens("+= //") == ""


def test_long_token_is_indexed_in_pieces(built_code):
    _, _, searcher = built_code
    assert searcher.search("a" * 255, k=3)[0].docid == "src/long_token.py"
    assert searcher.analyze("a" * 600) == ["a" * 255, "a" * 255, "a" * 90]


def test_plain_pyserini_opens_the_index(built):
    folder, _, searcher = built
    from spacerini.java import ensure_jvm

    ensure_jvm()
    from pyserini.search.lucene import LuceneSearcher

    plain = LuceneSearcher(str(folder))
    try:
        for _, text in _queries()[:20]:
            theirs = [(h.docid, round(h.score, 4)) for h in plain.search(text, k=10)]
            ours = [(h.docid, round(h.score, 4)) for h in searcher.search(text, k=10)]
            assert ours == theirs, text
            assert [h.score for h in searcher.search(text, k=10)] == [
                h.score for h in plain.search(text, k=10)
            ]
    finally:
        plain.close()


def test_lucene_scorer_matches_exact_scorer(built):
    folder, report, searcher = built
    lucene = bm25.open(folder, report.to_dict(), scorer="lucene")
    try:
        for _, text in _queries():
            if not searcher.analyze(text):
                continue
            assert lucene.search(text, k=10) == searcher.search(text, k=10), text
        assert not lucene.ranks_arrays and searcher.ranks_arrays
        with pytest.raises(BundleError, match="scorer='exact'"):
            lucene.batch_search_arrays(_queries(), k=10)
    finally:
        lucene.close()


def test_term_caches_stay_bounded_under_new_terms(built, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server sees new terms all the time (numbers, typos): the per-term caches empty when
    full instead of growing with them, and ranking is the same after they empty."""
    _, _, searcher = built
    scorer = searcher._exact
    monkeypatch.setattr(type(scorer), "SPAN_CACHE", 64)
    before = searcher.search("Lucene Java index", k=5)
    sizes = []
    for i in range(300):
        searcher.search(f"Lucene {i * 7919} index", k=5)
        sizes.append(len(scorer._span_cache))
    assert max(sizes) <= 64 and min(sizes[100:]) < 64  # filled, then emptied
    assert searcher.search("Lucene Java index", k=5) == before


def test_arrays_edge_cases(built):
    """Queries without known terms get no hits; k=0 and an empty batch give empty arrays."""
    _, _, searcher = built
    queries = [("a", "the of and"), ("b", "xyzzy"), ("c", "Lucene Java"), ("d", "the of and")]
    ranked = searcher.batch_search_arrays(queries, k=5)
    assert ranked.bounds.tolist()[:3] == [0, 0, 0] and ranked.bounds[-1] == ranked.bounds[-2] > 0
    assert ranked.pairs() == searcher.batch_search_pairs(queries, k=5)
    assert [h.docid for h in searcher.search("Lucene Java", k=5)] == ranked.docids()
    none = searcher.batch_search_arrays(queries, k=0)
    assert none.bounds.tolist() == [0] * 5 and none.docids() == [] and list(bm25.trec_lines(none)) == []
    assert searcher.batch_search_arrays([], k=10).pairs() == {}


# -- statistics and float arithmetic against Lucene's own --------------------------------------------
def test_index_statistics_match_lucene(built):
    folder, report, searcher = built
    reader = _jc("io.anserini.index.IndexReaderUtils").getReader(str(folder))
    try:
        stats = _jc("org.apache.lucene.search.IndexSearcher")(reader).collectionStatistics("contents")
        exact = searcher._exact
        assert exact.doc_count == stats.docCount() == 203
        assert exact.meta["sum_total_term_freq"] == stats.sumTotalTermFreq()
        assert exact.meta["rows"] == reader.maxDoc() == 204
        term_cls = _jc("org.apache.lucene.index.Term")
        terms = [exact._terms[i].decode() for i in range(len(exact._terms))]
        assert len(terms) == report.stats["terms"] > 100
        for term in terms:
            assert exact.doc_freq(term) == reader.docFreq(term_cls("contents", term)), term
        assert exact.doc_freq("notaword") == 0
        norms = _jc("org.apache.lucene.index.MultiDocValues").getNormValues(reader, "contents")
        convert = _jc("io.anserini.index.IndexReaderUtils").convertDocidToLuceneDocid
        ours = np.load(folder / bm25.SIDECAR_DIR / "norms.npy")
        for row in range(exact.rows):
            lucene_doc = convert(reader, exact.docid(row))
            if norms.advanceExact(lucene_doc):
                assert ours[row] == (norms.longValue() & 0xFF), exact.docid(row)
            else:
                assert ours[row] == 0
            norms = _jc("org.apache.lucene.index.MultiDocValues").getNormValues(reader, "contents")
    finally:
        reader.close()


def test_smallfloat_port_equals_java():
    small_float = _jc("org.apache.lucene.util.SmallFloat")
    rng = np.random.default_rng(0)
    values = sorted({*range(0, 2000), *rng.integers(0, 100_001, 3000).tolist(), 2**24, 2**31 - 1})
    for v in values:
        assert int_to_byte4(v) == small_float.intToByte4(v) & 0xFF, v
    assert encode_norms(np.asarray(values)).tolist() == [int_to_byte4(v) for v in values]
    for b in range(256):
        assert byte4_to_int(b) == small_float.byte4ToInt(b - 256 if b > 127 else b) == LENGTH_TABLE[b], b


def test_idf_equals_java_math_log():
    jmath = _jc("java.lang.Math")
    for doc_count in (1, 7, 204, 11_000, 1_000_003):
        for df in {1, 2, 3, doc_count // 3 or 1, doc_count // 2 or 1, doc_count}:
            java = np.float32(jmath.log(1 + (doc_count - df + 0.5) / (df + 0.5)))
            assert idf(df, doc_count) == java


def test_adjust_ties_matches_anserini_examples():
    raw = np.array([23.439316, 22.087432, 22.087432, 21.602508, 1.1161, 1.11609, 1.116], dtype=np.float32)
    got = adjust_ties(raw)
    want = np.array([23.4393, 22.0874, np.float32(22.0874) - np.float32(1e-6), 21.6025], dtype=np.float32)
    assert got[:4].tolist() == want.tolist()
    assert f"{got[4]:f}" == "1.116100"
    assert f"{got[5]:f}" == "1.116099"  # 1.1161 - 1.1161 <= 1e-4f: a tie
    # Anserini 1.7.1 rounds in double: 4.24495f is 4.2449498..., so 4.2449 (float math would give 4.2450).
    assert adjust_ties(np.array([4.24495], dtype=np.float32))[0] == np.float32(4.2449)


def _anserini_tie_loop(scores: np.ndarray) -> list[float]:
    """ScoreTiesAdjusterReranker as Anserini 1.7.1 runs it, hit by hit in float32 (the reference)."""
    f32 = np.float32
    out: list[np.float32] = []
    prev = None
    dup = 0
    for raw in scores.tolist():
        score = f32(math.floor(float(f32(raw)) * 1e4 + 0.5) / 1e4)
        if prev is not None and prev - score <= f32(1e-4):
            dup += 1
            score = score - f32(1e-6) * f32(dup)
        else:
            dup = 0
        out.append(score)
        prev = score
    return [float(x) for x in out]


def test_vectorised_tie_adjustment_equals_anserini_loop():
    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(1, 1200))
        # Descending scores on the 4-decimal grid, steps of 0-3 (sometimes 10) units, plus sub-grid noise:
        # long chains where the 1e-6 lowering itself brings the next score within 1e-4.
        steps = rng.choice([0, 0, 1, 1, 2, 3, 10], size=n) * 1e-4 + rng.choice([0, 2e-5, 4e-5, 6e-5], size=n)
        scores = np.sort((rng.uniform(1, 30) - np.cumsum(steps)).astype(np.float32))[::-1]
        cuts = sorted({0, n, *rng.integers(0, n, int(rng.integers(0, 5))).tolist()})
        got = adjust_ties_segments(scores, cuts).tolist()
        want = [x for a, b in zip(cuts[:-1], cuts[1:], strict=True) for x in _anserini_tie_loop(scores[a:b])]
        assert got == want, trial
        assert adjust_ties(scores).tolist() == _anserini_tie_loop(scores), trial


@pytest.mark.parametrize("mode", ["auto", "dense", "sparse", "chunked"])
def test_batch_ranking_equals_per_query_ranking(built, monkeypatch, mode):
    _, _, searcher = built
    exact = searcher._exact
    if mode == "dense":
        monkeypatch.setattr(exact, "DENSE_RATIO", 10**9)
    elif mode == "sparse":
        monkeypatch.setattr(exact, "DENSE_RATIO", 0)
    elif mode == "chunked":
        monkeypatch.setattr(exact, "DENSE_CELLS", exact.rows * 3)  # three queries per chunk
    texts = [t for _, t in _queries()]
    texts += [json.loads(x)["contents"][:300] for x in CORPUS.open(encoding="utf-8")][:40]  # many ties
    term_counts = [searcher._count_terms(searcher.analyze(t)) for t in texts]
    for n in (1, 3, 10, 1000):
        batch = exact.rank_many(term_counts, n)
        assert len(batch) == len(texts)
        for counts, (ids, scores) in zip(term_counts, batch, strict=True):
            rows, raw = exact.score(counts)
            rows, adjusted = exact.top(rows, raw, n)
            assert ids == exact.docids(rows.tolist())
            assert scores == adjusted.tolist()


# -- API ----------------------------------------------------------------------------------------------
def test_pagination_keeps_global_ranks(built):
    _, _, searcher = built
    full = searcher.search("search engine index", k=10)
    page = searcher.search("search engine index", k=5, offset=5)
    assert [(h.docid, h.score) for h in page] == [(h.docid, h.score) for h in full[5:10]]
    assert [h.rank for h in page] == [6, 7, 8, 9, 10]
    assert all(h.backend == "bm25" for h in page)


def test_queries_edge_cases(built):
    _, _, searcher = built
    with pytest.raises(QueryError):
        searcher.search("   ")
    assert searcher.search("the of and") == []
    assert searcher.search("xyzzy notaword") == []
    assert searcher.search('title:(foo AND bar) OR "x"~2 +-*?\\\\')[0].docid == "syntax"
    too_many = " ".join(f"w{i}x" for i in range(bm25.MAX_QUERY_TERMS + 1))
    with pytest.raises(QueryError, match="1,024"):
        searcher.search(too_many)
    assert searcher.analyze("The Running RUNS") == ["run", "run"]


def test_snippet_marks_matches_and_escapes_html(built):
    _, _, searcher = built
    text = (
        "Intro words. " * 40 + 'Use <b>bold</b> & "quotes" in HTML for the searching engines.' + " Tail." * 40
    )
    snip = searcher.snippet("search engine", text, width=120)
    assert "<mark>searching</mark>" in snip and "<mark>engines</mark>" in snip
    assert "&lt;b&gt;bold&lt;/b&gt; &amp;" in snip
    assert "<b>" not in snip
    assert len(snip) < 120 + 80
    assert searcher.snippet("zebra", "a <tag>") == "a &lt;tag&gt;"


# -- build errors -------------------------------------------------------------------------------------
def test_oversized_id_raises_document_too_large(tmp_path):
    docs = [Doc(id="ok", text="fine"), Doc(id="x" * 40_000, text="some text")]
    with pytest.raises(DocumentTooLargeError, match="32,766"):
        bm25.build(lambda: iter(docs), tmp_path, progress=False)
    assert not (tmp_path / ".bm25-jsonl").exists()


def test_oversized_text_raises_document_too_large(tmp_path, monkeypatch):
    monkeypatch.setattr(bm25, "MAX_TEXT_CHARS", 100)
    with pytest.raises(DocumentTooLargeError, match="big"):
        bm25.build(lambda: iter([Doc(id="big", text="word " * 50)]), tmp_path, progress=False)


def test_anserini_skipping_a_document_is_an_error(tmp_path, monkeypatch):
    # Without our pre-check, Lucene rejects the immense id term and Anserini only logs it.
    monkeypatch.setattr(bm25, "MAX_ID_BYTES", 10**9)
    docs = [Doc(id="a", text="alpha"), Doc(id="y" * 40_000, text="beta"), Doc(id="c", text="gamma")]
    with pytest.raises(BundleError, match="indexed"):
        bm25.build(lambda: iter(docs), tmp_path, progress=False)


def test_duplicate_ids_are_rejected(tmp_path):
    docs = [Doc(id="a", text="alpha"), Doc(id="a", text="beta")]
    with pytest.raises(DuplicateIdError):
        bm25.build(lambda: iter(docs), tmp_path, progress=False)


def test_unknown_language_is_rejected(tmp_path):
    with pytest.raises(BundleError, match="xx"):
        bm25.build(lambda: iter([Doc(id="a", text="alpha")]), tmp_path, progress=False, analyzer="xx")


def test_the_indexing_jvm_halts_with_its_parent_and_never_recreates_a_deleted_folder(tmp_path):
    """A Ray worker force-cancelled (or killed by its memory watchdog) while its Lucene JVM still
    starts: the build's clean-up deletes the folder, and the orphaned JVM must not create it again
    when it opens the index (CI once found a failed Ray build's folder brought back this way)."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    folder = tmp_path / "shard" / "bm25"
    folder.mkdir(parents=True)
    script = (
        "import os, signal, sys; from pathlib import Path; from spacerini.backends.bm25.writer import _IndexerProcess; "
        "p = _IndexerProcess(Path(sys.argv[1]), threads=1, memory_buffer=64, language='en', pretokenized=False); "
        "print(p._proc.pid, flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    parent = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=60)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    jvm = int(parent.stdout.split()[0])
    shutil.rmtree(tmp_path / "shard")  # the failed build's clean-up, while the JVM may still start
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if psutil.Process(jvm).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the indexing JVM {jvm} outlived its killed parent by 60 s")
    assert not (tmp_path / "shard").exists()


def test_idf_sanity():
    assert math.isclose(float(idf(1, 204)), math.log(1 + 203.5 / 1.5), rel_tol=1e-6)


def test_snippet_of_a_long_document_is_bounded_and_highlights(built) -> None:
    _, _, searcher = built
    filler = "lorem ipsum dolor sit amet " * 4000  # ~108k characters before the match
    text = filler + "the ranking functions are ranked here " + filler
    snippet = searcher.snippet("ranking", text)
    assert "<mark>ranking</mark>" in snippet and "<mark>ranked</mark>" in snippet
    assert snippet.startswith("…") and len(snippet) < 1_000


def test_snippet_of_a_long_document_skips_a_prefix_inside_an_identifier(built) -> None:
    """The first place a term's prefix appears can be inside a longer token (``json_b64encode``
    is one token for the en analyzer); the window moves on to a real match rather than show none."""
    _, _, searcher = built
    filler = "lorem ipsum dolor sit amet " * 400  # ~10k characters
    text = "x = json_b64encode(data)\n" + filler + "then parse the json reply\n" + filler
    snippet = searcher.snippet("json", text)
    assert "<mark>json</mark>" in snippet and snippet.startswith("…")
    # A document whose only "match" is inside the identifier shows its opening, unmarked.
    plain = searcher.snippet("json", "x = json_b64encode(data)\n" + filler)
    assert "<mark>" not in plain and plain.startswith("x = json_b64encode")


# -- the sidecar: Java helper dump vs term vectors ---------------------------------------------------
def test_helper_jar_matches_its_java_source():
    """The committed jar was built from the committed source (`make java` rebuilds both)."""
    import hashlib
    import zipfile

    from spacerini.java import helpers_jar

    sources = sorted(helpers_jar().parent.glob("*.java"))
    assert sources, "no Java sources beside the helper jar"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    with zipfile.ZipFile(helpers_jar()) as jar:
        recorded = jar.read("io/spacerini/sources.sha256").decode().split()[0]
        assert "io/spacerini/PostingsDump.class" in jar.namelist()
    assert recorded == digest, "spacerini/jars/*.java changed: run `make java` to rebuild the jar"


@pytest.mark.parametrize("corpus", ["en", "code"])
def test_sidecar_from_postings_dump_equals_sidecar_from_term_vectors(built, built_code, tmp_path, corpus):
    from spacerini.backends.bm25 import lucene as jl

    folder, report, _ = built if corpus == "en" else built_code
    reader = jl.open_reader(folder)
    try:
        assert jl.dump_postings(reader) is not None, "the helper jar should be on the class path"
    finally:
        reader.close()
    ids = [d.id for d in _docs(CORPUS if corpus == "en" else CODE)()]
    extra = {"analyzer": report.params["analyzer"]}
    via_vectors = bm25._sidecar_from_vectors(
        folder, tmp_path / "vectors", ids, k1=0.9, b=0.4, threads=2, progress=False, extra=extra
    )
    via_dump = bm25._write_sidecar(
        folder, tmp_path / "dump", ids, k1=0.9, b=0.4, threads=2, progress=False, extra=extra
    )
    assert via_dump["postings"] == via_vectors["postings"] > 0
    names = sorted(p.name for p in (tmp_path / "vectors").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "dump").iterdir())
    for name in names:
        assert (tmp_path / "vectors" / name).read_bytes() == (tmp_path / "dump" / name).read_bytes(), name
    # and the bundle's own sidecar is the same too
    for name in names:
        assert (folder / bm25.SIDECAR_DIR / name).read_bytes() == (tmp_path / "dump" / name).read_bytes(), name


def test_without_the_helper_the_sidecar_falls_back_to_term_vectors(tmp_path, monkeypatch):
    from spacerini.backends.bm25 import lucene as jl

    monkeypatch.setattr(jl, "dump_postings", lambda reader, **kw: None)
    folder = tmp_path / "b"
    report = bm25.build(_docs(CORPUS), folder, threads=1, progress=False)
    with bm25.open(folder, report.to_dict()) as searcher:
        hits = searcher.search("information retrieval", k=5)
    assert hits and report.stats["postings"] > 0


@pytest.mark.parametrize("path", ["java-tokens", "python-words"])
def test_snippet_marks_exactly_the_words_that_analyze_to_a_query_term(built, monkeypatch, path):
    """Neither the Java token matcher nor the Python path (key-prefix filter, word cache) loses
    or adds a match: every visible word whose analysis meets the query's terms is marked, and
    nothing else is (reference: one JNI call per word)."""
    import html as _html
    import re as _re

    _, _, searcher = built
    assert searcher._matcher is not None, "the helper jar should give the Java token matcher"
    if path == "python-words":
        monkeypatch.setattr(searcher, "_matcher", None)
    docs = list(_docs(CORPUS)())[:60]
    checked = 0
    for _, query in _queries()[:12]:
        qterms = set(searcher.analyze(query))
        for doc in docs:
            snippet = searcher.snippet(query, doc.text)
            marked = {_html.unescape(m) for m in _re.findall(r"<mark>(.*?)</mark>", snippet)}
            visible = _html.unescape(_re.sub(r"</?mark>", "", snippet)).strip("…")
            for word in set(_re.findall(r"\w+", visible)):
                hits = not qterms.isdisjoint(searcher.analyze(word))
                assert (word in marked) == hits, (query, doc.id, word)
                checked += hits
    assert checked > 20
