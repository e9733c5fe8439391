"""The command line as an outside checker drives it: odd paths, closed and full streams, locales,
empty arguments. Each case is one clear line on stderr with exit status 2, or a plain success."""

from __future__ import annotations

import errno
import io
import json
import os
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
