"""Sharded and Ray builds and searches keep the project's promises on bad input and odd set-ups.

* Nonsense sharding and engine options fail in one line before any document is read, and a Ray
  option given without ``--engine ray`` is refused rather than ignored.
* An unreachable ``--ray-address`` fails at once, not after Ray's minutes of retries.
* An error a Ray shard task raises about a document names its file and line, as the local engine's.
* ``spacerini merge`` on a bundle without BM25 says so.
* A bundle with more shards than the Ray cluster's CPUs can hold actors for is served (fewer
  actors, each with a run of contiguous shards), with the local engine's answers.

The Ray tests share one two-node ``ray.cluster_utils.Cluster`` (one CPU each), shut down at the end.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spacerini.bundle import build_bundle, open_bundle
from spacerini.bundle.merge import merge_bm25
from spacerini.errors import BackendParameterError, BundleError, DocumentTooLargeError
from spacerini.records import Doc

DATA = Path(__file__).parent / "data"
STORE = 200 * 10**6


def _docs(n: int = 40) -> list[Doc]:
    words = "alpha beta gamma delta river search engine ranking shard merge".split()
    return [Doc(id=f"d{i:03d}", text=" ".join(words[(i * j) % len(words)] for j in range(1, 2 + i % 9))) for i in range(n)]


class _Counted:
    """Documents that count how many were read (a check that fails late reads some)."""

    def __init__(self, docs: list[Doc]) -> None:
        self.docs, self.read = docs, 0

    def __iter__(self) -> Iterator[Doc]:
        for doc in self.docs:
            self.read += 1
            yield doc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shard_size": "abc"}, "--shard-size 'abc' is not a size"),
        ({"shard_size": "-1"}, "--shard-size '-1' is not a size"),
        ({"shard_size": 0}, "--shard-size must be positive"),
        ({"shards": 0}, "--shards must be a positive integer, not 0"),
        ({"shards": "3"}, "--shards must be a positive integer, not '3'"),
        ({"shards": 2, "shard_size": 10}, "give --shards or --shard-size, not both"),
        ({"shards": 2, "memory_budget": "junk"}, "--memory-budget needs --engine ray"),
        ({"shards": 2, "memory_budget": "2GB"}, "--memory-budget needs --engine ray"),
        ({"shards": 2, "ray_address": "127.0.0.1:6379"}, "--ray-address needs --engine ray"),
        ({"shards": 2, "engine": "ray", "memory_budget": "junk"}, "--memory-budget 'junk' is not a size"),
        ({"shards": 2, "engine": "ray", "memory_budget": "-5GB"}, "--memory-budget '-5GB' is not a size"),
        ({"shards": 2, "engine": "ray", "ray_address": " "}, "--ray-address ' ' is not an address"),
    ],
)
def test_bad_shard_and_engine_options_fail_before_any_document_is_read(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    docs = _Counted(_docs())
    with pytest.raises(BackendParameterError, match="^" + message.replace("(", r"\(")):
        build_bundle(docs, tmp_path / "b", backends=["exact"], progress=False, **options)
    assert docs.read == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no bundle, no half-built folder, no lock


def test_the_cli_refuses_a_memory_budget_it_would_ignore_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "b"
    process = subprocess.run(
        [sys.executable, "-m", "spacerini", "index", str(DATA / "bm25_corpus.jsonl"), "--out", str(out),
         "--backends", "exact", "--shards", "3", "--memory-budget", "junk"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1] == (
        "spacerini: error: --memory-budget needs --engine ray: add --engine ray or leave --memory-budget out"
    )
    assert "Traceback" not in process.stderr and not out.exists()


# -------------------------------------------------------------------------------- merge
def test_merge_of_a_bundle_without_bm25_says_it_has_none(tmp_path: Path) -> None:
    bundle = build_bundle(_docs(), tmp_path / "b", backends=["exact"], shards=3, progress=False)
    bundle.close()
    before = json.loads((tmp_path / "b" / "spacerini.json").read_text(encoding="utf-8"))
    with pytest.raises(BundleError, match=r"has no BM25 index to merge \(its backends: exact\)"):
        merge_bm25(tmp_path / "b", progress=False)
    assert json.loads((tmp_path / "b" / "spacerini.json").read_text(encoding="utf-8")) == before


# ---------------------------------------------------------------------------------- Ray
def test_an_unreachable_ray_address_fails_at_once_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    out = tmp_path / "b"
    try:
        process = subprocess.run(
            [sys.executable, "-m", "spacerini", "index", str(DATA / "bm25_corpus.jsonl"), "--out", str(out),
             "--backends", "exact", "--shards", "2", "--engine", "ray", "--ray-address", address],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:  # Ray's own retries take minutes
        pytest.fail(f"--ray-address {address} (nothing listening) did not fail within 60 s")
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1] == (
        f"spacerini: error: cannot join the Ray cluster at {address}: nothing answers there (connection refused): "
        "start its head with `ray start --head`, and give the address it prints"
    )
    assert not out.exists() and not list(tmp_path.glob(".*b*"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    pytest.importorskip("ray")
    from tests.ray_helpers import two_node_cluster

    with two_node_cluster(STORE) as cluster:
        yield cluster


@pytest.mark.slow
def test_a_too_large_document_in_a_ray_shard_names_its_file_and_line_as_locally(cluster: Any, tmp_path: Path) -> None:
    from spacerini.backends.bm25 import MAX_TEXT_CHARS

    corpus = tmp_path / "huge.jsonl"
    with corpus.open("w", encoding="utf-8") as fh:
        for i in range(12):
            text = "big " * (MAX_TEXT_CHARS // 4 + 1) if i == 9 else f"small document {i}"
            fh.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    errors = {}
    for engine, address in (("local", None), ("ray", cluster.address)):
        with pytest.raises(DocumentTooLargeError) as caught:
            build_bundle(corpus, tmp_path / engine, backends=["bm25"], shards=3, engine=engine,
                         ray_address=address, progress=False)  # fmt: skip
        errors[engine] = caught.value
        assert not (tmp_path / engine).exists()
    assert str(errors["local"]).startswith(f"{corpus}:10: document 'd9' has ")
    assert str(errors["ray"]) == str(errors["local"])
    assert (errors["ray"].path, errors["ray"].line, errors["ray"].doc_id) == (str(corpus), 10, "d9")


@pytest.mark.slow
def test_more_shards_than_the_cluster_has_actor_room_for_are_served_as_locally(cluster: Any, tmp_path: Path) -> None:
    from spacerini.distributed.serve import ACTOR_CPUS, RayServing

    cpus = 2  # the cluster's: a head and one worker, one CPU each
    shards = int(cpus / ACTOR_CPUS) + 3  # one actor per shard would need more CPUs than there are
    docs = _docs(60)
    reference = build_bundle(docs, tmp_path / "one", backends=["bm25", "exact"], progress=False)
    sharded = build_bundle(docs, tmp_path / "many", backends=["bm25", "exact"], shards=shards, progress=False)
    sharded.close()
    served = open_bundle(tmp_path / "many", engine=RayServing(address=cluster.address))
    try:
        for query in ("alpha", "river shard", "gamma delta merge"):
            assert [(h.docid, h.score, h.rank) for h in served.search(query, k=50)] == [
                (h.docid, h.score, h.rank) for h in reference.search(query, k=50)
            ]
            assert served.searcher("exact").count(query) == reference.searcher("exact").count(query)
        actors = served.engine.actor_nodes()
        assert len(actors) * ACTOR_CPUS <= cpus / 2  # room left for a new generation's actors
    finally:
        served.close()
        reference.close()
