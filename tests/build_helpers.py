"""Helpers for tests that interrupt a real build: a corpus big enough that the build is still
running when the signal arrives, on a quiet machine as on a loaded one."""

from __future__ import annotations

import json
import time
from pathlib import Path


def write_big_corpus(path: Path, docs: int = 200_000) -> Path:
    """A JSONL corpus whose BM25 build takes several seconds (JSONL pass plus Lucene indexing)."""
    with path.open("w") as fh:
        for i in range(docs):
            fh.write(json.dumps({"id": f"x{i}", "contents": f"document {i} about search engines and ranking"}) + "\n")
    return path


def wait_until_indexing(parent: Path, name: str = "b", *, timeout: float = 120, settle: float = 0.2) -> Path:
    """Waits until a build of bundle ``name`` in ``parent`` is inside Lucene (the JVM's
    IndexWriter has locked ``lucene/write.lock``), then ``settle`` seconds more; returns the
    build's temporary folder."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for folder in parent.glob(f".{name}.building-*"):
            if (folder / "lucene" / "write.lock").exists():
                time.sleep(settle)
                return folder
        time.sleep(0.01)
    raise AssertionError(f"no build of {name} reached Lucene indexing in {timeout} s")


def occurrences(docs: object, needle: str) -> list[tuple[str, int]]:
    """All ``(docid, character offset)`` of ``needle`` in ``docs`` (objects with ``id`` and
    ``text``), overlapping ones included, in corpus order: the brute force exact search must match."""
    out = []
    for doc in docs:  # type: ignore[attr-defined]
        i = doc.text.find(needle)
        while i >= 0:
            out.append((doc.id, i))
            i = doc.text.find(needle, i + 1)
    return out
