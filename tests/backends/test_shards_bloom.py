"""Bloom shards built with the whole corpus's capacity OR (``bloom.merge_shards``) into the very
sketch of an unsharded build: the same file bytes, report and membership answers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from spacerini.backends import bloom
from spacerini.errors import BackendParameterError, BundleCorruptError
from spacerini.records import Doc

DATA = Path(__file__).resolve().parents[1] / "data" / "exact_corpus.jsonl"
WORDS = "the of and to in def return import class self None λόγος 東京 数据 🐍 café naïve".split()


def make_docs() -> list[Doc]:
    rng = random.Random(5)
    with DATA.open(encoding="utf-8") as f:
        docs = [Doc(id=r["id"], text=r["text"]) for r in map(json.loads, f)]
    for i in range(400):
        docs.append(Doc(id=f"syn-{i}", text=" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 90)))))
    # Documents with secrets: their n-grams that touch one are left out of every shard alike.
    for i in range(0, 400, 37):
        words = " ".join(rng.choice(WORDS) for _ in range(40))
        key = "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        text = f"{words}\naws_key = '{key}'\n{words} mail bob.smith{i}@posteo.de {words}"
        docs.insert(i, Doc(id=f"pii-{i}", text=text))
    return docs


DOCS = make_docs()


def split(n: int, parts: int, seed: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, uneven, non-empty ranges ``(first, count)`` covering ``0 .. n - 1``."""
    cuts = sorted(random.Random(seed).sample(range(1, n), parts - 1))
    bounds = [0, *cuts, n]
    return [(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]


def build_shards(root: Path, parts: int, **options) -> tuple[list[Path], list]:
    folders, reports = [], []
    for i, (first, count) in enumerate(split(len(DOCS), parts, seed=parts)):
        folder = root / f"shard_{i:05d}"
        docs = DOCS[first : first + count]
        reports.append(bloom.build(lambda d=docs: iter(d), folder, progress=False, **options))
        folders.append(folder)
    return folders, reports


def queries() -> list[str]:
    """Excerpts long enough to be found whatever the width, shuffled words (mostly not found) and
    texts shorter than a window."""
    rng = random.Random(8)
    out = []
    for doc in rng.sample([d for d in DOCS if len(d.text) >= 150], 40):
        i = rng.randrange(len(doc.text) - 99)
        out.append(doc.text[i : i + rng.randint(99, 300)])
    out += ["x", "short text", "東京 数据 🐍"]
    for _ in range(40):
        out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))))
    return out


# (shards, build options)
CASES = [(3, {}), (7, {}), (7, {"width": 20, "stride": 7, "fp_rate": 0.01})]


@pytest.mark.parametrize(("parts", "options"), CASES, ids=["3shards", "7shards", "7shards-w20"])
def test_merged_sketch_is_byte_identical_to_unsharded(tmp_path, parts, options):
    whole = bloom.build(lambda: iter(DOCS), tmp_path / "whole", progress=False, **options)
    capacity = bloom.count_ngrams(DOCS, width=options.get("width", 50), stride=options.get("stride"))
    assert capacity == whole.params["items"] + whole.stats["pii_skipped"] > 100
    assert whole.stats["pii_skipped"] > 20
    folders, reports = build_shards(tmp_path, parts, capacity=capacity, **options)
    assert sum(r.params["items"] + r.stats["pii_skipped"] for r in reports) == capacity
    assert all(r.params["bits"] == whole.params["bits"] for r in reports)
    # Reports as the manifest keeps them (plain dicts) and as build returns them.
    merged = bloom.merge_shards(folders, tmp_path / "merged", [reports[0].to_dict(), *reports[1:]])

    for name in ("filter.bloom", "meta.json"):
        assert (tmp_path / "merged" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # No shard alone is the whole sketch (else the byte comparison proves nothing).
    assert all((f / "filter.bloom").read_bytes() != (tmp_path / "whole" / "filter.bloom").read_bytes() for f in folders)
    assert merged.docs == whole.docs == len(DOCS)
    assert merged.params == whole.params
    assert merged.stats == whole.stats

    with bloom.open(tmp_path / "whole", whole.to_dict()) as a, bloom.open(tmp_path / "merged", merged.to_dict()) as b:
        found = 0
        for text in queries():
            assert b.member(text) == a.member(text)
            found += b.member(text).ngrams_found > 0
        assert found >= 40


def test_every_stored_ngram_of_every_shard_is_in_the_merged_sketch(tmp_path):
    capacity = bloom.count_ngrams(DOCS)
    folders, reports = build_shards(tmp_path, 3, capacity=capacity, skip_pii=False)
    merged = bloom.merge_shards(folders, tmp_path / "merged", reports)
    assert merged.params["skip_pii"] is False and merged.stats["pii_skipped"] == 0
    with bloom.open(tmp_path / "merged", merged.to_dict()) as searcher:
        for doc in DOCS:
            hashes = bloom.ngram_hashes(doc.text, 50, 50)
            assert searcher.contains_hashes(hashes).all(), doc.id


def test_shards_of_different_sizes_or_parameters_do_not_merge(tmp_path):
    capacity = bloom.count_ngrams(DOCS)
    folders, reports = build_shards(tmp_path / "good", 3, capacity=capacity)
    # A shard sized for its own n-grams (capacity not given) has a smaller filter.
    own = tmp_path / "own"
    own_report = bloom.build(lambda: iter(DOCS[:50]), own, progress=False)
    with pytest.raises(BackendParameterError, match="capacity"):
        bloom.merge_shards([*folders, own], tmp_path / "out1", [*reports, own_report])
    wide = tmp_path / "wide"
    wide_report = bloom.build(lambda: iter(DOCS[:50]), wide, progress=False, width=40, capacity=capacity)
    with pytest.raises(BackendParameterError, match="width"):
        bloom.merge_shards([*folders, wide], tmp_path / "out2", [*reports, wide_report])
    with pytest.raises(BundleCorruptError, match="shard reports"):
        bloom.merge_shards(folders, tmp_path / "out3", reports[:2])
    with pytest.raises(BundleCorruptError, match="nothing to merge"):
        bloom.merge_shards([tmp_path / "e"], tmp_path / "out4", [{"stats": {"docs": 0}, "empty": True}])
    # meta.json files that disagree with their filter files.
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({**meta, "bits": meta["bits"] + 8}))
    with pytest.raises(BundleCorruptError, match="bits"):
        bloom.merge_shards(folders, tmp_path / "out5", reports)


