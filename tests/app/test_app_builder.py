"""The no-code builder: inspect a file, build, search, zip the Space, deploy (Hub recorded)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from spacerini.app.builder import Builder, build_builder_app, first_record, guess_fields
from spacerini.errors import CorpusError, QueryError

DATA = Path(__file__).resolve().parents[1] / "data"


def test_first_record_and_guesses(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rec = first_record(DATA / "corpus_docs.jsonl")
    assert rec["id"] == "d1" and guess_fields(rec) == ("id", ["contents"])
    csv_rec = first_record(DATA / "corpus_docs.csv")
    assert csv_rec == {"doc_id": "c1", "title": "Row 1", "text": "CSV row 1, with a comma", "views": "10"}
    assert guess_fields(csv_rec) == ("doc_id", ["text"])
    pq.write_table(pa.table({"doc_id": ["a", "b"], "body": ["x y", "z"], "n": [1, 2]}), tmp_path / "t.parquet")
    assert guess_fields(first_record(tmp_path / "t.parquet")) == ("doc_id", ["body"])
    with pytest.raises(CorpusError):
        first_record(tmp_path / "missing.jsonl")


def test_builder_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    src = tmp_path / "upload.jsonl"
    rows = [{"id": f"r{i}", "title": f"Row {i}", "body": f"alpha beta {'gamma ' * (i % 4)} number {i}"} for i in range(20)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b = Builder(tmp_path / "work", max_upload_bytes=10_000)
    info = b.inspect("", str(src))
    assert info["columns"] == ["id", "title", "body"] and info["id_field"] == "id" and info["fields"] == ["body"]
    bundle = b.build(info["source"], id_field="id", fields=["title", "body"], backends=["bm25", "exact"], progress=False)
    assert len(bundle) == 20 and bundle.path.is_relative_to(tmp_path / "work")
    assert bundle.search("gamma", k=1)[0].docid in {"r3", "r7", "r11", "r15", "r19"}
    first = b.space_zip(bundle, title="Rows")
    archive = b.space_zip(bundle, title="Rows")  # a second click: the first zip (a whole bundle) is gone
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"README.md", "app.py", "requirements.txt", "packages.txt", "bundle/spacerini.json"} <= names
    assert archive.exists() and not first.exists() and not first.parent.exists()
    b.remove_zips()  # as at exit
    assert not archive.parent.exists()

    calls: list[tuple[str, Any]] = []

    class FakeApi:
        def __init__(self, token: str | None = None) -> None:
            calls.append(("token", token))

        def create_repo(self, repo_id: str, **kw: Any) -> None:
            calls.append(("create", repo_id))

        def upload_folder(self, **kw: Any) -> None:
            calls.append(("upload", kw["repo_id"]))

    from tests.hub_helpers import fake_hub

    with fake_hub(monkeypatch) as fake:  # answers the reachability probe; the calls go to FakeApi
        monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
        assert b.deploy(bundle, " me/rows ", "hf_tok") == f"{fake.url}/spaces/me/rows"
    assert calls == [("token", "hf_tok"), ("create", "me/rows"), ("upload", "me/rows")]

    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"id": "x", "text": "y" * 20_000}) + "\n")
    with pytest.raises(CorpusError, match="at most"):
        b.source_of("", str(big))
    with pytest.raises(CorpusError, match="upload one of"):
        b.source_of("", str(tmp_path / "x.exe"))
    assert b.source_of("imdb", None) == "hf:imdb"
    with pytest.raises(QueryError, match="text field"):
        b.build(info["source"], id_field="id", fields=[], backends=["bm25"])


def test_builder_page_builds() -> None:
    app = build_builder_app()
    ids = {getattr(block, "elem_id", None) for block in app.blocks.values()}
    assert {"sb-dataset", "sb-upload", "sb-build", "sb-zip", "sb-deploy", "sb-token"} <= ids
    token = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "sb-token")
    assert token.type == "password"
