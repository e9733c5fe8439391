"""The docstore: round trips of awkward documents, random access against sequential reads, the
id index, checksums written while writing, and format 1 (Parquet) bundles still opening."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from types import MappingProxyType

import pytest

from spacerini.bundle import MANIFEST, build_bundle, open_bundle
from spacerini.docstore import (
    BLOCKS,
    META,
    RECORDS,
    Docstore,
    DocstoreWriter,
    ParquetDocstore,
    written_checksums,
)
from spacerini.errors import BundleCorruptError
from spacerini.records import Doc

DATA = Path(__file__).parent / "data"
OLD_BUNDLE = DATA / "bundle_v1"  # built by spacerini before format 2 (docs/docs.parquet)


def _awkward_docs() -> list[Doc]:
    """Documents that break naive stores: surrogates, empties, a huge one, odd ids."""
    rng = random.Random(7)
    words = ["alpha", "βήτα", "гамма", "デルタ", "🙂", "x" * 40, "\x00nul", "tab\tand\nnewline"]
    docs = [
        Doc(
            id="surrogate-\udcff",
            text="lone \udc80 surrogate \ud800 too",
            fields=MappingProxyType({"k": "\udcfe"}),
        ),
        Doc(id="empty", text=""),
        Doc(id="", text="an empty id"),
        Doc(id="line\nbreak id", text="ids with a line break still round-trip"),
        Doc(
            id="ünïcödé/日本語#1",
            text="unicode id",
            meta=MappingProxyType({"owner": "Zoë", "n": 3, "x": [1, 2]}),
        ),
        Doc(id="huge", text=" ".join(rng.choice(words) for _ in range(400_000))),  # ~5 MB, many blocks' worth
    ]
    for i in range(300):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 120)))
        fields = MappingProxyType({"title": f"t{i}", "year": 2000 + i}) if i % 3 else MappingProxyType({})
        docs.append(Doc(id=f"d{i:04d}", text=text, fields=fields))
    return docs


@pytest.fixture(scope="module")
def store_docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Docstore, list[Doc], DocstoreWriter]:
    folder = tmp_path_factory.mktemp("store") / "docs"
    docs = _awkward_docs()
    with DocstoreWriter(folder, block_bytes=1024) as writer:  # small blocks: many block edges
        for doc in docs:
            writer.add(doc)
    return Docstore(folder), docs, writer


def test_round_trip_by_row_and_sequential(store_docs) -> None:
    store, docs, writer = store_docs
    assert len(store) == len(docs) == writer.count
    assert writer.text_bytes == sum(len(d.text.encode("utf-8", "surrogatepass")) for d in docs)
    assert json.loads((store.path.parent / META).read_text())["blocks"] > 20
    assert list(store.iter_docs()) == docs
    for row in range(len(docs)):  # random access equals sequential iteration, on every row
        assert store.by_row(row) == docs[row]
    assert store.by_row(0).fields["k"] == "\udcfe"
    assert store.by_row(4).meta["x"] == [1, 2]
    with pytest.raises(IndexError):
        store.by_row(len(docs))
    with pytest.raises(IndexError):
        store.by_row(-1)


def test_iter_docs_ranges(store_docs) -> None:
    store, docs, _ = store_docs
    rng = random.Random(1)
    for _ in range(30):
        start, stop = sorted(rng.sample(range(len(docs) + 1), 2))
        assert list(store.iter_docs(start=start, stop=stop)) == docs[start:stop]
    assert list(store.iter_docs(start=5, stop=5)) == []
    assert list(store.iter_docs(start=len(docs) - 1, stop=10**9)) == docs[-1:]


def test_lookup_by_id(store_docs) -> None:
    store, docs, _ = store_docs
    order = list(range(len(docs)))
    random.Random(3).shuffle(order)
    for row in order:
        doc = docs[row]
        assert store.row_of(doc.id) == row
        assert store.get(doc.id) == doc
        assert store.display(doc.id) == (doc.fields, doc.meta)
        assert doc.id in store
    assert store.get_many([docs[9].id, docs[2].id]) == [docs[9], docs[2]]
    for missing in ("nope", "d9999", "surrogate-", "line"):
        assert missing not in store
        with pytest.raises(KeyError):
            store.get(missing)
        with pytest.raises(KeyError):
            store.row_of(missing)
        with pytest.raises(KeyError):
            store.display(missing)
    assert 3 not in store


def test_ids_lengths_and_meta(store_docs) -> None:
    store, docs, _ = store_docs
    assert store.ids() == [d.id for d in docs]  # one id holds a line break: read from the records
    assert store.text_lengths() == [len(d.text.encode("utf-8", "surrogatepass")) for d in docs]
    rows = list(store.iter_meta())
    assert [r["id"] for r in rows] == [d.id for d in docs]
    assert [json.loads(r["fields"]) for r in rows] == [dict(d.fields) for d in docs]
    assert [json.loads(r["meta"]) for r in rows] == [dict(d.meta) for d in docs]
    assert list(store.iter_meta(columns=("meta",)))[4] == {
        "meta": json.dumps(dict(docs[4].meta), ensure_ascii=False)
    }


def test_raw_parts_are_the_documents_texts_and_provenance(store_docs) -> None:
    store, docs, _ = store_docs
    texts: list[bytes] = []
    provenance: list[tuple[int, bytes]] = []
    for block_texts, block_provenance in store.iter_parts():
        assert len(block_texts) == len(block_provenance) > 0
        texts.extend(block_texts)
        provenance.extend(block_provenance)
    assert texts == [d.text.encode("utf-8", "surrogatepass") for d in docs]
    metas = list(store.iter_meta(columns=("fields", "meta")))
    for (split, raw), doc, meta in zip(provenance, docs, metas, strict=True):
        fields = raw[:split].decode("utf-8", "surrogatepass") or "{}"
        assert json.loads(fields) == dict(doc.fields) and fields == meta["fields"]
        assert json.loads(raw[split:] or b"{}") == dict(doc.meta)


def test_newline_free_ids_come_from_the_id_file(tmp_path: Path) -> None:
    docs = [Doc(id=f"é{i}", text=f"text {i}") for i in range(50)]
    with DocstoreWriter(tmp_path / "docs") as writer:
        for doc in docs:
            writer.add(doc)
    assert json.loads((tmp_path / "docs" / META).read_text())["ids_newline_free"] is True
    assert Docstore(tmp_path / "docs").ids() == [d.id for d in docs]


def test_duplicate_ids_resolve_to_the_last_row_as_before(tmp_path: Path) -> None:
    with DocstoreWriter(tmp_path / "docs") as writer:
        for i, text in enumerate(["first", "other", "second"]):
            writer.add(Doc(id="other" if i == 1 else "dup", text=text))
    store = Docstore(tmp_path / "docs")
    assert store.row_of("dup") == 2 and store.get("dup").text == "second"


def test_zstd_codec_and_empty_store(tmp_path: Path) -> None:
    docs = _awkward_docs()[:40]
    with DocstoreWriter(tmp_path / "zstd", codec="zstd", block_bytes=512) as writer:
        for doc in docs:
            writer.add(doc)
    assert json.loads((tmp_path / "zstd" / META).read_text())["codec"] == "zstd"
    store = Docstore(tmp_path / "zstd")
    assert [store.by_row(i) for i in range(len(docs))] == docs == list(store.iter_docs())
    with DocstoreWriter(tmp_path / "empty"):
        pass
    empty = Docstore(tmp_path / "empty")
    assert (
        len(empty) == 0 and list(empty.iter_docs()) == [] and empty.ids() == [] and empty.text_lengths() == []
    )
    assert "x" not in empty and list(empty.iter_meta()) == []


def test_checksums_are_hashed_while_writing(store_docs) -> None:
    store, _, writer = store_docs
    folder = store.path.parent
    sums = writer.checksums
    assert set(sums) == {p.name for p in folder.iterdir()}
    for name, info in sums.items():
        data = (folder / name).read_bytes()
        assert info == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert written_checksums(folder) == {name: info for name, info in sums.items() if name != META}


def test_bundle_takes_written_checksums_and_verify_still_reads(tmp_path: Path) -> None:
    bundle = build_bundle(DATA / "tiny.jsonl", tmp_path / "b", backends=["exact"], progress=False)
    manifest = json.loads((bundle.path / MANIFEST).read_text())
    docs = bundle.path / "docs"
    for name in (RECORDS, META, BLOCKS):
        assert (
            manifest["checksums"][f"docs/{name}"]["sha256"]
            == hashlib.sha256((docs / name).read_bytes()).hexdigest()
        )
    open_bundle(bundle.path, verify=True)
    data = bytearray((docs / BLOCKS).read_bytes())
    data[-1] ^= 0x01
    (docs / BLOCKS).write_bytes(bytes(data))
    with pytest.raises(BundleCorruptError, match="SHA-256"):
        open_bundle(bundle.path, verify=True)


def test_corrupt_store_is_one_clear_error(store_docs, tmp_path: Path) -> None:
    store, _, _ = store_docs
    copy = tmp_path / "docs"
    shutil.copytree(store.path.parent, copy)
    (copy / META).write_text("{}")
    with pytest.raises(BundleCorruptError, match="cannot read the docstore"):
        Docstore(copy)
    shutil.rmtree(copy)
    shutil.copytree(store.path.parent, copy)
    data = (copy / RECORDS).read_bytes()
    (copy / RECORDS).write_bytes(data[:-10])
    with pytest.raises(BundleCorruptError, match="does not match"):
        Docstore(copy)
    (copy / RECORDS).write_bytes(bytes(len(data)))  # right size, zeros: every block is corrupt
    with pytest.raises(BundleCorruptError, match="corrupt"):
        Docstore(copy).by_row(0)
    (copy / RECORDS).unlink()
    with pytest.raises(BundleCorruptError, match="cannot read the docstore"):
        Docstore(copy)


def test_store_keeps_reading_its_files_after_they_are_replaced(store_docs, tmp_path: Path) -> None:
    store, docs, _ = store_docs
    copy = tmp_path / "docs"
    shutil.copytree(store.path.parent, copy)
    opened = Docstore(copy)
    shutil.rmtree(copy)  # a newer generation replaced and deleted the folder...
    with DocstoreWriter(copy) as writer:  # ...and wrote its own at the same path
        writer.add(Doc(id="new", text="a newer generation"))
    assert opened.get(docs[123].id) == docs[123]
    assert list(opened.iter_docs(start=100, stop=110)) == docs[100:110]
    assert opened.ids() == [d.id for d in docs] and len(opened.text_lengths()) == len(docs)
    assert "new" not in opened and len(Docstore(copy)) == 1


def test_format_1_bundle_still_opens(tmp_path: Path) -> None:
    copy = tmp_path / "old"
    shutil.copytree(OLD_BUNDLE, copy)
    bundle = open_bundle(copy, verify=True)
    assert bundle.info()["format_version"] == 1
    store = bundle.docstore
    assert isinstance(store, ParquetDocstore) and isinstance(store, Docstore)
    lines = [
        json.loads(x) for x in (DATA / "corpus_docs.jsonl").read_text(encoding="utf-8").splitlines() if x
    ]
    docs = list(store.iter_docs())
    assert [d.id for d in docs] == [x["id"] for x in lines] == store.ids()
    assert [store.by_row(i) for i in range(len(docs))] == docs
    assert store.get("d4").fields["title"] == "Title 4: Delta" and store.row_of("d4") == 3 and "d4" in store
    assert store.display("d4") == (docs[3].fields, docs[3].meta)
    assert "nope" not in store
    assert store.text_lengths() == [len(x["contents"].encode()) for x in lines]
    parts = [
        (text, split, raw)
        for texts, provenance in store.iter_parts()
        for text, (split, raw) in zip(texts, provenance, strict=True)
    ]
    assert [text for text, _, _ in parts] == [d.text.encode() for d in docs]
    assert [json.loads(raw[:split] or b"{}") for _, split, raw in parts] == [dict(d.fields) for d in docs]
    assert [json.loads(raw[split:] or b"{}") for _, split, raw in parts] == [dict(d.meta) for d in docs]
    assert any(split for _, split, _ in parts)
    hits = bundle.search("charlie", backend="exact", k=3)
    assert hits and hits[0].fields.get("title", "").startswith("Title")


def test_search_pages_carry_the_stored_fields_with_and_without_snippets(tmp_path: Path) -> None:
    bundle = build_bundle(DATA / "corpus_docs.jsonl", tmp_path / "b", backends=["exact"], progress=False)
    for snippets in (False, True):
        hits = bundle.search("echo foxtrot", backend="exact", k=5, snippets=snippets)
        assert [h.docid for h in hits] == ["d1", "d2", "d3", "d4"]  # the four texts holding the phrase
        for hit in hits:
            doc = bundle.doc(hit.docid)
            assert (hit.fields, hit.meta) == (doc.fields, doc.meta) and hit.fields["title"].startswith(
                "Title"
            )


def test_fields_are_stored_as_json_writes_them_back(tmp_path: Path) -> None:
    """orjson writes the common fields; whatever it would write otherwise goes through json."""
    import enum
    from datetime import date

    from spacerini.docstore import _ENCODER, _dump

    class Colour(enum.Enum):
        RED = 1

    values = [
        {"title": "t", "year": 2000, "ok": True, "none": None, "é": "ünï\n\"q\"\\"},
        {"score": 0.1, "nan": float("nan"), "inf": float("-inf")},
        {"big": 10**30, "list": [1, "a", None], "nested": {"a": {"b": 1.5}}},
        {1: "int key", "k": "v"},
        {"s": "lone \udc80 surrogate"},
        {"d": date(2024, 1, 2), "e": Colour.RED},
    ]
    for value in values:
        got = json.loads(_dump(value).decode("utf-8", "surrogatepass"))
        want = json.loads(_ENCODER.encode(value))
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True), value
    assert _dump({}) == b""
