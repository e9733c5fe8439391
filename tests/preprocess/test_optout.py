"""Opt-out removes exactly the planted owner's documents and listed ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacerini.errors import CorpusError, CorpusNotFoundError
from spacerini.preprocess import make_steps, read_optout_file
from spacerini.preprocess.base import StepOptionError
from spacerini.preprocess.optout import OptOut
from spacerini.records import Doc

DOCS = [
    Doc("a1", "x", meta={"owner": "Alice"}),
    Doc("b1", "x", meta={"owner": "bob"}),
    Doc("a2", "x", meta={"owner": "ALICE"}),
    Doc("c1", "x", fields={"owner": "carol"}),
    Doc("n1", "x"),
    Doc("b2", "x", meta={"owner": "bobby"}),
]


def test_owners_case_insensitive() -> None:
    step = OptOut(owners=["alice"])
    assert [d.id for d in step(iter(DOCS))] == ["b1", "c1", "n1", "b2"]
    report = step.report()
    assert report["removed_by"] == {"owner": 2} and report["removed"] == 2
    assert report["examples"] == {} and report["params"]["owners"] == 1  # counts, never names
    assert "alice" not in json.dumps(report).lower()


def test_a_co_owner_opting_out_removes_the_shared_document() -> None:
    """Owners are one name or a list, as the owners index reads them; any listed owner counts."""
    docs = [Doc("s1", "x", meta={"owner": ["Alice", "Bob"]}), Doc("s2", "x", meta={"owner": ["Carol"]})]
    assert [d.id for d in OptOut(owners=["bob"])(iter(docs))] == ["s2"]


def test_ids_from_file_and_owners_together(tmp_path: Path) -> None:
    listing = tmp_path / "optout.txt"
    listing.write_text("# requests of 2024\n\nn1\n  b2  \nmissing-id\n", encoding="utf-8")
    assert read_optout_file(listing) == {"n1", "b2", "missing-id"}
    (step,) = make_steps(["optout"], optout={"owners": "carol", "ids_file": str(listing)})
    assert [d.id for d in step(DOCS)] == ["a1", "b1", "a2"]
    report = step.report()
    assert report["removed_by"] == {"id": 2, "owner": 1} and report["ids_not_found"] == 1


def test_a_bom_does_not_join_the_first_id_and_a_bad_byte_names_its_line(tmp_path: Path) -> None:
    listing = tmp_path / "bom.txt"
    listing.write_bytes(b"\xef\xbb\xbfn1\r\nb2\n")  # as Notepad saves it
    assert read_optout_file(listing) == {"n1", "b2"}
    listing.write_bytes(b"n1\nb2\ncaf\xe9\n")
    with pytest.raises(CorpusError, match=r"bom\.txt:3: the opt-out file is not UTF-8"):
        read_optout_file(listing)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusNotFoundError, match="no such opt-out file"):
        read_optout_file(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError):
        read_optout_file(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="not a folder"):
        read_optout_file(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00id")
    with pytest.raises(CorpusError, match="UTF-8"):
        read_optout_file(bad)
    with pytest.raises(StepOptionError, match="needs owners"):
        OptOut()


def test_an_email_opts_out_after_the_pii_step_replaced_it() -> None:
    """pii (index mode) before optout: the owner's email is a stand-in by then, and still matches."""
    docs = [Doc("j1", "x", meta={"owner": "jane@acme.io"}), Doc("o1", "x", meta={"owner": "omar@corp-mail.de"})]
    pii, optout = make_steps(["pii", "optout"], optout={"owners": "Jane@Acme.io"})
    assert [d.id for d in optout(pii(docs))] == ["o1"]
    assert optout.report()["removed_by"] == {"owner": 1}
