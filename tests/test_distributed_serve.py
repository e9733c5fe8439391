"""`serve --engine ray`: a sharded bundle's BM25 and exact shards in Ray actors answer as the local engine.

The in-process tests join a ``ray.cluster_utils.Cluster`` on this machine (a head and one worker
node, one CPU each), so the shard actors land on two nodes; the CLI test starts ``spacerini
serve --engine ray`` with Ray embedded in the server, and checks that Ray stops with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
from ray.cluster_utils import Cluster  # noqa: E402

import spacerini.bundle.open as bundle_open  # noqa: E402
from spacerini.backends import BatchSearcher, ExactText, RankedSearcher, Snippeter  # noqa: E402
from spacerini.bundle import build_bundle, open_bundle, optout  # noqa: E402
from spacerini.distributed.serve import RayBM25Searcher, RayExactSearcher, merge_ranked  # noqa: E402
from spacerini.errors import BackendParameterError, BundleCorruptError, QueryError  # noqa: E402
from spacerini.eval import read_queries  # noqa: E402
from spacerini.records import Doc, to_json  # noqa: E402
from spacerini.service import Service  # noqa: E402
from tests.ray_helpers import two_node_cluster  # noqa: E402

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"
STORE = 200 * 10**6
QUERIES = ("search engine ranking", "river", "python class method", "document relevance model")
NEEDLES = ("search engine", "river document", "e", "zzz-not-there")


def _docs() -> list[Doc]:
    docs = []
    with (DATA / "bm25_corpus.jsonl").open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            record = json.loads(line)
            docs.append(Doc(id=record["id"], text=record["contents"], meta={"owner": f"Owner {i % 9}"}))
    return docs


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "b3"
    build_bundle(_docs(), out, backends=["bm25", "exact"], shards=3, progress=False).close()
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_node_cluster(STORE) as cluster:
        yield cluster


def _same_answers(ray_bundle: object, local: object) -> None:
    """Every search, batch run, count, find and trace of the two bundles is equal."""
    for query in QUERIES:
        for k, offset in ((10, 0), (10, 7), (1000, 0), (1000, 5)):
            assert ray_bundle.search(query, k=k, offset=offset) == local.search(query, k=k, offset=offset)
    queries = read_queries(DATA / "bm25_queries.tsv")
    run = ray_bundle.batch_search_pairs(queries, k=1000)
    assert run == local.batch_search_pairs(queries, k=1000)
    assert sum(len(pairs) for pairs in run.values()) > 1000
    assert ray_bundle.batch_search(queries[:5], k=50) == local.batch_search(queries[:5], k=50)
    remote, here = ray_bundle.searcher("exact"), local.searcher("exact")
    texts = [d.text for d in _docs()]
    for needle in NEEDLES:
        assert remote.count(needle) == here.count(needle) == sum(t.count(needle) for t in texts)
        for k, offset in ((10, 0), (7, 5), (50, 60), (1000, 0)):
            assert remote.find(needle, k=k, offset=offset) == here.find(needle, k=k, offset=offset)
            mine = ray_bundle.search(needle, backend="exact", k=k, offset=offset)
            assert mine == local.search(needle, backend="exact", k=k, offset=offset)
    traced = texts[5][:200] + " qqq " + texts[100][50:300] + texts[7]
    spans = remote.longest_matches(traced, min_len=10, max_docs=3)
    assert spans == here.longest_matches(traced, min_len=10, max_docs=3) and len(spans) >= 2


def test_ray_actors_on_two_nodes_answer_as_the_local_engine(bundle: Path, cluster: Cluster) -> None:
    local = open_bundle(bundle)
    served = open_bundle(bundle, engine="ray", ray_address=cluster.address)
    try:
        assert isinstance(served.searcher("bm25"), RayBM25Searcher)
        assert isinstance(served.searcher("exact"), RayExactSearcher)
        assert isinstance(served.searcher("bm25"), BatchSearcher) and isinstance(served.searcher("bm25"), Snippeter)
        assert isinstance(served.searcher("exact"), ExactText) and isinstance(served.searcher("exact"), RankedSearcher)
        nodes = served.engine.actor_nodes()
        assert len(nodes) == 3  # one actor per shard, shared by bm25 and exact
        assert len(set(nodes)) == 2, nodes
        _same_answers(served, local)
        with pytest.raises(QueryError, match="empty"):
            served.search("   ")
        with pytest.raises(QueryError, match="must not be negative"):
            served.searcher("exact").find("engine", k=-1)
    finally:
        served.close()
        local.close()
    assert served.engine.actor_nodes() == []
    assert not ray.is_initialized()  # it joined the cluster, and only disconnected


def test_groups_of_shards_per_actor_answer_the_same(bundle: Path, cluster: Cluster) -> None:
    from spacerini.distributed.serve import RayServing

    local = open_bundle(bundle)
    served = open_bundle(bundle, engine=RayServing(address=cluster.address, shards_per_actor=2))
    try:
        for query in QUERIES:
            assert served.search(query, k=1000, offset=3) == local.search(query, k=1000, offset=3)
        for needle in NEEDLES:
            assert served.searcher("exact").find(needle, k=40, offset=20) == local.searcher("exact").find(needle, k=40, offset=20)
        assert len(served.engine.actor_nodes()) == 2  # shards 0-1 and 2
    finally:
        served.close()
        local.close()


def test_an_optout_switches_the_ray_bundle_to_new_actors(
    bundle: Path, cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle_open, "RETIRE_SECONDS", 0.0)
    path = tmp_path / "b3"
    shutil.copytree(bundle, path)
    served = open_bundle(path, engine="ray", ray_address=cluster.address)
    try:
        before = served.search("search engine", k=1000)
        owner3 = {d.id for d in _docs() if d.meta["owner"] == "Owner 3"}
        assert owner3 & {h.docid for h in before}
        old_actors = [actor for pool in served.engine._pools.values() for actor in pool.actors]
        assert len(old_actors) == 3
        optout(path, owners=["Owner 3"], progress=False)
        assert served.reload()
        after = served.search("search engine", k=1000)
        local = open_bundle(path)
        try:
            assert after == local.search("search engine", k=1000)
            assert not owner3 & {h.docid for h in after}
            assert served.searcher("exact").count("search engine") == local.searcher("exact").count("search engine")
        finally:
            local.close()
        assert len(served.engine.actor_nodes()) == 3  # the new generation's actors only
        for actor in old_actors:  # the old generation's were killed once it was retired
            with pytest.raises(ray.exceptions.RayActorError):
                ray.get(actor.node.remote(), timeout=60)
    finally:
        served.close()


def test_merge_ranked_breaks_ties_by_id_and_adjusts_them_over_the_merged_list() -> None:
    ids, scores = merge_ranked([(["b", "d"], [2.0, 1.0]), (["a", "c"], [2.0, 1.0])], 3)
    assert ids == ["a", "b", "c"]
    assert scores[0] == 2.0 and scores[1] < 2.0 and scores[2] == 1.0  # "b" ties "a": lowered by 1e-6


def test_bad_engines_fail_in_one_line(bundle: Path) -> None:
    with pytest.raises(BackendParameterError, match="unknown engine 'spark'"):
        open_bundle(bundle, engine="spark")
    with pytest.raises(BackendParameterError, match="--ray-address needs --engine ray"):
        open_bundle(bundle, ray_address="127.0.0.1:6379")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serve_with_the_ray_engine_answers_the_api_as_local_and_stops_ray(bundle: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SPACERINI_NO_PROGRESS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("RAY_ADDRESS", None)
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "spacerini", "serve", str(bundle), "--port", str(port), "--engine", "ray",
         "--flags", str(tmp_path / "flags.jsonl")],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/"
    children: list[psutil.Process] = []
    try:
        started = time.monotonic()
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() - started < 240, "the server did not start"
            try:
                if httpx.get(url + "stats", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        children = psutil.Process(server.pid).children(recursive=True)
        assert any("raylet" in " ".join(c.cmdline()) for c in children)  # Ray runs embedded in the server
        local = open_bundle(bundle)
        svc = Service(local, flags_path=tmp_path / "local-flags.jsonl")
        try:
            for query in QUERIES:
                for k, offset in ((10, 0), (100, 0), (10, 20)):
                    got = httpx.get(url + "search", params={"q": query, "k": k, "offset": offset}, timeout=60)
                    assert got.status_code == 200, got.text
                    expected = json.loads(json.dumps(to_json(svc.search(query, "", k, offset))))
                    assert got.json() == expected
                    assert got.json()["hits"] or offset
            for needle in NEEDLES[:2]:
                got = httpx.get(url + "find", params={"q": needle, "k": 10, "offset": 3}, timeout=60).json()
                assert got == json.loads(json.dumps(to_json(svc.find(needle, 10, 3))))
                got = httpx.get(url + "count", params={"q": needle}, timeout=60).json()
                assert got == json.loads(json.dumps(to_json(svc.count(needle))))
        finally:
            local.close()
    finally:
        server.terminate()
        server.wait(timeout=120)
        log.close()
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, [(p.pid, p.name()) for p in alive]  # the embedded Ray stopped with the server


def test_an_error_in_an_actor_comes_back_as_its_class_and_one_line(bundle: Path, cluster: Cluster, tmp_path: Path) -> None:
    from spacerini.distributed.serve import RayServing

    path = tmp_path / "b3"
    shutil.copytree(bundle, path)
    served = open_bundle(path, engine=RayServing(address=cluster.address, shards_per_actor=3))
    try:
        (path / "shards" / "00002" / "exact" / "starts_00000.npy").unlink()  # after the open's size checks
        with pytest.raises(BundleCorruptError) as caught:
            served.searcher("exact")
        message = str(caught.value)
        assert "shards/00002/exact: cannot open the exact index shards" in message and "\n" not in message
        assert "Traceback" not in message and "RayTaskError" not in message
    finally:
        served.close()
