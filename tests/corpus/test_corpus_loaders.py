"""Every corpus loader: record count and pinned samples (first, tenth, last) on tiny files."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from spacerini.corpus import load_corpus
from spacerini.corpus.files import read_delimited
from spacerini.errors import CorpusError, DuplicateIdError, MalformedRecordError
from spacerini.records import Doc

DATA = Path(__file__).resolve().parents[1] / "data"
JSONL = DATA / "corpus_docs.jsonl"

FIRST = Doc(
    id="d1",
    text="alpha is word number 1. bravo charlie delta echo foxtrot",
    fields={"title": "Title 1: Alpha", "url": "https://example.org/1", "year": 2001, "score": 0.25, "tags": ["alpha", "nato"]},
)
TENTH = Doc(
    id="d10",
    text="juliet is word number 10. kilo lima mike november oscar",
    fields={"title": "Title 10: Juliet", "url": None, "year": 2010, "score": 2.5, "tags": ["juliet", "nato"]},
)
LAST = Doc(
    id="d25",
    text="yankee is word number 25. zulu alpha bravo charlie delta",
    fields={"title": "Title 25: Yankee", "url": "https://example.org/25", "year": 2025, "score": 6.25, "tags": ["yankee", "nato"]},
)


def pin(docs: list[Doc], count: int, first: Doc, tenth: Doc, last: Doc) -> None:
    assert len(docs) == count
    assert [docs[0], docs[9], docs[-1]] == [first, tenth, last]


def test_jsonl_pins_and_describe() -> None:
    corpus = load_corpus(JSONL, progress=False)
    docs = list(corpus)
    pin(docs, 25, FIRST, TENTH, LAST)
    assert docs[4].text == "Unicode: naïve café — 東京 ✓"
    assert (corpus.format, corpus.id_field, corpus.fields) == ("jsonl", "id", ("contents",))
    description = corpus.describe()
    assert description == {
        "source": str(JSONL),
        "format": "jsonl",
        "id_field": "id",
        "fields": ["contents"],
        "skipped": {},
    }
    json.dumps(description)
    assert list(corpus) == docs  # re-iterable: a second pass reads the file again


def test_fields_are_joined_and_leave_display_fields() -> None:
    docs = list(load_corpus(str(JSONL), fields="title,contents", progress=False))
    assert docs[0].text == "Title 1: Alpha\nalpha is word number 1. bravo charlie delta echo foxtrot"
    assert docs[0].fields["title"] == "Title 1: Alpha" and "text" not in docs[0].fields and docs[0].fields["url"] == "https://example.org/1"
    by_list = list(load_corpus(JSONL, fields=["title", "contents"], progress=False))
    assert by_list == docs


def test_explicit_id_field() -> None:
    corpus = load_corpus(JSONL, id_field="title", progress=False)
    first = next(iter(corpus))
    assert first.id == "Title 1: Alpha"
    assert "id" in first.fields and first.fields["id"] == "d1"


def test_jsonl_gz_equals_plain(tmp_path: Path) -> None:
    packed = tmp_path / "docs.jsonl.gz"
    packed.write_bytes(gzip.compress(JSONL.read_bytes()))
    corpus = load_corpus(packed, progress=False)
    assert corpus.format == "jsonl"
    pin(list(corpus), 25, FIRST, TENTH, LAST)


def test_parquet_equals_jsonl_across_row_groups(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in JSONL.read_text(encoding="utf-8").splitlines() if line.strip()]
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    corpus = load_corpus(path, progress=False)
    assert corpus.format == "parquet" and corpus.total == 25
    docs = list(corpus)
    pin(docs, 25, FIRST, TENTH, LAST)
    assert docs == list(load_corpus(JSONL, progress=False))


def test_json_array() -> None:
    corpus = load_corpus(DATA / "corpus_array.json", progress=False)
    docs = list(corpus)
    assert (corpus.format, corpus.id_field, corpus.fields) == ("json", "docid", ("body",))
    pin(
        docs,
        12,
        Doc("100", "Array element 100 whiskey", {"lang": "en"}),
        Doc("109", "Array element 109 foxtrot", {"lang": "en"}),
        Doc("111", "Array element 111 hotel", {"lang": "en"}),
    )


def test_json_lines_in_a_dot_json_file(tmp_path: Path) -> None:
    path = tmp_path / "lines.json"
    shutil.copy(JSONL, path)
    docs = list(load_corpus(path, progress=False))
    pin(docs, 25, FIRST, TENTH, LAST)


def test_json_array_streams_elements_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spacerini.corpus import files

    monkeypatch.setattr(files, "_READ_CHUNK", 64)  # elements are longer than a chunk
    rows = [{"id": f"r{i}", "text": "x" * (i * 13) + "\n".join(["y"] * 3)} for i in range(40)]
    path = tmp_path / "array.json"
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    docs = list(load_corpus(path, progress=False))
    assert [(d.id, d.text) for d in docs] == [(r["id"], r["text"]) for r in rows]


def test_csv_with_quoted_comma_and_line_break() -> None:
    corpus = load_corpus(DATA / "corpus_docs.csv", progress=False)
    docs = list(corpus)
    assert (corpus.format, corpus.id_field, corpus.fields) == ("csv", "doc_id", ("text",))
    pin(
        docs,
        12,
        Doc("c1", "CSV row 1, with a comma", {"title": "Row 1", "views": "10"}),
        Doc("c10", "CSV row 10, with a comma", {"title": "Row 10", "views": "100"}),
        Doc("c12", "CSV row 12, with a comma", {"title": "Row 12", "views": "120"}),
    )
    assert docs[2].text == "first line\nsecond line of row 3"


def test_a_headerless_tsv_of_id_and_text_lines_keeps_its_first_document(tmp_path: Path) -> None:
    """MS MARCO's collection.tsv: `pid<TAB>passage`, no header, passages that start with a quote."""
    path = tmp_path / "collection.tsv"
    lines = [
        "0\tThe presence of communication amid scientific minds",
        '1\t"Atomic" was the word, he said "twice"',
        '2\tA cell with a "quote" inside',
    ]
    path.write_text("\n".join(lines) + "\r\n", encoding="utf-8")
    corpus = load_corpus(path, progress=False)
    docs = list(corpus)
    assert (corpus.id_field, corpus.fields) == ("id", ("contents",))
    assert [(d.id, d.text) for d in docs] == [tuple(line.split("\t")) for line in lines]


