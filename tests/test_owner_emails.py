"""Owners that are email addresses, in a bundle whose PII was redacted at index time: each keeps
its own entry (a stand-in, never the address), the address finds it, and opts it out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacerini.bundle import build_bundle, open_bundle, optout
from spacerini.errors import OwnerNotFoundError
from spacerini.preprocess.pii import owner_pseudonym
from spacerini.records import Doc

DOCS = [
    Doc("j1", "def jane_one(): pass", meta={"owner": "jane@acme.io", "repo": "j/app"}),
    Doc("j2", "def jane_two(): pass", meta={"owner": "Jane@Acme.io", "repo": "j/lib"}),
    Doc("o1", "def omar_one(): pass", meta={"owner": "omar@corp-mail.de", "repo": "corp/x"}),
    Doc("c1", "def cat_one(): pass", meta={"owner": "octocat", "repo": "gh/cat"}),
]


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    build_bundle(
        DOCS, tmp_path / "b", backends=["owners", "exact"], preprocess=["pii"], progress=False
    ).close()
    return tmp_path / "b"


def test_owners_stay_apart_and_no_address_is_stored(bundle: Path) -> None:
    stored = (bundle / "owners" / "owners.json").read_text(encoding="utf-8")
    assert "acme" not in stored.lower() and "corp-mail" not in stored and "@" not in stored
    b = open_bundle(bundle)
    try:
        owners = b.searcher("owners").owners
        assert sorted(owners) == sorted(
            [owner_pseudonym("jane@acme.io"), owner_pseudonym("omar@corp-mail.de"), "octocat"]
        )
        result = b.searcher("owners").owner("JANE@acme.io")
        assert result.matches[0].score == 1.0 and result.matches[0].docs == 2
        assert sorted(result.matches[0].files) == ["j1", "j2"]
        assert b.searcher("owners").owner("omar@corp-mail.de").matches[0].files == ("o1",)
        assert not [m for m in b.searcher("owners").owner("nobody@acme.io").matches if m.score == 1.0]
    finally:
        b.close()


def test_an_email_opts_out_its_documents_only(bundle: Path) -> None:
    entry = optout(bundle, owners=["Jane@ACME.io", "nobody@nowhere.org"], progress=False)
    assert entry["removed"] == 2 and entry["owners"] == 2 and entry["owners_not_found"] == 1
    b = open_bundle(bundle)
    try:
        assert sorted(b.docstore.ids()) == ["c1", "o1"]
        assert b.searcher("exact").count("jane_one") == 0 and b.searcher("exact").count("omar_one") == 1
        assert all(m.score < 1.0 for m in b.searcher("owners").owner("jane@acme.io").matches)
    finally:
        b.close()
    with pytest.raises(OwnerNotFoundError):
        optout(bundle, owners=["jane@acme.io"], progress=False)
    assert "jane" not in json.dumps(open_bundle(bundle).manifest["audit_log"]).lower()
