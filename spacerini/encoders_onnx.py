"""The ONNX Runtime encoder: the same sentence encoder, exported once, run without torch.

``load_encoder(name, runtime="onnx")`` (or ``"onnx-int8"``) returns an :class:`OnnxEncoder`. It
has the interface of :class:`spacerini.encoders.Encoder` and the same batching (token-sorted,
one padded width per batch), but it runs the model with ONNX Runtime on the CPU and tokenizes
with the ``tokenizers`` library alone. Neither torch nor transformers is imported unless the
model has to be exported, which happens once per model: the exported file is cached under
``$SPACERINI_CACHE/onnx/<key>/`` (default ``~/.cache/spacerini``), where ``key`` is a SHA-256 over
the model folder's files (names and contents) and the export settings. Nothing is downloaded and
nothing is written into a bundle.

The export (``torch.onnx.export``, TorchScript exporter, opset 17) covers the whole
sentence-transformers pipeline (transformer, pooling, normalisation), so the ONNX output is the
sentence embedding itself; it is normalised once more in float32, as the torch path does.

Runtimes:
    * ``onnx`` (fp32): vectors agree with the torch path to about 2e-7 per component (cosine >
      0.99999; ``tests/test_encoders_onnx.py`` checks). They are bit-stable within this
      runtime: ONNX Runtime's CPU kernels give a row the same bits in any batch of two or more
      rows of one padded width, and with any thread count (measured), but a one-row batch takes
      other kernels and differs in the last bit. A one-row batch is therefore run as two rows
      (the row twice), so a passage's vector does not depend on what it was batched with,
      and a query searched alone gets the bits it would get in a batch.
    * ``onnx-int8``: an export with eager attention, fused by ONNX Runtime's BERT optimizer into
      one ``Attention`` node per layer, with its weight products quantized to int8, one scale
      per output channel (``onnxruntime.quantization.quantize_dynamic``; Q·Kᵀ and ·V stay
      fp32). A model the optimizer does not recognise is quantized unfused. Activations are quantized per batch tensor at run time, so a vector
      depends on the batch it was encoded in (measured: up to 0.03 per component between
      batchings; cosine to the torch vector 0.994 on average, 0.986 at worst on
      ``tests/data/dense_corpus.jsonl``; one scale per tensor gave 0.96 and 0.90). A build is
      reproducible given the same corpus and chunking, but chunked, resumed and sharded builds
      are not bit-identical to an unchunked one. Not the default. An int8 index's queries
      are encoded in fp32 (:func:`spacerini.encoders.query_runtime`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spacerini.errors import DependencyMissingError

logger = logging.getLogger(__name__)

#: Bump when the export changes (opset, wrapper, quantization settings): a new cache key follows.
EXPORT_VERSION = 3
ONNX_RUNTIMES = ("onnx", "onnx-int8")
_MODEL_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
_EXPORT_LOCK = threading.Lock()


def cache_root() -> Path:
    """``$SPACERINI_CACHE`` or ``~/.cache/spacerini``."""
    root = os.environ.get("SPACERINI_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "spacerini"


def local_model_folder(source: str) -> Path:
    """The folder of a model: ``source`` itself, or a hub name's snapshot in the local cache.

    Raises:
        DependencyMissingError: ``source`` is not a folder and not in the local Hugging Face cache.
    """
    folder = Path(source)
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any hub failure means: not available offline
        raise DependencyMissingError(
            f"encoder {source!r} is not a local folder nor in the local Hugging Face cache; "
            "the onnx runtime needs its files (or use --dense-runtime torch)"
        ) from exc


def model_key(folder: Path) -> str:
    """SHA-256 over the model folder's files (relative names and contents) and the export version.

    Exported ``onnx``/``openvino`` subfolders that some hub models carry are left out.
    """
    digest = hashlib.sha256(b"spacerini-onnx-export:%d\n" % EXPORT_VERSION)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.split("/", 1)[0] in {"onnx", "openvino", ".cache"} or rel.startswith("."):
            continue
        digest.update(rel.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def exported_model(source: str, runtime: str) -> Path:
    """The cached ONNX file of the model for ``runtime``, exported (once) if missing.

    Args:
        source: The model folder or cached hub name (:func:`spacerini.encoders.model_path`).
        runtime: ``onnx`` or ``onnx-int8``.

    Returns:
        The path of the ``.onnx`` file.

    Raises:
        DependencyMissingError: The model is not available offline, or the export needs a
            package that is missing (torch, sentence-transformers, onnx).
    """
    folder = local_model_folder(source)
    target_dir = cache_root() / "onnx" / model_key(folder)
    target = target_dir / _MODEL_FILES[runtime]
    if target.is_file():
        return target
    with _EXPORT_LOCK, _file_lock(target_dir / ".lock"):
        if target.is_file():
            return target
        if runtime == "onnx":
            _export(folder, target)
        else:
            _quantize(folder, target)
        (target_dir / "source.json").write_text(
            json.dumps({"model": str(folder), "export_version": EXPORT_VERSION}) + "\n", encoding="utf-8"
        )
    return target


@contextlib.contextmanager
def _file_lock(path: Path) -> Any:
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


def _export(folder: Path, target: Path, *, attention: str | None = None) -> None:
    """Exports the sentence-transformers pipeline at ``folder`` to ``target`` (atomic rename).

    Args:
        folder: The model folder.
        target: The ``.onnx`` file to write.
        attention: A transformers attention implementation to trace (``"eager"`` gives the
            matmul/softmax graph that ONNX Runtime's BERT optimizer fuses into one ``Attention``
            node); ``None`` keeps the model's default (SDPA), whose vectors match torch's.
    """
    from spacerini.encoders import _load_sentence_transformer

    try:
        import torch
    except ImportError as exc:
        raise DependencyMissingError("exporting the encoder to ONNX needs torch") from exc
    logger.info("dense: exporting %s to ONNX once (cached at %s)", folder, target)
    model = _load_sentence_transformer(str(folder), str(folder), "cpu")
    if attention is not None:
        inner = getattr(model[0], "auto_model", None)
        if inner is not None and hasattr(inner, "set_attn_implementation"):
            with contextlib.suppress(ValueError, AttributeError, NotImplementedError):
                inner.set_attn_implementation(attention)
    names = ["input_ids", "attention_mask", "token_type_ids"]

    class _Pipeline(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(features)["sentence_embedding"]

    wrapper = _Pipeline(model).eval()
    # A padded example, so that the traced graph keeps the attention mask (an all-ones mask
    # may be dropped by the attention code during tracing).
    example = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(example)
    mask[1, 9:] = 0
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (example, mask, torch.zeros_like(example)), str(tmp), input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={**{name: {0: "batch", 1: "tokens"} for name in names}, "sentence_embedding": {0: "batch"}},
            opset_version=17, do_constant_folding=True, dynamo=False,
        )  # fmt: skip
    os.replace(tmp, target)


@contextlib.contextmanager
def _quiet_root_logger() -> Any:
    """Drops the root-logger warnings ``quantize_dynamic`` prints on every call ("Please consider
    to run pre-processing before quantization", meant for static image-model quantization)."""
    root = logging.getLogger()

    def drop(record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno > logging.WARNING

    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _fuse_attention(eager: Path, target: Path, config_path: Path) -> bool:
    """Fuses a BERT-style ``eager`` export's attention, layer norms and GELUs into ONNX Runtime's
    contrib ops (``onnxruntime.transformers.optimizer``), written to ``target``.

    Returns:
        Whether every layer's attention was fused; ``False`` (and nothing written) for a model
        the optimizer does not recognise, which is then quantized as exported.
    """
    try:
        from onnxruntime.transformers import optimizer
    except ImportError:
        return False
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    heads, hidden, layers = (config.get(k) for k in ("num_attention_heads", "hidden_size", "num_hidden_layers"))
    if config.get("model_type") != "bert" or not (heads and hidden and layers):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimizer.optimize_model(
            str(eager), model_type="bert", num_heads=int(heads), hidden_size=int(hidden), opt_level=1, use_gpu=False
        )
        if fused.get_fused_operator_statistics().get("Attention", 0) != int(layers):
            return False
        fused.save_model_to_file(str(target))
    return True


def _quantize(folder: Path, target: Path) -> None:
    """The ``onnx-int8`` model of ``folder``, written to ``target``.

    The model is exported again with eager attention, which ONNX Runtime's BERT optimizer fuses
    into one ``Attention`` node per layer (no mask ``Where``/``IsNaN`` ops, one kernel for
    Q·Kᵀ, softmax and ·V: the SDPA export spent about a quarter of its time there). The
    weight products (the fused QKV projection, the attention output and both feed-forward
    MatMuls) are then quantized to int8 with one scale per output channel
    (``quantize_dynamic``; activations are quantized per batch tensor at run time, and Q·Kᵀ and
    ·V stay fp32 inside the attention kernel). One scale per tensor lost 0.034 nDCG@10.
    """
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise DependencyMissingError("int8 quantization needs the onnx package: pip install onnx") from exc
    logger.info("dense: building the int8 model of %s once", folder)
    work = target.parent / f"int8-work-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        eager = work / "eager.onnx"
        _export(folder, eager, attention="eager")
        fused = work / "fused.onnx"
        source = fused if _fuse_attention(eager, fused, folder / "config.json") else eager
        tmp = work / "int8.onnx"
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            model = onnx.load(str(source))
            weights = {init.name for init in model.graph.initializer}
            # Only weight products: activation x activation MatMuls (attention when unfused) stay fp32.
            activations = [
                node.name for node in model.graph.node
                if node.op_type == "MatMul" and not any(name in weights for name in node.input)
            ]  # fmt: skip
            del model
            quantize_dynamic(
                str(source), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
                per_channel=True, nodes_to_exclude=activations,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )  # fmt: skip
        os.replace(tmp, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class FastTokenizer:
    """The subset of a transformers fast tokenizer that :class:`Encoder` uses, on ``tokenizers`` alone.

    Special tokens are the ones the tokenizer's post-processor puts around a single text;
    truncation keeps the first ``max_length`` minus that many tokens, as transformers does for a
    single text.
    """

    is_fast = True
    padding_side = "right"

    def __init__(self, folder: Path, *, token_types: bool) -> None:
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.is_file():
            raise DependencyMissingError(f"{folder}: no tokenizer.json; the onnx runtime needs a fast tokenizer")
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        pad = config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        pad_id = self._tok.token_to_id(pad) if pad else None
        self.pad_token_id = int(pad_id) if pad_id is not None else 0
        self.model_input_names = ["input_ids", "attention_mask", *(["token_type_ids"] if token_types else [])]
        probe = "hello world"
        bare = self._tok.encode(probe, add_special_tokens=False).ids
        full = self._tok.encode(probe, add_special_tokens=True).ids
        self._prefix: list[int] = []
        self._suffix: list[int] = []
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                self._prefix, self._suffix = full[:start], full[start + len(bare) :]
                break

    @property
    def backend_tokenizer(self) -> Any:
        """The ``tokenizers`` tokenizer, as transformers' fast tokenizers name it: with it, a long
        text is split a block at a time (:meth:`Encoder._token_offsets`) rather than whole into
        millions of offset tuples."""
        return self._tok

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """Special tokens around a single text."""
        return len(self._prefix) + len(self._suffix)

    def __call__(
        self, text: str | Sequence[str], *, add_special_tokens: bool = True, truncation: bool = False,
        max_length: int | None = None, return_offsets_mapping: bool = False, verbose: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Token ids (and offsets) like ``PreTrainedTokenizerFast.__call__`` for one text or a list."""
        single = isinstance(text, str)
        encodings = self._tok.encode_batch([text] if single else list(text), add_special_tokens=False)
        ids: list[list[int]] = []
        offsets: list[list[tuple[int, int]]] = []
        room = None
        if truncation and max_length is not None:
            room = max(0, max_length - (self.num_special_tokens_to_add() if add_special_tokens else 0))
        for enc in encodings:
            seq, offs = enc.ids, enc.offsets
            if room is not None and len(seq) > room:
                seq, offs = seq[:room], offs[:room]
            if add_special_tokens:
                seq = [*self._prefix, *seq, *self._suffix]
                offs = [(0, 0)] * len(self._prefix) + list(offs) + [(0, 0)] * len(self._suffix)
            ids.append(list(seq))
            offsets.append(list(offs))
        out: dict[str, Any] = {"input_ids": ids[0] if single else ids}
        if return_offsets_mapping:
            out["offset_mapping"] = offsets[0] if single else offsets
        return out


def _max_seq_length(folder: Path) -> int:
    for name in ("sentence_bert_config.json", "config.json"):
        path = folder / name
        if path.is_file():
            config = json.loads(path.read_text(encoding="utf-8"))
            value = config.get("max_seq_length") or config.get("max_position_embeddings")
            if value:
                return int(value)
    return 512


def make_onnx_encoder(name: str, source: str, runtime: str) -> Any:
    """Builds the :class:`OnnxEncoder` for ``runtime`` (see :func:`spacerini.encoders.load_encoder`)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyMissingError("the onnx dense runtime needs onnxruntime: pip install onnxruntime") from exc
    model_file = exported_model(source, runtime)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    threads = os.environ.get("SPACERINI_ONNX_THREADS")
    if threads:
        options.intra_op_num_threads = int(threads)
    session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    return _onnx_encoder_class()(name, source, runtime, session, local_model_folder(source))


_CLASS: Any = None


def _onnx_encoder_class() -> Any:
    """:class:`OnnxEncoder`, defined on first use so that this module imports without encoders."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from spacerini.encoders import Encoder

    class OnnxEncoder(Encoder):
        """An :class:`~spacerini.encoders.Encoder` that runs the exported model with ONNX Runtime."""

        def __init__(self, name: str, source: str, runtime: str, session: Any, folder: Path) -> None:
            self.name = name
            self.source = source
            self.device = "cpu"
            self.runtime = runtime
            self._session = session
            self._model = None
            inputs = {i.name for i in session.get_inputs()}
            self._token_types = "token_type_ids" in inputs
            self._tokenizer = FastTokenizer(folder, token_types=self._token_types)
            self.dim = int(session.get_outputs()[0].shape[1])
            self._max_seq_length = _max_seq_length(folder)
            self.max_tokens = self._max_seq_length - self._tokenizer.num_special_tokens_to_add()
            self._direct = True
            self._prefix, self._suffix = self._tokenizer._prefix, self._tokenizer._suffix

        def __repr__(self) -> str:
            return f"OnnxEncoder({self.name!r}, dim={self.dim}, runtime={self.runtime!r})"

        def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            rows = len(input_ids)
            if rows == 1:
                # A one-row batch takes other kernels (last-bit differences): run it as two rows.
                input_ids = np.repeat(input_ids, 2, axis=0)
                mask = np.repeat(mask, 2, axis=0)
            feeds = {"input_ids": input_ids, "attention_mask": mask}
            if self._token_types:
                feeds["token_type_ids"] = np.zeros_like(input_ids)
            vectors = np.asarray(self._session.run(None, feeds)[0][:rows], dtype=np.float32)
            norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.float32(1e-12))
            return vectors / norms

        def _encode_with_library(self, texts: Sequence[str], *, batch_size: int) -> np.ndarray:
            return self.encode_ids(self._tokenize(texts), batch_size=batch_size)

    _CLASS = OnnxEncoder
    return _CLASS
