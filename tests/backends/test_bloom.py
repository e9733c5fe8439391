"""The bloom membership sketch: excerpts are found, random text is not, the false-positive rate
is what was asked for, and a saved sketch answers the same in another process."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spacerini.backends import bloom
from spacerini.errors import BundleCorruptError, QueryError
from spacerini.records import Doc

DATA = Path(__file__).resolve().parents[1] / "data" / "exact_corpus.jsonl"
WORDS = (
    "the of and to in is that for it as with was on be by this are or from at which an not have "
    "def return import class self None True False print range len yield lambda async await "
    "λόγος κόσμος 東京 京都 数据 🐍 🚀 café naïve"
).split()


def make_docs() -> list[Doc]:
    rng = random.Random(3)
    docs = []
    with DATA.open(encoding="utf-8") as f:
        for r in map(json.loads, f):
            docs.append(Doc(id=r["id"], text=r["text"]))
    for i in range(1500):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120)))
        docs.append(Doc(id=f"syn-{i}", text=text))
    return docs


DOCS = make_docs()


@pytest.fixture(scope="module")
def sketch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bloom")
    report = bloom.build(lambda: iter(DOCS), folder, progress=False)
    with bloom.open(folder, report.to_dict()) as searcher:
        yield searcher, report, folder


@pytest.fixture(scope="module")
def small_grams(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bloom20")
    report = bloom.build(lambda: iter(DOCS), folder, progress=False, width=20, stride=7, fp_rate=0.01)
    with bloom.open(folder, report.to_dict()) as searcher:
        yield searcher, report


def test_ngram_hashes_depend_only_on_the_window():
    text = "abcabcabc λλλλ 🐍🐍 abcabc"
    h = bloom.ngram_hashes(text, 3)
    assert len(h) == len(text) - 2
    for i in range(len(h)):
        for j in range(len(h)):
            assert (h[i] == h[j]) == (text[i : i + 3] == text[j : j + 3])
    assert np.array_equal(bloom.ngram_hashes(text, 3, 4), h[::4])
    assert len(bloom.ngram_hashes("ab", 3)) == 0
    # Pinned values: the hash is part of the bundle format and must never change silently.
    assert bloom.ngram_hashes("hello world", 11).tolist() == [PINNED_HELLO]


PINNED_HELLO = 10775791996346678808


def test_report_params_and_item_count(sketch):
    _, report, _ = sketch
    p = report.params
    assert (p["width"], p["stride"], p["fp_rate"]) == (50, 50, 0.001)
    expected = sum((len(d.text) - 50) // 50 + 1 for d in DOCS if len(d.text) >= 50)
    assert p["items"] == expected > 1000
    assert p["bits"] >= bloom.estimate_bits(expected, 0.001)
    assert report.docs == len(DOCS)
    assert report.to_dict()["params"] == p


def test_long_excerpts_are_covered(sketch):
    searcher, _, _ = sketch
    rng = random.Random(11)
    long_docs = [d.text for d in DOCS if len(d.text) >= 400]
    assert len(long_docs) > 50
    for _ in range(100):
        t = rng.choice(long_docs)
        i = rng.randrange(len(t) - 300)
        excerpt = t[i : i + 300]
        res = searcher.member(excerpt)
        assert res.coverage >= (300 - 2 * 49) / 300
        assert res.ngrams_checked == 300 - 49
        assert res.ngrams_found >= 4
        assert res.spans and all(0 <= s < e <= 300 for s, e in res.spans)
        # An excerpt on the document's stride grid is covered exactly.
        assert searcher.member(t[:300]).coverage == 1.0


def test_every_copy_of_width_plus_stride_minus_one_is_found(small_grams):
    searcher, _ = small_grams
    rng = random.Random(5)
    span = 20 + 7 - 1
    docs = [d.text for d in DOCS if len(d.text) > span]
    for _ in range(500):
        t = rng.choice(docs)
        i = rng.randrange(len(t) - span + 1)
        assert searcher.member(t[i : i + span]).ngrams_found >= 1


def test_random_text_is_not_covered(sketch):
    searcher, _, _ = sketch
    rng = random.Random(2)
    text = "".join(rng.choice("qwxzjkvQWXZJKV0123456789ʃʒ") for _ in range(5000))
    res = searcher.member(text)
    assert res.coverage <= 0.1
    assert res.ngrams_found <= 20


def test_measured_false_positive_rate_is_near_the_configured_one(sketch, small_grams):
    rng = np.random.default_rng(9)
    for searcher, rate in ((sketch[0], 0.001), (small_grams[0], 0.01)):
        # 200k windows of one random text: none of them is in the corpus.
        codes = rng.integers(0x4E00, 0x9FFF, size=200_000 + searcher.width - 1)
        text = "".join(map(chr, codes.tolist()))
        res = searcher.member(text)
        assert res.ngrams_checked == 200_000
        measured = res.ngrams_found / res.ngrams_checked
        assert measured <= 2 * rate + 0.0005, measured
        assert measured >= rate / 4, measured  # the filter is not oversized either


def test_short_text_checks_nothing(sketch):
    res = sketch[0].member("too short")
    assert res == bloom.MembershipResult(0.0, (), 0, 0)


@pytest.mark.parametrize("bad", ["", b"bytes", None])
def test_bad_queries(sketch, bad):
    with pytest.raises(QueryError):
        sketch[0].member(bad)


CHILD = """
import json, sys
from spacerini.backends import bloom
s = bloom.open(sys.argv[1], {})
queries = json.loads(sys.stdin.read())
print(json.dumps([[r.coverage, [list(x) for x in r.spans], r.ngrams_checked, r.ngrams_found]
                  for r in map(s.member, queries)]))
