"""Bad input: one clear error naming the file, the line and what to do."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from spacerini.corpus import load_corpus
from spacerini.errors import (
    CorpusError,
    CorpusNotFoundError,
    DuplicateIdError,
    EmptyCorpusError,
    MalformedRecordError,
    MissingFieldError,
)

DATA = Path(__file__).resolve().parents[1] / "data"

GOOD = b'{"id": "a", "text": "first"}\n{"id": "b", "text": "second"}\n'
LATIN1_JSONL = GOOD + '{"id": "c", "text": "café"}\n'.encode("latin-1")
LATIN1_CSV = b"id,text\na,ok\nb,caf\xe9\n"
LATIN1_ARRAY = b'[\n  {"id": "a", "text": "x"},\n  {"id": "b", "text": "caf\xe9"}\n]\n'

# (file name, bytes, error class, line, words the message must hold)
CASES = [
    (
        "malformed.jsonl",
        GOOD + b'{"id": "c", "text": "oops"\n',
        MalformedRecordError,
        3,
        ["malformed JSON", "delimiter"],
    ),
    ("list.jsonl", GOOD + b"\n[1, 2]\n", MalformedRecordError, 4, ["a list, not an object"]),
    (
        "no_id.jsonl",
        GOOD + b'{"text": "x", "title": "t"}\n',
        MissingFieldError,
        3,
        ["no id field 'id'", "text, title", "--id-field"],
    ),
    (
        "no_id_first.jsonl",
        b'{"name": "a", "text": "x"}\n',
        MissingFieldError,
        1,
        ["no id field", "id, docid, _id, doc_id", "name, text", "--id-field"],
    ),
    (
        "no_contents.jsonl",
        GOOD + GOOD.replace(b'"a"', b'"c"').replace(b'"b"', b'"d"') + b'{"id": "e", "body": "x"}\n',
        MissingFieldError,
        5,
        ["no contents field 'text'", "id, body", "--fields"],
    ),
    (
        "no_contents_first.jsonl",
        b'{"id": "a", "abstract": "x", "year": 2000}\n',
        MissingFieldError,
        1,
        ["no contents field", "contents, text, content, body", "--fields", "text columns here: abstract"],
    ),
    ("empty_id.jsonl", GOOD + b'{"id": "  ", "text": "x"}\n', MalformedRecordError, 3, ["empty id"]),
    ("null_id.jsonl", b'{"id": null, "text": "x"}\n', MissingFieldError, 1, ["null", "--id-field"]),
    (
        "list_id.jsonl",
        GOOD + b'{"id": [1], "text": "x"}\n',
        MalformedRecordError,
        3,
        ["id field 'id' is a list"],
    ),
    (
        "nonstring.jsonl",
        GOOD + b'{"id": "c", "text": ["not", "a", "string"]}\n',
        MalformedRecordError,
        3,
        ["contents field 'text' is a list, not a string", "--fields"],
    ),
    (
        "number_text.jsonl",
        b'{"id": "c", "text": 12}\n',
        MalformedRecordError,
        1,
        ["contents field 'text' is a number (12), not a string"],
    ),
    (
        "latin1.jsonl",
        LATIN1_JSONL,
        MalformedRecordError,
        3,
        ["invalid UTF-8 byte 0xe9", f"byte offset {LATIN1_JSONL.index(0xE9)};", "iconv"],
    ),
    (
        "duplicate.jsonl",
        GOOD + b'{"id": "c", "text": "x"}\n{"id": "a", "text": "again"}\n',
        DuplicateIdError,
        4,
        ["duplicate id 'a'", "first at {path}:1"],
    ),
    (
        "int_duplicate.jsonl",
        b'{"id": 1, "text": "x"}\n{"id": "1", "text": "y"}\n',
        DuplicateIdError,
        2,
        ["duplicate id '1'", "first at {path}:1"],
    ),
    (
        "bad_row.csv",
        b'id,text\na,"one\ntwo"\nb,fine\nc,too,many\n',
        MalformedRecordError,
        5,
        ["row has 3 cells but the header has 2"],
    ),
    (
        "latin1.csv",
        LATIN1_CSV,
        MalformedRecordError,
        3,
        [f"byte offset {LATIN1_CSV.index(0xE9)};", "iconv"],
    ),
    ("dupe_header.tsv", b"id\ttext\tid\na\tb\tc\n", MalformedRecordError, 1, ["repeats column(s) id"]),
    (
        "array.json",
        b'[\n  {"id": "a", "text": "x"},\n  {"id": "b", "text": "y"},\n  {"id": "c" "text": "z"}\n]\n',
        MalformedRecordError,
        4,
        ["malformed JSON", "delimiter"],
    ),
    (
        "truncated.json",
        b'[\n  {"id": "a", "text": "x"},\n  {"id": "b", "text": "y"}\n',
        MalformedRecordError,
        4,
        ["truncated JSON array"],
    ),
    (
        "utf16.jsonl",
        '{"id": "a", "text": "x"}\n'.encode("utf-16"),
        MalformedRecordError,
        1,
        ["is UTF-16", "iconv -f UTF-16 -t UTF-8"],
    ),
    (
        "utf16.csv",
        "id,text\na,x\n".encode("utf-16"),
        MalformedRecordError,
        1,
        ["is UTF-16", "iconv -f UTF-16 -t UTF-8"],
    ),
    (
        "latin1_array.json",
        LATIN1_ARRAY,
        MalformedRecordError,
        3,
        ["invalid UTF-8", f"byte offset {LATIN1_ARRAY.index(0xE9)};", "iconv"],
    ),
    (
        "object.json",
        b'{\n  "data": [{"id": "a", "text": "x"}]\n}\n',
        MalformedRecordError,
        1,
        ["one top-level JSON array"],
    ),
    (
        "lone_surrogate.jsonl",
        GOOD + b'{"id": "c", "text": "x\\ud800y"}\n',
        MalformedRecordError,
        3,
        ["field 'text'", "lone UTF-16 surrogate", "fix the escape or remove the line"],
    ),
    (
        "lone_low_surrogate_in_meta.jsonl",
        b'{"id": "a", "text": "ok", "meta": {"tags": ["t", "\\uDC00"]}}\n',
        MalformedRecordError,
        1,
        ["field 'meta.tags[1]'", "lone UTF-16 surrogate"],
    ),
    (
        "lone_surrogate_array.json",
        b'[\n  {"id": "a", "text": "x"},\n  {"id": "b",\n   "text": "\\ud83d"}\n]\n',
        MalformedRecordError,
        3,
        ["field 'text'", "lone UTF-16 surrogate"],
    ),
]


@pytest.mark.parametrize(("name", "content", "error", "line", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_file(
    tmp_path: Path, name: str, content: bytes, error: type[CorpusError], line: int, words: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error) as caught:
        list(load_corpus(path, progress=False))
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert caught.value.path == str(path) and caught.value.line == line
    for word in words:
        assert word.format(path=path) in message, message
    assert "\n" not in message


def test_bad_gz_line_and_decompressed_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(GOOD + b'{"id": "c", "text": "caf\xe9"}\n'))
    with pytest.raises(MalformedRecordError, match=r"bad\.jsonl\.gz:3: .*decompressed"):
        list(load_corpus(path, progress=False))


def test_parquet_row_numbers(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    table = pa.table({"id": ["a", "b", None, "d"], "text": ["w", "x", "y", "z"]})
    pq.write_table(table, path, row_group_size=2)
    with pytest.raises(MissingFieldError) as caught:
        list(load_corpus(path, progress=False))
    assert str(caught.value).startswith(f"{path}:3: id field 'id' is null")


def test_duplicate_ids_across_files_of_a_folder() -> None:
    folder = DATA / "corpus_dupes"
    with pytest.raises(DuplicateIdError) as caught:
        list(load_corpus(folder, progress=False))
    assert str(caught.value).startswith(
        f"{folder / 'b.jsonl'}:3: duplicate id 'x3' (first at {folder / 'a.jsonl'}:3)"
    )


def test_errors_found_late_still_stop_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "late.jsonl"
    path.write_bytes(GOOD * 1 + b"".join(b'{"id": "n%d", "text": "t"}\n' % i for i in range(50)) + b"{oops\n")
    seen = []
    with pytest.raises(MalformedRecordError, match=r"late\.jsonl:53: "):
        for doc in load_corpus(path, progress=False):
            seen.append(doc.id)
    assert len(seen) == 52


def test_missing_file_and_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(CorpusNotFoundError, match=r"nope\.jsonl: no such file") as caught:
        load_corpus(missing)
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(CorpusNotFoundError, match=r"gone: no such file or folder"):
        load_corpus(tmp_path / "gone", format="code")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    with pytest.raises(EmptyCorpusError, match=r"empty\.jsonl: the file is empty"):
        load_corpus(path)
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n\n  \n")
    with pytest.raises(EmptyCorpusError, match=r"blank\.jsonl: holds no records"):
        load_corpus(blank)
    header_only = tmp_path / "header.csv"
    header_only.write_bytes(b"id,text\n")
    with pytest.raises(EmptyCorpusError, match=r"header\.csv"):
        load_corpus(header_only)


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    (tmp_path / ".hidden.jsonl").write_text('{"id": "a", "text": "x"}\n')
    with pytest.raises(EmptyCorpusError) as caught:
        load_corpus(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: no data files")
    for suffix in (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".jsonl.gz"):
        assert suffix in message
    (tmp_path / "empty.jsonl").write_bytes(b"\n")
    with pytest.raises(EmptyCorpusError, match=str(tmp_path)):
        load_corpus(tmp_path)


def test_empty_dataset_from_python() -> None:
    with pytest.raises(EmptyCorpusError, match="holds no records"):
        load_corpus([])


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_text('{"id": "a", "text": "x"}\n')
    with pytest.raises(CorpusError, match=r"docs\.txt: unsupported file type \.txt: .*--format"):
        load_corpus(path)


def test_unknown_options() -> None:
    with pytest.raises(CorpusError, match="unknown format 'xml'"):
        load_corpus(DATA / "corpus_docs.jsonl", format="xml")
    with pytest.raises(CorpusError, match="only to format='code'"):
        load_corpus(DATA / "corpus_docs.jsonl", owner="me")
    with pytest.raises(CorpusError, match="cannot load a corpus from a int"):
        load_corpus(3)  # type: ignore[arg-type]


def test_explicit_id_field_absent(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(GOOD)
    with pytest.raises(MissingFieldError, match=r"docs\.jsonl:1: no id field 'pid'; the record has id, text"):
        load_corpus(path, id_field="pid")


def test_corrupt_parquet_and_gzip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(MalformedRecordError, match=r"bad\.parquet: not a readable Parquet file"):
        load_corpus(bad)
    packed = tmp_path / "cut.jsonl.gz"
    packed.write_bytes(gzip.compress(GOOD * 100)[:60])
    with pytest.raises(MalformedRecordError, match=r"cut\.jsonl\.gz: cannot read the file"):
        list(load_corpus(packed, progress=False))


def test_folder_error_names_the_inner_file(tmp_path: Path) -> None:
    shutil.copytree(DATA / "corpus_folder", tmp_path / "corpus")
    broken = tmp_path / "corpus" / "part-b" / "one.jsonl"
    broken.write_bytes(broken.read_bytes() + b"not json\n")
    with pytest.raises(MalformedRecordError) as caught:
        list(load_corpus(tmp_path / "corpus", progress=False))
    assert str(caught.value).startswith(f"{broken}:4: malformed JSON")


def test_surrogate_pairs_are_text(tmp_path: Path) -> None:
    """A valid escaped pair (an emoji) is one character, not an error."""
    path = tmp_path / "emoji.jsonl"
    path.write_bytes(GOOD + b'{"id": "c", "text": "smile \\ud83d\\ude00"}\n')
    docs = list(load_corpus(path, progress=False))
    assert docs[-1].text == "smile \U0001f600"


#: Lines where orjson and json could part ways, and ordinary ones: the reader must give for each
#: exactly what json.loads gives (or the same one-line error).
_PARSER_EDGE_LINES = [
    '{"id": "a", "contents": "plain"}',
    '{"id": 12345678901234567890123, "contents": "an id beyond 64 bits"}',
    '{"id": "b", "contents": "x", "n": 98765432109876543210}',
    '{"id": "c", "contents": "x", "score": 0.1, "big": 1e300}',
    '{"id": "d", "contents": "x", "inf": 1e400}',
    '{"id": "e", "contents": "x", "v": NaN, "w": -Infinity}',
    '{"id": "f", "contents": "x", "id": "f2"}',
    '{"id": "g", "contents": "pair \\ud83d\\ude00 and \\u00e9", "nested": {"a": [1, 2.5, {"b": 3}]}}',
    '  {"id": "h", "contents": "spaces around"}  ',
    '{"id": "i", "contents": "x", "deep": [[[[1]]]], "t": true, "z": null}',
    "",
    "   ",
]


def test_fast_json_lines_give_exactly_what_json_gives(tmp_path: Path) -> None:
    import json

    from spacerini.corpus import files

    path = tmp_path / "edge.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(_PARSER_EDGE_LINES).encode("utf-8") + b"\n")
    got = [(record, line) for record, _, line in files.read_jsonl(path)]
    want = [
        (json.loads(text), n)
        for n, text in enumerate(_PARSER_EDGE_LINES, start=1)
        if text.strip()
    ]
    assert len(got) == len(want)
    for (g, gl), (w, wl) in zip(got, want, strict=True):
        assert gl == wl
        assert json.dumps(g, sort_keys=True) == json.dumps(w, sort_keys=True)  # NaN-safe equality
        assert {k: type(v) for k, v in g.items()} == {k: type(v) for k, v in w.items()}
    # Where the types decide: the 23-digit id stays an int (orjson alone reads a float).
    assert got[1][0]["id"] == 12345678901234567890123
    assert files.fast_json_line(b'{"id": 12345678901234567890123}') is None
    assert files.fast_json_line(b'{"id": "a", "x": [1, {"y": 0.5}]}') is None
    assert files.fast_json_line(b'{"id": "a", "contents": "b"}') == {"id": "a", "contents": "b"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"id": "a", "contents": "lone \\ud800"}', "lone UTF-16 surrogate"),
        (b'{"id": "a", "contents": "cut', "malformed JSON"),
        (b'{"id": "a", "contents": "caf\xe9"}', "invalid UTF-8 byte 0xe9"),
    ],
)
def test_lines_the_fast_parser_refuses_keep_their_one_line_errors(tmp_path: Path, line: bytes, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": "ok", "contents": "fine"}\n' + line + b"\n")
    with pytest.raises(MalformedRecordError) as caught:
        list(load_corpus(path))
    assert message in str(caught.value)
    assert "bad.jsonl:2" in str(caught.value)


def test_fast_json_lines_match_json_on_mutated_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random byte-level mutations of real records (flips, cuts, escapes, odd numbers): reading
    with the orjson fast path gives the same records, or the same one-line error, as json alone."""
    import json
    import random

    from spacerini.corpus import files

    rng = random.Random(11)
    seeds = [
        b'{"id": "a1", "contents": "caf\\u00e9 \\ud83d\\ude00 tab\\tnew\\nline", "n": 7, "ok": true}',
        b'{"id": 42, "contents": "x", "title": null, "tags": ["a", {"b": [1, 2]}]}',
        b'{"id": "z", "contents": "\xc3\xa9t\xc3\xa9", "big": 18446744073709551615, "neg": -9223372036854775808}',
    ]
    inserts = [b"\\ud800", b"NaN", b"1e999", b"1.5", b"99999999999999999999", b"\xff", b"\x00", b'"', b"\\", b"}", b",", b" "]

    def outcome(path: Path) -> object:
        try:
            return [json.dumps(r, sort_keys=True) for r, _, _ in files.read_jsonl(path)]
        except MalformedRecordError as exc:
            return str(exc)

    for case in range(400):
        line = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(line) + 1)
            kind = rng.random()
            if kind < 0.4:
                line[at:at] = rng.choice(inserts)
            elif kind < 0.7 and at < len(line):
                line[at] = rng.randrange(256)
            else:
                del line[at : at + rng.randint(1, 4)]
        path = tmp_path / f"m{case}.jsonl"
        path.write_bytes(b'{"id": "first", "contents": "ok"}\n' + bytes(line) + b"\n")
        fast = outcome(path)
        monkeypatch.setattr(files, "fast_json_line", lambda raw: None)
        slow = outcome(path)
        monkeypatch.undo()
        assert fast == slow, (case, bytes(line))
