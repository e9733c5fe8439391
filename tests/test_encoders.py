"""The encoder's own batching path against sentence-transformers ``encode`` (the reference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spacerini import encoders

CORPUS = Path(__file__).parent / "data" / "dense_corpus.jsonl"
TEXTS = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def enc() -> encoders.Encoder:
    return encoders.load_encoder(device="cpu")


def _reference(enc: encoders.Encoder, texts: list[str]) -> np.ndarray:
    return enc._model.encode(texts, batch_size=7, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def test_direct_path_is_used_for_minilm(enc: encoders.Encoder) -> None:
    assert enc._direct
    cls, sep = enc._tokenizer.cls_token_id, enc._tokenizer.sep_token_id
    assert (enc._prefix, enc._suffix) == ([cls], [sep])


def test_encode_matches_sentence_transformers(enc: encoders.Encoder) -> None:
    # Mixed lengths (a few tokens to past the 256-token window) and an odd batch size, so the
    # length sort, the padding and the restoring of input order are all exercised.
    texts = [TEXTS[i] for i in (0, 5, 40, 80, 120, 173)] + ["a", "short query about gzip", TEXTS[3] * 20]
    got = enc.encode(texts, batch_size=3)
    want = _reference(enc, texts)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Input order is kept: each row is closest to its own reference vector.
    assert (np.argmax(got @ want.T, axis=1) == np.arange(len(texts))).all()
    assert enc.encode([]).shape == (0, 384)


def test_encode_docs_matches_split_then_encode(enc: encoders.Encoder) -> None:
    docs = [TEXTS[10], "", "   ", TEXTS[-1], TEXTS[20]]  # TEXTS[-1] is about 1,300 tokens
    seen: list[tuple[int, int]] = []
    vectors, counts = enc.encode_docs(
        docs, max_tokens=120, overlap=16, batch_size=4, on_progress=lambda done, total: seen.append((done, total))
    )
    passages = [enc.split(doc, max_tokens=120, overlap=16) for doc in docs]
    assert counts.tolist() == [len(p) for p in passages]
    # progress after each forward pass of at most 4 passages, up to all of them
    dones = [done for done, _ in seen]
    assert {total for _, total in seen} == {int(counts.sum())} and dones[-1] == int(counts.sum())
    assert dones == sorted(dones) and all(0 < b - a <= 4 for a, b in zip([0, *dones], dones, strict=False))
    assert counts[1] == counts[2] == 0 and counts[3] > 5
    flat = [p for parts in passages for p in parts]
    np.testing.assert_allclose(vectors, _reference(enc, flat), atol=1e-5)
    empty_vectors, empty_counts = enc.encode_docs(["", " "], max_tokens=120, overlap=16)
    assert empty_vectors.shape == (0, 384) and empty_counts.tolist() == [0, 0]


def test_single_passage_ids_equal_a_fresh_tokenization(enc: encoders.Encoder) -> None:
    texts = TEXTS[:50]
    split = enc._split_many(texts, max_tokens=enc.max_tokens, overlap=32)
    fresh = enc._tokenize(texts)
    for parts, ids in zip(split, fresh, strict=True):
        if len(parts) == 1:
            assert parts[0][1] == ids


def test_library_fallback_gives_the_same_vectors(enc: encoders.Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = TEXTS[:9]
    direct = enc.encode(texts, batch_size=4)
    direct_docs, direct_counts = enc.encode_docs([TEXTS[-1][:1500], TEXTS[0]], max_tokens=200, overlap=20)
    monkeypatch.setattr(enc, "_direct", False)
    np.testing.assert_allclose(enc.encode(texts, batch_size=4), direct, atol=1e-5)
    fallback_docs, fallback_counts = enc.encode_docs([TEXTS[-1][:1500], TEXTS[0]], max_tokens=200, overlap=20)
    assert fallback_counts.tolist() == direct_counts.tolist()
    np.testing.assert_allclose(fallback_docs, direct_docs, atol=1e-5)


def test_split_rejects_bad_windows(enc: encoders.Encoder) -> None:
    with pytest.raises(ValueError, match="overlap"):
        enc.encode_docs(["text"], max_tokens=10, overlap=10)
    assert encoders._windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert encoders._windows(3, 4, 1) == [(0, 3)]


def test_passage_bar_shows_only_for_long_documents(monkeypatch) -> None:
    from spacerini.backends import dense

    made: list[int] = []

    class Bar:
        def __init__(self, total: int, **_: object) -> None:
            made.append(total)
            self.n = 0

        def update(self, step: int) -> None:
            self.n += step

        def close(self) -> None:
            pass

    monkeypatch.setattr(dense, "tqdm", Bar)
    short = dense._PassageBar(docs=1000, progress=True)
    for done in range(1, 3001, 500):
        short(done, 3000)  # 3 passages a document: no bar
    long_doc = dense._PassageBar(docs=1, progress=True)
    for done in (500, 1500, 5000):
        long_doc(done, 5000)
    quiet = dense._PassageBar(docs=1, progress=False)
    quiet(10, 5000)
    assert made == [5000] and long_doc._bar.n == 5000
    long_doc.close()


def test_a_long_text_splits_a_block_at_a_time_into_the_same_passages(
    enc: encoders.Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 12 MB document took 1.6 GB of Python offset tuples when tokenized whole; blocks cut at a
    space or a line break give exactly the same passages (BERT's pre-tokenizer splits there)."""
    import random

    rng = random.Random(0)
    words = ["alpha", "Bravo", "café", "naïve", "don't", "e-mail", "日本語", "😀", "\u00a0nbsp", "tab\there", "a.b,c;", "e\u0301", "\u0301x"]
    seps = [" ", "  ", "\n", "\r\n", " \u2003", ""]
    text = "".join(rng.choice(words) + rng.choice(seps) for _ in range(30_000))
    texts = [text, "short one", text[:7_000], "x" * 12_000 + " tail"]  # the last: no space for a whole block
    whole = enc._split_many(texts, max_tokens=64, overlap=8)
    monkeypatch.setattr(encoders, "BLOCK_CHARS", 5_000)
    assert enc._splits_at_spaces()
    blocked = enc._split_many(texts, max_tokens=64, overlap=8)
    assert blocked == whole and len(whole[0]) > 100
