"""Broken promises found by a sweep of the audit, evaluation, hybrid and model commands, each
checked against a reference: the corpus's own text (what must not be shown), ir-measures, the
bundle's plain search."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from spacerini.audit.analyze import analyze, write_report
from spacerini.audit.contamination import MAX_CHARS, contamination
from spacerini.audit.ngrams import WORD
from spacerini.bundle import build_bundle
from spacerini.records import Doc
from tests.cli_helpers import run

AWS = "AKIAIOSFODNN7ABCDEFG"
GITHUB = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
EMAIL = "bob.smith@gmail.com"
OWNER = f"Bob Smith <{EMAIL}>"
TEXTS = [f"aws_key = {AWS} and token {GITHUB} mail {EMAIL} in document number {i}" for i in range(6)] + [
    "the quick brown fox jumps over the lazy dog",
    "the lazy dog sleeps",
    "",
]


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory):
    """A corpus whose commonest tokens are two keys, owned by someone named with an address."""
    docs = [Doc(f"d{i}", text, meta={"owner": OWNER, "repo": "r"}) for i, text in enumerate(TEXTS)]
    return build_bundle(docs, tmp_path_factory.mktemp("sweep") / "b", backends=["exact"], progress=False)


def _shown_anywhere(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.iterdir()))


# ---------------------------------------------------------------------------------- analyze
def test_analyze_report_redacts_the_corpus_keys_and_addresses(secrets, tmp_path: Path, capsys) -> None:
    # Reference: the keys are the commonest tokens of the corpus (Counter over its words).
    words = Counter(w for t in TEXTS for w in WORD.findall(t))
    assert {AWS, GITHUB} <= {w for w, _ in words.most_common(20)}
    code, out, err = run(["-q", "analyze", str(secrets.path), "--out", str(tmp_path / "r"), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["docs"] == len(TEXTS) == secrets.manifest["counts"]["docs"]
    for text in (out, _shown_anywhere(tmp_path / "r")):
        assert AWS not in text and GITHUB not in text and EMAIL not in text
    unigrams = {row["ngram"]: row["count"] for row in data["ngrams"]["1"]}
    assert unigrams["<KEY>"] == words[AWS] == 6  # the two keys are still counted, each as itself
    assert [row["count"] for row in data["ngrams"]["1"]] == [c for _, c in words.most_common(20)]
    assert data["breakdowns"]["owner"] == {"Bob Smith <<EMAIL>>": len(TEXTS)}
    # asked for, they are shown as stored, with the counts of brute force
    raw = analyze(secrets, progress=False, redact_pii=False)
    assert [(r["ngram"], r["count"]) for r in raw.ngrams["1"]] == words.most_common(20)
    assert raw.breakdowns["owner"] == {OWNER: len(TEXTS)}
    code, out, _ = run(
        ["-q", "analyze", str(secrets.path), "--out", str(tmp_path / "raw"), "--json", "--no-redact"], capsys
    )
    assert code == 0 and AWS in out


def test_redacted_breakdowns_add_up_categories_that_become_one(tmp_path: Path) -> None:
    docs = [
        Doc("a", "x y", meta={"owner": "Ann <ann@corp.io>"}),
        Doc("b", "x z", meta={"owner": "Ann <ann@home.io>"}),
    ]
    b = build_bundle(docs, tmp_path / "b", backends=["exact"], progress=False)
    assert analyze(b, progress=False).breakdowns["owner"] == {"Ann <<EMAIL>>": 2}


def test_report_files_are_renamed_into_place_together(secrets, tmp_path: Path, monkeypatch) -> None:
    """A failure (here Ctrl-C) while the report is written leaves the previous report whole (its
    analysis.json was overwritten before the page was made) and no temporary file."""
    import spacerini.audit.analyze as module

    analysis, lengths = analyze(secrets, progress=False, keep_lengths=True)
    out = tmp_path / "r"
    write_report(analysis, lengths, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "_html", interrupted)
    changed = analysis.__class__(**{**analysis.to_dict(), "docs": 12345})
    with pytest.raises(KeyboardInterrupt):
        write_report(changed, lengths, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# ----------------------------------------------------------------------------- contamination
def test_contamination_redacts_matched_secrets(secrets, tmp_path: Path, capsys) -> None:
    example = f"leaked: aws_key = {AWS} and token {GITHUB} mail {EMAIL} in document number 3"
    testset = tmp_path / "t.jsonl"
    testset.write_text(json.dumps({"id": "t1", "text": example}) + "\n", encoding="utf-8")
    report = contamination(secrets, str(testset), progress=False, redact_pii=False)
    raw = report.examples[0].longest_match_text
    assert AWS in raw and raw in TEXTS[3]  # reference: the match is corpus text holding the keys
    code, out, err = run(
        ["-q", "contamination", str(secrets.path), str(testset), "--json", "--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 0, err
    shown = json.loads(out)["examples"][0]
    assert shown["contaminated"] and shown["longest_match"] == len(raw)
    for text in (out, _shown_anywhere(tmp_path / "o")):
        assert AWS not in text and GITHUB not in text and EMAIL not in text
    assert shown["longest_match_text"].count("<KEY>") == 2 and "<EMAIL>" in shown["longest_match_text"]


def test_contamination_refuses_an_example_it_would_cut(secrets, tmp_path: Path, capsys) -> None:
    """An example longer than the limit was cut silently: a copy of a document past the cut was
    reported clean, with a wrong length."""
    testset = tmp_path / "long.jsonl"
    rows = [{"id": "ok", "text": "fine"}, {"id": "long", "text": "zzz " * (MAX_CHARS // 4) + TEXTS[6]}]
    testset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, out, err = run(["-q", "contamination", str(secrets.path), str(testset)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"{testset}:2:" in err and f"{len(rows[1]['text']):,} characters" in err


# ------------------------------------------------------------------------------------- eval
class _Fixed:
    """A bundle whose run is fixed, so that eval is compared with ir-measures alone."""

    def batch_search(self, queries, *, k, backend=None, threads=1):
        from spacerini.records import Hit

        return {qid: [Hit(docid=f"d{i}", score=10.0 - i, rank=i + 1) for i in range(3)] for qid, _ in queries}


@pytest.mark.parametrize(
    "metric", ["P@0", "nDCG@0", "AP@0", "Judged@0", "P(rel=0)@5", "P@2.5", "P(judged_only=1)@5"]
)
def test_bad_metric_parameters_are_one_error(metric: str) -> None:
    """trec_eval aborted the process (a C assert) on P@0; others failed deep in ir-measures."""
    from spacerini.errors import EvaluationError
    from spacerini.eval import evaluate

    with pytest.raises(EvaluationError, match=re.escape(repr(metric))):
        evaluate(_Fixed(), [("q1", "x")], {"q1": {"d0": 1}}, metrics=metric)


@pytest.mark.parametrize("metrics", ["", ",", " , "])
def test_no_metric_is_one_error(metrics: str) -> None:
    from spacerini.errors import EvaluationError
    from spacerini.eval import evaluate

    with pytest.raises(EvaluationError, match="no metric"):
        evaluate(_Fixed(), [("q1", "x")], {"q1": {"d0": 1}}, metrics=metrics)


def test_metric_parameters_that_are_valid_match_ir_measures() -> None:
    import ir_measures

    from spacerini.eval import evaluate

    qrels = {"q1": {"d0": 2, "d2": 1}, "q2": {"d1": 1}}
    got = evaluate(_Fixed(), [("q1", "x"), ("q2", "y")], qrels, metrics="P(rel=2)@2,RR,nDCG@1")
    run_ = {q: {f"d{i}": 10.0 - i for i in range(3)} for q in qrels}
    want = ir_measures.calc_aggregate(
        [ir_measures.parse_measure(m) for m in ("P(rel=2)@2", "RR", "nDCG@1")], qrels, run_
    )
    assert got == {str(m): v for m, v in want.items()} and len(got) == 3


def test_eval_prints_long_metric_names_apart_from_their_values(monkeypatch, capsys) -> None:
    import spacerini.bundle
    import spacerini.eval

    monkeypatch.setattr(spacerini.bundle, "open_bundle", lambda path: _Fixed())
    monkeypatch.setattr(spacerini.eval, "read_queries", lambda path: [("q1", "x")])
    monkeypatch.setattr(spacerini.eval, "read_qrels", lambda path: {"q1": {"d0": 2}})
    code, out, err = run(
        ["eval", "B", "--queries", "q", "--qrels", "r", "--metrics", "P(rel=2)@5,AP"], capsys
    )
    assert code == 0, err
    assert out.splitlines() == ["P(rel=2)@5 0.2000", "MAP       1.0000"]


# ---------------------------------------------------------------------------- hybrid options
@pytest.mark.parametrize(
    "args",
    [
        ["--alpha", "0.3"],  # the default backend (bm25) ignored it
        ["--backend", "bm25", "--hybrid-method", "weighted"],
        ["--backend", "exact", "--alpha", "0.5"],
        ["--backend", "hybrid", "--hybrid-method", "rrf", "--alpha", "0.2"],  # RRF ignored alpha
        ["--backend", "hybrid", "--alpha", "nan"],
    ],
)
def test_fusion_options_that_would_be_ignored_are_refused(secrets, capsys, args: list[str]) -> None:
    for command in (
        ["search", str(secrets.path), "fox"],
        ["eval", str(secrets.path), "--queries", "q", "--qrels", "r"],
    ):
        code, out, err = run([*command, *args], capsys)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "--alpha" in err or "--hybrid-method" in err


def test_fusion_options_given_with_hybrid_still_search(secrets, capsys) -> None:
    """The check refuses only what is ignored: plain searches answer as before."""
    code, out, err = run(["search", str(secrets.path), "lazy dog", "--backend", "exact", "--json"], capsys)
    assert code == 0, err
    assert {h["docid"] for h in json.loads(out)["hits"]} == {
        f"d{i}" for i, t in enumerate(TEXTS) if "lazy dog" in t
    }


# ------------------------------------------------------------------------------------ model
def test_generate_rejects_nan_options() -> None:
    from spacerini.model import generate
    from spacerini.model.errors import ModelError

    for options in (
        {"temperature": float("nan")},
        {"top_p": float("nan")},
        {"top_p": 0.0},
        {"max_new_tokens": 0},
    ):
        with pytest.raises(ModelError, match=re.escape(next(iter(options)))):
            generate("def f(", **options)


@pytest.mark.parametrize("device", ["foo", "cuda:99", "gpu"])
def test_an_unknown_device_is_one_clear_error(device: str) -> None:
    from spacerini.errors import DependencyMissingError
    from spacerini.model.device import choose_device

    with pytest.raises(DependencyMissingError, match="--device"):
        choose_device(device)
    assert str(choose_device("CPU")) == "cpu"


def test_trace_of_a_display_mode_bundle_goes_through_the_redacting_service(tmp_path: Path, capsys) -> None:
    """`model trace` printed the owner's address and traced a key straight through the text;
    the service (as the app and `member` use it) redacts sources and traces around the PII."""
    code = (
        "def compute_the_total_of_all_values(values):\n    total = 0\n    for value in values:\n"
        f"        total += value\n    return total\n# maintainer key {AWS} and more text after it\n"
    )
    b = build_bundle(
        [Doc("pkg/mod.py", code, meta={"owner": OWNER, "licence": "MIT"})], tmp_path / "b", backends=["exact"],
        preprocess=["pii"], preprocess_options={"pii": {"mode": "display"}}, progress=False,
    )  # fmt: skip
    source = tmp_path / "q.py"
    source.write_text(code, encoding="utf-8")
    exit_code, out, err = run(["model", "trace", str(b.path), str(source), "--json"], capsys)
    assert exit_code == 0, err
    result = json.loads(out)
    assert EMAIL not in out and AWS not in out
    key_at = code.index(AWS)
    assert result["spans"] and all(not s["start"] < key_at + len(AWS) <= s["end"] for s in result["spans"])
    assert all(src["owner"] == "Bob Smith <<EMAIL>>" for s in result["spans"] for src in s["sources"])
    # reference: the plain trace (a bundle that does not redact) does cover the key
    from spacerini.model import trace

    plain = trace(b, code, min_len=32)
    assert any(s.start <= key_at < s.end for s in plain.spans)
