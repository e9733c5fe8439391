"""The ONNX Runtime encoder against the torch encoder (the reference), its bit-stability, the
manifest's runtime field, and offline behaviour."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from spacerini import encoders
from spacerini.records import Doc

CORPUS = Path(__file__).parent / "data" / "dense_corpus.jsonl"
TEXTS = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines()]
LONG = " ".join(TEXTS) * 3  # several passages


class _NoNetwork(RuntimeError):
    pass


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh cache: the module's ONNX encoders are exported into it with sockets refused."""
    root = tmp_path_factory.mktemp("onnx-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("SPACERINI_CACHE", str(root))

    def refuse(*args: object, **kwargs: object) -> None:
        raise _NoNetwork("network used")

    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket, "create_connection", refuse)
    try:
        for key in [k for k in encoders._CACHE if k[1] in ("onnx", "onnx-int8")]:
            encoders._CACHE.pop(key)
        encoders.load_encoder(runtime="onnx")
        encoders.load_encoder(runtime="onnx-int8")
    finally:
        patch.undo()
    yield root


@pytest.fixture(scope="module")
def torch_enc() -> encoders.Encoder:
    return encoders.load_encoder(device="cpu")


@pytest.fixture(scope="module")
def onnx_enc(cache: Path) -> encoders.Encoder:
    return encoders.load_encoder(runtime="onnx")


@pytest.fixture(scope="module")
def int8_enc(cache: Path) -> encoders.Encoder:
    return encoders.load_encoder(runtime="onnx-int8")


def test_export_is_cached_by_model_hash_offline(cache: Path) -> None:
    from spacerini.encoders_onnx import local_model_folder, model_key

    key = model_key(local_model_folder(encoders.model_path()))
    files = sorted(p.name for p in (cache / "onnx" / key).glob("*.onnx"))
    assert files == ["model-int8.onnx", "model.onnx"]


def test_tokenization_equals_transformers(onnx_enc: encoders.Encoder, torch_enc: encoders.Encoder) -> None:
    texts = [*TEXTS, LONG, "", "  ", "naïve café — 東京 😀"]
    assert onnx_enc._tokenize(texts) == torch_enc._tokenize(texts)
    assert onnx_enc.max_tokens == torch_enc.max_tokens
    assert onnx_enc._split_many(texts, max_tokens=64, overlap=8) == torch_enc._split_many(texts, max_tokens=64, overlap=8)


def test_fp32_vectors_match_torch(onnx_enc: encoders.Encoder, torch_enc: encoders.Encoder) -> None:
    ours, counts = onnx_enc.encode_docs([*TEXTS, LONG], max_tokens=128, overlap=16)
    ref, ref_counts = torch_enc.encode_docs([*TEXTS, LONG], max_tokens=128, overlap=16)
    assert counts.tolist() == ref_counts.tolist()
    assert ours.shape == ref.shape and ours.dtype == np.float32
    cosine = (ours * ref).sum(axis=1)
    assert cosine.min() > 0.9999
    assert np.abs(ours - ref).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_int8_vectors_within_documented_tolerance(int8_enc: encoders.Encoder, torch_enc: encoders.Encoder) -> None:
    ours = int8_enc.encode(TEXTS)
    ref = torch_enc.encode(TEXTS)
    cosine = (ours * ref).sum(axis=1)
    # The documented tolerance (encoders_onnx): cosine to fp32 0.994 on average, min 0.986
    # (one scale per tensor, before: 0.96 and 0.90).
    assert cosine.mean() > 0.99 and cosine.min() > 0.975
    assert not np.array_equal(ours, ref)
    # Nearest neighbours mostly agree with fp32's.
    agree = np.mean((ours @ ours.T).argsort(axis=1)[:, -2] == (ref @ ref.T).argsort(axis=1)[:, -2])
    assert agree >= 0.9


def test_fp32_bits_do_not_depend_on_the_batch(onnx_enc: encoders.Encoder) -> None:
    texts = TEXTS[:24]
    together = onnx_enc.encode(texts, batch_size=32)
    alone = np.stack([onnx_enc.encode([text])[0] for text in texts])
    assert np.array_equal(together, alone)
    order = np.random.default_rng(3).permutation(len(texts))
    shuffled = onnx_enc.encode([texts[i] for i in order], batch_size=5)
    assert np.array_equal(shuffled, together[order])
    mixed = onnx_enc.encode([*texts, *TEXTS[24:], LONG], batch_size=7)
    assert np.array_equal(mixed[: len(texts)], together)


def test_runtime_resolution() -> None:
    assert encoders.resolve_runtime("auto", "cpu") == "onnx"
    assert encoders.resolve_runtime(None, "cuda") == "torch"
    assert encoders.resolve_runtime("onnx-int8", None) == "onnx-int8"
    with pytest.raises(ValueError, match="CPU only"):
        encoders.resolve_runtime("onnx", "cuda")
    with pytest.raises(ValueError, match="unknown encoder runtime"):
        encoders.load_encoder(runtime="tensorrt")


@pytest.mark.parametrize("runtime", ["onnx", "torch", "onnx-int8"])
def test_manifest_records_the_runtime_and_queries_use_it(
    tmp_path: Path, cache: Path, runtime: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spacerini.backends import dense

    monkeypatch.setenv("SPACERINI_CACHE", str(cache))
    docs = [Doc(id=f"d{i}", text=text) for i, text in enumerate(TEXTS)]
    report = dense.build(
        lambda: iter(docs), tmp_path / "dense", progress=False, device="cpu", index="flat", target_recall=None,
        runtime="auto" if runtime == "onnx" else runtime, checkpoint_dir=str(tmp_path / "ckpt"),
    )  # fmt: skip
    assert report.params["runtime"] == runtime
    stored = json.loads((tmp_path / "dense" / dense.PARAMS_FILE).read_text(encoding="utf-8"))
    assert stored["runtime"] == runtime
    searcher = dense.open(tmp_path / "dense", {"params": report.params})
    # An int8 index's queries are encoded by the same model in fp32: error on one side only.
    assert searcher.encoder.runtime == ("onnx" if runtime == "onnx-int8" else runtime)
    assert encoders.query_runtime(runtime) == searcher.encoder.runtime
    hits = searcher.search(TEXTS[4], k=3)
    assert hits[0].docid == "d4"
    if runtime == "onnx-int8":
        fp32 = encoders.load_encoder(runtime="onnx").encode([TEXTS[4]])
        assert np.array_equal(searcher.encode_queries([TEXTS[4]]), fp32)


def test_query_path_imports_neither_torch_nor_transformers(cache: Path) -> None:
    code = (
        "import sys; from spacerini.encoders import load_encoder; "
        "v = load_encoder(runtime='onnx').encode(['open a file']); "
        "print(v.shape[1], 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    env = {"SPACERINI_CACHE": str(cache), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.split() == ["384", "False", "False"]
