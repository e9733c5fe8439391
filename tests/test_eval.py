"""Evaluation plumbing: query/qrels parsing, TREC runs, metrics against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from spacerini.errors import CorpusNotFoundError, EvaluationError, MalformedRecordError
from spacerini.eval import evaluate, parse_metrics, read_qrels, read_queries, write_trec_run
from spacerini.records import Hit

DATA = Path(__file__).parent / "data"


class FakeBundle:
    """Returns fixed rankings, so metric values can be computed by hand."""

    def __init__(self, runs: dict[str, list[str]]) -> None:
        self.runs = runs

    def batch_search(self, queries, *, k, backend=None, threads=1):
        return {
            qid: [Hit(docid=d, score=float(100 - i), rank=i + 1) for i, d in enumerate(self.runs.get(qid, [])[:k])]
            for qid, _ in queries
        }


def test_read_queries_and_qrels() -> None:
    qs = read_queries(DATA / "tiny_queries.tsv")
    assert qs[0] == ("q1", "bm25 ranking function") and len(qs) == 5
    qrels = read_qrels(DATA / "tiny_qrels.txt")
    assert qrels["q2"] == {"d04": 2, "d05": 2}


def test_metrics_hand_computed() -> None:
    qrels = {"a": {"d1": 1}, "b": {"d2": 1, "d3": 1}}
    bundle = FakeBundle({"a": ["d1", "x"], "b": ["x", "d2", "y", "z"]})
    scores = evaluate(bundle, [("a", "q"), ("b", "q")], qrels, metrics="nDCG@10,MAP,R@100,P@2")
    # a: perfect. b: d2 at rank 2, d3 missing.
    ndcg_b = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert scores["nDCG@10"] == pytest.approx((1 + ndcg_b) / 2)
    assert scores["AP"] == pytest.approx((1 + 0.5 / 2) / 2)
    assert scores["R@100"] == pytest.approx((1 + 0.5) / 2)
    assert scores["P@2"] == pytest.approx((0.5 + 0.5) / 2)


def test_trec_run_format(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    n = write_trec_run({"q1": [Hit("d1", 1.5, 1), Hit("d2", 0.25, 2)]}, path, tag="t")
    assert n == 2
    assert path.read_text().splitlines() == ["q1 Q0 d1 1 1.500000 t", "q1 Q0 d2 2 0.250000 t"]


@pytest.mark.parametrize(
    ("content", "error", "line"),
    [
        ("q1 no tab here\n", MalformedRecordError, 1),
        ("q1\tone\nq1\ttwo\n", MalformedRecordError, 2),
        (b"q1\tok\nq2\t\xff\xfe\n", MalformedRecordError, 2),
        ("\n\n", EvaluationError, None),
        # these three were accepted: a qid with a space wrote a broken TREC run, and an empty
        # or too long query failed later without naming the file and line
        ("q1\tok\nq 2\ttwo\n", MalformedRecordError, 2),
        ("q1\tok\nq2\t   \nq3\tthree\n", MalformedRecordError, 2),
        ("q1\t" + "word " * 3000 + "\n", MalformedRecordError, 1),
    ],
)
def test_bad_queries(tmp_path: Path, content, error, line) -> None:
    path = tmp_path / "q.tsv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(error) as info:
        read_queries(path)
    assert "q.tsv" in str(info.value)
    if line is not None:
        assert f":{line}:" in str(info.value)


def test_a_bom_does_not_join_the_first_qid(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_bytes(b"\xef\xbb\xbfq1\tfirst\r\nq2\tsecond\n")
    assert read_queries(path) == [("q1", "first"), ("q2", "second")]
    qrels = tmp_path / "qrels"
    qrels.write_bytes(b"\xef\xbb\xbfq1 0 d1 1\n")
    assert read_qrels(qrels) == {"q1": {"d1": 1}}
    path.write_bytes(b"\xef\xbb\xbfq1\tok\nq2\tcaf\xe9\n")
    with pytest.raises(MalformedRecordError, match=r"q\.tsv:2: invalid UTF-8 at byte 15:"):
        read_queries(path)


def test_bad_qrels(tmp_path: Path) -> None:
    path = tmp_path / "qrels"
    path.write_text("q1 0 d1 1\nq1 0 d2\n")
    with pytest.raises(MalformedRecordError, match=r"qrels:2: expected 4 columns"):
        read_qrels(path)
    path.write_text("q1 0 d1 high\n")
    with pytest.raises(MalformedRecordError, match="not an integer"):
        read_qrels(path)
    with pytest.raises(CorpusNotFoundError):
        read_qrels(tmp_path / "missing")


def test_unknown_metric_and_no_judged_queries() -> None:
    with pytest.raises(EvaluationError, match="unknown metric"):
        parse_metrics("nDCG@ten")
    with pytest.raises(EvaluationError, match="no query id"):
        evaluate(FakeBundle({}), [("zz", "q")], {"a": {"d": 1}})
