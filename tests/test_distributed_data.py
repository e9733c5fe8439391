"""Reading and preprocessing on Ray Data (``--engine ray``) give the bundle the local build gives.

The near-dedup replay is checked against :class:`~spacerini.preprocess.dedup.NearDedup` on random
corpora without Ray (the Ray Data functions run here on pyarrow tables). The builds run on one
embedded Ray (two CPUs) that the module starts and always shuts down; they are marked slow.
"""

from __future__ import annotations

import gc
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from spacerini.bundle import build_bundle, open_bundle
from spacerini.distributed import data
from spacerini.errors import CorpusError
from spacerini.preprocess.dedup import ExactDedup, NearDedup
from spacerini.records import Doc

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


# ------------------------------------------------------------------- the replay (no Ray needed)
def _random_corpus(rng: random.Random, size: int) -> list[str]:
    texts: list[str] = []
    for _ in range(size):
        choice = rng.random()
        if texts and choice < 0.35:  # a near copy of an earlier text: a few words changed
            words = rng.choice(texts).split()
            for _ in range(rng.randint(0, 3)):
                if words:
                    words[rng.randrange(len(words))] = rng.choice(WORDS)
            texts.append(" ".join(words))
        elif choice < 0.4:
            texts.append(rng.choice(["", "...", "  "]))  # no tokens
        else:
            texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))))
    return texts


