"""spacerini contamination: every example's numbers against brute force (Python str search over
the docstore texts) on planted examples: copied passages, lightly edited copies, paraphrases and
fresh text."""

from __future__ import annotations

import argparse
import collections
import csv
import difflib
import heapq
import json
import random
import re
import statistics
from pathlib import Path

import pytest

from spacerini.audit.contamination import MIN_OVERLAP, NGRAM, Example, contamination, load_testset
from spacerini.audit.ngrams import WORD
from spacerini.bundle import build_bundle
from spacerini.records import Doc
from tests.cli_helpers import run

DATA = Path(__file__).parent / "data"


def corpus() -> list[Doc]:
    docs = [
        Doc(f"mod-{m.__name__}", m.__doc__)
        for m in (argparse, collections, csv, difflib, heapq, json, random, statistics)
    ]
    for line in (DATA / "exact_corpus.jsonl").read_text(encoding="utf-8").splitlines()[:20]:
        rec = json.loads(line)
        docs.append(Doc(rec["id"], rec["text"]))
    return docs


def window(text: str, start_token: int, tokens: int) -> str:
    spans = [m.span() for m in WORD.finditer(text)]
    return text[spans[start_token][0] : spans[start_token + tokens - 1][1]]


def paraphrase(text: str) -> str:
    """Rewords every fourth word: no 13-gram survives."""
    words = text.split()
    return " ".join(w.upper() + "ish" if i % 4 == 1 else w for i, w in enumerate(words))


