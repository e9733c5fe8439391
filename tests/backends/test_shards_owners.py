"""Owner indexes of shards reduced by ``owners.merge_shards`` equal the unsharded owner index: the
same ``owners.json`` bytes, the same report and the same answers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from spacerini.backends import owners
from spacerini.errors import BackendParameterError, BundleCorruptError
from spacerini.records import Doc, owner_names

NAMES = [
    "Guido van Rossum",
    "Guido van Rosum",
    "José García",
    "Jose Garcia",
    "Raymond Hettinger",
    "Łukasz Langa",
    "Brett Cannon",
    "小林 太郎",
    "alice",
    "Alice",
]
REPOS = ["python/cpython", "python/mypy", "jg/utils", "rh/recipes", "ambv/black", "", "tk/app", "a/b"]


def make_docs(n: int = 300, seed: int = 17) -> list[Doc]:
    """Owners and their repos recur all through the corpus, so each owner spans several shards, and a
    repo that first appears late for an owner must stay after that owner's earlier repos."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        roll = rng.random()
        meta: dict = {}
        if roll < 0.1:
            pass  # no owner
        elif roll < 0.2:
            meta["owner"] = rng.sample(NAMES, 2)  # co-owners
        elif roll < 0.25:
            meta["owner"] = [NAMES[0], NAMES[0], "  "]  # a repeated co-owner counts once
        else:
            meta["owner"] = rng.choice(NAMES)
        repo = rng.choice(REPOS)
        if repo:
            meta["repo"] = repo
        docs.append(Doc(id=f"f{i:04d}", text="x", meta=meta))
    return docs


DOCS = make_docs()


