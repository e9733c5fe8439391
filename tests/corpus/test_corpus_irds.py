"""ir_datasets sources (``irds:NAME``): a dataset registered from local files, and offline errors."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import pytest

from spacerini.corpus import load_corpus
from spacerini.errors import CorpusNotFoundError, EvaluationError

DATA = Path(__file__).resolve().parents[1] / "data"


class TitledDoc(NamedTuple):
    doc_id: str
    title: str
    text: str

    def default_text(self) -> str:
        return f"{self.title} {self.text}"


@pytest.fixture(scope="module")
def tiny_irds() -> str:
    """tests/data/tiny.jsonl with its queries and qrels, registered under a fresh name."""
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import JsonlDocs, TrecQrels, TsvQueries
    from ir_datasets.util import LocalDownload

    name = f"spacerini-test/tiny-{uuid.uuid4().hex[:8]}"
    docs = JsonlDocs(
        LocalDownload(DATA / "tiny.jsonl"),
        doc_cls=TitledDoc,
        mapping={"doc_id": "id", "title": "title", "text": "contents"},
    )
    queries = TsvQueries(LocalDownload(DATA / "tiny_queries.tsv"))
    qrels = TrecQrels(LocalDownload(DATA / "tiny_qrels.txt"), {0: "not", 1: "relevant", 2: "highly"})
    ir_datasets.registry.register(name, Dataset(docs, queries, qrels))
    return name


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any DNS lookup or connection fails the test (and is recorded)."""
    calls: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError(f"network attempt: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return calls


def test_docs_from_a_registered_dataset(tiny_irds: str, no_network: list[object]) -> None:
    corpus = load_corpus(f"irds:{tiny_irds}", progress=False)
    docs = list(corpus)
    rows = [json.loads(line) for line in (DATA / "tiny.jsonl").read_text().splitlines() if line.strip()]
    assert len(docs) == len(rows) == 25
    for i in (0, 9, 24):  # first, tenth, last
        assert docs[i].id == rows[i]["id"]
        assert docs[i].text == rows[i]["contents"]
        assert docs[i].fields["title"] == rows[i]["title"]
    assert list(corpus)[3] == docs[3]  # re-iterable
    titled = list(load_corpus(f"irds:{tiny_irds}", fields="title,text", progress=False))
    assert titled[0].text == f"{rows[0]['title']}\n{rows[0]['contents']}"
    assert not list(DATA.glob("tiny.jsonl.pklz4*"))  # ir_datasets' pickled docstore is never built
    assert not no_network


def test_queries_and_qrels(tiny_irds: str, no_network: list[object]) -> None:
    from spacerini.eval import read_qrels, read_queries

    assert read_queries(f"irds:{tiny_irds}") == read_queries(DATA / "tiny_queries.tsv")
    assert read_qrels(f"irds:{tiny_irds}") == read_qrels(DATA / "tiny_qrels.txt")
    assert not no_network


def test_unknown_dataset_is_one_clear_error() -> None:
    with pytest.raises(CorpusNotFoundError, match="ir_datasets has no dataset 'no-such/dataset'"):
        load_corpus("irds:no-such/dataset", progress=False)
    with pytest.raises(CorpusNotFoundError, match="no dataset name"):
        load_corpus("irds:", progress=False)


def test_not_cached_fails_at_once_without_network(no_network: list[object]) -> None:
    """A real ir_datasets id whose files are not in the cache: an error, not a download."""
    import ir_datasets

    from spacerini.corpus.irds import missing_files

    dataset = ir_datasets.load("cranfield")
    if not missing_files(dataset.docs_handler()):
        pytest.skip("cranfield is in this machine's ir_datasets cache")
    started = time.perf_counter()
    with pytest.raises(CorpusNotFoundError, match="irds:cranfield docs are not in the local ir_datasets cache"):
        load_corpus("irds:cranfield", progress=False)
    from spacerini.eval import read_qrels

    with pytest.raises(CorpusNotFoundError, match="irds:cranfield qrels are not in the local ir_datasets cache"):
        read_qrels("irds:cranfield")
    assert time.perf_counter() - started < 5
    assert not no_network


def test_missing_local_file_and_missing_parts(tmp_path: Path, no_network: list[object]) -> None:
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TsvDocs
    from ir_datasets.util import Download, LocalDownload, RequestsDownload

    from spacerini.eval import read_queries

    gone = f"spacerini-test/gone-{uuid.uuid4().hex[:8]}"
    ir_datasets.registry.register(gone, Dataset(TsvDocs(LocalDownload(tmp_path / "nothing.tsv"))))
    with pytest.raises(CorpusNotFoundError, match="not in the local ir_datasets cache"):
        load_corpus(f"irds:{gone}", progress=False)
    with pytest.raises(EvaluationError, match="has no queries"):
        read_queries(f"irds:{gone}")
    remote = f"spacerini-test/remote-{uuid.uuid4().hex[:8]}"
    download = Download([RequestsDownload("https://example.invalid/docs.tsv")], cache_path=str(tmp_path / "d.tsv"))
    ir_datasets.registry.register(remote, Dataset(TsvDocs(download)))
    with pytest.raises(CorpusNotFoundError, match="d.tsv missing"):
        load_corpus(f"irds:{remote}", progress=False)
    # Once the file is in the cache it is read from there.
    (tmp_path / "d.tsv").write_text("x1\thello cached world\n")
    assert [(d.id, d.text) for d in load_corpus(f"irds:{remote}", progress=False)] == [("x1", "hello cached world")]
    assert not no_network


def test_cli_index_and_eval(tiny_irds: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``index irds:NAME`` then ``eval --queries irds:NAME``: the same scores as from the files."""
    from spacerini.cli import main

    def run(argv: list[str]) -> str:
        try:
            main(argv)
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr().err
        return capsys.readouterr().out

    out = tmp_path / "b"
    run(["-q", "index", f"irds:{tiny_irds}", "--out", str(out), "--fields", "title,text"])
    from_irds = json.loads(run(["eval", str(out), "--queries", f"irds:{tiny_irds}", "--json"]))
    from_files = json.loads(
        run(
            [
                "eval", str(out), "--queries", str(DATA / "tiny_queries.tsv"),
                "--qrels", str(DATA / "tiny_qrels.txt"), "--json",
            ]
        )  # fmt: skip
    )
    assert from_irds == from_files
    assert 0.5 < from_irds["nDCG@10"] <= 1.0
