"""Model-based membership inference: "was this text in the model's training data?".

When the training data is public, a bundle answers exactly (``spacerini member``). When it is
not, an auditor only has the model. These scores are the standard reference-free attacks, each
computed from the per-token log-probabilities of a causal LM:

=================== ============================================================ ===============
score               definition                                                   member when
=================== ============================================================ ===============
``loss``            mean negative log-likelihood per token (nats), the          lower
                    perplexity attack (Yeom et al. 2018; Carlini et al. 2021)
``zlib``            ``loss / len(zlib.compress(text))`` (bytes), Carlini et      lower
                    al. 2021: text that is cheap for zlib too is not suspicious
``min_k``           Min-K% Prob (Shi et al. 2023): mean of the lowest ``k``      higher
                    share of the token log-probabilities
``min_k_plus_plus`` Min-K%++ (Zhang et al. 2024): per token                      higher
                    ``(log p(x_t) - mu_t) / sigma_t``, with ``mu_t`` and
                    ``sigma_t`` the mean and standard deviation of ``log p``
                    under the model's next-token distribution at ``t``; then
                    the mean of the lowest ``k`` share
=================== ============================================================ ===============

:meth:`MembershipScores.oriented` turns all four into "higher = more likely a member" (``loss``
and ``zlib`` negated), which is what a ROC-AUC is computed on. None of them is calibrated: a
score means something only against the scores of known non-members of the same distribution
and length (see ``benchmarks/membership_bench.py`` for how well each separates, and where they
do not).

Every token is scored: the text is preceded by the model's beginning-of-text token
(``<|endoftext|>`` for the shipped model, as documents follow it in training), so the first
token is predicted too. A text longer than the model's context (``n_positions``) is scored in
windows of that many tokens moved by ``stride``; each token is scored once, in the first window
that holds it with at least ``context - stride`` tokens of context (all tokens of the first
window, which have less). Windows of all texts are batched, under ``torch.inference_mode``,
on :func:`spacerini.model.device.choose_device` (CUDA when there is one, else CPU).
"""

from __future__ import annotations

import logging
import math
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spacerini.errors import QueryError
from spacerini.model.errors import ModelError
from spacerini.model.generation import context_length, lone_surrogate, resolve_model
from spacerini.progress import wanted
from spacerini.records import Answer

logger = logging.getLogger(__name__)

#: Share of tokens that Min-K% and Min-K%++ average (20%, the papers' usual choice).
DEFAULT_K = 0.2
#: The methods, as named in :meth:`MembershipScores.oriented` and the benchmark.
METHODS = ("loss", "zlib", "min_k", "min_k_plus_plus")
#: Floor of ``sigma_t`` in Min-K%++ (a next-token distribution with all mass on one token).
SIGMA_FLOOR = 1e-6
#: Longest text ``spacerini model membership`` scores whole (without ``--max-tokens``): about
#: 300k tokens, minutes on a CPU. A 20 MB file would take an hour and gigabytes to tokenize.
MAX_SCORED_CHARS = 1_000_000


@dataclass(frozen=True, eq=False)
class MembershipScores(Answer):
    """The membership scores of one text under one model (see the module docstring for signs).

    Attributes:
        tokens: Tokens scored.
        chars: Characters of the text scored.
        loss: Mean negative log-likelihood per token, in nats (lower: more likely a member).
        zlib_bytes: Length of the zlib-compressed UTF-8 text.
        zlib: ``loss / zlib_bytes`` (lower: more likely a member).
        min_k: Min-K% Prob, a mean log-probability (higher: more likely a member).
        min_k_plus_plus: Min-K%++, a mean z-score (higher: more likely a member).
        k: Share of tokens averaged by ``min_k`` and ``min_k_plus_plus``.
    """

    tokens: int
    chars: int
    loss: float
    zlib_bytes: int
    zlib: float
    min_k: float
    min_k_plus_plus: float
    k: float

    @property
    def perplexity(self) -> float:
        """``exp(loss)``."""
        return math.exp(self.loss) if self.loss < 700 else math.inf

    def oriented(self) -> dict[str, float]:
        """Each method's score with "higher = more likely a member" (``loss``, ``zlib`` negated)."""
        return {"loss": -self.loss, "zlib": -self.zlib, "min_k": self.min_k, "min_k_plus_plus": self.min_k_plus_plus}