"""


def test_saved_sketch_answers_the_same_in_another_process(sketch):
    searcher, _, folder = sketch
    rng = random.Random(4)
    long_docs = [d.text for d in DOCS if len(d.text) >= 200]
    queries = [rng.choice(long_docs)[:200] for _ in range(20)]
    queries += ["".join(rng.choice("abcdefgh ") for _ in range(120)) for _ in range(5)]
    queries.append(queries[0][:60] + " noise noise noise " + queries[1][:70])
    here = [[r.coverage, [list(x) for x in r.spans], r.ngrams_checked, r.ngrams_found] for r in map(searcher.member, queries)]
    assert sum(r[3] for r in here) > 0
    for seed in ("1", "12345"):  # different str-hash salts: the sketch must not depend on them
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder)],
            input=json.dumps(queries),
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        assert json.loads(out.stdout) == here


def test_open_rejects_another_hash(tmp_path, sketch):
    _, _, folder = sketch
    meta = json.loads((folder / "meta.json").read_text())
    meta["hash"] = "python-hash"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BundleCorruptError, match="rebuild"):
        bloom.open(tmp_path, {})
    with pytest.raises(BundleCorruptError):
        bloom.open(tmp_path / "missing", {})


SECRET_DOC = (
    "import boto3\n\n"
    "def client():\n"
    "    # the production account, do not share this with anyone outside the team please\n"
    "    return boto3.client('s3', aws_access_key_id='AKIAIOSFODNN7EXAMPLE', region_name='eu-west-1')\n\n"
    "def owner():\n"
    "    return 'alice.jones@gmail.com'  # who to ask about the bucket and its retention policy\n"
)


@pytest.mark.parametrize("stride", [50, 7, 1])
def test_ngrams_touching_pii_are_not_stored(tmp_path, stride):
    """The published sketch holds no n-gram of a secret: a pasted part of a key (which is no PII
    alone) or the text around an address is not confirmed where its windows reach into the PII,
    while the code around it still is."""
    from spacerini.preprocess.pii import find_pii

    docs = [Doc("secret.py", SECRET_DOC), *DOCS[:50]]
    report = bloom.build(lambda: iter(docs), tmp_path, progress=False, stride=stride)
    pii = find_pii(SECRET_DOC)
    assert {s.kind for s in pii} == {"KEY", "EMAIL"}
    starts = range(0, len(SECRET_DOC) - 49, stride)
    touching = [s for s in starts if any(p.start - 50 < s < p.end for p in pii)]
    assert report.stats["pii_skipped"] == len(touching) > 0
    assert report.params["skip_pii"] is True
    with bloom.open(tmp_path, report.to_dict()) as searcher:
        # Each stored window: found exactly when it touches no PII.
        for s in starts:
            found = searcher.contains_hashes(bloom.ngram_hashes(SECRET_DOC[s : s + 50], 50))[0]
            assert found == (s not in touching), s
        key = SECRET_DOC.index("AKIA")
        partial = SECRET_DOC[key - 80 : key + 16]  # the key but its last four characters
        assert not find_pii(partial)  # nothing for the app's own redaction of the pasted text to cut
        res = searcher.member(partial)
        for a, b in res.spans:  # no covered character is part of the key
            assert b <= key - (key - 80) or a >= key + 20 - (key - 80)
        assert searcher.member(SECRET_DOC[:60]).ngrams_found >= 1  # code clear of PII is found
    # With skip_pii=False every n-gram is stored (the sketch of a corpus already redacted).
    kept = bloom.build(lambda: iter(docs), tmp_path / "all", progress=False, stride=stride, skip_pii=False)
    assert kept.stats["pii_skipped"] == 0
    assert kept.params["items"] == report.params["items"] + len(touching)
    with bloom.open(tmp_path / "all", kept.to_dict()) as searcher:
        assert searcher.member(partial).ngrams_found > 0


def test_a_bloom_only_bundle_does_not_confirm_part_of_a_secret(tmp_path):
    """End to end through the service: a bundle with only the sketch."""
    from spacerini.bundle import build_bundle, open_bundle
    from spacerini.service import Service

    docs = [Doc("secret.py", SECRET_DOC), *DOCS[:30]]
    build_bundle(docs, tmp_path / "b", backends=["bloom"], progress=False).close()
    key = SECRET_DOC.index("AKIA")
    partial = SECRET_DOC[key - 80 : key + 16]
    with open_bundle(tmp_path / "b") as b:
        service = Service(b, requests_path=tmp_path / "r.jsonl", flags_path=tmp_path / "f.jsonl")
        m = service.member(partial)
        assert all(s.end <= 80 for s in m.spans), m.spans
        whole = service.member(SECRET_DOC[:90])
        assert whole.spans
