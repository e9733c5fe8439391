"""The fill-in-the-middle (FIM) transformation of StarCoder / SantaCoder training.

This follows ``permute`` and the per-document application of the BigCode Megatron-LM code
(``megatron/data/gpt_dataset.py``): with probability ``fim_rate`` a document is decoded to
characters, cut at two uniformly random character positions into prefix, middle and suffix,
and each part is tokenized again. With probability ``spm_rate`` the SPM layout is used
(variant 2 of Bavarian et al. 2022), else PSM::

    PSM: <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle
    SPM: <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle

With ``truncate_or_pad`` the result keeps the length of the input: a longer result loses tokens
from the end of its suffix (or is left as it was when the suffix is too short), a shorter one
gets ``<fim_pad>`` tokens appended to the suffix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class FimTokens:
    """The token ids the transformation needs.

    Attributes:
        prefix: Id of ``<fim_prefix>``.
        middle: Id of ``<fim_middle>``.
        suffix: Id of ``<fim_suffix>``.
        pad: Id of ``<fim_pad>``.
        eod: Id of ``<|endoftext|>`` (separates documents in a packed sequence).
    """

    prefix: int
    middle: int
    suffix: int
    pad: int
    eod: int


def permute(
    sample: np.ndarray,
    rng: np.random.Generator,
    *,
    encode: Callable[[str], Sequence[int]],
    decode: Callable[[Sequence[int]], str],
    tokens: FimTokens,
    fim_rate: float = 0.5,
    spm_rate: float = 0.5,
    truncate_or_pad: bool = True,
) -> np.ndarray:
    """Applies FIM to one document's tokens with probability ``fim_rate``.

    Args:
        sample: The tokens of one document (1-D int array, no EOD inside).
        rng: The random generator (consumed: same seed, same result).
        encode: Text to token ids (no special tokens added).
        decode: Token ids to text.
        tokens: The FIM token ids.
        fim_rate: Probability of transforming the document.
        spm_rate: Probability of the SPM layout, given FIM.
        truncate_or_pad: Keep the length of ``sample`` (see the module docstring).

    Returns:
        The new token array (``sample`` itself when not transformed).
    """
    if not rng.binomial(1, fim_rate):
        return sample
    contents = decode(sample.tolist())
    lo, hi = sorted(rng.integers(0, len(contents) + 1, size=2).tolist())
    prefix = np.asarray(encode(contents[:lo]), dtype=np.int64)
    middle = np.asarray(encode(contents[lo:hi]), dtype=np.int64)
    suffix = np.asarray(encode(contents[hi:]), dtype=np.int64)
    if truncate_or_pad:
        diff = len(prefix) + len(middle) + len(suffix) + 3 - len(sample)
        if diff > 0:
            if len(suffix) <= diff:
                return sample
            suffix = suffix[: len(suffix) - diff]
        elif diff < 0:
            suffix = np.concatenate([suffix, np.full(-diff, tokens.pad, dtype=np.int64)])
    if rng.binomial(1, spm_rate):
        parts = [[tokens.prefix, tokens.suffix], suffix, [tokens.middle], prefix, middle]
    else:
        parts = [[tokens.prefix], prefix, [tokens.suffix], suffix, [tokens.middle], middle]
    return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])


def apply_fim(
    sample: np.ndarray,
    rng: np.random.Generator,
    *,
    encode: Callable[[str], Sequence[int]],
    decode: Callable[[Sequence[int]], str],
    tokens: FimTokens,
    fim_rate: float = 0.5,
    spm_rate: float = 0.5,
) -> np.ndarray:
    """Applies :func:`permute` to each document of a packed training sequence.

    The sequence is split at ``<|endoftext|>``; each non-empty piece is permuted on its own and
    the separators are kept. The result is cut or padded (``<fim_pad>``) to the input's length.

    Args:
        sample: A packed sequence of token ids (1-D).
        rng: The random generator.
        encode: Text to token ids.
        decode: Token ids to text.
        tokens: The FIM token ids.
        fim_rate: Probability of transforming each document.
        spm_rate: Probability of SPM given FIM.

    Returns:
        An int64 array as long as ``sample``.
    """
    sample = np.asarray(sample, dtype=np.int64)
    if fim_rate <= 0:
        return sample
    kwargs = {"encode": encode, "decode": decode, "tokens": tokens, "fim_rate": fim_rate, "spm_rate": spm_rate}
    pieces: list[np.ndarray] = []
    start = 0
    for loc in np.flatnonzero(sample == tokens.eod).tolist():
        if loc > start:
            pieces.append(permute(sample[start:loc], rng, **kwargs))
        pieces.append(np.asarray([tokens.eod], dtype=np.int64))
        start = loc + 1
    if start < len(sample):
        pieces.append(permute(sample[start:], rng, **kwargs))
    out = np.concatenate(pieces) if pieces else sample
    if len(out) > len(sample):
        out = out[: len(sample)]
    elif len(out) < len(sample):
        out = np.concatenate([out, np.full(len(sample) - len(out), tokens.pad, dtype=np.int64)])
    return out
