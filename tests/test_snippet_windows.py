"""BM25 snippets redact only the window they show, and show what the whole redacted text shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacerini.backends.bm25 import SNIPPET_SCAN_CHARS
from spacerini.bundle import build_bundle
from spacerini.display import redacted_text, redacted_window
from spacerini.records import Doc
from spacerini.service import Service

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join("MIIEowIBAAKCAQEA7bq9" + "x" * 40 + str(i) for i in range(40))
    + "\n-----END RSA PRIVATE KEY-----"
)
LINE = "# the nightly export job copies the ledger tables to the archive bucket\n"


def _fragments(secret: str, n: int = 8) -> list[str]:
    return [secret[i : i + n] for i in range(0, len(secret) - n + 1)]


def test_a_window_without_pii_is_the_slice() -> None:
    text = LINE * 50
    assert redacted_window(text, 100, 400) == text[100:400]
    assert redacted_window(text, 0, len(text)) == redacted_text(text)


def test_a_secret_cut_by_the_window_edge_is_replaced_whole() -> None:
    line = f'aws_secret_access_key = "{SECRET}"\n'
    text = LINE * 10 + line + LINE * 10
    start = text.index(SECRET)
    for lo, hi in ((start + 10, start + 300), (start - 200, start + 12)):
        window = redacted_window(text, lo, hi)
        assert "<KEY>" in window, (lo, hi, window)
        assert not [f for f in _fragments(SECRET) if f in window]
        assert window == text[min(lo, start) : max(hi, start + len(SECRET))].replace(SECRET, "<KEY>")


def test_a_private_key_block_that_starts_before_the_window_is_replaced_whole() -> None:
    text = LINE * 5 + PEM + "\n" + LINE * 5
    middle = text.index("x" * 40, len(text) // 2 - 400)
    window = redacted_window(text, middle, middle + 100)
    assert window.startswith("<KEY>") and "MIIE" not in window and "x" * 20 not in window


def test_the_netrc_rule_sees_the_machine_named_outside_the_window() -> None:
    text = "machine ftp.example.net login jdoe\n" + LINE * 60 + "password Tr0ub4dor3xq\n" + LINE * 3
    assert "Tr0ub4dor3xq" not in redacted_text(text)
    at = text.index("Tr0ub4dor3xq")
    assert "Tr0ub4dor3xq" not in redacted_window(text, at - 100, at + 200)


@pytest.fixture(scope="module")
def searcher_and_docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, str]]:
    long_tail = LINE * (2 * SNIPPET_SCAN_CHARS // len(LINE))
    docs = {
        # PII far from the match: the window path must give exactly the old snippet.
        "far": "contact: jane.roe@fastmail.fm\n" + long_tail + "def rotate_ledger(archive):\n    return archive\n" + long_tail,
        # A secret right beside the match.
        "near": long_tail + f'ledger_token = "{SECRET}"  # rotate ledger credentials\n' + long_tail,
        # A private key block reaching into the window from before it.
        "pem": long_tail + PEM + "\n# rotate ledger keys above\n" + long_tail,
        "short": f'rotate ledger with aws_secret_access_key = "{SECRET}"\n',
    }
    out = tmp_path_factory.mktemp("snippet-windows") / "b"
    bundle = build_bundle([Doc(id=k, text=v) for k, v in docs.items()], out, backends=["bm25"], progress=False)
    return bundle, docs


@pytest.mark.parametrize("docid", ["far", "near", "pem", "short"])
def test_window_snippets_match_whole_text_snippets_and_leak_nothing(
    searcher_and_docs: tuple[object, dict[str, str]], docid: str
) -> None:
    bundle, docs = searcher_and_docs
    searcher = bundle.searcher("bm25")  # type: ignore[attr-defined]
    text = docs[docid]
    for query in ("rotate ledger", "ledger archive", "export bucket"):
        new = searcher.snippet(query, text, redact=redacted_window)
        old = searcher.snippet(query, redacted_text(text))
        assert not [f for f in _fragments(SECRET) if f in new], (docid, query, new)
        assert "MIIE" not in new and "fastmail" not in new
        if docid in ("far", "short"):
            assert new == old, (docid, query)


def test_the_service_cuts_search_snippets_from_redacted_windows(
    searcher_and_docs: tuple[object, dict[str, str]], tmp_path: Path
) -> None:
    bundle, docs = searcher_and_docs
    svc = Service(bundle, flags_path=tmp_path / "flags.jsonl")
    page = svc.search("rotate ledger credentials", k=4)
    assert {h["docid"] for h in page["hits"]} >= {"near", "short"}
    for hit in page["hits"]:
        assert "<mark>" in hit["snippet"]
        assert not [f for f in _fragments(SECRET) if f in hit["snippet"]]
        assert "MIIE" not in hit["snippet"]
    assert len(svc._texts) == 0  # no whole document was redacted for these pages
