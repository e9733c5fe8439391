"""Loading streams: peak Python allocation stays far below the size of the corpus."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from spacerini.corpus import load_corpus

MB = 1 << 20


def _write_jsonl(path: Path, target_bytes: int) -> int:
    filler = " ".join(["streaming"] * 200)  # ~2 kB of text per record
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        while handle.tell() < target_bytes:
            handle.write(json.dumps({"id": f"doc-{count}", "title": f"t{count}", "text": filler}) + "\n")
            count += 1
    return count


def _peak_while_streaming(source: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        count = sum(1 for _ in load_corpus(source, progress=False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


def test_jsonl_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    written = _write_jsonl(path, 50 * MB)
    count, peak = _peak_while_streaming(path)
    assert count == written
    # The only state that grows is the set of ids (~100 bytes per id here).
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB for a {path.stat().st_size / MB:.0f} MB file"


def test_json_array_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    filler = " ".join(["array"] * 300)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[\n")
        for i in range(8000):
            handle.write(("" if i == 0 else ",\n") + json.dumps({"id": i, "text": filler}))
        handle.write("\n]\n")
    count, peak = _peak_while_streaming(path)
    assert count == 8000
    assert peak < path.stat().st_size / 3, f"peak {peak / MB:.1f} MB"
