"""Shared fixtures of the model tests: a tiny code bundle and a tiny tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacerini.records import Doc

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = DATA / "model_corpus.jsonl"


def corpus_docs() -> list[Doc]:
    """The four documents of ``tests/data/model_corpus.jsonl`` (three PSF-2.0, one MIT)."""
    docs = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        docs.append(Doc(id=rec["id"], text=rec["text"], fields={"path": rec["meta"]["path"]}, meta=rec["meta"]))
    return docs


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory):
    """A bundle of the tiny corpus with the exact and bloom backends."""
    from spacerini.bundle import build_bundle

    out = tmp_path_factory.mktemp("model") / "bundle"
    return build_bundle(corpus_docs(), out, backends=["exact", "bloom"], progress=False)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A 400-token byte-level BPE with StarCoder's special tokens, trained on the tiny corpus."""
    from spacerini.model.tokenizer import train_tokenizer

    return train_tokenizer([d.text for d in corpus_docs()], vocab_size=400, max_length=64)
