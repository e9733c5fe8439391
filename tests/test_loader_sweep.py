"""Loader and preprocessing sweep: messy code checkouts, deep and linked folders, CSV quoting and
command-line step options that used to be read wrongly or dropped silently."""

from __future__ import annotations

import csv
import io
import os
import random
import threading
from pathlib import Path

import pytest

from spacerini.corpus import load_corpus
from spacerini.corpus.code import read_code_file
from spacerini.corpus.files import list_data_files
from spacerini.errors import CorpusError, MalformedRecordError, PreprocessError
from spacerini.preprocess import make_steps, parse_step_options
from spacerini.records import Doc

SECRET = "root:x:0:0:SECRET-NEVER-INDEXED"


def _nest(top: Path, names: list[str]) -> None:
    """Makes top/names[0]/names[1]/... with directory fds (paths longer than PATH_MAX work)."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open("deep.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"x = 1\n")
        os.close(leaf)
    finally:
        os.close(fd)


def _unnest(top: Path, names: list[str]) -> None:
    """Removes what :func:`_nest` made, bottom up (shutil.rmtree recurses, and fails on ~1,000 levels)."""
    fds = [os.open(top, os.O_RDONLY)]
    try:
        for name in names:
            fds.append(os.open(name, os.O_RDONLY, dir_fd=fds[-1]))
        for level in range(len(names), 0, -1):
            for leftover in os.listdir(fds[level]):  # files only: the folder below is gone already
                os.unlink(leftover, dir_fd=fds[level])
            os.close(fds.pop())
            os.rmdir(names[level - 1], dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)


@pytest.fixture()
def deep(tmp_path: Path):
    """A tree 1,200 folders deep (past Python's recursion limit), removed afterwards."""
    names = ["d"] * 1200
    _nest(tmp_path, names)
    yield tmp_path
    _unnest(tmp_path, names)


# ------------------------------------------------------------------------------ code folders
@pytest.fixture()
def messy(tmp_path: Path) -> tuple[Path, Path]:
    """A checkout with links out of it, a link loop, a FIFO, a non-UTF-8 name and a .git folder."""
    outside = tmp_path / "outside"
    (outside / "ssh").mkdir(parents=True)
    (outside / "passwd.py").write_text(SECRET + "\n")
    (outside / "ssh" / "id_rsa.py").write_text(SECRET + "\n")
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "ok.py").write_text("print('ok')\n")
    (repo / "src" / "leak.py").symlink_to(outside / "passwd.py")
    (repo / "src" / "ssh").symlink_to(outside / "ssh")
    (repo / "src" / "loop.py").symlink_to("loop.py")
    (repo / "src" / "dangling.py").symlink_to(tmp_path / "nothing")
    (repo / "src" / "up").symlink_to("..")
    (repo / "src" / "README").symlink_to(outside / "passwd.py")  # not code: left out like any README
    os.mkfifo(repo / "src" / "pipe.py")
    (repo / "src" / "new\nline.py").write_text("n = 1\n")
    os.makedirs(os.fsencode(repo / "src") + b"/lat\xe9")
    with open(os.fsencode(repo / "src") + b"/lat\xe9/caf\xe9.py", "wb") as handle:
        handle.write(b"c = 1\n")
    (repo / ".git").mkdir()
    (repo / ".git" / "hook.py").write_text("h = 1\n")
    return repo, outside


def test_code_folder_never_follows_links_and_counts_every_skip(messy: tuple[Path, Path]) -> None:
    repo, _ = messy
    corpus = load_corpus(repo, format="code", progress=False)
    docs = list(corpus)
    # Reference: the regular code files of the tree (os.walk never follows links), by hand.
    assert sorted(d.id for d in docs) == ["src/new\nline.py", "src/ok.py"]
    assert all(SECRET not in d.text for d in docs)
    assert corpus.skipped == {"name_not_utf8": 1, "special_file": 1, "symlink": 5}
    assert corpus.describe()["skipped"] == corpus.skipped
    for doc in docs:  # every id can be stored (UTF-8) by the docstore and Lucene
        doc.id.encode("utf-8")


