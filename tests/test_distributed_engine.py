"""The Ray engine's per-task thread limits (no Ray needed: the context manager runs here)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from spacerini.distributed import engine


def test_a_shard_task_holds_native_thread_pools_to_its_cpus() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS is loaded and has its pool
    saved = {name: os.environ.get(name) for name in engine._THREAD_VARIABLES}
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]
    if not before:
        pytest.skip("no native thread pool is loaded in this process")
    try:
        with engine._thread_limits(1):
            assert {name: os.environ.get(name) for name in engine._THREAD_VARIABLES} == dict.fromkeys(saved, "1")
            assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info()] == [1] * len(before)
        assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info()] == before  # loaded pools restored
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