def planted() -> list[tuple[str, str, bool]]:
    """(id, text, contaminated?) with the answer known by construction."""
    docs = corpus()
    copied = [window(docs[i].text, 3, 40) for i in (1, 2, 4)]
    edited = window(docs[5].text, 0, 60).split(" ")
    edited[len(edited) // 2] = "zzzedited"
    unicode_copy = window(docs[8].text, 0, min(30, len(WORD.findall(docs[8].text))))
    return [
        ("copy-1", copied[0], True),
        ("copy-2", "Q: " + copied[1] + " (cited)", True),
        ("copy-3", copied[2], True),
        ("edited", " ".join(edited), True),
        ("unicode", unicode_copy, True),
        ("para-1", paraphrase(copied[0]), False),
        ("para-2", paraphrase(window(docs[3].text, 0, 50)), False),
        (
            "fresh-1",
            "Penguins waddle across the frozen shelf while a lighthouse keeper counts ships at dawn.",
            False,
        ),
        (
            "fresh-2",
            "Der schnelle Zug nach Mannheim fährt heute später ab, sagt die Ansage am Gleis sieben.",
            False,
        ),
        ("empty", "", False),
    ]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    return build_bundle(corpus(), tmp_path_factory.mktemp("ct") / "b", backends=["exact"], progress=False)


def brute_force(text: str, docs: list[str], n: int) -> dict:
    """The definitions of the module docstring, by Python str search over the texts."""
    haystack = "\x00".join(docs)
    spans = [m.span() for m in WORD.finditer(text)]
    t = len(spans)
    if not t:
        return {"overlap": 0.0, "longest": 0, "text": "", "tokens": 0}
    m = min(n, t)
    grams = [text[spans[i][0] : spans[i + m - 1][1]] for i in range(t - m + 1)]
    overlap = sum(g in haystack for g in grams) / len(grams)
    best, best_text = 0, ""
    for s, _ in spans:
        lo, hi = s, len(text)  # text[s:lo] occurs; find the largest end
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if text[s:mid] in haystack:
                lo = mid
            else:
                hi = mid - 1
        if lo - s > best:
            best, best_text = lo - s, text[s:lo]
    return {"overlap": overlap, "longest": best, "text": best_text, "tokens": t}


def test_planted_examples_against_brute_force(bundle) -> None:
    docs = corpus()
    texts = [d.text for d in docs]
    cases = planted()
    report = contamination(bundle, [{"id": i, "text": t} for i, t, _ in cases], progress=False)
    assert [r.id for r in report.examples] == [i for i, _, _ in cases]
    for (cid, text, dirty), r in zip(cases, report.examples, strict=True):
        ref = brute_force(text, texts, NGRAM)
        assert r.overlap == pytest.approx(ref["overlap"], abs=1e-6), cid
        assert r.longest_match == ref["longest"], cid
        assert r.longest_match_text == ref["text"], cid
        assert r.tokens == ref["tokens"] and r.chars == len(text)
        assert r.contaminated is dirty, (cid, r)
        assert r.contaminated == (ref["overlap"] >= MIN_OVERLAP)
        assert (
            r.longest_match_tokens == len(WORD.findall(r.longest_match_text))
            or r.longest_match_tokens == len(WORD.findall(r.longest_match_text)) - 1
        )
        if r.longest_match:
            first = next(d.id for d in docs if r.longest_match_text in d.text)
            assert r.doc == first, cid
        else:
            assert r.doc is None
    by_id = {r.id: r for r in report.examples}
    assert by_id["copy-1"].overlap == 1.0 and by_id["copy-1"].longest_match == len(planted()[0][1])
    assert 0.5 <= by_id["edited"].overlap < 1.0  # one changed word spoils 13 of the 48 13-grams
    assert by_id["para-1"].overlap == 0.0 and by_id["fresh-1"].overlap == 0.0
    assert by_id["fresh-1"].longest_match < 30
    s = report.summary
    assert s["examples"] == len(cases) and s["contaminated"] == 5
    assert s["contaminated_fraction"] == pytest.approx(5 / len(cases))


@pytest.mark.parametrize("n", [1, 5, 30])
def test_other_ngram_lengths(bundle, n: int) -> None:
    texts = [d.text for d in corpus()]
    cases = planted()
    report = contamination(bundle, [{"text": t} for _, t, _ in cases], ngram=n, progress=False)
    assert [r.id for r in report.examples] == [str(i) for i in range(1, len(cases) + 1)]  # row numbers
    for (_, text, _), r in zip(cases, report.examples, strict=True):
        assert r.overlap == pytest.approx(brute_force(text, texts, n)["overlap"], abs=1e-6)


def test_testset_formats(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"qid": "a", "question": "first one"}, {"qid": "b", "question": "second"}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "t.csv").write_text("qid,question\na,first one\nb,second\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    want = [Example("a", "first one"), Example("b", "second")]
    for name in ("t.jsonl", "t.csv", "t.parquet"):
        assert load_testset(tmp_path / name, field="question") == want
    assert load_testset(tmp_path / "t.jsonl", field="question", id_field="question")[0].id == "first one"
    assert len(load_testset(tmp_path / "t.jsonl", field="question", limit=1)) == 1


def test_a_headerless_tsv_of_queries_is_a_test_set(tmp_path: Path) -> None:
    """MS MARCO's query files: `qid<TAB>text`, no header; quotes are text."""
    path = tmp_path / "queries.dev.tsv"
    path.write_text("1048585\twhat is paula deen's brother\n2\t\"cost\" of a new roof\n", encoding="utf-8")
    assert load_testset(path) == [Example("1048585", "what is paula deen's brother"), Example("2", '"cost" of a new roof')]
    with pytest.raises(Exception, match="no 'question' field"):
        load_testset(path, field="question")


def test_hf_saved_dataset(bundle, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    cases = planted()
    datasets.Dataset.from_list([{"id": i, "text": t} for i, t, _ in cases]).save_to_disk(str(tmp_path / "ds"))
    report = contamination(bundle, f"hf:{tmp_path / 'ds'}", progress=False)
    assert [r.contaminated for r in report.examples] == [d for _, _, d in cases]




def test_cli_json_text_and_out(bundle, tmp_path: Path, capsys) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t, _ in planted()))
    code, out, err = run(
        ["contamination", str(bundle.path), str(path), "--json", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"examples", "summary"}
    first = data["examples"][0]
    assert {"id", "contaminated", "longest_match", "overlap", "doc", "longest_match_tokens"} <= set(first)
    assert [e["contaminated"] for e in data["examples"]] == [d for _, _, d in planted()]
    assert data["summary"]["contaminated"] == 5
    assert (tmp_path / "o" / "contamination.json").is_file() and (tmp_path / "o" / "overlap.png").is_file()
    assert "data:image/png;base64," in (tmp_path / "o" / "contamination.html").read_text()
    code, out, err = run(["contamination", str(bundle.path), str(path)], capsys)
    assert code == 0, err
    assert (
        re.search(r"^copy-1\tCONTAMINATED\toverlap 1\.000", out, re.M)
        and "5 of 10 examples contaminated" in out
    )


def _bad(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "args", "needle"),
    [
        (None, None, [], "no such test set"),
        ("empty.jsonl", "", [], "empty"),
        ("bad.jsonl", '{"text": "ok"}\n{"text": broken\n', [], "malformed JSON"),
        ("nofield.jsonl", '{"question": "q"}\n', [], "no 'text' field"),
        ("number.jsonl", '{"text": 7}\n', [], "not text"),
        ("list.jsonl", '["a"]\n', [], "must be an object"),
        ("x.txt", "hello\n", [], "unknown test set format"),
        ("ok.jsonl", '{"text": "q"}\n', ["--ngram", "0"], "--ngram"),
        (
            "nullid.jsonl",
            '{"id": "a", "text": "q"}\n{"id": null, "text": "r"}\n',
            [],
            "nullid.jsonl:2: the id field 'id' is null",
        ),
        (
            "dupid.jsonl",
            '{"id": 1, "text": "q"}\n{"id": "2", "text": "r"}\n{"id": "1", "text": "s"}\n',
            [],
            "dupid.jsonl:3: duplicate example id '1' (first at",
        ),
        ("floatid.jsonl", '{"qid": 1.5, "text": "q"}\n', [], "the id field 'qid' is a float"),
    ],
)
def test_cli_bad_input_is_one_line(bundle, tmp_path: Path, capsys, name, content, args, needle) -> None:
    path = tmp_path / "missing.jsonl" if name is None else _bad(tmp_path, name, content)
    code, _, err = run(["contamination", str(bundle.path), str(path), *args], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_cli_bundle_without_exact_backend(tmp_path: Path, capsys) -> None:
    b = build_bundle(corpus()[:3], tmp_path / "b", backends=["bloom"], progress=False)
    path = _bad(tmp_path, "t.jsonl", '{"text": "q"}\n')
    code, _, err = run(["contamination", str(b.path), str(path)], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert (
        code == 2
        and len(lines) == 1
        and "needs the exact backend" in lines[0]
        and "--backends bloom,exact" in lines[0]
    )


def test_sharded_bundle_gives_the_same_answers(bundle, tmp_path: Path) -> None:
    sharded = build_bundle(corpus(), tmp_path / "s", backends=["exact"], shards=3, progress=False)
    assert len(sharded.manifest["shards"]) == 3
    tests = [{"id": i, "text": t} for i, t, _ in planted()]
    one = contamination(bundle, tests, progress=False).to_dict()["examples"]
    three = contamination(sharded, tests, progress=False).to_dict()["examples"]
    assert one == three