def test_read_code_file_refuses_a_link_swapped_in_after_listing(messy: tuple[Path, Path]) -> None:
    repo, _ = messy
    assert read_code_file(repo / "src" / "leak.py", max_file_bytes=1000) == (None, None, "symlink")
    assert read_code_file(repo / "src" / "pipe.py", max_file_bytes=1000) == (None, None, "special_file")
    data, text, reason = read_code_file(repo / "src" / "ok.py", max_file_bytes=1000)
    assert (data, text, reason) == (b"print('ok')\n", "print('ok')\n", "")
    # The default corpus (installed packages) reads through links on purpose.
    data, text, _ = read_code_file(repo / "src" / "leak.py", max_file_bytes=1000, follow_symlinks=True)
    assert text == SECRET + "\n"


def test_read_code_file_huge_cap_and_edges(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_bytes(b"12345")
    assert read_code_file(path, max_file_bytes=10**30)[2] == ""
    assert read_code_file(path, max_file_bytes=5)[2] == ""
    assert read_code_file(path, max_file_bytes=4)[2] == "too_large"


def test_code_folder_deeper_than_the_recursion_limit(deep: Path) -> None:
    (deep / "top.py").write_text("t = 1\n")
    docs = list(load_corpus(deep, format="code", progress=False))
    assert [d.id for d in docs] == ["d/" * 1200 + "deep.py", "top.py"]


def test_code_folder_that_cannot_be_listed_is_counted(tmp_path: Path) -> None:
    # A path over PATH_MAX cannot be listed, even by root (chmod 000 would not stop root).
    _nest(tmp_path, ["n" * 200] * 25)
    (tmp_path / "top.py").write_text("t = 1\n")
    corpus = load_corpus(tmp_path, format="code", progress=False)
    assert [d.id for d in corpus] == ["top.py"]
    assert corpus.skipped == {"unreadable_folder": 1}


# ------------------------------------------------------------------------------ data folders
def test_data_folder_deeper_than_the_recursion_limit(deep: Path) -> None:
    bottom = Path(str(deep) + "/d" * 1200)
    (bottom / "x.jsonl").write_text('{"id": "x", "text": "deep"}\n')
    assert [d.text for d in load_corpus(deep, progress=False)] == ["deep"]


def test_data_folder_that_cannot_be_listed_is_an_error(tmp_path: Path) -> None:
    _nest(tmp_path, ["n" * 200] * 25)
    (tmp_path / "top.jsonl").write_text('{"id": "t", "text": "top"}\n')
    with pytest.raises(CorpusError, match="cannot list this folder .*its files would be left out"):
        list_data_files(tmp_path)


def test_data_folder_follows_linked_folders_but_not_loops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.jsonl").write_text('{"id": "b", "text": "linked"}\n')
    top = tmp_path / "top"
    top.mkdir()
    (top / "a.jsonl").write_text('{"id": "a", "text": "plain"}\n')
    (top / "part2").symlink_to(elsewhere)
    (elsewhere / "back").symlink_to(top)  # part2/back -> top: a loop
    listed = list_data_files(top)
    assert [p.relative_to(top).as_posix() for p, _ in listed] == ["a.jsonl", "part2/b.jsonl"]
    assert "links back to a folder above it" in caplog.text
    assert [d.id for d in load_corpus(top, progress=False)] == ["a", "b"]


# ------------------------------------------------------------------------------ CSV quoting
@pytest.mark.parametrize(
    ("name", "content", "line", "words"),
    [
        # An unclosed quote used to swallow every later row into one cell, silently.
        ("unclosed.csv", 'id,text\na,"x\nb,y\nc,z\n', 2, "never closed"),
        ("unclosed_last.csv", 'id,text\na,x\nb,"y\n', 3, "never closed"),
        # Text after a closing quote used to be glued on ("y" z -> y z), silently.
        ("after.csv", 'id,text\na,x\nb,"y" z\n', 3, "text follows the closing"),
        ("after.tsv", 'id\ttext\na\t"Hello" said he\n', 2, "convert the file to JSON lines"),
    ],
)
def test_csv_quoting_errors_name_the_line(
    tmp_path: Path, name: str, content: str, line: int, words: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    # Reference: Python's csv module in strict mode refuses the same files.
    with pytest.raises(csv.Error):
        list(csv.reader(io.StringIO(content), delimiter="\t" if name.endswith(".tsv") else ",", strict=True))
    with pytest.raises(MalformedRecordError, match=words) as caught:
        list(load_corpus(path, progress=False))
    assert caught.value.line == line and caught.value.path == str(path)


def test_well_quoted_csv_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    rows = [["id", "text"], ["a", 'say "hi", then\nleave'], ["b", ""], ["c", "plain"]]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert [(d.id, d.text) for d in load_corpus(path, progress=False)] == [tuple(r) for r in rows[1:]]


# ------------------------------------------------------------------------------ step options
def _steps(*items: str) -> list:
    options = parse_step_options(items)
    return make_steps(list(options), **options)


@pytest.mark.parametrize(
    ("item", "attribute", "value"),
    [
        ("near-dedup.verify=no", "verify", False),
        ("near-dedup.verify=false", "verify", False),
        ("near-dedup.verify=True", "verify", True),
        ("language.keep_unknown=no", "keep_unknown", False),
        ("quality.only_code=off", "only_code", False),
        ("pii.fields=0", "fields", False),
    ],
)
def test_boolean_options_from_the_command_line(item: str, attribute: str, value: bool) -> None:
    if item.startswith("language"):
        item_steps = _steps(item, "language.languages=Python")
    else:
        item_steps = _steps(item)
    assert getattr(item_steps[0], attribute) is value


def test_keep_unknown_no_drops_unknown_languages() -> None:
    docs = [Doc("a", "x", meta={"language": "Python"}), Doc("b", "y")]
    [step] = _steps("language.languages=Python", "language.keep_unknown=no")
    assert [d.id for d in step(docs)] == ["a"]
    assert step.report()["removed_by"] == {"unknown_language": 1}


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("near-dedup.verify=abc", "near-dedup verify must be true or false"),
        ("near-dedup.verify=2", "near-dedup verify must be true or false"),
        ("near-dedup.seed=abc", "near-dedup seed must be a non-negative integer"),
        ("near-dedup.seed=-1", "near-dedup seed must be a non-negative integer"),
        ("near-dedup.seed=1.5", "near-dedup seed must be a non-negative integer"),
        ("near-dedup.seed=true", "near-dedup seed must be a non-negative integer"),
        ("language.keep_unknown=maybe", "language keep_unknown must be true or false"),
        ("quality.only_code=abc", "quality only_code must be true or false"),
        ("quality.max_avg_line_length=NaN", "max_avg_line_length must be a positive number"),
        ("quality.max_avg_line_length=Infinity", "max_avg_line_length must be a positive number"),
        ("pii.fields=abc", "pii fields must be true or false"),
        ("pii.kinds=[]", "pii kinds is empty"),
        ("pii.kinds=", "pii kinds is empty"),
        ("pii.kinds=EMAIL,NAME", "NAME needs a names model"),
    ],
)
def test_nonsense_step_options_are_one_clear_error(item: str, words: str) -> None:
    extra = ["language.languages=Python"] if item.startswith("language") else []
    with pytest.raises(PreprocessError, match=words):
        _steps(item, *extra)


