"""`import spacerini` is light: no JVM, torch, faiss, gradio, pyserini or ray."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("jnius", "torch", "faiss", "gradio", "pyserini", "ray", "transformers", "datasets", "pyarrow")


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_import_is_light() -> None:
    out = _run(
        "import sys, json, time; t=time.perf_counter(); import spacerini; d=time.perf_counter()-t;"
        f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], 'seconds': d}}))"
    )
    result = json.loads(out)
    assert result["heavy"] == []


def test_lazy_names_resolve() -> None:
    out = _run("import spacerini; print(spacerini.Doc.__name__, spacerini.open_bundle.__name__, spacerini.__version__)")
    assert out.split()[:2] == ["Doc", "open_bundle"]


def test_unknown_attribute() -> None:
    import pytest

    import spacerini

    with pytest.raises(AttributeError):
        spacerini.no_such_name  # noqa: B018
