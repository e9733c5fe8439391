"""Display-time redaction: snippets are redacted before they are cut, and queries are no oracle."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spacerini.bundle import build_bundle
from spacerini.display import exact_snippet, pii_display_mode, refuse_pii_query
from spacerini.errors import QueryError
from spacerini.records import Doc
from spacerini.service import Service

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
FILLER = "# configuration for the nightly export job, see the runbook for details\n" * 3


def _fragments(secret: str, n: int = 8) -> list[str]:
    return [secret[i : i + n] for i in range(0, len(secret) - n + 1)]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Service:
    out = tmp_path_factory.mktemp("display") / "b"
    docs = [
        Doc(id="cfg", text=FILLER + f'aws_secret_access_key = "{SECRET}"\nregion = eu-west-1\n'),
        Doc(
            id="own",
            text="def helper(): return 1\n",
            meta={"owner": "jane.roe@fastmail.fm", "repo": "https://jane:hunter2pass@git.example.org/jane/tools"},
        ),
    ]
    bundle = build_bundle(docs, out, backends=["bm25", "exact", "owners"], progress=False)
    return Service(bundle, flags_path=tmp_path_factory.mktemp("flags") / "flags.jsonl")


def test_find_redacts_a_secret_cut_by_the_snippet_window(svc: Service) -> None:
    page = svc.find("aws_secret_access_key", 10, 0)
    assert page["count"] == 1
    snippet = page["hits"][0]["snippet"]
    assert "&lt;KEY&gt;" in snippet
    assert not [f for f in _fragments(SECRET) if f in snippet]
    # The cut alone would leak: the raw window ends inside the key.
    raw = svc.bundle.searcher("exact").find("aws_secret_access_key", k=1)[0].snippet
    assert any(f in raw for f in _fragments(SECRET))


def test_search_snippets_are_cut_from_the_redacted_text(svc: Service) -> None:
    hits = svc.search("aws secret access key region", k=5)["hits"]
    assert hits and hits[0]["docid"] == "cfg"
    assert not [f for f in _fragments(SECRET) if f in hits[0]["snippet"]]


def test_a_query_that_is_itself_a_secret_gets_a_refusal(svc: Service) -> None:
    for verb, call in (("count", svc.count), ("find", svc.find)):
        with pytest.raises(QueryError, match=f"does not {verb} such text"):
            call(f'aws_secret_access_key = "{SECRET}"')
    with pytest.raises(QueryError, match="EMAIL"):
        svc.count("jane.roe@fastmail.fm")
    raw = Service(svc.bundle, redact_pii=False, flags_path=svc.flags.path)
    assert raw.count(SECRET)["count"] == 1  # an operator who turned redaction off sees it


def test_owner_answers_redact_emails_and_url_passwords(svc: Service) -> None:
    answer = svc.owner("jane roe fastmail fm")
    shown = repr(answer)
    assert "jane.roe@fastmail.fm" not in shown and "hunter2pass" not in shown
    hit = svc.search("helper", k=1)["hits"][0]
    assert "hunter2pass" not in repr(hit["meta"]) and "fastmail" not in repr(hit["meta"])


def test_exact_snippet_marks_the_match_and_replaces_whole_spans() -> None:
    text = "x" * 50 + f" aws_secret_access_key={SECRET} and more text"
    start = text.index("key=")
    snippet = exact_snippet(text, start, start + 4, context=10)
    assert snippet.startswith("et_access_<mark>key=</mark>")
    assert "&lt;KEY&gt;" in snippet or "&lt;PASSWORD&gt;" in snippet
    assert not [f for f in _fragments(SECRET) if f in snippet]
    plain = exact_snippet("abc def ghi", 4, 7, context=2, redact=False)
    assert plain == "c <mark>def</mark> g"


def test_refuse_pii_query_and_display_mode() -> None:
    refuse_pii_query("ordinary words", verb="count")
    with pytest.raises(QueryError):
        refuse_pii_query("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIzNDU2", verb="count")
    assert pii_display_mode({"preprocess": [{"name": "pii", "params": {"mode": "display"}}]})
    assert not pii_display_mode({"preprocess": [{"name": "pii", "params": {"mode": "index"}}]})
    assert not pii_display_mode({})


def test_cli_search_and_find_redact_a_display_mode_bundle(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spacerini.cli import cli

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        '{"id": "cfg", "contents": "' + FILLER.replace("\n", " ") + f'aws_secret_access_key = {SECRET} region"}}\n',
        encoding="utf-8",
    )
    out = tmp_path / "b"
    runner = CliRunner()
    built = runner.invoke(
        cli, ["-q", "index", str(corpus), "--out", str(out), "--backends", "bm25,exact",
              "--preprocess", "pii", "--preprocess-opt", "pii.mode=display"],
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    for args in (["search", str(out), "aws secret region"], ["find", str(out), "aws_secret_access_key"],
                 ["search", str(out), "aws secret region", "--json"], ["find", str(out), "aws_secret_access_key", "--json"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert not [f for f in _fragments(SECRET) if f in result.output], (args, result.output)
        if args[0] == "find":
            assert re.search(r"KEY|PASSWORD", result.output)
    refused = runner.invoke(cli, ["count", str(out), f"aws_secret_access_key = {SECRET}"])
    assert refused.exit_code == 2 and "does not count such text" in refused.output


def test_pii_windows_checked_in_one_prefiltered_pass_find_the_same_spans() -> None:
    """Count, find and membership check up to 1,000 occurrences for PII: one RE2 pass over all
    their windows, find_pii only where it could find something, must give find_pii's spans."""
    import random

    from spacerini.display import pii_spans_near, pii_spans_near_many
    from tests.test_analyze import _pii_texts

    rng = random.Random(5)
    windows = []
    for text in _pii_texts()[:1500]:
        doc = f"intro line\n{text}\nplain closing words here\n"
        lo = rng.randrange(len(doc))
        windows.append((doc, lo, min(len(doc), lo + rng.randint(1, 40))))
        windows.append((doc, 0, 10))  # the intro, near or far from the PII
    assert pii_spans_near_many(windows) == [pii_spans_near(*w) for w in windows]
    assert any(pii_spans_near_many(windows))


def test_a_common_word_is_counted_without_scanning_every_occurrence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redacting, a count of a word with hundreds of occurrences ran find_pii on each (~3 ms):
    seconds for one new query. Only the windows that could hold PII are scanned now."""
    import spacerini.preprocess.pii as pii

    docs = [Doc(f"d{i}", f"Fix the parser, take {i}.\nSee the notes of release {i}.\n") for i in range(400)]
    docs.append(Doc("mail", "Fix by alice.jones@gmail.com\n"))
    bundle = build_bundle(docs, tmp_path / "b", backends=["exact"], progress=False)
    calls = []
    real = pii.find_pii
    monkeypatch.setattr(pii, "find_pii", lambda *a, **k: calls.append(1) or real(*a, **k))
    svc = Service(bundle, redact_pii=True, flags_path=tmp_path / "f", requests_path=tmp_path / "r")
    assert svc.count("Fix").count == 401  # the mail's occurrence touches no PII: counted
    assert svc.count("Fix by alice").count == 0  # reaches into the address
    assert len(calls) <= 5, len(calls)