@dataclass(frozen=True, eq=False)
class TokenStats:
    """Per-token statistics of one text, from which every score is computed.

    Attributes:
        ids: The text's token ids (the beginning-of-text token not included).
        logp: ``log p(x_t | x_<t)`` of each token.
        mu: Mean of ``log p`` under the next-token distribution at each position.
        sigma: Its standard deviation.
    """

    ids: np.ndarray
    logp: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    def prefix(self, n: int) -> TokenStats:
        """The statistics of the first ``n`` tokens: the same as scoring that prefix alone (the
        model is causal, and the window that scores a token does not depend on what follows)."""
        return TokenStats(self.ids[:n], self.logp[:n], self.mu[:n], self.sigma[:n])


def lowest_mean(values: np.ndarray, k: float) -> float:
    """Mean of the lowest ``max(1, floor(k * n))`` of ``values`` (the Min-K% average)."""
    n = max(1, int(len(values) * k))
    return float(np.mean(np.sort(values)[:n]))


def scores_from_stats(stats: TokenStats, text: str, *, k: float = DEFAULT_K) -> MembershipScores:
    """Computes every score of ``text`` from its per-token statistics.

    Args:
        stats: The text's :class:`TokenStats` (or a :meth:`~TokenStats.prefix` of them).
        text: The text those tokens spell (compressed for the zlib score).
        k: Share of tokens averaged by Min-K% and Min-K%++.

    Raises:
        ModelError: No tokens, or ``k`` outside (0, 1].
    """
    _check_k(k)
    if len(stats.logp) == 0:
        raise ModelError("no tokens to score")
    logp = stats.logp.astype(np.float64)
    loss = float(-logp.mean())
    zbytes = len(zlib.compress(text.encode("utf-8")))
    z = (logp - stats.mu) / np.maximum(stats.sigma, SIGMA_FLOOR)
    return MembershipScores(
        tokens=len(logp), chars=len(text), loss=loss, zlib_bytes=zbytes, zlib=loss / zbytes,
        min_k=lowest_mean(logp, k), min_k_plus_plus=lowest_mean(z, k), k=k,
    )  # fmt: skip


def _check_k(k: float) -> None:
    if not isinstance(k, int | float) or not 0 < k <= 1:
        raise ModelError(f"k must be a share of tokens in (0, 1], not {k!r} (20% is 0.2)")


def _start_token(model: Any, tokenizer: Any) -> int | None:
    for value in (getattr(model.config, "bos_token_id", None), tokenizer.bos_token_id, tokenizer.eos_token_id):
        if isinstance(value, int):
            return value
    return None


