"""The embedded default bundle: built once from the Python source on this machine, then reused."""

from __future__ import annotations

from pathlib import Path

from spacerini.demo import available_demo_backends, demo_bundle


def test_demo_bundle_builds_then_reuses(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = demo_bundle(out=out, max_bytes=400_000, progress=False)
    assert set(first.backends) == set(available_demo_backends())
    assert "bm25" in first.backends
    doc = next(first.iter_docs())
    assert doc.id.startswith("python-stdlib/")
    assert doc.meta["swhid"].startswith("swh:1:cnt:") and doc.meta["licence"] == "PSF-2.0"
    created = first.manifest["created"]
    second = demo_bundle(out=out, progress=False)
    assert second.manifest["created"] == created  # reused, not rebuilt
    hits = second.search("import", k=3)
    assert hits and hits[0].meta["language"] == "Python"
