"""The Ray engine's per-task thread limits (no Ray needed: the context manager runs here), and
what a Ray session leaves of the process's fault handlers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


_HANDLERS_SCRIPT = r"""
import ctypes, json, signal
libc = ctypes.CDLL(None, use_errno=True)

def handlers():
    found = {}
    for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT):
        action = ctypes.create_string_buffer(512)  # struct sigaction: the handler comes first
        assert libc.sigaction(sig, None, action) == 0
        found[sig.name] = int.from_bytes(action.raw[:8], "little")
    return found

from spacerini.distributed import engine
before = handlers()
with engine.session(threads=1):
    during = handlers()
print(json.dumps({"before": before, "during": during}))
"""


def test_a_ray_session_leaves_the_processs_fault_handlers_as_they_were(tmp_path: Path) -> None:
    """Ray's driver installs Abseil's failure handler and Python's faulthandler over a JVM's
    handlers (without chaining), and the JVM raises SIGSEGV on purpose: pytest segfaulted in
    the first BM25 test after a Ray test. The session must leave the handlers untouched."""
    if sys.platform != "linux":
        pytest.skip("reads struct sigaction through glibc")
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"}
    done = subprocess.run([sys.executable, "-c", _HANDLERS_SCRIPT], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["during"] == seen["before"]
