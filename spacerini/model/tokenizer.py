"""A byte-level BPE tokenizer with StarCoder's special tokens, trained on a corpus."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EOS = "<|endoftext|>"
FIM_PREFIX = "<fim_prefix>"
FIM_MIDDLE = "<fim_middle>"
FIM_SUFFIX = "<fim_suffix>"
FIM_PAD = "<fim_pad>"
#: StarCoder's special tokens, in StarCoder's id order (ids 0..18).
SPECIAL_TOKENS: tuple[str, ...] = (
    EOS,
    FIM_PREFIX,
    FIM_MIDDLE,
    FIM_SUFFIX,
    FIM_PAD,
    "<filename>",
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<empty_output>",
    "<commit_before>",
    "<commit_msg>",
    "<commit_after>",
    "<reponame>",
)
FIM_TOKENS: tuple[str, ...] = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD)


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 8192, min_frequency: int = 2, max_length: int = 512
) -> Any:
    """Trains a byte-level BPE tokenizer (StarCoder style) on ``texts``.

    Args:
        texts: The training texts (an iterator is consumed once).
        vocab_size: Size of the vocabulary, special tokens included.
        min_frequency: Least count of a pair to be merged.
        max_length: The ``model_max_length`` written into the tokenizer config.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` with the special tokens, EOS/BOS/UNK set to
        ``<|endoftext|>``.

    Raises:
        ValueError: ``vocab_size`` leaves no room beyond the 256 bytes and the special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size <= 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed {256 + len(SPECIAL_TOKENS)}, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(tok, max_length=max_length)


def wrap_tokenizer(tok: Any, *, max_length: int = 512) -> Any:
    """Wraps a ``tokenizers.Tokenizer`` as a ``PreTrainedTokenizerFast`` with StarCoder's tokens."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t != EOS],
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )


def fim_ids(tokenizer: Any) -> dict[str, int] | None:
    """Returns the ids of the FIM tokens, or None when the tokenizer lacks any of them."""
    vocab = tokenizer.get_vocab()
    if not all(t in vocab for t in FIM_TOKENS):
        return None
    return {t: vocab[t] for t in FIM_TOKENS}


def save_tokenizer(tokenizer: Any, folder: str | os.PathLike[str]) -> None:
    """Saves ``tokenizer.json`` and ``tokenizer_config.json`` (AutoTokenizer loads them)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    logger.info("saved tokenizer (%d tokens) to %s", len(tokenizer), folder)
