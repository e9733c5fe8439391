"""Exact and near-duplicate removal on planted data, and MinHash against exact Jaccard and datasketch."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from datasketch import MinHash

from spacerini.preprocess import apply, make_steps
from spacerini.preprocess.base import StepOptionError
from spacerini.preprocess.dedup import WORD, ExactDedup, MinHasher, NearDedup, estimate_jaccard, shingles
from spacerini.records import Doc

VOCAB = [f"tok{i}" for i in range(3000)]


def _random_text(rng: random.Random, n: int = 200) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def _mutate(text: str, rng: random.Random, changes: int) -> str:
    words = text.split()
    for position in rng.sample(range(len(words)), changes):
        words[position] = "changed" + str(position)
    return " ".join(words)


def _jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def planted() -> tuple[list[Doc], dict[str, str]]:
    """40 distinct docs; near-duplicates of d3 (3 words changed) and d7 (whitespace/punctuation
    changes); a copy of d11 with 10% of its words changed and a fresh doc, which must stay."""
    rng = random.Random(7)
    docs = [Doc(f"d{i}", _random_text(rng)) for i in range(40)]
    near = {
        "near3": _mutate(docs[3].text, rng, 3),
        "near7": docs[7].text.replace(" ", "  ,\n", 20),
        "near3b": _mutate(docs[3].text, rng, 2),
    }
    others = {"part11": _mutate(docs[11].text, rng, 20), "fresh": _random_text(rng)}
    stream = docs[:20] + [Doc(k, v) for k, v in near.items()] + docs[20:] + [Doc(k, v) for k, v in others.items()]
    return stream, {"near3": "d3", "near7": "d7", "near3b": "d3"}


def test_exact_dedup_keeps_first_and_reports_clusters() -> None:
    docs = [Doc("a", "x y"), Doc("b", "z"), Doc("c", "x y"), Doc("d", "x  y "), Doc("e", "x y")]
    step = ExactDedup()
    assert [d.id for d in step(iter(docs))] == ["a", "b", "d"]
    report = step.report()
    assert (report["docs_in"], report["docs_out"], report["removed"]) == (5, 3, 2)
    assert report["removed_by"] == {"exact_duplicate": 2}
    assert report["clusters"] == [{"kept": "a", "removed": ["c", "e"], "size": 3}]
    json.dumps(report)


def test_exact_dedup_whitespace_and_case_normalisation() -> None:
    docs = [Doc("a", "Hello  world\n"), Doc("b", "Hello world"), Doc("c", "hello WORLD")]
    assert [d.id for d in ExactDedup(normalize="whitespace")(docs)] == ["a", "c"]
    assert [d.id for d in ExactDedup(normalize="lower")(docs)] == ["a"]
    with pytest.raises(StepOptionError, match="normalize"):
        ExactDedup(normalize="stem")


def test_near_dedup_removes_exactly_the_planted(planted: tuple[list[Doc], dict[str, str]]) -> None:
    docs, expected = planted
    by_id = {d.id: d for d in docs}
    # The planted pairs are above the threshold and the partial copy is well below.
    for dup, original in expected.items():
        assert _jaccard(by_id[dup].text, by_id[original].text) > 0.75
    assert 0.3 < _jaccard(by_id["part11"].text, by_id["d11"].text) < 0.55
    step = NearDedup()
    kept = [d.id for d in step(iter(docs))]
    assert set(kept) == {d.id for d in docs} - set(expected)
    assert kept == [d.id for d in docs if d.id not in expected]  # order preserved
    report = step.report()
    assert report["removed"] == 3 and report["removed_by"] == {"near_duplicate": 3}
    clusters = {c["kept"]: sorted(c["removed"]) for c in report["clusters"]}
    assert clusters == {"d3": ["near3", "near3b"], "d7": ["near7"]}
    assert report["clusters_total"] == 2
    assert report["params"]["bands"] * report["params"]["rows"] <= 256
    json.dumps(report)


def test_near_dedup_threshold_and_verify(planted: tuple[list[Doc], dict[str, str]]) -> None:
    docs, expected = planted
    # Without verification, LSH band collisions alone decide; the planted ones still go.
    assert {d.id for d in docs} - {d.id for d in NearDedup(verify=False)(docs)} == set(expected)
    # A lower threshold also catches the partial copy of d11, and nothing else.
    low = NearDedup(threshold=0.25)
    removed = {d.id for d in docs} - {d.id for d in low(docs)}
    assert removed == set(expected) | {"part11"}
    with pytest.raises(StepOptionError, match="threshold"):
        NearDedup(threshold=1.5)
    with pytest.raises(StepOptionError, match="num_perm"):
        NearDedup(num_perm=0)


def test_steps_reset_between_passes(planted: tuple[list[Doc], dict[str, str]]) -> None:
    docs, expected = planted
    step = NearDedup()
    first = [d.id for d in step(docs)]
    second = [d.id for d in step(docs)]
    assert first == second and step.report()["docs_in"] == len(docs)


def test_tokens_and_shingles_match_the_reference() -> None:
    hasher = MinHasher(ngram=3)
    texts = ["", "!!", "one", "one two", "a b c d", "naïve café — 日本語 x_y, z9;", "def f(x):\n    return x+1\n" * 3]
    for text in texts:
        assert hasher.token_hashes(text).size == len(WORD.findall(text))
        assert len(set(hasher.shingle_hashes(text).tolist())) == len(shingles(text, 3))
    assert shingles("a b", 3) == {"a b"}
    assert shingles("a b c d", 3) == {"a b c", "b c d"}


def test_minhash_estimates_match_exact_jaccard_like_datasketch() -> None:
    rng = random.Random(3)
    hasher = MinHasher()
    ours, theirs = [], []
    for _ in range(25):
        base = _random_text(rng, 150)
        other = _mutate(base, rng, rng.randint(0, 60))
        exact = _jaccard(base, other)
        ours.append(estimate_jaccard(hasher.signature(base), hasher.signature(other)) - exact)
        m1, m2 = MinHash(num_perm=256), MinHash(num_perm=256)
        m1.update_batch([s.encode() for s in shingles(base)])
        m2.update_batch([s.encode() for s in shingles(other)])
        theirs.append(m1.jaccard(m2) - exact)
    assert np.mean(np.abs(ours)) < 0.03
    assert np.max(np.abs(ours)) < 0.1
    # No worse than datasketch on the same shingles (with slack for sampling noise).
    assert np.mean(np.abs(ours)) < np.mean(np.abs(theirs)) + 0.015


def test_signatures_are_deterministic_and_seeded() -> None:
    text = "the quick brown fox jumps over the lazy dog again and again"
    assert np.array_equal(MinHasher().signature(text), MinHasher().signature(text))
    assert not np.array_equal(MinHasher(seed=1).signature(text), MinHasher(seed=2).signature(text))
    long_text = " ".join(f"w{i}" for i in range(20_000))  # several blocks of shingles
    hasher = MinHasher(chunk=1024)
    assert np.array_equal(hasher.signature(long_text), MinHasher(chunk=8192).signature(long_text))


def test_docs_without_tokens_pass_through() -> None:
    docs = [Doc("a", ""), Doc("b", "!!! ???"), Doc("c", "")]
    step = NearDedup()
    assert [d.id for d in step(docs)] == ["a", "b", "c"]
    assert step.report()["no_tokens"] == 3


def test_dedup_then_near_dedup_through_make_steps(planted: tuple[list[Doc], dict[str, str]]) -> None:
    docs, expected = planted
    docs = docs + [Doc("copy5", docs[5].text)]
    steps = make_steps(["dedup", "near-dedup"], near_dedup={"threshold": 0.7})
    kept = {d.id for d in apply(docs, steps)}
    assert kept == {d.id for d in docs} - set(expected) - {"copy5"}
    assert [s.report()["removed"] for s in steps] == [1, 3]
