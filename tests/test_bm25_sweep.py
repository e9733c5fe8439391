"""BM25 search and evaluation checked end to end against their references.

Rankings, scores and tie-breaks come from raw pyserini ``LuceneSearcher`` on the bundle's own
``lucene/`` folder (and Anserini's ``SearchCollection`` for query files); metrics come from
``ir_measures`` on the run that ``spacerini search --queries`` writes. Every path is compared:
one shard and three, single query and batch, the Python API and the command line. The corpus
is made here to be hard: exact duplicates under ids that sort in surprising byte orders,
one-word documents (whole blocks of tied scores), unicode, a document of 30,000 words.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from spacerini.errors import EvaluationError, MalformedRecordError, QueryError
from tests.cli_helpers import run

WORDS = (
    "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega "
    "the of and search index lucene ranking"
).split()
UNICODE = ["café", "naïve", "Straße", "東京", "日本語", "über", "ﬁle", "résumé", "𝔘nicode", "emoji😀", "İstanbul"]
#: Exact duplicates: Anserini breaks their tie by the ids' UTF-8 byte order.
TIED_IDS = ["Doc-B", "Zeta", "doc-a", "doc0003", "a", "A", "_x", "-y", "é", "10", "9", "soft\u00adhyphen", "zw\u200dj"]
#: Valid queries that look odd: each is ranked exactly as LuceneSearcher ranks it.
ODD_QUERIES = [
    "lucene",
    "duplicate text about lucene ranking",
    "alpha alpha beta",  # a repeated term counts twice (Anserini boosts it)
    "the of and lucene",
    'alpha AND beta OR NOT (gamma) "delta" eps* ?eta lambda~2 sigma^3 omega:x \\ / [a TO z]',
    "contents:lucene id:d001 +alpha -beta",
    "\x01alpha\x07 \x7fbeta\tgamma",
    "CAFÉ strasse file ISTANBUL 日本 東京",
    "emoji😀 𝔘nicode",
]


def _corpus(path: Path) -> Path:
    rng = random.Random(17)
    rows = []
    for i in range(120):
        length = rng.choice([1, 1, 2, 3, 5, 8, 20])
        rows.append({"id": f"d{i:03d}", "contents": " ".join(rng.choice(WORDS) for _ in range(length))})
    rows += [{"id": doc_id, "contents": "duplicate text about lucene ranking"} for doc_id in TIED_IDS]
    rows += [{"id": f"w{i:02d}", "contents": rng.choice(WORDS)} for i in range(30)]  # one-word documents
    for i in range(20):
        text = " ".join(rng.choice(UNICODE + WORDS) for _ in range(rng.randint(1, 10)))
        rows.append({"id": f"u{i:02d}", "contents": text})
    rows.append({"id": "long", "contents": " ".join(rng.choice(WORDS) for _ in range(30_000))})
    rows.append({"id": "stop", "contents": "the of and"})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corpus(tmp_path_factory.mktemp("sweep") / "corpus.jsonl")


@pytest.fixture(scope="module")
def bundles(corpus: Path) -> dict[str, Any]:
    """The corpus as one shard and as three."""
    from spacerini.bundle import build_bundle

    return {
        "one": build_bundle(corpus, corpus.parent / "one", backends=["bm25"], progress=False),
        "three": build_bundle(corpus, corpus.parent / "three", backends=["bm25"], shards=3, progress=False),
    }


def _lucene(folder: Path, language: str | None = None) -> Any:
    from spacerini.java import ensure_jvm

    ensure_jvm()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(folder))
    if language is not None:
        searcher.set_language(language)
    return searcher


def _pairs(hits: Any) -> list[tuple[str, float]]:
    return [(h.docid, h.score) for h in hits]


def _queries(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    vocabulary = WORDS + UNICODE + ["duplicate", "rare", "ranking"]
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 4))) for _ in range(n)] + ODD_QUERIES


# -- rankings: identical to LuceneSearcher -------------------------------------------------------------
def test_every_path_ranks_as_lucene_searcher_at_every_depth(bundles: dict[str, Any]) -> None:
    """Docids, order and float32 scores equal LuceneSearcher's at k=1, 10, 100, 1000 (more than the
    corpus holds): single queries and batches (one and two threads), one shard and three."""
    plain = _lucene(bundles["one"].path / "lucene")
    queries = _queries(1, 60)
    pairs = [(f"q{i}", text) for i, text in enumerate(queries)]
    compared = 0
    try:
        for k in (1, 10, 100, 1000):
            theirs = {qid: _pairs(plain.search(text, k=k)) for qid, text in pairs}
            for name, bundle in bundles.items():
                for threads in (1, 2):
                    batch = bundle.batch_search(pairs, k=k, threads=threads)
                    assert {q: _pairs(h) for q, h in batch.items()} == theirs, (name, k, threads)
                for qid, text in pairs[::5]:
                    assert _pairs(bundle.search(text, k=k, snippets=False)) == theirs[qid], (name, k, text)
                    compared += 1
    finally:
        plain.close()
    assert compared > 50
    assert 100 < max(map(len, theirs.values())) < 1000  # k past the corpus: every match
    assert theirs["q61"][0][0] == "-y"  # 13 tied duplicates: the first id in byte order


def test_ties_break_by_id_byte_order_in_every_path(bundles: dict[str, Any]) -> None:
    expected = sorted(TIED_IDS, key=lambda i: i.encode("utf-8"))
    for bundle in bundles.values():
        hits = bundle.search("duplicate text about lucene ranking", k=len(TIED_IDS), snippets=False)
        assert [h.docid for h in hits] == expected
        assert [h.docid for h in bundle.batch_search([("q", "duplicate")], k=3)["q"]] == expected[:3]


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("de", "Häuser Haus Straße Strasse Bücher Buch Möglichkeit über Über der die und Äpfel schöner Fußball".split()),
        ("zh", ["搜索引擎", "中文", "分词", "北京", "大学", "数据", "的", "hello", "世界"]),
    ],
)
def test_a_language_analyzer_ranks_as_lucene_searcher(tmp_path: Path, language: str, words: list[str]) -> None:
    from spacerini.bundle import build_bundle

    rng = random.Random(5)
    joiner = "" if language == "zh" else " "
    path = tmp_path / "corpus.jsonl"
    rows = [{"id": f"x{i:03d}", "contents": joiner.join(rng.choices(words, k=rng.randint(1, 10)))} for i in range(80)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    params = {"bm25": {"analyzer": language}}
    one = build_bundle(path, tmp_path / "one", backends=["bm25"], backend_params=params, progress=False)
    two = build_bundle(path, tmp_path / "two", backends=["bm25"], backend_params=params, shards=2, progress=False)
    queries = [(f"q{i}", joiner.join(rng.choices(words + ["HAUS", "hauser", "京大"], k=rng.randint(1, 3)))) for i in range(40)]
    plain = _lucene(one.path / "lucene", language)
    try:
        theirs = {qid: _pairs(plain.search(text, k=100)) for qid, text in queries}
    finally:
        plain.close()
    assert sum(map(len, theirs.values())) > 200
    for bundle in (one, two):
        assert {q: _pairs(h) for q, h in bundle.batch_search(queries, k=100).items()} == theirs
        for qid, text in queries[::4]:
            assert _pairs(bundle.search(text, k=100, snippets=False)) == theirs[qid]


# -- paging ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 4, 7])
def test_pages_concatenate_to_the_top_k_with_ties(bundles: dict[str, Any], capsys, size: int) -> None:
    """Consecutive pages (Python and the command line's --offset) are the top-k list cut in pieces:
    no hit twice, none missing, ranks global, ties included."""
    for query in ("duplicate lucene", "alpha", "omega beta the"):
        full = [(h.docid, h.score, h.rank) for h in bundles["one"].search(query, k=200, snippets=False)]
        assert len(full) > 3 * size
        for bundle in bundles.values():
            got: list[tuple[str, float, int]] = []
            for offset in range(0, len(full) + size, size):
                page = bundle.search(query, k=size, offset=offset, snippets=False)
                got += [(h.docid, h.score, h.rank) for h in page]
            assert got == full, (bundle.path.name, query)
        if size == 7:  # the command line's pages, from the sharded bundle
            got = []
            for offset in range(0, len(full) + size, size):
                code, out, err = run(
                    ["search", str(bundles["three"].path), query, "--k", str(size), "--offset", str(offset), "--json"], capsys
                )
                assert code == 0, err
                got += [(h["docid"], h["score"], h["rank"]) for h in json.loads(out)["hits"]]
            assert got == full


# -- hostile queries ---------------------------------------------------------------------------------------
def test_a_lone_surrogate_is_one_query_error_in_every_path(bundles: dict[str, Any], capsys) -> None:
    """A lone surrogate raised UnicodeEncodeError from pyjnius in a short query, while a long one (or
    a batch joined past 2,048 characters) crossed JNI as bytes and was searched as U+FFFD."""
    for bundle in bundles.values():
        for text in ("alpha \ud800", "x" * 3000 + " be\udcfftax"):
            with pytest.raises(QueryError, match="lone surrogate"):
                bundle.search(text, k=3)
        for batch in ([("a", "alpha"), ("b", "beta \udfff")], [("a", "alpha " * 500), ("b", "beta \udfff")]):
            for threads in (1, 2):
                with pytest.raises(QueryError, match="query 'b' holds a lone surrogate") as info:
                    bundle.batch_search(batch, k=3, threads=threads)
                assert info.value.qid == "b"
                with pytest.raises(QueryError, match="lone surrogate"):
                    bundle.batch_search_trec(batch, k=3, threads=threads)
    # a command-line byte that is not UTF-8 arrives as a lone surrogate (surrogateescape)
    code, _, err = run(["search", str(bundles["one"].path), "lucene \udcff"], capsys)
    _one_line_error(code, err, "lone surrogate (U+DCFF)", "not UTF-8")


def test_a_refused_query_of_a_batch_names_its_file_and_line(bundles: dict[str, Any], tmp_path: Path, capsys) -> None:
    """A query over Lucene's 1,024 distinct terms stopped a batch with an error that named no query,
    no file and no line."""
    many = " ".join(f"w{i}" for i in range(1500))
    queries = tmp_path / "q.tsv"
    queries.write_text(f"q1\tlucene\n\nq2\t{many}\n", encoding="utf-8")
    qrels = tmp_path / "qrels"
    qrels.write_text("q1 0 d001 1\nq2 0 d002 1\n")
    with pytest.raises(QueryError, match="query 'q2' has 1,500 distinct terms") as info:
        bundles["three"].batch_search([("q1", "lucene"), ("q2", many)], k=5)
    assert info.value.qid == "q2"
    for bundle in bundles.values():
        for args in (
            ["search", str(bundle.path), "--queries", str(queries), "--output", str(tmp_path / "run")],
            ["search", str(bundle.path), "--queries", str(queries), "--json"],
            ["eval", str(bundle.path), "--queries", str(queries), "--qrels", str(qrels)],
        ):
            code, _, err = run(args, capsys)
            _one_line_error(code, err, f"{queries}:3: query 'q2' has 1,500 distinct terms", "shorten it")
    assert not (tmp_path / "run").exists()


def test_odd_but_valid_queries_and_query_files(bundles: dict[str, Any], tmp_path: Path, capsys) -> None:
    """Stopwords only, Lucene syntax, control characters, a leading '-' after '--': searched as text,
    as LuceneSearcher does; a queries file with a BOM, CRLF and blank lines reads as plain lines."""
    one = bundles["one"].path
    code, out, err = run(["search", str(one), "the of and", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["hits"] == []
    code, out, err = run(["search", str(one), "--k", "3", "--json", "--", "-lucene ranking"], capsys)
    assert code == 0, err
    assert [h["docid"] for h in json.loads(out)["hits"]] == [
        h.docid for h in bundles["one"].search("lucene ranking", k=3, snippets=False)
    ]
    queries = tmp_path / "q.tsv"
    queries.write_bytes(b"\xef\xbb\xbfq1\tlucene\r\n\r\nq2\t-alpha [beta]\r\nq3\tthe of and\r\n")
    code, _, err = run(["search", str(one), "--queries", str(queries), "--output", str(tmp_path / "run"), "--k", "5"], capsys)
    assert code == 0, err
    lines = (tmp_path / "run").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["q1"] * 5 + ["q2"] * 5  # q3: no terms, no hits


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["lucene", "--output", "RUN"], "--output writes the TREC run of --queries"),
        (["--queries", "Q", "--output", "RUN", "--offset", "5"], "--offset pages the hits of a single QUERY"),
        (["lucene", "--run-tag", "mine"], "--run-tag names the run written to --output"),
        (["--queries", "Q", "--json", "--run-tag", "mine"], "--run-tag names the run written to --output"),
        (["--queries", "Q", "--output", "RUN", "--k", "0"], "--k"),
        (["lucene", "--offset", "-1"], "offset must be"),
        (["x" * 100_000], "the limit is 10,000"),
        ([""], "the query is empty"),
        ([" \t "], "the query is empty"),
        (["-lucene"], "follows --"),
        (["a\x00b"], "NUL"),
    ],
)
def test_options_and_queries_that_cannot_work_are_one_line(
    bundles: dict[str, Any], tmp_path: Path, capsys, argv: list[str], needle: str
) -> None:
    """--output with a single QUERY wrote nothing and said nothing; --offset with --queries and a
    --run-tag without a run were ignored as silently."""
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tlucene\n")
    swap = {"Q": str(queries), "RUN": str(tmp_path / "run.trec")}
    code, out, err = run(["search", str(bundles["one"].path), *[swap.get(a, a) for a in argv]], capsys)
    _one_line_error(code, err, needle)
    assert not out and not (tmp_path / "run.trec").exists()


# -- query files -------------------------------------------------------------------------------------------
def test_query_lines_end_only_at_line_breaks_as_in_anserini(bundles: dict[str, Any], tmp_path: Path, capsys) -> None:
    """U+0085, U+2028 and a form feed inside a query split it in two (``str.splitlines``): the second
    half was "expected `qid<TAB>query text`" on a line number past the real one. Anserini's
    ``SearchCollection`` reads such a file line by line; the run equals its run."""
    from spacerini.eval import read_queries
    from spacerini.java import autoclass

    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tlucene\x85alpha\r\nq2\tbeta\u2028gamma\nq3\tdelta\x0comega\rq4\tsigma\n", encoding="utf-8")
    assert read_queries(queries) == [
        ("q1", "lucene\x85alpha"), ("q2", "beta\u2028gamma"), ("q3", "delta\x0comega"), ("q4", "sigma"),
    ]  # fmt: skip
    ours, theirs = tmp_path / "ours.trec", tmp_path / "anserini.trec"
    code, _, err = run(
        ["search", str(bundles["one"].path), "--queries", str(queries), "--output", str(ours), "--k", "50", "--run-tag", "Anserini"],
        capsys,
    )
    assert code == 0, err
    args = ["-index", str(bundles["one"].path / "lucene"), "-topics", str(queries), "-topicReader", "TsvString"]
    autoclass("io.anserini.search.SearchCollection").main([*args, "-output", str(theirs), "-bm25", "-hits", "50", "-quiet"])
    assert ours.read_text() == theirs.read_text()
    assert {line.split()[0] for line in ours.read_text().splitlines()} == {"q1", "q2", "q3", "q4"}
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\tok\x85fine\nno tab here\n", encoding="utf-8")
    with pytest.raises(MalformedRecordError, match=r"bad\.tsv:2: expected"):
        read_queries(bad)


def test_a_nul_in_a_queries_file_names_its_line(bundles: dict[str, Any], tmp_path: Path, capsys) -> None:
    """A single query with a NUL is refused; the same text from a file was searched."""
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tlucene\nq2\tal\x00pha\n")
    code, _, err = run(["search", str(bundles["one"].path), "--queries", str(queries), "--json"], capsys)
    _one_line_error(code, err, f"{queries}:2: query 'q2' holds a NUL byte")


def test_a_run_keeps_ids_with_invisible_characters(bundles: dict[str, Any], tmp_path: Path, capsys) -> None:
    """A soft hyphen or a zero-width joiner in a document id is no white space: trec_eval and
    ir-measures read the run whole, yet writing it failed ("a document id with white space")."""
    import ir_measures

    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tduplicate text\n")
    out = tmp_path / "run.trec"
    for bundle in bundles.values():
        code, _, err = run(["search", str(bundle.path), "--queries", str(queries), "--output", str(out)], capsys)
        assert code == 0, err
        read = [(r.query_id, r.doc_id, r.score) for r in ir_measures.read_trec_run(str(out))]
        hits = bundle.batch_search([("q1", "duplicate text")], k=1000)["q1"]
        assert [d for _, d, _ in read] == [h.docid for h in hits]
        assert {"soft\u00adhyphen", "zw\u200dj"} <= {d for _, d, _ in read}


# -- evaluation ------------------------------------------------------------------------------------------
def test_eval_equals_ir_measures_on_the_written_run(bundles: dict[str, Any], tmp_path: Path, capsys) -> None:
    """Graded judgments, judged documents the run never returns, a query judged only non-relevant,
    a judged query whose text is all stopwords, and a qrels query the queries file lacks."""
    import ir_measures

    rng = random.Random(3)
    ids = [f"d{i:03d}" for i in range(120)] + TIED_IDS + [f"w{i:02d}" for i in range(30)] + ["long", "stop"]
    pairs = [(f"q{i}", text) for i, text in enumerate(_queries(8, 30))] + [("stopwords", "the of and")]
    queries = tmp_path / "q.tsv"
    queries.write_text("".join(f"{qid}\t{text}\n" for qid, text in pairs), encoding="utf-8")
    lines = []
    for qid, _ in pairs[:-3]:
        if rng.random() < 0.2:
            continue  # unjudged: run, not scored
        lines += [f"{qid} 0 {d} {rng.choice([0, 1, 1, 2, 3])}" for d in rng.sample(ids, rng.randint(1, 30))]
        lines.append(f"{qid} 0 not-in-the-corpus 2")
    lines += [f"{pairs[-2][0]} 0 d001 0", "stopwords 0 stop 1", "elsewhere 0 d002 1"]
    qrels = tmp_path / "qrels"
    qrels.write_text("\n".join(lines) + "\n")
    names = "nDCG@10,MAP,R@100,P@5,RR,nDCG@1000,P(rel=2)@10,Bpref,R@1000,Judged@10"
    measures = [ir_measures.parse_measure("AP" if m == "MAP" else m) for m in names.split(",")]
    run_file = tmp_path / "run.trec"
    for bundle in bundles.values():
        code, _, err = run(["search", str(bundle.path), "--queries", str(queries), "--output", str(run_file)], capsys)
        assert code == 0, err
        expected = ir_measures.calc_aggregate(
            measures, ir_measures.read_trec_qrels(str(qrels)), ir_measures.read_trec_run(str(run_file))
        )
        code, out, err = run(
            ["eval", str(bundle.path), "--queries", str(queries), "--qrels", str(qrels), "--metrics", names, "--json"], capsys
        )
        assert code == 0, err
        got = json.loads(out)
        assert list(got) == [str(m) for m in measures]
        for m in measures:
            assert got[str(m)] == pytest.approx(expected[m], abs=1e-12), m
        assert 0 < got["nDCG@10"] < 1


def test_eval_of_a_judged_query_without_hits(bundles: dict[str, Any]) -> None:
    """A judged query that analyzes to no terms got an empty ranking in the run ``evaluate`` hands
    ir-measures, where a TREC run has no line for it: Judged@10 divided by its length
    (ZeroDivisionError). It now scores as ir-measures scores the written run."""
    import ir_measures

    from spacerini.eval import evaluate

    qrels = {"stop": {"stop": 1}, "hit": {"-y": 1, "d001": 0}}
    queries = [("stop", "the of and"), ("hit", "duplicate text")]
    measures = ["Judged@10", "P@5", "nDCG@10", "AP"]
    for bundle in bundles.values():
        got = evaluate(bundle, queries, qrels, metrics=measures)
        hits = bundle.batch_search(queries, k=1000)
        assert hits["stop"] == []
        as_read = [ir_measures.ScoredDoc(q, h.docid, h.score) for q, hs in hits.items() for h in hs]
        expected = ir_measures.calc_aggregate([ir_measures.parse_measure(m) for m in measures], qrels, as_read)
        assert got == {str(m): pytest.approx(v, abs=1e-12) for m, v in expected.items()}
        assert got["Judged@10"] == pytest.approx(0.05)  # "hit": 1 of its 10 judged, "stop": 0


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("spacerini: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_eval_takes_trec_eval_metric_names() -> None:
    from spacerini.eval import parse_metrics

    assert [str(m) for m in parse_metrics("ndcg_cut_10,map,P_10,recall_100,recip_rank,nDCG@10")] == [
        "nDCG@10", "AP", "P@10", "R@100", "RR", "nDCG@10"
    ]  # fmt: skip
    with pytest.raises(EvaluationError, match="trec_eval's"):
        parse_metrics("ndcg_cut")  # several measures: not one metric


def test_a_queries_line_with_more_columns_searches_the_second_as_anserini(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from spacerini.eval import read_queries

    path = tmp_path / "q.tsv"
    path.write_text("q1\tlucene ranking\tits answer\nq2\tbm25\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="spacerini.eval"):
        assert read_queries(path) == [("q1", "lucene ranking"), ("q2", "bm25")]
    assert "q.tsv:1: more than two columns" in caplog.text


def test_a_run_goes_to_standard_output_with_output_dash(bundles: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle_path = bundles["one"].path
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tlucene ranking\nq2\tbm25 scoring\n", encoding="utf-8")
    code, out, err = run(["search", str(bundle_path), "--queries", str(queries), "--output", "-", "--k", "5"], capsys)
    run(["search", str(bundle_path), "--queries", str(queries), "--output", str(tmp_path / "r.trec"), "--k", "5"], capsys)
    assert code == 0 and out == (tmp_path / "r.trec").read_text() and "to standard output" in err
    assert not (tmp_path / "-").exists()
    code, _, err = run(["search", str(bundle_path), "--queries", str(queries), "--output", "-", "--json"], capsys)
    assert code == 2 and "choose one" in err