def test_dedup_report_matches_a_python_set_and_is_deterministic() -> None:
    rng = random.Random(7)
    texts = [rng.choice(["a", "b", "a ", " a", "", "ü", "b\n", "c"]) * rng.randint(0, 3) for _ in range(500)]
    docs = [Doc(f"d{i}", t) for i, t in enumerate(texts)]
    reports = []
    for _ in range(2):
        [step] = _steps("dedup.normalize=none")
        kept = [d.text for d in step(docs)]
        assert kept == list(dict.fromkeys(texts))  # first copies, in order
        reports.append(step.report())
    report = reports[0]
    assert report["removed"] == len(texts) - len(set(texts)) == report["removed_by"]["exact_duplicate"]
    assert report["distinct"] == len(set(texts)) and report["docs_in"] == len(texts)
    assert {k: v for k, v in reports[0].items() if k != "seconds"} == {
        k: v for k, v in reports[1].items() if k != "seconds"
    }


def test_json_error_column_of_a_line_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"\n')
    with pytest.raises(MalformedRecordError, match=r"Expecting ',' delimiter \(column 24\)") as caught:
        list(load_corpus(path, progress=False))
    assert caught.value.line == 2  # the error is just past the line's last character (23 long)


def test_repeated_empty_column_names_are_named(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("id,,,text\na,1,2,x\n")
    with pytest.raises(MalformedRecordError, match=r"repeats column\(s\) \(an empty name\); column names"):
        list(load_corpus(path, progress=False))


@pytest.mark.parametrize("name", ["pyproject.toml", "package.json", "setup.cfg", ".git", "LICENSE"])
def test_a_fifo_among_the_metadata_files_does_not_hang(tmp_path: Path, name: str) -> None:
    (tmp_path / "a.py").write_text("a = 1\n")
    os.mkfifo(tmp_path / name)
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append([d.id for d in load_corpus(tmp_path, format="code", progress=False)]),
        daemon=True,
    )
    worker.start()
    worker.join(20)
    if worker.is_alive():  # blocked opening the FIFO: give it a writer that closes at once, then fail
        os.close(os.open(tmp_path / name, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
        pytest.fail(f"loading a code folder with a FIFO named {name} hung")
    assert result == [["a.py"]]


def test_data_folder_with_a_fifo_or_a_dangling_link_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": "a", "text": "x"}\n')
    os.mkfifo(tmp_path / "b.jsonl")  # reading it would wait forever for a writer
    with pytest.raises(CorpusError, match="b.jsonl: not a regular file"):
        list_data_files(tmp_path)
    (tmp_path / "b.jsonl").unlink()
    (tmp_path / "c.jsonl").symlink_to(tmp_path / "gone.jsonl")
    with pytest.raises(CorpusError, match="c.jsonl: this link leads to no regular file"):
        list_data_files(tmp_path)


def test_co_owner_lists_reach_the_owners_lookup_and_dropped_columns_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A JSON list of co-owners (as the owners backend documents them) was dropped without a
    word, so those documents had no owner: no lookup found them and no opt-out could remove them."""
    import json
    import logging

    from spacerini.bundle import build_bundle, optout

    rows = [
        {"id": "d1", "text": "shared work", "owner": ["Jane Smith", "John Smith"], "tags": ["a", 2, None], "extra": {"x": 1}},
        {"id": "d2", "text": "john alone", "owner": "John Smith", "extra": {"x": 2}, "deep": [["no"]]},
    ]
    source = tmp_path / "co.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    docs = list(load_corpus(source, progress=False))
    assert docs[0].meta["owner"] == ["Jane Smith", "John Smith"] and docs[0].fields["tags"] == ["a", 2, None]
    assert "extra" not in docs[0].fields and "deep" not in docs[1].fields
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spacerini.corpus.base"):
        list(load_corpus(source, progress=False))
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if "'extra'" in m]) == 1 and "co.jsonl:1" in said[0]  # once per column
    assert any("'deep'" in m and "co.jsonl:2" in m for m in said)
    with build_bundle(source, tmp_path / "b", backends=["bm25", "owners"], progress=False) as bundle:
        jane = bundle.searcher("owners").owner("Jane Smith")
        assert jane.matches[0].owner == "Jane Smith" and jane.matches[0].docs == 1
    optout(tmp_path / "b", owners=["jane smith"], progress=False)
    with build_bundle(source, tmp_path / "b", backends=["bm25", "owners"], progress=False) as bundle:
        assert {d.id for d in bundle} == {"d2"}  # the co-owned document stays out after a rebuild


def test_preprocessing_that_removes_everything_says_so(tmp_path: Path) -> None:
    """It said the source "holds no documents", which sent people looking at a full file."""
    from spacerini.bundle import build_bundle
    from spacerini.errors import EmptyCorpusError

    docs = [Doc(id=f"d{i}", text=f"text {i}") for i in range(3)]
    with pytest.raises(EmptyCorpusError, match=r"the preprocessing removed all 3 documents .*\(optout removed 3\)"):
        build_bundle(docs, tmp_path / "b", backends=["exact"], preprocess=["optout"],
                     preprocess_options={"optout": {"ids": ["d0", "d1", "d2"]}}, progress=False)  # fmt: skip
    with pytest.raises(EmptyCorpusError, match="holds no (documents|records)"):
        build_bundle([], tmp_path / "b", backends=["exact"], preprocess=["dedup"], progress=False)


@pytest.mark.parametrize("step", ["dedup", "near-dedup"])
def test_dedup_counts_each_cluster_once_past_the_listed_ones(step: str) -> None:
    """150 texts with 4 copies each reported 250 clusters: each removal past the 100 listed
    clusters counted as a new one."""
    from spacerini.preprocess import apply, reports

    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    texts = [" ".join(random.Random(i).choices(words, k=40)) + f" unique{i}" for i in range(150)]
    docs = [Doc(id=f"d{i}-{j}", text=texts[i]) for i in range(150) for j in range(4)]
    steps = make_steps([step])
    kept = list(apply(docs, steps))
    report = reports(steps)[0]
    assert len(kept) == 150 and report["removed"] == 450
    assert report["clusters_total"] == 150 and len(report["clusters"]) == 100