@pytest.mark.parametrize(
    "first",
    [
        "pid\tpassage",  # column names have no spaces: a header, whatever they are called
        "id\tsome title words",  # a known column name: a header
        "doc id\tpassage text",  # an id with a space: a header
        "a\tb\tc d",  # three cells: a header
    ],
)
def test_a_tsv_whose_first_row_may_be_a_header_is_read_with_it(tmp_path: Path, first: str) -> None:
    path = tmp_path / "h.tsv"
    width = first.count("\t") + 1
    path.write_text(first + "\n" + "\t".join(["x1"] + ["some text"] * (width - 1)) + "\n", encoding="utf-8")
    rows = list(read_delimited(path, delimiter="\t"))
    assert [record for record, _, _ in rows] == [dict(zip(first.split("\t"), ["x1"] + ["some text"] * (width - 1), strict=True))]


def test_a_headerless_tsv_line_with_a_third_cell_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.tsv"
    path.write_text("0\tfine text here\n1\ttoo\tmany tabs\n", encoding="utf-8")
    with pytest.raises(MalformedRecordError, match=r"row has 3 cells; this TSV has no header row") as err:
        list(load_corpus(path, progress=False))
    assert err.value.line == 2


def test_a_tsv_that_looks_headed_but_has_no_id_column_says_how_to_add_a_header(tmp_path: Path) -> None:
    path = tmp_path / "one.tsv"
    path.write_text("42\thello\n43\tworld\n", encoding="utf-8")
    with pytest.raises(Exception, match="add the header line `id<TAB>contents`"):
        list(load_corpus(path, progress=False))


def test_csv_cells_over_the_default_field_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    big = "word " * 60_000  # 300 kB, over csv's default 128 kB cell limit
    path.write_text(f'id,text\nbig,"{big}"\n', encoding="utf-8")
    [doc] = list(load_corpus(path, progress=False))
    assert doc.text == big


def test_tsv() -> None:
    corpus = load_corpus(DATA / "corpus_docs.tsv", progress=False)
    docs = list(corpus)
    assert (corpus.format, corpus.id_field, corpus.fields) == ("tsv", "_id", ("content",))
    pin(
        docs,
        15,
        Doc("t1", "Tab separated passage 1 about bravo", {"source": "src1"}),
        Doc("t10", "Tab separated passage 10 about kilo", {"source": "src1"}),
        Doc("t15", "Tab separated passage 15 about papa", {"source": "src0"}),
    )


def test_folder_is_recursive_sorted_and_skips_hidden_files() -> None:
    corpus = load_corpus(DATA / "corpus_folder", progress=False)
    docs = list(corpus)
    assert [d.id for d in docs] == ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3", "c1", "c2", "c3"]
    pin(
        docs,
        11,
        Doc("a1", "part a doc 1"),
        Doc("c2", "part b csv 2"),
        Doc("c3", "part b csv 3"),
    )
    assert corpus.format == "mixed"
    assert corpus.describe()["files"] == 3


