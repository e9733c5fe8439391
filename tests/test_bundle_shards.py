"""Sharded bundles: every answer of an N-shard bundle equals the 1-shard answer."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from spacerini.bundle import MANIFEST, build_bundle, open_bundle, optout
from spacerini.bundle.shards import parse_shard_size, plan
from spacerini.cli import cli
from spacerini.errors import BackendParameterError
from spacerini.eval import read_queries, trec_lines
from spacerini.records import Doc

DATA = Path(__file__).parent / "data"
BACKENDS = ["bm25", "exact", "bloom", "owners"]


def _docs() -> list[Doc]:
    docs = []
    with (DATA / "bm25_corpus.jsonl").open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            record = json.loads(line)
            owner = f"Owner {i % 9}"
            docs.append(Doc(id=record["id"], text=record["contents"], meta={"owner": owner, "repo": f"org/r{i % 9}"}))
    return docs


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[int, object]:
    root = tmp_path_factory.mktemp("shards")
    docs = _docs()
    return {
        n: build_bundle(docs, root / f"s{n}", backends=BACKENDS, shards=n, progress=False) for n in (1, 3, 7)
    }


def test_manifest_lists_the_shards_and_a_single_shard_keeps_the_plain_layout(bundles: dict) -> None:
    one, seven = bundles[1], bundles[7]
    assert one.info()["shards"] == [{"id": 0, "first_doc": 0, "docs": 204, "folder": ""}]
    assert (one.path / "lucene").is_dir() and not (one.path / "shards").exists()
    layout = seven.info()["shards"]
    assert [s["docs"] for s in layout] == [30, 29, 29, 29, 29, 29, 29]
    assert [s["first_doc"] for s in layout] == [0, 30, 59, 88, 117, 146, 175]
    assert all((seven.path / s["folder"] / "lucene").is_dir() for s in layout)
    open_bundle(seven.path, verify=True)  # every shard file is checksummed


def test_bm25_runs_at_k1000_are_identical_across_shard_counts(bundles: dict) -> None:
    queries = read_queries(DATA / "bm25_queries.tsv")
    runs = {n: list(trec_lines(b.batch_search_pairs(queries, k=1000))) for n, b in bundles.items()}
    assert len(runs[1]) > 1000
    assert runs[3] == runs[1]
    assert runs[7] == runs[1]
    for query in ("search engine ranking", "river"):
        pages = [[(h.docid, h.score, h.rank) for h in bundles[7].search(query, k=10, offset=o)] for o in (0, 10, 20)]
        assert sum(pages, []) == [(h.docid, h.score, h.rank) for h in bundles[1].search(query, k=30)]


def test_exact_counts_and_pages_equal_the_unsharded_index_and_str_count(bundles: dict) -> None:
    texts = [d.text for d in _docs()]
    for needle in ("search engine", "engine index", "river document", "zzz-not-there"):
        expected = sum(t.count(needle) for t in texts)
        assert [b.searcher("exact").count(needle) for b in bundles.values()] == [expected] * 3
        pages = [[(h.docid, h.offset) for h in b.searcher("exact").find(needle, k=7, offset=5)] for b in bundles.values()]
        assert pages[1] == pages[0] and pages[2] == pages[0]


def test_bloom_and_owners_merge_into_the_unsharded_files(bundles: dict) -> None:
    for n in (3, 7):
        for rel in ("bloom/filter.bloom", "bloom/meta.json", "owners/owners.json"):
            assert filecmp.cmp(bundles[1].path / rel, bundles[n].path / rel, shallow=False), (n, rel)
        assert not list((bundles[n].path / "shards").glob("*/bloom"))  # shard sketches were merged away


def test_the_service_and_an_optout_work_on_a_sharded_bundle(tmp_path: Path) -> None:
    from spacerini.service import Service

    out = tmp_path / "b"
    build_bundle(_docs(), out, backends=BACKENDS, shards=4, progress=False).close()
    svc = Service(open_bundle(out), flags_path=tmp_path / "flags.jsonl")
    assert svc.count("search engine")["count"] > 0
    owned = {d.id for i, d in enumerate(_docs()) if i % 9 == 2}
    optout(out, owners=["Owner 2"], progress=False)
    after = open_bundle(out)
    assert len(after.info()["shards"]) == 4 and len(after) == 204 - len(owned)
    assert not owned & {h.docid for h in after.search("search engine", k=300)}
    assert not owned & {h.docid for h in after.searcher("exact").find("search", k=10_000)}
    assert json.loads((out / MANIFEST).read_text())["audit_log"][-1]["removed"] == len(owned)


def test_shard_size_in_documents_and_bytes_from_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    corpus = DATA / "bm25_corpus.jsonl"
    for size, expect in (("50", [50, 50, 50, 50, 4]), ("50 docs", [50, 50, 50, 50, 4])):
        out = tmp_path / f"b{len(expect)}-{size.replace(' ', '')}"
        done = runner.invoke(cli, ["-q", "index", str(corpus), "--out", str(out), "--shard-size", size])
        assert done.exit_code == 0, done.output
        info = json.loads(runner.invoke(cli, ["info", str(out)]).output)
        assert [s["docs"] for s in info["shards"]] == expect
    by_bytes = tmp_path / "bytes"
    sizes = [len(d.text.encode()) for d in _docs()]
    cap = sum(sizes) // 3 + 1
    done = runner.invoke(cli, ["-q", "index", str(corpus), "--out", str(by_bytes), "--shard-size", f"{cap}b"])
    assert done.exit_code == 0, done.output
    layout = json.loads(runner.invoke(cli, ["info", str(by_bytes)]).output)["shards"]
    assert len(layout) >= 3 and sum(s["docs"] for s in layout) == len(sizes)
    for shard, following in zip(layout, [*layout[1:], None], strict=True):
        held = sum(sizes[shard["first_doc"] : shard["first_doc"] + shard["docs"]])
        assert held <= cap or shard["docs"] == 1  # no shard over the size (a bigger document alone)
        if following is not None:  # and each is full: the next document would not have fitted
            assert held + sizes[following["first_doc"]] > cap
    bad = runner.invoke(cli, ["index", str(corpus), "--out", str(tmp_path / "x"), "--shard-size", "lots"])
    assert bad.exit_code == 2 and "is not a size" in bad.output


def test_plan_and_size_parsing() -> None:
    assert parse_shard_size("2GB") == (2 * 10**9, "bytes")
    assert parse_shard_size("512MiB") == (512 * 2**20, "bytes")
    assert parse_shard_size(1000) == (1000, "docs")
    with pytest.raises(BackendParameterError):
        parse_shard_size("0")

    class _Store:
        def __len__(self) -> int:
            return 5

    assert [s.docs for s in plan(_Store(), shards=9)] == [1, 1, 1, 1, 1]  # at most one shard per document
    with pytest.raises(BackendParameterError, match="not both"):
        plan(_Store(), shards=2, shard_size=2)


def test_merge_writes_one_lucene_index_that_answers_the_same(tmp_path: Path, bundles: dict) -> None:
    import shutil

    out = tmp_path / "m"
    shutil.copytree(bundles[7].path, out)
    queries = read_queries(DATA / "bm25_queries.tsv")
    before = list(trec_lines(open_bundle(out).batch_search_pairs(queries, k=1000)))
    runner = CliRunner()
    done = runner.invoke(cli, ["merge", str(out)])
    assert done.exit_code == 0, done.output
    merged = open_bundle(out, verify=True)
    assert merged.generation == 2 and "shards" not in merged.manifest["backends"]["bm25"]
    assert (out / "lucene").is_dir() and not list((out / "shards").glob("*/lucene"))
    assert list(trec_lines(merged.batch_search_pairs(queries, k=1000))) == before
    assert merged.searcher("exact").count("search engine") == bundles[1].searcher("exact").count("search engine")
    again = runner.invoke(cli, ["merge", str(out)])
    assert again.exit_code == 2 and "nothing to merge" in again.output
    from spacerini.java import ensure_jvm

    ensure_jvm()
    from pyserini.search.lucene import LuceneSearcher  # plain pyserini opens the merged index

    plain = LuceneSearcher(str(out / "lucene"))
    reference = bundles[1].search("search engine ranking", k=10, snippets=False)
    assert [h.docid for h in plain.search("search engine ranking", k=10)] == [h.docid for h in reference]


def test_a_sharded_dense_bundle_answers_as_the_unsharded_one(tmp_path: Path) -> None:
    docs = _docs()[:60]
    params = {"dense": {"index": "flat"}}
    one = build_bundle(docs, tmp_path / "d1", backends=["dense"], backend_params=params, progress=False)
    three = build_bundle(docs, tmp_path / "d3", backends=["dense"], backend_params=params, shards=3, progress=False)
    assert len(three.info()["shards"]) == 3 and not list((three.path / "shards").glob("*/dense"))
    assert filecmp.cmp(one.path / "dense" / "index.faiss", three.path / "dense" / "index.faiss", shallow=False)
    for query in ("search engine ranking", "river apple"):
        a = [(h.docid, round(h.score, 6)) for h in one.search(query, k=10, backend="dense")]
        b = [(h.docid, round(h.score, 6)) for h in three.search(query, k=10, backend="dense")]
        assert a == b and a
