"""Document ids that hold PII (an email in a path) are shown redacted, with a tag keyed by a
secret of the process, in every answer; a flag takes the shown id back to the document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacerini.bundle import build_bundle, open_bundle
from spacerini.errors import QueryError
from spacerini.records import Doc
from spacerini.service import Service

EMAIL = "alice.jones@posteo.de"
SECRET_ID = f"users/{EMAIL}/tools/fetch.py"
TEXT = "def fetch_all_the_records(session):\n    return session.get('/records').json()  # paged records\n"


def _docs() -> list[Doc]:
    docs = [Doc(id=SECRET_ID, text=TEXT, meta={"owner": "Alice Jones", "repo": "org/tools", "path": SECRET_ID})]
    docs += [
        Doc(id=f"pkg/mod{i}.py", text=f"def helper_{i}(x):\n    return x * {i}  # records helper\n",
            meta={"owner": f"Owner {i}", "repo": f"org/r{i}", "path": f"pkg/mod{i}.py"})
        for i in range(12)
    ]  # fmt: skip
    return docs


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ids") / "b"
    build_bundle(_docs(), path, backends=["bm25", "exact", "bloom", "owners"], progress=False).close()
    return path


@pytest.fixture()
def service(bundle_path, tmp_path):
    with open_bundle(bundle_path) as b:
        yield Service(b, flags_path=tmp_path / "flags.jsonl", requests_path=tmp_path / "requests.jsonl")


def _everywhere(service: Service) -> list[str]:
    """Every answer that names the document, as its JSON."""
    answers = [
        service.search("fetch_all_the_records session"),
        service.search("fetch_all_the_records", backend="exact"),
        service.find("fetch_all_the_records(session)", 10, 0),
        service.member(TEXT),
        service.owner("Alice Jones"),
        service.trace(TEXT, min_len=16),
    ]
    return [json.dumps(a.to_dict() if hasattr(a, "to_dict") else a, default=str) for a in answers]


def test_an_id_holding_an_email_is_shown_redacted_everywhere(service):
    texts = _everywhere(service)
    for text in texts:
        assert EMAIL not in text, text[:300]
    shown = service.search("fetch_all_the_records session").hits[0].docid
    assert shown != SECRET_ID and shown.startswith("users/") and "~" in shown
    assert all(shown in text for text in texts[:5]), "the same shown id in every answer"
    # Ids without PII are shown as they are.
    plain = service.search("helper_3").hits[0].docid
    assert plain == "pkg/mod3.py"


def test_a_flag_takes_the_shown_id_back_and_refuses_the_real_one(service, tmp_path):
    shown = service.search("fetch_all_the_records session").hits[0].docid
    receipt = service.flag("fetch", shown, "wrong licence")
    assert receipt.docid == shown
    record = json.loads((tmp_path / "flags.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert record["docid"] == SECRET_ID  # the operator's report names the document
    # The real id would confirm that an id holding that address exists: refused like a missing one.
    with pytest.raises(QueryError, match="no document") as real:
        service.flag("fetch", SECRET_ID, "x")
    with pytest.raises(QueryError, match="no document"):
        service.flag("fetch", "users/[EMAIL]/tools/fetch.py~0000000000", "x")
    assert EMAIL not in str(real.value)
    assert service.flag("q", "pkg/mod3.py", "spam").docid == "pkg/mod3.py"


def test_the_tag_is_keyed_per_process_and_redaction_off_shows_the_id(bundle_path, tmp_path):
    with open_bundle(bundle_path) as b:
        a = Service(b, flags_path=tmp_path / "a.jsonl", requests_path=tmp_path / "ra.jsonl")
        c = Service(b, flags_path=tmp_path / "c.jsonl", requests_path=tmp_path / "rc.jsonl")
        off = Service(b, redact_pii=False, flags_path=tmp_path / "o.jsonl", requests_path=tmp_path / "ro.jsonl")
        one = a.search("fetch_all_the_records session").hits[0].docid
        two = c.search("fetch_all_the_records session").hits[0].docid
        assert one.split("~")[0] == two.split("~")[0] and one != two
        assert off.search("fetch_all_the_records session").hits[0].docid == SECRET_ID
        assert off.flag("q", SECRET_ID, "x").docid == SECRET_ID
