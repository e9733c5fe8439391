"""The README's quick-tour commands and Python API block print what the README shows.

Each ``console`` block whose commands are all ``spacerini ...`` or ``head ...`` (the tour over
``/tmp/tiny``: build, search, a batch run, eval, analyze, contamination and the error lines) is run
in this process, in a temporary folder, and every output line the README shows is compared.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

from tests.cli_helpers import run

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def console_blocks() -> list[list[str]]:
    """The README's console blocks made only of spacerini/head commands, without comments."""
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", README, re.DOTALL):
        lines = body.rstrip("\n").splitlines()
        commands = [line for line in lines if line.startswith("$ ")]
        if commands and all(
            line.startswith(("$ spacerini ", "$ head ")) and " #" not in line and "&" not in line for line in commands
        ):
            blocks.append(lines)
    return blocks


def test_the_tour_is_found() -> None:
    commands = [line for block in console_blocks() for line in block if line.startswith("$ ")]
    assert "$ spacerini index tests/data/tiny.jsonl --out /tmp/tiny --fields title,contents --backends bm25,exact" in commands
    assert any(c.startswith("$ spacerini contamination /tmp/tiny tests/data/") for c in commands)
    assert any(c.startswith("$ spacerini eval /tmp/tiny") for c in commands)
    assert any(c.startswith("$ spacerini search $B") for c in commands)  # the error lines


@pytest.mark.timeout(300)
def test_readme_console_tour_prints_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tests").symlink_to(ROOT / "tests")  # the README's relative tests/data/... paths
    monkeypatch.chdir(tmp_path)
    tiny = str(tmp_path / "tiny")
    checked = 0
    for block in console_blocks():
        i = 0
        while i < len(block):
            command = block[i][2:]
            expected = []
            i += 1
            while i < len(block) and not block[i].startswith("$ "):
                expected.append(block[i].replace("/tmp/tiny", tiny))
                i += 1
            # $B is the demo bundle; the error it shows (an empty query) is the same for any bundle.
            argv = shlex.split(command.replace("/tmp/", f"{tmp_path}/").replace("$B", tiny))
            if argv[0] == "head":
                count, path = int(argv[1].lstrip("-")), argv[2]
                got = Path(path).read_text(encoding="utf-8").splitlines()[:count]
                assert got == expected, command
                continue
            code, out, err = run(argv[1:], capsys)
            errors = [line for line in expected if line.startswith("spacerini: error:")]
            assert code == (2 if errors else 0), (command, err[-2000:])
            if out.splitlines() != expected:  # a line said on stderr ("Wrote ...", errors)
                assert not out.strip() and expected, (command, out)
                assert set(expected) <= set(err.splitlines()), (command, err[-2000:])
            checked += 1
    assert checked >= 8


def python_api_block() -> str:
    after = README[README.index("## Python API") :]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match is not None, "the README lost its Python API block"
    return match.group(1)


@pytest.mark.timeout(300)
def test_readme_python_api_block_prints_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each statement followed by ``# ...`` comment lines prints (or, an expression, evaluates
    to) what they show."""
    monkeypatch.chdir(ROOT)
    code = python_api_block().replace("/tmp/tiny", str(tmp_path / "tiny"))
    lines = code.splitlines()
    tree = ast.parse(code)
    namespace: dict[str, object] = {}
    checked = 0
    for n, stmt in enumerate(tree.body):
        end = tree.body[n + 1].lineno - 1 if n + 1 < len(tree.body) else len(lines)
        shown = [line[2:] for line in lines[stmt.end_lineno : end] if line.startswith("# ")]
        capsys.readouterr()
        if isinstance(stmt, ast.Expr):
            value = eval(compile(ast.Expression(stmt.value), "<README>", "eval"), namespace)  # noqa: S307
            printed = [repr(value)]
        else:
            exec(compile(ast.Module([stmt], type_ignores=[]), "<README>", "exec"), namespace)  # noqa: S102
            printed = capsys.readouterr().out.splitlines()
        if shown:
            assert printed[: len(shown)] == shown, ast.get_source_segment(code, stmt)
            checked += 1
    assert checked >= 2
    namespace["bundle"].close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "example"),
    [
        (["count", "B", "-x"], "`spacerini count BUNDLE -- -x`"),
        (["find", "B", "-x y", "--k", "2"], "`spacerini find BUNDLE -- '-x y'`"),
        (["search", "B", "--k", "3", "-bloom filter"], "`spacerini search BUNDLE -- '-bloom filter'`"),
        (["owner", "B", "-jane"], "`spacerini owner BUNDLE -- -jane`"),
    ],
)
def test_a_text_that_starts_with_a_dash_is_told_to_follow_double_dash(
    argv: list[str], example: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`spacerini count B "-x"` is an unknown option to click; the error says how to pass it."""
    code, out, err = run(argv, capsys)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1
    assert "follows --, as in grep: " + example in err


def test_a_mistyped_option_gets_no_dash_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["search", "B", "q", "--kk", "3"], capsys)
    assert code == 2 and "No such option" in err and "follows --" not in err
    code, _, err = run(["info", "-z", "B"], capsys)  # no free-text argument
    assert code == 2 and "follows --" not in err
