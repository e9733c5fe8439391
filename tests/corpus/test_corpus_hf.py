"""Hugging Face sources, offline only: Dataset objects, save_to_disk folders, hf: names."""

from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from spacerini.corpus import load_corpus  # noqa: E402
from spacerini.corpus.hf import HfSpec, parse_hf  # noqa: E402
from spacerini.errors import CorpusNotFoundError  # noqa: E402
from spacerini.records import Doc  # noqa: E402

datasets = pytest.importorskip("datasets")

ROWS = [{"_id": f"h{i}", "title": f"T{i}", "text": f"hugging row {i}", "rank": i} for i in range(1, 1501)]
FIRST = Doc("h1", "hugging row 1", {"title": "T1", "rank": 1})
TENTH = Doc("h10", "hugging row 10", {"title": "T10", "rank": 10})
LAST = Doc("h1500", "hugging row 1500", {"title": "T1500", "rank": 1500})


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps every test off the network even if datasets was imported before the env was set."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture(scope="module")
def dataset() -> object:
    return datasets.Dataset.from_list(ROWS)


def pin(docs: list[Doc]) -> None:
    assert len(docs) == 1500
    assert [docs[0], docs[9], docs[-1]] == [FIRST, TENTH, LAST]


def test_dataset_object(dataset: object) -> None:
    corpus = load_corpus(dataset, progress=False)
    assert (corpus.format, corpus.id_field, corpus.fields, corpus.total) == (
        "dataset",
        "_id",
        ("text",),
        1500,
    )
    assert "1500 rows" in corpus.source
    docs = list(corpus)
    pin(docs)
    assert list(corpus) == docs


def test_dataset_dict_reads_train(dataset: object) -> None:
    splits = datasets.DatasetDict({"train": dataset})
    pin(list(load_corpus(splits, progress=False)))
    with pytest.raises(CorpusNotFoundError, match="no split 'train' in the DatasetDict; it has dev"):
        load_corpus(datasets.DatasetDict({"dev": dataset}))


def test_iterable_dataset_object(dataset: object) -> None:
    streaming = dataset.to_iterable_dataset(num_shards=3)  # type: ignore[attr-defined]
    corpus = load_corpus(streaming, fields=["title", "text"], progress=False)
    docs = list(corpus)
    assert len(docs) == 1500 and corpus.total is None
    assert docs[9] == Doc("h10", "T10\nhugging row 10", {"title": "T10", "rank": 10})


def test_save_to_disk_round_trip(tmp_path: Path, dataset: object) -> None:
    folder = tmp_path / "saved"
    dataset.save_to_disk(str(folder))  # type: ignore[attr-defined]
    plain = load_corpus(folder, progress=False)
    prefixed = load_corpus(f"hf:{folder}", progress=False)
    assert plain.format == prefixed.format == "hf"
    assert plain.describe()["split"] == "train"
    docs = list(plain)
    pin(docs)
    assert list(prefixed) == docs


def test_saved_dataset_dict_split(tmp_path: Path, dataset: object) -> None:
    folder = tmp_path / "dict"
    splits = datasets.DatasetDict({"train": dataset, "test": datasets.Dataset.from_list(ROWS[:5])})
    splits.save_to_disk(str(folder))
    test = load_corpus(f"hf:{folder}@test", progress=False)
    assert [d.id for d in test] == ["h1", "h2", "h3", "h4", "h5"]
    assert test.describe()["split"] == "test"
    pin(list(load_corpus(folder, progress=False)))
    with pytest.raises(CorpusNotFoundError, match=r"no split 'dev' in the saved dataset; it has train, test"):
        load_corpus(f"hf:{folder}@dev")


def test_saved_dataset_errors_name_the_row(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    rows = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    with pytest.raises(Exception, match=rf"{folder}:3: duplicate id 'a' \(first at {folder}:1\)"):
        list(load_corpus(folder, progress=False))


def test_unknown_hub_dataset_offline_is_one_clear_error() -> None:
    with pytest.raises(CorpusNotFoundError) as caught:
        load_corpus("hf:spacerini-tests/no-such-dataset-xyz@train")
    message = str(caught.value)
    assert (
        "hf:spacerini-tests/no-such-dataset-xyz is not in the local cache and the Hub cannot be reached" in message
    )
    assert "\n" not in message
    assert isinstance(caught.value, FileNotFoundError)


def test_missing_local_hf_path(tmp_path: Path) -> None:
    with pytest.raises(CorpusNotFoundError, match="no such folder"):
        load_corpus(f"hf:{tmp_path / 'missing'}")


@pytest.mark.parametrize(
    ("source", "spec"),
    [
        ("hf:squad", HfSpec("squad", None, "train")),
        ("hf:user/data:en@validation", HfSpec("user/data", "en", "validation")),
        ("hf:wikitext:wikitext-2-raw-v1", HfSpec("wikitext", "wikitext-2-raw-v1", "train")),
        ("hf:/data/saved@test", HfSpec("/data/saved", None, "test")),
        ("hf:./rel/x:y", HfSpec("./rel/x:y", None, "train")),
    ],
)
def test_parse_hf(source: str, spec: HfSpec) -> None:
    assert parse_hf(source) == spec
