"""The embedded default corpus: the standard library and installed distributions."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import pytest

from spacerini.corpus import python_source_corpus
from spacerini.corpus.default import STDLIB_NAME
from spacerini.errors import CorpusError


def git_style_swhid(data: bytes) -> str:
    return "swh:1:cnt:" + hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


def test_stdlib_capped() -> None:
    corpus = python_source_corpus(max_bytes=300_000, distributions=["tqdm"], progress=False)
    docs = list(corpus)
    assert len(docs) > 5
    assert all(d.id.startswith(f"{STDLIB_NAME}/") for d in docs)  # the cap is hit inside the stdlib
    assert sum(len(d.text.encode()) for d in docs) <= 300_000
    ids = [d.id for d in docs]
    assert len(set(ids)) == len(ids)
    for doc in docs:
        path = doc.meta["path"]
        assert doc.id == f"{STDLIB_NAME}/{path}" and path.endswith(".py")
        assert not {"test", "tests", "idlelib", "lib2to3", "site-packages"} & set(path.split("/")[:-1])
        assert doc.meta["owner"] == "Python Software Foundation"
        assert doc.meta["licence"] == "PSF-2.0"
        assert doc.meta["language"] == "Python"
        assert doc.fields == {"path": path, "package": STDLIB_NAME}
    assert [d.id for d in corpus] == ids  # deterministic
    assert corpus.describe()["included"] == {STDLIB_NAME: len(docs)}


def test_distributions_only() -> None:
    corpus = python_source_corpus(
        max_bytes=50_000_000, distributions=["tqdm", "idna"], include_stdlib=False, progress=False
    )
    docs = list(corpus)
    dist = importlib.metadata.distribution("tqdm")
    expected = sorted(
        str(f)
        for f in dist.files or []
        if str(f).endswith(".py") and not {"tests", "test"} & set(f.parts[:-1]) and ".." not in f.parts
    )
    tqdm_docs = [d for d in docs if d.meta["package"] == "tqdm"]
    assert [d.meta["path"] for d in tqdm_docs] == expected
    assert [d.meta["package"] for d in docs] == sorted(d.meta["package"] for d in docs)  # idna, then tqdm
    assert {d.meta["package"] for d in docs} == {"idna", "tqdm"}
    first = tqdm_docs[0]
    assert first.id == f"tqdm/{first.meta['path']}"
    assert first.meta["repo"] == "https://github.com/tqdm/tqdm"
    assert first.meta["licence"] == "MPL-2.0 AND MIT"
    assert first.meta["owner"]
    assert first.meta["version"] == dist.version
    source = Path(dist.locate_file(first.meta["path"])).read_bytes()
    assert first.text == source.decode() and first.meta["swhid"] == git_style_swhid(source)
    ids = [d.id for d in docs]
    assert len(set(ids)) == len(ids)


def test_stdlib_then_distributions_deterministic() -> None:
    corpus = python_source_corpus(max_bytes=100_000_000, max_package_bytes=100_000_000, distributions=["tqdm"], progress=False)
    first = [(d.id, d.meta["swhid"]) for d in corpus]
    second = [(d.id, d.meta["swhid"]) for d in corpus]
    assert first == second
    packages = [doc_id.split("/", 1)[0] for doc_id, _ in first]
    assert packages[0] == STDLIB_NAME and packages[-1] == "tqdm"
    assert packages.index("tqdm") == packages.count(STDLIB_NAME)
    assert any(doc_id == f"{STDLIB_NAME}/json/decoder.py" for doc_id, _ in first)


def test_unknown_distribution() -> None:
    with pytest.raises(CorpusError, match="not installed: no-such-dist"):
        python_source_corpus(distributions=["no-such-dist"])
