"""The Ray engine: a sharded build on a two-node Ray cluster answers exactly as the local build.

The cluster is ``ray.cluster_utils.Cluster`` on this machine (a head and one worker node, one
CPU each); the build runs through the CLI in its own process, which joins the cluster with
``--ray-address`` as a user's driver would.
"""

from __future__ import annotations

import filecmp
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from spacerini.bundle import open_bundle  # noqa: E402
from spacerini.cli import cli  # noqa: E402
from spacerini.distributed import parse_memory  # noqa: E402
from spacerini.errors import BackendParameterError  # noqa: E402
from tests.ray_helpers import two_node_cluster  # noqa: E402

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "bm25_corpus.jsonl"
BACKENDS = "bm25,exact,bloom,owners"
STORE = 200 * 10**6
NODES = re.compile(r"ray: \d+ (\w+) tasks in [\d.]+ s on \d+ nodes \(([^)]*)\)")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_node_cluster(STORE) as cluster:
        yield cluster


def _add_worker(cluster: Cluster) -> None:
    cluster.add_node(num_cpus=1, object_store_memory=STORE)
    cluster.wait_for_nodes()


def _worker(cluster: Cluster) -> Any:
    (worker,) = cluster.worker_nodes
    return worker


def _command(out: Path, *extra: str, backends: str) -> list[str]:
    return [sys.executable, "-m", "spacerini", "index", str(CORPUS), "--out", str(out), "--backends", backends,
            "--shards", "4", *extra]  # fmt: skip


def _index(out: Path, *extra: str, backends: str = BACKENDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(out, *extra, backends=backends), capture_output=True, text=True, timeout=240
    )


def _nodes_per_backend(stderr: str) -> dict[str, set[str]]:
    """From the engine's log lines: the (12-character) node ids that ran each backend's tasks."""
    found: dict[str, set[str]] = {}
    for backend, counts in NODES.findall(stderr):
        found.setdefault(backend, set()).update(entry.split(":")[0] for entry in counts.split(", "))
    return found


def _run(bundle: Path, tmp: Path) -> bytes:
    out = tmp / f"{bundle.name}.trec"
    result = CliRunner().invoke(
        cli,
        [
            "search",
            str(bundle),
            "--queries",
            str(DATA / "bm25_queries.tsv"),
            "--output",
            str(out),
            "--k",
            "1000",
        ],
    )
    assert result.exit_code == 0, result.output
    return out.read_bytes()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "bundle"
    process = _index(out)
    assert process.returncode == 0, process.stderr
    return out


def _assert_same_answers(ray_bundle: Path, local: Path, tmp: Path, *, backends: str = BACKENDS) -> None:
    if "bm25" in backends:
        run = _run(ray_bundle, tmp)
        assert run.count(b"\n") > 1000
        assert run == _run(local, tmp)
    if "exact" in backends:
        texts = [json.loads(line)["contents"] for line in CORPUS.read_text(encoding="utf-8").splitlines()]
        for needle in ("search engine", "river document", "zzz-not-there"):
            counts = [open_bundle(b).searcher("exact").count(needle) for b in (ray_bundle, local)]
            assert counts == [sum(t.count(needle) for t in texts)] * 2
    for rel in ("bloom/filter.bloom", "bloom/meta.json", "owners/owners.json"):
        if rel.split("/")[0] in backends:
            assert filecmp.cmp(ray_bundle / rel, local / rel, shallow=False), rel
    shards = [open_bundle(b).info()["shards"] for b in (ray_bundle, local)]
    assert shards[0] == shards[1] and len(shards[0]) == 4


def test_a_two_node_ray_build_answers_as_the_local_build(
    cluster: Cluster, local: Path, tmp_path: Path
) -> None:
    head, worker = cluster.head_node, _worker(cluster)
    process = _index(tmp_path / "ray", "--engine", "ray", "--ray-address", cluster.address)
    stderr = process.stderr
    assert process.returncode == 0, stderr
    nodes = _nodes_per_backend(stderr)
    assert set(nodes) == set(BACKENDS.split(","))
    assert set().union(*nodes.values()) == {head.node_id[:12], worker.node_id[:12]}, stderr
    _assert_same_answers(tmp_path / "ray", local, tmp_path)


