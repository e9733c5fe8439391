"""A corpus three times ``--memory-budget``, built on a two-node Ray cluster, with every worker's
peak resident memory under the budget (issue 2/4, item 5).

The budget is about the smallest a Ray worker here can work in: a fresh worker (Python, Ray,
pyarrow, numpy) holds about 140 MB, and a Bloom shard adds its filter, which has the size of the
whole corpus's filter (so this is the backend whose per-worker memory grows with the corpus).
The workers report their peak resident memory (``VmHWM``, the JVM and native code included),
and the engine logs the largest per backend, rounded up to whole MB.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from spacerini.bundle import open_bundle  # noqa: E402
from tests.ray_helpers import two_node_cluster  # noqa: E402

pytestmark = pytest.mark.slow

#: A fresh worker holds ~140 MB before any work; a Bloom shard of this corpus peaked at 147-181 MB
#: across runs (a fresh-clone run reached 181 MB and was stopped at a 175 MB budget), so the
#: budget leaves ~40 MB above the highest seen.
BUDGET_MB = 220
SHARDS = 12
BACKENDS = "bloom,owners"
STORE = 100 * 10**6
PEAK = re.compile(r"ray: (\d+) (\w+) tasks in [\d.]+ s on (\d+) nodes .*largest worker peak RSS (\d+) MB")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_node_cluster(STORE) as cluster:
        yield cluster


def write_corpus(path: Path, text_bytes: int) -> tuple[int, list[str]]:
    """Seeded documents of about 40 KB of ASCII words (owners and repos recurring) up to
    ``text_bytes``; returns the document count and a few excerpts of them."""
    rng = random.Random(11)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    paragraphs = [" ".join(rng.choice(vocab) for _ in range(300)) for _ in range(2000)]
    size = docs = 0
    excerpts = []
    with path.open("w", encoding="utf-8") as fh:
        while size < text_bytes:
            text = f"document {docs}\n" + "\n".join(rng.choice(paragraphs) for _ in range(20))
            if docs % 500 == 0:
                start = rng.randrange(len(text) - 300)
                excerpts.append(text[start : start + 300])
            record = {"id": f"d{docs}", "contents": text, "owner": f"owner-{docs % 37}", "repo": f"r/{docs % 101}"}
            fh.write(json.dumps(record) + "\n")
            size += len(text)
            docs += 1
    return docs, excerpts


def test_a_corpus_three_times_the_budget_is_built_with_every_worker_under_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    budget = BUDGET_MB * 10**6
    corpus = tmp_path / "corpus.jsonl"
    docs, excerpts = write_corpus(corpus, 3 * budget)
    out = tmp_path / "bundle"
    process = subprocess.run(
        [sys.executable, "-m", "spacerini", "index", str(corpus), "--out", str(out), "--backends", BACKENDS,
         "--shards", str(SHARDS), "--engine", "ray", "--ray-address", cluster.address,
         "--memory-budget", f"{BUDGET_MB}MB"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    peaks = {backend: (int(tasks), int(nodes), int(peak)) for tasks, backend, nodes, peak in PEAK.findall(process.stderr)}
    assert set(peaks) == set(BACKENDS.split(",")), process.stderr[-3000:]
    for backend, (tasks, nodes, peak) in peaks.items():
        assert tasks == SHARDS and nodes == 2, (backend, peaks)
        # The logged peak is rounded up, so every worker's peak is at most the budget.
        assert 100 < peak <= BUDGET_MB, (backend, peaks)

    bundle = open_bundle(out)
    manifest = bundle.manifest
    assert manifest["counts"]["docs"] == docs
    assert manifest["counts"]["text_bytes"] >= 3 * budget
    assert len(manifest["shards"]) == SHARDS
    bloom = bundle.searcher("bloom")
    assert all(bloom.member(excerpt).coverage > 0.6 for excerpt in excerpts)
    owners = bundle.searcher("owners")
    found = owners.owner("owner-5", max_matches=1).matches[0]
    assert found.docs == len(range(5, docs, 37))


def test_each_task_reports_its_node_worker_and_peak_memory(cluster: Cluster, tmp_path: Path) -> None:
    from spacerini.bundle.shards import ShardTask
    from spacerini.distributed import last_nodes, last_tasks, run_tasks
    from spacerini.docstore import DocstoreWriter
    from spacerini.records import Doc

    with DocstoreWriter(tmp_path / "docs") as writer:
        for i in range(40):
            writer.add(Doc(id=f"d{i}", text=f"text {i}", meta={"owner": f"o{i % 3}"}))
    tasks = [
        ShardTask("owners", str(tmp_path / "docs"), first, 10, str(tmp_path / f"s{first}"), {})
        for first in range(0, 40, 10)
    ]
    reports = run_tasks(tasks, address=cluster.address, memory_budget=f"{BUDGET_MB}MB")
    assert [r["docs"] for r in reports] == [10] * 4
    records = last_tasks()
    alive = {node.node_id for node in [cluster.head_node, *cluster.worker_nodes]}
    assert [r["node"] for r in records] == last_nodes() and set(last_nodes()) <= alive
    for record in records:
        assert record["pid"] > 0 and record["seconds"] > 0
        # A Ray worker holds more than 50 MB (Python, Ray, pyarrow), and stayed under the budget.
        assert 50 * 10**6 < record["peak_rss"] <= BUDGET_MB * 10**6, record
