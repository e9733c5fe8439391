"""Freed heap memory goes back to the OS, so a server's RSS stays flat (spacerini.memory)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from spacerini import memory


def test_release_gives_freed_heap_pages_back() -> None:
    if memory._malloc_trim() is None:
        pytest.skip("this C library has no malloc_trim")
    # In a fresh process: 100 MB of 1 KB blocks (malloc, not Python's small-object arenas),
    # all freed but the last, which pins the heap's top so malloc cannot give the rest back.
    code = textwrap.dedent(
        """
        import gc, psutil
        from spacerini.memory import release_free_memory
        p = psutil.Process()
        r0 = p.memory_info().rss
        blocks = [bytes(1024) + bytes([i % 256]) for i in range(100_000)]
        keep = blocks[-1]
        del blocks; gc.collect()
        r1 = p.memory_info().rss
        assert release_free_memory()
        r2 = p.memory_info().rss
        print((r1 - r0) >> 20, (r2 - r0) >> 20)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    held, after = map(int, out.stdout.split())
    assert held >= 80 and after <= held - 60, (held, after)


def test_trimming_starts_once() -> None:
    if memory._malloc_trim() is None:
        assert memory.start_trimming() is False
        return
    gc.collect()
    assert memory.start_trimming(interval=3600) is True
    assert memory.start_trimming(interval=3600) is True
    import threading

    assert sum(t.name == "spacerini-malloc-trim" for t in threading.enumerate()) == 1