def test_without_an_address_ray_starts_embedded_and_the_build_is_the_same(
    local: Path, tmp_path: Path
) -> None:
    process = _index(tmp_path / "ray", "--engine", "ray", "--threads", "2", backends="bloom")
    stderr = process.stderr
    assert process.returncode == 0, stderr
    nodes = _nodes_per_backend(stderr)
    assert set(nodes) == {"bloom"} and len(nodes["bloom"]) == 1, stderr  # one node: this machine
    _assert_same_answers(tmp_path / "ray", local, tmp_path, backends="bloom")


def test_memory_budgets_no_node_can_give_or_that_a_worker_exceeds_fail_in_one_line(
    cluster: Cluster, tmp_path: Path
) -> None:
    address = cluster.address
    process = _index(
        tmp_path / "huge", "--engine", "ray", "--ray-address", address, "--memory-budget", "100TB"
    )
    stderr = process.stderr
    assert process.returncode == 2
    assert "spacerini: error: --memory-budget 100TB is more than any Ray node offers" in stderr
    assert "Traceback" not in stderr

    # Any Python worker holds more than 1 MB resident: refused before the build starts.
    process = _index(tmp_path / "tiny", "--engine", "ray", "--ray-address", address, "--memory-budget", "1MB",
                     backends="owners")  # fmt: skip
    _assert_one_line(
        process, r"owners shard \(rows \d+\.\.\d+\): the worker reached \d+ MB, over --memory-budget 1 MB"
    )
    # A fresh worker holds about 140 MB; with the Lucene JVM it starts for BM25 (a child process,
    # which the budget covers) it passes 200 MB mid-build: the watchdog kills both, and Ray's
    # retry reports why instead of building again.
    process = _index(tmp_path / "jvm", "--engine", "ray", "--ray-address", address, "--memory-budget", "200MB",
                     backends="bm25")  # fmt: skip
    _assert_one_line(
        process,
        r"bm25 shard \(rows \d+\.\.\d+\): the worker was stopped at \d+ MB, over --memory-budget 200 MB",
    )
    left = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))
    assert left == []  # no bundle, no half-built folder left (named to the file, for the writer that left it)


def _assert_one_line(process: subprocess.CompletedProcess[str], pattern: str) -> None:
    stderr = process.stderr
    assert process.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("spacerini: error:")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), stderr
    assert "Traceback" not in stderr


def test_a_worker_node_lost_mid_build_is_retried_and_the_bundle_is_identical(
    cluster: Cluster, local: Path, tmp_path: Path
) -> None:
    worker = _worker(cluster)
    log = tmp_path / "index.log"
    with log.open("w") as stderr_file:
        process = subprocess.Popen(
            _command(tmp_path / "ray", "--engine", "ray", "--ray-address", cluster.address, backends="bm25"),
            stdout=subprocess.DEVNULL, stderr=stderr_file, text=True,
        )  # fmt: skip
    try:
        # Each attempt of a shard task names its node in <shard>/lucene.attempts as it starts; the
        # worker node is removed as soon as it has started one (a BM25 shard then needs seconds
        # more: a worker process, its JVM, the index).
        deadline = time.monotonic() + 120
        while not any(worker.node_id in _text(f) for f in tmp_path.glob(".ray*/shards/*/*.attempts")):
            assert process.poll() is None and time.monotonic() < deadline, (
                "no task started on the worker node"
            )
            time.sleep(0.02)
        cluster.remove_node(worker, allow_graceful=False)
        process.wait(timeout=240)
        stderr = log.read_text(encoding="utf-8")
        assert process.returncode == 0, stderr
        assert _nodes_per_backend(stderr) == {"bm25": {cluster.head_node.node_id[:12]}}, stderr
        assert re.search(r"; [1-4] retried after a lost worker or node", stderr), stderr
    finally:
        if process.poll() is None:
            process.kill()
        if not cluster.worker_nodes:  # the cluster other tests share keeps two nodes
            _add_worker(cluster)
    _assert_same_answers(tmp_path / "ray", local, tmp_path, backends="bm25")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:  # the driver removes it once the tasks are done
        return ""


def test_memory_budget_parsing() -> None:
    assert parse_memory("2GB") == 2 * 10**9
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("1.5g") == 1_500_000_000
    assert parse_memory(4096) == 4096
    for bad in ("lots", "-1GB", "0", "2 XB"):
        with pytest.raises(BackendParameterError):
            parse_memory(bad)


def test_a_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from spacerini.bundle.shards import ShardTask, run_tasks
    from spacerini.errors import DependencyMissingError

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    task = ShardTask("bm25", "docs", 0, 1, "out", {})
    with pytest.raises(DependencyMissingError, match=r"pip install 'spacerini\[distributed\]'"):
        run_tasks([task], engine="ray")