def split(n: int, parts: int, seed: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, uneven, non-empty ranges ``(first, count)`` covering ``0 .. n - 1``."""
    cuts = sorted(random.Random(seed).sample(range(1, n), parts - 1))
    bounds = [0, *cuts, n]
    return [(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]


def build_shards(root: Path, parts: int, docs: list[Doc] = DOCS, **options) -> tuple[list[Path], list]:
    folders, reports = [], []
    for i, (first, count) in enumerate(split(len(docs), parts, seed=parts)):
        folder = root / f"shard_{i:05d}"
        part = docs[first : first + count]
        reports.append(owners.build(lambda d=part: iter(d), folder, progress=False, **options))
        folders.append(folder)
    return folders, reports


@pytest.mark.parametrize("parts", [3, 7])
def test_merged_index_equals_unsharded(tmp_path, parts):
    whole = owners.build(lambda: iter(DOCS), tmp_path / "whole", progress=False)
    folders, reports = build_shards(tmp_path, parts)
    merged = owners.merge_shards(folders, tmp_path / "merged", [reports[0].to_dict(), *reports[1:]])
    assert (tmp_path / "merged" / "owners.json").read_bytes() == (tmp_path / "whole" / "owners.json").read_bytes()
    assert (merged.docs, merged.params, merged.stats) == (whole.docs, whole.params, whole.stats)
    assert merged.stats["unowned_docs"] > 0

    # The shards really split owners: some owner's docs lie in several shards.
    per_shard = [json.loads((f / "owners.json").read_text())["owners"] for f in folders]
    assert max(sum(name in shard for shard in per_shard) for name in NAMES) == parts

    a = owners.open(tmp_path / "whole", whole.to_dict())
    b = owners.open(tmp_path / "merged", merged.to_dict())
    assert b.owners == a.owners
    for query in [*NAMES, "guido", "Rossum", "jose garcia", "Lukasz Langa", "Hettinger", "nobody at all"]:
        for limit in (1, 7, 100):
            assert b.owner(query, limit=limit) == a.owner(query, limit=limit), query
    # Against the corpus itself: per repo (most docs first), the owner's docs in corpus order.
    guido = b.owner("Guido van Rossum", limit=1000, max_matches=1).matches[0]
    mine = [d for d in DOCS if "Guido van Rossum" in owner_names(d.meta.get("owner"))]
    repo_docs: dict[str, list[str]] = {}
    for d in mine:
        repo_docs.setdefault(d.meta.get("repo") or owners.NO_REPO, []).append(d.id)
    repos = sorted(((r, len(ids)) for r, ids in repo_docs.items()), key=lambda rc: (-rc[1], rc[0]))
    assert guido.repos == tuple(repos)
    assert guido.files == tuple(i for r, _ in repos for i in repo_docs[r])


def test_opt_out_instructions_must_agree(tmp_path):
    folders, reports = build_shards(tmp_path, 3)
    other = tmp_path / "other"
    other_report = owners.build(lambda: iter(DOCS[:5]), other, progress=False, optout_instructions="Write to me.")
    with pytest.raises(BackendParameterError, match="opt-out instructions"):
        owners.merge_shards([*folders, other], tmp_path / "out", [*reports, other_report])
    # The same custom instructions everywhere are kept.
    folders, reports = build_shards(tmp_path / "custom", 3, optout_instructions="Write to me.")
    merged = owners.merge_shards(folders, tmp_path / "custom-out", reports)
    assert merged.params == {"optout_instructions": "Write to me."}
    assert owners.open(tmp_path / "custom-out", merged.to_dict()).optout_instructions == "Write to me."


def test_bad_shard_lists_raise(tmp_path):
    folders, reports = build_shards(tmp_path, 3)
    with pytest.raises(BundleCorruptError, match="shard reports"):
        owners.merge_shards(folders, tmp_path / "o1", reports[:2])
    with pytest.raises(BundleCorruptError, match="nothing to merge"):
        owners.merge_shards([tmp_path / "e"], tmp_path / "o2", [{"stats": {"docs": 0}, "empty": True}])
    with pytest.raises(BundleCorruptError, match="doc counts"):
        owners.merge_shards(folders, tmp_path / "o3", [{"params": {}}, *reports[1:]])
    with pytest.raises(BundleCorruptError):
        owners.merge_shards([tmp_path / "missing", *folders[1:]], tmp_path / "o4", reports)
    (folders[1] / "owners.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(BundleCorruptError, match="format 99"):
        owners.merge_shards(folders, tmp_path / "o5", reports)


def test_empty_shard_entries_are_skipped(tmp_path):
    whole = owners.build(lambda: iter(DOCS), tmp_path / "whole", progress=False)
    folders, reports = build_shards(tmp_path, 3)
    merged = owners.merge_shards(
        [folders[0], tmp_path / "none", *folders[1:]],
        tmp_path / "merged",
        [reports[0], {"stats": {"docs": 0}, "empty": True}, *reports[1:]],
    )
    assert (merged.docs, merged.stats) == (whole.docs, whole.stats)
    assert (tmp_path / "merged" / "owners.json").read_bytes() == (tmp_path / "whole" / "owners.json").read_bytes()


def test_the_external_merge_equals_the_unsharded_index_on_awkward_names_and_leaves_no_runs(tmp_path):
    """Many shards, owners only in some of them, names and ids that JSON escapes or that sort
    around each other (a prefix, case, astral characters): the same bytes as the unsharded build,
    and the merge's scratch runs are gone afterwards, also when it fails."""
    rng = random.Random(3)
    names = ["a", "ab", "a b", "A", "Zoë", "zoe", 'quote"d', "back\\slash", "tab\tname", "🐍 snake", "東京", "x" * 300]
    repos = ["r/1", "r/2", 'we"ird/\\repo', "日本/リポ", "🐍/py", "z"]
    docs = []
    for i in range(900):
        meta: dict = {}
        if rng.random() < 0.9:
            # Owners come and go in stretches, so several are absent from whole shards.
            pool = names[(i // 150) % 4 :: 2] if rng.random() < 0.7 else names
            meta["owner"] = rng.sample(pool, rng.randint(1, 2))
            if rng.random() < 0.8:
                meta["repo"] = rng.choice(repos[: 2 + i // 200])
        docs.append(Doc(id=f"d{i}\n\"{'é' * (i % 3)}🐍", text="x", meta=meta))
    whole = owners.build(lambda: iter(docs), tmp_path / "whole", progress=False)
    folders, reports = build_shards(tmp_path / "shards", 11, docs)
    per_shard = [json.loads((f / "owners.json").read_text())["owners"] for f in folders]
    assert min(sum(name in shard for shard in per_shard) for name in names) < 11  # some owner skips shards
    merged = owners.merge_shards(folders, tmp_path / "out" / "merged", reports)
    assert (tmp_path / "out" / "merged" / "owners.json").read_bytes() == (tmp_path / "whole" / "owners.json").read_bytes()
    assert (merged.docs, merged.params, merged.stats) == (whole.docs, whole.params, whole.stats)
    assert merged.stats["repos"] == len(repos) + 1  # and NO_REPO
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["merged"]
    (folders[5] / "owners.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleCorruptError):
        owners.merge_shards(folders, tmp_path / "out" / "again", reports)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["again", "merged"]
