"""Several corpora in one collection (spacerini.corpora): per-corpus calls and the side-by-side compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spacerini.errors import QueryError, UsageError

QUERIES = ["search engine", "document", "river", "the", "index search", "apple", "zzz-not-there"]


def _halves(tmp: Path) -> tuple[Path, Path, Path]:
    rows = [json.loads(line) for line in Path("tests/data/bm25_corpus.jsonl").read_text().splitlines()]
    whole, first, second = tmp / "whole.jsonl", tmp / "a.jsonl", tmp / "b.jsonl"
    half = len(rows) // 2
    for path, part in ((whole, rows), (first, rows[:half]), (second, rows[half:])):
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return whole, first, second


@pytest.fixture(scope="module")
def corpora_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from spacerini.bundle import build_bundle

    tmp = tmp_path_factory.mktemp("corpora")
    whole, first, second = _halves(tmp)
    out = {}
    for name, src, backends in (
        ("whole", whole, ["bm25", "exact"]),
        ("a", first, ["bm25", "exact", "bloom"]),
        ("b", second, ["exact"]),
        ("c", second, ["bloom"]),  # no ranked backend, no exact counts: its columns say so
    ):
        build_bundle(src, tmp / name, backends=backends, progress=False)
        out[name] = tmp / name
    return out


def test_counts_of_two_halves_add_up_to_the_whole(corpora_paths: dict[str, Path]) -> None:
    from spacerini.corpora import open_bundles

    corpora = open_bundles([corpora_paths["a"], corpora_paths["b"], corpora_paths["whole"]])
    assert corpora.names == ["a", "b", "whole"]
    assert corpora.default == "a"
    docs = [r.docs for r in corpora.corpora()]
    assert docs[0] + docs[1] == docs[2] == 204
    for q in QUERIES:
        cmp = corpora.compare(q)
        counts = {c.name: c.count for c in cmp.corpora}
        assert counts["a"] + counts["b"] == counts["whole"], q
        # each column equals asking that corpus alone
        assert counts["b"] == corpora.count(q, corpus="b").count
        texts = [json.loads(line)["contents"] for line in Path("tests/data/bm25_corpus.jsonl").read_text().splitlines()]
        assert counts["whole"] == sum(t.startswith(q, i) for t in texts for i in range(len(t))), q


def test_a_corpus_without_a_backend_says_so_and_the_others_answer(corpora_paths: dict[str, Path]) -> None:
    from spacerini.corpora import open_bundles

    corpora = open_bundles([corpora_paths["a"], corpora_paths["c"]], names={str(corpora_paths["c"]): "Second half"})
    rows = Path("tests/data/bm25_corpus.jsonl").read_text().splitlines()
    passage = json.loads(rows[-1])["contents"][:300]  # a document of the second half
    cmp = corpora.compare("search engine", text=passage)
    a, b = cmp.corpora
    assert cmp.text == passage and cmp.owner == "search engine"
    assert b.name == "Second half"
    assert b.missing["top_hit"] == "no ranked backend" and b.top_hit is None
    assert b.missing["count"] == "no exact backend" and b.count is None
    assert a.count == corpora.count("search engine", corpus="a").count > 0
    assert "owner" in a.missing and "owner" in b.missing
    assert a.top_hit is not None and a.backend == "bm25"
    assert a.top_hit.docid == corpora.search("search engine", k=1, corpus="a").hits[0].docid
    assert b.coverage == corpora.member(passage, corpus="Second half").coverage > 0.9
    assert a.coverage == corpora.member(passage, corpus="a").coverage < b.coverage
    as_json = json.loads(json.dumps(cmp.to_dict()))
    assert [c["name"] for c in as_json["corpora"]] == ["a", "Second half"]
    assert as_json["corpora"][0]["top_hit"]["docid"] == a.top_hit.docid


def test_names_and_errors(corpora_paths: dict[str, Path]) -> None:
    from spacerini.corpora import open_bundles, parse_names

    corpora = open_bundles([corpora_paths["a"], corpora_paths["a"]])
    assert corpora.names == ["a", "a-2"]
    with pytest.raises(QueryError, match="no corpus named 'nope': choose from a, a-2"):
        corpora.count("x", corpus="nope")
    with pytest.raises(QueryError, match="empty"):
        corpora.compare("   ")
    with pytest.raises(UsageError, match="not valid"):
        open_bundles({"<script>": corpora_paths["a"]})
    with pytest.raises(UsageError, match="two corpora are named"):
        open_bundles([corpora_paths["a"], corpora_paths["b"]],
                     names={str(corpora_paths["a"]): "X", str(corpora_paths["b"]): "X"})  # fmt: skip
    paths: list[Any] = [str(corpora_paths["a"]), str(corpora_paths["b"])]
    assert parse_names(["b=Pile", f"{paths[0]}=C4"], paths) == {paths[1]: "Pile", paths[0]: "C4"}
    with pytest.raises(UsageError, match="write BUNDLE=label"):
        parse_names(["b"], paths)
    with pytest.raises(UsageError, match="is not one of the bundles"):
        parse_names(["c=x"], paths)
    with pytest.raises(UsageError, match="named twice"):  # the second used to win silently
        parse_names(["b=X", "b=Y"], paths)


def test_an_optout_changes_only_its_corpus(tmp_path: Path) -> None:
    """Generations and reloads are per corpus: an opt-out in one bundle reaches its column within
    the reload interval, and the other corpus keeps its answers and generation."""
    import time

    from spacerini.bundle import build_bundle, optout
    from spacerini.corpora import open_bundles
    from spacerini.records import Doc

    docs = [Doc(f"d{i}", f"shared phrase number {i} by {owner}", meta={"owner": owner})
            for i, owner in enumerate(["Ada", "Grace", "Alan"] * 4)]  # fmt: skip
    for name in ("one", "two"):
        build_bundle(docs, tmp_path / name, backends=["bm25", "exact", "owners"], progress=False)
    corpora = open_bundles([tmp_path / "one", tmp_path / "two"])
    before = corpora.compare("shared phrase", owner="Ada")
    assert [(c.count, c.owner_docs, c.generation) for c in before.corpora] == [(12, 4, 1), (12, 4, 1)]
    optout(tmp_path / "one", owners=["Ada"], progress=False)
    deadline = time.monotonic() + 10
    while True:
        after = corpora.compare("shared phrase", owner="Ada")
        if after.corpora[0].generation == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    one, two = after.corpora
    assert (one.count, one.owner_docs, one.owners, one.generation) == (8, 0, (), 2)
    assert (two.count, two.owner_docs, two.generation) == (12, 4, 1)
    assert corpora.search("Ada", corpus="one").hits == () and len(corpora.search("Ada", corpus="two").hits) == 4


@pytest.mark.slow
def test_sharded_corpora_on_one_ray_engine(corpora_paths: dict[str, Path], tmp_path: Path) -> None:
    """Several sharded bundles served with --engine ray share one Ray connection and answer as locally."""
    from spacerini.bundle import build_bundle
    from spacerini.corpora import open_bundles

    whole, first, second = _halves(tmp_path)
    for name, src in (("s1", first), ("s2", second)):
        build_bundle(src, tmp_path / name, backends=["bm25", "exact"], shards=2, progress=False)
    paths = [tmp_path / "s1", tmp_path / "s2"]
    local = open_bundles(paths)
    remote = open_bundles(paths, engine="ray")
    try:
        engines = {id(remote.bundle(n).engine) for n in remote}
        assert len(engines) == 1 and None not in {remote.bundle(n).engine for n in remote}
        for q in QUERIES[:4]:
            a, b = local.compare(q), remote.compare(q)
            assert [(c.count, c.top_hit and c.top_hit.docid, c.top_hit and c.top_hit.score) for c in a.corpora] == [
                (c.count, c.top_hit and c.top_hit.docid, c.top_hit and c.top_hit.score) for c in b.corpora
            ]
    finally:
        remote.close()
        local.close()


class _SharedEngine:
    """Stands in for the one RayServing that ``open_bundles(engine="ray")`` shares between corpora."""

    made: list[_SharedEngine] = []

    def __init__(self, address: str | None = None) -> None:
        self.closed = 0
        _SharedEngine.made.append(self)

    def open_fanout(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("these bundles are not sharded")

    def close(self) -> None:
        self.closed += 1


def test_closing_one_corpus_leaves_the_shared_engine_open(
    corpora_paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import spacerini.distributed.serve
    from spacerini.corpora import open_bundles

    monkeypatch.setattr(spacerini.distributed.serve, "RayServing", _SharedEngine)
    _SharedEngine.made.clear()
    corpora = open_bundles([corpora_paths["a"], corpora_paths["b"]], engine="ray")
    (engine,) = _SharedEngine.made
    first, second = (corpora[name].bundle for name in corpora)
    first.close()
    assert engine.closed == 0  # closing one corpus stopped the others' Ray before
    assert second.search("document", backend="exact")
    corpora.close()
    assert engine.closed == 1  # the collection closes its engine, once
    corpora.close()
    assert engine.closed == 1
