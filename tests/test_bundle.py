"""Bundles: manifest, docstore, atomic builds, validation on open."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from build_helpers import wait_until_indexing, write_big_corpus

from spacerini.backends import REGISTRY
from spacerini.bundle import FORMAT_VERSION, MANIFEST, build_bundle, check_query, open_bundle
from spacerini.bundle import build as bundle_mod
from spacerini.errors import (
    BackendNotAvailableError,
    BundleCorruptError,
    BundleError,
    BundleNotFoundError,
    QueryError,
)
from spacerini.records import BuildReport, Doc

DATA = Path(__file__).parent / "data"


def default_signals() -> None:
    """In the child: default dispositions for the signals the tests send. A test runner started
    in the background of a script inherits SIGINT ignored, and Python keeps an ignored SIGINT
    ignored (no KeyboardInterrupt), so a Ctrl-C test would see the build finish instead."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _left(folder: Path) -> list[str]:
    """Everything in ``folder``: no temporary folder and no lock file may outlive a build."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    return build_bundle(DATA / "tiny.jsonl", out, backends=["bm25"], progress=False)


def test_manifest(tiny) -> None:
    manifest = json.loads((tiny.path / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 2
    assert manifest["counts"]["docs"] == 25
    assert manifest["source"]["source"].endswith("tiny.jsonl")
    assert set(manifest["backends"]) == {"bm25"}
    assert manifest["backends"]["bm25"]["docs"] == 25
    assert "docs/records.bin" in manifest["checksums"] and "docs/docstore.json" in manifest["checksums"]
    assert any(p.startswith("lucene/") for p in manifest["checksums"])


def test_docstore_roundtrip(tiny) -> None:
    lines = [json.loads(x) for x in (DATA / "tiny.jsonl").read_text(encoding="utf-8").splitlines()]
    docs = list(tiny.iter_docs())
    assert [d.id for d in docs] == [x["id"] for x in lines]
    assert docs[24].text == lines[24]["contents"]  # Unicode survives
    assert tiny.doc("d09").fields["title"] == "Gradio"
    with pytest.raises(KeyError):
        tiny.doc("nope")


def test_search_enriches_hits(tiny) -> None:
    hits = tiny.search("Gradio web demo", k=3)
    assert hits[0].docid == "d09"
    assert hits[0].fields["title"] == "Gradio"
    assert "<mark>" in hits[0].snippet
    assert len(hits) == 2 and [h.rank for h in hits] == [1, 2]  # only d09 and d08 mention these words


def test_pagination_is_consistent(tiny) -> None:
    full = tiny.search("search engine ranking", k=10)
    page2 = tiny.search("search engine ranking", k=3, offset=3)
    assert [h.docid for h in page2] == [h.docid for h in full[3:6]]
    assert [h.rank for h in page2] == [4, 5, 6]


@pytest.mark.parametrize("query", ["", "   ", "x" * 100_000, "a\x00b"])
def test_bad_queries(tiny, query: str) -> None:
    with pytest.raises(QueryError):
        tiny.search(query)


def test_lucene_syntax_is_plain_text(tiny) -> None:
    hits = tiny.search('title:(search AND engine) OR "bloom"~2 +-*?\\ [a TO z] {x} ^3 ! && ||')
    assert any(h.docid == "d07" for h in hits)  # "bloom" still matches as a word


def test_missing_backend(tiny) -> None:
    with pytest.raises(BackendNotAvailableError, match="no 'exact' backend"):
        tiny.searcher("exact")
    with pytest.raises(BackendNotAvailableError, match="unknown backend"):
        build_bundle(DATA / "tiny.jsonl", tiny.path.parent / "x", backends=["nope"])


def test_open_errors(tmp_path: Path, tiny) -> None:
    with pytest.raises(BundleNotFoundError, match="no bundle here"):
        open_bundle(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(BundleNotFoundError, match="not a Spacerini bundle"):
        open_bundle(tmp_path / "plain")
    copy = tmp_path / "copy"
    shutil.copytree(tiny.path, copy)
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(BundleCorruptError, match="unreadable manifest"):
        open_bundle(copy)
    shutil.rmtree(copy)
    shutil.copytree(tiny.path, copy)
    (copy / "docs" / "records.bin").write_bytes(b"truncated")
    with pytest.raises(BundleCorruptError, match="docs/records.bin"):
        open_bundle(copy)


def test_verify_detects_tampering(tmp_path: Path, tiny) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny.path, copy)
    target = copy / "docs" / "records.bin"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    open_bundle(copy)  # sizes still match
    with pytest.raises(BundleCorruptError, match="SHA-256"):
        open_bundle(copy, verify=True)


def test_refuses_to_overwrite_non_bundle(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a Spacerini bundle"):
        build_bundle(DATA / "tiny.jsonl", target, progress=False)
    assert (target / "notes.txt").read_text() == "keep me"


def _boom_backend(exc: BaseException):
    def build(docs_factory, folder: Path, **params) -> BuildReport:
        (folder / "partial.bin").write_bytes(b"half")
        for _ in docs_factory():
            pass
        raise exc

    return SimpleNamespace(NAME="boom", build=build, open=None)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("crash")])
def test_failed_build_keeps_previous_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc) -> None:
    out = tmp_path / "b"
    build_bundle(DATA / "tiny.jsonl", out, backends=["bm25"], progress=False)
    before = (out / MANIFEST).read_text()
    monkeypatch.setitem(REGISTRY, "boom", "unused")
    real = bundle_mod.get_backend
    monkeypatch.setattr(bundle_mod, "get_backend", lambda n: _boom_backend(exc) if n == "boom" else real(n))
    with pytest.raises(type(exc)):
        build_bundle(DATA / "tiny.jsonl", out, backends=["bm25", "boom"], progress=False)
    assert (out / MANIFEST).read_text() == before
    assert _left(tmp_path) == ["b"]  # no temp folder left
    assert open_bundle(out).search("Lucene")[0].docid == "d02"


def test_rebuild_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "b"
    build_bundle(DATA / "tiny.jsonl", out, progress=False)
    docs = [Doc(id=f"n{i}", text=f"fresh document number {i}") for i in range(3)]
    rebuilt = build_bundle(docs, out, progress=False)
    assert len(rebuilt) == 3
    assert _left(tmp_path) == ["b"]


def test_ctrl_c_during_real_build(tmp_path: Path) -> None:
    """SIGINT to a running `spacerini index` leaves the old bundle intact and no temp folder."""
    out = tmp_path / "b"
    build_bundle(DATA / "tiny.jsonl", out, progress=False)
    before = (out / MANIFEST).read_text()
    big = write_big_corpus(tmp_path / "big.jsonl")
    env = {**os.environ, "SPACERINI_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacerini", "index", str(big), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=default_signals,
    )
    wait_until_indexing(tmp_path)  # well inside the build, whatever the machine's load
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert b"Traceback" not in err and b"\tat " not in err  # no Python or Java stack trace
    assert err.decode().strip().splitlines()[-1].startswith("spacerini: interrupted")
    assert (out / MANIFEST).read_text() == before
    assert _left(tmp_path) == ["b", "big.jsonl"]


def test_check_query_limits() -> None:
    assert check_query("ok") == "ok"
    with pytest.raises(QueryError, match="10,000"):
        check_query("y" * 10_001)
    with pytest.raises(QueryError, match="text"):
        check_query(b"bytes")  # type: ignore[arg-type]


def test_preprocess_steps_run_before_indexing(tmp_path: Path) -> None:
    docs = [
        Doc(id="a", text="contact jane.doe@acme-corp.io for the release notes"),
        Doc(id="b", text="contact jane.doe@acme-corp.io for the release notes"),  # exact duplicate
        Doc(id="c", text="an unrelated document about suffix arrays"),
    ]
    b = build_bundle(docs, tmp_path / "b", backends=["bm25", "exact"], preprocess=["dedup", "pii"], progress=False)
    assert [d.id for d in b.iter_docs()] == ["a", "c"]
    assert b.searcher("exact").count("jane.doe@acme-corp.io") == 0
    assert b.searcher("exact").count("<EMAIL>") == 1
    steps = b.manifest["preprocess"]
    assert [s["name"] for s in steps] == ["dedup", "pii"]
    assert steps[0]["removed"] == 1


def test_unknown_preprocess_step_fails_first(tmp_path: Path) -> None:
    with pytest.raises(BackendNotAvailableError, match="nope"):
        build_bundle(DATA / "tiny.jsonl", tmp_path / "b", preprocess=["nope"], progress=False)
    assert not (tmp_path / "b").exists()


def test_optout_removes_owner_everywhere(tmp_path: Path) -> None:
    from spacerini.bundle import optout

    docs = [
        Doc(id="a1", text="def alpha_helper(): return 'planted alpha text'", meta={"owner": "Alice Example", "repo": "alice/tools"}),
        Doc(id="a2", text="alpha helper utilities by alice", meta={"owner": "alice example", "repo": "alice/more"}),
        Doc(id="b1", text="def beta_helper(): return 'bob text about helpers'", meta={"owner": "Bob", "repo": "bob/lib"}),
    ]
    path = tmp_path / "b"
    build_bundle(docs, path, backends=["bm25", "exact", "bloom", "owners"], backend_params={"bloom": {"width": 10}}, progress=False)
    entry = optout(path, owners=["ALICE EXAMPLE"], progress=False)
    assert entry["removed"] == 2 and entry["owners"] == 1
    b = open_bundle(path)
    assert [d.id for d in b.iter_docs()] == ["b1"]
    assert [h.docid for h in b.search("helper alpha", k=10)] == ["b1"]
    assert b.searcher("exact").count("planted alpha") == 0
    assert b.searcher("bloom").member("'planted alpha text'").coverage == 0.0
    assert not b.searcher("owners").owner("Alice Example").matches
    assert b.searcher("owners").owner("Bob").matches
    assert b.manifest["backends"]["bloom"]["params"]["width"] == 10  # rebuilt with the same parameters
    assert b.manifest["audit_log"][-1]["removed"] == 2
    assert "Alice" not in (path / MANIFEST).read_text()  # who asked is not recorded


def test_unknown_backend_parameter_is_an_error(tmp_path: Path) -> None:
    from spacerini.errors import BackendParameterError

    for backend in ("bm25", "dense", "exact", "bloom", "owners"):
        with pytest.raises(BackendParameterError, match="widht"):
            build_bundle(DATA / "tiny.jsonl", tmp_path / backend, backends=[backend],
                         backend_params={backend: {"widht": 3}}, progress=False)
        assert not (tmp_path / backend).exists()


def test_manifest_category_counts_are_capped() -> None:
    from collections import Counter

    from spacerini.records import top_counts

    assert top_counts(Counter({"MIT": 5, "GPL": 3, "BSD": 2, "X": 1}), most=2) == {"MIT": 5, "GPL": 3, "(other)": 3}
    assert top_counts(Counter({"MIT": 1}), most=2) == {"MIT": 1}


def test_an_interrupted_docstore_write_raises_the_interrupt(tmp_path: Path) -> None:
    """Ctrl-C in the middle of one add must surface as the interrupt, not an error of the half-added record."""
    from spacerini.docstore import DocstoreWriter

    with pytest.raises(KeyboardInterrupt):
        with DocstoreWriter(tmp_path / "docs") as writer:
            writer.add(Doc(id="a", text="complete"))
            writer._lengths.append(1)  # the state an interrupt inside add() leaves: a header without its record
            raise KeyboardInterrupt