def test_empty_shard_entries_are_skipped(tmp_path):
    capacity = bloom.count_ngrams(DOCS)
    whole = bloom.build(lambda: iter(DOCS), tmp_path / "whole", progress=False)
    folders, reports = build_shards(tmp_path, 3, capacity=capacity)
    merged = bloom.merge_shards(
        [folders[0], tmp_path / "none", *folders[1:]],
        tmp_path / "merged",
        [reports[0], {"stats": {"docs": 0}, "empty": True}, *reports[1:]],
    )
    assert merged.params == whole.params
    assert (tmp_path / "merged" / "filter.bloom").read_bytes() == (tmp_path / "whole" / "filter.bloom").read_bytes()


def test_capacity_option(tmp_path):
    items = bloom.count_ngrams(DOCS)
    default = bloom.build(lambda: iter(DOCS), tmp_path / "default", progress=False)
    assert "capacity" not in default.params
    same = bloom.build(lambda: iter(DOCS), tmp_path / "same", progress=False, capacity=items)
    assert same.params["capacity"] == items
    assert (tmp_path / "same" / "filter.bloom").read_bytes() == (tmp_path / "default" / "filter.bloom").read_bytes()
    bigger = bloom.build(lambda: iter(DOCS), tmp_path / "bigger", progress=False, capacity=10 * items)
    # rbloom rounds the optimal size up to whole bytes.
    assert 0 <= bigger.params["bits"] - bloom.estimate_bits(10 * items, 0.001) < 8
    assert bigger.params["bits"] > 9 * default.params["bits"]
    assert bigger.params["items"] + bigger.stats["pii_skipped"] == items
    # A merge of shards sized for more than the corpus says so in its params.
    folders, reports = build_shards(tmp_path / "big", 3, capacity=10 * items)
    merged = bloom.merge_shards(folders, tmp_path / "merged", reports)
    assert merged.params == bigger.params
    assert (tmp_path / "merged" / "filter.bloom").read_bytes() == (tmp_path / "bigger" / "filter.bloom").read_bytes()
    with pytest.raises(BackendParameterError, match="below"):
        bloom.build(lambda: iter(DOCS), tmp_path / "small", progress=False, capacity=items - 1)
    with pytest.raises(ValueError, match="capacity"):
        bloom.build(lambda: iter(DOCS), tmp_path / "neg", progress=False, capacity=-1)


def test_the_merge_streams_in_chunks_and_passes_and_equals_rbloom_or(tmp_path, monkeypatch):
    """Chunks of an odd size and two shard files open at a time (four passes over seven shards) give
    the unsharded file, and rbloom's own ``|`` of the shards' filters gives the same bits."""
    from rbloom import Bloom

    capacity = bloom.count_ngrams(DOCS)
    bloom.build(lambda: iter(DOCS), tmp_path / "whole", progress=False)
    folders, reports = build_shards(tmp_path, 7, capacity=capacity)
    whole = (tmp_path / "whole" / "filter.bloom").read_bytes()
    assert len(whole) > 3 * 500
    monkeypatch.setattr(bloom, "MERGE_CHUNK", 500 - 7)
    monkeypatch.setattr(bloom, "MAX_OPEN_SHARDS", 2)
    merged = bloom.merge_shards(folders, tmp_path / "merged", reports)
    assert (tmp_path / "merged" / "filter.bloom").read_bytes() == whole
    reference = Bloom.load(str(folders[0] / "filter.bloom"), int)
    for folder in folders[1:]:
        reference |= Bloom.load(str(folder / "filter.bloom"), int)
    reference.save(str(tmp_path / "reference.bloom"))
    assert (tmp_path / "reference.bloom").read_bytes() == whole
    assert merged.stats["approx_items"] == round(reference.approx_items, 1)


def test_shard_files_with_other_hash_counts_or_cut_short_do_not_merge(tmp_path):
    capacity = bloom.count_ngrams(DOCS)
    folders, reports = build_shards(tmp_path, 3, capacity=capacity)
    path = folders[1] / "filter.bloom"
    data = bytearray(path.read_bytes())
    hashes = int.from_bytes(data[:8], "little")
    path.write_bytes((hashes + 1).to_bytes(8, "little") + data[8:])
    with pytest.raises(BackendParameterError, match=f"{hashes + 1} hash functions, the first shard {hashes}"):
        bloom.merge_shards(folders, tmp_path / "out1", reports)
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(BundleCorruptError, match="filter.bloom has .* bits, meta.json says"):
        bloom.merge_shards(folders, tmp_path / "out2", reports)
    path.unlink()
    with pytest.raises(BundleCorruptError, match="cannot read the bloom filter"):
        bloom.merge_shards(folders, tmp_path / "out3", reports)
