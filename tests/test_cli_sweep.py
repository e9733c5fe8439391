"""The command line as an outside checker drives it: odd paths, closed and full streams, locales,
empty arguments. Each case is one clear line on stderr with exit status 2, or a plain success."""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.cli_helpers import run

DATA = Path(__file__).parent / "data"
TINY = str(DATA / "tiny.jsonl")
#: A folder name that is not UTF-8 (as Python holds it: a surrogate escape).
BAD_NAME = os.fsdecode(b"bad\xff")


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("spacerini: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _cli(*argv: str, env: dict[str, str] | None = None, **streams: object) -> subprocess.CompletedProcess[bytes]:
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **streams}
    return subprocess.run([sys.executable, "-m", "spacerini", *argv], env={**os.environ, **(env or {})}, **streams)


@pytest.fixture(scope="module")
def exact_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny corpus with exact and bloom (no Java), in a folder whose name is not UTF-8."""
    from spacerini import build_bundle

    out = tmp_path_factory.mktemp("sweep") / BAD_NAME
    build_bundle(TINY, str(out), backends=["exact", "bloom"], fields=["title", "contents"], progress=False)
    return out


# ------------------------------------------------------------------------- paths
def test_bundle_path_not_utf8_is_served(exact_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The default flag store's name hashed the path with str.encode(): UnicodeEncodeError.
    code, out, err = run(["count", str(exact_bundle), "retrieval"], capsys)
    assert code == 0, err
    assert int(out) > 0


def test_json_of_a_path_not_utf8_is_valid_utf8(exact_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["info", str(exact_bundle), "--json"], capsys)
    assert code == 0, err
    out.encode("utf-8")  # a lone surrogate is a JSON escape, not a character UTF-8 cannot hold
    assert json.loads(out)["path"] == str(exact_bundle)


def test_text_output_of_a_path_not_utf8_under_strict_utf8(tmp_path: Path) -> None:
    out = tmp_path / BAD_NAME
    done = _cli("-q", "index", TINY, "--out", str(out), "--backends", "exact", env={"PYTHONIOENCODING": "utf-8"})
    assert done.returncode == 0, done.stderr
    assert b"bad\xff" in done.stdout  # the name's own bytes, as ls writes them


def test_bm25_out_not_utf8_is_refused_before_java(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Java read the name with U+FFFD for the byte: "Lucene indexing failed", and a folder of that
    # other name was left behind.
    code, _, err = run(["-q", "index", TINY, "--out", str(tmp_path / BAD_NAME)], capsys)
    assert_one_line_error(code, err, "not UTF-8", "rename")
    assert list(tmp_path.iterdir()) == []


def test_bm25_index_non_ascii_out_under_c_locale(tmp_path: Path) -> None:
    # Under LC_ALL=C the indexing JVM could not open "bündle": "Malformed input or input contains
    # unmappable characters".
    done = _cli("-q", "index", TINY, "--out", str(tmp_path / "bündle"), env={"LC_ALL": "C"})
    assert done.returncode == 0, done.stderr
    found = _cli("search", str(tmp_path / "bündle"), "retrieval", "--json", env={"LC_ALL": "C"})
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"]


def test_symlink_loop_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    code, _, err = run(["-q", "index", TINY, "--out", str(tmp_path / "a" / "x"), "--backends", "exact"], capsys)
    assert_one_line_error(code, err, "symbolic link", str(tmp_path / "a"))
    assert "RuntimeError" not in err


def test_bundle_is_not_a_corpus_folder(exact_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Its manifest, sidecars and docstore were read as documents ("bloom/meta.json:1: no id field").
    code, _, err = run(["-q", "index", str(exact_bundle), "--out", str(tmp_path / "b"), "--backends", "exact"], capsys)
    assert_one_line_error(code, err, "a Spacerini bundle, not a folder of data files")


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "", "retrieval"],
        ["analyze", "{b}", "--out", ""],
        ["index", TINY, "--out", ""],
        ["index", " ", "--out", "x"],
        ["member", "{b}", ""],
    ],
)
def test_empty_path_is_refused(
    argv: list[str], exact_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # "" meant the current folder: analyze wrote its report there, search opened it.
    monkeypatch.chdir(tmp_path)
    code, _, err = run([a.replace("{b}", str(exact_bundle)) for a in argv], capsys)
    assert_one_line_error(code, err, "is empty: give a path")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- options
@pytest.mark.parametrize("option", [["--backends", ""], ["--backends", " , "], ["--fields", ","]])
def test_empty_list_option_is_refused(option: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["-q", "index", TINY, "--out", str(tmp_path / "b"), *option], capsys)
    assert_one_line_error(code, err, option[0], "names no")


@pytest.mark.parametrize("k1", ["inf", "1e308"])
def test_bm25_k1_must_be_finite(k1: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Every score was 0.0 (1e308 overflows Lucene's 32-bit float).
    code, _, err = run(["-q", "index", TINY, "--out", str(tmp_path / "b"), "--k1", k1], capsys)
    assert_one_line_error(code, err, "finite k1")


def test_info_takes_json(exact_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["info", str(exact_bundle), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["counts"]["docs"] > 0


# ------------------------------------------------------------------------- streams
@pytest.mark.parametrize("argv", [["member", "{b}", "-"], ["model", "membership", "-"]])
def test_closed_stdin(
    argv: list[str], exact_bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", None)  # as `spacerini member B - <&-` starts
    code, _, err = run([a.replace("{b}", str(exact_bundle)) for a in argv], capsys)
    assert_one_line_error(code, err, "standard input is closed")


def test_stdin_at_a_terminal_says_how_to_end(
    exact_bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(io.BytesIO(b"dense retrieval with faiss vectors")))
    code, out, err = run(["member", str(exact_bundle), "-"], capsys)
    assert code == 0, err
    assert "Ctrl-D" in err and "coverage" in out


def test_closed_stdout_is_an_error(
    exact_bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", None)  # as `spacerini count B x >&-` starts: the count was lost, exit 0
    code, _, err = run(["count", str(exact_bundle), "retrieval"], capsys)
    assert_one_line_error(code, err, "standard output", "closed")


@pytest.mark.parametrize("argv", [["count", "{b}", "retrieval"], ["--version"], ["--help"]])
def test_full_stdout_names_it(argv: list[str], exact_bundle: Path) -> None:
    with open("/dev/full", "w") as full:
        done = _cli(*[a.replace("{b}", str(exact_bundle)) for a in argv], stdout=full)
    err = done.stderr.decode()
    assert_one_line_error(done.returncode, err, "standard output: No space left on device")


def test_full_disk_names_the_output(
    exact_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spacerini.audit import plots

    def full(self: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plots.StagedFiles, "publish", full)
    out = tmp_path / "report"
    code, _, err = run(["-q", "analyze", str(exact_bundle), "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"{out}: No space left on device")
    assert not out.exists()  # no empty report folder either


def test_report_charts_do_not_warn_of_missing_glyphs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "cjk.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": "東京 大阪 京都 " * (i + 1)}) + "\n" for i in range(5)), encoding="utf-8"
    )
    code, _, err = run(["-q", "index", str(corpus), "--out", str(tmp_path / "b"), "--backends", "exact"], capsys)
    assert code == 0, err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run(["-q", "analyze", str(tmp_path / "b"), "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    assert not [w for w in caught if "Glyph" in str(w.message)]


def test_closed_stdout_drops_what_libraries_print() -> None:
    # `spacerini serve B >&-` must keep serving although a library prints a banner to stdout.
    import click

    from spacerini.cli import _ClosedOutput

    closed = _ClosedOutput()
    print("Running on local URL", file=closed)
    with pytest.raises(OSError):
        click.echo("a command's output", file=closed)


def test_merge_of_a_bundle_not_utf8_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # pyjnius failed on the name: "UnicodeEncodeError: 'utf-16' codec can't encode character '\udcff'".
    code, _, err = run(["-q", "index", TINY, "--out", str(tmp_path / "b"), "--shards", "2"], capsys)
    assert code == 0, err
    bad = tmp_path / BAD_NAME
    (tmp_path / "b").rename(bad)
    code, _, err = run(["merge", str(bad)], capsys)
    assert_one_line_error(code, err, "not UTF-8", "rename")
    assert len(json.loads(run(["info", str(bad)], capsys)[1])["shards"]) == 2  # untouched


def test_debug_shows_the_traceback_of_a_bundle_error(tmp_path: Path) -> None:
    """A BundleNotFoundError is an OSError: the handler main() gained for --help on a full disk
    printed it as one line, and --debug showed no traceback, as DESIGN promises it does."""
    missing = str(tmp_path / "nope")
    plain = _cli("count", missing, "x")
    assert plain.returncode == 2 and b"Traceback" not in plain.stderr and plain.stderr.count(b"\n") == 1
    debug = _cli("--debug", "count", missing, "x")
    assert debug.returncode != 0 and b"Traceback" in debug.stderr and b"BundleNotFoundError" in debug.stderr


# ------------------------------------------------------------------------- loose ends
def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """Standard input holding ``data``, as `spacerini ... < FILE` starts."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def _docs(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} of the corpus"}) + "\n" for i in range(n)))
    return path


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny corpus with exact only, in a folder with a plain name."""
    from spacerini import build_bundle

    out = tmp_path_factory.mktemp("plain") / "plain"
    build_bundle(TINY, str(out), backends=["exact"], progress=False)
    return out


@pytest.mark.parametrize("spelling", ["same", "dotted", "link"])
def test_serve_refuses_one_bundle_given_twice(
    spelling: str, plain_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `serve B ./B/` opened the bundle twice and served it as two corpora, "B" and "B-2".
    import spacerini.app

    served: list[object] = []
    monkeypatch.setattr(spacerini.app, "serve", lambda corpora, **_: served.append(corpora))
    monkeypatch.chdir(plain_bundle.parent)
    (tmp_path / "link").symlink_to(plain_bundle)
    other = {"same": "plain", "dotted": "./plain/", "link": str(tmp_path / "link")}[spelling]
    code, _, err = run(["serve", "plain", other], capsys)
    assert_one_line_error(code, err, "give each bundle once", f"plain {'is given twice' if spelling == 'same' else f'and {other} are'}")
    code, _, err = run(["space", "plain", other, "--out", str(tmp_path / "space")], capsys)
    assert_one_line_error(code, err, "give each bundle once")
    assert served == [] and not (tmp_path / "space").exists()


def test_serve_takes_two_bundles(
    plain_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import spacerini.app

    served: list[list[str]] = []
    monkeypatch.setattr(spacerini.app, "serve", lambda corpora, **_: served.append(list(corpora.names)))
    code, _, err = run(["-q", "index", str(_docs(tmp_path / "c.jsonl", 3)), "--out", str(tmp_path / "two"), "--backends", "exact"], capsys)
    assert code == 0, err
    code, _, err = run(["serve", str(plain_bundle), str(tmp_path / "two")], capsys)
    assert code == 0, err
    assert served == [["plain", "two"]]


@pytest.mark.parametrize("under", [False, True])
def test_index_out_dangling_symlink_is_refused(under: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The build resolved the link and created its target's missing folders (missing/deep/target).
    (tmp_path / "link").symlink_to(tmp_path / "missing" / "deep" / "target")
    out = tmp_path / "link" / "sub" if under else tmp_path / "link"
    code, _, err = run(["-q", "index", TINY, "--out", str(out), "--backends", "exact"], capsys)
    assert_one_line_error(code, err, f"{tmp_path / 'link'}: a symbolic link to", "does not exist", "remove the link")
    assert [p.name for p in tmp_path.iterdir()] == ["link"]  # nothing created, no lock left


def test_more_shards_than_documents_are_capped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # --shards 99999 on 5 documents made 5 one-document shards without a word.
    corpus = _docs(tmp_path / "c.jsonl", 5)
    code, out, err = run(["-q", "index", str(corpus), "--out", str(tmp_path / "b"), "--backends", "exact", "--shards", "99999"], capsys)
    assert code == 0, err
    assert "5 documents in 5 shards" in out
    warned = [r.getMessage() for r in caplog.records if "--shards" in r.getMessage()]
    assert warned == ["--shards 99,999 is more than the 5 documents in the corpus: the bundle has 5 shards of one document each"]
    assert len(json.loads(run(["info", str(tmp_path / "b")], capsys)[1])["shards"]) == 5
    caplog.clear()
    code, _, err = run(["-q", "index", str(corpus), "--out", str(tmp_path / "b2"), "--backends", "exact", "--shards", "5"], capsys)
    assert code == 0, err
    assert not [r for r in caplog.records if "--shards" in r.getMessage()]  # as many as documents: no warning


@pytest.mark.parametrize(
    ("data", "options", "docs"),
    [
        ((DATA / "tiny.jsonl").read_bytes(), [], 25),  # sniffed: JSON lines
        (b'[{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]', [], 2),  # sniffed: a JSON array
        (gzip.compress((DATA / "tiny.jsonl").read_bytes()), [], 25),
        (b"id,text\na,hello world\nb,second document\nc,third\n", ["--format", "csv"], 3),
        ((DATA / "tiny.jsonl").read_bytes(), ["--backends", "bm25"], 25),  # indexed while stdin's copy is read
    ],
    ids=["jsonl", "json", "jsonl.gz", "csv", "bm25"],
)
def test_index_reads_standard_input(
    data: bytes, options: list[str], docs: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, data)
    code, out, err = run(["-q", "index", "-", "--out", str(tmp_path / "b"), "--backends", "exact", *options], capsys)
    assert code == 0, err
    assert f"{docs} documents" in out
    if "bm25" in options:
        assert json.loads(run(["search", str(tmp_path / "b"), "Lucene", "--json"], capsys)[1])["hits"][0]["docid"] == "d02"
    info = json.loads(run(["info", str(tmp_path / "b")], capsys)[1])
    assert info["counts"]["docs"] == docs
    assert info["source"]["source"] == "<stdin>"  # not the temporary file it was spooled to
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # the spooled copy went with the build's folder
    assert not list((tmp_path / "b").rglob("*stdin*"))


@pytest.mark.parametrize(
    ("data", "options", "needles"),
    [
        (b"id,text\na,hello\n", [], ["<stdin>: cannot tell its format", "--format"]),
        (b"", [], ["<stdin>: empty"]),
        (b'{"id": "a", "text": "x"}\n{"id": "b"\n', [], ["<stdin>:2: malformed JSON"]),
        (b"id,text\na,hello\n", ["--format", "code"], ["--format code", "instead of -"]),
    ],
    ids=["unsniffable", "empty", "malformed", "code"],
)
def test_index_of_bad_standard_input_is_one_line(
    data: bytes, options: list[str], needles: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _stdin(monkeypatch, data)
    code, _, err = run(["-q", "index", "-", "--out", str(tmp_path / "b"), "--backends", "exact", *options], capsys)
    assert_one_line_error(code, err, *needles)
    assert ".stdin" not in err
    assert list(tmp_path.iterdir()) == []


def test_search_queries_from_standard_input(
    exact_bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"q1\tLucene\nq2\tinverted index\n")
    code, out, err = run(["search", str(exact_bundle), "--queries", "-", "--output", "-", "--backend", "exact"], capsys)
    assert code == 0, err
    run_lines = [line.split() for line in out.splitlines()]
    assert [line[:3] for line in run_lines] == [["q1", "Q0", "d02"], ["q1", "Q0", "d22"], ["q2", "Q0", "d03"]]
    _stdin(monkeypatch, b"q1\tLucene\nq2\n")
    code, _, err = run(["search", str(exact_bundle), "--queries", "-", "--json", "--backend", "exact"], capsys)
    assert_one_line_error(code, err, "<stdin>:2: expected `qid<TAB>query text`")


def test_optout_ids_from_standard_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["-q", "index", TINY, "--out", str(tmp_path / "b"), "--backends", "exact"], capsys)
    assert code == 0, err
    _stdin(monkeypatch, b"d01\n# a comment\nd02\n")
    code, out, err = run(["-q", "optout", str(tmp_path / "b"), "--ids", "-"], capsys)
    assert code == 0, err
    assert "Removed 2 documents" in out
    assert json.loads(run(["info", str(tmp_path / "b")], capsys)[1])["counts"]["docs"] == 23
    _stdin(monkeypatch, b"# nothing\n")
    code, _, err = run(["-q", "optout", str(tmp_path / "b"), "--ids", "-"], capsys)
    assert_one_line_error(code, err, "<stdin>: the opt-out file lists no ids")


@pytest.mark.parametrize(
    "argv",
    [["index", "-", "--out", "{b}-new", "--backends", "exact"], ["search", "{b}", "--queries", "-", "--json"], ["optout", "{b}", "--ids", "-"]],
    ids=["index", "search", "optout"],
)
def test_closed_stdin_for_dash_options(
    argv: list[str], exact_bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    code, _, err = run([a.replace("{b}", str(exact_bundle)) for a in argv], capsys)
    assert_one_line_error(code, err, "standard input is closed")
    assert not Path(f"{exact_bundle}-new").exists()


def test_dash_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command, needle in (("index", "SOURCE - reads"), ("search", "--queries - reads"), ("optout", "- for standard input")):
        code, out, err = run([command, "--help"], capsys)
        assert code == 0, err
        assert needle in " ".join(out.split()), out


@pytest.mark.parametrize(("redirect", "quiet"), [(">&-", False), (">&-", True), ("> /dev/full", False)])
def test_index_whose_summary_cannot_be_written_succeeds(redirect: str, quiet: bool, tmp_path: Path) -> None:
    # The bundle was built, then the summary line failed: exit 2, as if the build had.
    out = tmp_path / "b"
    flags = "-q " if quiet else ""
    argv = f"{flags}index {shlex.quote(TINY)} --out {shlex.quote(str(out))} --backends exact"
    done = subprocess.run(f"{shlex.quote(sys.executable)} -m spacerini {argv} {redirect}", shell=True, stderr=subprocess.PIPE)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert (out / "spacerini.json").is_file()
    assert "error" not in err and "Traceback" not in err
    assert (f"Built {out}: 25 documents" in err) is not quiet  # the summary goes to stderr (not with -q)