def test_folder_with_format_reads_only_that_format() -> None:
    docs = list(load_corpus(DATA / "corpus_folder", format="csv", progress=False))
    assert [d.id for d in docs] == ["c1", "c2", "c3"]


def test_format_overrides_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    shutil.copy(JSONL, path)
    pin(list(load_corpus(path, format="jsonl", progress=False)), 25, FIRST, TENTH, LAST)


def test_meta_columns_of_tabular_records() -> None:
    rows = [
        {"id": 7, "text": "x = 1", "repo": "r", "path": "a.py", "license": "MIT", "language": "Python"},
        {"id": 8, "text": "y = 2", "owner": "ann", "swhid": "swh:1:cnt:0", "stars": 3},
    ]
    docs = list(load_corpus(rows, progress=False))
    assert docs[0].id == "7"
    assert docs[0].meta == {"repo": "r", "path": "a.py", "licence": "MIT", "language": "Python"}
    assert docs[1].meta == {"owner": "ann", "swhid": "swh:1:cnt:0"}
    assert docs[1].fields == {"owner": "ann", "swhid": "swh:1:cnt:0", "stars": 3}


def test_python_iterables() -> None:
    rows = [{"id": f"p{i}", "text": f"row {i}", "n": i, "nested": {"a": i}} for i in range(1, 31)]
    corpus = load_corpus(rows, progress=False)
    docs = list(corpus)
    pin(
        docs,
        30,
        Doc("p1", "row 1", {"n": 1}),
        Doc("p10", "row 10", {"n": 10}),
        Doc("p30", "row 30", {"n": 30}),
    )
    assert list(corpus) == docs and corpus.total == 30 and corpus.format == "python"

    factory = load_corpus(lambda: iter(rows), progress=False)
    assert list(factory) == docs and list(factory) == docs

    one_shot = load_corpus(iter(rows), progress=False)
    assert list(one_shot) == docs  # the first record, read to resolve the fields, is replayed
    with pytest.raises(CorpusError, match="one-shot iterator"):
        list(one_shot)


def test_float_nan_becomes_null_and_dates_become_strings() -> None:
    import datetime

    rows = [{"id": "a", "text": "t", "x": float("nan"), "when": datetime.date(2024, 5, 1)}]
    [doc] = list(load_corpus(rows, progress=False))
    assert doc.fields == {"x": None, "when": "2024-05-01"}
    json.dumps(dict(doc.fields), allow_nan=False)


def test_progress_bar_counts_docs_on_stderr(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPACERINI_NO_PROGRESS", raising=False)  # tests/conftest.py sets it
    list(load_corpus(JSONL, progress=True))
    err = capsys.readouterr().err
    assert "25 docs" in err and "docs/s" in err
    list(load_corpus(JSONL, progress=False))
    assert capsys.readouterr().err == ""


def test_byte_order_mark_and_crlf_line_ends(tmp_path: Path) -> None:
    csv_path = tmp_path / "windows.csv"
    csv_path.write_bytes(b'\xef\xbb\xbfid,text\r\nw1,first\r\nw2,"two\r\nlines"\r\n')
    docs = list(load_corpus(csv_path, progress=False))
    assert [(d.id, d.text) for d in docs] == [("w1", "first"), ("w2", "two\r\nlines")]
    jsonl_path = tmp_path / "windows.jsonl"
    jsonl_path.write_bytes(b'\xef\xbb\xbf{"id": "j1", "text": "a"}\r\n{"id": "j2", "text": "b"}\r\n')
    assert [d.id for d in load_corpus(jsonl_path, progress=False)] == ["j1", "j2"]


def test_doc_objects_pass_through() -> None:
    docs = [Doc(f"x{i}", f"text {i}", {"n": i}, {"repo": "r"}) for i in range(1, 12)]
    corpus = load_corpus(docs, progress=False)
    assert list(corpus) == docs and corpus.id_field == "id"
    with pytest.raises(
        MalformedRecordError, match=r"<python list>:2: record is an object but the first record was a Doc"
    ):
        list(load_corpus([docs[0], {"id": "y", "text": "t"}], progress=False))
    with pytest.raises(
        DuplicateIdError, match=r"<python list>:3: duplicate id 'x1' \(first at <python list>:1\)"
    ):
        list(load_corpus([docs[0], docs[1], docs[0]], progress=False))
