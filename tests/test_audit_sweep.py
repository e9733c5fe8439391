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


# ------------------------------------------------------------------------ bad-input sweep
# A second sweep: bad input to analyze, contamination and the model commands is one line on
# stderr (exit 2) naming what is wrong, before the work, and nothing is lost or mixed up.
DATA = Path(__file__).resolve().parent / "data"


SMALL = {
    "a": "the quick brown fox jumps over the lazy dog",
    "b": "a byte \x00 in the middle of a sentence",
    "c": "BM25 is a bag-of-words ranking function",
    "d": "exact substring search",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    """An exact-backend bundle of four documents, one of them holding a NUL character."""
    docs = [Doc(i, t) for i, t in SMALL.items()]
    return build_bundle(docs, tmp_path_factory.mktemp("small") / "b", backends=["exact"], progress=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(code: int, out: str, err: str) -> str:
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("spacerini: error: "), (code, out, err)
    return err


def _testset(tmp_path: Path, rows: list[dict], name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("where", ["", "docs", "exact/sub", "../other"])
def test_a_report_is_never_written_into_a_bundle(small, tmp_path: Path, capsys, where: str, monkeypatch) -> None:
    """`analyze B --out B` (or B/docs) wrote report.html and the PNGs among the bundle's files:
    `info --verify` then failed ("not in the manifest"). Now refused before the pass."""
    import spacerini.audit.analyze as module

    other = build_bundle([Doc("x", "y z")], tmp_path / "other", backends=["exact"], progress=False)
    bundle = Path(small.path)
    out = (bundle / where) if where != "../other" else other.path
    before, before_other = _files(bundle), _files(Path(other.path))
    monkeypatch.setattr(module, "analyze", lambda *a, **k: pytest.fail("analyzed before --out was checked"))
    err = _one_line(*run(["-q", "analyze", str(bundle), "--out", str(out)], capsys))
    assert "the bundle" in err and "outside" in err
    testset = _testset(tmp_path, [{"id": "1", "text": "the quick brown fox"}])
    err = _one_line(*run(["-q", "contamination", str(bundle), str(testset), "--out", str(out)], capsys))
    assert "the bundle" in err and "outside" in err
    assert _files(bundle) == before and _files(Path(other.path)) == before_other
    assert run(["info", str(bundle), "--verify"], capsys)[0] == 0


def test_a_folder_where_a_report_file_goes_is_named_and_nothing_is_published(small, tmp_path: Path, capsys) -> None:
    """A folder named report.html in --out: the error named a temporary file (.analysis.json.PID.tmp),
    came after the pass, and the PNGs had already been renamed into place beside the old page."""
    out = tmp_path / "r"
    (out / "report.html").mkdir(parents=True)
    err = _one_line(*run(["-q", "analyze", str(small.path), "--out", str(out)], capsys))
    assert f"{out / 'report.html'}: is a folder" in err and ".tmp" not in err
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    (tmp_path / "c" / "contamination.json").mkdir(parents=True)
    testset = _testset(tmp_path, [{"id": "1", "text": "the quick brown fox"}])
    err = _one_line(*run(["-q", "contamination", str(small.path), str(testset), "--out", str(tmp_path / "c")], capsys))
    assert "contamination.json: is a folder" in err
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["contamination.json"]
    # the library's own check, for a chart's name (known only once the charts are drawn)
    analysis, lengths = analyze(small, progress=False, keep_lengths=True)
    (tmp_path / "l" / "top_unigrams.png").mkdir(parents=True)
    with pytest.raises(Exception, match="top_unigrams.png: is a folder"):
        write_report(analysis, lengths, tmp_path / "l")
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["top_unigrams.png"]


def test_contamination_limit_beyond_any_test_set_reads_it_all(small, tmp_path: Path, capsys) -> None:
    """--limit 10**30 was "ValueError: Stop argument for islice() must be None or an integer"."""
    testset = _testset(tmp_path, [{"id": "1", "text": "exact substring search"}, {"id": "2", "text": "nothing"}])
    code, out, err = run(["-q", "contamination", str(small.path), str(testset), "--limit", str(10**30), "--json"], capsys)
    assert code == 0, err
    assert [e["id"] for e in json.loads(out)["examples"]] == ["1", "2"]


@pytest.mark.parametrize("option", ["--field", "--id-field"])
def test_an_empty_column_option_is_refused(small, tmp_path: Path, capsys, option: str) -> None:
    """`--id-field ""` was ignored (ids became row numbers) and `--field ""` said no '' field."""
    testset = _testset(tmp_path, [{"id": "x", "text": "exact substring search"}])
    err = _one_line(*run(["-q", "contamination", str(small.path), str(testset), option, ""], capsys))
    assert f"{option} is empty" in err


def test_an_example_holding_a_nul_is_matched_as_the_corpus_stores_it(small, tmp_path: Path, capsys) -> None:
    """The example's NUL was replaced by a space before matching, so a verbatim copy of a document
    holding one (the corpus keeps it) was reported clean."""
    copied = SMALL["b"]
    testset = _testset(tmp_path, [{"id": "copy", "text": copied}, {"id": "part", "text": "byte \x00 in the middle"}])
    code, out, err = run(["-q", "contamination", str(small.path), str(testset), "--json"], capsys)
    assert code == 0, err
    got = {e["id"]: e for e in json.loads(out)["examples"]}
    assert [i for i, t in SMALL.items() if copied in t] == ["b"]  # reference: str's own search
    assert got["copy"]["contaminated"] and got["copy"]["overlap"] == 1.0
    assert got["copy"]["longest_match"] == len(copied) and got["copy"]["doc"] == "b"
    assert got["part"]["overlap"] == 1.0 and got["part"]["doc"] == "b"


def test_an_example_holding_a_nul_through_a_searcher_without_shards_is_no_error(small) -> None:
    """A searcher in Ray actors has only count/find, which refuse NUL: such spans are not found
    (no QueryError, no false match), the rest of the example is matched."""
    from spacerini.audit.contamination import Example, _Matcher, check_example

    local = small.searcher("exact")

    class Remote:
        def count(self, pat: bytes) -> int:
            return local.count(pat)

        def find(self, pat: bytes, k: int = 10):
            return local.find(pat, k=k)

    result = check_example(_Matcher(Remote()), Example("x", "a byte \x00 in the middle of a sentence"), ngram=3)
    # 8 tokens, 6 trigrams; the two across the NUL ("a byte in", "byte in the") are not confirmed
    assert result.ngrams == 6 and result.ngrams_found == 4
    assert result.doc == "b" and result.longest_match == len("in the middle of a sentence")


def test_examples_without_a_word_are_reported_and_said(small, tmp_path: Path, capsys, caplog) -> None:
    testset = _testset(tmp_path, [{"id": "e", "text": ""}, {"id": "n", "text": None}, {"id": "w", "text": "exact substring search"}])
    with caplog.at_level("WARNING", logger="spacerini.audit.contamination"):
        report = contamination(small, str(testset), progress=False)
    assert [e.id for e in report.examples] == ["e", "n", "w"]
    assert "2 of 3 examples have no word to match" in caplog.text and "'e', 'n'" in caplog.text


def _register_irds(with_queries: bool = True) -> str:
    import uuid

    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import JsonlDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    name = f"spacerini-test/sweep-{uuid.uuid4().hex[:8]}"
    docs = JsonlDocs(LocalDownload(DATA / "tiny.jsonl"), mapping={"doc_id": "id", "text": "contents"})
    parts = [docs, TsvQueries(LocalDownload(DATA / "tiny_queries.tsv"))] if with_queries else [docs]
    ir_datasets.registry.register(name, Dataset(*parts))
    return name


def test_an_irds_test_set_is_its_queries(tmp_path: Path, capsys) -> None:
    """`contamination B irds:NAME` said "no such test set file or folder"; it reads the queries
    (from the local cache, never downloaded), as the same queries written to JSONL do."""
    bundle = build_bundle(str(DATA / "tiny.jsonl"), tmp_path / "b", backends=["exact"], progress=False)
    name = _register_irds()
    code, out, err = run(["-q", "contamination", str(bundle.path), f"irds:{name}", "--json", "--ngram", "2"], capsys)
    assert code == 0, err
    rows = [line.split("\t") for line in (DATA / "tiny_queries.tsv").read_text(encoding="utf-8").splitlines()]
    reference = contamination(bundle, [{"id": q, "text": t} for q, t in rows], ngram=2, progress=False)
    got = json.loads(out)["examples"]
    assert [e["id"] for e in got] == [q for q, _ in rows] and len(got) == len(rows)
    assert got == reference.to_dict()["examples"]
    assert any(e["contaminated"] for e in got)
    docs_only = _register_irds(with_queries=False)
    err = _one_line(*run(["-q", "contamination", str(bundle.path), f"irds:{docs_only}"], capsys))
    assert "has no queries" in err


def test_a_saved_dataset_is_a_test_set_and_a_split_it_lacks_is_refused(small, tmp_path: Path, capsys) -> None:
    """A save_to_disk folder given as a path was read as JSON files ("dataset_info.json:1: malformed
    JSON"); errors named "Dataset(2 rows):1", not the source; and @test on a single saved
    Dataset read all of it."""
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"id": ["q1", "q2"], "question": ["exact substring search", "zzz"]}).save_to_disk(
        str(folder)
    )
    for source in (str(folder), f"hf:{folder}"):
        code, out, err = run(["-q", "contamination", str(small.path), source, "--field", "question", "--json"], capsys)
        assert code == 0, err
        assert [e["contaminated"] for e in json.loads(out)["examples"]] == [True, False]
        err = _one_line(*run(["-q", "contamination", str(small.path), source], capsys))
        assert f"{source}:1: no 'text' field" in err
    err = _one_line(*run(["-q", "contamination", str(small.path), f"hf:{folder}@test", "--field", "question"], capsys))
    assert "no split 'test'" in err and "leave out @test" in err


# ------------------------------------------------------------------------- model, bad input
def test_a_lone_surrogate_fails_before_the_model_loads(monkeypatch, capsys) -> None:
    """A byte that is not UTF-8 on the command line (read as a lone surrogate) was a TypeError
    from the tokenizer, after the model had loaded."""
    import spacerini.model.generation as generation
    import spacerini.model.membership as membership

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(generation, "resolve_model", never)
    monkeypatch.setattr(membership, "resolve_model", never)
    err = _one_line(*run(["-q", "model", "membership", "caf\udce9 au lait"], capsys))
    assert "the text holds a lone surrogate (U+DCE9) at character 4" in err
    err = _one_line(*run(["-q", "model", "generate", "def f(\ud800"], capsys))
    assert "the prompt holds a lone surrogate (U+D800)" in err
    err = _one_line(*run(["-q", "model", "generate", "def f(", "--suffix", "\udcff)"], capsys))
    assert "the suffix holds a lone surrogate" in err


def test_membership_bundle_without_exact_or_bloom_names_it_and_what_to_do(tmp_path: Path, monkeypatch, capsys) -> None:
    import spacerini.model.membership as membership

    monkeypatch.setattr(membership, "resolve_model", lambda *a, **k: pytest.fail("the model was loaded"))
    b = build_bundle([Doc("a", "x y", meta={"owner": "o", "repo": "r"})], tmp_path / "b", backends=["owners"], progress=False)
    err = _one_line(*run(["-q", "model", "membership", "def f(): pass", "--bundle", str(b.path)], capsys))
    assert f"{b.path}:" in err and "--backends owners,exact" in err


def test_membership_text_or_file(tmp_path: Path, caplog) -> None:
    """A device (/dev/null) was scored as the text "/dev/null"; an unreadable file was "Input/output
    error" naming nothing; an empty file "the text is empty"; a mistyped file name was scored as
    text without a word."""
    from spacerini.errors import QueryError
    from spacerini.model.membership import read_text_or_file

    with pytest.raises(QueryError, match="^/dev/null: the file is empty"):
        read_text_or_file("/dev/null")
    empty = tmp_path / "empty.py"
    empty.write_bytes(b"")
    with pytest.raises(QueryError, match=f"^{re.escape(str(empty))}: the file is empty"):
        read_text_or_file(str(empty))
    with pytest.raises(QueryError, match=f"^{re.escape(str(tmp_path))}: is a folder"):
        read_text_or_file(str(tmp_path))
    if Path("/proc/self/mem").exists():
        with pytest.raises(QueryError, match="^/proc/self/mem: cannot be read"):
            read_text_or_file("/proc/self/mem")
    code = tmp_path / "ok.py"
    code.write_text("def f():\n    return 1\n", encoding="utf-8")
    assert read_text_or_file(str(code)) == code.read_text(encoding="utf-8")
    with caplog.at_level("WARNING", logger="spacerini.model.membership"):
        assert read_text_or_file("missing_file.py") == "missing_file.py"
        assert read_text_or_file("os.path.join") == "os.path.join"
        assert read_text_or_file("def f(): pass") == "def f(): pass"
    assert caplog.text.count("no file named") == 1 and "missing_file.py" in caplog.text


def test_ctrl_c_while_the_charts_are_drawn_stops_the_report_and_keeps_the_old_one(small, tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C (or SIGTERM) landing inside matplotlib was turned into "ValueError: Invalid bounding
    box", or, in one of its weakref callbacks, printed as "Exception ignored" and lost: the report
    was written and the command exited 0. It is now held and delivered between charts."""
    import os
    import signal

    from spacerini.audit import plots

    analysis, lengths = analyze(small, progress=False, keep_lengths=True)
    out = tmp_path / "r"
    write_report(analysis, lengths, out)
    before = _files(out)
    real = plots.png_bytes

    class Bomb:
        def __del__(self) -> None:  # where an exception is ignored, as in matplotlib's callbacks
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # the Python handler runs here
                pass

    def drawing(fig):
        Bomb()
        return real(fig)

    monkeypatch.setattr(plots, "png_bytes", drawing)
    changed = analysis.__class__(**{**analysis.to_dict(), "docs": 12345})
    with pytest.raises(KeyboardInterrupt):
        write_report(changed, lengths, out)
    assert _files(out) == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    testset = [{"id": "1", "text": "exact substring search"}]
    with pytest.raises(KeyboardInterrupt):
        from spacerini.audit.contamination import write_report as write_contamination

        write_contamination(contamination(small, testset, progress=False), tmp_path / "c")
    assert not (tmp_path / "c" / "contamination.html").exists()
