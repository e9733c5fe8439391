"""Running the command line in-process, for the CLI tests of every module."""

from __future__ import annotations

import pytest


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Runs ``spacerini ARGV`` in this process: (exit code, stdout, stderr)."""
    from spacerini.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