def _distributed_near_dedup(step: NearDedup, texts: list[str]) -> tuple[set[int], dict[str, Any]]:
    """The Ray path's functions on plain tables: sketch, group by band, bucket pairs, replay."""
    keys = [(i // 4) << data.KEY_SHIFT | (i % 4) for i in range(len(texts))]  # in order, not dense
    batch = pa.table({"key": pa.array(keys, type=pa.int64()), "text": texts})
    sketched = pa.concat_tables([data._sketch_batch(batch.slice(s, 7), step) for s in range(0, len(texts), 7)])
    entries = sketched.filter(pc.equal(sketched.column("no_tokens"), 0))
    rows: list[dict[str, Any]] = []
    for band in set(entries.column("band").to_pylist()):
        group = entries.filter(pc.equal(entries.column("band"), pa.scalar(band, pa.uint64())))
        rows.extend(data._bucket_pairs(group, step.threshold, step.verify).to_pylist())
    members = [np.frombuffer(r["members"], dtype=np.int64) for r in rows]
    distinct = [np.frombuffer(r["distinct_keys"], dtype=np.int64) for r in rows]
    dropped = data.replay_near_dedup([np.frombuffer(r["pairs"], dtype=np.int64).reshape(-1, 2) for r in rows])
    empty = int(pc.sum(sketched.column("no_tokens")).as_py() or 0)
    stats = {
        "buckets": data._bucket_count(entries.num_rows, members, distinct, dropped),
        "kept_indexed": len(texts) - empty - len(dropped),
        "no_tokens": empty,
        "matches": {keys.index(k): keys.index(m) for k, m in dropped.items()},
    }
    return {keys.index(k) for k in dropped}, stats


@pytest.mark.parametrize("seed", range(30))
def test_the_near_dedup_replay_decides_as_the_sequential_step(seed: int) -> None:
    rng = random.Random(seed)
    threshold, verify = rng.choice([0.5, 0.7, 0.85]), rng.random() < 0.6
    texts = _random_corpus(rng, rng.randint(1, 60))
    step = NearDedup(threshold=threshold, num_perm=64, ngram=2, verify=verify)
    kept = [d.id for d in step([Doc(str(i), t) for i, t in enumerate(texts)])]
    local = step.report()
    dropped, stats = _distributed_near_dedup(step, texts)
    assert sorted(set(range(len(texts))) - dropped) == sorted(int(i) for i in kept)
    assert stats["buckets"] == local["buckets"]
    assert stats["kept_indexed"] == local["kept_indexed"]
    assert stats["no_tokens"] == local["no_tokens"]
    expected = {int(r): int(c["kept"]) for c in local["clusters"] for r in c["removed"]}
    assert stats["matches"] == expected


def test_the_replay_keeps_a_document_whose_only_match_was_dropped() -> None:
    # 1 matches 0 and is dropped; 2 matches only 1, which is gone, so 2 is kept; 3 matches 1 and 2.
    pairs = np.array([[0, 1], [1, 2], [1, 3], [2, 3], [1, 3]])
    assert data.replay_near_dedup(pairs) == {1: 0, 3: 2}
    assert data.replay_near_dedup([]) == {}


def test_exact_dedup_by_groups_reports_as_the_sequential_step() -> None:
    # About 150 clusters (more than a report lists), pairs and triples, interleaved with unique texts.
    rng = random.Random(3)
    texts = [f"text {rng.randrange(160)}" if i % 3 else f"unique {i}" for i in range(600)]
    step = ExactDedup()
    kept = [d.id for d in step([Doc(f"d{i}", t) for i, t in enumerate(texts)])]
    local = step.report()
    assert local["clusters_total"] > 100 and len(local["clusters"]) == 100
    keys = [(i // 50) << data.KEY_SHIFT | (i % 50) for i in range(len(texts))]
    table = pa.table({"key": pa.array(keys, type=pa.int64()), "id": [f"d{i}" for i in range(len(texts))],
                      "text": texts, "fields": [""] * len(texts), "meta": [""] * len(texts)})  # fmt: skip
    hashed = pa.concat_tables([data._hash_batch(table.slice(s, 64), step) for s in range(0, len(texts), 64)])
    groups = [data._keep_first(hashed.filter(pc.equal(hashed.column("hash"), h)))
              for h in sorted(set(hashed.column("hash").to_pylist()))]  # fmt: skip
    kept_rows = pa.concat_tables(groups)
    firsts = [row for g in range(0, len(groups), 40)
              for row in data._first_clusters(pa.concat_tables(groups[g : g + 40]), 100).to_pylist()]  # fmt: skip
    data.finish_exact_dedup(
        step, docs_in=len(texts), docs_out=kept_rows.num_rows, chars=sum(map(len, texts)),
        clusters=int(pc.sum(kept_rows.column("has_cluster")).as_py()), firsts=firsts,
    )  # fmt: skip
    assert sorted(kept_rows.column("id").to_pylist(), key=lambda i: int(i[1:])) == kept
    assert {k: v for k, v in step.report().items() if k != "seconds"} == {k: v for k, v in local.items() if k != "seconds"}


# ------------------------------------------------------------------------- builds on Ray
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def embedded_ray() -> Iterator[None]:
    """One embedded Ray (two CPUs, a small object store) for the module; the builds join it."""
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 10**6, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        # An object reference that a test left in a reference cycle, collected after the
        # shutdown, makes Ray's core worker end this process silently with status 1 (it did,
        # in CI, during the next module's first test): collect them while Ray is up.
        gc.collect()
        ray.shutdown()


def _rows(count: int = 80) -> list[dict[str, Any]]:
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        text = " ".join(rng.choice(WORDS) for _ in range(40))
        if i % 9 == 4:
            text = rows[i - 2]["text"]  # exact copy
        elif i % 7 == 5:
            words = rows[i - 3]["text"].split()
            words[5] = "omega"
            text = " ".join(words)  # near copy
        if i % 6 == 1:
            text += f" write to jane.doe{i}@acme.io or 81.2.{i}.160"
        rows.append({"id": f"doc{i:03d}", "text": text, "title": f"Title {i}", "owner": f"owner{i % 4}",
                     "licence": ["mit", "apache-2.0", "gpl-3.0", None][i % 4], "stars": i * 1.5})  # fmt: skip
    return rows


def _write_jsonl(folder: Path, rows: list[dict[str, Any]], parts: int = 2) -> Path:
    folder.mkdir(parents=True)
    size = -(-len(rows) // parts)
    for p in range(parts):
        chunk = rows[p * size : (p + 1) * size]
        (folder / f"part{p}.jsonl").write_text("".join(json.dumps(r) + "\n" + ("\n" if i % 5 == 0 else "") for i, r in enumerate(chunk)))
    return folder


def _bundle_view(path: Path) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]], dict[str, Any]]:
    bundle = open_bundle(path)
    docs = [(d.id, d.text, dict(d.fields), dict(d.meta)) for d in bundle.iter_docs()]
    manifest = json.loads((path / "spacerini.json").read_text())
    reports = [{k: v for k, v in r.items() if k != "seconds"} for r in manifest["preprocess"]]
    return docs, reports, {"counts": manifest["counts"], "source": manifest["source"]}


def _same_bundles(local: Path, distributed: Path, queries: tuple[str, ...] = ("alpha gamma", "omega", "EMAIL")) -> None:
    assert _bundle_view(distributed) == _bundle_view(local)
    a, b = open_bundle(local), open_bundle(distributed)
    for query in queries:
        assert [(h.docid, h.score) for h in b.search(query, k=20)] == [(h.docid, h.score) for h in a.search(query, k=20)]


@pytest.mark.slow
def test_a_jsonl_folder_read_in_many_chunks_gives_the_local_bundle(
    embedded_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _write_jsonl(tmp_path / "src", _rows())
    monkeypatch.setattr(data, "CHUNK_BYTES", 3000)  # several chunks per file, cut at line ends
    steps = ["pii", "dedup", "near-dedup", "licence"]
    options = {"near-dedup": {"threshold": 0.7}, "licence": {"missing": "keep"}}
    build_bundle(str(source), tmp_path / "local", backends=["bm25"], preprocess=steps, preprocess_options=options, progress=False)
    build_bundle(str(source), tmp_path / "ray", backends=["bm25"], preprocess=steps, preprocess_options=options,
                 progress=False, engine="ray", shards=2)  # fmt: skip
    from spacerini.corpus import load_corpus

    assert data.plan_chunks([Doc("a", "b")]) is None  # Python objects are read on the driver
    chunks = data.plan_chunks(load_corpus(str(source), progress=False)) or []
    assert len(chunks) > 4 and {c.kind for c in chunks} == {"lines"}
    assert [c.path for c in chunks] == sorted(c.path for c in chunks) and chunks[1].start == chunks[0].end
    _same_bundles(tmp_path / "local", tmp_path / "ray")
    pii, dedup, near, licence = _bundle_view(tmp_path / "ray")[1]  # the corpus exercises every step
    assert pii["changed"] > 0 and dedup["removed"] > 0 and near["removed"] > 0 and licence["removed"] > 0


@pytest.mark.slow
def test_the_cli_indexes_a_parquet_file_on_ray_as_locally(embedded_ray: None, tmp_path: Path) -> None:
    from spacerini.cli import cli

    source = tmp_path / "corpus.parquet"
    pq.write_table(pa.Table.from_pylist(_rows(60)), source, row_group_size=7)  # 9 row groups, one chunk each
    # pii after dedup: the hashes see the raw text; near-dedup on LSH bands alone.
    options = ["--preprocess", "optout,dedup,pii,near-dedup", "--preprocess-opt", "optout.owners=owner3",
               "--preprocess-opt", "near-dedup.verify=false"]  # fmt: skip
    runner = CliRunner()
    for engine in ("local", "ray"):
        result = runner.invoke(cli, ["index", str(source), "--out", str(tmp_path / engine), "--backends", "bm25",
                                     "--engine", engine, "--shards", "2", *options])  # fmt: skip
        assert result.exit_code == 0, result.output
    _same_bundles(tmp_path / "local", tmp_path / "ray")
    assert [r["removed"] > 0 for r in _bundle_view(tmp_path / "ray")[1]] == [True, True, False, True]


def _error(source: Path, **options: Any) -> str:
    with pytest.raises(CorpusError) as caught:
        build_bundle(str(source), source.parent / f"out-{options.get('engine', 'local')}", backends=["exact"],
                     progress=False, **options)  # fmt: skip
    return str(caught.value)


@pytest.mark.slow
def test_bad_records_fail_with_the_local_line(embedded_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "CHUNK_BYTES", 500)
    lines = [json.dumps(r) for r in _rows(30)]
    cases = {
        "malformed": lines[:20] + ['{"id": "x", "text": "cut'] + lines[20:],
        "duplicate": lines[:25] + [json.dumps({"id": "doc003", "text": "again"})] + lines[25:],
        "missing": lines[:18] + [json.dumps({"id": "y"})] + lines[18:],
    }
    for name, content in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "a.jsonl").write_text("\n".join(content) + "\n")
        local = _error(folder / "a.jsonl")
        assert _error(folder / "a.jsonl", engine="ray") == local, name
        assert "\n" not in local and ":" in local
    broken = tmp_path / "latin1.jsonl"
    broken.write_bytes("\n".join(lines[:22]).encode() + b'\n{"id": "z", "text": "caf\xe9"}\n')
    assert _error(broken, engine="ray") == _error(broken)


@pytest.mark.slow
def test_a_saved_hf_dataset_is_read_by_row_ranges_as_locally(
    embedded_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    from spacerini.corpus import load_corpus

    datasets.Dataset.from_list(_rows(30)).save_to_disk(str(tmp_path / "saved"))
    monkeypatch.setattr(data, "CHUNK_ROWS", 7)
    source = f"hf:{tmp_path / 'saved'}"
    corpus = load_corpus(source, progress=False)
    ingest = data.RayIngest(corpus, [])
    docs = [(d.id, d.text, dict(d.fields), dict(d.meta)) for d in ingest.docs()]
    assert ingest.chunks is not None and [c.kind for c in ingest.chunks] == ["saved"] * 5
    assert docs == [(d.id, d.text, dict(d.fields), dict(d.meta)) for d in corpus]
    assert len(docs) == 30 and docs[29][0] == "doc029" and docs[29][2]["stars"] == 43.5


@pytest.mark.slow
def test_per_document_steps_stream_in_one_pipeline_as_locally(
    embedded_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a global step the read and the steps are one streaming Ray Data stage; the bundle,
    the step reports and the errors are the local ones, and a document a step removed still counts
    as read (the local loader meets a repeated id before any step sees it)."""
    monkeypatch.setattr(data, "CHUNK_BYTES", 2000)
    rows = _rows()
    source = _write_jsonl(tmp_path / "src", rows)
    steps, options = ["pii", "licence"], {"licence": {"missing": "keep"}}
    build_bundle(str(source), tmp_path / "local", backends=["bm25"], preprocess=steps, preprocess_options=options, progress=False)
    with caplog.at_level("INFO", logger="spacerini.distributed.data"):
        build_bundle(str(source), tmp_path / "ray", backends=["bm25"], preprocess=steps, preprocess_options=options,
                     progress=False, engine="ray", shards=2)  # fmt: skip
    assert any("streaming" in r.getMessage() and "pii, licence" in r.getMessage() for r in caplog.records)
    _same_bundles(tmp_path / "local", tmp_path / "ray")
    pii, licence = _bundle_view(tmp_path / "ray")[1]
    assert pii["changed"] > 0 and licence["removed"] > 0
    # doc002 is GPL (the licence step removes it); a later record repeats its id with an MIT licence.
    assert rows[2]["licence"] == "gpl-3.0"
    lines = [json.dumps(r) for r in rows[:40]] + [json.dumps({**rows[2], "licence": "mit"})] + [json.dumps(r) for r in rows[40:]]
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup" / "a.jsonl").write_text("\n".join(lines) + "\n")
    local = _error(tmp_path / "dup" / "a.jsonl", preprocess=steps, preprocess_options=options)
    assert "duplicate id 'doc002'" in local and "a.jsonl:3" in local
    assert _error(tmp_path / "dup" / "a.jsonl", engine="ray", preprocess=steps, preprocess_options=options) == local
