"""Defects found by probing a served app from outside (adversarial sweep), each pinned here."""

from __future__ import annotations

from typing import Any

import pytest
from app_fixtures import api_get

from spacerini.errors import QueryError
from spacerini.service import Service

EMAIL = "bob.smith@gmail.com"  # in the hostile document (app_fixtures.HOSTILE_TEXT)
KEY = "AKIAIOSFODNN7EXAMPLQ"


_get = api_get


def test_search_does_not_confirm_a_pii_query_when_redacting(app_bundle: Any, tmp_path: Any) -> None:
    # count and find refused a query that is itself PII (it would confirm the secret is in the
    # corpus); ranked search answered it with the document that holds it.
    plain = Service(app_bundle, redact_pii=False, flags_path=tmp_path / "f.jsonl", requests_path=tmp_path / "r.jsonl")
    assert "evil" in [h.docid for h in plain.search(EMAIL, "bm25", 10, 0).hits]  # the oracle exists
    svc = Service(app_bundle, flags_path=tmp_path / "f.jsonl", requests_path=tmp_path / "r.jsonl")
    for backend in ("bm25", "exact"):
        with pytest.raises(QueryError, match=r"personal or secret information \(EMAIL\)"):
            svc.search(EMAIL, backend, 10, 0)
    with pytest.raises(QueryError, match=r"\(KEY\)"):
        svc.search(f"key {KEY}", "", 10, 0)
    r = _get(svc, "/api/search", q=EMAIL)
    assert r.status_code == 400 and "personal or secret information" in r.json()["error"]
    assert EMAIL not in r.text and "evil" not in r.text
    assert svc.search("parser helper", "", 5, 0).hits  # ordinary queries are untouched


def test_a_bad_snippets_flag_is_one_line_400(app_bundle: Any, tmp_path: Any) -> None:
    # FastAPI's bool parsing answered 422 with its own {"detail": [...]} shape.
    svc = Service(app_bundle, flags_path=tmp_path / "f.jsonl", requests_path=tmp_path / "r.jsonl")
    r = _get(svc, "/api/search", q="parser", snippets="maybe")
    assert r.status_code == 400 and r.json() == {"error": "snippets must be true or false, not 'maybe'"}
    for value, has in (("false", False), ("0", False), ("no", False), ("true", True), ("1", True), ("", True)):
        hits = _get(svc, "/api/search", q="parser helper", snippets=value).json()["hits"]
        assert all(bool(h["snippet"]) is has for h in hits), value


def test_membership_and_trace_do_not_confirm_a_pasted_secret(tmp_path: Any) -> None:
    """Count, find and search refuse a query that is PII; membership and trace answered for the
    text around it and the secret with it (an exact span over the key, with its source). Now they
    check the stretches around the PII alone: the rest is still found, the key never."""
    from spacerini.bundle import build_bundle
    from spacerini.records import Doc

    before = "the billing service reads its settings from this file, line after line:\n"
    after = "\nand every other setting of the billing service stays in the vault for now."
    secret_doc = before + f"aws_access_key_id = {KEY}" + after
    docs = [Doc("k1", secret_doc), *(Doc(f"d{i}", f"ordinary text number {i} about parsers") for i in range(5))]
    bundle = build_bundle(docs, tmp_path / "b", backends=["exact", "bloom"], progress=False)
    key_at = secret_doc.index(KEY)
    key_span = (key_at, key_at + len(KEY))

    def overlaps(start: int, end: int) -> bool:
        return start < key_span[1] and end > key_span[0]

    stores = {"flags_path": tmp_path / "f.jsonl", "requests_path": tmp_path / "r.jsonl"}
    plain = Service(bundle, redact_pii=False, **stores)
    m = plain.member(secret_doc)
    assert any(overlaps(s.start, s.end) for s in m.exact_spans)  # the oracle
    svc = Service(bundle, **stores)
    m = svc.member(secret_doc)
    assert m.exact_spans and not any(overlaps(s.start, s.end) for s in m.exact_spans + m.spans)
    assert all(KEY not in s.text for s in m.exact_spans + m.spans)
    assert {src.docid for s in m.exact_spans for src in s.sources} == {"k1"}  # the rest is answered for
    alone = svc.member(f"aws_access_key_id = {KEY}")
    assert not any(overlaps(s.start + key_at - len("aws_access_key_id = "), s.end) for s in alone.spans)
    assert all(KEY not in s.text for s in alone.exact_spans + alone.spans)
    traced = svc.trace(secret_doc, min_len=16)
    assert traced.spans and not any(overlaps(s.start, s.end) for s in traced.spans)
    assert not any(overlaps(start, end) for start, end in traced.bloom_spans)
    assert any(overlaps(s.start, s.end) for s in plain.trace(secret_doc, min_len=16).spans)


def test_an_owner_that_is_pii_answers_only_to_itself_when_redacting(tmp_path: Any) -> None:
    """Near matches scored a redacted e-mail owner (``dave`` -> ``<EMAIL>`` at 0.85), so anyone
    could guess the address a letter at a time; now such an owner is listed only for its exact
    address, and the total counts only what is listed."""
    from spacerini.bundle import build_bundle
    from spacerini.records import Doc

    email = "dave.smith@corpmail.com"
    docs = [
        Doc("a", "first file of dave", meta={"owner": "Dave Smith", "repo": "r1"}),
        Doc("b", "second file of dave", meta={"owner": email, "repo": "r2"}),
        Doc("c", "third file of dave", meta={"owner": email, "repo": "r2"}),
    ]
    bundle = build_bundle(docs, tmp_path / "b", backends=["owners"], progress=False)
    stores = {"flags_path": tmp_path / "f.jsonl", "requests_path": tmp_path / "r.jsonl"}
    plain = Service(bundle, redact_pii=False, **stores).owner("dave")
    assert {m.owner for m in plain.matches} == {"Dave Smith", email}  # the near match exists
    svc = Service(bundle, **stores)
    near = svc.owner("dave")
    assert [m.owner for m in near.matches] == ["Dave Smith"] and near.total_docs == 1
    for guess in ("dave.smith@corpmail.co", "dave.smith", "corpmail"):
        assert all(m.docs != 2 for m in svc.owner(guess).matches), guess
    exact = svc.owner(email)
    assert [m.docs for m in exact.matches] == [2] and email not in str(exact.matches[0].owner)