def windows(length: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """The windows that score a sequence of ``length`` ids (position 0 is context only).

    Args:
        length: Ids in the sequence (the start token included).
        context: The most ids a window holds.
        stride: How far each window starts after the previous one.

    Returns:
        ``(start, end, first)`` triples: the window holds ids ``[start, end)`` and scores the
        targets ``[first, end)``; the targets of all windows are ``1 .. length - 1``, each once.
    """
    out = []
    start, done = 0, 1
    while done < length:
        end = min(start + context, length)
        if end > done:
            out.append((start, end, done))
            done = end
        start += stride
    return out


def token_stats(
    texts: Sequence[str],
    *,
    model: Any = None,
    device: str | None = None,
    batch_size: int = 4,
    stride: int | None = None,
    max_tokens: int | None = None,
    progress: bool = False,
) -> list[TokenStats]:
    """Runs the model over ``texts`` and returns each text's per-token statistics.

    Args:
        texts: The texts (non-empty).
        model: A model folder or cached name, a ``(model, tokenizer)`` pair, or None for the
            shipped model.
        device: Torch device for a model loaded here (default: the best one).
        batch_size: Windows per forward pass.
        stride: Tokens between window starts for long texts (default: half the context).
        max_tokens: Score only the first this many tokens of each text.
        progress: Show a progress bar over the windows.

    Returns:
        One :class:`TokenStats` per text, in order.

    Raises:
        QueryError: An empty text, one holding a lone surrogate, or one with no tokens.
        ModelError: Bad options, or the model cannot be loaded.
    """
    import torch
    from tqdm.auto import tqdm

    if batch_size < 1 or (max_tokens is not None and max_tokens < 1):
        raise ModelError("batch_size and max_tokens must be >= 1")
    for i, text in enumerate(texts):  # before the model loads
        if not isinstance(text, str) or not text.strip():
            which = "the text" if len(texts) == 1 else f"text {i}"
            blank = "empty" if not isinstance(text, str) or not text else "blank (only white space)"
            raise QueryError(f"{which} is {blank}: membership needs some text to score")
        why = lone_surrogate(text, "the text" if len(texts) == 1 else f"text {i}")
        if why is not None:
            raise QueryError(why)
    lm, tokenizer = resolve_model(model, device=device)
    context = context_length(lm)
    stride = context // 2 if stride is None else stride
    if not 1 <= stride <= context - 1:
        raise ModelError(f"stride must be between 1 and the context minus 1 ({context - 1}), not {stride}")
    start = _start_token(lm, tokenizer)
    seqs: list[list[int]] = []
    for i, text in enumerate(texts):
        which = "the text" if len(texts) == 1 else f"text {i}"
        ids = head_ids(tokenizer, text, max_tokens)
        if not ids:
            raise QueryError(f"{which} has no tokens to score")
        seqs.append(([start] if start is not None else []) + list(ids))
    first_target = 1
    if start is None:
        logger.info("the model has no beginning-of-text token: the first token of each text is not scored")

    jobs = [(t, s, e, f) for t, seq in enumerate(seqs) for s, e, f in windows(len(seq), context, stride)]
    jobs.sort(key=lambda j: j[2] - j[1], reverse=True)  # similar lengths share a batch
    n_out = [len(seq) - first_target for seq in seqs]
    logp = [np.zeros(n, dtype=np.float64) for n in n_out]
    mu = [np.zeros(n, dtype=np.float64) for n in n_out]
    sigma = [np.zeros(n, dtype=np.float64) for n in n_out]
    dev = next(lm.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=len(jobs), desc="score", unit="window", disable=not wanted(progress) or len(jobs) <= batch_size)
    with torch.inference_mode():
        for b in range(0, len(jobs), batch_size):
            batch = jobs[b : b + batch_size]
            width = max(e - s for _, s, e, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (t, s, e, _) in enumerate(batch):
                ids[row, : e - s] = torch.tensor(seqs[t][s:e])
                mask[row, : e - s] = 1
            logits = lm(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
            for row, (t, s, e, f) in enumerate(batch):
                # Logits at position p predict the id at p + 1: targets [f, e) come from rows [f-1-s, e-1-s).
                lp = torch.log_softmax(logits[row, f - 1 - s : e - 1 - s].float(), dim=-1)
                target = ids[row, f - s : e - s].to(dev)
                p = lp.exp()
                m = (p * lp).sum(-1)
                var = (p * lp.square()).sum(-1) - m.square()
                lo, hi = f - first_target, e - first_target
                logp[t][lo:hi] = lp.gather(-1, target[:, None])[:, 0].double().cpu().numpy()
                mu[t][lo:hi] = m.double().cpu().numpy()
                sigma[t][lo:hi] = var.clamp_min(0).sqrt().double().cpu().numpy()
            bar.update(len(batch))
    bar.close()
    return [
        TokenStats(np.asarray(seq[first_target:], dtype=np.int64), logp[t], mu[t], sigma[t]) for t, seq in enumerate(seqs)
    ]


def head_ids(tokenizer: Any, text: str, max_tokens: int | None) -> list[int]:
    """The first ``max_tokens`` token ids of ``text`` (all of them for None), as tokenizing the
    whole text gives them, without tokenizing all of a long text.

    A growing head of the text is tokenized; its tokens that end before the second-to-last
    piece of the pre-tokenizer are those of the whole text (BPE merges within a piece, and
    only the pieces that reach the cut depend on what follows it).
    """

    def encode(part: str) -> list[int]:
        return tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"]

    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    if max_tokens is None or pre is None or backend.normalizer is not None:
        return encode(text)[:max_tokens]
    chars = max(256, 8 * max_tokens)
    while chars < len(text):
        head = text[:chars]
        pieces = pre.pre_tokenize_str(head)
        if len(pieces) >= 3:
            safe = pieces[-2][1][0]
            enc = backend.encode(head[:safe], add_special_tokens=False)
            if len(enc.ids) >= max_tokens:
                return list(enc.ids[:max_tokens])
        chars *= 2
    return encode(text)[:max_tokens]


def score_texts(
    texts: Sequence[str],
    *,
    model: Any = None,
    k: float = DEFAULT_K,
    device: str | None = None,
    batch_size: int = 4,
    stride: int | None = None,
    max_tokens: int | None = None,
    progress: bool = False,
) -> list[MembershipScores]:
    """The membership scores of each text (see the module docstring for their signs).

    Args:
        texts: The texts (non-empty).
        model: A model folder or cached name, a ``(model, tokenizer)`` pair, or None for the
            shipped model.
        k: Share of tokens averaged by Min-K% and Min-K%++.
        device: Torch device for a model loaded here (default: the best one).
        batch_size: Windows per forward pass.
        stride: Tokens between window starts for long texts (default: half the context).
        max_tokens: Score only the first this many tokens of each text (the zlib score then
            compresses the text those tokens spell).
        progress: Show a progress bar over the windows.

    Returns:
        One :class:`MembershipScores` per text, in order.

    Raises:
        QueryError: An empty text, or one with no tokens.
        ModelError: Bad options, or the model cannot be loaded.
    """
    _check_k(k)
    stats = token_stats(
        texts, model=model, device=device, batch_size=batch_size, stride=stride, max_tokens=max_tokens, progress=progress
    )
    if max_tokens is None:
        return [scores_from_stats(s, text, k=k) for s, text in zip(stats, texts, strict=True)]
    _, tokenizer = resolve_model(model, device=device)
    return [scores_from_stats(s, prefix_text(tokenizer, s.ids), k=k) for s in stats]


def prefix_text(tokenizer: Any, ids: np.ndarray) -> str:
    """The text that token ``ids`` spell (a byte-level BPE decodes a prefix exactly, except a
    character cut in the middle of its bytes)."""
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def score_text(text: str, **options: Any) -> MembershipScores:
    """The membership scores of one text (:func:`score_texts` with the same options)."""
    return score_texts([text], **options)[0]


@dataclass(frozen=True, eq=False)
class ExactAnswer(Answer):
    """What a bundle knows for certain about a text: the reference for the model's scores.

    Attributes:
        verbatim: Whether the whole text occurs in the corpus (None without the exact backend).
        count: Its occurrences (None without the exact backend).
        coverage: Share of the text's characters inside verbatim spans of at least
            ``MEMBER_MIN_LEN`` characters found in the corpus (with the exact backend; else
            the Bloom sketch's probable spans).
        longest_match: Characters of the longest verbatim span found (0 when none or no exact).
        method: ``"exact"`` or ``"bloom sketch"`` (as in :class:`~spacerini.records.Membership`).
        generation: The bundle generation that answered.
    """

    verbatim: bool | None
    count: int | None
    coverage: float
    longest_match: int
    method: str
    generation: int


def exact_answer(service: Any, text: str) -> ExactAnswer:
    """Asks a bundle whether ``text`` is in its corpus, exactly.

    Args:
        service: A :class:`spacerini.service.Service` over the bundle.
        text: The text.

    Returns:
        An :class:`ExactAnswer`.

    Raises:
        QueryError: Empty text, or text the service refuses.
        BackendNotAvailableError: The bundle has neither the exact nor the bloom backend.
    """
    from spacerini.errors import BackendNotAvailableError
    from spacerini.model.tracing import union_length
    from spacerini.service import MEMBER_MIN_LEN

    have = list(service.bundle.backends)
    if not {"bloom", "exact"} & set(have):
        raise BackendNotAvailableError(
            f"{service.bundle.path}: the exact answer needs the exact (or bloom) backend, which this bundle lacks: "
            f"rebuild it with --backends {','.join([*have, 'exact'])}, or leave out --bundle"
        )
    m = service.member(text)
    if "exact" not in service.bundle.backends:
        return ExactAnswer(None, None, m.coverage, 0, m.method, m.generation)
    longest = max((s.end - s.start for s in m.exact_spans), default=0)
    coverage = union_length([(s.start, s.end) for s in m.exact_spans]) / len(text)
    whole = [s for s in m.exact_spans if s.start == 0 and s.end == len(text)]
    if whole:
        count = whole[0].count
    elif len(text) < MEMBER_MIN_LEN:  # too short for the spans: count it
        count = service.count(text).count
        if count:
            longest, coverage = len(text), 1.0
    else:  # the longest match from position 0 would be the whole text if it occurred
        count = 0
    return ExactAnswer(count > 0, count, coverage, longest, "exact", m.generation)


def read_text_or_file(value: str) -> str:
    """``value`` itself, or the UTF-8 contents of the file it names (``-``: standard input).

    A one-line ``value`` that names no file but reads like a file name (``x.py``, ``src/x``) is
    scored as the text itself, with a warning on the log.

    Raises:
        QueryError: The file cannot be read, is empty or is not UTF-8 text, or ``value`` names a
            folder.
    """
    import sys

    one_line = "\n" not in value and "\x00" not in value and len(value) < 4096
    if value == "-":
        data = sys.stdin.buffer.read()
    elif one_line and os.path.isdir(value):
        raise QueryError(f"{value}: is a folder, not a file; pass a file path, - for standard input, or the text itself")
    elif one_line and os.path.exists(value):  # a file, or a device or pipe (/dev/stdin), read as one
        try:
            with open(value, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise QueryError(f"{value}: cannot be read ({exc.strerror or exc}); pass a text or code file") from None
        if not data:
            raise QueryError(f"{value}: the file is empty; pass a file with some text or code to score")
    else:
        if one_line and _looks_like_a_path(value):
            logger.warning("no file named %s: scoring these %d characters as the text itself", value, len(value))
        return value
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueryError(f"{value}: not UTF-8 text (byte {exc.start}); pass a text or code file") from exc


def _looks_like_a_path(value: str) -> bool:
    """Whether ``value`` (which names no file) reads like a file name someone mistyped: one word
    with a folder separator or a file extension, not code (no brackets, quotes or operators)."""
    if not value or any(c.isspace() for c in value) or any(c in value for c in "()[]{}=:;,'\"<>+*"):
        return False
    return os.sep in value or bool(_FILE_NAME.fullmatch(value))


#: A file name with the extension of a text or code file (``os.path`` is code, ``x.py`` a file).
_FILE_NAME = re.compile(
    r"[^/]+\.(?:py|pyi|txt|md|rst|json|jsonl|ndjson|csv|tsv|js|ts|c|h|cc|cpp|hpp|java|rs|go|rb|sh|"
    r"html|css|yaml|yml|toml|ipynb|php|swift|kt|scala|sql|xml|tex)",
    re.IGNORECASE,
)
