"""The command line contract (shared/DESIGN.md): outputs, --json, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spacerini.cli import main
from spacerini.errors import BackendParameterError
from tests.cli_helpers import run

DATA = Path(__file__).parent / "data"




def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("spacerini: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny"
    code = subprocess.run(
        [sys.executable, "-m", "spacerini", "-q", "index", str(DATA / "tiny.jsonl"), "--out", str(out), "--fields", "title,contents"],
        capture_output=True,
        text=True,
    )
    assert code.returncode == 0, code.stderr
    return out


def test_search_json(bundle_dir: Path, capsys) -> None:
    code, out, _ = run(["search", str(bundle_dir), "faiss dense vectors", "--k", "3", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["hits"][0]["docid"] in {"d04", "d05"}
    assert len(data["hits"]) == 3
    assert data["hits"][0]["fields"]["title"] in {"Dense retrieval", "Faiss"}


def test_search_text_and_pagination(bundle_dir: Path, capsys) -> None:
    code, out, _ = run(["search", str(bundle_dir), "search", "--k", "2", "--offset", "2"], capsys)
    assert code == 0
    assert out.splitlines()[0].split()[0] == "3"


def test_fields_are_joined(bundle_dir: Path, capsys) -> None:
    # "Stopwords" occurs only in d11's title: --fields title,contents put it in the indexed contents.
    code, out, _ = run(["search", str(bundle_dir), "REtrieval Conference", "--json"], capsys)
    assert json.loads(out)["hits"][0]["docid"] == "d14"


def test_batch_run_and_eval(bundle_dir: Path, tmp_path: Path, capsys) -> None:
    run_file = tmp_path / "run.trec"
    code, _, err = run(
        ["search", str(bundle_dir), "--queries", str(DATA / "tiny_queries.tsv"), "--output", str(run_file), "--k", "1000"],
        capsys,
    )
    assert code == 0, err
    lines = run_file.read_text().splitlines()
    assert lines[0].split()[:4] == ["q1", "Q0", "d01", "1"]
    assert {line.split()[0] for line in lines} == {"q1", "q2", "q3", "q4", "q5"}
    code, out, err = run(
        ["eval", str(bundle_dir), "--queries", str(DATA / "tiny_queries.tsv"), "--qrels", str(DATA / "tiny_qrels.txt"), "--json"],
        capsys,
    )
    assert code == 0, err
    scores = json.loads(out)
    assert set(scores) == {"nDCG@10", "AP", "R@100"}
    assert 0.5 < scores["nDCG@10"] <= 1.0
    import ir_measures

    qrels = list(ir_measures.read_trec_qrels(str(DATA / "tiny_qrels.txt")))
    ref = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, list(ir_measures.read_trec_run(str(run_file))))
    assert scores["nDCG@10"] == pytest.approx(ref[ir_measures.nDCG @ 10])
    code, out, _ = run(["eval", str(bundle_dir), "--queries", str(DATA / "tiny_queries.tsv"), "--qrels", str(DATA / "tiny_qrels.txt")], capsys)
    assert [line.split()[0] for line in out.splitlines()] == ["nDCG@10", "MAP", "R@100"]


def test_python_dash_m_and_console_script(bundle_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spacerini", "search", str(bundle_dir), "Lucene Java", "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hits"][0]["docid"] == "d02"
    script = Path(sys.executable).parent / "spacerini"
    proc = subprocess.run([str(script), "search", str(bundle_dir), ""], capture_output=True, text=True)
    assert_one_line_error(proc.returncode, proc.stderr, "empty")


@pytest.mark.parametrize(
    ("query", "needle"),
    [("", "empty"), ("   ", "empty"), ("z" * 100_000, "100,000 characters")],
)
def test_bad_query(bundle_dir: Path, capsys, query: str, needle: str) -> None:
    code, _, err = run(["search", str(bundle_dir), query], capsys)
    assert_one_line_error(code, err, needle)


def test_hostile_query_works(bundle_dir: Path, capsys) -> None:
    code, out, err = run(["search", str(bundle_dir), 'contents:(bloom AND filter) OR "x"~2 +-*?\\ ^ [a TO b]', "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["hits"][0]["docid"] == "d07"


def test_missing_bundle(tmp_path: Path, capsys) -> None:
    code, _, err = run(["search", str(tmp_path / "nope"), "x"], capsys)
    assert_one_line_error(code, err, "no bundle here")
    corpus = tmp_path / "corpus.jsonl"  # a corpus file where the bundle goes: say so, and how to build one
    corpus.write_text('{"id": "a", "contents": "x"}\n')
    code, _, err = run(["search", str(corpus), "x"], capsys)
    assert_one_line_error(code, err, f"a file, not a bundle folder; build a bundle from it with `spacerini index {corpus}")


def test_usage_error_is_one_line(capsys) -> None:
    code, _, err = run(["search"], capsys)
    assert_one_line_error(code, err, "BUNDLE")


def _write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


BAD_INPUTS = [
    ("empty.jsonl", "", "empty.jsonl", "empty"),
    ("bad.jsonl", '{"id": "a", "contents": "x"}\n{"id": "b", "contents": \n', "bad.jsonl:2", ""),
    ("noid.jsonl", '{"id": "a", "contents": "x"}\n{"contents": "y"}\n', "noid.jsonl:2", "id"),
    ("notext.jsonl", '{"id": "a", "contents": "x"}\n{"id": "b", "title": "y"}\n', "notext.jsonl:2", "contents"),
    ("dup.jsonl", '{"id": "a", "contents": "x"}\n{"id": "b", "contents": "y"}\n{"id": "a", "contents": "z"}\n', "dup.jsonl:3", "duplicate"),
    ("latin1.jsonl", b'{"id": "a", "contents": "x"}\n{"id": "b", "contents": "caf\xe9"}\n', "latin1.jsonl:2", "UTF-8"),
]


@pytest.mark.parametrize(("name", "content", "where", "needle"), BAD_INPUTS)
def test_bad_corpus(tmp_path: Path, capsys, name: str, content, where: str, needle: str) -> None:
    src = _write(tmp_path / name, content)
    out = tmp_path / "out"
    code, _, err = run(["index", str(src), "--out", str(out)], capsys)
    assert_one_line_error(code, err, where, needle)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing half-written


def test_missing_source(tmp_path: Path, capsys) -> None:
    code, _, err = run(["index", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "nope.jsonl")


def test_document_past_lucene_limits_is_a_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:
    """A text longer than Anserini's JSON limit (20M characters) is a clear error naming the document.

    The limit is lowered here so the test stays small; the code path is the real one.
    """
    from spacerini.backends import bm25

    monkeypatch.setattr(bm25, "MAX_TEXT_CHARS", 1_000)
    src = _write(tmp_path / "huge.jsonl", json.dumps({"id": "big", "contents": "word " * 400}) + "\n")
    out = tmp_path / "out"
    code, _, err = run(["index", str(src), "--out", str(out)], capsys)
    assert_one_line_error(code, err, "big")
    assert not out.exists()


def test_document_past_lucene_limits_names_its_file_and_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """The backend sees only the id; the build finds the file and line by reading the source again."""
    from spacerini.backends import bm25

    monkeypatch.setattr(bm25, "MAX_TEXT_CHARS", 1_000)
    lines = [json.dumps({"id": f"d{i}", "contents": "small"}) for i in range(3)]
    lines.insert(2, json.dumps({"id": "big", "contents": "word " * 400}))
    src = _write(tmp_path / "huge.jsonl", "\n".join(lines) + "\n")
    for extra in ([], ["--shards", "2"]):
        out = tmp_path / f"out{len(extra)}"
        code, _, err = run(["-q", "index", str(src), "--out", str(out), *extra], capsys)
        assert_one_line_error(code, err, f"{src}:3: document 'big' has 2,000 characters")
        assert not out.exists()


def test_huge_document_is_indexed(tmp_path: Path, capsys) -> None:
    """A 4 MB document is indexed whole (the standard analyzer splits long tokens), not dropped."""
    words = " ".join(f"w{i}" for i in range(600_000)) + " needleword"
    src = _write(tmp_path / "huge.jsonl", json.dumps({"id": "huge", "contents": words}) + "\n" + json.dumps({"id": "small", "contents": "tiny"}) + "\n")
    out = tmp_path / "out"
    code, _, err = run(["index", str(src), "--out", str(out)], capsys)
    assert code == 0, err
    code, o, _ = run(["search", str(out), "needleword", "--json"], capsys)
    assert [h["docid"] for h in json.loads(o)["hits"]] == ["huge"]


def test_dense_and_hybrid_from_the_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "dense"
    code, _, err = run(
        ["index", str(DATA / "tiny.jsonl"), "--out", str(out), "--backends", "bm25,dense", "--dense-index", "flat"], capsys
    )
    assert code == 0, err
    for backend in ("dense", "hybrid"):
        code, o, err = run(["search", str(out), "vector similarity search library", "--backend", backend, "--json"], capsys)
        assert code == 0, err
        assert "d05" in [h["docid"] for h in json.loads(o)["hits"][:3]]
    code, o, err = run(
        ["eval", str(out), "--queries", str(DATA / "tiny_queries.tsv"), "--qrels", str(DATA / "tiny_qrels.txt"),
         "--backend", "hybrid", "--hybrid-method", "weighted", "--alpha", "0.3", "--json"],
        capsys,
    )
    assert code == 0, err
    assert set(json.loads(o)) == {"nDCG@10", "AP", "R@100"}
    code, _, err = run(["search", str(tmp_path / "nope"), "x", "--backend", "hybrid"], capsys)
    assert_one_line_error(code, err, "no bundle")


def test_dense_index_options_from_the_cli(tmp_path: Path, capsys) -> None:
    from spacerini.bundle import open_bundle

    out = tmp_path / "hnsw"
    code, _, err = run(
        ["index", str(DATA / "tiny.jsonl"), "--out", str(out), "--backends", "bm25,dense", "--dense-index", "hnsw",
         "--hnsw-m", "8", "--ef-construction", "40", "--ef-search", "20", "--passage-tokens", "64", "--overlap", "8",
         "--device", "cpu"],
        capsys,
    )
    assert code == 0, err
    bundle = open_bundle(out)
    params = bundle.manifest["backends"]["dense"]["params"]
    assert {k: params[k] for k in ("index", "hnsw_m", "ef_construction", "ef_search", "passage_tokens", "overlap")} == {
        "index": "hnsw", "hnsw_m": 8, "ef_construction": 40, "ef_search": 20, "passage_tokens": 64, "overlap": 8,
    }
    assert bundle.searcher("dense")._index.hnsw.efSearch == 20
    bundle.configure("dense", ef_search=77)  # what `search --ef-search 77` does
    assert bundle.searcher("dense")._index.hnsw.efSearch == 77
    with pytest.raises(BackendParameterError, match="no search option"):
        bundle.configure("dense", ef_serch=5)
    bundle.close()
    code, o, err = run(["search", str(out), "vector similarity search library", "--backend", "dense", "--ef-search", "64", "--json"], capsys)
    assert code == 0, err
    assert "d05" in [h["docid"] for h in json.loads(o)["hits"][:3]]

    code, _, err = run(["index", str(DATA / "tiny.jsonl"), "--out", str(tmp_path / "x"), "--hnsw-m", "8"], capsys)
    assert_one_line_error(code, err, "--hnsw-m apply to the dense backend")
    code, _, err = run(["index", str(DATA / "tiny.jsonl"), "--out", str(tmp_path / "bm25")], capsys)
    assert code == 0, err
    code, _, err = run(["search", str(tmp_path / "bm25"), "x", "--nprobe", "4"], capsys)
    assert_one_line_error(code, err, "--nprobe apply to the dense backend")


def test_closed_pipe_ends_quietly(bundle_dir: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """`spacerini search ... | head`: the reader leaving is no error (exit 141, nothing on stderr)."""
    import click

    def closed(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(click, "echo", closed)
    with pytest.raises(SystemExit) as exit_info:
        main(["search", str(bundle_dir), "json"])
    assert exit_info.value.code == 141
    assert capsys.readouterr().err == ""


def test_model_train_passes_its_options(bundle_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import spacerini.model

    seen: dict[str, object] = {}

    def fake_train(bundle: str, out: str, **options: object) -> dict[str, object]:
        seen.update(options, bundle=bundle, out=out)
        return {"steps": options["steps"]}

    monkeypatch.setattr(spacerini.model, "train", fake_train)
    code, out, err = run(
        ["model", "train", "--bundle", str(bundle_dir), "--out", str(tmp_path / "m"), "--steps", "3",
         "--threads", "2", "--adapt-threads", "--device", "cpu", "--time-limit", "9"],
        capsys,
    )
    assert code == 0, err
    assert "Trained to step 3" in out
    assert (seen["threads"], seen["adapt_threads"], seen["device"], seen["time_limit"]) == (2, True, "cpu", 9.0)
    code, _, err = run(["model", "train", "--bundle", str(bundle_dir), "--out", str(tmp_path / "m"), "--threads", "0"], capsys)
    assert code == 2 and "--threads" in err


def test_model_commands(tmp_path: Path, capsys) -> None:
    code, out, err = run(["model", "info", "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["model_type"] == "gpt_bigcode" and info["multi_query"] and info["fim_supported"]
    assert info["parameters"] <= 10_000_000
    args = ["model", "generate", "def add(a, b):", "--seed", "3", "--max-new-tokens", "8", "--json"]
    first = run(args, capsys)
    second = run(args, capsys)
    assert first[0] == 0 and first[1] == second[1]  # same seed, same text
    code, out, err = run(["model", "generate", "def f(x):\n", "--suffix", "\n    return y\n", "--seed", "0", "--max-new-tokens", "8", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["suffix"] == "\n    return y\n"
    # Tracing: a corpus excerpt inside noise is found with its document.
    out_dir = tmp_path / "b"
    code, _, err = run(["index", str(DATA / "tiny.jsonl"), "--out", str(out_dir), "--backends", "bm25,exact"], capsys)
    assert code == 0, err
    excerpt = "A suffix array is a sorted array of all suffixes of a string"
    src = _write(tmp_path / "gen.py", f"zq1 xv9 {excerpt} kk2 ww0\n")
    code, out, err = run(["model", "trace", str(out_dir), str(src), "--json"], capsys)
    assert code == 0, err
    spans = json.loads(out)["spans"]
    assert any(excerpt in s["text"] and s["sources"][0]["docid"] == "d06" for s in spans)


def test_generate_trace_when_the_model_writes_nothing(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that stops at once (its first token is <|endoftext|>) wrote nothing: the trace is
    empty, not an "empty query" error."""
    import spacerini.model

    out_dir = tmp_path / "b"
    code, _, err = run(["-q", "index", str(DATA / "tiny.jsonl"), "--out", str(out_dir), "--backends", "bm25,exact"], capsys)
    assert code == 0, err
    monkeypatch.setattr(spacerini.model, "generate", lambda *a, **k: "")
    code, out, err = run(["model", "generate", "def f():", "--trace", str(out_dir), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["trace"]["chars"] == 0 and json.loads(out)["trace"]["spans"] == []
    code, out, err = run(["model", "generate", "def f():", "--trace", str(out_dir)], capsys)
    assert code == 0, err
    assert "0 span(s)" in out


def test_optout_file_with_the_step_named_by_an_alias(tmp_path: Path, capsys) -> None:
    """``--preprocess opt-out --optout FILE`` runs the one opt-out step, with the file's ids."""
    ids = tmp_path / "optout.txt"
    ids.write_text("d01\n", encoding="utf-8")
    out = tmp_path / "b"
    code, _, err = run(
        ["-q", "index", str(DATA / "tiny.jsonl"), "--out", str(out), "--preprocess", "opt-out", "--optout", str(ids)],
        capsys,
    )
    assert code == 0, err
    manifest = json.loads((out / "spacerini.json").read_text(encoding="utf-8"))
    assert '"d01"' not in (out / "spacerini.json").read_text(encoding="utf-8")  # never the id itself
    assert manifest["counts"]["docs"] == len((DATA / "tiny.jsonl").read_text().splitlines()) - 1


def _index_stderr(tmp_path: Path, *global_flags: str) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "SPACERINI_NO_PROGRESS"}
    done = subprocess.run(
        [sys.executable, "-m", "spacerini", *global_flags, "index", str(DATA / "tiny.jsonl"), "--out", str(tmp_path / "b"),
         "--backends", "bm25,exact,bloom,owners"],
        capture_output=True, text=True, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Built ")
    return done.stderr


def test_quiet_hides_every_progress_bar(tmp_path: Path) -> None:
    """``-q`` prints nothing on stderr: no loading, "Lucene indexing", n-gram or other bars."""
    loud = _index_stderr(tmp_path / "loud")
    assert "bm25: Lucene indexing" in loud and "bloom: adding n-grams" in loud and "loading " in loud
    assert _index_stderr(tmp_path / "quiet", "-q") == ""


def _flags_of(command: str) -> set[str]:
    from spacerini.cli import cli

    return {opt for param in cli.commands[command].params for opt in getattr(param, "opts", [])}


def test_too_large_document_advice_works(tmp_path: Path, capsys, monkeypatch) -> None:
    """The too-large-document error (a 50 MB text is past Anserini's 20M characters) names only flags
    that exist, and following its advice builds the bundle. The limit is lowered to keep the test small."""
    import re

    from spacerini.backends import bm25

    monkeypatch.setattr(bm25, "MAX_TEXT_CHARS", 1_000)
    backends = "bm25"
    src = _write(
        tmp_path / "huge.jsonl",
        json.dumps({"id": "big", "contents": "word " * 400}) + "\n" + json.dumps({"id": "small", "contents": "tiny"}) + "\n",
    )
    code, _, err = run(["-q", "index", str(src), "--out", str(tmp_path / "out"), "--backends", backends], capsys)
    assert_one_line_error(code, err, "'big'", "--optout FILE")
    flags = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", err))
    assert flags and flags <= _flags_of("index"), flags
    ids = _write(tmp_path / "ids.txt", "big\n")
    code, out, err = run(["-q", "index", str(src), "--out", str(tmp_path / "out"), "--backends", backends, "--optout", str(ids)], capsys)
    assert code == 0, err
    assert "1 documents" in out


def test_search_backend_must_be_a_search_backend(bundle_dir: Path, capsys) -> None:
    """An unknown --backend is an error listing the valid ones, never advice to build an invalid backend."""
    code, _, err = run(["search", str(bundle_dir), "x", "--backend", "lucene"], capsys)
    assert_one_line_error(code, err, "'lucene'", "'bm25', 'dense', 'hybrid', 'exact'")
    assert "--backends" not in err


@pytest.mark.parametrize("k", ["0", "-3"])
def test_search_k_below_one_is_an_error(bundle_dir: Path, capsys, k: str) -> None:
    code, out, err = run(["search", str(bundle_dir), "search", "--k", k], capsys)
    assert_one_line_error(code, err, "--k", k)
    assert out == ""


def test_run_to_an_unwritable_place_names_the_given_path(bundle_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    queries = _write(tmp_path / "q.tsv", "q1\tsearch\n")
    missing = tmp_path / "no" / "such" / "run.trec"
    code, _, err = run(["search", str(bundle_dir), "--queries", str(queries), "--output", str(missing)], capsys)
    assert_one_line_error(code, err, str(missing), "no such folder")
    assert ".tmp" not in err and not missing.parent.exists()
    code, _, err = run(["search", str(bundle_dir), "--queries", str(queries), "--output", str(tmp_path)], capsys)
    assert_one_line_error(code, err, str(tmp_path), "is a directory")

    import spacerini.eval

    def refuse(results, path, *, tag):  # the disk refuses the temporary file after the batch ran
        raise PermissionError(13, "Permission denied", str(Path(path).with_name(".run.trec.tmp")))

    monkeypatch.setattr(spacerini.eval, "write_trec_run", refuse)
    target = tmp_path / "run.trec"
    code, _, err = run(["search", str(bundle_dir), "--queries", str(queries), "--output", str(target)], capsys)
    assert_one_line_error(code, err, str(target), "Permission denied")
    assert ".tmp" not in err


def test_optout_ids_from_a_pipe(bundle_dir: Path, tmp_path: Path, capsys) -> None:
    """``--ids <(printf 'd01\\n')`` passes /dev/fd/N, a pipe: it is read as a file, not refused as a folder."""
    import os
    import shutil

    from spacerini.bundle import open_bundle

    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    read, write = os.pipe()
    os.write(write, b"d01\n")
    os.close(write)
    try:
        code, _, err = run(["-q", "optout", str(copy), "--ids", f"/dev/fd/{read}"], capsys)
    finally:
        os.close(read)
    assert code == 0, err
    assert len(open_bundle(copy)) == len(open_bundle(bundle_dir)) - 1


def test_optout_says_which_listed_ids_it_did_not_find(bundle_dir: Path, tmp_path: Path, capsys) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    ids = _write(tmp_path / "ids.txt", "d01\nno-such-id\n")
    code, out, err = run(["-q", "optout", str(copy), "--ids", str(ids)], capsys)
    assert code == 0, err
    assert "Removed 1 document from" in out and "(1 of 2 listed ids not in it)" in out
    empty = _write(tmp_path / "empty.txt", "# nothing yet\n\n")
    code, _, err = run(["-q", "optout", str(copy), "--ids", str(empty)], capsys)
    assert_one_line_error(code, err, f"{empty}: the opt-out file lists no ids")


def test_lone_surrogate_is_one_line_naming_file_and_line(tmp_path: Path, capsys) -> None:
    src = _write(tmp_path / "s.jsonl", '{"id":"ok","contents":"fine"}\n{"id":"a","contents":"x\\ud800y"}\n')
    code, _, err = run(["-q", "index", str(src), "--out", str(tmp_path / "b")], capsys)
    assert_one_line_error(code, err, f"{src}:2:", "'contents'", "lone UTF-16 surrogate")
    assert not (tmp_path / "b").exists()


def test_member_reads_pipes_and_says_when_a_text_is_too_short(tmp_path: Path, capsys) -> None:
    """A pipe (``<(cmd)``) is read like a file, a folder is one error line, and a text shorter than
    what membership looks at says so instead of a bare 0 %."""
    import os

    bundle = tmp_path / "b"
    code, _, err = run(["-q", "index", str(DATA / "tiny.jsonl"), "--out", str(bundle), "--backends", "bm25,exact,bloom"], capsys)
    assert code == 0, err
    excerpt = "BM25 is a bag-of-words ranking function used by search engines to estimate the relevance"
    read, write = os.pipe()
    os.write(write, excerpt.encode())
    os.close(write)
    try:
        code, out, err = run(["member", str(bundle), f"/dev/fd/{read}", "--json"], capsys)
    finally:
        os.close(read)
    assert code == 0, err
    result = json.loads(out)
    assert result["coverage"] > 0.5 and any(s["docid"] == "d01" for x in result["exact_spans"] for s in x["sources"])
    short = _write(tmp_path / "short.txt", "BM25 is a bag-of-words")
    code, out, err = run(["member", str(bundle), str(short)], capsys)
    assert code == 0, err
    assert "coverage: 0.0%" in out and "spacerini count BUNDLE TEXT" in out
    code, out, err = run(["member", str(bundle), str(tmp_path)], capsys)
    assert_one_line_error(code, err, str(tmp_path), "is a folder")
    empty = _write(tmp_path / "empty.txt", "  \n")
    code, out, err = run(["member", str(bundle), str(empty)], capsys)
    assert_one_line_error(code, err, "the text is empty: give some text or code to check")


@pytest.mark.parametrize("command", ["index", "analyze", "contamination", "space"])
def test_an_output_place_that_cannot_be_written_fails_before_the_work(
    bundle_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """A folder to write under a file, or in a place that refuses files (``/proc``: ``os.access``
    says yes to root there), is one line before any corpus is read or report computed."""
    import spacerini.audit.analyze
    import spacerini.audit.contamination
    import spacerini.bundle
    import spacerini.deploy

    def never(*args, **kwargs):
        raise AssertionError("the work ran before the output place was checked")

    for module, name in ((spacerini.bundle, "build_bundle"), (spacerini.audit.analyze, "analyze"),
                         (spacerini.audit.contamination, "contamination"), (spacerini.deploy, "render_space")):  # fmt: skip
        monkeypatch.setattr(module, name, never)
    corpus = _write(tmp_path / "c.jsonl", '{"id": "a", "text": "alpha"}\n')
    args = {
        "index": ["index", str(corpus), "--out"],
        "analyze": ["analyze", str(bundle_dir), "--out"],
        "contamination": ["contamination", str(bundle_dir), str(corpus), "--out"],
        "space": ["space", str(bundle_dir), "--out"],
    }[command]
    under_a_file = tmp_path / "c.jsonl" / "out"
    code, _, err = run([*args, str(under_a_file)], capsys)
    assert_one_line_error(code, err, str(under_a_file), "no such folder")
    if Path("/proc/self").is_dir():
        code, _, err = run([*args, "/proc/spacerini-out"], capsys)
        assert_one_line_error(code, err, "/proc/spacerini-out", "cannot write in /proc")
    nested = tmp_path / "new" / "deeper" / "out"  # missing parents are created by the command: no error
    if command == "index":
        monkeypatch.undo()
        code, out, err = run([*args, str(nested), "--backends", "exact"], capsys)
        assert code == 0 and (nested / "spacerini.json").is_file(), err


def test_a_file_system_error_is_one_line_with_its_path_and_what_to_do(bundle_dir: Path, capsys, monkeypatch) -> None:
    import spacerini.bundle

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/srv/bundles/tiny/spacerini.json")

    monkeypatch.setattr(spacerini.bundle, "open_bundle", refuse)
    code, _, err = run(["info", str(bundle_dir)], capsys)
    assert_one_line_error(code, err, "/srv/bundles/tiny/spacerini.json: Permission denied; check its permissions")
    assert "PermissionError" not in err and "Errno" not in err


def test_a_run_cannot_hold_ids_with_white_space(tmp_path: Path, capsys) -> None:
    """Ids with a tab, a space or a line break index and search, but a TREC run would split them
    into columns (a line break gave a run with more lines than it said): one error, no file; the
    JSON output keeps them whole. A run tag with a space is refused the same way."""
    corpus = tmp_path / "ids.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": i, "contents": f"hello world {n}"}) + "\n" for n, i in enumerate(["a\nb", "c d", "e\tf", "g"]))
    )
    bundle = tmp_path / "b"
    assert run(["index", str(corpus), "--out", str(bundle), "--backends", "bm25"], capsys)[0] == 0
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\thello\n")
    out_file = tmp_path / "run.trec"
    code, _, err = run(["search", str(bundle), "--queries", str(queries), "--output", str(out_file)], capsys)
    assert_one_line_error(code, err, "cannot write a TREC run: a hit of query 'q1' has a document id with white space")
    assert not out_file.exists() and not list(tmp_path.glob(".run.trec*"))
    code, out, err = run(["search", str(bundle), "--queries", str(queries), "--json"], capsys)
    assert code == 0, err
    assert sorted(h["docid"] for h in json.loads(out)["q1"]) == ["a\nb", "c d", "e\tf", "g"]
    code, _, err = run(
        ["search", str(bundle), "--queries", str(queries), "--output", str(out_file), "--run-tag", "my run"], capsys
    )
    assert_one_line_error(code, err, "run tag 'my run' must be one word")


@pytest.mark.parametrize(("command", "said"), [("count", "stopped"), ("index", "nothing half-written was kept")])
def test_an_interrupted_command_says_what_became_of_its_output(
    command: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only command (serve, count) said "nothing half-written was kept" on Ctrl-C."""
    import spacerini.bundle
    import spacerini.corpus

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(spacerini.bundle, "open_bundle", interrupt)
    monkeypatch.setattr(spacerini.corpus, "load_corpus", interrupt)
    args = ["count", str(tmp_path), "x"] if command == "count" else ["index", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "b")]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 130
    assert capsys.readouterr().err.strip() == f"spacerini: interrupted (SIGINT); {said}"
