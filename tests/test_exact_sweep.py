"""Exact, bloom and owners answers through the service and the command line, against brute force
over the documents: hostile Unicode (combining marks, astral-plane characters, CJK, ``\\r\\n``),
whitespace-only texts, co-owned documents, and a 3-shard bundle that must answer as one shard."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from build_helpers import occurrences

from spacerini.bundle import build_bundle
from spacerini.errors import QueryError
from spacerini.records import Doc
from spacerini.service import Service
from tests.cli_helpers import run

TEXTS = [
    "aaaa aaaa aaaaaaa",
    "café cafe\u0301 CAFÉ naïve",
    "emoji 😀😀😀 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🎉 end😀",
    "中文字符测试中文字符中文",
    "line one\r\nline two\r\n\r\nthree\n",
    "",
    "   ",
    "b" * 700,
    "tab\tsep\u00a0nbsp \u2028 \x85 \x0b \x0c end",
    "zero\u200bwidth 👩\u200d👩\u200d👧 family",
    "\n\n",
]


def make_docs() -> list[Doc]:
    rng = random.Random(5)
    texts = TEXTS + ["".join(rng.choice("ab😀é\n \r\t") for _ in range(rng.randint(0, 120))) for _ in range(20)]
    owners = [
        ["Jane Smith", "John Smith"],  # co-owned: one document of both
        "John Smith",
        ["Jane Smith", "Jane Smith"],
        "smith@uni-bremen.de",
        None,
    ]
    return [
        Doc(id=f"d{i:03d}", text=t, meta={"owner": owners[i % len(owners)], "repo": f"org/r{i % 3}"})
        for i, t in enumerate(texts)
    ]


DOCS = make_docs()


@pytest.fixture(scope="module", params=[1, 3], ids=["1shard", "3shards"])
def bundle(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "b"
    b = build_bundle(DOCS, out, backends=["exact", "bloom", "owners"], shards=request.param, progress=False)
    yield b
    b.close()


def positions(needle: str) -> list[tuple[str, int]]:
    """All (docid, character offset) of ``needle``, overlapping ones included, in corpus order."""
    return occurrences(DOCS, needle)


WHITESPACE = [" ", "  ", "\n", "\r\n", "\n\n", "\t", "\r", "\u00a0", "\u2028", "\x85 \x0b"]


@pytest.mark.parametrize("needle", WHITESPACE, ids=repr)
def test_whitespace_only_text_is_counted_and_found(bundle, needle):
    expected = positions(needle)
    assert expected
    svc = Service(bundle, max_k=100)
    assert svc.count(needle)["count"] == len(expected) == bundle.searcher("exact").count(needle)
    got, offset = [], 0
    while True:
        page = svc.find(needle, k=7, offset=offset)
        assert page["count"] == len(expected)
        if not page["hits"]:
            break
        assert [h["rank"] for h in page["hits"]] == list(range(offset + 1, offset + 1 + len(page["hits"])))
        got += [(h["docid"], h["offset"]) for h in page["hits"]]
        offset += 7
    assert got == expected
    for docid, off in got:  # offsets point at the match in the text doc() returns
        assert bundle.doc(docid).text[off : off + len(needle)] == needle


def test_whitespace_count_on_the_command_line(bundle, capsys):
    path = str(bundle.path)
    for needle in (" ", "\r\n"):
        code, out, err = run(["count", path, needle], capsys)
        assert (code, err) == (0, "") and int(out) == len(positions(needle))
    code, out, err = run(["count", path, ""], capsys)
    assert code == 2 and err.count("\n") == 1 and "empty" in err
    with pytest.raises(QueryError, match="limit"):
        Service(bundle).count(" " * 10_001)


def test_counts_and_pages_equal_brute_force(bundle):
    rng = random.Random(1)
    needles = {"a", "aa", "aaaa", "😀", "😀😀", "é", "e\u0301", "\u0301", "中文", "b" * 699, "b" * 701, "ab"}
    for doc in DOCS:
        if doc.text:
            needles |= {doc.text, doc.text[:1], doc.text[-1:]}
            for _ in range(5):
                i = rng.randrange(len(doc.text))
                needles.add(doc.text[i : i + rng.randint(1, 12)])
    exact = bundle.searcher("exact")
    for needle in sorted(needles):
        expected = positions(needle)
        assert exact.count(needle) == len(expected), needle
        pages = [h for off in range(0, len(expected) + 5, 5) for h in exact.find(needle, k=5, offset=off)]
        assert [(h.docid, h.offset) for h in pages] == expected, needle
        assert [h.rank for h in pages] == list(range(1, len(expected) + 1))


def test_bloom_has_no_false_negatives(bundle):
    bloom = bundle.searcher("bloom")
    w = bloom.width
    for doc in DOCS:
        if len(doc.text) >= w:
            res = bloom.member(doc.text)  # the whole document: every grid n-gram is stored
            assert res.ngrams_found >= 1 and res.spans[0][0] == 0
            assert res.coverage >= (len(doc.text) - (bloom.stride - 1)) / len(doc.text)


def union(names: set[str]) -> int:
    """Brute force: the documents that any of ``names`` owns."""
    out = set()
    for doc in DOCS:
        owner = doc.meta["owner"]
        if set(owner if isinstance(owner, list) else [owner]) & names:
            out.add(doc.id)
    return len(out)


def test_owner_total_counts_a_co_owned_document_once(bundle):
    res = Service(bundle).owner("Smith")
    shown = {m["owner"] for m in res["matches"]}
    assert {"Jane Smith", "John Smith"} <= shown
    assert res["total_docs"] == union(shown) < sum(m["docs"] for m in res["matches"])
    assert bundle.searcher("owners").owner("Smith").total_docs == union({"Jane Smith", "John Smith", "smith@uni-bremen.de"})


def test_owner_total_of_the_matches_shown_when_redacting(bundle):
    # the email owner is a near match that a redacting service hides: the total is of the others
    full = bundle.searcher("owners").owner("Smith")
    assert "smith@uni-bremen.de" in {m.owner for m in full.matches}
    res = Service(bundle, redact_pii=True).owner("Smith")
    shown = {m["owner"] for m in res["matches"]}
    assert shown == {"Jane Smith", "John Smith"}
    assert res["total_docs"] == union(shown) < sum(m["docs"] for m in res["matches"])


def test_owner_cli_json_total(bundle, capsys):
    code, out, err = run(["owner", str(bundle.path), "smith", "--json"], capsys)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["total_docs"] == union({m["owner"] for m in data["matches"]})


def test_sharded_answers_equal_unsharded(tmp_path):
    one = build_bundle(DOCS, tmp_path / "one", backends=["exact", "bloom", "owners"], progress=False)
    three = build_bundle(DOCS, tmp_path / "three", backends=["exact", "bloom", "owners"], shards=3, progress=False)
    try:
        a, b = Service(one), Service(three)
        for text in (" ", "\r\n", "😀", "aa", "中文字符"):
            assert a.count(text)["count"] == b.count(text)["count"]
            assert a.find(text, k=50)["hits"] == b.find(text, k=50)["hits"]
        for doc in DOCS:
            if doc.text.strip():
                assert a.member(doc.text * 2)["spans"] == b.member(doc.text * 2)["spans"]
        for name in ("Smith", "jane smith", "JOHN SMITH", "nobody at all"):
            ra, rb = a.owner(name), b.owner(name)
            assert (ra["matches"], ra["total_docs"]) == (rb["matches"], rb["total_docs"])
        assert Path(one.path, "owners", "owners.json").read_bytes() == Path(three.path, "owners", "owners.json").read_bytes()
    finally:
        one.close()
        three.close()
