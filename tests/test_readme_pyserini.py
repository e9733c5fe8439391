"""The README's plain-Pyserini snippet, run as written in a fresh Python process against a tiny bundle."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
MARKER = "<!-- pyserini-snippet:"


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index(MARKER) :]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match is not None, "the README lost its pyserini snippet"
    return match.group(1)


def test_readme_pyserini_snippet_runs_in_a_fresh_process(tmp_path: Path) -> None:
    import spacerini

    snippet = readme_snippet()
    assert "spacerini.java.ensure_jvm()" in snippet and "/tmp/tiny/lucene" in snippet
    # The bundle the README's Python API section builds, in a temporary folder instead of /tmp/tiny.
    bundle = spacerini.build_bundle(
        DATA / "tiny.jsonl", tmp_path / "tiny", backends=["bm25"], fields=["title", "contents"], progress=False
    )
    code = snippet.replace("/tmp/tiny", str(tmp_path / "tiny"))
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "PYTHONPATH")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout.splitlines()
    expected = [line[2:] for line in snippet.splitlines() if line.startswith("# ")]
    assert printed[: len(expected)] == expected  # the output the README shows
    ours = [(h.docid, round(h.score, 4)) for h in bundle.search("suffix array substring", k=3)]
    assert [(d, float(s)) for d, s in (line.split() for line in printed)] == ours
