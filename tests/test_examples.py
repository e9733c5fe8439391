"""Every script in examples/ runs to completion with its defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))
#: The scripts that do what a notebook of notebooks/ does (tens of seconds each; scale_out starts a
#: two-node Ray cluster): slow, like the notebooks themselves.
SLOW = {"auditor", "ir_researcher", "no_code", "scale_out"}


@pytest.mark.parametrize(
    "script",
    [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW else p for p in EXAMPLES],
    ids=[p.stem for p in EXAMPLES],
)
def test_example_runs(script: Path) -> None:
    env = {**os.environ, "SPACERINI_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()


def test_every_notebook_has_its_script() -> None:
    """Each user's notebook has a plain script twin in examples/ (the quick start excepted)."""
    notebooks = {p.stem for p in (Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")}
    assert SLOW <= notebooks
    assert notebooks - {"quickstart"} <= {p.stem for p in EXAMPLES}
