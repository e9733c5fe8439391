"""SPACERINI_NO_PROGRESS turns progress bars off in the library as in the CLI (the notebooks and
examples set it for clean output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacerini.bundle import build_bundle
from spacerini.corpus import load_corpus

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("silenced", [False, True])
def test_the_environment_variable_silences_the_bars_of_library_calls(
    silenced: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if silenced:
        monkeypatch.setenv("SPACERINI_NO_PROGRESS", "1")
    else:
        monkeypatch.delenv("SPACERINI_NO_PROGRESS", raising=False)
    list(load_corpus(DATA / "corpus_docs.jsonl"))
    build_bundle(DATA / "corpus_docs.jsonl", tmp_path / "b", backends=["bm25", "exact"])
    err = capsys.readouterr().err
    bars = ("docs/s", "exact: docs")
    if silenced:
        assert not any(bar in err for bar in bars), err
    else:
        assert all(bar in err for bar in bars), err
